"""Every instruction set's softmax, layernorm and lookups == portable C == numpy == reference, bit for bit.

norm.c and pointwise.c have AVX-512 variants (layernorm, softmax, the 256-entry lookup by VPERMI2B, the
pair lookup by VPGATHERDD) chosen by the instruction-set code; the AVX2 variants run at the other codes.
Each test here runs one node's prepared kernel once per instruction set this CPU has (the wrappers'
code switched in process), once on the numpy path (library hidden) and, for small cases, in the
reference interpreter; a set the CPU lacks is skipped with the reason. Values sit at the C files'
bounds: the largest exponent tables, rows alternating the extremes, int16 at +-32767 and -32768, gamma
and beta at the int32 edges, every multiplier and shift, lengths around 8, 16 and 64 (the AVX-512 loops'
bodies and masked tails), and every one of the 65536 byte pairs (the gathered lookup's last entries).
A subprocess per instruction set then checks OPML_NATIVE_ISA itself.
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

from opml import native
from opml.bundle import Bundle, DType, decode_bundle, encode_bundle
from opml.kernels import LAYERNORM_SQRT_BITS
from opml.native import ops as native_ops
from opml.native.wide import add_wide
from opml.reference import run_reference

sys.path.insert(0, str(Path(__file__).parent))
from engine_cases import act, const, one_node  # noqa: E402
from native_child import child_hash  # noqa: E402
from test_native_ops import byte_array, numpy_only, run_node  # noqa: E402

INT8, UINT8, INT16 = DType.INT8, DType.UINT8, DType.INT16
QRANGE = {INT8: (-128, 127), UINT8: (0, 255)}
CASES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])
# lengths around the AVX-512 loops' steps (8 float64 lanes, 16 int32 lanes, 64 bytes) and the AVX2 ones
LENGTHS = st.one_of(st.integers(1, 17), st.sampled_from([23, 24, 25, 31, 32, 33, 47, 48, 63, 64, 65, 127, 128, 129,
                                                         384, 385]))
SEEDS = st.integers(0, 2**32 - 1)
STYLES = st.sampled_from(["uniform", "narrow", "constant", "extremes", "extremes-shuffled"])

pytestmark = pytest.mark.skipif(not native_ops.available() and not os.environ.get("CI"), reason=native.describe())


def cpu_codes() -> list[tuple[str, int]]:
    """(name, code) of every instruction set of the library that this CPU runs (portable C first)."""
    return [(name, native.ISAS.index(name)) for name in native.cpu_isas()]


def test_every_instruction_set_is_reported() -> None:
    """The sets this module cannot test are named, never dropped silently."""
    missing = [f"{name} (needs {native.CPU_FLAGS[name]})" for name in native.ISAS if name not in native.cpu_isas()]
    print("instruction sets tested:", ", ".join(native.cpu_isas()), "| lacking:", ", ".join(missing) or "none")
    assert "generic" in native.cpu_isas()


@contextmanager
def instruction_set(code: int) -> Iterator[None]:
    """Run the wrappers (opml.native.ops) with instruction-set code ``code`` instead of the chosen one."""
    saved = native_ops._ISA
    native_ops._ISA = code
    try:
        yield
    finally:
        native_ops._ISA = saved


def every_way(bundle: Bundle, inputs: Sequence[np.ndarray], reference: bool = True) -> np.ndarray:
    """The node on the numpy path, the reference (when asked) and every instruction set: all equal."""
    with numpy_only():
        want = run_node(bundle, inputs)
    if reference:
        (ref,) = run_reference(decode_bundle(encode_bundle(bundle)), list(inputs))
        np.testing.assert_array_equal(want, ref)
    for name, code in cpu_codes():
        with instruction_set(code):
            got = run_node(bundle, inputs)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=f"instruction set {name} differs from numpy")
    return want


def native_direct(make: object, x: np.ndarray) -> dict[str, np.ndarray | None]:
    """A wrapper's output at every instruction set (None where it declined the case)."""
    out = {}
    for name, code in cpu_codes():
        with instruction_set(code):
            out[name] = make(x)  # type: ignore[operator]
    return out


