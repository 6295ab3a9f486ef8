"""Fast path (``opml.engine`` / ``opml.kernels``) == reference interpreter (``opml.reference``), bit for bit.

Every primitive op of ``opml.ops`` gets a hypothesis test that builds one-node bundles by hand (small
shapes: the reference is pure Python), runs them through the engine and through ``run_reference``
and compares the output bytes, dtype and shape (which must also equal the bundle's declared output
spec). The data-movement ops share their numpy code with the reference, so for them the test also
checks an independent element-by-element oracle written here. ``test_every_op_is_covered`` fails
when an op is added to ``opml.ops`` without a test here. The last tests run the full example models
through both paths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from opml.bundle import Bundle, DType, Node, TensorSpec, decode_bundle, encode_bundle
from opml.engine import run
from opml.errors import InferenceInputError, OpmlError
from opml.intmath import quantize_multiplier
from opml.lut import softmax_exp_table
from opml.ops import BY_NAME, REDUCE_L2, REDUCE_MAX, REDUCE_MEAN, REDUCE_SUM
from opml.reference import run_reference

INT8, UINT8, INT16, INT32, INT64, FLOAT32, BOOL = (
    DType.INT8, DType.UINT8, DType.INT16, DType.INT32, DType.INT64, DType.FLOAT32, DType.BOOL)
Q_DTYPES = (INT8, UINT8)
ALL_DTYPES = tuple(DType)
QRANGE = {INT8: (-128, 127), UINT8: (0, 255)}

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.data_too_large])
FEW = settings(SETTINGS, max_examples=50)

COVERED: dict[str, Callable] = {}


def covers(op: str) -> Callable[[Callable], Callable]:
    """Register a test as the differential test of ``op``."""
    assert op in BY_NAME, op

    def deco(fn: Callable) -> Callable:
        COVERED[op] = fn
        return fn

    return deco


# ---------------------------------------------------------------------------------------------
# bundle construction


def act(name: str, dtype: DType, shape: Sequence[int], scale: float = 0.0, zp: int = 0,
        dyn: bool = False) -> TensorSpec:
    """An activation spec; ``dyn`` makes the leading dimension the dynamic batch (``-1``)."""
    shp = tuple(int(d) for d in shape)
    if dyn:
        shp = (-1,) + shp[1:]
    return TensorSpec(name, dtype, shp, float(np.float32(scale)), int(zp))


def const(name: str, arr: np.ndarray, scale: float = 0.0, zp: int = 0) -> TensorSpec:
    arr = np.asarray(arr)  # (not ascontiguousarray: it turns 0-d arrays into 1-d ones)
    return TensorSpec(name, DType.from_np(arr.dtype), tuple(arr.shape), float(np.float32(scale)), int(zp),
                      arr.tobytes())


def attrs_of(op: str, attrs: dict[str, object]) -> tuple[tuple[int, ...], ...]:
    names = BY_NAME[op].attrs
    assert set(attrs) == set(names), (op, sorted(attrs), names)
    return tuple(tuple(int(v) for v in (attrs[a] if isinstance(attrs[a], list | tuple) else [attrs[a]]))
                 for a in names)


def one_node(op: str, ins: Sequence[TensorSpec], out: TensorSpec, **attrs: object) -> Bundle:
    """A bundle of one node: tensors are the inputs (activations and constants) then the output."""
    tensors = tuple(ins) + (out,)
    node = Node(op, tuple(range(len(ins))), (len(ins),), attrs_of(op, attrs), name=op)
    return Bundle(tensors, (node,), tuple(i for i, t in enumerate(ins) if not t.is_const), (len(ins),),
                  {"test": op})


def _batch(b: Bundle, inputs: Sequence[np.ndarray]) -> int:
    for spec, x in zip(b.input_specs(), inputs, strict=True):
        if spec.shape and spec.shape[0] < 0:
            return x.shape[0] // -spec.shape[0]
    return 1


def check(bundle: Bundle, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Run ``bundle`` on both paths (after a canonical encode/decode); outputs must match bit for bit."""
    b = decode_bundle(encode_bundle(bundle))
    fast = run(b, list(inputs))
    ref = run_reference(b, list(inputs))
    batch = _batch(b, inputs)
    for spec, f, r in zip(b.output_specs(), fast, ref, strict=True):
        want = spec.concrete_shape(batch)
        assert f.dtype == spec.dtype.np, f"engine output dtype {f.dtype}, bundle declares {spec.dtype.name}"
        assert r.dtype == spec.dtype.np, f"reference output dtype {r.dtype}, bundle declares {spec.dtype.name}"
        assert f.shape == want, f"engine output shape {f.shape}, bundle declares {want}"
        assert r.shape == want, f"reference output shape {r.shape}, bundle declares {want}"
        if f.tobytes() != r.tobytes():
            diff = np.argwhere(f != r)
            i = tuple(diff[0]) if len(diff) else ()
            pytest.fail(f"engine != reference at {len(diff)} elements; first {i}: engine {f[i]!r}, reference {r[i]!r}")
    return fast[0]


# ---------------------------------------------------------------------------------------------
# strategies

SCALES = st.floats(float(np.float32(1e-3)), 4.0, width=32)
INT32_ANY = st.integers(-(2**31), 2**31 - 1)
INT32_SMALL_OR_ANY = st.one_of(st.integers(-3000, 3000), INT32_ANY)


