"""Lowerings of ``rewrite_stft.py``'s nodes: an STFT convolution with a 13-bit output and its magnitude.

``AievmWideConv(x, W[, b])`` is lowered exactly as ``Conv`` but with its output a 13-bit int16 tensor
(symmetric, zero point 0, ``|q| <= 4095``; the format ``--int16`` gives a Conv output, ``wide16.py``), so a
spectrum keeps ~12 bits whatever its loudness. Data movement (the slices of the real and imaginary halves)
keeps int16.

``AievmMagnitude(a, b)``, for two int16 tensors on one grid (scale ``s``, zero point 0, the same shape)::

    a' = reshape(a, [N, 1, ...]), b' = reshape(b, [N, 1, ...])
    c  = concat(a', b'; axis 1)                                  [N, 2, ...] int16
    y  = reduce(c; mode L2, axes [1], keepdims 0, mult, shift)   int8 on the magnitude's own grid s_y

``reduce`` L2 is ``clamp(round_div(isqrt(a^2 + b^2) mult, 2^shift) + zp_y)``: the exact integer square root
(floor) of the exact sum of squares, ``|a|, |b| <= 4095`` so the sum stays below 2^25, then one
requantization with ``mult 2^-shift ~= s / s_y``. The only roundings: the spectrum's 13-bit grid, the floor
of ``isqrt`` (under one step of ``s``) and the output's int8 grid. Anything else (inputs that are not int16 on
one grid) is lowered as the original ``Sqrt(Add(Pow(a, 2), Pow(b, 2)))``, so it converts as before.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from ..bundle import DType
from ..ops import REDUCE_L2
from .builder import QParams, Val, requant_params
from .context import Context
from .lower import LOWERINGS, lowering
from .wide import is_wide


@lowering("AievmWideConv")
def lower_wide_conv(ctx: Context, node: onnx.NodeProto) -> None:
    conv = onnx.helper.make_node("Conv", list(node.input), list(node.output), name=node.name)
    conv.attribute.extend(node.attribute)
    chosen = ctx.accuracy
    ctx.accuracy = dataclasses.replace(chosen, int16=chosen.int16 | {node.output[0]})
    try:
        LOWERINGS["Conv"](ctx, conv)
    finally:
        ctx.accuracy = chosen


def _same_grid(ctx: Context, a: Val, b: Val) -> bool:
    if a.is_const or b.is_const or not (is_wide(ctx, a) and is_wide(ctx, b)) or a.data.shape != b.data.shape:
        return False
    sa, sb = ctx.b.spec(a), ctx.b.spec(b)
    return sa.zero_point == 0 and sb.zero_point == 0 and np.float32(sa.scale) == np.float32(sb.scale) \
        and a.data.ndim >= 1


@lowering("AievmMagnitude")
def lower_magnitude(ctx: Context, node: onnx.NodeProto) -> None:
    a, b = ctx.need(node, 0), ctx.need(node, 1)
    out = node.output[0]
    if not _same_grid(ctx, a, b):  # the original chain, node by node
        two = out + "_two"
        ctx.vals[two] = Val(np.array(2.0, dtype=np.float32), onnx_dtype=np.dtype(np.float32))
        mk = onnx.helper.make_node
        LOWERINGS["Pow"](ctx, mk("Pow", [node.input[0], two], [out + "_re2"]))
        LOWERINGS["Pow"](ctx, mk("Pow", [node.input[1], two], [out + "_im2"]))
        LOWERINGS["Add"](ctx, mk("Add", [out + "_re2", out + "_im2"], [out + "_pow"]))
        LOWERINGS["Sqrt"](ctx, mk("Sqrt", [out + "_pow"], [out], name=node.name))
        return
    s = ctx.b.spec(a)
    shape = tuple(a.data.shape)
    split = shape[:1] + (1,) + shape[1:]
    grid = QParams(s.scale, 0)
    parts = [ctx.b.add_node("reshape", [v.ref], f"{out}_{tag}", DType.INT16, split, grid, {}, ctx.env)
             for v, tag in ((a, "re"), (b, "im"))]
    cat = ctx.b.add_node("concat", [p.ref for p in parts], out + "_pair", DType.INT16, None, grid, {"axis": 1},
                         ctx.env)
    sx = np.float64(np.float32(s.scale))
    real = np.sqrt(a.data.astype(np.float64) ** 2 + b.data.astype(np.float64) ** 2) * sx
    qp = ctx.out_qparams(node, real, relu=True)
    mult, shift = requant_params(sx / np.float64(np.float32(qp.scale)))
    attrs = {"mode": REDUCE_L2, "axes": [1], "keepdims": 0, "mult": int(mult[0]), "shift": int(shift[0])}
    ctx.set(node, ctx.b.add_node("reduce", [cat.ref], out, DType.INT8, None, qp, attrs, ctx.env, node.name))
