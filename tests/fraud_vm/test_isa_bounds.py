"""The instruction set's arithmetic in the verifier's widths: int256 intermediates, int64 lanes,
checked shifts, the contract-runnable isqrt, the bounded float32 rounding and the cast kernel."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_vm import errors as E
from fraud_vm.f32 import F32_INF_BITS, F32_SIGN_BIT, f32_round_scaled
from fraud_vm.isa import PAD, Instr, Kind, Regs, cast_value, execute, isqrt, requant, round_div, round_shift, shl
from fraud_vm.memory import Region, StepAccess
from fraud_vm.state import I64_MAX, I64_MIN, I256_MAX, I256_MIN, LANES
from fraud_vm.tensors import tensor_header
from opml.bundle import DType, Node, TensorSpec
from opml.kernels_data import prepare_cast

WIDE = st.one_of(st.integers(I256_MIN, I256_MAX), st.integers(-(1 << 70), 1 << 70),
                 st.sampled_from([I256_MIN, I256_MAX, I256_MAX // 2, I256_MIN // 2, 0, 1, -1]))


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.integers(0, (1 << 256) - 1), st.integers(0, 1 << 40),
                 st.integers(1, (1 << 128) - 1).map(lambda r: r * r + st_offset(r))))
def test_isqrt_is_the_floor_square_root(x: int) -> None:
    assert isqrt(x) == math.isqrt(x)


def st_offset(r: int) -> int:
    return (r % 3) - 1 if r > 1 else 0  # r^2 - 1, r^2, r^2 + 1


def test_isqrt_edges_and_negative() -> None:
    for x in (0, 1, 2, 3, 4, 15, 16, 17, (1 << 256) - 1, 1 << 255, ((1 << 128) - 1) ** 2):
        assert isqrt(x) == math.isqrt(x)
    with pytest.raises(E.NegativeSquareRoot):
        isqrt(-1)


def test_shifts_and_divisions_at_the_int256_edges() -> None:
    assert shl(1, 254) == 1 << 254 and shl(-1, 255) == I256_MIN and shl(0, 255) == 0
    for bad in ((1, 255), (I256_MAX, 1), (I256_MIN, 1)):
        with pytest.raises(E.ArithmeticOverflow):
            shl(*bad)
    for s in (-1, 256):
        with pytest.raises(E.InvalidShift):
            shl(1, s)
    for s in (0, 63):
        with pytest.raises(E.InvalidShift):
            round_shift(1, s)
    assert round_shift(I256_MAX - (1 << 9), 10) == (I256_MAX - (1 << 9) + (1 << 9)) >> 10
    with pytest.raises(E.ArithmeticOverflow):
        round_shift(I256_MAX - (1 << 9) + 1, 10)
    assert round_div(-7, 2) == -3 and round_div(7, 2) == 4 and round_div(-5, 2) == -2  # floor((2n + d) / 2d)
    for d in (0, -3):
        with pytest.raises(E.NonPositiveDivisor):
            round_div(1, d)
    with pytest.raises(E.ArithmeticOverflow):
        round_div(I256_MAX // 2 + 1, 3)
    with pytest.raises(E.ArithmeticOverflow):
        requant(1 << 31, 1 << 225, 1, 0, -128, 127)


def _oracle(values: list[int]) -> bool:
    return all(I256_MIN <= v <= I256_MAX for v in values)


def _mem(dtypes: list[DType], data: list[bytes]) -> StepAccess:
    regions = [Region(tuple(tensor_header(dt, (len(d) // dt.itemsize,))), dt, len(d))
               for dt, d in zip(dtypes, data, strict=True)]
    words = {(r, i): data[r][32 * i : 32 * i + 32].ljust(32, b"\0") for r in range(len(data))
             for i in range(regions[r].n_words)}
    return StepAccess(regions, lambda r, i: words[(r, i)])


@settings(max_examples=400, deadline=None)
@given(st.integers(-128, 127), st.integers(-128, 127), WIDE, WIDE, WIDE, WIDE, st.integers(1, 62), WIDE)
def test_add_fails_exactly_when_an_intermediate_leaves_int256(a: int, b: int, za: int, zb: int, am: int, bm: int,
                                                              s: int, zp: int) -> None:
    mem = _mem([DType.INT8, DType.INT8, DType.INT64], [a.to_bytes(1, "little", signed=True),
                                                         b.to_bytes(1, "little", signed=True), bytes(8)])
    ins = Instr(Kind.ADD, (0,), ((0, 0),), ((1, 0),), (), (za, zb, am, bm, s, zp, I64_MIN, I64_MAX))
    x, y = a - za, b - zb
    t = x * am + y * bm
    inter = [x, x * am, y, y * bm, t, t + (1 << (s - 1)), zp + ((t + (1 << (s - 1))) >> s)]
    if _oracle(inter):
        execute(ins, Regs((0,) * 4, (0,) * LANES, (0,) * LANES), mem)
        want = max(I64_MIN, min(I64_MAX, inter[-1]))
        assert int.from_bytes(mem.written[(2, 0)][:8], "little", signed=True) == want
    else:
        with pytest.raises(E.ArithmeticOverflow):
            execute(ins, Regs((0,) * 4, (0,) * LANES, (0,) * LANES), mem)


@settings(max_examples=300, deadline=None)
@given(st.integers(-128, 127), st.integers(-128, 127), WIDE, WIDE, st.integers(I64_MIN, I64_MAX))
def test_mac_fails_exactly_when_a_product_leaves_int256_or_the_lane_int64(a: int, b: int, za: int, zb: int,
                                                                           acc0: int) -> None:
    mem = _mem([DType.INT8, DType.INT8, DType.INT32], [a.to_bytes(1, "little", signed=True),
                                                         b.to_bytes(1, "little", signed=True), bytes(4)])
    ins = Instr(Kind.MAC, (0, 0), ((0, 0), PAD), ((1, 0), PAD), (), (za, zb))
    regs = Regs((0,) * 4, (acc0,) + (0,) * (LANES - 1), (0,) * LANES)
    x, y = a - za, b - zb
    ok = _oracle([x, y, x * y]) and I64_MIN <= acc0 + x * y <= I64_MAX
    if ok:
        execute(ins, regs, mem)
        assert regs.acc[0] == acc0 + x * y and regs.acc[1] == 0
    else:
        with pytest.raises(E.ArithmeticOverflow):
            execute(ins, regs, mem)


def test_lane_limit_is_int64_inclusive() -> None:
    mem = _mem([DType.INT8, DType.INT8, DType.INT32], [b"\x01", b"\x01", bytes(4)])
    ins = Instr(Kind.MAC, (0,), ((0, 0),), ((1, 0),), (), (0, 0))
    regs = Regs((0,) * 4, (I64_MAX - 1,) + (0,) * (LANES - 1), (0,) * LANES)
    execute(ins, regs, mem)
    assert regs.acc[0] == I64_MAX
    with pytest.raises(E.ArithmeticOverflow):
        execute(ins, regs, mem)


def _nearest_f32_bits(q: Fraction) -> int:
    """Oracle: the float32 nearest to ``q`` by the definition (exact rationals, ties to even)."""
    if q == 0:
        return 0
    sign, a = (F32_SIGN_BIT, -q) if q < 0 else (0, q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    e = e - 1 if Fraction(2) ** e > a else e
    ulp = Fraction(2) ** (max(e, -126) - 23)
    value = round(a / ulp) * ulp  # round() of a Fraction is half to even
    if value >= 2**128:
        return sign | F32_INF_BITS
    return sign | int(np.array([float(value)], np.float32).view(np.uint32)[0])


@settings(max_examples=600, deadline=None)
@given(st.booleans(), st.integers(1, (1 << 64) - 1), st.integers(1, (1 << 64) - 1), st.integers(-420, 300))
def test_bounded_float32_rounding_matches_the_definition(neg: bool, p: int, d: int, e2: int) -> None:
    q = Fraction(p, d) * Fraction(2) ** e2
    assert f32_round_scaled(neg, p, d, e2) == _nearest_f32_bits(-q if neg else q)


_INT_DST = [DType.INT8, DType.UINT8, DType.INT16, DType.INT32, DType.INT64]


@settings(max_examples=400, deadline=None)
@given(st.integers(0, (1 << 32) - 1), st.sampled_from(_INT_DST))
def test_float_to_int_cast_matches_the_engine_kernel(bits: int, dst: DType) -> None:
    x = np.array([bits], np.uint32).view(np.float32)
    specs = [TensorSpec("x", DType.FLOAT32, (1,)), TensorSpec("y", dst, (1,))]
    kernel = prepare_cast(Node("cast", (0,), (1,), ()), specs)
    if np.isnan(x[0]):
        with pytest.raises(E.NanOperand):
            cast_value(bits, DType.FLOAT32, dst)
        return
    assert cast_value(bits, DType.FLOAT32, dst) == int(kernel([x])[0])


@settings(max_examples=200, deadline=None)
@given(st.integers(-(1 << 63), (1 << 63) - 1), st.sampled_from(_INT_DST))
def test_int_to_int_cast_wraps_like_numpy(v: int, dst: DType) -> None:
    assert cast_value(v, DType.INT64, dst) == int(np.array([v], np.int64).astype(dst.np)[0])