def zps(dtype: DType) -> st.SearchStrategy[int]:
    lo, hi = QRANGE[dtype]
    return st.integers(lo, hi)


@st.composite
def qspec(draw: st.DrawFn, dtypes: Sequence[DType] = Q_DTYPES) -> tuple[DType, float, int]:
    """(dtype, scale, zero point) of a quantized activation."""
    dt = draw(st.sampled_from(dtypes))
    return dt, draw(SCALES), draw(zps(dt))


def int_array(draw: st.DrawFn, dtype: DType | np.dtype, shape: Sequence[int],
              elements: st.SearchStrategy[int] | None = None) -> np.ndarray:
    npdt = dtype.np if isinstance(dtype, DType) else np.dtype(dtype)
    if elements is None:
        info = np.iinfo(npdt)
        elements = st.integers(int(info.min), int(info.max))
    return draw(hnp.arrays(npdt, tuple(shape), elements=elements))


def any_array(draw: st.DrawFn, dtype: DType, shape: Sequence[int]) -> np.ndarray:
    if dtype == FLOAT32:
        return draw(hnp.arrays(np.float32, tuple(shape), elements=st.floats(width=32, allow_nan=False)))
    if dtype == BOOL:
        return draw(hnp.arrays(np.bool_, tuple(shape), elements=st.booleans()))
    return int_array(draw, dtype, shape)


@st.composite
def mult_shift(draw: st.DrawFn) -> tuple[int, int]:
    """A requantization pair: either from a plausible real multiplier or anywhere in the legal range."""
    if draw(st.booleans()):
        return quantize_multiplier(draw(st.floats(1e-5, 4.0)))
    return draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 62))


@st.composite
def qminmax(draw: st.DrawFn, dtype: DType) -> tuple[int, int]:
    lo, hi = QRANGE[dtype]
    if draw(st.booleans()):
        return lo, hi
    a, b = sorted((draw(st.integers(lo, hi)), draw(st.integers(lo, hi))))
    return a, b


@st.composite
def requant_out(draw: st.DrawFn, n: int) -> tuple[DType, float, int, np.ndarray, np.ndarray, int, int]:
    """Output dtype/scale/zp, per-channel (size n) or per-tensor (size 1) mult/shift arrays, qmin/qmax."""
    dt, scale, zp = draw(qspec())
    size = n if draw(st.booleans()) else 1
    pairs = [draw(mult_shift()) for _ in range(size)]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    lo, hi = draw(qminmax(dt))
    return dt, scale, zp, mult, shift, lo, hi


# ---------------------------------------------------------------------------------------------
# quantization boundary


@covers("quantize")
@SETTINGS
@given(st.data())
def test_quantize(data: st.DataObject) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    odt, scale, zp = data.draw(qspec())
    s32 = np.float32(scale)
    near_ties = st.integers(-600, 600).map(lambda k: float(np.float32(k * 0.5) * s32))
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.one_of(st.floats(width=32, allow_nan=False), near_ties)))
    dyn = data.draw(st.booleans())
    y = check(one_node("quantize", [act("x", FLOAT32, shape, dyn=dyn)], act("y", odt, shape, scale, zp, dyn)), [x])
    # independent: round half to even of the float32 quotient, saturated
    lo, hi = QRANGE[odt]
    for i in np.ndindex(shape):
        q = np.float32(x[i]) / s32
        want = lo if q == -np.inf else hi if q == np.inf else min(max(int(np.rint(q)) + zp, lo), hi)
        assert int(y[i]) == want


@covers("dequantize")
@SETTINGS
@given(st.data())
def test_dequantize(data: st.DataObject) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    dt, scale, zp = data.draw(qspec())
    x = int_array(data.draw, dt, shape)
    dyn = data.draw(st.booleans())
    y = check(one_node("dequantize", [act("x", dt, shape, scale, zp, dyn)], act("y", FLOAT32, shape, dyn=dyn)), [x])
    for i in np.ndindex(shape):
        assert y[i] == np.float32(int(x[i]) - zp) * np.float32(scale)


def test_quantize_nan_is_an_input_error_on_both_paths() -> None:
    b = one_node("quantize", [act("x", FLOAT32, (3,))], act("y", INT8, (3,), 0.1, 0))
    x = np.array([1.0, np.nan, 2.0], dtype=np.float32)
    with pytest.raises(InferenceInputError, match="NaN"):
        run(b, [x])
    with pytest.raises(InferenceInputError, match="NaN"):
        run_reference(b, [x])


# ---------------------------------------------------------------------------------------------
# integer GEMM ops


def _gemm_node(op: str, x: TensorSpec, w: np.ndarray, bias: np.ndarray, out_shape: tuple[int, ...], raw: bool,
               rq: tuple, dyn: bool, **attrs: object) -> Bundle:
    ins = [x, const("w", w), const("b", bias)]
    if raw:
        return one_node(op, ins, act("y", INT32, out_shape, dyn=dyn), qmin=0, qmax=0, **attrs)
    dt, scale, zp, mult, shift, lo, hi = rq
    ins += [const("mult", mult), const("shift", shift)]
    return one_node(op, ins, act("y", dt, out_shape, scale, zp, dyn), qmin=lo, qmax=hi, **attrs)


