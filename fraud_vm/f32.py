"""Exact IEEE-754 binary32 arithmetic on bit patterns, with bounded integers only.

The engine computes ``x / scale``, ``rint``, ``(q - zp) * scale`` and casts in numpy float32, whose
basic operations are correctly rounded (round to nearest, ties to even, subnormals kept). Here a
float32 is its integer decomposition ``sign * m * 2^e`` (``f32_parts``) and each operation is one
exact integer computation rounded once (``f32_round_scaled``), which gives numpy's bits and is what
a Solidity verifier runs: every intermediate is a non-negative integer below ``2^160`` when the
inputs are below ``2^128`` (``docs/fraud_vm.md`` "Arithmetic bounds"). No ``Fraction``, no floats.
"""

from __future__ import annotations

NAN = "nan"
POS_INF = "inf"
NEG_INF = "-inf"
F32_SIGN_BIT = 0x80000000
F32_INF_BITS = 0x7F800000
F32_NEG_INF_BITS = 0xFF800000

Parts = tuple[int, int, int]
"""``(sign, m, e)``: the value ``sign * m * 2^e`` with ``sign`` in {-1, 1} and ``0 <= m < 2^24``."""


def f32_parts(bits: int) -> Parts | str:
    """A float32 bit pattern (``0 <= bits < 2^32``) as ``(sign, m, e)``, or ``NAN``/``POS_INF``/``NEG_INF``.

    Normal: ``m = 2^23 | frac``, ``e = exp - 150``; subnormal (and zero): ``m = frac``, ``e = -149``.
    """
    sign = -1 if bits >> 31 else 1
    exp = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    if exp == 0xFF:
        return NAN if frac else (POS_INF if sign > 0 else NEG_INF)
    if exp == 0:
        return sign, frac, -149
    return sign, (1 << 23) | frac, exp - 150


def round_ratio_even(p: int, q: int) -> int:
    """Nearest integer to ``p / q`` (``p >= 0``, ``q > 0``), ties to even."""
    fl, rem = divmod(p, q)
    twice = 2 * rem
    return fl + 1 if twice > q or (twice == q and fl & 1) else fl


def floor_log2_ratio(p: int, d: int) -> int:
    """``floor(log2(p / d))`` for ``p, d > 0`` (bit lengths, then one comparison)."""
    e = p.bit_length() - d.bit_length()
    if e >= 0:
        return e - 1 if (d << e) > p else e
    return e - 1 if (p << -e) < d else e


def f32_rint(sign: int, m: int, e: int) -> int:
    """Nearest integer to ``sign * m * 2^e``, ties to even (numpy ``rint``); ``|result| < 2^128``."""
    return sign * (m << e if e >= 0 else round_ratio_even(m, 1 << -e))  # ties to even is symmetric


def f32_trunc(sign: int, m: int, e: int) -> int:
    """``sign * m * 2^e`` rounded toward zero (C's float-to-integer conversion before saturation)."""
    return sign * (m << e if e >= 0 else m >> -e)


def f32_round_scaled(negative: bool, p: int, d: int, e2: int, negative_zero: bool = False) -> int:
    """Bits of the float32 nearest to ``±(p / d) * 2^e2`` (``p >= 0``, ``d > 0``), ties to even.

    Overflow gives ±inf, underflow ±0 (the sign of ``negative``); ``p == 0`` gives ``+0`` unless
    ``negative_zero``. The result's exponent is ``E = floor(log2(p / d)) + e2``; its last mantissa
    bit has weight ``2^lsb`` with ``lsb = max(E, -126) - 23``, and the mantissa is
    ``m = round((p / d) * 2^(e2 - lsb))`` computed as one integer division whose operands stay below
    ``max(4p, 2^25 d)``.
    """
    if p == 0:
        return F32_SIGN_BIT if negative_zero else 0
    sign = F32_SIGN_BIT if negative else 0
    e = floor_log2_ratio(p, d)
    big_e = e + e2
    if big_e > 127:
        return sign | F32_INF_BITS
    normal = big_e >= -126
    t = e2 - ((big_e if normal else -126) - 23)  # value * 2^-lsb = (p / d) * 2^t, below 2^(e + t + 1)
    if t >= 0:
        m = round_ratio_even(p << t, d)
    elif e + t + 1 <= -1:  # below half the smallest subnormal: rounds to zero
        return sign
    else:
        m = round_ratio_even(p, d << -t)
    if not normal:
        return sign | m  # m == 2^23 is the smallest normal number's encoding
    if m == 1 << 24:
        m, big_e = 1 << 23, big_e + 1
        if big_e > 127:
            return sign | F32_INF_BITS
    return sign | ((big_e + 127) << 23) | (m - (1 << 23))


def f32_from_int(v: int) -> int:
    """Bits of ``float32(v)`` for an integer ``v`` (numpy ``astype(float32)``, ``|v| < 2^128``)."""
    return f32_round_scaled(v < 0, -v if v < 0 else v, 1, 0)


def f32_div_parts(x: Parts, y: Parts, negative_zero: bool = False) -> int:
    """Bits of ``float32(x / y)`` for finite ``x`` and finite non-zero ``y``."""
    return f32_round_scaled((x[0] < 0) != (y[0] < 0), x[1], y[1], x[2] - y[2], negative_zero)


def f32_mul_parts(x: Parts, y: Parts) -> int:
    """Bits of ``float32(x * y)`` for finite ``x`` and ``y`` (a zero product keeps the sign)."""
    neg = (x[0] < 0) != (y[0] < 0)
    return f32_round_scaled(neg, x[1] * y[1], 1, x[2] + y[2], negative_zero=neg)
