"""Boolean And / Or / Not of activations (mask logic that does not fold: transformers 5 combines the padding
mask with its causal or all-true masks this way), lowered onto ``where`` (no new op).

``And(a, b) = Where(a, b, false)``, ``Or(a, b) = Where(a, true, b)``, ``Not(a) = Where(a, false, true)``,
each through the ``Where`` lowering (``lower_select``: a boolean condition selects integer branches as they
are, so the result is exact). A constant operand that is all true (And) or all false (Or) and does not
widen the other is dropped, so no node is emitted for it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .builder import Val
from .context import Context
from .lower import LOWERINGS, lowering


def _bool_const(ctx: Context, name: str, value: bool) -> str:
    ctx.vals[name] = Val(np.array(value), onnx_dtype=np.dtype(bool))
    return name


def _where(ctx: Context, node: onnx.NodeProto, ins: list[str]) -> None:
    LOWERINGS["Where"](ctx, helper.make_node("Where", ins, list(node.output), name=node.name))


@lowering("And", "Or")
def lower_and_or(ctx: Context, node: onnx.NodeProto) -> None:
    a, b = ctx.need(node, 0), ctx.need(node, 1)
    for v in (a, b):
        if np.dtype(v.onnx_dtype) != np.dtype(bool):
            raise ctx.err(f"{node.op_type} of a {np.dtype(v.onnx_dtype)} tensor (ONNX allows only bool)")
    neutral = node.op_type == "And"  # the operand value that leaves the other unchanged
    for act, c in ((a, b), (b, a)):
        if c.is_const and not act.is_const and np.all(np.asarray(c.data) == neutral):
            if np.broadcast_shapes(act.data.shape, np.shape(c.data)) == act.data.shape:
                ctx.set(node, act)
                return
    flag = _bool_const(ctx, f"{node.output[0]}_{'false' if neutral else 'true'}", not neutral)
    x, y = node.input[0], node.input[1]
    if a.is_const:  # the activation is the condition
        x, y = y, x
    _where(ctx, node, [x, y, flag] if neutral else [x, flag, y])


@lowering("Not")
def lower_not(ctx: Context, node: onnx.NodeProto) -> None:
    if np.dtype(ctx.need(node, 0).onnx_dtype) != np.dtype(bool):
        raise ctx.err("Not of a non-bool tensor (ONNX allows only bool)")
    f, t = _bool_const(ctx, node.output[0] + "_false", False), _bool_const(ctx, node.output[0] + "_true", True)
    _where(ctx, node, [node.input[0], f, t])