@covers("linear")
@SETTINGS
@given(st.data())
def test_linear(data: st.DataObject) -> None:
    draw = data.draw
    k, n = draw(st.integers(1, 40)), draw(st.integers(1, 6))
    lead = draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=4))
    xdt, xs, xzp = draw(qspec())
    x = int_array(draw, xdt, lead + (k,))
    wide = draw(st.integers(0, 3)) == 0  # int16 weights (uint8 weights minus their zero point)
    w = int_array(draw, INT16, (k, n), st.integers(-255, 255)) if wide else int_array(draw, INT8, (k, n))
    bias = int_array(draw, INT32, (n,), INT32_SMALL_OR_ANY)
    raw = draw(st.booleans())
    rq = None if raw else draw(requant_out(n))
    dyn = draw(st.booleans())
    b = _gemm_node("linear", act("x", xdt, x.shape, xs, xzp, dyn), w, bias, lead + (n,), raw, rq, dyn)
    y = check(b, [x])
    if raw:  # independent: exact int64 GEMM, saturated to int32
        acc = (x.reshape(-1, k).astype(np.int64) - xzp) @ w.astype(np.int64) + bias
        assert np.array_equal(y.reshape(-1, n), np.clip(acc, -(2**31), 2**31 - 1))


@pytest.mark.parametrize(
    "xdt,wdt,k",
    [(INT8, INT8, 1024), (INT8, INT8, 1025), (INT8, INT8, 2100), (UINT8, INT8, 512), (UINT8, INT8, 1500),
     (INT8, INT16, 1100), (UINT8, INT16, 700)],
)
def test_linear_k_chunking_is_exact(xdt: DType, wdt: DType, k: int) -> None:
    """K beyond one chunk, with extreme operands (every partial sum at the float32 limit)."""
    rng = np.random.default_rng(k)
    lo, hi = QRANGE[xdt]
    x = np.stack([np.full(k, lo), np.full(k, hi), rng.integers(lo, hi + 1, k)]).astype(xdt.np)
    wlo, whi = (-128, 127) if wdt == INT8 else (-255, 255)
    w = np.stack([np.full(k, wlo), np.full(k, whi), rng.integers(wlo, whi + 1, k)], axis=1).astype(wdt.np)
    bias = np.zeros(3, np.int32)
    y = check(_gemm_node("linear", act("x", xdt, x.shape, 0.1, 0), w, bias, (3, 3), True, None, False), [x])
    assert np.array_equal(y, np.clip(x.astype(np.int64) @ w.astype(np.int64), -(2**31), 2**31 - 1))


@pytest.mark.parametrize("op", ["linear", "conv"])
def test_int16_weights_outside_the_chunk_bound_are_exact_or_rejected(op: str) -> None:
    """A bundle is external input: int16 weights beyond +-255 break the 2^24 chunk bound of the float32
    GEMM. The engine must then either reject the bundle (an OpmlError) or still compute exactly; a
    silently rounded (and BLAS-order dependent) result would break consensus."""
    rng = np.random.default_rng(1)
    k = 512
    w = rng.integers(-32768, 32768, size=(k, 3)).astype(np.int16)
    x = rng.integers(-128, 128, size=(4, k)).astype(np.int8)
    bias = np.zeros(3, np.int32)
    if op == "linear":
        b = _gemm_node("linear", act("x", INT8, x.shape, 0.1, 0), w, bias, (4, 3), True, None, False)
        inputs = [x]
    else:
        b = _gemm_node("conv", act("x", INT8, (4, k, 1, 1), 0.1, 0), np.ascontiguousarray(w.T).reshape(3, k, 1, 1),
                       bias, (4, 3, 1, 1), True, None, False, pads=[0, 0, 0, 0], strides=[1, 1], dilations=[1, 1],
                       group=1)
        inputs = [x.reshape(4, k, 1, 1)]
    try:
        fast = run(b, inputs)[0]
    except OpmlError:
        return
    exact = x.astype(np.int64) @ w.astype(np.int64)
    assert np.array_equal(fast.reshape(4, 3), exact), "int16 weights gave an inexact (BLAS-dependent) GEMM"


@st.composite
def conv_case(draw: st.DrawFn) -> dict:
    group = draw(st.integers(1, 3))
    depthwise = draw(st.booleans())
    cg = 1 if depthwise else draw(st.integers(1, 3))
    mg = draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    h = draw(st.integers(max(1, eh - pads[0] - pads[2]), max(1, eh - pads[0] - pads[2]) + 4))
    w = draw(st.integers(max(1, ew - pads[1] - pads[3]), max(1, ew - pads[1] - pads[3]) + 4))
    oh = (h + pads[0] + pads[2] - eh) // sh + 1
    ow = (w + pads[1] + pads[3] - ew) // sw + 1
    return dict(b=draw(st.integers(1, 2)), c=group * cg, m=group * mg, cg=cg, kh=kh, kw=kw, h=h, w=w, oh=oh, ow=ow,
                attrs=dict(pads=pads, strides=[sh, sw], dilations=[dh, dw], group=group))


