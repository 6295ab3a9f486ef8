"""Exact integer building blocks shared by every engine path.

The exact integer GEMM of DESIGN §3 (int8 operands held as float32, K split into chunks so every
partial sum is an integer below 2^24, chunk results summed in float64) and the rounding rules used
by requantization. These are the only places the fast path touches BLAS.
"""

from __future__ import annotations

import numpy as np

from .errors import OpmlError

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
# Float64 floor division is exact below this bound (see floor_div_f64).
F64_DIV_EXACT = 1 << 52
# int8 x int8 products are at most 128*128 = 2^14 in magnitude: 1024 of them stay within 2^24.
GEMM_CHUNK = 1024


# Largest magnitude of an operand value per dtype (int16 operands are weights minus a zero point).
_MAG = {"int8": 128, "uint8": 255, "int16": 255}


def chunk_for(a_dtype: np.dtype, b_dtype: np.dtype) -> int:
    """Largest power-of-two K chunk whose partial sums stay within 2^24 for these operand types."""
    bound = _MAG[np.dtype(a_dtype).name] * _MAG[np.dtype(b_dtype).name]
    chunk = GEMM_CHUNK
    while chunk * bound > (1 << 24):
        chunk //= 2
    return chunk


def exact_matmul(a: np.ndarray, b: np.ndarray, chunk: int = GEMM_CHUNK) -> np.ndarray:
    """``a @ b`` for float32 arrays holding int8 (or, with chunk 512, uint8) values, exactly, as int64.

    Shapes follow ``np.matmul`` (batch dimensions broadcast). Every chunk of at most
    :data:`GEMM_CHUNK` products sums to an integer of magnitude <= 2^24, which float32 represents
    exactly whatever order BLAS adds in; chunk results are then added in float64 (exact below 2^53).
    """
    k = a.shape[-1]
    if k <= chunk:
        return np.matmul(a, b).astype(np.int64)
    acc: np.ndarray | None = None
    for k0 in range(0, k, chunk):
        part = np.matmul(a[..., k0 : k0 + chunk], b[..., k0 : k0 + chunk, :]).astype(np.float64)
        acc = part if acc is None else acc + part
    assert acc is not None
    return acc.astype(np.int64)


def clip_int32(acc: np.ndarray) -> np.ndarray:
    """Saturate an int64 accumulator to the int32 range (the accumulator width of the spec)."""
    return np.clip(acc, INT32_MIN, INT32_MAX)


def round_shift(v: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """``round(v / 2**shift)`` with ties toward +infinity, for int64 ``v`` and shift >= 1."""
    s = np.asarray(shift, dtype=np.int64)
    return (v + (np.int64(1) << (s - 1))) >> s


def round_div(num: np.ndarray, den: np.ndarray | int) -> np.ndarray:
    """``round(num / den)`` with ties toward +infinity, for int64 arrays and den > 0."""
    d = np.asarray(den, dtype=np.int64)
    # floor((2n + d) / 2d) == floor((n + floor(d/2)) / d) for integers; this form cannot overflow first
    return np.floor_divide(num + (d >> 1), d)


def floor_div_f64(num: np.ndarray, den: np.ndarray | float) -> np.ndarray:
    """``floor(num / den)`` for float64 arrays holding integers with ``|num| + den < 2^52``, ``den >= 1``.

    Exact. Let q = num/den (real) and k = floor(q). If q is an integer, |q| <= |num| < 2^53 is
    representable and the division returns it. Otherwise k < q < k + 1 and both k and k + 1 are
    representable; rounding is monotone, so k <= fl(q) <= k + 1, and fl(q) = k + 1 would need
    |k + 1 - q| to be within one ulp of q (even a merely faithful division stays within one ulp),
    i.e. below 2^-52 |q| + 2^-52 <= 2^-52 (|num| + den) / den < 1/den. But k + 1 - q =
    ((k + 1) den - num) / den is a positive multiple of 1/den. So floor(fl(q)) = k.
    """
    return np.floor(np.divide(num, den))


def requantize(
    acc: np.ndarray,
    mult: np.ndarray | int,
    shift: np.ndarray | int,
    zero_point: int,
    qmin: int,
    qmax: int,
    dtype: np.dtype,
) -> np.ndarray:
    """``clip(zero_point + round_shift(clip_int32(acc) * mult, shift), qmin, qmax)`` cast to dtype."""
    v = clip_int32(acc) * np.asarray(mult, dtype=np.int64)
    return np.clip(round_shift(v, shift) + zero_point, qmin, qmax).astype(dtype)


def isqrt(v: np.ndarray) -> np.ndarray:
    """Elementwise ``floor(sqrt(v))`` for int64 ``v`` in [0, 2^62), exactly.

    With r = isqrt(v) <= 2^31, float64 conversion and the correctly rounded sqrt each add a relative
    error of at most 2^-53, so the computed root is within 2^31 * 2^-51 = 2^-20 of sqrt(v), in
    [r - 2^-20, r + 1 + 2^-20): its floor is r - 1, r or r + 1, and one correction each way (in int64:
    (r + 1)^2 <= (2^31 + 1)^2 < 2^63) gives r.
    """
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r -= r * r > v
    r += (r + 1) * (r + 1) <= v
    return r


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Fixed-point ``(mult, shift)`` with ``mult * 2**-shift ~= real``, mult < 2^31, 1 <= shift <= 62.

    ``real`` must be positive and below 2^30. Tiny values give ``(0, 62)`` (the product rounds to 0).
    """
    if not real > 0 or not np.isfinite(real) or real >= 2.0**30:
        raise OpmlError(f"requantization multiplier {real!r} is out of range (0, 2^30)")
    m, e = np.frexp(np.float64(real))  # real = m * 2^e, 0.5 <= m < 1
    mult = int(np.rint(np.float64(m) * 2.0**31))
    if mult == 1 << 31:
        mult //= 2
        e += 1
    shift = 31 - int(e)
    while shift > 62:
        mult >>= 1
        shift -= 1
    if shift < 1:
        raise OpmlError(f"requantization multiplier {real!r} is too large")
    return mult, shift
