"""The engine's fast paths at their edges, against the integer definitions they replace.

* ``opml.requant``: exact float64 requantization == ``intmath.requantize`` (hypothesis over the whole
  legal parameter range: int32 offsets, shifts 1..62, multipliers 0..2^31-1, zero points, clamps,
  accumulators at the float32 GEMM limit, and values on each side of every output step);
* the single float32 GEMM of ``linear`` exactly at, and one past, the 2^24 partial-sum bound;
* the chunk fallback when even the data's actual maximum does not fit;
* tensors large enough to be split over worker threads (1 vs 3 workers), and the transposed GEMM of
  small batches.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_cases import INT8, INT32, UINT8, _gemm_node, act, check, const, one_node
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opml.engine import run
from opml.intmath import quantize_multiplier, requantize
from opml.lut import softmax_exp_table
from opml.parallel import set_worker_count
from opml.requant import (
    F32_EXACT,
    apply_float_requant,
    can_apply,
    int_requant_tile,
    plan_float_requant,
    plan_int_requant,
    saturation_bounds,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QRANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


@st.composite
def requant_case(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 5))
    size = n if draw(st.booleans()) else 1
    mult = draw(st.lists(st.one_of(st.integers(0, 2**31 - 1), st.integers(2**30, 2**31 - 1), st.just(0),
                                   st.just(2**31 - 1)), min_size=size, max_size=size))
    shift = draw(st.lists(st.one_of(st.integers(1, 62), st.integers(28, 50)), min_size=size, max_size=size))
    offset = draw(st.lists(st.one_of(st.integers(-3000, 3000), st.integers(-(2**31), 2**31 - 1)),
                           min_size=n, max_size=n))
    dtype = np.dtype(draw(st.sampled_from([np.int8, np.uint8])))
    lo, hi = QRANGE[dtype]
    qmin, qmax = sorted((draw(st.integers(lo, hi)), draw(st.integers(lo, hi))))
    if draw(st.booleans()):
        qmin, qmax = lo, hi
    zp = draw(st.one_of(st.integers(lo, hi), st.integers(-(2**31), 2**31 - 1)))
    return dict(mult=np.array(mult, np.int64), shift=np.array(shift, np.int64), offset=np.array(offset, np.int64),
                zp=zp, qmin=qmin, qmax=qmax, dtype=dtype, n=n)


def _step_points(c: dict, rng: np.random.Generator, rows: int) -> np.ndarray:
    """t values around the places where the output of channel 0 changes (and random ones)."""
    m, s = int(c["mult"][0]), int(c["shift"][0])
    off = int(c["offset"][0])
    pts = [0, 1, -1, F32_EXACT, -F32_EXACT, F32_EXACT - 1, -F32_EXACT + 1]
    if m:
        for y in rng.integers(c["qmin"] - c["zp"] - 2, c["qmax"] - c["zp"] + 3, size=8).tolist() + [
                c["qmin"] - c["zp"], c["qmax"] - c["zp"], c["qmin"] - c["zp"] + 1]:
            a = -((-(y * (1 << s) - (1 << (s - 1)))) // m)  # smallest a with round_shift(a*m, s) >= y
            pts += [a - off - 1, a - off, a - off + 1]
    pts = [p for p in pts if abs(p) <= F32_EXACT]
    t = rng.integers(-F32_EXACT, F32_EXACT + 1, size=(rows, c["n"]))
    flat = t.reshape(-1)
    flat[: min(len(pts), flat.size)] = pts[: flat.size]
    return t


@SETTINGS
@given(requant_case(), st.integers(0, 2**32 - 1), st.booleans())
def test_float_requant_equals_int64_requantize(c: dict, seed: int, small: bool) -> None:
    rng = np.random.default_rng(seed)
    t = _step_points(c, rng, 6)
    if small:
        t = t % 5000 - 2500
    plan = plan_float_requant(c["mult"], c["shift"], c["offset"], c["zp"], c["qmin"], c["qmax"], c["dtype"],
                              F32_EXACT)
    if plan is None:  # only when a documented condition fails
        ms, ss, offs = (np.broadcast_to(c[k], (c["n"],)).tolist() for k in ("mult", "shift", "offset"))
        assert any(m < 0 or abs(o) + F32_EXACT > 2**31 - 1
                   or abs(o * m + (1 << (s - 1)) + (c["zp"] - c["qmin"]) * (1 << s)) >= 2**53
                   for m, s, o in zip(ms, ss, offs, strict=True))
        return
    want = requantize(t + c["offset"], c["mult"], c["shift"], c["zp"], c["qmin"], c["qmax"], c["dtype"])
    actual_bound = int(np.abs(t).max())
    for bound in (actual_bound, F32_EXACT):
        if can_apply(plan, bound):
            got = apply_float_requant(plan, t.astype(np.float32), bound)
            assert got.dtype == c["dtype"] and got.shape == t.shape
            assert np.array_equal(got, want), (bound, plan.limit, np.argwhere(got != want)[:3])


def test_float_requant_at_the_float64_limit() -> None:
    """The largest multiplier with the smallest shift: the no-clamp limit is tiny, the clamped path is exact."""
    m, s = 2**31 - 1, 1
    plan = plan_float_requant([m], [s], [0], 0, -128, 127, np.int8, F32_EXACT)
    assert plan is not None and plan.clamp_ok and plan.limit < F32_EXACT
    t = np.arange(-300, 300, dtype=np.int64).reshape(-1, 1)
    t = np.concatenate([t, [[F32_EXACT], [-F32_EXACT]]])
    want = requantize(t, m, s, 0, -128, 127, np.int8)
    assert np.array_equal(apply_float_requant(plan, t.astype(np.float32), F32_EXACT), want)


def test_float_requant_rejects_what_it_cannot_do() -> None:
    assert plan_float_requant([-5], [10], [0], 0, -128, 127, np.int8, F32_EXACT) is None  # negative multiplier
    assert plan_float_requant([5], [0], [0], 0, -128, 127, np.int8, F32_EXACT) is None  # shift 0
    assert plan_float_requant([5], [10], [2**31 - 10], 0, -128, 127, np.int8, F32_EXACT) is None  # int32 saturation
    assert plan_float_requant([5], [10], [0], 0, 10, 5, np.int8, F32_EXACT) is None  # qmin > qmax
    assert plan_float_requant([5], [10], [0], 0, -128, 127, np.int32, F32_EXACT) is None  # not an int8 output


def test_float_requant_tiles_cover_every_row() -> None:
    rng = np.random.default_rng(3)
    t = rng.integers(-(2**20), 2**20, size=(70001, 3))
    mult, shift, off = np.array([2**30, 2**29 + 7, 123456789]), np.array([30, 28, 40]), np.array([5, -7, 1000])
    plan = plan_float_requant(mult, shift, off, -3, -128, 127, np.int8, F32_EXACT)
    assert plan is not None
    want = requantize(t + off, mult, shift, -3, -128, 127, np.int8)
    assert np.array_equal(apply_float_requant(plan, t.astype(np.float32), 2**20), want)


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(1, 62), st.integers(-(2**31), 2**31 - 1),
       st.sampled_from([np.int8, np.uint8]), st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**32 - 1))
def test_int_requant_tile_equals_requantize(mult: int, shift: int, zp: int, dt: type, q1: int, q2: int,
                                            seed: int) -> None:
    dtype = np.dtype(dt)
    lo = QRANGE[dtype][0]
    qmin, qmax = sorted((q1 + lo, q2 + lo))
    plan = plan_int_requant(mult, shift, zp, qmin, qmax, dtype)
    if qmin == qmax or mult == 0:
        assert plan is None
        return
    a_lo, a_hi = saturation_bounds(mult, shift, zp, qmin, qmax)
    lo, hi = max(a_lo, -(2**31)), min(a_hi, 2**31 - 1)
    add = 2 ** (shift - 1) + (zp - qmin) * 2**shift
    if plan is None:  # only when the clamp range is empty or int64 could overflow
        assert lo > hi or max(abs(lo), abs(hi)) * mult + abs(add) >= 2**63
        return
    rng = np.random.default_rng(seed)
    pts = [a_lo - 1, a_lo, a_lo + 1, a_hi - 1, a_hi, a_hi + 1, 0, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1,
           2**53 - 1, -(2**53) + 1]
    acc = np.concatenate([np.array(pts, dtype=np.int64), rng.integers(-(2**40), 2**40, 20),
                          rng.integers(min(a_lo, 2**40) - 300, min(a_lo, 2**40) + 300, 20),
                          rng.integers(max(a_hi, -(2**40)) - 300, max(a_hi, -(2**40)) + 300, 20)]).reshape(1, -1)
    want = requantize(acc, mult, shift, zp, qmin, qmax, dtype)
    out = np.empty(acc.shape, np.uint8)
    int_requant_tile(plan, acc.astype(np.float64), np.empty(acc.shape, np.int32), np.empty(acc.shape, np.int64), out)
    out += np.uint8(qmin & 0xFF)
    assert np.array_equal(out.view(dtype), want)


def _linear_case(xdt, x_val: int, w_col: np.ndarray, rows: int = 2, seed: int = 0):
    """A raw-output and a requantized linear node whose first column sums |w| to ``w_col``'s sum."""
    k = w_col.size
    rng = np.random.default_rng(seed)
    w = np.stack([w_col, rng.integers(-3, 4, k)], axis=1).astype(np.int8)
    x = np.full((rows, k), x_val, dtype=xdt.np)
    x[1:] = rng.integers(*((-128, 128) if xdt == INT8 else (0, 256)), size=(rows - 1, k))
    return x, w