@covers("conv")
@FEW
@given(st.data(), conv_case())
def test_conv(data: st.DataObject, cc: dict) -> None:
    draw = data.draw
    xdt, xs, xzp = draw(qspec())
    x = int_array(draw, xdt, (cc["b"], cc["c"], cc["h"], cc["w"]))
    w = int_array(draw, INT8, (cc["m"], cc["cg"], cc["kh"], cc["kw"]))
    bias = int_array(draw, INT32, (cc["m"],), INT32_SMALL_OR_ANY)
    raw = draw(st.booleans())
    rq = None if raw else draw(requant_out(cc["m"]))
    dyn = draw(st.booleans())
    b = _gemm_node("conv", act("x", xdt, x.shape, xs, xzp, dyn), w, bias, (cc["b"], cc["m"], cc["oh"], cc["ow"]), raw,
                   rq, dyn, **cc["attrs"])
    check(b, [x])


@pytest.mark.parametrize("zp", [-129, 128, 300, -1000])
def test_conv_zero_point_outside_the_dtype_range(zp: int) -> None:
    """The bundle format allows any int32 zero point; padding must contribute (zp - zp) = 0 in both paths."""
    x = np.arange(-4, 5, dtype=np.int8).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 3, 3), np.int8)
    b = _gemm_node("conv", act("x", INT8, x.shape, 0.1, zp), w, np.zeros(1, np.int32), (1, 1, 3, 3), True, None, False,
                   pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1)
    try:
        check(b, [x])
    except OpmlError:  # rejecting such a bundle is acceptable too
        pass


