"""int8 lookup tables for the engine's nonlinearities, built from the safe float32 programs.

At conversion time every elementwise nonlinearity on an int8 tensor (sigmoid, tanh, GELU, exp for
softmax, scalar Mul/Div/Add/Sub, ...) becomes a 256-entry table indexed by ``q + 128`` for the input
value ``q`` in -128..127. The tables are stored in the bundle and so committed by the model
address; this module computes them, bit for bit the same on every machine, using only the
operations of :mod:`opml.f32prog`. Every function takes ``backend="numpy"`` (fast) or
``backend="soft"`` (Berkeley SoftFloat oracle); both give identical results. ``docs/lut.md`` is the
specification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from opml import f32prog
from opml.errors import DeterminismError, OpmlError
from opml.f32prog import FLT_MAX, F32Backend, clamp

Params = Mapping[str, float]

# function -> {parameter: default}; a default of None means "absent" (no bound, for clip)
UNARY_FUNCTIONS: dict[str, dict[str, float | None]] = {
    "identity": {},
    "relu": {},
    "leaky_relu": {"alpha": 0.01},
    "clip": {"min": None, "max": None},
    "sigmoid": {},
    "tanh": {},
    "gelu": {},
    "erf": {},
    "gelu_tanh": {},
    "exp": {},
    "sqrt": {},
    "square": {},
    "neg": {},
    "affine": {"mul": 1.0, "div": 1.0, "add": 0.0},
    "hardsigmoid": {"alpha": 0.2, "beta": 0.5},
    "reciprocal": {},
    "log": {"floor": None},  # (x below floor: log(floor); no floor: x <= 0 gives -FLT_MAX)
    "mod": {"divisor": 1.0, "fmod": 1.0},  # fmod 1: C fmod (sign of x); 0: sign of the divisor
}

_ZP_LIMIT = 1 << 23  # |q - zp| stays below 2**24, so float32(q - zp) is exact


class LutError(OpmlError, ValueError):
    """A lookup table was asked for with an unknown function or a bad parameter, scale or zero point."""


def _finite_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise LutError(f"{name} must be a number, got {value!r}")
    v = float(value)
    with np.errstate(over="ignore"):
        f32 = float(np.float32(v))
    if not math.isfinite(v) or not math.isfinite(f32):
        raise LutError(f"{name} must be finite in float32, got {value!r}")
    return v


def _scale(name: str, value: Any) -> float:
    v = _finite_number(name, value)
    if not v > 0 or not np.float32(v) > 0:
        raise LutError(f"{name} must be > 0 (and not underflow in float32), got {value!r}")
    return v


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise LutError(f"{name} must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise LutError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return int(value)


def _resolve(fn: str, params: Params | None) -> dict[str, float | None]:
    """Validated parameters of ``fn``, defaults filled in."""
    if fn not in UNARY_FUNCTIONS:
        raise LutError(f"unknown LUT function {fn!r}; known: {', '.join(UNARY_FUNCTIONS)}")
    spec = UNARY_FUNCTIONS[fn]
    given = dict(params or {})
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise LutError(f"{fn}: unknown parameter(s) {unknown}; allowed: {sorted(spec)}")
    out: dict[str, float | None] = {}
    for key, default in spec.items():
        value = given.get(key, default)
        out[key] = None if value is None else _finite_number(f"{fn}.{key}", value)
    if fn == "affine" and out["div"] == 0:
        raise LutError("affine.div must not be 0")
    if fn == "mod" and (out["divisor"] == 0 or out["fmod"] not in (0.0, 1.0)):
        raise LutError(f"mod: divisor must not be 0 and fmod must be 0 or 1, got {out['divisor']}, {out['fmod']}")
    if fn == "log" and out["floor"] is not None and not out["floor"] > 0:
        raise LutError(f"log: floor must be positive, got {out['floor']}")
    if fn == "clip" and out["min"] is not None and out["max"] is not None and out["min"] > out["max"]:
        raise LutError(f"clip: min {out['min']} > max {out['max']}")
    return out


def _apply(b: F32Backend[Any, Any, Any], fn: str, p: dict[str, float | None], x: Any) -> Any:
    """The float32 program for ``fn`` on backend ``b`` (parameters already validated)."""
    zero, one = b.c(0.0), b.c(1.0)

    def pc(key: str) -> Any:
        value = p[key]
        if value is None:
            raise LutError(f"{fn}: parameter {key} is required")
        return b.c(value)

    if fn == "identity":
        return x
    if fn == "relu":
        return b.where(b.lt(zero, x), x, zero)
    if fn == "leaky_relu":
        return b.where(b.lt(x, zero), b.mul(x, pc("alpha")), x)
    if fn == "clip":
        if p["min"] is not None:
            x = b.where(b.lt(x, pc("min")), pc("min"), x)
        if p["max"] is not None:
            x = b.where(b.lt(pc("max"), x), pc("max"), x)
        return x
    if fn == "square":
        return b.mul(x, x)
    if fn == "neg":
        return b.neg(x)
    if fn == "affine":
        return b.add(b.div(b.mul(x, pc("mul")), pc("div")), pc("add"))
    if fn == "hardsigmoid":
        return clamp(b, b.add(b.mul(x, pc("alpha")), pc("beta")), zero, one)
    if fn == "log":
        if p["floor"] is not None:
            x = b.where(b.lt(x, pc("floor")), pc("floor"), x)
        return f32prog.log(b, x)
    if fn == "mod":
        return _mod(b, x, pc("divisor"), p["fmod"] == 0.0)
    if fn == "reciprocal":
        is_zero = b.eq(x, zero)
        r = b.div(one, b.where(is_zero, one, x))
        r = clamp(b, r, b.c(-FLT_MAX), b.c(FLT_MAX))
        return b.where(is_zero, b.c(FLT_MAX), r)
    return f32prog.PROGRAMS[fn](b, x)


def _mod(b: F32Backend[Any, Any, Any], x: Any, d: Any, floor: bool) -> Any:
    """x - d * trunc(x / d) (C fmod, the sign of x), brought into (-|d|, |d|) with the sign of x where the
    float32 product rounds; ``floor``: the sign of d instead (Python's %, ONNX Mod fmod=0)."""
    zero, one = b.c(0.0), b.c(1.0)
    q = b.div(x, d)
    t = b.rint(q)
    t = b.where(b.lt(b.abs(q), b.abs(t)), b.where(b.lt(q, zero), b.add(t, one), b.sub(t, one)), t)  # trunc
    r = b.sub(x, b.mul(t, d))
    ad = b.abs(d)
    r = b.where(b.lt(r, b.neg(ad)), b.add(r, ad), b.where(b.lt(ad, r), b.sub(r, ad), r))
    r = b.where(b.lt(r, zero), b.where(b.lt(zero, x), b.add(r, ad), r), b.where(b.lt(x, zero), b.sub(r, ad), r))
    r = b.where(b.eq(r, ad), zero, b.where(b.eq(r, b.neg(ad)), zero, r))
    r = clamp(b, r, b.neg(ad), ad)
    if floor:  # a nonzero remainder whose sign differs from d's moves by d
        differs = b.where(b.lt(r, zero), b.lt(zero, d), b.where(b.lt(zero, r), b.lt(d, zero), b.lt(zero, zero)))
        r = b.where(differs, b.add(r, d), r)
    return r


def unary_float(
    fn: str, x: np.ndarray, params: Params | None = None, backend: str = "numpy"
) -> np.ndarray:
    """Evaluate ``fn`` elementwise on float32 ``x`` with the safe programs; float32 result.

    Results may be +-inf (e.g. ``square`` or ``affine`` overflowing) but never NaN for finite x.
    """
    p = _resolve(fn, params)
    y = f32prog.run(lambda b, v: _apply(b, fn, p, v), np.asarray(x, dtype=np.float32), backend)
    if np.isnan(y).any():
        raise DeterminismError(f"{fn} produced NaN; the LUT programs must never do that")
    return y


def dequant_grid(scale: float, zp: int, backend: str = "numpy") -> np.ndarray:
    """float32(q - zp) * float32(scale) for q = -128..127 (one float32 multiply); float32[256]."""
    s = _scale("scale", scale)
    z = _int("zero point", zp, -_ZP_LIMIT, _ZP_LIMIT)
    diff = (np.arange(-128, 128, dtype=np.int64) - z).astype(np.float32)  # exact: |q - zp| < 2**24
    return f32prog.run(lambda b, v: b.mul(v, b.c(s)), diff, backend)


def float_range(
    fn: str, params: Params | None, in_scale: float, in_zp: int, backend: str = "numpy"
) -> tuple[float, float]:
    """(min, max) of ``fn`` over the 256 dequantized input values, as Python floats."""
    y = unary_float(fn, dequant_grid(in_scale, in_zp, backend), params, backend)
    return float(y.min()), float(y.max())


def quantize(
    y: np.ndarray, out_scale: float, out_zp: int, qmin: int = -128, qmax: int = 127,
    backend: str = "numpy",
) -> np.ndarray:
    """clamp(rint(y / float32(out_scale)) + float32(out_zp), qmin, qmax) in float32, then to int8."""
    s = _scale("out_scale", out_scale)
    z = _int("output zero point", out_zp, -_ZP_LIMIT, _ZP_LIMIT)
    lo = _int("qmin", qmin, -128, 127)
    hi = _int("qmax", qmax, lo, 127)

    def prog(b: F32Backend[Any, Any, Any], v: Any) -> Any:
        q = b.add(b.rint(b.div(v, b.c(s))), b.c(float(z)))
        return clamp(b, q, b.c(float(lo)), b.c(float(hi)))

    q = f32prog.run(prog, np.asarray(y, dtype=np.float32), backend)
    if np.isnan(q).any():
        raise DeterminismError("NaN reached LUT quantization")
    return q.astype(np.int32).astype(np.int8)  # exact: integral values in [qmin, qmax]


def unary_lut(
    fn: str, params: Params | None, in_scale: float, in_zp: int, out_scale: float, out_zp: int,
    qmin: int = -128, qmax: int = 127, backend: str = "numpy",
) -> np.ndarray:
    """The int8[256] table of ``fn``: entry ``q + 128`` is the quantized ``fn(dequant(q))``."""
    _scale("out_scale", out_scale)  # fail before any work
    y = unary_float(fn, dequant_grid(in_scale, in_zp, backend), params, backend)
    return quantize(y, out_scale, out_zp, qmin, qmax, backend)


def softmax_exp_table(in_scale: float, frac_bits: int = 20, backend: str = "numpy") -> np.ndarray:
    """int32[256]: t[d] = rint(exp(float32(-d) * float32(in_scale)) * 2**frac_bits), d = 0..255.

    ``d`` is an input's distance below its row maximum in quantized units. A running minimum over d
    (an integer operation) guarantees the table is non-increasing; t[0] == 2**frac_bits.
    """
    s = _scale("in_scale", in_scale)
    fb = _int("frac_bits", frac_bits, 0, 30)

    def prog(b: F32Backend[Any, Any, Any], v: Any) -> Any:
        e = f32prog.exp(b, b.mul(v, b.c(s)))
        return b.rint(b.mul(e, b.c(float(1 << fb))))

    neg_d = (-np.arange(256, dtype=np.int32)).astype(np.float32)  # d = 0 gives +0.0
    t = np.minimum.accumulate(f32prog.run(prog, neg_d, backend).astype(np.int32))
    if t[0] != 1 << fb:
        raise DeterminismError(f"softmax exp table: t[0] = {t[0]}, expected 2**{fb}")
    return t
