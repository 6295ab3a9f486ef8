"""Lowering of ConvTranspose (1-D and 2-D) onto data movement and the ``conv`` op.

A transposed convolution with stride ``s`` is an ordinary stride-1 convolution over the input with
``s - 1`` zeros inserted between neighbouring elements, by the kernel flipped in space with its input
and output channels swapped (per group), padded by ``d (k - 1) - pad`` on each side (plus
``output_padding`` at the end; a negative amount is a crop of the result). The zeros are inserted
exactly, with the input's own quantization, per spatial axis ``a``::

    z    = lut(x)                      # every entry the zero point: real 0, same shape
    cat  = concat(reshape(x, [.., L, 1, ..]), reshape(z, ..) x (s - 1), axis a + 1)
    up   = slice(reshape(cat, [.., L s, ..]), 0 .. (L - 1) s + 1 on axis a)

then ``conv`` requantizes once, as any convolution. 1-D runs as 2-D with H = 1 (``lower_window``).
"""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from .builder import QParams, Val
from .context import Context
from .lower import conv, lowering
from .lower_window import _back_to_1d, _spatial_rank, _to_2d


def _same(ctx: Context, v: Val) -> QParams:
    s = ctx.b.spec(v)
    return QParams(s.scale, s.zero_point)


def _reshape(ctx: Context, v: Val, shape: tuple[int, ...], name: str) -> Val:
    return ctx.b.add_node("reshape", [v.ref], name, ctx.b.spec(v).dtype, shape, _same(ctx, v), {}, ctx.env)


def _slice(ctx: Context, v: Val, axis: int, start: int, stop: int, name: str, label: str = "") -> Val:
    nd = v.data.ndim
    starts, ends = [0] * nd, list(v.data.shape)
    starts[axis], ends[axis] = start, stop
    if ctx.b.batch:
        ends[0] = 1 << 62
    return ctx.b.add_node("slice", [v.ref], name, ctx.b.spec(v).dtype, None, _same(ctx, v),
                          {"starts": starts, "ends": ends, "steps": [1] * nd}, ctx.env, label)


def zero_insert(ctx: Context, x: Val, axis: int, s: int, name: str) -> Val:
    """``x`` (int8) with ``s - 1`` zeros between neighbours along ``axis``: length ``(L - 1) s + 1``."""
    if s == 1:
        return x
    shape = tuple(x.data.shape)
    sp = ctx.b.spec(x)
    zero = ctx.lut(x, np.full(256, sp.zero_point, dtype=np.int8), _same(ctx, x), name + "_zeros")
    split = shape[:axis + 1] + (1,) + shape[axis + 1:]
    parts = [_reshape(ctx, x, split, name + "_x")] + [_reshape(ctx, zero, split, name + "_z")] * (s - 1)
    cat = ctx.b.add_node("concat", [p.ref for p in parts], name + "_cat", sp.dtype, None, _same(ctx, x),
                         {"axis": axis + 1}, ctx.env)
    merged = _reshape(ctx, cat, shape[:axis] + (shape[axis] * s,) + shape[axis + 1:], name + "_merged")
    return _slice(ctx, merged, axis, 0, (shape[axis] - 1) * s + 1, name)