@st.composite
def batch_pair(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Broadcast-compatible batch shapes of the two matmul operands."""
    full = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))

    def part() -> tuple[int, ...]:
        drop = draw(st.integers(0, len(full)))
        return tuple(1 if draw(st.booleans()) else d for d in full[drop:])

    return part(), part()


@covers("matmul")
@SETTINGS
@given(st.data(), batch_pair())
def test_matmul(data: st.DataObject, batches: tuple) -> None:
    draw = data.draw
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    adt, as_, azp = draw(qspec())
    bdt, bs, bzp = draw(qspec())
    a = int_array(draw, adt, batches[0] + (m, k))
    bv = int_array(draw, bdt, batches[1] + (k, n))
    out_shape = np.broadcast_shapes(batches[0], batches[1]) + (m, n)
    b_const = draw(st.booleans())
    bspec = const("b", bv, bs, bzp) if b_const else act("b", bdt, bv.shape, bs, bzp)
    inputs = [a] if b_const else [a, bv]
    if draw(st.booleans()):
        bundle = one_node("matmul", [act("a", adt, a.shape, as_, azp), bspec], act("y", INT32, out_shape),
                          mult=0, shift=1, qmin=0, qmax=0)
        y = check(bundle, inputs)
        acc = np.matmul(a.astype(np.int64) - azp, bv.astype(np.int64) - bzp)
        assert np.array_equal(y, np.clip(acc, -(2**31), 2**31 - 1))
    else:
        dt, scale, zp = draw(qspec())
        mult, shift = draw(mult_shift())
        lo, hi = draw(qminmax(dt))
        bundle = one_node("matmul", [act("a", adt, a.shape, as_, azp), bspec], act("y", dt, out_shape, scale, zp),
                          mult=mult, shift=shift, qmin=lo, qmax=hi)
        check(bundle, inputs)


# ---------------------------------------------------------------------------------------------
# elementwise


@st.composite
def binary_operands(draw: st.DrawFn) -> tuple[list[TensorSpec], list[np.ndarray], tuple[int, ...]]:
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3, max_side=4))
    (sa, sb), out = shapes.input_shapes, shapes.result_shape
    adt, as_, azp = draw(qspec())
    bdt, bs, bzp = draw(qspec())
    a, bv = int_array(draw, adt, sa), int_array(draw, bdt, sb)
    if draw(st.booleans()):
        return [act("a", adt, sa, as_, azp), const("b", bv, bs, bzp)], [a], out
    return [act("a", adt, sa, as_, azp), act("b", bdt, sb, bs, bzp)], [a, bv], out


@covers("add")
@SETTINGS
@given(st.data(), binary_operands())
def test_add(data: st.DataObject, operands: tuple) -> None:
    draw = data.draw
    ins, values, out_shape = operands
    dt, scale, zp = draw(qspec())
    if draw(st.booleans()):  # as the converter chooses them: the larger multiplier uses 30 bits
        shift = 30
        am, bm = draw(st.integers(1, 2**30)), draw(st.integers(1, 2**30))
    else:
        shift = draw(st.integers(1, 62))
        am, bm = draw(INT32_ANY), draw(INT32_ANY)
    if draw(st.booleans()):
        bm = -bm  # Sub
    lo, hi = draw(qminmax(dt))
    check(one_node("add", ins, act("y", dt, out_shape, scale, zp), a_mult=am, b_mult=bm, shift=shift, qmin=lo,
                   qmax=hi), values)


@covers("mul")
@SETTINGS
@given(st.data(), binary_operands())
def test_mul(data: st.DataObject, operands: tuple) -> None:
    draw = data.draw
    ins, values, out_shape = operands
    dt, scale, zp = draw(qspec())
    mult, shift = draw(mult_shift())
    lo, hi = draw(qminmax(dt))
    check(one_node("mul", ins, act("y", dt, out_shape, scale, zp), mult=mult, shift=shift, qmin=lo, qmax=hi), values)


@covers("lut")
@SETTINGS
@given(st.data())
def test_lut(data: st.DataObject) -> None:
    draw = data.draw
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    xdt, xs, xzp = draw(qspec())
    tdt, ts, tzp = draw(qspec())
    table = int_array(draw, tdt, (256,))
    x = int_array(draw, xdt, shape)
    dyn = draw(st.booleans())
    b = one_node("lut", [act("x", xdt, shape, xs, xzp, dyn), const("t", table)], act("y", tdt, shape, ts, tzp, dyn))
    y = check(b, [x])
    off = 128 if xdt == INT8 else 0
    assert all(y[i] == table[int(x[i]) + off] for i in np.ndindex(shape))


@covers("softmax")
@SETTINGS
@given(st.data())
def test_softmax(data: st.DataObject) -> None:
    draw = data.draw
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    xdt, xs, xzp = draw(qspec())
    if draw(st.booleans()):
        table = softmax_exp_table(xs)
    else:
        table = int_array(draw, INT32, (256,), st.integers(0, 2**30))
    x = int_array(draw, xdt, shape)
    dt, _, zp = draw(qspec())
    check(one_node("softmax", [act("x", xdt, shape, xs, xzp), const("t", table)], act("y", dt, shape, 1 / 256, zp),
                   axis=axis), [x])


@covers("layernorm")
@SETTINGS
@given(st.data())
def test_layernorm(data: st.DataObject) -> None:
    draw = data.draw
    n = draw(st.integers(1, 12))
    lead = draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
    xdt, xs, xzp = draw(qspec())
    x = int_array(draw, xdt, lead + (n,))
    gamma = int_array(draw, INT32, (n,), st.integers(-8191, 8191))
    beta = int_array(draw, INT32, (n,), INT32_SMALL_OR_ANY)
    eps = draw(st.one_of(st.integers(0, 1000), st.integers(0, 2**40)))
    frac = draw(st.integers(0, 16))
    dt, scale, zp = draw(qspec())
    mult, shift = draw(mult_shift())
    lo, hi = draw(qminmax(dt))
    dyn = bool(lead) and draw(st.booleans())
    check(one_node("layernorm", [act("x", xdt, x.shape, xs, xzp, dyn), const("g", gamma), const("b", beta)],
                   act("y", dt, x.shape, scale, zp, dyn), eps=eps, frac_bits=frac, mult=mult, shift=shift, qmin=lo,
                   qmax=hi), [x])


# ---------------------------------------------------------------------------------------------
# pooling and reductions


@st.composite
def pool_case(draw: st.DrawFn, pads_below_kernel: bool, dilated: bool) -> dict:
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilated else (1, 1)
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if pads_below_kernel:
        pads = [draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)), draw(st.integers(0, kh - 1)),
                draw(st.integers(0, kw - 1))]
    else:
        pads = [draw(st.integers(0, 2)) for _ in range(4)]
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    h = draw(st.integers(max(1, eh - pads[0] - pads[2]), max(1, eh - pads[0] - pads[2]) + 4))
    w = draw(st.integers(max(1, ew - pads[1] - pads[3]), max(1, ew - pads[1] - pads[3]) + 4))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    out = shape[:2] + ((h + pads[0] + pads[2] - eh) // sh + 1, (w + pads[1] + pads[3] - ew) // sw + 1)
    attrs = dict(kernel=[kh, kw], strides=[sh, sw], pads=pads)
    if dilated:
        attrs["dilations"] = [dh, dw]
    return dict(shape=shape, out=out, attrs=attrs)


@covers("maxpool")
@SETTINGS
@given(st.data(), pool_case(pads_below_kernel=False, dilated=True))
def test_maxpool(data: st.DataObject, pc: dict) -> None:
    xdt, xs, xzp = data.draw(qspec())
    x = int_array(data.draw, xdt, pc["shape"])
    dyn = data.draw(st.booleans())
    check(one_node("maxpool", [act("x", xdt, x.shape, xs, xzp, dyn)], act("y", xdt, pc["out"], xs, xzp, dyn),
                   **pc["attrs"]), [x])


@covers("avgpool")
@SETTINGS
@given(st.data(), pool_case(pads_below_kernel=True, dilated=False))
def test_avgpool(data: st.DataObject, pc: dict) -> None:
    draw = data.draw
    xdt, xs, xzp = draw(qspec())
    x = int_array(draw, xdt, pc["shape"])
    dt, scale, zp = draw(qspec())
    mult, shift = draw(st.one_of(st.just((1 << 30, 30)), mult_shift()))
    inc = draw(st.integers(0, 1))
    dyn = draw(st.booleans())
    check(one_node("avgpool", [act("x", xdt, x.shape, xs, xzp, dyn)], act("y", dt, pc["out"], scale, zp, dyn),
                   count_include_pad=inc, mult=mult, shift=shift, **pc["attrs"]), [x])


def test_avgpool_window_entirely_in_padding_is_rejected() -> None:
    """pads >= kernel puts whole windows in the padding: with count_include_pad=0 their count is 0 and
    the average is undefined (the reference divides by zero). The engine must refuse such a bundle
    with an OpmlError, not return the result of a numpy division by zero."""
    b = one_node("avgpool", [act("x", INT8, (1, 1, 2, 2), 0.1, 0)], act("y", INT8, (1, 1, 4, 4), 0.1, 0),
                 kernel=[1, 1], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0, mult=1 << 30, shift=30)
    with pytest.raises(OpmlError):
        run(b, [np.full((1, 1, 2, 2), 5, np.int8)])


@covers("reduce")
@SETTINGS
@given(st.data())
def test_reduce(data: st.DataObject) -> None:
    draw = data.draw
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    axes = draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True))
    mode = draw(st.sampled_from([REDUCE_SUM, REDUCE_MEAN, REDUCE_L2, REDUCE_MAX]))
    keep = draw(st.integers(0, 1))
    xdt, xs, xzp = draw(qspec())
    x = int_array(draw, xdt, shape)
    out_shape = tuple(1 if a in axes else d for a, d in enumerate(shape) if keep or a not in axes)
    if mode == REDUCE_MAX:
        out, mult, shift = act("y", xdt, out_shape, xs, xzp), 0, 1
    else:
        dt, scale, zp = draw(qspec())
        out = act("y", dt, out_shape, scale, zp)
        mult, shift = draw(mult_shift())
    y = check(one_node("reduce", [act("x", xdt, shape, xs, xzp)], out, mode=mode, axes=axes, keepdims=keep, mult=mult,
                       shift=shift), [x])
    if mode == REDUCE_MAX:
        assert np.array_equal(y, x.max(axis=tuple(axes), keepdims=bool(keep)))


@pytest.mark.parametrize("mode", [REDUCE_SUM, REDUCE_MEAN, REDUCE_L2])
@pytest.mark.parametrize("shift", [60, 61, 62])
def test_reduce_large_shift(mode: int, shift: int) -> None:
    """Shifts up to 62 are legal (docs/bundle.md); round_div's ``count << shift`` must not overflow."""
    x = np.array([[1, 2, 3, 4], [-5, 6, -7, 8]], dtype=np.int8)
    for mult in (0, 1, 2**31 - 1):
        check(one_node("reduce", [act("x", INT8, x.shape, 0.1, 0)], act("y", INT8, (2,), 0.1, 3), mode=mode, axes=[1],
                       keepdims=0, mult=mult, shift=shift), [x])


@pytest.mark.parametrize("shift", [60, 61, 62])
def test_avgpool_large_shift(shift: int) -> None:
    x = np.arange(16, dtype=np.int8).reshape(1, 1, 4, 4)
    for mult in (0, 1, 2**31 - 1):
        check(one_node("avgpool", [act("x", INT8, x.shape, 0.1, 0)], act("y", INT8, (1, 1, 2, 2), 0.1, 0),
                       kernel=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], count_include_pad=1, mult=mult, shift=shift),
              [x])


