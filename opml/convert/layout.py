"""Transposes that move the batch axis, held back until the batch is first again.

A bundle declares the batch as every tensor's leading dimension. Attention blocks often move it for a
step: timm's ViT and Swin write ``qkv.reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4)`` and take
``q, k, v = qkv[0], qkv[1], qkv[2]`` (or ``unbind(0)``: Split + Squeeze), after which the batch leads
again. Such a Transpose is not emitted: its result is a *pending* value (``Val.pending``), the physical
tensor (batch first) with ONNX axis ``i`` at physical axis ``pending[i]``. Transpose composes the
permutation; Gather with a constant index, Squeeze and Split act on the physical axis of their ONNX axis
(never the batch); as soon as the ONNX layout has the batch first again one ``transpose`` (batch kept
first) materialises it. Any other op reading a pending value fails with the batch error (``Context.get``).
"""

from __future__ import annotations

import numpy as np
import onnx

from .builder import QParams, Val
from .context import BATCH_HINT, Context


def _qp(ctx: Context, v: Val) -> QParams | None:
    from ..bundle import DType

    s = ctx.b.spec(v)
    return QParams(s.scale, s.zero_point) if s.dtype in (DType.INT8, DType.UINT8) else None


def settle(ctx: Context, phys: Val, perm: tuple[int, ...], name: str, label: str = "") -> Val:
    """The value whose ONNX layout is ``transpose(phys, perm)``: pending while the batch is not first, else a
    real tensor (one ``transpose`` that keeps the batch first, none for the identity)."""
    if perm[0] != 0:
        return Val(phys.data, phys.tid, onnx_dtype=phys.onnx_dtype, pending=perm)
    if list(perm) == list(range(len(perm))):  # (a pending view transposed back: the physical tensor itself)
        return phys if phys.pending is None else Val(phys.data, phys.tid, onnx_dtype=phys.onnx_dtype, qinfo=phys.qinfo)
    out = ctx.b.add_node("transpose", [phys.ref], name, ctx.b.spec(phys).dtype, None, _qp(ctx, phys),
                         {"perm": list(perm)}, ctx.env, label)
    out.onnx_dtype = phys.onnx_dtype
    return out


def _physical_axis(ctx: Context, v: Val, axis: int) -> int:
    assert v.pending is not None
    nd = len(v.pending)
    axis = axis + nd if axis < 0 else axis
    if not 0 <= axis < nd:
        raise ctx.err(f"axis {axis} out of range for rank {nd}")
    pa = v.pending[axis]
    if pa == 0:
        raise ctx.err("this op works on the batch axis of a transposed value" + BATCH_HINT)
    return pa


def _drop(perm: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """The permutation after ONNX axis ``axis`` (physical ``perm[axis]``) is removed from both layouts."""
    pa = perm[axis]
    return tuple(p - (p > pa) for i, p in enumerate(perm) if i != axis)


def transpose(ctx: Context, node: onnx.NodeProto, x: Val, perm: list[int]) -> None:
    base = x.pending if x.pending is not None else tuple(range(x.data.ndim))
    ctx.set(node, settle(ctx, x, tuple(base[p] for p in perm), node.output[0], node.name))


def gather(ctx: Context, node: onnx.NodeProto, x: Val, idx: Val, axis: int) -> None:
    assert x.pending is not None
    if not idx.is_const:
        raise ctx.err("gathering from a transposed value needs constant indices" + BATCH_HINT)
    pa = _physical_axis(ctx, x, axis)
    ind = np.asarray(idx.data, dtype=np.int64)
    if ind.ndim > 1:
        raise ctx.err("gathering from a transposed value takes a scalar or 1-D index" + BATCH_HINT)
    it = ctx.b.const(node.output[0] + "_idx", ind)
    g = ctx.b.add_node("gather", [x.ref, it], node.output[0] + "_phys", ctx.b.spec(x).dtype, None, _qp(ctx, x),
                       {"axis": pa}, ctx.env)
    g.onnx_dtype = x.onnx_dtype
    nd = len(x.pending)
    perm = _drop(x.pending, axis + nd if axis < 0 else axis) if ind.ndim == 0 else x.pending
    ctx.set(node, settle(ctx, g, perm, node.output[0], node.name))


def squeeze(ctx: Context, node: onnx.NodeProto, x: Val, axes: list[int] | None) -> None:
    assert x.pending is not None
    nd = len(x.pending)
    logical = [x.data.shape[p] for p in x.pending]
    ax = sorted({a + nd if a < 0 else a for a in axes}) if axes is not None else \
        [a for a, d in enumerate(logical) if d == 1]
    if any(logical[a] != 1 for a in ax):
        raise ctx.err(f"cannot squeeze axes {ax} of shape {logical}")
    perm = x.pending
    phys_shape = list(x.data.shape)
    for a in sorted(ax, reverse=True):
        pa = _physical_axis(ctx, Val(x.data, x.tid, pending=perm), a)
        phys_shape.pop(pa)
        perm = _drop(perm, a)
    r = ctx.b.add_node("reshape", [x.ref], node.output[0] + "_phys", ctx.b.spec(x).dtype, tuple(phys_shape),
                       _qp(ctx, x), {}, ctx.env)
    r.onnx_dtype = x.onnx_dtype
    ctx.set(node, settle(ctx, r, perm, node.output[0], node.name))


def split(ctx: Context, node: onnx.NodeProto, x: Val, axis: int, sizes: list[int]) -> None:
    assert x.pending is not None
    pa = _physical_axis(ctx, x, axis)
    nd = x.data.ndim
    start = 0
    for i, (out, size) in enumerate(zip(node.output, sizes, strict=True)):
        starts, ends = [0] * nd, list(x.data.shape)
        starts[pa], ends[pa] = start, start + size
        ends[0] = 1 << 62
        start += size
        if not out:
            continue
        s = ctx.b.add_node("slice", [x.ref], out + "_phys", ctx.b.spec(x).dtype, None, _qp(ctx, x),
                           {"starts": starts, "ends": ends, "steps": [1] * nd}, ctx.env)
        s.onnx_dtype = x.onnx_dtype
        ctx.set(node, settle(ctx, s, x.pending, out, node.name), i)
