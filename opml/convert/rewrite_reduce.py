"""Symbolic shapes and reductions for the ONNX rewrite rules (``rewrite_layernorm``, ``rewrite_softmax``).

Hand-written normalizations reduce one axis, then broadcast the result back to the input through
Reshape/Expand/Unsqueeze whose shape operands exporters compute at run time from ``Shape(input)`` (the batch).
:class:`Shapes` evaluates such shapes symbolically (a dimension is a number, a symbol from the declared
shapes, or unknown), so a rule can check that a broadcast only restores the reduced axis as 1 without knowing
the batch. :class:`ReduceMatcher` recognises means (``ReduceMean``, ``ReduceSum * 1/n``) and checks those
broadcast paths; :func:`drop_dead` removes what a replaced pattern no longer needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from .rewrite import _attr, _Graph

Dim = int | str | None  # a number, a symbol (equal symbols are equal sizes), or unknown
BCAST_OPS = ("Reshape", "Expand", "Unsqueeze", "Identity")


class Shapes:
    """Shapes and small integer vectors (shape tensors) of a graph's values, evaluated symbolically."""

    def __init__(self, g: _Graph) -> None:
        self.g = g
        self.info = getattr(g, "value_info", {})
        self.memo: dict[str, list[Dim] | None] = {}

    def shape(self, name: str, depth: int = 0) -> list[Dim] | None:
        if name in self.memo:
            return self.memo[name]
        c = self.g.const(name)
        if c is not None:
            return list(c.shape)
        p = self.g.producer.get(name)
        got = None if p is None or depth > 150 else self._shape_of(p, depth + 1)
        got = got if got is not None else self._declared(name)
        self.memo[name] = got
        return got

    def _declared(self, name: str) -> list[Dim] | None:
        vi = self.info.get(name)
        if vi is None or not vi.type.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else d.dim_param if d.HasField("dim_param") else None
                for d in vi.type.tensor_type.shape.dim]

    def _shape_of(self, p: onnx.NodeProto, depth: int) -> list[Dim] | None:
        op = p.op_type
        if op in ("Cast", "Identity", "Relu", "Neg", "Sqrt", "Reciprocal", "Tanh", "Sigmoid", "Erf", "Exp", "Gelu",
                  "LayerNormalization", "Softmax"):
            return self.shape(p.input[0], depth)
        if op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"):
            return _broadcast(*(self.shape(i, depth) for i in p.input))
        if op == "Expand":
            return _broadcast(self.shape(p.input[0], depth), self.value(p.input[1], depth))
        if op == "Reshape":
            return _reshape(self.shape(p.input[0], depth), self.value(p.input[1], depth), _attr(p, "allowzero", 0))
        if op == "Transpose":
            s = self.shape(p.input[0], depth)
            perm: Any = _attr(p, "perm", None)
            return None if s is None else [s[k] for k in (perm or range(len(s))[::-1])]
        if op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"):
            s, axes = self.shape(p.input[0], depth), reduce_axes(self.g, p)
            if s is None or not axes:
                return None
            at = {a + len(s) if a < 0 else a for a in axes}
            keep = _attr(p, "keepdims", 1)
            return [1 if k in at else d for k, d in enumerate(s) if keep or k not in at]
        if op in ("Squeeze", "Slice", "Conv", "GlobalMaxPool", "GlobalAveragePool", "MatMul", "AievmLinear", "Gather"):
            return self._shape_more(p, self.shape(p.input[0], depth))
        if op == "Unsqueeze":
            s, axes = self.shape(p.input[0], depth), reduce_axes(self.g, p)
            if s is None or axes is None:
                return None
            r = len(s) + len(axes)
            ins = sorted(a + r if a < 0 else a for a in axes)
            it = iter(s)
            return [1 if k in ins else next(it) for k in range(r)]
        return None

    def _shape_more(self, p: onnx.NodeProto, s: list[Dim] | None) -> list[Dim] | None:
        """Squeeze, Slice, Conv, global pooling, MatMul by a constant, Gather from a constant: the batch and the
        other dimensions these keep (a dimension they compute from sizes not known here is unknown)."""
        op, g = p.op_type, self.g
        if op == "Gather":  # (an embedding: indices' shape + the table's row shape)
            table, idx = g.const(p.input[0]), self.shape(p.input[1])
            ok = table is not None and idx is not None and _attr(p, "axis", 0) == 0
            return idx + list(table.shape[1:]) if ok else None  # type: ignore[operator,union-attr]
        if s is None:
            return None
        if op == "Squeeze":
            sq = reduce_axes(g, p)
            at = {a + len(s) if a < 0 else a for a in sq} if sq else {k for k, d in enumerate(s) if d == 1}
            return [d for k, d in enumerate(s) if k not in at]
        if op == "Slice":
            ins = [g.const(i) if i else None for i in list(p.input[1:5]) + [""] * (5 - len(p.input))]
            starts, ends = ins[0], ins[1]
            axes: Any = ins[2] if len(p.input) > 3 and p.input[3] else np.arange(len(s))
            steps = ins[3] if len(p.input) > 4 and p.input[4] else np.ones(len(s), np.int64)
            if starts is None or ends is None or axes is None or steps is None:
                return None
            out = list(s)
            for a, b, e, st in zip(*(np.asarray(v).reshape(-1).tolist() for v in (axes, starts, ends, steps)),
                                   strict=True):
                d = s[a]
                if b == 0 and st == 1 and e >= 10**9:
                    continue  # (the whole axis: exporters write ends of 1e9 or INT_MAX)
                out[a] = len(range(d)[b:e:st]) if isinstance(d, int) else None
            return out
        if op in ("GlobalMaxPool", "GlobalAveragePool"):
            return s[:2] + [1] * (len(s) - 2)
        w = g.const(p.input[1])
        if w is None:
            return None
        if op == "Conv":
            return [s[0], int(w.shape[0])] + [None] * (len(s) - 2)
        return s[:-1] + [int(w.shape[-1])]

    def value(self, name: str, depth: int = 0) -> list[Dim] | None:
        """The elements of a 0-d or 1-D integer value (a shape), symbolically."""
        c = self.g.const(name)
        if c is not None:
            return [int(v) for v in np.asarray(c).reshape(-1)] if c.dtype.kind in "iu" and c.ndim <= 1 else None
        p = self.g.producer.get(name)
        if p is None or depth > 64:
            return None
        op, d = p.op_type, depth + 1
        if op == "Shape":
            s = self.shape(p.input[0], d)
            lo: Any = _attr(p, "start", 0)
            hi: Any = _attr(p, "end", None)
            return None if s is None else s[lo:hi]
        if op in ("Cast", "Identity", "Squeeze", "Unsqueeze"):
            return self.value(p.input[0], d)
        if op == "Concat":
            parts = [self.value(i, d) for i in p.input]
            return None if any(v is None for v in parts) else [x for v in parts for x in v]  # type: ignore[union-attr]
        if op == "Slice":
            v = self.value(p.input[0], d)
            ends = [self.g.const(i) if i else None for i in list(p.input[1:]) + [""] * (4 - len(p.input[1:]))]
            if v is None or ends[0] is None or ends[1] is None or ends[2] is not None and \
                    list(np.asarray(ends[2]).reshape(-1)) not in ([0], [-1]):
                return None
            step = 1 if ends[3] is None else int(np.asarray(ends[3]).reshape(-1)[0])
            lo, hi = (int(np.asarray(ends[k]).reshape(-1)[0]) for k in (0, 1))
            return v[max(lo, -len(v) - 1) if lo < 0 else lo:hi if hi < 2**31 else None:step]
        if op == "Gather":
            v, idx = self.value(p.input[0], d), self.g.const(p.input[1])
            return None if v is None or idx is None else [v[int(i)] for i in np.asarray(idx).reshape(-1)]
        return None


