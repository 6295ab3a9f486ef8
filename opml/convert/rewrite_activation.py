"""GELU written out of elementwise parts (jax2tf's tanh form, torch's erf form in other orders): one Gelu.

jax2tf exports ``jax.nn.gelu`` (magika) as ``x * (0.5 * (1 + tanh(0.7978846 * (x + x * (x * 0.044715 *
x)))))``: nine Mul/Add/Tanh nodes, each put on its own int8 grid when lowered op by op, so the rounding of
every step adds up. The rule finds, around each ``Tanh``, ``Erf`` or ``Sigmoid``, the largest region of
elementwise nodes (``Mul``, ``Add``, ``Sub``, ``Div``, ``Pow``, ``Neg`` and the function itself) whose only
non-constant input is one tensor ``x`` and whose constants are single values, with exactly one value read
outside the region. It then evaluates that region in float64 on 2,001 points of [-10, 10] and compares it
with GELU in its erf and tanh forms; on agreement to 1e-5 (relative to 1 + |f(x)|) at every point, which the
float32 constants of an exporter meet and any other function of x does not, the region becomes one ``Gelu``
node (``approximate`` set to the form), which the converter lowers as one lookup table.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from .rewrite import _Graph
from .rewrite_reduce import Shapes, drop_dead

ELEMENTWISE = ("Mul", "Add", "Sub", "Div", "Pow", "Neg", "Tanh", "Erf")
CENTRES = ("Tanh", "Erf")
_T = np.linspace(-10.0, 10.0, 2001)
_ERF = np.vectorize(math.erf)


def _targets() -> dict[str, np.ndarray]:
    x = _T
    return {
        "none": 0.5 * x * (1.0 + _ERF(x / math.sqrt(2.0))),
        "tanh": 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    }


def _scalar_ok(g: _Graph, shapes: Shapes, name: str, x: str) -> bool:
    """A constant of one value that does not raise the rank of ``x``."""
    c = g.const(name)
    if c is None or c.size != 1 or c.dtype.kind != "f":
        return False
    s = shapes.shape(x)
    return c.ndim == 0 or s is not None and c.ndim <= len(s)


def _inputs_ok(g: _Graph, shapes: Shapes, n: onnx.NodeProto, inside: set[str], x: str) -> bool:
    if n.op_type not in ELEMENTWISE or n.domain not in ("", "ai.onnx"):
        return False
    if n.op_type == "Pow" and g.const(n.input[1]) is None:
        return False
    return all(i in inside or i == x or _scalar_ok(g, shapes, i, x) for i in n.input)


def _leaf(g: _Graph, shapes: Shapes, centre: onnx.NodeProto, stop: str | None = None
          ) -> tuple[str, list[onnx.NodeProto], list[str]] | None:
    """The one activation the centre's input is computed from (``stop`` when given: the walk ends there), the
    elementwise nodes in between, and the values the walk met (each a candidate for ``stop``)."""
    todo, seen, acts, nodes = [centre.input[0]], list[str](), set(), list[onnx.NodeProto]()
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.append(v)
        p = g.producer.get(v)
        if v != stop and p is not None and p.op_type in ELEMENTWISE and p.op_type not in CENTRES and \
                p.domain in ("", "ai.onnx") and len(nodes) < 32 and \
                all((c := g.const(i)) is None or c.size == 1 for i in p.input):
            nodes.append(p)
            todo.extend(i for i in p.input if g.const(i) is None)
        elif g.const(v) is None:
            acts.add(v)
    if len(acts) != 1:
        return None
    x = acts.pop()
    if not all(_inputs_ok(g, shapes, n, {o for k in nodes for o in k.output}, x) for n in nodes):
        return None
    return x, nodes, seen


def _region(g: _Graph, shapes: Shapes, centre: onnx.NodeProto, stop: str | None
            ) -> tuple[str, str, list[onnx.NodeProto]] | None:
    """(x, output, nodes in graph order) of the region around ``centre`` read from ``stop``, or None."""
    got = _leaf(g, shapes, centre, stop)
    if got is None:
        return None
    x, nodes, _ = got
    nodes.append(centre)
    inside = {o for n in nodes for o in n.output}
    grown = True
    while grown and len(nodes) < 48:
        grown = False
        for v in list(inside):
            for c in g.consumers.get(v, []):
                if any(id(c) == id(n) for n in nodes):
                    continue
                # (a side node of x alone, e.g. torch's x * 0.5 multiplied in last, comes along)
                sides = [p for i in c.input if i not in inside and i != x and (p := g.producer.get(i)) is not None
                         and all(id(p) != id(n) for n in nodes) and _inputs_ok(g, shapes, p, set(), x)]
                more = inside | {o for p in sides for o in p.output}
                if _inputs_ok(g, shapes, c, more, x):
                    nodes.extend(sides + [c])
                    inside = more | set(c.output)
                    grown = True
    escaping = [v for v in inside if v in g.outputs or any(all(id(c) != id(n) for n in nodes)
                                                               for c in g.consumers.get(v, []))]
    if len(escaping) != 1:
        return None
    order = {id(n): k for k, n in enumerate(g.nodes)}
    return x, escaping[0], sorted(nodes, key=lambda n: order[id(n)])


def _apply(op: str, a: list[np.ndarray]) -> np.ndarray:
    if op == "Mul":
        return a[0] * a[1]
    if op == "Add":
        return a[0] + a[1]
    if op == "Sub":
        return a[0] - a[1]
    if op == "Div":
        return a[0] / a[1]
    if op == "Pow":
        return np.power(a[0], a[1])
    if op == "Neg":
        return -a[0]
    return np.tanh(a[0]) if op == "Tanh" else np.asarray(_ERF(a[0]), dtype=np.float64)


def _evaluate(g: _Graph, x: str, nodes: list[onnx.NodeProto], out: str) -> np.ndarray | None:
    """The region's function at the test points, in float64."""
    vals: dict[str, np.ndarray] = {x: _T}

    def get(name: str) -> np.ndarray:
        if name in vals:
            return vals[name]
        return np.asarray(g.const(name), dtype=np.float64).reshape(())

    with np.errstate(all="ignore"):
        for n in nodes:
            y = _apply(n.op_type, [get(i) for i in n.input])
            vals[n.output[0]] = np.broadcast_to(y, _T.shape)
    got = vals.get(out)
    return None if got is None or not np.all(np.isfinite(got)) else got


