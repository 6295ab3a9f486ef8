"""Lowering of the attention-mask patterns recognised by ``rewrite_masked``, with existing ops only.

Masked softmax (``AievmMaskedSoftmax(scores, cond)``)::

    x   = matmul(a, b)                 # pre_scale * a @ b, requantized to a scale chosen from the
                                       # unmasked calibration scores only (clamped at the floor);
                                       # lut(scores) instead when the scores do not come from a MatMul
    x'  = where(cond, x, -128)         # masked positions: the most negative quantized value
    y   = softmax(x', exp table)

The floor (the real value of -128) lies :data:`SOFTMAX_GAP` below the smallest row maximum seen in
calibration, so the exponent table maps masked positions to exactly 0 on such rows; unmasked scores
below the floor are clamped to it (their weight is below exp(-SOFTMAX_GAP) of their row's maximum).

Masked mean pooling (``AievmMaskedMean(h, mask)`` over axis 1 of ``h`` [N, S, C])::

    m   = where(mask, 1, 0)            # int8 0/1
    n   = reduce_sum(m)                # uint8 count in [0, S], exact (S <= 255)
    acc = matmul(m [N,1,S], h)         # int32: exact sum of (h - zp_h) over kept tokens
    r   = lut(n)                       # int32 table: round(2^RECIP_BITS / n), 0 for n = 0
    y   = mul(acc, r)                  # requantized: s_h * 2^-RECIP_BITS / s_out

``|acc| <= 255 n`` and ``r <= 2^RECIP_BITS / n + 1/2``, so ``acc * r`` stays below 2^31 (the mul
op's int32 saturation is never reached); the reciprocal's relative error is at most
``n * 2^-(RECIP_BITS + 1)`` (< 4e-5 for n <= 255).
"""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from ..lut import softmax_exp_table, unary_lut
from ..ops import REDUCE_SUM
from .builder import QParams, Val, choose_qparams, requant_params
from .context import Context
from .lower import lowering

SOFTMAX_GAP = 15.0  # exp(-15) * 2^20 < 0.5: the 20-bit exponent table is 0 there
RECIP_BITS = 22
MAX_POOL_LEN = 255  # the token count is held in uint8


def _cond(ctx: Context, node: onnx.NodeProto, i: int) -> Val:
    v = ctx.need(node, i)
    if v.is_const:
        raise ctx.err("the attention mask must be a model input (an activation), not a constant")
    if ctx.b.spec(v).dtype == DType.FLOAT32 and not np.isfinite(v.data).all():
        raise ctx.err("the attention mask contains NaN or infinity")
    return v


@lowering("AievmMaskedSoftmax")
def lower_masked_softmax(ctx: Context, node: onnx.NodeProto) -> None:
    fused = len(node.input) == 3
    cond = _cond(ctx, node, len(node.input) - 1)
    pre = float(ctx.attr(node, "pre_scale", 1.0))
    keep_nonzero = bool(ctx.attr(node, "keep_nonzero", 1))
    name = node.output[0]
    if fused:
        a, b = (ctx.quantized(ctx.need(node, i), node.input[i]) for i in (0, 1))
        sa, sb = ctx.b.spec(a), ctx.b.spec(b)
        acc = np.matmul(a.data.astype(np.int64) - sa.zero_point, b.data.astype(np.int64) - sb.zero_point)
        acc_scale = np.float64(np.float32(sa.scale)) * np.float64(np.float32(sb.scale)) * pre
        real = acc * acc_scale
    else:
        x = ctx.quantized(ctx.need(node, 0), node.input[0])
        real = ctx.dequant(x) * pre
    nd = real.ndim
    axis = int(ctx.attr(node, "axis", -1))
    axis = axis + nd if axis < 0 else axis
    if axis != nd - 1:
        raise ctx.err("masked Softmax is supported over the last axis only")
    if cond.data.ndim != nd:
        raise ctx.err(f"mask of rank {cond.data.ndim} for scores of rank {nd}: the mask must keep the scores' rank")
    try:
        nz = np.broadcast_to(cond.data != 0, real.shape)
    except ValueError:
        raise ctx.err(f"mask of shape {cond.data.shape} does not broadcast to the scores {real.shape}") from None
    floor, top = _softmax_floor(ctx, real, nz if keep_nonzero else ~nz, axis)
    qp = choose_qparams(floor, top)
    if fused:
        mult, shift = requant_params(acc_scale / np.float64(np.float32(qp.scale)))
        attrs = {"mult": int(mult[0]), "shift": int(shift[0]), "qmin": -128, "qmax": 127}
        scaled = ctx.b.add_node("matmul", [a.tid, b.tid], name + "_scores", DType.INT8, None, qp, attrs,  # type: ignore[list-item]
                                ctx.env)
    else:
        s = ctx.b.spec(x)
        table = unary_lut("affine", {"mul": pre}, s.scale, s.zero_point, qp.scale, qp.zero_point)
        scaled = ctx.lut(x, table, qp, name + "_scaled")
    fill = ctx.b.const(name + "_masked", np.array([-128], dtype=np.int8))
    ins = [cond.tid, scaled.tid, fill] if keep_nonzero else [cond.tid, fill, scaled.tid]
    masked = ctx.b.add_node("where", ins, name + "_masked_in", DType.INT8, None, qp, {}, ctx.env)  # type: ignore[arg-type]
    t = ctx.b.const(name + "_exp", softmax_exp_table(qp.scale))
    ctx.set(node, ctx.b.add_node("softmax", [masked.tid, t], name, DType.INT8, None, QParams(1.0 / 256.0, -128),  # type: ignore[list-item]
                                 {"axis": axis}, ctx.env, node.name))


