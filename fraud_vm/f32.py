"""Exact IEEE-754 binary32 arithmetic on bit patterns, for the quantize/dequantize/cast steps.

The engine computes ``x / scale``, ``rint``, ``(q - zp) * scale`` and casts in numpy float32, whose
basic operations are correctly rounded (round to nearest, ties to even; subnormals kept). Here each
operation is done exactly on rationals and rounded once, which gives the same bits and is what a
Solidity verifier does with integer arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

NAN = "nan"
POS_INF = "inf"
NEG_INF = "-inf"
F32_INF_BITS = 0x7F800000
F32_NEG_INF_BITS = 0xFF800000

Value = Fraction | str


def f32_decode(bits: int) -> Value:
    """The value of a float32 bit pattern: a Fraction, or ``NAN`` / ``POS_INF`` / ``NEG_INF``."""
    sign = -1 if bits >> 31 else 1
    exp = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    if exp == 0xFF:
        return NAN if frac else (POS_INF if sign > 0 else NEG_INF)
    if exp == 0:
        return sign * Fraction(frac, 1 << 149)
    return sign * Fraction((1 << 23) | frac) * Fraction(2) ** (exp - 150)


def round_half_even(q: Fraction) -> int:
    """Nearest integer to ``q``, ties to even."""
    fl = q.numerator // q.denominator
    rem = q - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2):
        return fl + 1
    return fl


def _floor_log2(q: Fraction) -> int:
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if Fraction(2) ** e > q:
        e -= 1
    return e


def f32_round(q: Fraction, negative_zero: bool = False) -> int:
    """Bits of the float32 nearest to the rational ``q`` (ties to even, overflow to infinity)."""
    if q == 0:
        return 0x80000000 if negative_zero else 0
    sign = 0x80000000 if q < 0 else 0
    a = -q if q < 0 else q
    e = _floor_log2(a)
    if e < -126:
        m = round_half_even(a * (1 << 149))  # subnormal grid; m == 2^23 is the smallest normal
        return sign | m
    m = round_half_even(a / Fraction(2) ** (e - 23))
    if m == 1 << 24:
        m, e = 1 << 23, e + 1
    if e > 127:
        return sign | F32_INF_BITS
    return sign | ((e + 127) << 23) | (m - (1 << 23))


def f32_from_int(v: int) -> int:
    """Bits of ``float32(v)`` for an integer ``v`` (numpy ``astype(float32)``)."""
    return f32_round(Fraction(v))