def _broadcast(*shapes: list[Dim] | None) -> list[Dim] | None:
    if any(s is None for s in shapes):
        return None
    r = max(len(s) for s in shapes)  # type: ignore[arg-type]
    out: list[Dim] = []
    for k in range(r):
        dims = {s[k - r + len(s)] for s in shapes if k - r + len(s) >= 0} - {1}  # type: ignore[arg-type,index]
        known = dims - {None}
        out.append(known.pop() if len(known) == 1 else None if dims else 1)  # (an unknown size may be 1)
    return out


def _reshape(src: list[Dim] | None, target: list[Dim] | None, allowzero: object) -> list[Dim] | None:
    if target is None:
        return None
    out = [src[k] if t == 0 and not allowzero and src is not None and k < len(src) else t
           for k, t in enumerate(target)]
    if -1 in out:
        known = [x for x in out if x != -1]
        if src is None or not all(isinstance(x, int) for x in src + known):
            return [None if x == -1 else x for x in out]
        out[out.index(-1)] = int(np.prod(src)) // max(1, int(np.prod(known)))  # type: ignore[arg-type]
    return out


def same(a: list[Dim] | None, b: list[Dim] | None) -> bool:
    """Equal shapes (an unknown dimension equals nothing)."""
    if a is None or b is None or len(a) != len(b):
        return False
    return all(x is not None and x == y for x, y in zip(a, b, strict=True))


def reduce_axes(g: _Graph, node: onnx.NodeProto) -> list[int] | None:
    axes: Any = _attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        c = g.const(node.input[1])
        axes = None if c is None else c.reshape(-1).tolist()
    return None if axes is None else [int(a) for a in axes]


