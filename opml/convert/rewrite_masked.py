"""ONNX-level recognition of attention-mask patterns (BERT-style encoders, sentence-transformers pooling).

- **Masked softmax**: ``Softmax(Add(scores, M))`` where ``M`` is derived from a 0/1 mask ``R`` by
  shape ops (Reshape, Unsqueeze, Squeeze, Flatten, Expand) and elementwise ops with scalar constants
  (Cast, Add, Sub, Mul, Div, Neg) such that one of ``f(0)``, ``f(1)`` is 0 and the other at most
  :data:`MASK_LIMIT` (the classic ``(1 - mask) * -10000``). It becomes one ``aievm.AievmMaskedSoftmax
  (scores, cond)`` node; ``cond`` is ``R`` put through copies of the chain's shape ops, and a scalar
  ``Mul``/``Div`` feeding the scores (the 1/sqrt(d) scaling) is absorbed as ``pre_scale``.
- **Masked mean pooling**: ``Div(ReduceSum(Mul(H, Mf)), Clip(ReduceSum(Mf), eps))`` where ``Mf`` is
  ``R`` put through shape ops and Casts only. It becomes ``aievm.AievmMaskedMean(H, R)``.

The mask is read as a boolean (nonzero = 1), as every real exporter feeds it. The lowerings are in
``opml.convert.lower_masked`` and documented in ``docs/engine.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

MASK_LIMIT = -1000.0  # an additive mask value at or below this is "masked out"
SHAPE_OPS = ("Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand")
ARITH_OPS = ("Add", "Sub", "Mul", "Div")


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _mask_chain(g: Any, name: str, arith: bool) -> tuple[str, list[onnx.NodeProto]] | None:
    """Walk producers from ``name`` back through shape ops, Casts and (if ``arith``) scalar arithmetic.

    Returns the root value and the chain's nodes in execution order (root first), or None when no
    elementwise/shape op was crossed."""
    chain: list[onnx.NodeProto] = []
    cur = name
    while True:
        p = g.producer.get(cur)
        if p is None:
            break
        if p.op_type in SHAPE_OPS and all(g.const(i) is not None for i in p.input[1:] if i):
            chain.append(p)
            cur = p.input[0]
        elif p.op_type == "Cast" or (arith and p.op_type == "Neg"):
            chain.append(p)
            cur = p.input[0]
        elif arith and p.op_type in ARITH_OPS and len(p.input) == 2:
            consts = [g.scalar(i) for i in p.input]
            if (consts[0] is None) == (consts[1] is None):
                break
            chain.append(p)
            cur = p.input[1] if consts[1] is None else p.input[0]
        else:
            break
    if not chain:
        return None
    return cur, chain[::-1]


def _eval_chain(g: Any, root: str, chain: list[onnx.NodeProto]) -> tuple[float, float] | None:
    """``(f(0), f(1))`` of the chain's elementwise part (shape ops ignored), in float64."""
    v = {root: np.array([0.0, 1.0])}
    cur = root
    for n in chain:
        x = v[cur]
        if n.op_type in SHAPE_OPS:
            y = x
        elif n.op_type == "Cast":
            to = np.dtype(helper.tensor_dtype_to_np_dtype(int(_attr(n, "to"))))
            y = x.astype(to).astype(np.float64) if to != np.bool_ else (x != 0).astype(np.float64)
        elif n.op_type == "Neg":
            y = -x
        else:
            c0, c1 = g.scalar(n.input[0]), g.scalar(n.input[1])
            a, b = (x, c1) if c1 is not None else (c0, x)
            if n.op_type == "Div" and np.any(np.asarray(b) == 0):
                return None
            y = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[n.op_type](a, b)
        cur = n.output[0]
        v[cur] = np.asarray(y, dtype=np.float64)
    out = v[cur]
    return float(out[0]), float(out[1])


def _cond_value(g: Any, m_name: str, root: str, chain: list[onnx.NodeProto], new: list[onnx.NodeProto]) -> str:
    """``root`` put through copies of the chain's shape ops (created once per mask value)."""
    cur = root
    for k, n in enumerate(x for x in chain if x.op_type in SHAPE_OPS):
        out = f"{m_name}_aievm_cond{k}"
        if out not in g.producer and not any(out in x.output for x in new):
            copy = helper.make_node(n.op_type, [cur] + list(n.input[1:]), [out], name=f"{n.name}_aievm_cond")
            copy.attribute.extend(n.attribute)
            new.append(copy)
        cur = out
    return cur


