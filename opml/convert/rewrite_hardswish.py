"""Hard-swish written out of elementwise nodes (paddle2onnx's PP-OCR export): one HardSwish.

paddle2onnx writes ``hardswish(x)`` as ``Mul(x, Clip(Add(x, 3), 0, 6)) / 6`` (``Div`` by 6 or ``Mul`` by
1/6). Lowered op by op, the product ``x * clip(x + 3, 0, 6)`` gets an int8 grid of its own that spans six
times the output's range (PP-OCRv4 recognition: up to 185 where the output stays under 31), so the small
values, most of them, lose ~2.5 bits before the division. As one ``HardSwish`` node the converter lowers it
as ``x * HardSigmoid(x)`` with the product on the output's own grid. The rule matches only when the sum, the
clip and the product have no other reader, the clip bounds are the constants 0 and 6, the added constant
is 3 and the divisor 6 (or the factor 1/6 to float32 precision).
"""

from __future__ import annotations

import onnx
from onnx import helper

from .rewrite import _attr, _Graph, _replace


def _scalar_is(g: _Graph, name: str, value: float, rel: float = 0.0) -> bool:
    v = g.scalar(name)
    return v is not None and abs(v - value) <= rel * abs(value)


def _only_reader(g: _Graph, name: str, node: onnx.NodeProto) -> bool:
    """``node`` is the one reader of ``name`` (which is no graph output)."""
    reader = g.only_consumer(name)
    return reader is not None and reader is node


def _clip_is_0_6(g: _Graph, clip: onnx.NodeProto) -> bool:
    if len(clip.input) >= 3 and clip.input[1] and clip.input[2]:
        return _scalar_is(g, clip.input[1], 0.0) and _scalar_is(g, clip.input[2], 6.0)
    return len(clip.input) == 1 and _attr(clip, "min") == 0.0 and _attr(clip, "max") == 6.0


def _gate_of(g: _Graph, prod: onnx.NodeProto) -> tuple[str, list[onnx.NodeProto]] | None:
    """``x`` and the nodes ``[Add, Clip]`` when ``prod`` is ``Mul(x, Clip(Add(x, 3), 0, 6))`` (either order)."""
    for x, gate in ((prod.input[0], prod.input[1]), (prod.input[1], prod.input[0])):
        clip = g.producer.get(gate)
        if clip is None or clip.op_type != "Clip" or not _only_reader(g, gate, prod) or not _clip_is_0_6(g, clip):
            continue
        add = g.producer.get(clip.input[0])
        if add is None or add.op_type != "Add" or not _only_reader(g, clip.input[0], clip):
            continue
        if x in add.input and _scalar_is(g, g.other_input(add, x) or "", 3.0):
            return x, [add, clip]
    return None


def fuse_hardswish(g: _Graph) -> bool:
    """One rewrite of ``Mul(x, Clip(Add(x, 3), 0, 6)) / 6`` into ``HardSwish(x)``; False when none is left."""
    for d in g.nodes:
        if d.op_type not in ("Div", "Mul") or len(d.input) != 2 or d.domain not in ("", "ai.onnx"):
            continue
        pairs = [(d.input[0], d.input[1])] if d.op_type == "Div" else [(d.input[0], d.input[1]), (d.input[1],
                                                                                                  d.input[0])]
        for p_name, k_name in pairs:
            scale_ok = _scalar_is(g, k_name, 6.0) if d.op_type == "Div" else _scalar_is(g, k_name, 1.0 / 6.0, 1e-6)
            prod = g.producer.get(p_name)
            if prod is None or not scale_ok or prod.op_type != "Mul" or not _only_reader(g, p_name, d):
                continue
            found = _gate_of(g, prod)
            if found is None:
                continue
            x, gate_nodes = found
            fused = helper.make_node("HardSwish", [x], [d.output[0]], name=d.name or prod.name)
            _replace(g, [*gate_nodes, prod, d], fused)
            return True
    return False