def _softmax_floor(ctx: Context, real: np.ndarray, keep: np.ndarray, axis: int) -> tuple[float, float]:
    """(floor, top): the real range of the softmax input, from the unmasked scores only. The floor is
    SOFTMAX_GAP below the smallest row maximum: lower scores are clamped to it (their weight is below
    exp(-SOFTMAX_GAP) of their row maximum's either way)."""
    if not keep.any():
        raise ctx.err("every calibration position is masked; cannot calibrate the attention scores")
    rowmax = np.where(keep, real, -np.inf).max(axis=axis)
    rowmax = rowmax[np.isfinite(rowmax)]
    return float(rowmax.min()) - SOFTMAX_GAP, float(real[keep].max())


def recip_table(bits: int = RECIP_BITS) -> np.ndarray:
    """int32[256]: entry n = round(2^bits / n) (ties up) for n >= 1, entry 0 = 0 (no tokens: mean 0)."""
    n = np.arange(1, 256, dtype=np.int64)
    return np.concatenate([[0], ((1 << (bits + 1)) + n) // (2 * n)]).astype(np.int32)


@lowering("AievmMaskedMean")
def lower_masked_mean(ctx: Context, node: onnx.NodeProto) -> None:
    h = ctx.quantized(ctx.need(node, 0), node.input[0])
    mask = _cond(ctx, node, 1)
    axes = [int(a) for a in ctx.attr(node, "axes", [1])]
    keepdims = int(ctx.attr(node, "keepdims", 1))
    if h.data.ndim != 3 or [a % 3 for a in axes] != [1]:
        raise ctx.err("masked mean pooling is supported over axis 1 of a [batch, tokens, features] tensor")
    n_b, seq, feat = h.data.shape
    if mask.data.shape != (n_b, seq):
        raise ctx.err(f"mask of shape {mask.data.shape} does not match the hidden states {h.data.shape}")
    if seq > MAX_POOL_LEN:
        raise ctx.err(f"masked mean pooling over {seq} > {MAX_POOL_LEN} tokens is not supported")
    name = node.output[0]
    b, env = ctx.b, ctx.env
    one = b.const(name + "_one", np.array([1], dtype=np.int8))
    zero = b.const(name + "_zero", np.array([0], dtype=np.int8))
    unit = QParams(1.0, 0)
    m = b.add_node("where", [mask.tid, one, zero], name + "_mask01", DType.INT8, None, unit, {}, env)  # type: ignore[list-item]
    cnt = b.add_node("reduce", [m.tid], name + "_count", DType.UINT8, None, unit,  # type: ignore[list-item]
                     {"mode": REDUCE_SUM, "axes": [1], "keepdims": 1, "mult": 1 << 30, "shift": 30}, env)
    mrow = b.add_node("reshape", [m.tid], name + "_mask_row", DType.INT8, (n_b, 1, seq), unit, {}, env)  # type: ignore[list-item]
    acc = b.add_node("matmul", [mrow.tid, h.tid], name + "_sum", DType.INT32, None, None,  # type: ignore[list-item]
                     {"mult": 0, "shift": 1, "qmin": 0, "qmax": 0}, env)
    rt = b.const(name + "_recip_table", recip_table())
    rec = b.add_node("lut", [cnt.tid, rt], name + "_recip", DType.INT32, None, None, {}, env)  # type: ignore[list-item]
    rec3 = b.add_node("reshape", [rec.tid], name + "_recip3", DType.INT32, (n_b, 1, 1), None, {}, env)  # type: ignore[list-item]
    sh = np.float64(np.float32(b.spec(h).scale))
    real = acc.data.astype(np.float64) * rec3.data.astype(np.float64) * sh * 2.0**-RECIP_BITS
    qp = ctx.out_qparams(node, real)
    mult, shift = requant_params(sh * 2.0**-RECIP_BITS / np.float64(np.float32(qp.scale)))
    attrs = {"mult": int(mult[0]), "shift": int(shift[0]), "qmin": -128, "qmax": 127}
    if keepdims:
        ctx.set(node, b.add_node("mul", [acc.tid, rec3.tid], name, DType.INT8, None, qp, attrs, env, node.name))  # type: ignore[list-item]
        return
    y = b.add_node("mul", [acc.tid, rec3.tid], name + "_keep", DType.INT8, None, qp, attrs, env, node.name)  # type: ignore[list-item]
    ctx.set(node, b.add_node("reshape", [y.tid], name, DType.INT8, (n_b, feat), qp, {}, env))  # type: ignore[list-item]
