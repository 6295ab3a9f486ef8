"""Sequence-first blocks: move a ``Transpose(1, 0, 2)`` past the per-token ops that follow it.

A model that runs its transformer sequence first (``x.permute(1, 0, 2)`` around ``nn.TransformerEncoder``
with ``batch_first=False``, OpenAI CLIP) keeps every activation in ``[L, N, E]``: the residual Adds,
LayerNorms and MLPs read values whose batch is not the leading axis, which a bundle cannot hold. These ops
act on each token alone (along the last axis), so they commute with a transpose of the first two axes::

    op(Transpose(a, (1, 0, 2)), Transpose(b, (1, 0, 2)), c) = Transpose(op(a, b, c), (1, 0, 2))

for elementwise ops (constant operands of rank <= 1 broadcast over the last axis alone), LayerNormalization
and Softmax and reductions over the last axis, and MatMul by a matrix. ``sink_transpose`` rewrites one such
node: the op reads the untransposed tensors and keeps its output's name (the same values, batch first, what
name-based tools such as ``accuracy`` measure on the original model), and a Transpose of it, under a new
name, feeds the node's former readers. Repeated, the transposes move down the graph until they meet their
inverse (the converter composes them away: ``layout.settle``) or an op that needs them, such as the
attention's heads split, which ``rewrite_mha`` rewrites batch first. Every rewrite is an identity on
values (the same numbers, moved), at any batch.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .rewrite import _attr, _Graph

PERM = [1, 0, 2]
UNARY = ("Relu", "Gelu", "Erf", "Sigmoid", "Tanh", "Sqrt", "Neg", "Abs", "Exp", "Cast", "Identity", "LeakyRelu",
         "HardSigmoid", "HardSwish", "Softplus", "Reciprocal")
BINARY = ("Add", "Sub", "Mul", "Div", "Pow")
LAST_AXIS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceMax")


def _transposed(g: _Graph, name: str) -> str | None:
    """The input of ``Transpose(x, (1, 0, 2))`` when ``name`` is its output."""
    p = g.producer.get(name)
    if p is None or p.op_type != "Transpose" or p.domain not in ("", "ai.onnx"):
        return None
    perm = _attr(p, "perm", None)
    return p.input[0] if perm is not None and [int(v) for v in perm] == PERM else None  # type: ignore[attr-defined]


def _small_const(g: _Graph, name: str) -> bool:
    """A constant that broadcasts over the last axis only (rank <= 1)."""
    from .rewrite_mha import _folded

    c = _folded(g, name)
    return c is not None and c.ndim <= 1


def _last_axis(g: _Graph, n: onnx.NodeProto) -> bool:
    """LayerNormalization / Softmax / a reduction with keepdims over the last of three axes only."""
    if n.op_type == "LayerNormalization":
        return int(_attr(n, "axis", -1)) in (-1, 2) and all(_small_const(g, i) for i in n.input[1:] if i)  # type: ignore[call-overload]
    if n.op_type == "Softmax":
        return int(_attr(n, "axis", -1)) in (-1, 2)  # type: ignore[call-overload]
    axes = _attr(n, "axes", None)
    if axes is None and len(n.input) > 1 and n.input[1]:
        axes = g.const(n.input[1])
    return axes is not None and [int(a) for a in np.asarray(axes).reshape(-1)] in ([-1], [2]) and \
        int(_attr(n, "keepdims", 1)) == 1  # type: ignore[call-overload]


def _sinkable(g: _Graph, n: onnx.NodeProto) -> list[str] | None:
    """The inputs ``n`` reads once the transposes in front of it are moved past it; None if it does not commute."""
    if n.domain not in ("", "ai.onnx") or len(n.output) != 1 or n.output[0] in g.outputs or not n.input:
        return None
    first = _transposed(g, n.input[0])
    if n.op_type in UNARY or n.op_type in LAST_AXIS or n.op_type == "MatMul":
        if first is None:
            return None
        if n.op_type in LAST_AXIS and not _last_axis(g, n):
            return None
        if n.op_type == "MatMul":
            from .rewrite_mha import _rank

            if _rank(g, n.input[1]) != 2:
                return None
        if n.op_type in UNARY and any(n.input[1:]) and not all(_small_const(g, i) for i in n.input[1:] if i):
            return None
        return [first, *n.input[1:]]
    if n.op_type in BINARY and len(n.input) == 2:
        ins = [_transposed(g, i) for i in n.input]
        if all(t is None for t in ins):
            return None
        out = []
        for i, t in zip(n.input, ins, strict=True):
            if t is not None:
                out.append(t)
            elif _small_const(g, i):
                out.append(i)
            else:
                return None
        return out
    return None


def sink_transpose(g: _Graph) -> bool:
    """Move one ``Transpose(1, 0, 2)`` past the per-token op that reads it (module docstring); True if it did."""
    for n in g.nodes:
        ins = _sinkable(g, n)
        if ins is None:
            continue
        out = n.output[0]
        moved = out + "_aievm_seq_first"
        op = helper.make_node(n.op_type, ins, [out], name=n.name, domain=n.domain)
        op.attribute.extend(n.attribute)
        t = helper.make_node("Transpose", [out], [moved], perm=PERM, name=(n.name or out) + "_aievm_seq_first")
        readers = {id(r) for r in g.consumers.get(out, [])}
        nodes = []
        for x in g.nodes:
            if x is n:
                nodes += [op, t]
            elif id(x) in readers:  # (a copy: the caller's graph is not modified)
                r = onnx.NodeProto()
                r.CopyFrom(x)
                r.input[:] = [moved if i == out else i for i in x.input]
                nodes.append(r)
            else:
                nodes.append(x)
        g.nodes = nodes
        g._index()
        return True
    return False