@pytest.mark.parametrize("extra", [0, 1])
@pytest.mark.parametrize("requant", [False, True])
def test_linear_single_gemm_bound_edge(extra: int, requant: bool) -> None:
    """max|x| * max column sum |w| == 2^24 uses one float32 GEMM; one more uses the chunked path. Both
    must equal the reference, with every partial sum of column 0 at its extreme."""
    k = 1024 + extra
    # column 0: |w| sums to exactly 2^24 / 128 = 131072 (+ 128 when extra): 1024 entries of -128
    w_col = np.full(k, -128, dtype=np.int64)
    x, w = _linear_case(INT8, -128, w_col)
    bias = np.array([7, -7], np.int32)
    if requant:
        rq = (INT8, 0.5, 3, np.array([2**31 - 1, 2**30], np.int32), np.array([45, 20], np.int32), -128, 127)
        b = _gemm_node("linear", act("x", INT8, x.shape, 0.1, -128), w, bias, (2, 2), False, rq, False)
    else:
        b = _gemm_node("linear", act("x", INT8, x.shape, 0.1, 0), w, bias, (2, 2), True, None, False)
    y = check(b, [x])
    if not requant:
        acc = x.astype(np.int64) @ w.astype(np.int64) + bias
        assert np.array_equal(y, np.clip(acc, -(2**31), 2**31 - 1))
        assert acc[0, 0] == 128 * 128 * k + 7


