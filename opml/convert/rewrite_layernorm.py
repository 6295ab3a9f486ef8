"""Hand-written layer norms: recognised in the ONNX graph and replaced by one ``LayerNormalization``.

Exporters write a layer norm out of its parts when the framework's own op is not used: torch's
``(x - mean) / sqrt(var + eps) * g + b``, TensorFlow/Keras's batch-norm form ``x * m + (b - mean * m)``
with ``m = g * rsqrt(var + eps)``, and jax2tf's (Flax ``LayerNorm``; magika) ``rsqrt(max(E[x^2] - E[x]^2, 0)
+ eps)`` where the means are ``ReduceSum(.) * (1 / n)`` without keepdims, broadcast back by a Reshape and
an Expand whose shapes are computed from ``Shape(input)`` at run time. Lowered op by op, the variance is put
on an int8 grid that reaches 0 and ``1 / sqrt`` of it overflows; ``LayerNormalization`` is lowered exactly
(the engine's ``layernorm`` op). The rule accepts, in any combination:

- means: ``ReduceMean(t)`` (any keepdims), ``ReduceSum(t) * c`` or ``ReduceSum(t) / c`` with ``c = 1/n``
  (``n`` the number of reduced values, checked against the shape of ``t``);
- squares: ``Mul(a, a)`` or ``Pow(a, 2)``;
- variance: ``mean((x - mean(x))^2)`` or ``mean(x^2) - mean(x)^2``, optionally clamped below by 0
  (``Max(v, 0)``, ``Relu``);
- ``+ eps`` (a scalar constant), then ``Sqrt`` followed by ``Div``, ``Reciprocal`` or ``Div(1, .)``, or
  ``Pow(., -0.5)``; the reciprocal may be multiplied by a constant scale before it meets ``x - mean``;
- after the normalized value, any chain of ``Mul``/``Div``/``Add``/``Sub`` by constants (scale and bias);
- between a reduced value and its use: Reshape, Expand, Unsqueeze and Identity that only restore the
  reduced axis as 1 (checked on shapes evaluated symbolically through Shape/Slice/Concat/Cast, so the
  batch may be a symbol).

The mean and the variance must reduce the same single axis of the same tensor, and every constant of the
scale and bias must be constant along every other axis. The reduced axis need not be the last: the
replacement is then ``Transpose`` (the axis moved last), ``LayerNormalization(axis=-1)``, ``Transpose`` back.
Nodes of the pattern that something else still reads are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from .rewrite import _Graph
from .rewrite_reduce import Reduced, ReduceMatcher, drop_dead

AFFINE_OPS = ("Mul", "Div", "Add", "Sub")


class _Matcher(ReduceMatcher):
    """The parts of a layer norm: squares, variance, centering, the (reciprocal) standard deviation."""

    def square_of(self, name: str) -> tuple[str, onnx.NodeProto] | None:
        p = self.g.producer.get(name)
        if p is not None and p.op_type == "Mul" and len(p.input) == 2 and p.input[0] == p.input[1]:
            return p.input[0], p
        if p is not None and p.op_type == "Pow" and self.g.scalar(p.input[1]) == 2.0:
            return p.input[0], p
        return None

    def variance(self, name: str) -> tuple[Reduced, list[onnx.NodeProto]] | None:
        """``name`` as the variance of one tensor over one axis (centered, or E[x^2] - E[x]^2)."""
        g, nodes = self.g, list[onnx.NodeProto]()
        p = g.producer.get(name)
        if p is not None and (p.op_type == "Relu" or p.op_type == "Max" and len(p.input) == 2 and
                              any(g.scalar(i) == 0.0 for i in p.input)):
            nodes.append(p)
            name = p.input[1] if p.op_type == "Max" and g.scalar(p.input[0]) == 0.0 else p.input[0]
            p = g.producer.get(name)
        if p is not None and p.op_type == "Sub":
            m2, m1 = self.mean(p.input[0]), self.square_of(p.input[1])
            mx = self.mean(m1[0]) if m1 else None
            sq = self.square_of(m2.x) if m2 else None
            if m2 is None or mx is None or sq is None or sq[0] != mx.x or (m2.axis, m2.keep) != (mx.axis, mx.keep):
                return None
            return mx, nodes + [p, m1[1], sq[1]] + m2.nodes + mx.nodes  # type: ignore[index]
        v = self.mean(name)
        sq = self.square_of(v.x) if v else None
        if v is None or sq is None:
            return None
        d = self.centered(sq[0])
        if d is None or d[0].axis != v.axis:
            return None
        return Reduced(d[0].x, v.axis, v.keep), nodes + v.nodes + [sq[1]] + d[1]

    def centered(self, name: str) -> tuple[Reduced, list[onnx.NodeProto]] | None:
        """``name`` as ``x - mean(x)`` (the mean broadcast back to ``x``)."""
        p = self.g.producer.get(name)
        if p is None or p.op_type != "Sub":
            return None
        chain: list[onnx.NodeProto] = []
        m = self.mean(self.unbcast(p.input[1], chain))
        if m is None or m.x != p.input[0] or not self.restores(chain, m):
            return None
        return m, [p] + chain + m.nodes

    def inv_std(self, name: str) -> tuple[str, np.ndarray, list[onnx.NodeProto]] | None:
        """``name`` as ``c * (u)^-1/2`` for a constant ``c``: (u, c, nodes from ``name`` back to u)."""
        g, nodes, c = self.g, list[onnx.NodeProto](), np.ones(1)
        while True:
            name = self.unbcast(name, nodes)
            p = g.producer.get(name)
            if p is None:
                return None
            if p.op_type == "Mul" and len(p.input) == 2:
                k = next((k for k in (0, 1) if g.const(p.input[k]) is not None), None)
                if k is None:
                    return None
                c = c * np.asarray(g.const(p.input[k]), dtype=np.float64)
                nodes.append(p)
                name = p.input[1 - k]
                continue
            if p.op_type == "Pow" and g.scalar(p.input[1]) == -0.5:
                return p.input[0], c, nodes + [p]
            if p.op_type == "Reciprocal" or p.op_type == "Div" and g.scalar(p.input[0]) == 1.0:
                std = self.std(p.input[-1], nodes + [p])
                return None if std is None else (std[0], c, std[1])
            return None

    def std(self, name: str, nodes: list[onnx.NodeProto]) -> tuple[str, list[onnx.NodeProto]] | None:
        """``name`` as ``sqrt(u)``: (u, ``nodes`` and those from ``name`` back to u)."""
        nodes = list(nodes)
        p = self.g.producer.get(self.unbcast(name, nodes))
        if p is not None and (p.op_type == "Sqrt" or p.op_type == "Pow" and self.g.scalar(p.input[1]) == 0.5):
            return p.input[0], nodes + [p]
        return None

    def var_eps(self, u: str, back: list[onnx.NodeProto]) -> tuple[Reduced, float, list[onnx.NodeProto]] | None:
        """``u`` as ``variance + eps``; checks the broadcast path from the variance to the end of ``back``."""
        nodes = list(back)
        p = self.g.producer.get(self.unbcast(u, nodes))
        if p is None or p.op_type != "Add" or len(p.input) != 2:
            return None
        k = next((k for k in (0, 1) if self.g.scalar(p.input[k]) is not None), None)
        eps = None if k is None else self.g.scalar(p.input[k])
        if k is None or eps is None or not eps >= 0.0:
            return None
        nodes.append(p)
        v = self.unbcast(p.input[1 - k], nodes)
        var = self.variance(v)
        if var is None or not self.restores(nodes, var[0]):
            return None
        return var[0], eps, nodes + var[1]


def _per_axis(c: np.ndarray, axis: int, rank: int | None) -> np.ndarray | None:
    """A constant that varies only along ``axis`` (negative, from the end) as a vector, else None; it must not
    raise the rank (``rank``: the normalized tensor's, None if unknown)."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim > (rank if rank is not None else -axis):
        return None
    if any(d != 1 for j, d in enumerate(c.shape) if j - c.ndim != axis):
        return None
    return c.reshape(-1)


@dataclass
class _Match:
    x: str
    axis: int
    eps: float
    gamma: np.ndarray
    beta: np.ndarray
    out: str
    nodes: list[onnx.NodeProto]


def _normalized(mt: _Matcher, p: onnx.NodeProto) -> _Match | None:
    """``p`` as ``(x - mean) / sqrt(var + eps)`` times a constant (Div by the std, or Mul by the reciprocal)."""
    if p.op_type == "Div" and len(p.input) == 2:
        d = mt.centered(p.input[0])
        std = mt.std(p.input[1], [p]) if d else None
        if d is None or std is None:
            return None
        u, c, back = std[0], np.ones(1), std[1]
    elif p.op_type == "Mul" and len(p.input) == 2:
        for k in (0, 1):
            d = mt.centered(p.input[k])
            inv = mt.inv_std(p.input[1 - k]) if d else None
            if d is not None and inv is not None:
                u, c, back = inv[0], inv[1], [p] + inv[2]
                break
        else:
            return None
    else:
        return None
    ve = mt.var_eps(u, back)
    if ve is None or ve[0].x != d[0].x or ve[0].axis != d[0].axis:
        return None
    gamma = _per_axis(c, d[0].axis, mt.rank(d[0].x))
    if gamma is None:
        return None
    return _Match(d[0].x, d[0].axis, ve[1], gamma, np.zeros(1), p.output[0], ve[2] + d[1])


def _keras(mt: _Matcher, p: onnx.NodeProto) -> _Match | None:
    """``p`` as ``x * m + (beta - mean * m)``, ``m = c * (var + eps)^-1/2`` (TensorFlow's batch-norm form)."""
    g = mt.g
    if p.op_type != "Add" or len(p.input) != 2:
        return None
    for k in (0, 1):
        a, b = g.producer.get(p.input[k]), g.producer.get(p.input[1 - k])
        if a is None or b is None or a.op_type != "Mul" or b.op_type not in ("Sub", "Neg"):
            continue
        beta = np.zeros(1) if b.op_type == "Neg" else g.const(b.input[0])
        mm = g.producer.get(b.input[-1])
        if beta is None or mm is None or mm.op_type != "Mul":
            continue
        for j in (0, 1):
            m_name, x = a.input[j], a.input[1 - j]
            if m_name not in mm.input:
                continue
            chain: list[onnx.NodeProto] = []
            mean = mt.mean(mt.unbcast(mm.input[1] if mm.input[0] == m_name else mm.input[0], chain))
            inv = mt.inv_std(m_name)
            if mean is None or inv is None or mean.x != x or not mt.restores(chain, mean):
                continue
            ve = mt.var_eps(inv[0], [a] + inv[2])
            r = mt.rank(x)
            gamma, bvec = _per_axis(inv[1], mean.axis, r), _per_axis(beta, mean.axis, r)
            if ve is None or ve[0].x != x or ve[0].axis != mean.axis or gamma is None or bvec is None:
                continue
            return _Match(x, mean.axis, ve[1], gamma, bvec, p.output[0], [p, b, mm] + chain + mean.nodes + ve[2])
    return None


def _affine_tail(mt: _Matcher, m: _Match) -> None:
    """Absorb the scale and bias ops that follow the normalized value into ``m``."""
    g = mt.g
    while (c := g.only_consumer(m.out)) is not None and c.op_type in AFFINE_OPS and len(c.input) == 2:
        other = g.other_input(c, m.out)
        k = g.const(other) if other else None
        v = None if k is None or k.dtype.kind != "f" else _per_axis(k, m.axis, mt.rank(m.x))
        if v is None or c.op_type in ("Div", "Sub") and c.input[0] != m.out or c.op_type == "Div" and not v.all():
            return
        if c.op_type == "Mul":
            m.gamma, m.beta = m.gamma * v, m.beta * v
        elif c.op_type == "Div":
            m.gamma, m.beta = m.gamma / v, m.beta / v
        else:
            m.beta = m.beta + (v if c.op_type == "Add" else -v)
        m.nodes.append(c)
        m.out = c.output[0]


def _emit(mt: _Matcher, m: _Match) -> list[onnx.NodeProto] | None:
    """The LayerNormalization (between two Transposes when the axis is not the last) computing ``m.out``."""
    g, xs = mt.g, mt.s.shape(m.x)
    n = xs[m.axis] if xs is not None and len(xs) >= -m.axis else None
    if not isinstance(n, int):
        n = max(m.gamma.size, m.beta.size)
        if n == 1:
            return None  # (the normalized size is unknown and no constant tells it)
    if m.gamma.size not in (1, n) or m.beta.size not in (1, n) or m.axis != -1 and xs is None:
        return None
    scale = g.add_init(m.out + "_ln_scale", np.broadcast_to(m.gamma, (n,)).astype(np.float32))
    bias = g.add_init(m.out + "_ln_bias", np.broadcast_to(m.beta, (n,)).astype(np.float32))
    name = m.out + "_layernorm"
    if m.axis == -1:
        return [helper.make_node("LayerNormalization", [m.x, scale, bias], [m.out], name=name, axis=-1,
                                 epsilon=m.eps)]
    r = len(xs)  # type: ignore[arg-type]
    perm = list(range(r))
    perm[r + m.axis], perm[-1] = perm[-1], perm[r + m.axis]
    return [helper.make_node("Transpose", [m.x], [name + "_in"], name=name + "_in", perm=perm),
            helper.make_node("LayerNormalization", [name + "_in", scale, bias], [name + "_out"], name=name, axis=-1,
                             epsilon=m.eps),
            helper.make_node("Transpose", [name + "_out"], [m.out], name=name + "_back", perm=perm)]



def fuse_handwritten_layernorm(g: _Graph) -> bool:
    """Replace one hand-written layer norm by LayerNormalization; True if it did."""
    mt = _Matcher(g)
    for p in g.nodes:
        m = _normalized(mt, p) or _keras(mt, p)
        if m is None:
            continue
        _affine_tail(mt, m)
        new = _emit(mt, m)
        if new is None:
            continue
        last = g.producer[m.out]
        pos = next(i for i, k in enumerate(g.nodes) if id(k) == id(last))
        g.nodes = g.nodes[:pos] + new + g.nodes[pos + 1:]
        g._index()
        drop_dead(g, m.nodes)
        return True
    return False
