"""Batch-first recurrent layers: undo the transposes ``torch.onnx.export`` wraps around an LSTM/GRU
built with ``batch_first=True``.

onnxruntime runs recurrent nodes in layout 0 only (``[seq, batch, ...]``), so torch exports
``nn.LSTM(batch_first=True)`` as::

    X [N, S, I] -> Transpose(1, 0, 2) -> LSTM(layout 0) -> Y [S, D, N, H]
        -> Squeeze(axis 1)                                   (one direction)   -> [S, N, H]
        -> Transpose(0, 2, 1, 3) -> Reshape([0, 0, -1])      (bidirectional)   -> [S, N, 2H]
        -> Transpose(1, 0, 2) -> [N, S, *]                   (after the last layer; the next layer's
                                                              LSTM reads the [S, N, *] tensor directly)

The transposes move the batch axis, which a bundle with a dynamic batch cannot express. The same
values come from the layer in layout 1 (``[N, S, ...]``, which the converter unrolls directly):
``X -> LSTM(layout 1) -> Y [N, S, D, H] -> Squeeze(axis 2) / Reshape([0, 0, -1]) -> [N, S, *]``,
with the final Transpose an Identity and the next layer reading the batch-first tensor. Applied only
where the whole pattern holds: ``Y_h`` / ``Y_c`` unused (they stay ``[D, N, H]`` in torch's layout),
initial states absent or constant (transposed to ``[N, D, H]``).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .rewrite import _attr, _Graph


def _perm(n: onnx.NodeProto | None) -> list[int] | None:
    if n is None or n.op_type != "Transpose":
        return None
    p = _attr(n, "perm", None)
    return None if p is None else [int(v) for v in p]  # type: ignore[attr-defined]


def _used(g: _Graph, name: str) -> bool:
    return bool(name) and (name in g.outputs or bool(g.consumers.get(name)))


def _squeeze_axes(g: _Graph, n: onnx.NodeProto) -> list[int] | None:
    axes = _attr(n, "axes", None)
    if axes is None and len(n.input) > 1:
        axes = g.const(n.input[1])
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


def batch_first_recurrent(g: _Graph) -> bool:
    """Rewrite one batch_first LSTM/GRU (or the next layer of one already rewritten); True if it did."""
    aliases: dict[str, str] = g.__dict__.setdefault("batch_first_aliases", {})
    for r in g.nodes:
        if r.op_type not in ("LSTM", "GRU") or r.domain not in ("", "ai.onnx") or _attr(r, "layout", 0):
            continue
        x = r.input[0]
        pre = g.producer.get(x)
        if x in aliases:
            x_bf, drop = aliases[x], ([pre] if pre is not None and len(g.consumers.get(x, [])) == 1 else [])
        elif _perm(pre) == [1, 0, 2] and len(g.consumers.get(x, [])) == 1 and x not in g.outputs:
            assert pre is not None
            x_bf, drop = pre.input[0], [pre]
        else:
            continue
        if any(_used(g, o) for o in r.output[1:]):
            continue
        states = [r.input[i] if len(r.input) > i else "" for i in (5, 6)]
        if any(s and g.const(s) is None for s in states):
            continue
        y = r.output[0] if r.output else ""
        users = g.consumers.get(y, [])
        if not y or y in g.outputs or len(users) != 1:
            continue
        c1, chain = users[0], [users[0]]
        bidir = _attr(r, "direction", b"forward") in (b"bidirectional", "bidirectional")
        if not bidir and c1.op_type == "Squeeze" and _squeeze_axes(g, c1) == [1]:
            s = c1.output[0]
        elif bidir and _perm(c1) == [0, 2, 1, 3] and len(g.consumers.get(c1.output[0], [])) == 1:
            c2 = g.consumers[c1.output[0]][0]
            shape = g.const(c2.input[1]) if c2.op_type == "Reshape" and len(c2.input) > 1 else None
            if shape is None or [int(v) for v in np.asarray(shape).reshape(-1)] != [0, 0, -1]:
                continue
            s, chain = c2.output[0], [c1, c2]
        else:
            continue
        after = g.consumers.get(s, [])
        if s in g.outputs or not after or not all(
                _perm(c) == [1, 0, 2] or (c.op_type in ("LSTM", "GRU") and c.input[0] == s) for c in after):
            continue
        _rewrite(g, r, x_bf, states, chain, s, after, bidir, drop, aliases)
        return True
    return False


def _rewrite(g: _Graph, r: onnx.NodeProto, x_bf: str, states: list[str], chain: list[onnx.NodeProto], s: str,
             after: list[onnx.NodeProto], bidir: bool, drop: list[onnx.NodeProto], aliases: dict[str, str]) -> None:
    ins = list(r.input)
    for i, st in zip((5, 6), states, strict=True):
        if st:
            ins[i] = g.add_init(st + "_batch_first", np.ascontiguousarray(np.swapaxes(np.asarray(g.const(st)), 0, 1)))
    ins[0] = x_bf
    y_bf, s_bf = r.output[0] + "_batch_first", s + "_batch_first"
    new_r = helper.make_node(r.op_type, ins, [y_bf], name=r.name)
    new_r.attribute.extend(a for a in r.attribute if a.name != "layout")
    new_r.attribute.append(helper.make_attribute("layout", 1))
    if bidir:
        shape = g.add_init(s + "_bf_shape", np.array([0, 0, -1], dtype=np.int64))
        tail = [helper.make_node("Reshape", [y_bf, shape], [s_bf])]
    else:
        axes = g.add_init(s + "_bf_axes", np.array([2], dtype=np.int64))
        tail = [helper.make_node("Squeeze", [y_bf, axes], [s_bf])]
    for c in after:
        if c.op_type == "Transpose":  # the final transpose back to batch first: nothing left to do
            tail.append(helper.make_node("Identity", [s_bf], list(c.output), name=c.name))
    if any(c.op_type in ("LSTM", "GRU") for c in after):
        aliases[s] = s_bf
        # the next layer reads s: a fallback until it is rewritten too (a fixed batch can run it as it is)
        tail.append(helper.make_node("Transpose", [s_bf], [s], perm=[1, 0, 2]))
    old = [r, *chain, *drop, *(c for c in after if c.op_type == "Transpose")]
    ids = {id(n) for n in old}
    pos = min(i for i, n in enumerate(g.nodes) if id(n) == id(r))
    g.nodes = [n for n in g.nodes[:pos] if id(n) not in ids] + [new_r, *tail] + \
        [n for n in g.nodes[pos + 1:] if id(n) not in ids]
    g._index()