def fuse_elementwise_gelu(g: _Graph) -> bool:
    """Replace one GELU written out of elementwise nodes by a Gelu node; True if it did."""
    shapes = Shapes(g)
    for centre in g.nodes:
        if centre.op_type not in CENTRES:
            continue
        first = _leaf(g, shapes, centre)
        if first is None:
            continue
        # (x may be read through scalar ops that belong to the model, not to the GELU: try each value met)
        for stop in [first[0]] + [v for v in first[2] if v != first[0] and g.const(v) is None]:
            new = _match(g, shapes, centre, stop)
            if new is not None:
                pos = next(k for k, n in enumerate(g.nodes) if new[1] in n.output)
                g.nodes = g.nodes[:pos] + [new[0]] + g.nodes[pos + 1:]
                g._index()
                drop_dead(g, new[2])
                return True
    return False


def _match(g: _Graph, shapes: Shapes, centre: onnx.NodeProto, stop: str
           ) -> tuple[onnx.NodeProto, str, list[onnx.NodeProto]] | None:
    """(the Gelu node, the output it replaces, the region's nodes) when the region read from ``stop`` is GELU."""
    reg = _region(g, shapes, centre, stop)
    if reg is None or len(reg[2]) < 3:
        return None
    x, out, nodes = reg
    y = _evaluate(g, x, nodes, out)
    if y is None:
        return None
    for approx, want in _targets().items():
        if np.all(np.abs(y - want) <= 1e-5 * (1.0 + np.abs(want))):
            return helper.make_node("Gelu", [x], [out], name=out + "_gelu", approximate=approx), out, nodes
    return None
