"""Exact IEEE-754 binary32 arithmetic on bit patterns, for the quantize/dequantize/cast steps.

The engine computes ``x / scale``, ``rint``, ``(q - zp) * scale`` and casts in numpy float32, whose
basic operations are correctly rounded (round to nearest, ties to even; subnormals kept). Here each
operation is done exactly on rationals and rounded once, which gives the same bits and is what a
Solidity verifier does with integer arithmetic. ``f32_parts`` / ``f32_round_ratio`` / ``f32_rint`` are
the same on plain integers ``(sign, m, e)`` and ``p / d`` (no Fraction objects), for the hot steps.
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
    parts = f32_parts(bits)
    if isinstance(parts, str):
        return parts
    sign, m, e = parts
    return Fraction(sign * (m << e)) if e >= 0 else Fraction(sign * m, 1 << -e)


def _round_ratio(p: int, q: int) -> int:
    """Nearest integer to ``p / q`` (``q > 0``; any sign of ``p``: divmod floors), ties to even."""
    fl, rem = divmod(p, q)
    twice = 2 * rem
    return fl + 1 if twice > q or (twice == q and fl % 2) else fl


def round_half_even(q: Fraction) -> int:
    """Nearest integer to ``q``, ties to even."""
    return _round_ratio(q.numerator, q.denominator)


def _floor_log2(p: int, q: int) -> int:
    """``floor(log2(p / q))`` for ``p, q > 0``."""
    e = p.bit_length() - q.bit_length()
    return e - 1 if ((q << e) > p if e >= 0 else q > (p << -e)) else e


def f32_parts(bits: int) -> tuple[int, int, int] | str:
    """A float32 bit pattern as ``(sign, m, e)`` with value ``sign * m * 2^e`` (``m >= 0``), or
    ``NAN`` / ``POS_INF`` / ``NEG_INF``: the integer form of :func:`f32_decode`."""
    sign = -1 if bits >> 31 else 1
    exp = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    if exp == 0xFF:
        return NAN if frac else (POS_INF if sign > 0 else NEG_INF)
    if exp == 0:
        return sign, frac, -149
    return sign, (1 << 23) | frac, exp - 150


def f32_rint(sign: int, m: int, e: int) -> int:
    """Nearest integer to ``sign * m * 2^e``, ties to even (``round_half_even`` of that value)."""
    return sign * (m << e if e >= 0 else _round_ratio(m, 1 << -e))  # ties to even is symmetric


def f32_round(q: Fraction, negative_zero: bool = False) -> int:
    """Bits of the float32 nearest to the rational ``q`` (ties to even, overflow to infinity)."""
    return f32_round_ratio(q < 0, abs(q.numerator), q.denominator, negative_zero)


def f32_round_ratio(negative: bool, p: int, d: int, negative_zero: bool = False) -> int:
    """Bits of the float32 nearest to ``(-1 if negative else 1) * p / d`` (``p >= 0``, ``d > 0``)."""
    if p == 0:
        return 0x80000000 if negative_zero else 0
    sign = 0x80000000 if negative else 0
    e = _floor_log2(p, d)
    if e < -126:
        m = _round_ratio(p << 149, d)  # subnormal grid; m == 2^23 is the smallest normal
        return sign | m
    sh = 23 - e  # m = round(|q| * 2^(23 - e)), in [2^23, 2^24]
    m = _round_ratio(p << sh, d) if sh >= 0 else _round_ratio(p, d << -sh)
    if m == 1 << 24:
        m, e = 1 << 23, e + 1
    if e > 127:
        return sign | F32_INF_BITS
    return sign | ((e + 127) << 23) | (m - (1 << 23))


def f32_from_int(v: int) -> int:
    """Bits of ``float32(v)`` for an integer ``v`` (numpy ``astype(float32)``)."""
    return f32_round_ratio(v < 0, abs(v), 1)
