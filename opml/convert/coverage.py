"""What the converter does not lower, and how its errors read: one line naming the node, the op, the
reason and what would make the model convertible.

``docs/engine.md`` ("ONNX op coverage") lists the ops that are lowered and onto which primitives.
"""

from __future__ import annotations

import onnx

_UNROLL = ("unroll the recurrence over a static sequence length at export (e.g. a Python loop over "
           "nn.LSTMCell / nn.GRUCell), so it becomes MatMul, Add, Sigmoid, Tanh and Mul")

# op -> what would make a model with it convertible (the op is not lowered)
HINTS: dict[str, str] = {
    "RNN": _UNROLL,
    "Loop": "unroll it at export (a static trip count)", "Scan": "unroll it at export",
    "NonZero": "its output size depends on the data; compute the mask arithmetically (Where, Mul) instead",
    "TopK": "compute it after the model, on the engine's output",
    "NonMaxSuppression": "run the box post-processing after the model, on the engine's output",
}

def one_line(where: str, msg: str) -> str:
    """``msg`` as one line that starts with ``where`` (the node's name and op) unless it names the node."""
    msg = " ".join(msg.split())
    return msg if msg.startswith(where) else f"{where}: {msg}"


def unsupported_op_message(node: onnx.NodeProto, activations: list[str]) -> str:
    """The error for a node whose op has no lowering (``activations``: its non-constant inputs)."""
    op = (node.domain + "." if node.domain else "") + node.op_type
    out = node.output[0] if node.output else ""
    who = f"node {node.name!r}" if node.name else f"{node.op_type} node producing {out!r}"
    if node.domain not in ("", "ai.onnx", "aievm"):
        hint = f"custom domain {node.domain!r}: replace it by standard ONNX operators at export"
    elif node.op_type in HINTS:
        hint = HINTS[node.op_type]
    else:
        acts = ", ".join(repr(a) for a in activations[:3]) + (", ..." if len(activations) > 3 else "")
        hint = ("no lowering onto the engine's ops (docs/engine.md, 'ONNX op coverage'); rewrite it with supported "
                "ops at export" + (f", or make its input(s) {acts} constant so that it folds" if acts else ""))
    return f"{who}: unsupported op {op}; {hint}"
