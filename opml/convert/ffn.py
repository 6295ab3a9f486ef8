"""Split feed-forward blocks by intermediate channel when a few channels are outliers.

``linear(W1) -> Gelu -> linear(W2) -> Add(residual) -> LayerNormalization`` where some columns of
the first linear's calibrated output reach more than :data:`SPLIT_RATIO` times the median column
maximum (real encoders: 1536 channels, ~2 % of them up to 8x the rest). One int8 scale for all of
them leaves the ordinary channels' GELU input and output a few levels wide. Lowered instead as two
branches over the column split ``W1[:, I] / W1[:, O]`` and ``W2[I, :] / W2[O, :]``::

    y = add(linear(gelu(linear(x, W1[:, I])), W2[I, :]), linear(gelu(linear(x, W1[:, O])), W2[O, :]))

each branch with its own int8 scales, the two partial outputs and their sum wide (13-bit int16,
``opml.convert.wide``). Same ops, same result in real arithmetic; models without such outliers (or
without the residual LayerNormalization after the block) are lowered as before.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..bundle import DType
from ..intmath import chunk_for, exact_matmul
from .builder import Val
from .context import Context
from .wide import feeds_residual_norm

SPLIT_RATIO = 2.0


def _only(ctx: Context, name: str) -> onnx.NodeProto | None:
    cons = ctx.consumers.get(name, [])
    outs = {o.name for o in ctx.graph.output}
    return cons[0] if len(cons) == 1 and name not in outs else None


def split_ffn(ctx: Context, node: onnx.NodeProto, x: Val, w: Val, bias: np.ndarray) -> bool:
    """Lower ``node`` (the block's first linear) together with its Gelu and second linear when the
    pattern holds, the input is an int8 activation and the intermediate channels have outliers;
    False (nothing emitted) otherwise."""
    from .lower import LOWERINGS, _bias, _weights_per_channel, linear

    gelu = _only(ctx, node.output[0])
    if gelu is None or gelu.op_type != "Gelu" or w.qinfo is not None or w.data.ndim != 2:
        return False
    l2 = _only(ctx, gelu.output[0])
    if l2 is None or l2.op_type != "AievmLinear" or ctx.attr(l2, "aievm_relu", 0) or not feeds_residual_norm(ctx, l2):
        return False
    w2, b2 = ctx.vals.get(l2.input[1]), ctx.vals.get(l2.input[2])
    if w2 is None or b2 is None or not w2.is_const or not b2.is_const or w2.qinfo is not None or w2.data.ndim != 2:
        return False
    if x.is_const or ctx.b.spec(x).dtype != DType.INT8:
        return False
    w1 = np.asarray(w.data, dtype=np.float64)
    b1 = np.asarray(bias, dtype=np.float64).reshape(-1)
    # the first linear's calibrated output, from its exact integer accumulators (no float GEMM: the
    # decision must be the same on every machine)
    wq, sw = _weights_per_channel(ctx, w, axis=1)
    sx = np.float64(np.float32(ctx.b.spec(x).scale))
    bq = _bias(ctx, b1, wq.shape[1], sx * sw)
    x2 = x.data.reshape(-1, wq.shape[0]).astype(np.float32)
    acc = exact_matmul(x2, wq.astype(np.float32), chunk_for(np.dtype(np.int8), np.dtype(np.int8)))
    acc = acc - ctx.b.spec(x).zero_point * wq.astype(np.int64).sum(axis=0) + bq
    chan = np.abs(acc * (sx * sw)).max(axis=0)
    out = chan > SPLIT_RATIO * float(np.median(chan))
    if not out.any() or out.all():
        return False
    xq = x
    parts = []
    for tag, sel in (("n", ~out), ("o", out)):
        idx = np.flatnonzero(sel)
        h, g, y = (f"{l2.output[0]}_{tag}_{k}" for k in ("h", "gelu", "y"))
        linear(ctx, helper.make_node("AievmLinear", [node.input[0]], [h], name=f"{node.name}_{tag}"), xq,
               Val(w1[:, idx].astype(np.float32)), b1[idx], False)
        gn = helper.make_node("Gelu", [h], [g], name=f"{gelu.name}_{tag}")
        gn.attribute.extend(gelu.attribute)
        LOWERINGS["Gelu"](ctx, gn)
        w2p = np.asarray(w2.data, dtype=np.float32)[idx, :]
        linear(ctx, helper.make_node("AievmLinear", [g], [y], name=f"{l2.name}_{tag}"), ctx.vals[g], Val(w2p),
               np.asarray(b2.data, dtype=np.float64) if tag == "n" else None, False, wide=True)
        parts.append(y)
    LOWERINGS["Add"](ctx, helper.make_node("Add", parts, [l2.output[0]], name=l2.name))
    ctx.lowered_ahead.update({gelu.output[0], l2.output[0]})
    return True