@dataclass
class Reduced:
    """A mean over one axis: its input, that axis (from the end, negative), keepdims, and the nodes read."""

    x: str
    axis: int
    keep: bool
    nodes: list[onnx.NodeProto] = field(default_factory=list)


class ReduceMatcher:
    """Reductions over one axis and the broadcast paths that carry them back to their input."""

    def __init__(self, g: _Graph) -> None:
        self.g, self.s = g, Shapes(g)

    def rank(self, x: str) -> int | None:
        s = self.s.shape(x)
        return None if s is None else len(s)

    def mean(self, name: str) -> Reduced | None:
        """``name`` as the mean of one tensor over one axis."""
        g, p = self.g, self.g.producer.get(name)
        if p is None:
            return None
        scale, red = 1.0, p
        if p.op_type in ("Mul", "Div") and len(p.input) == 2:
            for k in (0, 1) if p.op_type == "Mul" else (1,):
                c = g.scalar(p.input[k])
                q = g.producer.get(p.input[1 - k])
                if c is not None and q is not None and q.op_type == "ReduceSum":
                    scale, red = (c if p.op_type == "Mul" else 1.0 / c if c else 0.0), q
                    break
            else:
                return None
        elif p.op_type != "ReduceMean":
            return None
        r = self.reduction(red.output[0], red.op_type)
        if r is None:
            return None
        if red is not p:  # ReduceSum * c: c must be 1/n
            s = self.s.shape(r.x)
            n = s[r.axis] if s is not None and -len(s) <= r.axis else None
            if not isinstance(n, int) or not np.isclose(scale * n, 1.0, rtol=1e-6, atol=0.0):
                return None
            r.nodes.append(p)
        return r

    def reduction(self, name: str, op: str) -> Reduced | None:
        """``name`` as the output of an ``op`` node (ReduceMax, ReduceSum...) over one axis."""
        red = self.g.producer.get(name)
        if red is None or red.op_type != op:
            return None
        axes, x = reduce_axes(self.g, red), red.input[0]
        if axes is None or len(axes) != 1:
            return None
        axis = axes[0]
        if axis >= 0:
            rank = self.rank(x)
            if rank is None:
                return None
            axis -= rank
        return Reduced(x, axis, bool(_attr(red, "keepdims", 1)), [red])

    def unbcast(self, name: str, nodes: list[onnx.NodeProto]) -> str:
        """Walk back through Reshape/Expand/Unsqueeze/Identity (appending them to ``nodes``)."""
        while (p := self.g.producer.get(name)) is not None and p.op_type in BCAST_OPS:
            nodes.append(p)
            name = p.input[0]
        return name

    def restores(self, back: list[onnx.NodeProto], red: Reduced) -> bool:
        """Whether the nodes ``back`` (from a use of a value reduced as ``red`` back to it) keep that value
        lined up with ``x``: each broadcast op gives ``x``'s shape with the reduced axis 1 (``kept``) or
        ``x``'s shape, a Reshape reads the reduced shape or ``kept``, and without keepdims such an op comes
        before any product with a non-scalar constant (and before the use)."""
        restored = red.keep
        xs = self.s.shape(red.x) if any(n.op_type in BCAST_OPS for n in back) else None
        for n in reversed(back):
            if n.op_type not in BCAST_OPS:
                if not restored and any((c := self.g.const(i)) is not None and c.size > 1 for i in n.input):
                    return False
                continue
            if xs is None:
                return False
            kept, reduced = list(xs), list(xs)
            kept[red.axis] = 1
            del reduced[red.axis]
            out, src = self.s.shape(n.output[0]), self.s.shape(n.input[0])
            if not (same(out, kept) or same(out, xs)):
                return False
            if n.op_type == "Reshape" and not (same(src, reduced) or same(src, kept)):
                return False
            if n.op_type in ("Expand", "Identity") and not (same(src, kept) or same(src, xs)):
                return False
            if n.op_type == "Unsqueeze" and not (same(src, reduced) and same(out, kept)):
                return False
            restored = True
        return restored


def drop_dead(g: _Graph, seeds: list[onnx.NodeProto]) -> None:
    """Remove the nodes of ``seeds`` (and what only they read) whose outputs nothing reads any more."""
    work = list(seeds)
    while work:
        n = work.pop()
        if not any(id(n) == id(k) for k in g.nodes):
            continue
        if any(o in g.outputs or g.consumers.get(o) for o in n.output if o):
            continue
        g.nodes = [k for k in g.nodes if id(k) != id(n)]
        g._index()
        work.extend(p for i in n.input if (p := g.producer.get(i)) is not None)
