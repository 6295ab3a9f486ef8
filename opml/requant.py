"""Exact requantization in float64: the fast form of ``intmath.requantize`` for int8/uint8 outputs.

The spec (``docs/bundle.md``) requantizes an integer accumulator ``a`` per output channel as::

    y = clamp(zp + round_shift(clamp_int32(a) * m, s), qmin, qmax),   round_shift(v, s) = (v + 2^(s-1)) >> s

which the int64 path evaluates in about ten full passes over the tensor. Here the accumulator is
``a = t + off`` where ``t`` is what the GEMM produced (float32 or float64 holding an integer) and
``off`` a per-channel integer constant (bias minus the zero-point correction). With
``N(t) = (t + off) * m + 2^(s-1) + (zp - qmin) * 2^s`` (an integer),

    y - qmin = clamp(floor(N(t) / 2^s), 0, qmax - qmin)

and the float64 program ``v = t * M + C`` with ``M = m * 2^-s`` and ``C = N(0) * 2^-s`` computes
``N(t) / 2^s`` *exactly* whenever ``|N(t)| < 2^53`` and ``|t * m| < 2^53``:

* ``M`` and ``C`` are integers below 2^53 scaled by a power of two, so float64 holds them exactly
  (no underflow: the smallest nonzero magnitude is 2^-62, far above float64's normal range limit);
* ``t * M`` has the exact value ``(t * m) * 2^-s``, an integer below 2^53 scaled by a power of two,
  which is representable, so the correctly rounded product is that value;
* ``t * M + C`` has the exact value ``N(t) * 2^-s``, representable by the same argument, so the
  correctly rounded sum is that value.

Then ``clip(v, 0, qmax - qmin)`` followed by a cast to uint8 (truncation, which is ``floor`` on
non-negative values; the clip bounds are integers so clipping commutes with ``floor``) gives
``y - qmin`` exactly; adding ``qmin`` modulo 256 and reinterpreting the bytes gives ``y``. Only IEEE
correctly rounded ``*`` and ``+`` are used (DESIGN §3 safe operations), and every intermediate is
exact, so the result does not depend on evaluation order, FMA contraction or SIMD width.

The requirement ``|N(t)| < 2^53`` holds when ``|t| <= limit`` (checked per call against a bound the
caller knows, e.g. the GEMM bound ``max|x| * max column sum |w|``). Otherwise ``t`` is first clamped
per channel to ``[lo, hi]``: ``y`` is a monotone (non-decreasing, ``m >= 0``) function of ``a`` that
equals ``qmin`` for every ``a <= a_lo`` and ``qmax`` for every ``a >= a_hi``, so clamping ``t`` into
``[a_lo - off, a_hi - off]`` does not change ``y``, and on that short range ``|N|`` is small. Plans are
only made when no int32 saturation can occur (``|off| + t_max < 2^31``), ``m >= 0``, ``1 <= s <= 62``,
and ``qmin <= qmax`` lie in the output dtype; otherwise the caller keeps the int64 path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .parallel import for_row_ranges

F64_EXACT = 1 << 53  # integers of magnitude below this are exact in float64
F32_EXACT = 1 << 24  # ... and below (or equal to) this in float32
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
_DTYPE_RANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


@dataclass(frozen=True)
class FloatRequant:
    """A prepared exact float64 requantization (see the module docstring)."""

    mf: np.ndarray  # float64 [n] or [1]: m * 2^-s
    c: np.ndarray  # float64 [n] or [1]: N(0) * 2^-s
    lo: np.ndarray  # clamp bounds of t (same float type as t), used when |t| may exceed ``limit``
    hi: np.ndarray
    limit: int  # |t| <= limit: exact without clamping
    clamp_ok: bool  # clamping to [lo, hi] makes every |t| <= t_max exact
    span: int  # qmax - qmin
    qmin: int
    dtype: np.dtype


def _floor_div(n: int, d: int) -> int:
    return n // d


def _ceil_div(n: int, d: int) -> int:
    return -((-n) // d)


def plan_float_requant(
    mult: Sequence[int] | np.ndarray,
    shift: Sequence[int] | np.ndarray,
    offset: Sequence[int] | np.ndarray,
    zero_point: int,
    qmin: int,
    qmax: int,
    dtype: np.dtype,
    t_max: int,
    t_dtype: type = np.float32,
) -> FloatRequant | None:
    """Prepare ``y = requant(t + offset)`` for inputs ``|t| <= t_max`` held in ``t_dtype``.

    ``mult``/``shift``/``offset`` broadcast per channel (size n or 1). Returns None when a condition of
    the module docstring fails, so the caller keeps the int64 path.
    """
    dtype = np.dtype(dtype)
    if dtype not in _DTYPE_RANGE:
        return None
    dlo, dhi = _DTYPE_RANGE[dtype]
    if not dlo <= qmin <= qmax <= dhi:
        return None
    ms, ss, offs = (np.asarray(v, dtype=np.int64).reshape(-1) for v in (mult, shift, offset))
    n = max(ms.size, ss.size, offs.size)
    if any(v.size not in (1, n) for v in (ms, ss, offs)):
        return None
    ms, ss, offs = (np.broadcast_to(v, (n,)).tolist() for v in (ms, ss, offs))
    t_exact = F32_EXACT if np.dtype(t_dtype) == np.float32 else F64_EXACT - 1
    bound = min(t_max, t_exact)  # clamp bounds must be representable in t's float type
    mf, cs, los, his = [], [], [], []
    limit, clamp_ok = t_max, True
    for m, s, off in zip(ms, ss, offs, strict=True):
        if m < 0 or not 1 <= s <= 62 or abs(off) + t_max > INT32_MAX:
            return None
        k0 = off * m + (1 << (s - 1)) + (zero_point - qmin) * (1 << s)  # N(0)
        if abs(k0) >= F64_EXACT:
            return None
        mf.append(math.ldexp(m, -s))
        cs.append(math.ldexp(k0, -s))
        limit = min(limit, (F64_EXACT - 1 - abs(k0)) // m) if m else limit
        if m == 0:
            lo_t, hi_t = -bound, bound
        else:
            # a <= a_lo  =>  round_shift(a*m, s) <= qmin - zp  =>  y == qmin
            a_lo = _floor_div((qmin - zero_point + 1) * (1 << s) - (1 << (s - 1)) - 1, m)
            # a >= a_hi  =>  round_shift(a*m, s) >= qmax - zp  =>  y == qmax
            a_hi = _ceil_div((qmax - zero_point) * (1 << s) - (1 << (s - 1)), m)
            lo_t = min(max(a_lo - off, -bound), bound)
            hi_t = min(max(a_hi - off, -bound), bound)
        for t in (lo_t, hi_t):
            if abs(t * m + k0) >= F64_EXACT or abs(t * m) >= F64_EXACT:
                clamp_ok = False
        los.append(lo_t)
        his.append(hi_t)
    return FloatRequant(
        mf=np.array(mf, dtype=np.float64), c=np.array(cs, dtype=np.float64),
        lo=np.array(los, dtype=np.float64), hi=np.array(his, dtype=np.float64),
        limit=max(limit, -1), clamp_ok=clamp_ok, span=qmax - qmin, qmin=qmin, dtype=dtype,
    )


def can_apply(p: FloatRequant, t_bound: int) -> bool:
    """Whether :func:`apply_float_requant` is exact for inputs with ``|t| <= t_bound``."""
    return t_bound <= p.limit or p.clamp_ok


TILE_ELEMENTS = 1 << 16  # float64 tile of 512 KiB: the passes over one tile stay in the L2 cache


def _rows_of(v: np.ndarray, r0: int, r1: int, channels_first: bool) -> np.ndarray:
    """The parameter vector ``v`` shaped to broadcast over tile rows ``r0:r1`` of the layout."""
    if v.size == 1:
        return v
    return v[r0:r1, None] if channels_first else v


def apply_float_requant(p: FloatRequant, t: np.ndarray, t_bound: int, channels_first: bool = False) -> np.ndarray:
    """Requantize ``t`` (``|t| <= t_bound``, see :func:`can_apply`), channels on its last axis.

    ``channels_first``: ``t`` is 2-D ``[channels, rows]`` instead, and the result is returned
    transposed to ``[rows, channels]``. Works through row tiles so that the float64 temporaries of
    the passes stay in cache.
    """
    t2 = t if channels_first else t.reshape(-1, t.shape[-1] if t.ndim else 1)
    rows, n = t2.shape
    clamp = t_bound > p.limit
    if clamp and t2.size:  # the data's own maximum (two fast reductions) usually spares the clamp pass
        clamp = max(-float(t2.min()), float(t2.max())) > p.limit
    span = float(p.span)
    if rows * n <= TILE_ELEMENTS and not channels_first:  # one tile: the same passes, less bookkeeping
        if clamp:
            b = t2.astype(np.float64, order="C")
            np.clip(b, p.lo, p.hi, out=b)
            b *= p.mf
        else:
            b = np.multiply(t2, p.mf, dtype=np.float64, order="C")  # converts and multiplies in one pass
        b += p.c
        np.clip(b, 0.0, span, out=b)
        out = b.astype(np.uint8)  # truncation toward zero == floor on these non-negative values
        if p.qmin & 0xFF:
            out += np.uint8(p.qmin & 0xFF)
        return out.view(p.dtype).reshape(t.shape)
    out = np.empty((rows, n), dtype=np.uint8)
    step = max(1, TILE_ELEMENTS // max(n, 1))

    def tiles(start: int, stop: int) -> None:
        buf = np.empty((min(step, stop - start), n), dtype=np.float64)
        for r0 in range(start, stop, step):
            r1 = min(stop, r0 + step)
            b = buf[: r1 - r0]
            np.copyto(b, t2[r0:r1])
            if clamp:
                np.clip(b, _rows_of(p.lo, r0, r1, channels_first), _rows_of(p.hi, r0, r1, channels_first), out=b)
            np.multiply(b, _rows_of(p.mf, r0, r1, channels_first), out=b)
            np.add(b, _rows_of(p.c, r0, r1, channels_first), out=b)
            np.clip(b, 0.0, span, out=b)
            out[r0:r1] = b  # truncation toward zero == floor on these non-negative values

    for_row_ranges(tiles, rows, n)
    if p.qmin & 0xFF:
        out += np.uint8(p.qmin & 0xFF)  # wraps modulo 256: the bytes of y
    if channels_first:
        return np.ascontiguousarray(out.T).view(p.dtype)
    return out.view(p.dtype).reshape(t.shape)


def saturation_bounds(m: int, s: int, zero_point: int, qmin: int, qmax: int) -> tuple[int, int]:
    """``(a_lo, a_hi)`` for ``m > 0``: ``requant(a) == qmin`` for all ``a <= a_lo``, ``== qmax`` for ``a >= a_hi``
    (ignoring the int32 saturation), both tight: ``a_lo`` is the largest and ``a_hi`` the smallest such."""
    # round_shift(a*m, s) <= k  <=>  a*m + 2^(s-1) < (k + 1) 2^s  <=>  a <= floor(((k+1) 2^s - 2^(s-1) - 1) / m)
    a_lo = ((qmin - zero_point + 1) * (1 << s) - (1 << (s - 1)) - 1) // m
    # round_shift(a*m, s) >= k  <=>  a*m >= k 2^s - 2^(s-1)  <=>  a >= ceil((k 2^s - 2^(s-1)) / m)
    a_hi = -((-((qmax - zero_point) * (1 << s) - (1 << (s - 1)))) // m)
    return a_lo, a_hi


@dataclass(frozen=True)
class IntRequant:
    """A prepared scalar requantization evaluated in int64 over a float64 tile of exact integers."""

    lo: float  # clamp bounds: int32 saturation and the saturation of the output (when it is reached)
    hi: float
    mult: int
    add: int  # 2^(s-1) + (zp - qmin) 2^s
    shift: int
    clip: bool  # the output can still leave [0, span] after the clamp (multiplier above 1)
    span: int
    qmin: int
    dtype: np.dtype


def plan_int_requant(
    mult: int, shift: int, zero_point: int, qmin: int, qmax: int, dtype: np.dtype
) -> IntRequant | None:
    """Prepare :func:`int_requant_tile` for scalar parameters, or None (then use ``intmath.requantize``).

    Clamping ``a`` to ``[max(a_lo, INT32_MIN), min(a_hi, INT32_MAX)]`` changes nothing (the output is
    monotone in ``a`` and constant beyond ``a_lo``/``a_hi``; beyond int32 the spec saturates ``a``).
    When ``m <= 2^s`` the output moves by at most one step per unit of ``a``, so at ``a_lo`` it is
    exactly ``qmin`` and at ``a_hi`` exactly ``qmax``: no clip is left to do after the clamp.
    """
    dtype = np.dtype(dtype)
    if dtype not in _DTYPE_RANGE or not _DTYPE_RANGE[dtype][0] <= qmin < qmax <= _DTYPE_RANGE[dtype][1]:
        return None
    if not (0 < mult < (1 << 31) and 1 <= shift <= 62):
        return None
    a_lo, a_hi = saturation_bounds(mult, shift, zero_point, qmin, qmax)
    lo, hi = max(a_lo, INT32_MIN), min(a_hi, INT32_MAX)
    add = (1 << (shift - 1)) + (zero_point - qmin) * (1 << shift)
    if lo > hi or max(abs(lo), abs(hi)) * mult + abs(add) >= (1 << 63):
        return None
    return IntRequant(float(lo), float(hi), mult, add, shift, mult > (1 << shift), qmax - qmin, qmin, dtype)


def int_requant_tile(p: IntRequant, acc: np.ndarray, i32: np.ndarray, i64: np.ndarray, out: np.ndarray) -> None:
    """``requant(acc) - qmin`` as uint8 into ``out``, for a float64 tile ``acc`` of exact integers
    (overwritten); ``i32``/``i64`` are scratch tiles of the same shape. The caller adds ``qmin``
    modulo 256 and views the bytes as the output dtype.

    ``clip(zp + rs(v, s), qmin, qmax) - qmin == clip((v + 2^(s-1) + (zp - qmin) 2^s) >> s, 0, span)``.
    The clamp bounds lie within int32, so the float64 -> int32 -> int64 conversions are exact and
    ``|a * m + add| < 2^63`` (checked when planning).
    """
    np.clip(acc, p.lo, p.hi, out=acc)
    np.copyto(i32, acc, casting="unsafe")  # exact: integers within int32
    np.copyto(i64, i32)
    i64 *= p.mult
    i64 += p.add
    i64 >>= p.shift
    if p.clip:
        np.clip(i64, 0, p.span, out=i64)
    np.copyto(out, i64, casting="unsafe")  # values in [0, span]