def _pads(ctx: Context, node: onnx.NodeProto, nd: int, spatial: tuple[int, ...], kernel: list[int],
          strides: list[int], dil: list[int], outpad: list[int]) -> list[int]:
    """ONNX ConvTranspose pads ``[begin..., end...]`` (from ``pads``, ``output_shape`` or ``auto_pad``)."""
    auto = ctx.attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    out_shape = ctx.attr(node, "output_shape", None)
    if out_shape is None and auto in ("NOTSET", ""):
        pads = list(ctx.attr(node, "pads", [0] * (2 * nd)))
        if len(pads) != 2 * nd:
            raise ctx.err(f"pads has {len(pads)} values; a {nd}-D window needs {2 * nd}")
        return pads
    if auto == "VALID" and out_shape is None:
        return [0] * (2 * nd)
    if auto not in ("NOTSET", "", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ctx.err(f"auto_pad={auto} is not supported")
    want = list(out_shape)[-nd:] if out_shape is not None else [spatial[i] * strides[i] for i in range(nd)]
    begin, end = [], []
    for i in range(nd):
        total = strides[i] * (spatial[i] - 1) + outpad[i] + (kernel[i] - 1) * dil[i] + 1 - want[i]
        if out_shape is None:  # auto_pad SAME: onnxruntime never pads negatively (the output is then smaller)
            total = max(total, 0)
        # (a negative total with output_shape is extra output: more padding of the stride-1 convolution)
        if total < 0:  # extra output: onnxruntime adds it at the end, like output_padding
            begin.append(0)
            end.append(total)
        elif auto == "SAME_UPPER":
            begin.append(total // 2)
            end.append(total - total // 2)
        else:
            begin.append(total - total // 2)
            end.append(total // 2)
    return begin + end


@lowering("ConvTranspose")
def lower_conv_transpose(ctx: Context, node: onnx.NodeProto) -> None:
    ctx.reject_attrs(node, {"auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape",
                            "pads", "strides"})
    x, w = ctx.need(node, 0), ctx.need(node, 1)
    if not w.is_const:
        raise ctx.err("ConvTranspose weights must be a constant (an initializer or a folded subgraph)")
    nd = _spatial_rank(ctx, x, "ConvTranspose")
    wd = np.asarray(w.data, dtype=np.float64)
    if wd.ndim != nd + 2:
        raise ctx.err(f"weights of rank {wd.ndim} for a {nd}-D input: expected [C, M/group, {'K' * nd}]")
    group = int(ctx.attr(node, "group", 1))
    c, mg = wd.shape[:2]
    if c != x.data.shape[1] or c % group:
        raise ctx.err(f"weights for {c} input channels in {group} groups, the input has {x.data.shape[1]}")
    kernel = list(wd.shape[2:])
    strides = list(ctx.attr(node, "strides", [1] * nd))
    dil = list(ctx.attr(node, "dilations", [1] * nd))
    outpad = list(ctx.attr(node, "output_padding", [0] * nd))
    if any(p >= max(s, d) for p, s, d in zip(outpad, strides, dil, strict=True)):
        raise ctx.err(f"output_padding {outpad} must be smaller than the stride or the dilation")
    pads = _pads(ctx, node, nd, tuple(x.data.shape[2:]), kernel, strides, dil, outpad)
    b = ctx.get(node, 2)
    bias = None if b is None else np.asarray(b.data, dtype=np.float64)
    xq = ctx.quantized(x, node.input[0])
    name = node.output[0]
    if nd == 1:  # as 2-D with H = 1
        xq = _to_2d(ctx, xq, name + "_in2d")
        wd = wd[:, :, None, :]
        kernel, strides, dil, outpad = [1, *kernel], [1, *strides], [1, *dil], [0, *outpad]
        pads = [0, pads[0], 0, pads[1]]
    up = xq
    for i in range(2):
        up = zero_insert(ctx, up, 2 + i, strides[i], f"{name}_up{i}")
    cg = c // group
    kh, kw = kernel
    wt = wd.reshape(group, cg, mg, kh, kw).transpose(0, 2, 1, 3, 4)[:, :, :, ::-1, ::-1].reshape(group * mg, cg, kh, kw)
    conv_pads, crop = [], []
    for i in range(2):
        lo = dil[i] * (kernel[i] - 1) - pads[i]
        hi = dil[i] * (kernel[i] - 1) - pads[2 + i] + outpad[i]
        conv_pads.append((max(lo, 0), max(hi, 0)))
        crop.append((max(-lo, 0), max(-hi, 0)))
    cp = [conv_pads[0][0], conv_pads[1][0], conv_pads[0][1], conv_pads[1][1]]
    cropped = any(a or z for a, z in crop)
    full = onnx.helper.make_node("ConvTranspose", [node.input[0]], [name + "_full" if cropped else name],
                                 name="" if cropped else node.name)
    if cropped and name in ctx.preferred:
        ctx.preferred[full.output[0]] = ctx.preferred[name]
    conv(ctx, full, up, Val(np.ascontiguousarray(wt)), bias, cp, False, group=group, strides=[1, 1],
         dilations=dil)
    out = ctx.vals[full.output[0]]
    if cropped:
        for i, (a, z) in enumerate(crop):
            if a or z:
                length = out.data.shape[2 + i]
                last = not any(crop[j][0] or crop[j][1] for j in range(i + 1, 2))
                out = _slice(ctx, out, 2 + i, a, length - z, name if last else f"{name}_crop{i}",
                             node.name if last else "")
        ctx.set(node, out)
    if nd == 1:
        _back_to_1d(ctx, node)
    assert ctx.b.spec(ctx.vals[name]).dtype == DType.INT8