def fuse_masked_softmax(g: Any) -> bool:
    """Rewrite one ``Softmax(Add(scores, additive mask))``; True if something changed."""
    from .rewrite import _replace

    for sm in g.nodes:
        if sm.op_type != "Softmax":
            continue
        add = g.producer.get(sm.input[0])
        if add is None or add.op_type != "Add" or len(add.input) != 2 or g.only_consumer(add.output[0]) is not sm:
            continue
        for m_name in add.input:
            scores = g.other_input(add, m_name)
            found = _mask_chain(g, m_name, arith=True)
            if found is None or scores is None or scores == m_name:
                continue
            root, chain = found
            f = _eval_chain(g, root, chain)
            if f is None:
                continue
            if f[1] == 0.0 and f[0] <= MASK_LIMIT:
                keep_nonzero = 1
            elif f[0] == 0.0 and f[1] <= MASK_LIMIT:
                keep_nonzero = 0
            else:
                continue
            old = [add, sm]
            pre = 1.0
            sp = g.producer.get(scores)
            if sp is not None and sp.op_type in ("Mul", "Div") and g.only_consumer(scores) is add:
                c = g.scalar(sp.input[1])
                if c is not None and c != 0 and g.scalar(sp.input[0]) is None:
                    pre = c if sp.op_type == "Mul" else 1.0 / c
                    scores = sp.input[0]
                    old.append(sp)
            ins = [scores]
            mm = g.producer.get(scores)
            if (pre > 0 and mm is not None and mm.op_type == "MatMul" and g.only_consumer(scores) in old
                    and all(g.const(i) is None for i in mm.input)):
                ins = list(mm.input)  # the scores' MatMul is requantized straight to the softmax input
                old.append(mm)
            new: list[onnx.NodeProto] = []
            cond = _cond_value(g, m_name, root, chain, new)
            node = helper.make_node("AievmMaskedSoftmax", ins + [cond], [sm.output[0]], domain="aievm",
                                    name=sm.name or "masked_softmax", axis=int(_attr(sm, "axis", -1)),
                                    keep_nonzero=keep_nonzero, pre_scale=float(pre))
            _replace(g, old, node)
            if new:
                pos = g.nodes.index(node)
                g.nodes[pos:pos] = new
                g._index()
            return True
    return False


def _reduce_axes(g: Any, n: onnx.NodeProto) -> tuple[list[int], int] | None:
    axes = _attr(n, "axes", None)
    if axes is None and len(n.input) > 1 and n.input[1]:
        c = g.const(n.input[1])
        if c is None:
            return None
        axes = c.reshape(-1).tolist()
    if axes is None:
        return None
    return [int(a) for a in axes], int(_attr(n, "keepdims", 1))


def fuse_masked_mean(g: Any) -> bool:
    """Rewrite one ``Div(ReduceSum(H * Mf), Clip(ReduceSum(Mf), eps))``; True if something changed."""
    from .rewrite import _replace

    for div in g.nodes:
        if div.op_type != "Div" or len(div.input) != 2:
            continue
        num = g.producer.get(div.input[0])
        den = g.producer.get(div.input[1])
        if num is None or den is None or num.op_type != "ReduceSum":
            continue
        old = [div, num]
        if den.op_type in ("Clip", "Max"):
            lo = g.scalar(den.input[1]) if len(den.input) > 1 and den.input[1] else _attr(den, "min", None)
            has_max = den.op_type == "Clip" and len(den.input) > 2 and bool(den.input[2])
            if lo is None or not 0.0 < float(lo) <= 1.0 or has_max:
                continue
            if g.only_consumer(den.output[0]) is not div:
                continue
            old.append(den)
            den = g.producer.get(den.input[0])
        if den is None or den.op_type != "ReduceSum":
            continue
        mul = g.producer.get(num.input[0])
        ra, rb = _reduce_axes(g, num), _reduce_axes(g, den)
        if mul is None or mul.op_type != "Mul" or ra is None or ra != rb:
            continue
        mf = den.input[0]
        h = g.other_input(mul, mf)
        found = _mask_chain(g, mf, arith=False)
        if h is None or found is None or g.only_consumer(mul.output[0]) is not num:
            continue
        if g.only_consumer(den.output[0]) not in (div, *old):
            continue
        root, chain = found
        if _eval_chain(g, root, chain) != (0.0, 1.0):
            continue
        old += [mul, den]
        node = helper.make_node("AievmMaskedMean", [h, root], [div.output[0]], domain="aievm",
                                name=div.name or "masked_mean", axes=ra[0], keepdims=ra[1])
        _replace(g, old, node)
        return True
    return False
