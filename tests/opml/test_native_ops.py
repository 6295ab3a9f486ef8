"""The native softmax, layernorm and table lookups equal the numpy kernels and the reference, bit for bit.

Each case is one node run three ways: the engine's kernel with the native library (the default), the
same kernel with the library hidden (its numpy path), and the reference interpreter (Python integers).
Values include the edges of the C files' bounds: all-equal rows (zero variance), rows alternating the
dtype's extremes, n = 1, long rows (the AVX2 loops' bodies and tails), large gamma (the AVX2 layernorm's
scalar fallback), negative exponent tables and multipliers. Subprocesses then compare the AVX2 and the
portable kernels, 1 and 2 threads, and the library switched off.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opml import kernels_norm, kernels_pointwise, native
from opml.bundle import Bundle, DType, decode_bundle, encode_bundle
from opml.errors import BundleError
from opml.kernels import LAYERNORM_SQRT_BITS
from opml.native import ops as native_ops
from opml.reference import run_reference

sys.path.insert(0, str(Path(__file__).parent))
from engine_cases import act, const, one_node  # noqa: E402
from native_child import child_hash  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
INT8, UINT8, INT16, INT32 = DType.INT8, DType.UINT8, DType.INT16, DType.INT32
QRANGE = {INT8: (-128, 127), UINT8: (0, 255)}
CASES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])

pytestmark = pytest.mark.skipif(not native_ops.available() and not os.environ.get("CI"), reason=native.describe())

PREPARE = {"softmax": kernels_norm.prepare_softmax, "layernorm": kernels_norm.prepare_layernorm,
           "lut": kernels_pointwise.prepare_lut, "add": kernels_pointwise.prepare_add,
           "mul": kernels_pointwise.prepare_mul}


def test_native_ops_are_loaded() -> None:
    """make install builds them with the GEMM; CI must not fall back to numpy silently."""
    assert native_ops.available(), native.describe()


@contextmanager
def numpy_only() -> Iterator[None]:
    """Hide the library from the wrappers: every kernel prepared inside takes its numpy path."""
    saved = native_ops._LIB
    native_ops._LIB = None
    try:
        yield
    finally:
        native_ops._LIB = saved


def run_node(bundle: Bundle, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """The node's kernel as the engine prepares it, on the inputs followed by the constants."""
    b = decode_bundle(encode_bundle(bundle))
    node = b.nodes[0]
    it = iter(inputs)
    args = [b.tensors[i].array() if b.tensors[i].is_const else next(it) for i in node.inputs]
    return PREPARE[node.op](node, b.tensors)(args)


def three_ways(bundle: Bundle, inputs: Sequence[np.ndarray], reference: bool = True) -> np.ndarray:
    fast = run_node(bundle, inputs)
    with numpy_only():
        plain = run_node(bundle, inputs)
    assert fast.dtype == plain.dtype and fast.shape == plain.shape
    np.testing.assert_array_equal(fast, plain)
    if reference:
        (ref,) = run_reference(decode_bundle(encode_bundle(bundle)), list(inputs))
        assert ref.dtype == fast.dtype
        np.testing.assert_array_equal(fast, ref)
    return fast


# ------------------------------------------------------------------------------------------ values


def byte_array(rng: np.random.Generator, dtype: DType, shape: tuple[int, ...], style: str,
               limit: int | None = None) -> np.ndarray:
    """Test inputs: uniform, narrow (typical activations), constant rows, or rows alternating the extremes."""
    info = np.iinfo(dtype.np)
    lo, hi = (int(info.min), int(info.max)) if limit is None else (-limit, limit)
    if style == "uniform":
        x = rng.integers(lo, hi + 1, size=shape)
    elif style == "narrow":
        mid = (lo + hi) // 2
        x = rng.integers(mid - 20, mid + 21, size=shape)
    elif style == "constant":
        x = np.broadcast_to(rng.integers(lo, hi + 1, size=shape[:-1] + (1,)), shape)
    else:  # extremes: every row alternates the minimum and the maximum
        x = np.where(np.arange(shape[-1]) % 2 == 0, lo, hi) * np.ones(shape, dtype=np.int64)
        if style == "extremes-shuffled":
            x = rng.permuted(x, axis=-1)
    return np.ascontiguousarray(x, dtype=dtype.np)


