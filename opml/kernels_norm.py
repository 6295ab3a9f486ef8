"""Fast kernels of softmax and layernorm: the spec's integer algorithms evaluated exactly in float64.

Every quantity of these algorithms is an integer (sums, squares, products, and the quotients of the
floor divisions). Float64 holds every integer of magnitude below 2^53 exactly, and IEEE ``+ - *`` of
such integers is exact when the true result is below 2^53, in any order of evaluation; so sums, sums
of squares and products are exact under the bounds checked below. Divisions use
:func:`opml.intmath.floor_div_exact_f64`'s lemma: for integers ``|n| + d < 2^52``, ``d >= 1``,
``floor(n / d)`` computed as float64 division then ``floor`` is exact. Float64 runs about as fast
as int64 arithmetic per element but its division is several times faster than int64's, and it lets
the work proceed through row tiles that stay in cache. When a bound fails (an unusual bundle), the
int64 formulas are used instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bundle import Node, TensorSpec
from .errors import OpmlError
from .intmath import F64_DIV_EXACT, isqrt, requantize, round_div
from .kernels import LAYERNORM_SQRT_BITS, QRANGE, Kernel, _const
from .native import ops as native_ops
from .parallel import for_row_ranges
from .requant import IntRequant, int_requant_tile, plan_int_requant

TILE_ELEMENTS = 1 << 15
F64_EXACT = 1 << 53


def prepare_softmax(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    out = specs[node.outputs[0]]
    table = _const(specs, node.inputs[1]).astype(np.int64)
    axis = node.iattr("axis")
    lo, hi = QRANGE[out.dtype]
    zp = out.zero_point
    tmax = int(np.abs(table).max()) if table.size else 0
    by_byte = table.size == 256 and specs[node.inputs[0]].dtype in QRANGE
    table_f = table.astype(np.float64)
    fast = native_ops.Softmax(table, zp, lo, hi, out.dtype.np) if by_byte and native_ops.available() else None

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        if fast is not None and x.ndim and axis in (-1, x.ndim - 1):
            y = fast(x)  # the same integers in C (None: a case it does not take)
            if y is not None:
                return y
        length = x.shape[axis] if x.ndim else 1
        # |s| <= L*T, |512 e + s| <= (512 + L) T, divisor 2s: the float64 floor division is exact
        if by_byte and (512 + 3 * length) * tmax + 2 < F64_DIV_EXACT:
            return _softmax_f64(x, axis, table_f, zp, lo, hi)
        xi = x.astype(np.int64)
        d = xi.max(axis=axis, keepdims=True) - xi
        e = table[d]
        s = np.maximum(e.sum(axis=axis, keepdims=True), 1)
        y = np.floor_divide(e * 512 + s, 2 * s) + zp
        return np.clip(y, lo, hi).astype(out.dtype.np)

    return run


def _softmax_f64(x: np.ndarray, axis: int, table_f: np.ndarray, zp: int, lo: int, hi: int) -> np.ndarray:
    """The spec's softmax, exactly, in float64 (bounds checked by the caller): over row tiles (in
    parallel) when the axis is the last one, else on the whole array."""
    if axis not in (-1, x.ndim - 1):
        return _softmax_rows_f64(x, axis, table_f, zp, lo, hi)
    length = x.shape[-1]
    x2 = x.reshape(-1, length)
    out = np.empty(x2.shape, dtype=np.int8 if lo < 0 else np.uint8)
    step = max(1, TILE_ELEMENTS // max(length, 1))

    def tiles(start: int, stop: int) -> None:
        for r0 in range(start, stop, step):
            r1 = min(stop, r0 + step)
            out[r0:r1] = _softmax_rows_f64(x2[r0:r1], 1, table_f, zp, lo, hi)

    for_row_ranges(tiles, x2.shape[0], length)
    return out.reshape(x.shape)


def _softmax_rows_f64(x: np.ndarray, axis: int, table_f: np.ndarray, zp: int, lo: int, hi: int) -> np.ndarray:
    # max - x lies in [0, 255]: uint8 arithmetic modulo 256 gives it exactly, for int8 and uint8 x
    d = np.subtract(x.max(axis=axis, keepdims=True).view(np.uint8), x.view(np.uint8))
    e = np.take(table_f, d, mode="clip")  # (indices are in range; "clip" only avoids a slow numpy path)
    if axis in (-1, x.ndim - 1):
        # a BLAS row sum is exact: every partial sum is an integer below 2^53 (checked by the caller)
        s = np.matmul(e, np.ones(e.shape[-1]))[..., None]
    else:
        s = e.sum(axis=axis, keepdims=True)
    np.maximum(s, 1.0, out=s)
    e *= 512.0
    e += s
    s *= 2.0
    e /= s  # floor_div_f64: exact floor after the floor below
    np.floor(e, out=e)
    if zp - lo:
        e += float(zp - lo)
    np.clip(e, 0.0, float(hi - lo), out=e)
    u = e.astype(np.uint8)
    if lo & 0xFF:
        u += np.uint8(lo & 0xFF)
    return u.view(np.int8 if lo < 0 else np.uint8)


def prepare_layernorm(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    x_spec, out = specs[node.inputs[0]], specs[node.outputs[0]]
    gamma = _const(specs, node.inputs[1]).astype(np.int64)
    beta = _const(specs, node.inputs[2]).astype(np.int64)
    eps, frac = node.iattr("eps"), node.iattr("frac_bits")
    if eps < 0 or not 0 <= frac <= MAX_FRAC_BITS:
        raise OpmlError(f"layernorm needs eps >= 0 and frac_bits in [0, {MAX_FRAC_BITS}] (got {eps}, {frac})")
    mult, shift = node.iattr("mult"), node.iattr("shift")
    if not (-(1 << 31) < mult < (1 << 31) and 1 <= shift <= 62):  # an int32 multiplier (either sign), a shift
        raise OpmlError(f"layernorm needs |mult| < 2^31 and 1 <= shift <= 62 (got {mult}, {shift})")
    qmin, qmax = node.iattr("qmin"), node.iattr("qmax")
    g = LAYERNORM_SQRT_BITS
    scale = 1 << (frac + g)
    gmax = int(np.abs(gamma).max()) if gamma.size else 0
    bmax = int(np.abs(beta).max()) if beta.size else 0
    rq = plan_int_requant(mult, shift, out.zero_point, qmin, qmax, out.dtype.np)
    params = _LayerNormF64(float(scale), eps, gamma.astype(np.float64), beta.astype(np.float64), rq)
    fast = (native_ops.LayerNorm(gamma, beta, eps, frac, g, mult, shift, out.zero_point, qmin, qmax, out.dtype.np)
            if native_ops.available() else None)

    def exact_in_f64(n: int) -> bool:
        # |x| <= 255 (int8/uint8): |S| <= 255 n, Q = sum x^2 <= 2^16 n, so n^2 Q < 2^53 if n^3 2^16 < 2^53;
        # |d| <= 255 n; numerator |d| 2^(F+g) + den/2 with den <= 2^31 (isqrt of a value < 2^62);
        # |z| <= numerator; |acc| <= |z| max|gamma| + max|beta|; (v div n) << 2g plus eps stays < 2^62
        num = 255 * n * scale + (1 << 31)
        return (rq is not None and x_spec.dtype in QRANGE and 0 <= eps and n ** 3 * (1 << 16) < F64_EXACT
                and num + (1 << 31) < F64_DIV_EXACT and num * gmax + bmax < F64_EXACT
                and ((255 * n) ** 2 << (2 * g)) + eps < (1 << 62))

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        if fast is not None:
            y = fast(x)  # the same integers in C (None: a case it does not take)
            if y is not None:
                return y
        n = x.shape[-1] if x.ndim else 0
        if x.size and exact_in_f64(n):
            return _layernorm_f64(x, n, params)
        y = _layernorm_int(x, n, gamma, beta, gmax, bmax, eps, frac, mult, shift, out.zero_point, qmin, qmax,
                           out.dtype.np)
        if y is None:  # extreme data: the spec's own Python-integer evaluation (slow, exact)
            from .reference import ref_layernorm

            return ref_layernorm(node, specs, x)
        return y

    return run


MAX_FRAC_BITS = 32
_I64_LIMIT = 1 << 62  # every int64 intermediate below is kept under this (headroom for one addition)


def _layernorm_int(x: np.ndarray, n: int, gamma: np.ndarray, beta: np.ndarray, gmax: int, bmax: int, eps: int,
                   frac: int, mult: int, shift: int, zp: int, qmin: int, qmax: int,
                   dtype: np.dtype) -> np.ndarray | None:
    """The spec's layernorm in int64 where the data's bounds allow it; None where they do not (the caller
    then evaluates the reference's Python integers).

    Per row: ``q = v // n = n Q - S^2`` (``v = sum (n x - S)^2 = n (n Q - S^2)``, so the floor division is
    exact), ``den = max(isqrt((q << 2g) + eps), 1)``, ``z = round_div(d << (F + g), den)`` with ``d = n x - S``,
    then the requantization of ``z gamma + beta``. Each int64 step runs only when its operands' bounds
    (from the data) keep it below 2^62; the square root of a large ``(q << 2g) + eps`` is taken per row in
    Python integers; when ``n Q``, ``d << (F + g)`` or ``z gamma`` could overflow, None.
    """
    g = LAYERNORM_SQRT_BITS
    if not x.size or n == 0:
        return np.empty(x.shape, dtype=dtype)
    xmax = max(-int(x.min()), int(x.max()))
    if n * n * xmax * xmax >= _I64_LIMIT:  # n Q or S^2 would overflow
        return None
    xi = x.astype(np.int64)
    s = xi.sum(axis=-1, keepdims=True)
    q = n * (xi * xi).sum(axis=-1, keepdims=True) - s * s
    qmax_ = int(q.max())
    if (qmax_ << (2 * g)) + eps < _I64_LIMIT:
        denom = np.maximum(isqrt((q << (2 * g)) + eps), 1)
    else:  # exact roots of large values, one Python integer per row
        denom = np.array([max(math.isqrt((int(v) << (2 * g)) + eps), 1) for v in q.reshape(-1)],
                         dtype=np.int64).reshape(q.shape)
    d = n * xi - s
    dmax = 2 * n * xmax
    if (dmax << (frac + g)) + int(denom.max()) >= _I64_LIMIT:
        return None
    z = round_div(d << (frac + g), denom)
    zmax = max(-int(z.min()), int(z.max()))
    if zmax * gmax + bmax >= _I64_LIMIT:  # (gmax, bmax: max |gamma|, |beta|, from prepare)
        return None
    return requantize(z * gamma + beta, mult, shift, zp, qmin, qmax, dtype)


@dataclass(frozen=True)
class _LayerNormF64:
    scale: float  # 2^(F+g)
    eps: int
    gamma: np.ndarray  # float64
    beta: np.ndarray
    requant: IntRequant | None


def _layernorm_f64(x: np.ndarray, n: int, p: _LayerNormF64) -> np.ndarray:
    """The spec's layernorm, exactly, through row tiles: the integer steps in float64, then the
    requantization in int64 (its products need up to 62 bits)."""
    g = LAYERNORM_SQRT_BITS
    x2 = x.reshape(-1, n)
    rows = x2.shape[0]
    out = np.empty((rows, n), dtype=np.uint8)
    step = max(1, TILE_ELEMENTS // n)
    rq = p.requant
    assert rq is not None
    ones = np.ones(n)

    def tiles(start: int, stop: int) -> None:
        i32 = np.empty((min(step, stop - start), n), dtype=np.int32)
        i64 = np.empty((min(step, stop - start), n), dtype=np.int64)
        for r0 in range(start, stop, step):
            r1 = min(stop, r0 + step)
            xf = x2[r0:r1].astype(np.float64)
            # row sums by BLAS matrix-vector products: exact, every partial sum is an integer below 2^53
            s = (xf @ ones)[:, None]
            q = (np.square(xf) @ ones)[:, None]
            # v = sum_i (n x_i - S)^2 = n (n Q - S^2), an exact integer identity
            v = (n * (n * q - s * s)).astype(np.int64)
            den = np.maximum(isqrt(((v // n) << (2 * g)) + p.eps), 1)
            # z = floor((d 2^(F+g) + floor(den / 2)) / den) with d = n x - S
            num = xf
            num *= n * p.scale
            num += (den >> 1).astype(np.float64) - s * p.scale
            num /= den.astype(np.float64)
            np.floor(num, out=num)
            num *= p.gamma
            num += p.beta
            int_requant_tile(rq, num, i32[: r1 - r0], i64[: r1 - r0], out[r0:r1])

    for_row_ranges(tiles, rows, n)
    if rq.qmin & 0xFF:
        out += np.uint8(rq.qmin & 0xFF)
    return out.view(rq.dtype).reshape(x.shape)
