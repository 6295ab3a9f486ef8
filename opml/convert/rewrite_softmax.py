"""Hand-written softmax: ``exp(x - max(x)) / sum(exp(x - max(x)))`` over one axis becomes one ``Softmax``.

jax2tf writes ``jax.nn.softmax`` out of its parts (magika's last layer): ``ReduceMax`` (without keepdims),
``Max(-inf, .)`` (the stop-gradient guard), Reshape and Expand back to the input's shape (computed from
``Shape(input)``), ``Sub``, ``Exp``, ``ReduceSum`` and a ``Div``. Lowered op by op, ``Exp`` of an int8 grid
overflows or loses the small probabilities; the engine's ``softmax`` op is exact to its table. The rule
accepts the max subtraction or its absence (the same function), the guard as ``Max`` with a constant of -inf
or ``Identity``, and broadcast paths checked as in :mod:`rewrite_reduce` (they only restore the reduced
axis as 1). A softmax over an axis other than the last becomes ``Transpose``, ``Softmax(axis=-1)``,
``Transpose`` back. Nodes of the pattern that something else still reads are kept.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .rewrite import _Graph
from .rewrite_reduce import ReduceMatcher, drop_dead


def _shifted(mt: ReduceMatcher, name: str, axis: int) -> tuple[str, list[onnx.NodeProto]]:
    """``name`` as ``x - max(x)`` over ``axis``: (x, nodes); else (name, [])."""
    g = mt.g
    p = g.producer.get(name)
    if p is None or p.op_type != "Sub":
        return name, []
    back: list[onnx.NodeProto] = []
    cur = mt.unbcast(p.input[1], back)
    guard = g.producer.get(cur)
    while guard is not None and (guard.op_type == "Identity" or guard.op_type == "Max" and len(guard.input) == 2 and
                                 any((v := g.scalar(i)) is not None and v == -np.inf for i in guard.input)):
        back.append(guard)
        cur = next(i for i in guard.input if g.const(i) is None)
        cur = mt.unbcast(cur, back)
        guard = g.producer.get(cur)
    red = mt.reduction(cur, "ReduceMax")
    if red is None or red.x != p.input[0] or red.axis != axis or not mt.restores(back, red):
        return name, []
    return p.input[0], [p, *back, *red.nodes]


def fuse_handwritten_softmax(g: _Graph) -> bool:
    """Replace one hand-written softmax by Softmax; True if it did."""
    mt = ReduceMatcher(g)
    for div in g.nodes:
        if div.op_type != "Div" or len(div.input) != 2:
            continue
        e = g.producer.get(div.input[0])
        back: list[onnx.NodeProto] = []
        red = mt.reduction(mt.unbcast(div.input[1], back), "ReduceSum")
        if e is None or e.op_type != "Exp" or red is None or red.x != e.output[0] or not mt.restores(back, red):
            continue
        x, nodes = _shifted(mt, e.input[0], red.axis)
        xs = mt.s.shape(x)
        if red.axis != -1 and xs is None:
            continue
        out, name = div.output[0], div.output[0] + "_softmax"
        if red.axis == -1:
            new = [helper.make_node("Softmax", [x], [out], name=name, axis=-1)]
        else:
            r = len(xs)  # type: ignore[arg-type]
            perm = list(range(r))
            perm[r + red.axis], perm[-1] = perm[-1], perm[r + red.axis]
            new = [helper.make_node("Transpose", [x], [name + "_in"], name=name + "_in", perm=perm),
                   helper.make_node("Softmax", [name + "_in"], [name + "_out"], name=name, axis=-1),
                   helper.make_node("Transpose", [name + "_out"], [out], name=name + "_back", perm=perm)]
        pos = next(i for i, k in enumerate(g.nodes) if id(k) == id(div))
        g.nodes = g.nodes[:pos] + new + g.nodes[pos + 1:]
        g._index()
        drop_dead(g, [div, e, *back, *red.nodes, *nodes])
        return True
    return False
