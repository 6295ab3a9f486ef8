"""Pad of an activation in ``reflect``, ``edge`` or ``wrap`` mode, lowered onto ``gather`` (no new op).

Each padded axis is one ``gather`` with a constant index vector: output position ``i`` along the axis reads
input position ``src(i - before)``, where ``src`` reflects (``reflect``: the edge is not repeated), clamps
(``edge``) or wraps (``wrap``) the coordinate into the input; negative pads (cropping) are the same index
vector without those positions. The values are copied, so the result is exact on any grid (int8 or float)
and keeps its input's quantization parameters. The batch axis cannot be padded. ``constant`` mode on an
activation is refused with a hint: its padding value is not a position of the input (the common case, a
zero Pad before a Conv or pool, belongs in that node's own ``pads``).
"""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from .builder import QParams
from .context import BATCH_HINT, Context
from .lower import lowering


def source_index(n: int, before: int, after: int, mode: str) -> np.ndarray:
    """For an axis of length ``n`` padded by ``before`` / ``after``, the input position each output position
    reads (``mode``: reflect, edge or wrap). Negative pads crop first; the rest pads the cropped range
    (onnxruntime's order, which matters for ``wrap``)."""
    lo, hi = max(-before, 0), n - max(-after, 0)
    c = hi - lo
    pos = np.arange(-max(before, 0), c + max(after, 0), dtype=np.int64)
    if mode == "edge":
        return lo + np.clip(pos, 0, c - 1)
    if mode == "wrap":
        return lo + np.mod(pos, c)
    period = 2 * (c - 1)  # reflect: ... 2 1 | 0 1 2 ... c-1 | c-2 c-3 ...
    r = np.mod(pos, period) if period else np.zeros_like(pos)
    return lo + np.where(r < c, r, period - r)


def _mode(ctx: Context, node: onnx.NodeProto) -> str:
    m = ctx.attr(node, "mode", b"constant")
    return m.decode() if isinstance(m, bytes) else str(m)


@lowering("Pad")
def lower_pad(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    nd = x.data.ndim
    mode = _mode(ctx, node)
    if ctx.attr(node, "pads", None) is not None:  # opset < 11
        pads = [int(p) for p in ctx.attr(node, "pads")]
        axes = list(range(nd))
    else:
        pads = [int(p) for p in ctx.const_of(node, 1, "pads").reshape(-1)]
        axes = list(range(nd))
        if len(node.input) > 3 and node.input[3]:
            axes = [int(a) + nd if int(a) < 0 else int(a) for a in ctx.const_of(node, 3, "axes").reshape(-1)]
    if len(pads) != 2 * len(axes):
        raise ctx.err(f"pads {pads} do not have two entries per padded axis ({len(axes)})")
    todo = [(a, pads[k], pads[k + len(axes)]) for k, a in enumerate(axes) if pads[k] or pads[k + len(axes)]]
    if not todo:
        ctx.set(node, x)
        return
    if mode not in ("reflect", "edge", "wrap"):
        raise ctx.err(f"Pad mode {mode!r} of an activation is not lowered (reflect, edge and wrap are); a zero Pad "
                      "before a Conv or pool belongs in that node's pads attribute (e.g. nn.Conv2d(padding=...)) at "
                      "export")
    if ctx.b.batch and any(a == 0 for a, _, _ in todo):
        raise ctx.err("padding the batch dimension is not supported" + BATCH_HINT)
    cur = x
    for k, (a, before, after) in enumerate(todo):
        n = x.data.shape[a]
        c = n - max(-before, 0) - max(-after, 0)  # (after cropping)
        if c < 1 or n + before + after < 1:
            raise ctx.err(f"the padded axis {a} would be empty")
        if mode == "reflect" and max(before, after) > c - 1:
            raise ctx.err(f"reflect padding of {max(before, after)} on an axis of {c} needs pads < {c}")
        idx = ctx.b.const(f"{node.output[0]}_idx{a}", source_index(n, before, after, mode))
        s = ctx.b.spec(cur)
        qp = QParams(s.scale, s.zero_point) if s.dtype in (DType.INT8, DType.UINT8) else None
        last = k == len(todo) - 1
        out = ctx.b.add_node("gather", [cur.ref, idx], node.output[0] if last else f"{node.output[0]}_axis{a}",
                             s.dtype, None, qp, {"axis": a}, ctx.env, node.name if last else "")
        out.onnx_dtype = x.onnx_dtype
        cur = out
    ctx.set(node, cur)