STYLES = st.sampled_from(["uniform", "narrow", "constant", "extremes", "extremes-shuffled"])
LENGTHS = st.one_of(st.integers(1, 9), st.sampled_from([15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 384, 769]))
SEEDS = st.integers(0, 2**32 - 1)


def lead_shape(draw: st.DrawFn, n: int, budget: int = 3000) -> tuple[int, ...]:
    rows = draw(st.integers(1, max(1, min(6, budget // n))))
    return (rows, n) if draw(st.booleans()) else (1, rows, n)


# ----------------------------------------------------------------------------------------- softmax


@CASES
@given(st.data(), LENGTHS, STYLES, SEEDS)
def test_softmax(data: st.DataObject, n: int, style: str, seed: int) -> None:
    draw, rng = data.draw, np.random.default_rng(seed)
    xdt, dt = draw(st.sampled_from([INT8, UINT8])), draw(st.sampled_from([INT8, UINT8]))
    shape = lead_shape(draw, n)
    kind = draw(st.sampled_from(["exp", "any", "negative", "largest"]))
    if kind == "exp":  # decreasing, as the converter's exp tables are
        table = (np.exp(-np.arange(256) / 16.0) * 2**20).astype(np.int64)
    elif kind == "any":
        table = rng.integers(0, 2**30, 256)
    elif kind == "negative":  # the spec allows any integers: negative numerators, floors below zero
        table = rng.integers(-(2**20), 2**20, 256)
    else:  # the largest table the bounds admit for this length: (512 + 3 L) tmax + 2 < 2^52
        tmax = ((1 << 52) - 3) // (512 + 3 * n)
        table = rng.integers(-tmax, tmax + 1, 256)
        table[0] = tmax
    x = byte_array(rng, xdt, shape, style)
    zp = int(rng.integers(*QRANGE[dt]))
    b = one_node("softmax", [act("x", xdt, shape, 0.1, 0), const("t", table.astype(np.int64))],
                 act("y", dt, shape, 1 / 256, zp), axis=draw(st.sampled_from([-1, len(shape) - 1])))
    y = three_ways(b, [x], reference=x.size <= 1500)
    direct = native_ops.Softmax(table, zp, *QRANGE[dt], dt.np)(x)
    assert direct is not None, "the native softmax refused a case within its bounds"
    np.testing.assert_array_equal(direct, y)


def test_softmax_outside_the_bounds_takes_numpy() -> None:
    n = 64
    table = np.full(256, ((1 << 52) - 3) // (512 + 3 * n) + 1, dtype=np.int64)
    assert native_ops.Softmax(table, 0, -128, 127, np.int8)(np.zeros((2, n), np.int8)) is None
    x = np.random.default_rng(1).integers(-128, 128, size=(2, n)).astype(np.int8)
    b = one_node("softmax", [act("x", INT8, x.shape, 0.1, 0), const("t", table)], act("y", INT8, x.shape, 1 / 256, 0),
                 axis=-1)
    three_ways(b, [x])


def test_softmax_other_axis_and_int_tables_take_numpy() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, size=(3, 5, 7)).astype(np.int8)
    table = rng.integers(0, 2**20, 256).astype(np.int32)
    b = one_node("softmax", [act("x", INT8, x.shape, 0.1, 0), const("t", table)], act("y", UINT8, x.shape, 1 / 256, 0),
                 axis=1)
    three_ways(b, [x])


# --------------------------------------------------------------------------------------- layernorm


@CASES
@given(st.data(), LENGTHS, STYLES, SEEDS)
def test_layernorm(data: st.DataObject, n: int, style: str, seed: int) -> None:
    draw, rng = data.draw, np.random.default_rng(seed)
    xdt = draw(st.sampled_from([INT8, UINT8, INT16]))
    limit = draw(st.sampled_from([4095, 32767])) if xdt == INT16 else None
    shape = lead_shape(draw, n, budget=1500)
    x = byte_array(rng, xdt, shape, style, limit)
    g = draw(st.sampled_from([1, 8191, 2**20, 2**31 - 1]))  # 2^20 and up: the AVX2 scalar fallback
    gamma = rng.integers(-g, g + 1, n).astype(np.int32)
    beta = rng.integers(-(2**31), 2**31, n).astype(np.int32) if draw(st.booleans()) else \
        rng.integers(-3000, 3001, n).astype(np.int32)
    eps = draw(st.one_of(st.integers(0, 1000), st.integers(0, 2**40)))
    frac = draw(st.integers(0, 16))
    mult = draw(st.one_of(st.integers(2**29, 2**31 - 1), st.integers(-(2**31) + 1, 2**31 - 1)))
    shift = draw(st.one_of(st.integers(40, 52), st.integers(1, 62)))
    dt = draw(st.sampled_from([INT8, UINT8]))
    lo, hi = QRANGE[dt]
    qmin, qmax = sorted(int(v) for v in rng.integers(lo, hi + 1, 2)) if draw(st.booleans()) else (lo, hi)
    zp = int(rng.integers(lo, hi + 1))
    b = one_node("layernorm", [act("x", xdt, shape, 0.1, 0), const("g", gamma), const("b", beta)],
                 act("y", dt, shape, 0.05, zp), eps=eps, frac_bits=frac, mult=mult, shift=shift, qmin=qmin, qmax=qmax)
    y = three_ways(b, [x])
    ln = native_ops.LayerNorm(gamma, beta, eps, frac, LAYERNORM_SQRT_BITS, mult, shift, zp, qmin, qmax, dt.np)
    direct = ln(x)
    if g <= 8191 and (xdt != INT16 or limit == 4095):  # well within the bounds (see norm.c)
        assert direct is not None, "the native layernorm refused a case within its bounds"
    if direct is not None:
        np.testing.assert_array_equal(direct, y)


def test_layernorm_int16_outside_the_bounds_takes_numpy() -> None:
    n = 1024
    x = np.where(np.arange(n) % 2 == 0, -32767, 32767).astype(np.int16)[None, :]
    gamma, beta = np.full(n, 100, np.int32), np.zeros(n, np.int32)
    ln = native_ops.LayerNorm(gamma, beta, 0, 10, LAYERNORM_SQRT_BITS, 2**30, 40, 0, -128, 127, np.int8)
    assert ln(x) is None
    b = one_node("layernorm", [act("x", INT16, x.shape, 0.1, 0), const("g", gamma), const("b", beta)],
                 act("y", INT8, x.shape, 0.05, 0), eps=0, frac_bits=10, mult=2**30, shift=40, qmin=-128, qmax=127)
    three_ways(b, [x], reference=False)


def test_layernorm_scalar_gamma_is_refused() -> None:
    """The spec has gamma and beta per channel: a bundle with other lengths does not encode or decode."""
    b = one_node("layernorm", [act("x", INT8, (4, 37), 0.1, 0), const("g", np.array([700], np.int32)),
                               const("b", np.array([-5], np.int32))],
                 act("y", INT8, (4, 37), 0.05, 3), eps=7, frac_bits=10, mult=1500000000, shift=45, qmin=-128,
                 qmax=127)
    with pytest.raises(BundleError, match=r"gamma 'g' has shape \(1,\), needs \(37,\)"):
        encode_bundle(b)


# ------------------------------------------------- exact quotients (the float64 estimate one too low)

# (x, frac_bits, den, eps, sign): the row [x, 0, 0, 0] has t = 3 x^2, den = isqrt(t 2^16 + eps), and the
# numerator of its element x (sign +1) or of its zeros (sign -1) is an exact multiple of den whose
# float64 estimate num * (1 / den) lies just below the quotient: the AVX2 loops' upward correction.
EXACT_LAYERNORM = [(1, 2, 6143, 37539841, 1), (1, 6, 499, 52393, 1), (2, 1, 6143, 36950017, 1),
                   (3, 5, 3781, 12526489, -1), (3, 8, 51289, 2628792049, 1), (1, 9, 786431, 618473521153, 1)]


def test_layernorm_exact_quotients() -> None:
    for v, frac, den, eps, sign in EXACT_LAYERNORM:
        assert int(np.sqrt(3 * v * v * 2**16 + eps)) == den
        num = (3 * v if sign == 1 else -v) * 2 ** (frac + LAYERNORM_SQRT_BITS) + den // 2
        assert num % den == 0 and np.floor(num * (1.0 / den)) == num // den - 1  # the case is what it claims
        x = np.array([[v, 0, 0, 0], [0, v, 0, 0], [0, 0, 0, v]] * 3, dtype=np.int8)
        gamma, beta = np.ones(4, np.int32), np.zeros(4, np.int32)
        b = one_node("layernorm", [act("x", INT8, x.shape, 0.1, 0), const("g", gamma), const("b", beta)],
                     act("y", INT8, x.shape, 0.05, 0), eps=eps, frac_bits=frac, mult=1 << 30, shift=30, qmin=-128,
                     qmax=127)
        three_ways(b, [x])


def test_softmax_exact_quotients() -> None:
    """T[0] = 9u and T[d] = 509u otherwise: in a row [m, m - 1, m - 1, m - 1], s = 1536u and the maximum's
    numerator 512 * 9u + s = 6144u is exactly 2 (2s); for some u the float64 estimate is just below 2."""
    low = 0
    for u in range(1, 200):
        low += np.floor(6144 * u * (1.0 / (3072 * u))) < 2
        table = np.full(256, 509 * u, dtype=np.int32)
        table[0] = 9 * u
        x = np.array([[5, 4, 4, 4], [4, 4, 5, 4], [-3, -4, -4, -4]] * 2, dtype=np.int8)
        b = one_node("softmax", [act("x", INT8, x.shape, 0.1, 0), const("t", table)],
                     act("y", INT8, x.shape, 1 / 256, -128), axis=-1)
        y = three_ways(b, [x], reference=u < 20)
        assert y[0, 0] == 2 - 128
    assert low > 0


# ----------------------------------------------------------------------------------------- lookups


@CASES
@given(st.data(), st.sampled_from([1, 2, 3, 31, 32, 33, 100, 4097, 50001]), SEEDS)
def test_lut(data: st.DataObject, size: int, seed: int) -> None:
    draw, rng = data.draw, np.random.default_rng(seed)
    xdt, tdt = draw(st.sampled_from([INT8, UINT8])), draw(st.sampled_from([INT8, UINT8, INT32]))
    info = np.iinfo(tdt.np)
    table = rng.integers(int(info.min), int(info.max) + 1, 256).astype(tdt.np)
    shape = (size,) if draw(st.booleans()) else (1, size)
    x = byte_array(rng, xdt, shape, draw(STYLES))
    b = one_node("lut", [act("x", xdt, shape, 0.1, 0), const("t", table)], act("y", tdt, shape, 0.1, 0))
    three_ways(b, [x], reference=size <= 5000)


def test_lut_every_byte() -> None:
    """All 256 inputs, both input dtypes, at every offset of the AVX2 blocks."""
    table = np.random.default_rng(4).integers(-128, 128, 256).astype(np.int8)
    for xdt in (INT8, UINT8):
        x = np.arange(256, dtype=np.uint8).view(xdt.np)
        for start in range(0, 40):
            xs = np.ascontiguousarray(np.roll(x, start))
            b = one_node("lut", [act("x", xdt, xs.shape, 0.1, 0), const("t", table)], act("y", INT8, xs.shape, 0.1, 0))
            three_ways(b, [xs])


BINARY_SHAPES = st.sampled_from([
    ((5,), (5,)), ((3, 17), (3, 17)), ((2, 33, 40), (33, 40)), ((33, 40), (2, 33, 40)), ((1, 8, 16), (8, 16)),
    ((2, 3, 4), (4,)), ((2, 3, 4), ()), ((4, 1), (1, 5)), ((2, 3, 4), (3, 1)), ((1, 64, 384), (64, 384)),
    ((128, 300), (128, 300)),
])


@CASES
@given(st.data(), BINARY_SHAPES, SEEDS)
def test_add_and_mul(data: st.DataObject, shapes: tuple, seed: int) -> None:
    draw, rng = data.draw, np.random.default_rng(seed)
    op = draw(st.sampled_from(["add", "mul"]))
    (sa, sb), adt, bdt, dt = shapes, *(draw(st.sampled_from([INT8, UINT8])) for _ in range(3))
    a = byte_array(rng, adt, sa, draw(STYLES)) if sa else np.array(rng.integers(0, 100), adt.np)
    bv = byte_array(rng, bdt, sb, draw(STYLES)) if sb else np.array(rng.integers(0, 100), bdt.np)
    za, zb = int(rng.integers(*QRANGE[adt])), int(rng.integers(*QRANGE[bdt]))
    lo, hi = QRANGE[dt]
    out_shape = np.broadcast_shapes(sa, sb)
    ins = [act("a", adt, sa, 0.1, za)]
    values = [a]
    if draw(st.booleans()):
        ins.append(const("b", bv, 0.2, zb))
    else:
        ins.append(act("b", bdt, sb, 0.2, zb))
        values.append(bv)
    if op == "add":
        attrs = {"a_mult": int(rng.integers(1, 2**30)), "b_mult": int(rng.integers(-(2**30), 2**30)), "shift": 30}
    else:
        attrs = {"mult": int(rng.integers(0, 2**31)), "shift": int(rng.integers(1, 63))}
    b = one_node(op, ins, act("y", dt, out_shape, 0.3, int(rng.integers(lo, hi + 1))), qmin=lo, qmax=hi, **attrs)
    three_ways(b, values, reference=int(np.prod(out_shape)) <= 5000)


def test_pair_lut_refuses_what_it_cannot_index() -> None:
    table = np.zeros(65536, np.int8)
    assert native_ops.pair_lut8(table, np.zeros((4, 1), np.int8), np.zeros((1, 5), np.int8)) is None
    assert native_ops.pair_lut8(table, np.zeros((2, 3, 4), np.int8), np.zeros((3, 1), np.int8)) is None
    assert native_ops.pair_lut8(table, np.zeros(3, np.int16), np.zeros(3, np.int8)) is None
    assert native_ops.pair_lut8(table, np.zeros((2, 3), np.int8), np.zeros((3,), np.uint8)) is not None


def test_non_contiguous_inputs() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=(6, 70)).astype(np.int8)[:, ::2]
    table = rng.integers(-128, 128, 256).astype(np.int8)
    b = one_node("lut", [act("x", INT8, x.shape, 0.1, 0), const("t", table)], act("y", INT8, x.shape, 0.1, 0))
    three_ways(b, [x])
    gamma, beta = rng.integers(-500, 500, 35).astype(np.int32), rng.integers(-500, 500, 35).astype(np.int32)
    b = one_node("layernorm", [act("x", INT8, x.shape, 0.1, 0), const("g", gamma), const("b", beta)],
                 act("y", INT8, x.shape, 0.05, 0), eps=3, frac_bits=10, mult=1 << 30, shift=40, qmin=-128, qmax=127)
    three_ways(b, [x])


# ------------------------------------------------- instruction sets, threads, library off (subprocesses)

CHILD = r"""
import hashlib, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_native_ops import cases_for_hash, run_node
from opml import native
h = hashlib.sha256()
for bundle, inputs in cases_for_hash():
    h.update(run_node(bundle, inputs).tobytes())
print(native.describe())
print("HASH " + h.hexdigest())
"""


def cases_for_hash() -> Iterator[tuple[Bundle, list[np.ndarray]]]:
    """Large enough for the thread split (for_row_ranges) and every AVX2 loop and tail."""
    rng = np.random.default_rng(11)
    for n, rows in ((384, 300), (37, 999), (1, 500), (1536, 40)):
        for xdt in (INT8, UINT8, INT16):
            for style in ("uniform", "narrow", "constant", "extremes"):
                x = byte_array(rng, xdt, (rows, n), style, 4095 if xdt == INT16 else None)
                gamma = rng.integers(-8191, 8192, n).astype(np.int32)
                beta = rng.integers(-(2**20), 2**20, n).astype(np.int32)
                yield one_node("layernorm", [act("x", xdt, x.shape, 0.1, 0), const("g", gamma), const("b", beta)],
                               act("y", INT8, x.shape, 0.05, 1), eps=5, frac_bits=10, mult=1500000000, shift=49,
                               qmin=-128, qmax=127), [x]
    table = (np.exp(-np.arange(256) / 16.0) * 2**20).astype(np.int32)
    for n, rows in ((32, 4000), (384, 200), (5, 3001)):
        for xdt in (INT8, UINT8):
            x = byte_array(rng, xdt, (rows, n), "uniform")
            yield one_node("softmax", [act("x", xdt, x.shape, 0.1, 0), const("t", table)],
                           act("y", INT8, x.shape, 1 / 256, -128), axis=-1), [x]
    x = byte_array(rng, INT8, (64, 1537), "uniform")
    yield one_node("lut", [act("x", INT8, x.shape, 0.1, 0), const("t", rng.integers(-128, 128, 256).astype(np.int8))],
                   act("y", INT8, x.shape, 0.1, 0)), [x]
    for sb in ((64, 1537), (1537,)):
        a, bv = byte_array(rng, INT8, (64, 1537), "uniform"), byte_array(rng, INT8, sb, "uniform")
        yield one_node("add", [act("a", INT8, a.shape, 0.1, 3), act("b", INT8, sb, 0.2, -7)],
                       act("y", INT8, a.shape, 0.3, 1), a_mult=794492688, b_mult=635711647, shift=30, qmin=-128,
                       qmax=127), [a, bv]
        yield one_node("mul", [act("a", INT8, a.shape, 0.1, 3), act("b", INT8, sb, 0.2, -7)],
                       act("y", INT8, a.shape, 0.3, 1), mult=1234567890, shift=38, qmin=-128, qmax=127), [a, bv]


def _child_hash(env: dict[str, str]) -> tuple[str, str]:
    return child_hash(CHILD, env, timeout=300)


def test_instruction_sets_threads_and_numpy_agree() -> None:
    base_desc, base = _child_hash({"OPML_THREADS": "2"})
    gen_desc, generic = _child_hash({"OPML_NATIVE_ISA": "generic", "OPML_THREADS": "1"})
    off_desc, off = _child_hash({"OPML_NATIVE": "0", "OPML_THREADS": "2"})
    assert "loaded (generic)" in gen_desc and "disabled" in off_desc
    assert generic == base, f"{gen_desc} != {base_desc}"
    assert off == base, f"{off_desc} != {base_desc}"
    h = hashlib.sha256()
    for bundle, inputs in cases_for_hash():
        h.update(run_node(bundle, inputs).tobytes())
    assert "HASH " + h.hexdigest() == base