def test_linear_data_bound_keeps_a_single_gemm() -> None:
    """uint8 x with a large K: the dtype bound (255) fails, the data's maximum (3) passes."""
    rng = np.random.default_rng(5)
    k = 3000
    w = rng.integers(-128, 128, size=(k, 2)).astype(np.int8)
    x = rng.integers(0, 4, size=(3, k)).astype(np.uint8)
    bias = np.zeros(2, np.int32)
    rq = (UINT8, 0.5, 0, np.array([2**30], np.int32), np.array([40], np.int32), 0, 255)
    check(_gemm_node("linear", act("x", UINT8, x.shape, 0.1, 1), w, bias, (3, 2), False, rq, False), [x])


@pytest.fixture
def workers():
    """Set the engine's elementwise worker count for one test, then restore the environment's."""
    yield set_worker_count
    set_worker_count(None)


def _big_cases() -> list[tuple[str, object, list[np.ndarray]]]:
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, size=(300, 384)).astype(np.int8)
    gamma = rng.integers(3000, 8191, 384).astype(np.int32)
    beta = rng.integers(-500000, 500000, 384).astype(np.int32)
    mult, shift = quantize_multiplier(2.0**-18 * 1.37)
    ln = one_node("layernorm", [act("x", INT8, x.shape, 0.1, 2), const("g", gamma), const("b", beta)],
                  act("y", INT8, x.shape, 0.05, -3), eps=7, frac_bits=10, mult=mult, shift=shift, qmin=-128, qmax=127)
    s = rng.integers(-128, 128, size=(40, 4, 32, 32)).astype(np.int8)
    sm = one_node("softmax", [act("x", INT8, s.shape, 0.1, 1), const("t", softmax_exp_table(0.1))],
                  act("y", INT8, s.shape, 1 / 256, -128), axis=3)
    table = rng.integers(-128, 128, 256).astype(np.int8)
    lut = one_node("lut", [act("x", INT8, x.shape, 0.1, 0), const("t", table)], act("y", INT8, x.shape, 0.1, 0))
    b = rng.integers(0, 256, size=(1, 384)).astype(np.uint8)
    add = one_node("add", [act("a", INT8, x.shape, 0.1, 3), act("b", UINT8, b.shape, 0.2, 120)],
                   act("y", INT8, x.shape, 0.3, -1), a_mult=2**29 + 5, b_mult=-(2**28) - 9, shift=30, qmin=-100,
                   qmax=120)
    return [("layernorm", ln, [x]), ("softmax", sm, [s]), ("lut", lut, [x]), ("add", add, [x, b])]


