"""Consensus-safe float32 programs (exp, sigmoid, tanh, erf, GELU, sqrt, log) and their two backends.

The engine's int8 lookup tables (:mod:`opml.lut`) are computed from these programs at conversion and
committed by the model address, so every machine must get the same bits. The programs use only the
operations DESIGN.md section 3 declares safe: elementwise float32 ``+ - * /``, ``sqrt``, ``rint``
(ties to even), comparisons with selection, float32 <-> int32 casts and integer/bit operations
(``2**k`` is built by writing exponent bits). No transcendental function and no Python float math
ever touches a value. Each program is written once against :class:`F32Backend` and runs on
:class:`NumpyF32` (vectorized, the fast path) and :class:`SoftF32` (Berkeley SoftFloat, scalar, the
oracle); tests check both give the same bits. ``docs/lut.md`` specifies every constant and the
exact order of operations. :func:`check_float_environment` verifies at start-up that numpy float32
arithmetic on this host is IEEE round-to-nearest-even without flush-to-zero.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np

from opml.errors import DeterminismError

T = TypeVar("T")  # a float32 value (or array of them)
M = TypeVar("M")  # a mask (result of a comparison)
I = TypeVar("I")  # noqa: E741 - an int32 value (or array of them)

FLT_MAX = 3.4028234663852886e38  # 0x7F7FFFFF

# --- constants (decimal literals, rounded once to float32; docs/lut.md lists their bits) ---------
EXP_HI = 88.72283172607421875  # 0x42B17217, largest float32 x with exp(x) < FLT_MAX
EXP_LO = -104.0  # exp(x) < 2**-150 below this: result 0
LOG2E = 1.4426950408889634
LN2_HI = 0.693359375  # 0x3F318000: 9 significant bits, n * LN2_HI is exact for |n| <= 2**15
LN2_LO = -2.12194440e-4  # ln 2 - LN2_HI
# Cephes expf polynomial: exp(r) ~ 1 + r + r^2 * P(r) on |r| <= ln2/2
EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
# Cephes tanhf polynomial for |x| < 0.625: tanh(x) ~ x + x^3 * Q(x^2)
TANH_SMALL = 0.625
TANH_CLAMP = 10.0
TANH_Q = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1)
# erf: Maclaurin series for |x| < 0.5, Abramowitz-Stegun 7.1.26 above; |x| clamped to 10
ERF_SMALL = 0.5
ERF_CLAMP = 10.0
ERF_C = (1.2055332981789664e-4, -8.5483270234508528e-4, 5.2239776254421878e-3,  # 2/sqrt(pi) *
         -2.6866170645131252e-2, 1.1283791670955126e-1, -3.7612638903183752e-1,  # (-1)^n/(n!(2n+1)),
         1.1283791670955126)  # n = 6..0
ERF_P = 0.3275911
ERF_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
RSQRT2 = 0.70710678118654752  # 1/sqrt(2)
GELU_TANH_K = 0.79788456080286536  # sqrt(2/pi)
GELU_TANH_C = 0.044715
GELU_TANH_CLAMP = 10.0
# log: x = m * 2**k with m in [sqrt(1/2), sqrt 2] by exact power-of-two scalings, then Cephes logf on m - 1
LOG_SQRT2 = 1.41421356237309505
LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
         -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)


class F32Backend(ABC, Generic[T, M, I]):
    """The safe operations a float32 program may use; every method is IEEE-754 binary32, RNE."""

    name: str

    # -- float32 arithmetic
    @abstractmethod
    def c(self, value: float) -> T:
        """The float32 nearest to ``value`` (round to nearest even from the double)."""
    @abstractmethod
    def add(self, a: T, b: T) -> T:
        """a + b."""
    @abstractmethod
    def sub(self, a: T, b: T) -> T:
        """a - b."""
    @abstractmethod
    def mul(self, a: T, b: T) -> T:
        """a * b."""
    @abstractmethod
    def div(self, a: T, b: T) -> T:
        """a / b."""
    @abstractmethod
    def sqrt(self, a: T) -> T:
        """Correctly rounded square root."""
    @abstractmethod
    def rint(self, a: T) -> T:
        """Round to an integral value, ties to even."""
    # -- sign bits, comparison, selection
    @abstractmethod
    def neg(self, a: T) -> T:
        """Flip the sign bit."""
    @abstractmethod
    def abs(self, a: T) -> T:
        """Clear the sign bit."""
    @abstractmethod
    def lt(self, a: T, b: T) -> M:
        """a < b (IEEE: -0 < +0 is false)."""
    @abstractmethod
    def eq(self, a: T, b: T) -> M:
        """a == b (IEEE: -0 == +0)."""
    @abstractmethod
    def where(self, m: M, a: T, b: T) -> T:
        """a where m holds, else b."""
    # -- casts and integer operations
    @abstractmethod
    def to_int(self, a: T) -> I:
        """float32 -> int32, rounding to nearest even (used on integral values only)."""
    @abstractmethod
    def from_int(self, i: I) -> T:
        """int32 -> float32, rounding to nearest even."""
    @abstractmethod
    def isub(self, i: I, j: I | int) -> I:
        """Integer i - j."""
    @abstractmethod
    def ishr(self, i: I, s: int) -> I:
        """Arithmetic shift right (floor division by 2**s)."""
    @abstractmethod
    def pow2(self, k: I) -> T:
        """2**k built from exponent bits; requires -126 <= k <= 127."""


class NumpyF32(F32Backend[np.ndarray, np.ndarray, np.ndarray]):
    """Vectorized backend over ``np.float32`` arrays (callers should pass arrays, not scalars)."""

    name = "numpy"

    def c(self, value: float) -> np.ndarray:
        return np.asarray(value, dtype=np.float64).astype(np.float32)
    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.add(a, b, dtype=np.float32)
    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.subtract(a, b, dtype=np.float32)
    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.multiply(a, b, dtype=np.float32)
    def div(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, dtype=np.float32)
    def sqrt(self, a: np.ndarray) -> np.ndarray:
        return np.sqrt(a, dtype=np.float32)
    def rint(self, a: np.ndarray) -> np.ndarray:
        return np.rint(a, dtype=np.float32)
    def neg(self, a: np.ndarray) -> np.ndarray:
        bits = np.asarray(a, dtype=np.float32).view(np.uint32) ^ np.uint32(0x80000000)
        return bits.view(np.float32)
    def abs(self, a: np.ndarray) -> np.ndarray:
        bits = np.asarray(a, dtype=np.float32).view(np.uint32) & np.uint32(0x7FFFFFFF)
        return bits.view(np.float32)
    def lt(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.less(a, b)
    def eq(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.equal(a, b)
    def where(self, m: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(m, a, b).astype(np.float32, copy=False)
    def to_int(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float32).astype(np.int32)
    def from_int(self, i: np.ndarray) -> np.ndarray:
        return np.asarray(i, dtype=np.int32).astype(np.float32)
    def isub(self, i: np.ndarray, j: np.ndarray | int) -> np.ndarray:
        return np.subtract(i, j, dtype=np.int32)
    def ishr(self, i: np.ndarray, s: int) -> np.ndarray:
        return np.right_shift(np.asarray(i, dtype=np.int32), s)
    def pow2(self, k: np.ndarray) -> np.ndarray:
        bits = np.left_shift(np.asarray(k, dtype=np.int32) + np.int32(127), 23)
        return bits.view(np.float32)


class SoftF32(F32Backend[Any, bool, int]):
    """Scalar backend over ``softfloat.float32_t`` (Berkeley SoftFloat 3d, patched): the oracle."""

    name = "soft"

    def __init__(self) -> None:
        import softfloat

        self.sf = softfloat
        self._rne = softfloat.softfloat_round_near_even
        softfloat.cvar.softfloat_roundingMode = self._rne  # the library default, made explicit
        self._consts: dict[float, Any] = {}

    def from_bits(self, bits: int) -> Any:
        """The float32 with these 32 bits."""
        v = self.sf.float32_t()
        v.v = bits & 0xFFFFFFFF
        return v
    def c(self, value: float) -> Any:
        got = self._consts.get(value)
        if got is None:
            d = self.sf.float64_t()
            d.v = struct.unpack("<Q", struct.pack("<d", float(value)))[0]
            got = self._consts[value] = self.sf.f64_to_f32(d)
        return got
    def add(self, a: Any, b: Any) -> Any:
        return self.sf.f32_add(a, b)
    def sub(self, a: Any, b: Any) -> Any:
        return self.sf.f32_sub(a, b)
    def mul(self, a: Any, b: Any) -> Any:
        return self.sf.f32_mul(a, b)
    def div(self, a: Any, b: Any) -> Any:
        return self.sf.f32_div(a, b)
    def sqrt(self, a: Any) -> Any:
        return self.sf.f32_sqrt(a)
    def rint(self, a: Any) -> Any:
        return self.sf.f32_roundToInt(a, self._rne, False)
    def neg(self, a: Any) -> Any:
        return self.from_bits(a.v ^ 0x80000000)
    def abs(self, a: Any) -> Any:
        return self.from_bits(a.v & 0x7FFFFFFF)
    def lt(self, a: Any, b: Any) -> bool:
        return bool(self.sf.f32_lt_quiet(a, b))
    def eq(self, a: Any, b: Any) -> bool:
        return bool(self.sf.f32_eq(a, b))
    def where(self, m: bool, a: Any, b: Any) -> Any:
        return a if m else b
    def to_int(self, a: Any) -> int:
        return int(self.sf.f32_to_i32(a, self._rne, False))
    def from_int(self, i: int) -> Any:
        return self.sf.i32_to_f32(i)
    def isub(self, i: int, j: int) -> int:
        return i - j
    def ishr(self, i: int, s: int) -> int:
        return i >> s
    def pow2(self, k: int) -> Any:
        return self.from_bits((k + 127) << 23)


NUMPY = NumpyF32()
_SOFT: SoftF32 | None = None


def soft_backend() -> SoftF32:
    """The shared :class:`SoftF32` instance (imports ``softfloat`` on first use)."""
    global _SOFT
    if _SOFT is None:
        _SOFT = SoftF32()
    return _SOFT


# --- helpers built from the backend ops --------------------------------------------------------


def clamp(b: F32Backend[T, M, I], x: T, lo: T, hi: T) -> T:
    """max(lo, min(x, hi)) by comparison and selection: x<lo -> lo, then hi<x -> hi."""
    x = b.where(b.lt(x, lo), lo, x)
    return b.where(b.lt(hi, x), hi, x)


def horner(b: F32Backend[T, M, I], z: T, coeffs: tuple[float, ...]) -> T:
    """((c0*z + c1)*z + c2)... : highest degree first, one mul and one add per step."""
    acc = b.c(coeffs[0])
    for k in coeffs[1:]:
        acc = b.add(b.mul(acc, z), b.c(k))
    return acc


# --- the programs ------------------------------------------------------------------------------


def exp(b: F32Backend[T, M, I], x: T) -> T:
    """exp(x): Cody-Waite reduction with a two-part ln 2, Cephes polynomial, 2**n from exponent bits.

    x < -104 gives 0, x > EXP_HI gives FLT_MAX; never inf or NaN for non-NaN x. Subnormal results
    are rounded once (the 2**n scaling is split in two exact factors).
    """
    xc = clamp(b, x, b.c(EXP_LO), b.c(EXP_HI))
    n = b.rint(b.mul(xc, b.c(LOG2E)))
    r = b.sub(b.sub(xc, b.mul(n, b.c(LN2_HI))), b.mul(n, b.c(LN2_LO)))
    p = horner(b, r, EXP_P)
    y = b.add(b.add(b.mul(p, b.mul(r, r)), r), b.c(1.0))
    k = b.to_int(n)
    k1 = b.ishr(k, 1)
    k2 = b.isub(k, k1)
    y = b.mul(b.mul(y, b.pow2(k1)), b.pow2(k2))
    y = b.where(b.lt(x, b.c(EXP_LO)), b.c(0.0), y)
    return b.where(b.lt(b.c(EXP_HI), x), b.c(FLT_MAX), y)


def sigmoid(b: F32Backend[T, M, I], x: T) -> T:
    """1 / (1 + exp(-x)), evaluated as e/(1+e) for x < 0 where e = exp(-|x|)."""
    e = exp(b, b.neg(b.abs(x)))
    d = b.add(b.c(1.0), e)
    return b.where(b.lt(x, b.c(0.0)), b.div(e, d), b.div(b.c(1.0), d))


def tanh(b: F32Backend[T, M, I], x: T) -> T:
    """tanh(x): odd polynomial for |x| < 0.625, else (1 - e)/(1 + e) with e = exp(-2|x|)."""
    a = b.abs(x)
    a = b.where(b.lt(b.c(TANH_CLAMP), a), b.c(TANH_CLAMP), a)
    z = b.mul(a, a)
    small = b.add(b.mul(b.mul(horner(b, z, TANH_Q), z), a), a)
    e = exp(b, b.neg(b.add(a, a)))
    big = b.div(b.sub(b.c(1.0), e), b.add(b.c(1.0), e))
    t = b.where(b.lt(a, b.c(TANH_SMALL)), small, big)
    return b.where(b.lt(x, b.c(0.0)), b.neg(t), t)


def erf(b: F32Backend[T, M, I], x: T) -> T:
    """erf(x): Maclaurin series (degree 13) for |x| < 0.5, Abramowitz-Stegun 7.1.26 above; odd."""
    a = b.abs(x)
    a = b.where(b.lt(b.c(ERF_CLAMP), a), b.c(ERF_CLAMP), a)
    z = b.mul(a, a)
    small = b.mul(a, horner(b, z, ERF_C))
    t = b.div(b.c(1.0), b.add(b.c(1.0), b.mul(b.c(ERF_P), a)))
    poly = b.mul(horner(b, t, ERF_A), t)
    big = b.sub(b.c(1.0), b.mul(poly, exp(b, b.neg(z))))
    y = b.where(b.lt(a, b.c(ERF_SMALL)), small, big)
    return b.where(b.lt(x, b.c(0.0)), b.neg(y), y)


def gelu(b: F32Backend[T, M, I], x: T) -> T:
    """GELU, erf form: (x * 0.5) * (1 + erf(x * (1/sqrt 2)))."""
    return b.mul(b.mul(x, b.c(0.5)), b.add(b.c(1.0), erf(b, b.mul(x, b.c(RSQRT2)))))


def gelu_tanh(b: F32Backend[T, M, I], x: T) -> T:
    """GELU, tanh form: (x*0.5) * (1 + tanh(K * (xc + C*xc^3))), xc = x clamped to [-10, 10]."""
    xc = clamp(b, x, b.c(-GELU_TANH_CLAMP), b.c(GELU_TANH_CLAMP))
    cube = b.mul(b.mul(xc, xc), xc)
    inner = b.mul(b.add(xc, b.mul(cube, b.c(GELU_TANH_C))), b.c(GELU_TANH_K))
    return b.mul(b.mul(x, b.c(0.5)), b.add(b.c(1.0), tanh(b, inner)))


def log(b: F32Backend[T, M, I], x: T) -> T:
    """ln(x): x = m * 2**k by multiplying with powers of two (exact; subnormals included), m in [sqrt(1/2),
    sqrt 2]; then Cephes logf: z = m - 1, z - z^2/2 + z^3 P(z) + k ln 2 (ln 2 in two parts). x <= 0 gives
    -FLT_MAX (never -inf or NaN)."""
    pos = b.lt(b.c(0.0), x)
    m, k = b.where(pos, x, b.c(1.0)), b.c(0.0)
    for s in (64, 32, 16, 8, 4, 2, 1):  # m >= 2**s: m / 2**s (ends with m < 2)
        keep = b.lt(m, b.c(2.0**s))
        m, k = b.where(keep, m, b.mul(m, b.c(2.0**-s))), b.where(keep, k, b.add(k, b.c(float(s))))
    for s in (64, 64, 32, 16, 8, 4, 2, 1):  # m <= 2**-s: m * 2**s (ends with m > 1/2)
        keep = b.lt(b.c(2.0**-s), m)
        m, k = b.where(keep, m, b.mul(m, b.c(2.0**s))), b.where(keep, k, b.sub(k, b.c(float(s))))
    low = b.lt(m, b.c(1.0))
    m, k = b.where(low, b.add(m, m), m), b.where(low, b.sub(k, b.c(1.0)), k)
    high = b.lt(b.c(LOG_SQRT2), m)
    m, k = b.where(high, b.mul(m, b.c(0.5)), m), b.where(high, b.add(k, b.c(1.0)), k)
    z = b.sub(m, b.c(1.0))
    z2 = b.mul(z, z)
    y = b.mul(b.mul(horner(b, z, LOG_P), z), z2)
    y = b.add(y, b.mul(k, b.c(LN2_LO)))
    y = b.sub(y, b.mul(z2, b.c(0.5)))
    r = b.add(b.add(z, y), b.mul(k, b.c(LN2_HI)))
    return b.where(pos, r, b.c(-FLT_MAX))


def sqrt(b: F32Backend[T, M, I], x: T) -> T:
    """Native correctly rounded sqrt; x < 0 gives 0 (never NaN)."""
    return b.sqrt(b.where(b.lt(x, b.c(0.0)), b.c(0.0), x))


Program = Callable[[F32Backend[Any, Any, Any], Any], Any]

PROGRAMS: dict[str, Program] = {
    "exp": exp,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "erf": erf,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "sqrt": sqrt,
    "log": log,
}


def run(program: Program, x: np.ndarray | float, backend: str = "numpy") -> np.ndarray:
    """Apply a program to every element of ``x`` (cast to float32); returns a float32 array.

    ``backend`` is ``"numpy"`` (vectorized) or ``"soft"`` (SoftFloat, element by element).
    """
    xs = np.asarray(x, dtype=np.float32)
    if backend == "numpy":
        with np.errstate(all="ignore"):
            out = program(NUMPY, xs)
        return np.broadcast_to(np.asarray(out, dtype=np.float32), xs.shape).copy()
    if backend == "soft":
        sb = soft_backend()
        flat = xs.reshape(-1).view(np.uint32)
        bits = [program(sb, sb.from_bits(int(v))).v for v in flat]
        return np.array(bits, dtype=np.uint32).view(np.float32).reshape(xs.shape)
    raise ValueError(f"unknown backend {backend!r}: use 'numpy' or 'soft'")


# --- start-up check of the host's float32 arithmetic -------------------------------------------

# Known answers from SoftFloat (operand bits -> result bits). The division cases round up and the
# sqrt cases round down under round-to-nearest-even, so any other rounding mode is caught.
_KNOWN: dict[str, tuple[list[int], list[int], list[int]]] = {
    "division": ([0x3F800000, 0x3F800000, 0x40A00000, 0x3F800000],  # 1/3, 1/7, 5/7, 1/10
                 [0x40400000, 0x40E00000, 0x40E00000, 0x41200000],
                 [0x3EAAAAAB, 0x3E124925, 0x3F36DB6E, 0x3DCCCCCD]),
    "sqrt": ([0x40000000, 0x40400000, 0x40800000, 0x40A00000], [],  # 2, 3, 4, 5
             [0x3FB504F3, 0x3FDDB3D7, 0x40000000, 0x400F1BBD]),
    "rint": ([0x40200000, 0x40600000, 0xC0200000, 0x3EFFFFFF, 0x3FC00000], [],  # 2.5 3.5 -2.5 .49 1.5
             [0x40000000, 0x40800000, 0xC0000000, 0x00000000, 0x40000000]),
    # exp program at 0, 1, -1, 10, -10, 88, -88, -100 (subnormal result), 100 (clamped)
    "exp program": ([0x00000000, 0x3F800000, 0xBF800000, 0x41200000, 0xC1200000, 0x42B00000,
                     0xC2B00000, 0xC2C80000, 0x42C80000], [],
                    [0x3F800000, 0x402DF854, 0x3EBC5AB2, 0x46AC14EE, 0x383E6BCE, 0x7EF882B7,
                     0x0041EDC4, 0x0000001B, 0x7F7FFFFF]),
}


def _lanes(bits: list[int]) -> np.ndarray:
    """64 lanes repeating the given bit patterns (so numpy's SIMD loops are exercised)."""
    return np.resize(np.array(bits, dtype=np.uint32), 64)


def check_float_environment() -> None:
    """Raise :class:`DeterminismError` unless numpy float32 arithmetic is IEEE RNE without FTZ/DAZ."""
    with np.errstate(all="ignore"):
        tiny = np.float32(1e-40)
        if tiny * np.float32(1) == 0 or np.float32(2.0**-126) * np.float32(0.5) == 0:
            raise DeterminismError("subnormal float32 values are flushed to zero (FTZ/DAZ is on)")
        sub = np.full(64, 2.0**-126, dtype=np.float32) * np.float32(0.5)
        if not np.all(sub.view(np.uint32) == 0x00400000):
            raise DeterminismError("vectorized float32 multiply flushes subnormals to zero")
        ops: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
            "division": np.divide, "sqrt": lambda a, _: np.sqrt(a), "rint": lambda a, _: np.rint(a),
            "exp program": lambda a, _: exp(NUMPY, a),
        }
        for what, (a, b, want) in _KNOWN.items():
            got = ops[what](_lanes(a).view(np.float32), _lanes(b or a).view(np.float32))
            if not np.array_equal(np.asarray(got, dtype=np.float32).view(np.uint32), _lanes(want)):
                raise DeterminismError(
                    f"float32 {what} differs from IEEE round-to-nearest-even (SoftFloat) on this host"
                )
