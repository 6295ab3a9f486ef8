"""The integer float32 helpers and the quantize/dequantize steps agree with numpy float32 bit for bit.

numpy's elementwise float32 ``/``, ``*``, ``rint`` and casts are correctly rounded (DESIGN §3), so
they are the oracle for the exact integer implementations in ``fraud_vm.f32`` / ``fraud_vm.isa``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_vm.f32 import NAN, f32_from_int, f32_parts, f32_rint, f32_round_scaled
from fraud_vm.isa import clamp, dequantize_value, quantize_value

BITS = st.one_of(st.integers(0, (1 << 32) - 1),
                 st.sampled_from([0, 0x80000000, 1, 0x80000001, 0x007FFFFF, 0x00800000, 0x3F000000, 0xBF000000,
                                  0x3FC00000, 0xBFC00000, 0x40200000, 0x7F7FFFFF, 0xFF7FFFFF, 0x4B000001]))
SCALES = st.one_of(st.integers(1, 0x7F7FFFFF), st.sampled_from([0x3C23D70A, 0x3B800000, 0x3F800000, 1, 0x7F7FFFFF]))


def f32_decode(bits: int) -> Fraction | str:
    """Oracle: the exact value of a float32 bit pattern (a Fraction), or NAN / POS_INF / NEG_INF."""
    parts = f32_parts(bits)
    if isinstance(parts, str):
        return parts
    sign, m, e = parts
    return Fraction(sign * m) * Fraction(2) ** e


def round_half_even(q: Fraction) -> int:
    """Oracle: Python's round() of a Fraction is round half to even."""
    return round(q)


def f32_round(q: Fraction, negative_zero: bool = False) -> int:
    """The integer rounding routine applied to a rational: ``q = p / d`` with ``e2 = 0``."""
    return f32_round_scaled(q < 0, abs(q.numerator), q.denominator, 0, negative_zero)


def _f32(bits: int) -> np.float32:
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


def _bits(x: np.float32) -> int:
    return int(np.array([x], dtype=np.float32).view(np.uint32)[0])


@settings(max_examples=300, deadline=None)
@given(BITS, SCALES, st.integers(-128, 127))
def test_quantize_matches_numpy(bits: int, scale_bits: int, zp: int) -> None:
    x, s = _f32(bits), _f32(scale_bits)
    if np.isnan(x):
        return
    with np.errstate(all="ignore"):
        q = np.rint(x / s)
    want = 127 if q == np.inf else -128 if q == -np.inf else clamp(int(q) + zp, -128, 127)
    assert quantize_value(bits, scale_bits, zp, -128, 127) == want


@settings(max_examples=300, deadline=None)
@given(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(-128, 127), BITS)
def test_dequantize_matches_numpy(v: int, zp: int, scale_bits: int) -> None:
    s = _f32(scale_bits)
    if not np.isfinite(s):
        return
    with np.errstate(all="ignore"):
        want = np.float32(np.int64(v - zp)) * s
    assert dequantize_value(v, zp, scale_bits) == _bits(want)


@settings(max_examples=300, deadline=None)
@given(BITS, st.integers(-(1 << 53), 1 << 53))
def test_parts_round_and_int_conversion(bits: int, v: int) -> None:
    parts, value = f32_parts(bits), f32_decode(bits)
    if isinstance(parts, str):
        assert parts == value
    else:
        sign, m, e = parts
        assert isinstance(value, Fraction) and value == sign * m * Fraction(2) ** e
        assert f32_rint(sign, m, e) == round_half_even(value) == int(np.rint(np.float64(_f32(bits))))
        assert f32_round(value, negative_zero=bool(bits >> 31)) == bits  # every float32 is its own rounding
    assert f32_from_int(v) == _bits(np.float32(float(v)))  # float(v) is exact below 2^53: one rounding
    assert value != NAN or bits & 0x7FFFFF