@pytest.mark.parametrize("case", range(4), ids=["layernorm", "softmax", "lut", "add"])
def test_thread_count_does_not_change_results(workers, case: int) -> None:
    """Tensors large enough to be split over worker threads: 1 and 3 workers give the reference's bytes."""
    _, bundle, inputs = _big_cases()[case]
    workers(3)
    three = check(bundle, inputs)
    workers(1)
    one = run(bundle, inputs)[0]
    assert one.tobytes() == three.tobytes()


def test_linear_threads_and_batch_orientation(workers) -> None:
    """A requantized linear at 300 rows (one GEMM orientation, threaded requantization) and at 40 rows
    (the transposed GEMM) equals the int64 definition."""
    rng = np.random.default_rng(12)
    w = rng.integers(-128, 128, size=(384, 200)).astype(np.int8)
    bias = rng.integers(-(2**20), 2**20, 200).astype(np.int32)
    mult = rng.integers(2**30, 2**31, 200).astype(np.int32)
    shift = rng.integers(36, 42, 200).astype(np.int32)
    for rows in (300, 40):
        x = rng.integers(-128, 128, size=(rows, 384)).astype(np.int8)
        rq = (INT8, 0.1, 5, mult, shift, -128, 127)
        b = _gemm_node("linear", act("x", INT8, x.shape, 0.1, -7), w, bias, (rows, 200), False, rq, False)
        want = requantize((x.astype(np.int64) + 7) @ w.astype(np.int64) + bias, mult, shift, 5, -128, 127, np.int8)
        for n in (1, 3):
            workers(n)
            assert np.array_equal(run(b, [x])[0], want)


@pytest.mark.parametrize("dtype", [INT8, UINT8])
@pytest.mark.parametrize("size", [4096, 4097, 9999])
def test_lut_by_byte_pairs(dtype, size: int) -> None:
    """Large lookups read two input bytes at a time (a 65536-entry pair table), odd sizes included."""
    rng = np.random.default_rng(size)
    lo, hi = (-128, 128) if dtype == INT8 else (0, 256)
    x = rng.integers(lo, hi, size=(size,)).astype(dtype.np)
    x[:256] = np.arange(lo, hi).astype(dtype.np)  # every byte value
    table = rng.integers(0, 256, 256).astype(np.uint8)
    check(one_node("lut", [act("x", dtype, x.shape, 0.1, 0), const("t", table)], act("y", UINT8, x.shape, 0.1, 0)),
          [x])


@SETTINGS
@given(st.integers(1, 40), st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=8),
       st.sampled_from([INT8, UINT8]), st.integers(0, 2**32 - 1))
def test_softmax_with_arbitrary_tables(length: int, values: list[int], dtype, seed: int) -> None:
    """A bundle is external input: exponent tables with extreme or negative int32 entries (row sums
    at or below zero included) still give the reference's bytes through the float64 path."""
    rng = np.random.default_rng(seed)
    table = np.array([values[i % len(values)] for i in range(256)], dtype=np.int32)
    lo, hi = (-128, 128) if dtype == INT8 else (0, 256)
    x = rng.integers(lo, hi, size=(3, length)).astype(dtype.np)
    out = INT8 if seed % 2 else UINT8
    zp = -128 if out == INT8 else 0
    check(one_node("softmax", [act("x", dtype, x.shape, 0.1, 0), const("t", table)],
                   act("y", out, x.shape, 1 / 256, zp), axis=1), [x])


@pytest.mark.parametrize("k", [258, 259])
def test_matmul_zero_point_bound_edge(k: int) -> None:
    """K * max|a - za| * max|b - zb| = 258 * 255 * 255 <= 2^24 < 259 * 255 * 255: the float32 path
    with zero points subtracted, then the chunked int64 path, both with every product at its extreme."""
    a = np.full((2, 1, k), 127, dtype=np.int8)
    a[1] = np.random.default_rng(k).integers(-128, 128, size=(1, k))
    b = np.full((2, k, 2), -128, dtype=np.int8)
    bundle = one_node("matmul", [act("a", INT8, a.shape, 0.1, -128), act("b", INT8, b.shape, 0.1, 127)],
                      act("y", INT32, (2, 1, 2)), mult=0, shift=1, qmin=0, qmax=0)
    y = check(bundle, [a, b])
    assert y[0, 0, 0] == k * 255 * -255
