"""Fast path (``opml.engine`` / ``opml.kernels``) == reference interpreter (``opml.reference``), bit for bit:
the arithmetic ops (quantization boundary, integer GEMMs, elementwise, pooling and reductions).

Every primitive op of ``opml.ops`` gets a hypothesis test that builds one-node bundles by hand (small
shapes: the reference is pure Python), runs them through the engine and through ``run_reference``
and compares the output bytes, dtype and shape (which must also equal the bundle's declared output
spec); the shared helpers are in ``engine_cases.py``. The data-movement ops, the coverage check and
the whole example models are in ``test_engine_reference_layout.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_cases import (
    FEW,
    FLOAT32,
    INT8,
    INT16,
    INT32,
    INT32_ANY,
    INT32_SMALL_OR_ANY,
    QRANGE,
    SETTINGS,
    UINT8,
    _gemm_node,
    act,
    check,
    const,
    covers,
    int_array,
    mult_shift,
    one_node,
    qminmax,
    qspec,
    requant_out,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from opml.bundle import Bundle, DType, TensorSpec
from opml.engine import run
from opml.errors import InferenceInputError, OpmlError
from opml.lut import softmax_exp_table
from opml.ops import REDUCE_L2, REDUCE_MAX, REDUCE_MEAN, REDUCE_SUM
from opml.reference import run_reference

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


@SETTINGS
@given(st.data())
def test_linear_int16_output(data: st.DataObject) -> None:
    """Linear layers that requantize into int16 (the wide residual path of converted transformers)."""
    draw = data.draw
    k, n = draw(st.integers(1, 40)), draw(st.integers(1, 20))
    xdt, xs, xzp = draw(qspec())
    x = int_array(draw, xdt, (draw(st.integers(1, 9)), k))
    w = int_array(draw, INT8, (k, n))
    bias = int_array(draw, INT32, (n,), INT32_SMALL_OR_ANY)
    size = n if draw(st.booleans()) else 1
    pairs = [draw(mult_shift()) for _ in range(size)]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    lo, hi = sorted((draw(st.integers(-32768, 32767)), draw(st.integers(-32768, 32767))))
    if draw(st.booleans()):
        lo, hi = -32768, 32767
    rq = (INT16, 0.01, draw(st.integers(-32768, 32767)), mult, shift, lo, hi)
    check(_gemm_node("linear", act("x", xdt, x.shape, xs, xzp, False), w, bias, (x.shape[0], n), False, rq, False),
          [x])


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
    dyn = bool(lead) and draw(st.booleans())
    check(_layernorm_node(draw, act("x", xdt, x.shape, xs, xzp, dyn), st.integers(-8191, 8191), INT32_SMALL_OR_ANY,
                          2**40, 16, dyn), [x])


def _layernorm_node(draw: st.DrawFn, x: TensorSpec, gammas: st.SearchStrategy[int], betas: st.SearchStrategy[int],
                    eps_max: int, frac_max: int, dyn: bool = False) -> Bundle:
    """A layernorm over ``x``'s last axis with drawn constants and output requantization."""
    n = x.shape[-1]
    gamma, beta = int_array(draw, INT32, (n,), gammas), int_array(draw, INT32, (n,), betas)
    eps = draw(st.one_of(st.integers(0, 1000), st.integers(0, eps_max)))
    frac = draw(st.integers(0, frac_max))
    dt, scale, zp = draw(qspec())
    mult, shift = draw(mult_shift())
    lo, hi = draw(qminmax(dt))
    return one_node("layernorm", [x, const("g", gamma), const("b", beta)], act("y", dt, x.shape, scale, zp, dyn),
                    eps=eps, frac_bits=frac, mult=mult, shift=shift, qmin=lo, qmax=hi)


@SETTINGS
@given(st.data())
def test_layernorm_wide_inputs_and_extremes(data: st.DataObject) -> None:
    """int16 inputs (the wide residual path) up to full range, long rows, large frac_bits and gamma: the
    int64 intermediates of the plain formula overflow here (n = 384 at +-32767 gives (v / n) << 16 ~ 2^65),
    so the engine must switch to exact arithmetic rather than wrap."""
    draw = data.draw
    n = draw(st.sampled_from([1, 2, 7, 384, 400]))
    rows = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(["extremes", "uniform", "constant"]))
    if style == "extremes":
        x = rng.choice(np.array([-32768, 32767, 0]), size=(rows, n)).astype(np.int16)
    elif style == "uniform":
        x = rng.integers(-32768, 32768, size=(rows, n)).astype(np.int16)
    else:
        x = np.full((rows, n), draw(st.integers(-32768, 32767)), dtype=np.int16)
    check(_layernorm_node(draw, act("x", INT16, x.shape, 0.01, 0), INT32_ANY, INT32_ANY, 2**62, 32), [x])


@pytest.mark.parametrize("eps,frac", [(-1, 10), (5, -1), (5, 33)])
def test_layernorm_rejects_out_of_range_attributes(eps: int, frac: int) -> None:
    b = one_node("layernorm", [act("x", INT8, (2, 4), 0.1, 0), const("g", np.ones(4, np.int32)),
                               const("b", np.zeros(4, np.int32))],
                 act("y", INT8, (2, 4), 0.1, 0), eps=eps, frac_bits=frac, mult=1 << 30, shift=31, qmin=-128, qmax=127)
    with pytest.raises(OpmlError, match="eps >= 0 and frac_bits"):
        run(b, [np.zeros((2, 4), np.int8)])


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