# ---------------------------------------------------------------------------------------------
# data movement (shared numpy code with the reference: each also has an independent oracle)


def _divisors(v: int) -> list[int]:
    return [d for d in range(1, v + 1) if v % d == 0]


@st.composite
def factorization(draw: st.DrawFn, total: int) -> tuple[int, ...]:
    nd = draw(st.integers(1, 4))
    dims, rem = [], total
    for _ in range(nd - 1):
        d = draw(st.sampled_from(_divisors(rem)))
        dims.append(d)
        rem //= d
    return tuple(dims + [rem])


@covers("reshape")
@SETTINGS
@given(st.data())
def test_reshape(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    x = any_array(draw, dt, shape)
    if draw(st.booleans()):  # dynamic batch: (-1, rest...) -> (-k, rest'...)
        per = int(np.prod(shape[1:], dtype=np.int64))
        k = draw(st.sampled_from(_divisors(per)))
        rest = draw(factorization(per // k))
        bundle = one_node("reshape", [act("x", dt, shape, dyn=True)], TensorSpec("y", dt, (-k,) + rest))
        out_shape = (k * shape[0],) + rest
    else:
        out_shape = draw(factorization(x.size))
        bundle = one_node("reshape", [act("x", dt, shape)], act("y", dt, out_shape))
    y = check(bundle, [x])
    assert y.shape == out_shape and y.tobytes() == x.tobytes()


@covers("transpose")
@SETTINGS
@given(st.data())
def test_transpose(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    perm = draw(st.permutations(range(len(shape))))
    x = any_array(draw, dt, shape)
    out_shape = tuple(shape[p] for p in perm)
    dyn = perm[0] == 0 and draw(st.booleans())
    y = check(one_node("transpose", [act("x", dt, shape, dyn=dyn)], act("y", dt, out_shape, dyn=dyn), perm=perm), [x])
    for i in np.ndindex(out_shape):
        src = [0] * len(shape)
        for j, p in enumerate(perm):
            src[p] = i[j]
        assert y[i].tobytes() == x[tuple(src)].tobytes()


@covers("concat")
@SETTINGS
@given(st.data())
def test_concat(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    base = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3))
    axis = draw(st.integers(0, len(base) - 1))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    xs = [any_array(draw, dt, base[:axis] + (s,) + base[axis + 1:]) for s in sizes]
    out_shape = base[:axis] + (sum(sizes),) + base[axis + 1:]
    ins = [act(f"x{i}", dt, x.shape) for i, x in enumerate(xs)]
    y = check(one_node("concat", ins, act("y", dt, out_shape), axis=axis), xs)
    start = 0
    for x in xs:
        idx = (slice(None),) * axis + (slice(start, start + x.shape[axis]),)
        assert y[idx].tobytes() == x.tobytes()
        start += x.shape[axis]


@covers("slice")
@SETTINGS
@given(st.data())
def test_slice(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
    x = any_array(draw, dt, shape)
    dyn = draw(st.booleans())
    starts, ends, steps, ranges = [], [], [], []
    for a, d in enumerate(shape):
        if a == 0 and dyn:  # what the converter emits for the batch axis
            s, e, st_ = 0, 1 << 62, 1
            r = range(d)
        else:  # normalized values (slice.indices), the canonical form: 0 <= start, end >= -1
            raw = slice(draw(st.integers(-d - 2, d + 2)), draw(st.integers(-d - 2, d + 2)),
                        draw(st.sampled_from([-3, -2, -1, 1, 2, 3])))
            s, e, st_ = raw.indices(d)
            r = range(s, e, st_)
            if s < 0:  # an empty backward range starting before the first element (see test_convert_ops)
                s, e = 0, 0
        starts.append(s), ends.append(e), steps.append(st_), ranges.append(list(r))
    out_shape = tuple(len(r) for r in ranges)
    y = check(one_node("slice", [act("x", dt, shape, dyn=dyn)], act("y", dt, out_shape, dyn=dyn), starts=starts,
                       ends=ends, steps=steps), [x])
    if all(out_shape):
        assert y.tobytes() == x[np.ix_(*ranges)].tobytes()


@covers("gather")
@SETTINGS
@given(st.data())
def test_gather(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    axis = draw(st.integers(0, len(shape) - 1))
    n = shape[axis]
    idt = draw(st.sampled_from([INT64, INT32]))
    ishape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    idx = int_array(draw, idt, ishape, st.integers(-n, n - 1))
    x = any_array(draw, dt, shape)
    out_shape = shape[:axis] + ishape + shape[axis + 1:]
    mode = draw(st.sampled_from(["data_act", "idx_act", "both_act"]))
    dspec = const("x", x) if mode == "idx_act" else act("x", dt, shape)
    ispec = const("i", idx) if mode == "data_act" else act("i", idt, ishape)
    values = [v for v, s in ((x, dspec), (idx, ispec)) if not s.is_const]
    y = check(one_node("gather", [dspec, ispec], act("y", dt, out_shape), axis=axis), values)
    for o in np.ndindex(out_shape):
        pre, j, post = o[:axis], o[axis:axis + len(ishape)], o[axis + len(ishape):]
        assert y[o].tobytes() == x[pre + (int(idx[j]) % n,) + post].tobytes()


def test_gather_index_out_of_range() -> None:
    b = one_node("gather", [const("x", np.arange(6, dtype=np.int8)), act("i", INT64, (2,))], act("y", INT8, (2,)),
                 axis=0)
    for bad in ([0, 6], [-7, 0]):
        with pytest.raises(InferenceInputError, match="out of range"):
            run(b, [np.array(bad, np.int64)])


@covers("argmax")
@SETTINGS
@given(st.data())
def test_argmax(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from([INT8, UINT8, INT32, FLOAT32]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    axis, keep, last = draw(st.integers(0, len(shape) - 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1))
    if dt == FLOAT32:
        x = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([-np.inf, -1.5, 0.0, 2.0, np.inf])))
    else:
        x = int_array(draw, dt, shape, st.integers(0, 2))  # many ties
    out_shape = tuple(1 if a == axis else d for a, d in enumerate(shape) if keep or a != axis)
    y = check(one_node("argmax", [act("x", dt, shape)], act("y", INT64, out_shape), axis=axis, keepdims=keep,
                       select_last_index=last), [x])
    moved = np.moveaxis(x, axis, -1)
    for i in np.ndindex(moved.shape[:-1]):
        row = moved[i].tolist()
        best = max(row)
        want = max(j for j, v in enumerate(row) if v == best) if last else row.index(best)
        o = i[:axis] + ((0,) if keep else ()) + i[axis:]
        assert int(y[o]) == want


def _int_to_f32(v: int) -> np.float32:
    """Correctly rounded (ties to even) float32 of an integer, in integer arithmetic."""
    a = abs(v)
    if a.bit_length() > 24:
        sh = a.bit_length() - 24
        q, r = divmod(a, 1 << sh)
        half = 1 << (sh - 1)
        if r > half or (r == half and q & 1):
            q += 1
        a = q << sh
    return np.float32(-a if v < 0 else a)


def _cast_oracle(v: object, src: DType, dst: DType) -> object:
    if dst == BOOL:
        return bool(v != 0)
    if src == BOOL:
        v = int(bool(v))
    if dst == FLOAT32:
        return np.float32(v) if src == FLOAT32 else _int_to_f32(int(v))
    info = np.iinfo(dst.np)
    if src == FLOAT32:
        f = float(v)
        if math.isinf(f):
            return int(info.max) if f > 0 else int(info.min)
        return min(max(math.trunc(f), int(info.min)), int(info.max))  # saturating
    bits = 8 * dst.np.itemsize
    w = int(v) % (1 << bits)  # integer narrowing wraps (two's complement)
    return w - (1 << bits) if info.min < 0 and w >= 1 << (bits - 1) else w


@covers("cast")
@SETTINGS
@given(st.data())
def test_cast(data: st.DataObject) -> None:
    draw = data.draw
    src, dst = draw(st.sampled_from(ALL_DTYPES)), draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=5))
    if src == FLOAT32:
        big = st.sampled_from([2.0**31, -(2.0**31), 2.0**63, -(2.0**63), 2.0**31 - 128, 255.5, -0.5, -128.9, 1e30])
        x = draw(hnp.arrays(np.float32, shape, elements=st.one_of(st.floats(width=32, allow_nan=False), big)))
    else:
        x = any_array(draw, src, shape)
    y = check(one_node("cast", [act("x", src, shape)], act("y", dst, shape)), [x])
    for i in np.ndindex(shape):
        want = _cast_oracle(x[i], src, dst)
        got = y[i]
        assert np.array(got).tobytes() == np.array(want, dtype=dst.np).tobytes(), (x[i], src, dst, got, want)


def test_scalar_input_keeps_its_shape() -> None:
    """A 0-d graph input stays 0-d (np.ascontiguousarray would make it 1-d)."""
    b = one_node("cast", [act("x", INT32, ())], act("y", INT64, ()))
    check(b, [np.array(7, np.int32)])
    g = one_node("gather", [const("x", np.arange(5, dtype=np.int8)), act("i", INT64, ())], act("y", INT8, ()), axis=0)
    assert check(g, [np.array(-2, np.int64)]) == 3


def test_cast_nan_to_int_is_an_input_error() -> None:
    b = one_node("cast", [act("x", FLOAT32, (2,))], act("y", INT32, (2,)))
    with pytest.raises(InferenceInputError, match="NaN"):
        run(b, [np.array([1.0, np.nan], np.float32)])


@covers("flip_sign_bit")
@SETTINGS
@given(st.data())
def test_flip_sign_bit(data: st.DataObject) -> None:
    src = data.draw(st.sampled_from(Q_DTYPES))
    dst = UINT8 if src == INT8 else INT8
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    x = int_array(data.draw, src, shape)
    dyn = data.draw(st.booleans())
    y = check(one_node("flip_sign_bit", [act("x", src, shape, 0.5, 3, dyn)], act("y", dst, shape, 0.5, 3 + 128, dyn)),
              [x])
    assert np.array_equal(y.astype(np.int64), x.astype(np.int64) + (128 if src == INT8 else -128))


@covers("where")
@SETTINGS
@given(st.data())
def test_where(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=1, max_dims=3, max_side=3))
    sc, sx, sy = shapes.input_shapes
    c = draw(hnp.arrays(np.bool_, sc, elements=st.booleans()))
    x, y = any_array(draw, dt, sx), any_array(draw, dt, sy)
    out = check(one_node("where", [act("c", BOOL, sc), act("x", dt, sx), act("y", dt, sy)],
                         act("z", dt, shapes.result_shape)), [c, x, y])
    cb, xb, yb = np.broadcast_arrays(c, x, y)
    for i in np.ndindex(shapes.result_shape):
        assert out[i].tobytes() == (xb[i] if cb[i] else yb[i]).tobytes()


# ---------------------------------------------------------------------------------------------
# coverage and whole models


def test_every_op_is_covered() -> None:
    """A new op in opml.ops needs a differential test here (decorated with @covers)."""
    missing = sorted(set(BY_NAME) - set(COVERED))
    assert not missing, f"ops without an engine == reference test: {missing}"


def _all_tensors_variant(b: Bundle) -> Bundle:
    """The same graph with every node output also declared a graph output (to compare intermediates)."""
    outs = tuple(dict.fromkeys(b.outputs + tuple(n.outputs[0] for n in b.nodes)))
    return Bundle(b.tensors, b.nodes, b.inputs, outs, b.metadata)


# samples compared per model (the reference runs the CNN at ~0.3 s per sample)
MODEL_SAMPLES = {"digits_mlp": 16, "digits_cnn": 3, "encoder": 8}


@pytest.mark.parametrize("name", sorted(MODEL_SAMPLES))
def test_example_model_engine_equals_reference(examples: dict, name: str) -> None:
    ex = examples[name]
    n = MODEL_SAMPLES[name]
    x = np.concatenate([ex.test_x[:n - 1], ex.test_x[-1:]])
    b = _all_tensors_variant(ex.bundle)
    fast, ref = run(b, [x]), run_reference(b, [x])
    for spec, f, r in zip(b.output_specs(), fast, ref, strict=True):
        assert f.dtype == r.dtype and f.shape == r.shape, spec.name
        assert f.tobytes() == r.tobytes(), f"{name}: tensor {spec.name!r} differs between engine and reference"
    # the batched engine run equals per-sample runs (no cross-sample effects)
    single = np.concatenate([run(ex.bundle, [x[i:i + 1]])[0] for i in range(n)])
    assert single.tobytes() == fast[0].tobytes()