def shape_for(draw: st.DrawFn, n: int, budget: int) -> tuple[int, ...]:
    rows = draw(st.integers(1, max(1, min(9, budget // n))))
    return (rows, n) if draw(st.booleans()) else (1, rows, n)


# ----------------------------------------------------------------------------------------- softmax


@CASES
@given(st.data(), LENGTHS, STYLES, SEEDS)
def test_softmax_every_instruction_set(data: st.DataObject, n: int, style: str, seed: int) -> None:
    draw, rng = data.draw, np.random.default_rng(seed)
    xdt, dt = draw(st.sampled_from([INT8, UINT8])), draw(st.sampled_from([INT8, UINT8]))
    shape = shape_for(draw, n, 2500)
    kind = draw(st.sampled_from(["exp", "negative", "largest", "zero", "one-hot"]))
    if kind == "exp":
        table = (np.exp(-np.arange(256) / 16.0) * 2**20).astype(np.int64)
    elif kind == "negative":
        table = rng.integers(-(2**20), 2**20, 256)
    elif kind == "largest":  # the bound: (512 + 3 L) tmax + 2 < 2^52
        tmax = ((1 << 52) - 3) // (512 + 3 * n)
        table = rng.integers(-tmax, tmax + 1, 256)
        table[0] = tmax if draw(st.booleans()) else -tmax
    elif kind == "zero":  # s = max(0, 1)
        table = np.zeros(256, dtype=np.int64)
    else:  # only the maximum counts: outputs at the clip edges
        table = np.zeros(256, dtype=np.int64)
        table[0] = ((1 << 52) - 3) // (512 + 3 * n)
    x = byte_array(rng, xdt, shape, style)
    zp = int(rng.integers(*QRANGE[dt]))
    b = one_node("softmax", [act("x", xdt, shape, 0.1, 0), const("t", table.astype(np.int64))],
                 act("y", dt, shape, 1 / 256, zp), axis=-1)
    y = every_way(b, [x], reference=x.size <= 600)
    lo, hi = QRANGE[dt]
    for name, got in native_direct(native_ops.Softmax(table, zp, lo, hi, dt.np), x).items():
        assert got is not None, f"{name}: the native softmax refused a case within its bounds"
        np.testing.assert_array_equal(got, y, err_msg=name)


# --------------------------------------------------------------------------------------- layernorm


@CASES
@given(st.data(), LENGTHS, STYLES, SEEDS)
def test_layernorm_every_instruction_set(data: st.DataObject, n: int, style: str, seed: int) -> None:
    draw, rng = data.draw, np.random.default_rng(seed)
    xdt = draw(st.sampled_from([INT8, UINT8, INT16]))
    limit = draw(st.sampled_from([255, 4095, 32767])) if xdt == INT16 else None
    shape = shape_for(draw, n, 1500)
    x = byte_array(rng, xdt, shape, style, limit)
    if xdt == INT16 and limit == 32767 and draw(st.booleans()):
        x.reshape(-1)[:: max(1, x.size // 7)] = -32768  # the int16 minimum (|x| = 2^15, x^2 = 2^30)
    g = draw(st.sampled_from([1, 8191, 2**20, 2**31 - 1]))  # large gamma: the vector rows' scalar fallback
    gamma = rng.integers(-g, g + 1, n).astype(np.int32)
    if draw(st.booleans()):
        gamma[: max(1, n // 3)] = np.int32(2**31 - 1) if g == 2**31 - 1 else g
    beta = rng.integers(-(2**31), 2**31, n).astype(np.int32) if draw(st.booleans()) else \
        rng.integers(-3000, 3001, n).astype(np.int32)
    eps = draw(st.one_of(st.integers(0, 1000), st.integers(0, 2**40)))
    frac = draw(st.integers(0, 16))
    mult = draw(st.one_of(st.sampled_from([-(2**31) + 1, 2**31 - 1, 1, -1]), st.integers(-(2**31) + 1, 2**31 - 1)))
    shift = draw(st.one_of(st.sampled_from([1, 16, 17, 62]), st.integers(1, 62)))
    dt = draw(st.sampled_from([INT8, UINT8]))
    lo, hi = QRANGE[dt]
    qmin, qmax = sorted(int(v) for v in rng.integers(lo, hi + 1, 2)) if draw(st.booleans()) else (lo, hi)
    zp = int(rng.integers(lo, hi + 1))
    b = one_node("layernorm", [act("x", xdt, shape, 0.1, 0), const("g", gamma), const("b", beta)],
                 act("y", dt, shape, 0.05, zp), eps=eps, frac_bits=frac, mult=mult, shift=shift, qmin=qmin, qmax=qmax)
    y = every_way(b, [x], reference=x.size <= 600)
    ln = native_ops.LayerNorm(gamma, beta, eps, frac, LAYERNORM_SQRT_BITS, mult, shift, zp, qmin, qmax, dt.np)
    results = native_direct(ln, x)
    if g <= 8191 and (xdt != INT16 or limit != 32767):
        assert all(v is not None for v in results.values()), "the native layernorm refused a case within its bounds"
    for name, got in results.items():
        if got is not None:
            np.testing.assert_array_equal(got, y, err_msg=name)


# ----------------------------------------------------------------------------------------- lookups


@CASES
@given(st.data(), st.one_of(st.integers(0, 200), st.sampled_from([4095, 4096, 4097, 65599])), SEEDS)
def test_lut_every_instruction_set(data: st.DataObject, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xdt, dt = data.draw(st.sampled_from([INT8, UINT8])), data.draw(st.sampled_from([INT8, UINT8]))
    table = rng.integers(*QRANGE[dt], 256, endpoint=True).astype(dt.np)
    x = rng.integers(*QRANGE[xdt], size, endpoint=True).astype(xdt.np)
    b = one_node("lut", [act("x", xdt, x.shape, 0.1, 0), const("t", table)], act("y", dt, x.shape, 0.1, 0))
    every_way(b, [x], reference=size <= 600)


def test_lut_every_byte_every_offset() -> None:
    """All 256 inputs at every start offset and length around the 64-byte step (the masked tail)."""
    rng = np.random.default_rng(3)
    table = rng.integers(0, 256, 256).astype(np.uint8)
    x = np.tile(np.arange(256, dtype=np.uint8), 3)
    for i0 in range(0, 70, 3):
        for length in (0, 1, 63, 64, 65, 127, 128, 129, 700):
            part = x[i0:i0 + length]
            for name, got in native_direct(lambda v: native_ops.lut8(table, v), part).items():
                assert got is not None
                np.testing.assert_array_equal(got, table[part], err_msg=f"{name} offset {i0} length {length}")


@CASES
@given(st.data(), st.sampled_from([(1,), (15,), (16,), (17,), (31, 33), (3, 64), (2, 65), (4, 385)]), SEEDS)
def test_add_and_mul_every_instruction_set(data: st.DataObject, shape: tuple, seed: int) -> None:
    draw, rng = data.draw, np.random.default_rng(seed)
    adt, bdt, dt = (draw(st.sampled_from([INT8, UINT8])) for _ in range(3))
    sb = shape if draw(st.booleans()) else shape[-1:]
    style = draw(STYLES)
    a, bv = byte_array(rng, adt, shape, style), byte_array(rng, bdt, sb, style)
    lo, hi = QRANGE[dt]
    zp = int(rng.integers(lo, hi + 1))
    if draw(st.booleans()):
        b = one_node("add", [act("a", adt, shape, 0.1, 3), act("b", bdt, sb, 0.2, -7)], act("y", dt, shape, 0.3, zp),
                     a_mult=int(rng.integers(1, 2**30)), b_mult=int(rng.integers(-(2**30), 2**30)), shift=30,
                     qmin=lo, qmax=hi)
    else:
        b = one_node("mul", [act("a", adt, shape, 0.1, 3), act("b", bdt, sb, 0.2, -7)], act("y", dt, shape, 0.3, zp),
                     mult=int(rng.integers(-(2**31) + 1, 2**31)), shift=int(rng.integers(20, 45)), qmin=lo, qmax=hi)
    every_way(b, [a, bv], reference=a.size <= 600)


def test_pair_lookup_every_pair() -> None:
    """All 65536 byte pairs, at several offsets and periods: the last three table entries (indices
    65533..65535, which the gathered lookup reads one by one) among them."""
    rng = np.random.default_rng(4)
    table = rng.integers(0, 256, 65536).astype(np.uint8)
    a = np.repeat(np.arange(256, dtype=np.uint8), 256)
    b = np.tile(np.arange(256, dtype=np.uint8), 256)
    want = table[(a.astype(np.int64) << 8) | b]
    for lo in (0, 1, 5, 16, 65520):
        sl = slice(lo, None)
        for name, got in native_direct(lambda v, bs=b[sl]: native_ops.pair_lut8(table, v, bs), a[sl]).items():
            assert got is not None
            np.testing.assert_array_equal(got, want[sl], err_msg=f"{name} from {lo}")
    # one operand repeated over the other's leading dimension (period 17 and 256)
    for n in (17, 256):
        rows = 300
        aa = rng.integers(0, 256, (rows, n)).astype(np.uint8)
        aa[0] = 255
        bb = np.full(n, 255, dtype=np.uint8)
        bb[: n // 2] = rng.integers(250, 256, n // 2)
        exp = table[(aa.astype(np.int64) << 8) | bb]
        for name, got in native_direct(lambda v, bs=bb: native_ops.pair_lut8(table, v, bs), aa).items():
            assert got is not None
            np.testing.assert_array_equal(got, exp, err_msg=f"{name} period {n}")


@pytest.mark.parametrize("const", ["a", "b", "both"])
@pytest.mark.parametrize("n", [1, 5, 192, 1023, 1024, 3000])
def test_pair_lookup_with_a_constant_operand(const: str, n: int) -> None:
    """One operand of period 1 (a per-channel scale in a broadcast block: its table row, or column, by the other's
    bytes), from several starts of the range: == numpy at every instruction set."""
    import ctypes

    rng = np.random.default_rng(n)
    table = rng.integers(0, 256, 65536).astype(np.uint8)
    a = rng.integers(0, 256, 1 if const in ("a", "both") else n).astype(np.uint8)
    b = rng.integers(0, 256, 1 if const in ("b", "both") else n).astype(np.uint8)
    want = table[(a.astype(np.int64) << 8) | b]
    want = np.broadcast_to(want, (n,))
    lib, addr = native.library(), (lambda v: v.ctypes.data_as(ctypes.c_void_p))
    assert lib is not None
    for name, code in cpu_codes():
        for i0 in (0, 1, n // 2):
            y = np.zeros(n, np.uint8)
            assert lib.opml_pair_lut8(addr(table), addr(a), a.size, addr(b), b.size, addr(y), i0, n, code) == 0
            np.testing.assert_array_equal(y[i0:], want[i0:], err_msg=f"{name} from {i0}")
            assert not y[:i0].any()


# ------------------------------------------------ OPML_NATIVE_ISA, each set in a fresh interpreter

CHILD = r"""
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from test_native_avx512_ops import hash_cases, run_node
from opml import native
h = hashlib.sha256()
for bundle, inputs in hash_cases():
    h.update(run_node(bundle, inputs).tobytes())
print(native.describe())
print("HASH " + h.hexdigest())
"""


def hash_cases() -> Iterator[tuple[Bundle, list[np.ndarray]]]:
    """Encoder-shaped rows (384, 32, 1536) and odd ones, big enough for the engine's thread split."""
    rng = np.random.default_rng(21)
    for n, rows in ((384, 200), (33, 301), (1, 97)):
        for xdt in (INT8, UINT8, INT16):
            x = byte_array(rng, xdt, (rows, n), "uniform", 32767 if xdt == INT16 else None)
            gamma = rng.integers(-8191, 8192, n).astype(np.int32)
            beta = rng.integers(-(2**31), 2**31, n).astype(np.int32)
            yield one_node("layernorm", [act("x", xdt, x.shape, 0.1, 0), const("g", gamma), const("b", beta)],
                           act("y", INT8, x.shape, 0.05, 1), eps=5, frac_bits=10, mult=-1500000000, shift=21,
                           qmin=-128, qmax=127), [x]
    table = (np.exp(-np.arange(256) / 16.0) * 2**20).astype(np.int64)
    for n, rows in ((32, 3000), (129, 100), (7, 501)):
        x = byte_array(rng, INT8, (rows, n), "uniform")
        yield one_node("softmax", [act("x", INT8, x.shape, 0.1, 0), const("t", table)],
                       act("y", INT8, x.shape, 1 / 256, -128), axis=-1), [x]
    x = byte_array(rng, INT8, (64, 1537), "uniform")
    yield one_node("lut", [act("x", INT8, x.shape, 0.1, 0), const("t", rng.integers(-128, 128, 256).astype(np.int8))],
                   act("y", INT8, x.shape, 0.1, 0)), [x]
    a, bv = byte_array(rng, INT8, (64, 1537), "uniform"), byte_array(rng, INT8, (1537,), "uniform")
    yield one_node("add", [act("a", INT8, a.shape, 0.1, 3), act("b", INT8, (1537,), 0.2, -7)],
                   act("y", INT8, a.shape, 0.3, 1), a_mult=794492688, b_mult=635711647, shift=30, qmin=-128,
                   qmax=127), [a, bv]


@pytest.mark.parametrize("name", native.ISAS)
def test_opml_native_isa_forces_each_set(name: str) -> None:
    if name not in native.cpu_isas():
        pytest.skip(f"this CPU lacks {native.CPU_FLAGS[name]}: instruction set {name} not run")
    desc, got = child_hash(CHILD, {"OPML_NATIVE_ISA": name, "OPML_THREADS": "2"})
    assert f"loaded ({name})" in desc, desc
    h = hashlib.sha256()
    with numpy_only():
        for bundle, inputs in hash_cases():
            h.update(run_node(bundle, inputs).tobytes())
    assert got == "HASH " + h.hexdigest(), f"{desc}: differs from the numpy path"


# ------------------------------------------------------------------- the wide (int16) add (wide.py)

INT16_RANGE = (-32768, 32767)


@CASES
@given(st.data(), st.sampled_from([(1,), (7,), (16,), (17,), (31, 33), (3, 64), (2, 65), (4, 385)]), SEEDS)
def test_wide_add_every_instruction_set(data: st.DataObject, shape: tuple, seed: int) -> None:
    """int16 operands or output (the residual path the pair table cannot take): the native int64 kernel at
    every instruction set == the numpy formula == the reference, at the int16 extremes and the largest
    multipliers the int64 bound admits."""
    draw, rng = data.draw, np.random.default_rng(seed)
    adt, bdt, dt = (draw(st.sampled_from([INT8, UINT8, INT16])) for _ in range(3))
    if INT16 not in (adt, bdt, dt):
        adt = INT16
    sb = shape if draw(st.booleans()) else shape[-1:]
    style = draw(STYLES)
    a = byte_array(rng, adt, shape, style, 32767 if adt == INT16 else None)
    bv = byte_array(rng, bdt, sb, style, 32767 if bdt == INT16 else None)
    if adt == INT16 and draw(st.booleans()):
        a.reshape(-1)[::3] = -32768
    lo, hi = INT16_RANGE if dt == INT16 else QRANGE[dt]
    qmin, qmax = sorted(int(v) for v in rng.integers(lo, hi + 1, 2)) if draw(st.booleans()) else (lo, hi)
    shift = draw(st.one_of(st.sampled_from([1, 16, 31, 40]), st.integers(1, 45)))
    big = draw(st.booleans())
    mlim = 2**31 - 1 if big else 2**16
    am, bm = int(rng.integers(-mlim, mlim + 1)), int(rng.integers(-mlim, mlim + 1))
    za = int(rng.integers(-300, 301)) if adt == INT16 else int(rng.integers(*QRANGE[adt]))
    zb = int(rng.integers(-300, 301)) if bdt == INT16 else int(rng.integers(*QRANGE[bdt]))
    zo = int(rng.integers(lo, hi + 1))
    b = one_node("add", [act("a", adt, shape, 0.1, za), act("b", bdt, sb, 0.2, zb)], act("y", dt, shape, 0.3, zo),
                 a_mult=am, b_mult=bm, shift=shift, qmin=qmin, qmax=qmax)
    y = every_way(b, [a, bv], reference=a.size <= 600)
    for name, code in cpu_codes():
        with instruction_set(code):
            got = add_wide(a, bv, za, zb, am, bm, shift, zo, qmin, qmax, dt.np)
        assert got is not None, f"{name}: the native wide add refused a case within its bounds"
        np.testing.assert_array_equal(got, y, err_msg=name)


def test_wide_add_refuses_outside_its_bounds() -> None:
    a = np.zeros(4, dtype=np.int16)
    assert add_wide(a, a, 0, 0, 2**41, 1, 30, 0, -32768, 32767, np.int16) is None  # multiplier too large
    assert add_wide(a, a, 0, 0, 1, 1, 63, 0, -32768, 32767, np.int16) is None  # shift
    assert add_wide(a, a, 0, 0, 1, 1, 3, 0, -32768, 40000, np.int16) is None  # qmax outside int16
    assert add_wide(a, np.zeros(3, dtype=np.int16), 0, 0, 1, 1, 3, 0, -9, 9, np.int16) is None  # no broadcast
    assert add_wide(a.astype(np.int32), a, 0, 0, 1, 1, 3, 0, -9, 9, np.int16) is None  # int32 operand


def test_wide_add_int16_ties_and_extremes() -> None:
    """int16 + int16 -> int16/int8 (the residual path's kinds, the vectorised loop): every shift, values whose
    scaled sums land on the rounding ties, the int16 extremes, and the clamps; == the numpy formula."""
    from opml.intmath import round_shift

    v = np.concatenate([np.arange(-300, 301), [-32768, -32767, 32766, 32767]]).astype(np.int16)
    a, b = v, v[::-1].copy()
    for shift in range(1, 63):
        for am, bm, za, zb, zo in ((1, 1, 0, 0, 0), (3, -5, 7, -9, 11), (2**31 - 1, -(2**31) + 1, -300, 300, -5)):
            for out, (lo, hi) in ((np.int16, INT16_RANGE), (np.int8, (-128, 127))):
                want = np.clip(round_shift((a.astype(np.int64) - za) * am + (b.astype(np.int64) - zb) * bm, shift) + zo,
                               lo, hi).astype(out)
                for name, code in cpu_codes():
                    with instruction_set(code):
                        got = add_wide(a, b, za, zb, am, bm, shift, zo, lo, hi, out)
                    assert got is not None
                    np.testing.assert_array_equal(got, want, err_msg=f"{name} shift {shift} mults {am} {bm}")
