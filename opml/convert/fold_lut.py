"""A ``mul`` or ``add`` of two functions of one byte tensor, folded into one ``lut`` (SiLU, hard-swish, x*x).

SiLU ``x * sigmoid(x)`` and hard-swish ``x * HardSigmoid(x)`` lower to ``g = lut(x)`` and then ``mul(x, g)``:
a pair lookup per element, the most frequent node of EfficientNet-B0 and MobileNetV3. When both operands
of a ``mul`` (or of an int8 ``add``) are functions of the same int8/uint8 tensor ``x`` (each is ``x`` itself
or a 256-entry byte ``lut`` of ``x``), every output element depends on that element's byte of ``x`` alone.
The fold runs the node's own engine kernel, with its attributes and output parameters (the calibrated scale
and zero point of the product, chosen before the fold), on the 256 possible bytes of ``x`` and emits
``lut(x)`` with that table instead: the same integer at every element, so the same bytes as the two-node
path at every batch and thread count, one gather instead of a pair lookup. The table of ``x`` that fed the
product stays only while something else reads it (``builder._prune`` drops it otherwise).

Not folded: operands of different shapes (broadcasting), an ``x`` of another dtype, an int16 ``add`` (the
wide residual path), operands that are functions of two different tensors (e.g. two flips of one uint8
input: each ``quantized`` call makes its own, so they are different tensors).
``ENABLED`` switches the fold off (tests compare both bundles).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..bundle import DType, Node, TensorSpec
from ..engine import _PREPARERS
from .builder import GraphBuilder, QParams, Val

ENABLED = True
_BYTE = (DType.INT8, DType.UINT8)


def _producer(b: GraphBuilder, tid: int) -> Node | None:
    for node in reversed(b.nodes):
        if node.outputs and node.outputs[0] == tid:
            return node
    return None


def _sources(b: GraphBuilder, tid: int) -> dict[int, np.ndarray]:
    """The byte tensors ``x`` that ``tid`` is a function of, each with the 256 values of ``tid`` by byte of
    ``x`` (entry k: the k-th value of x's dtype in increasing order, as ``lut`` indexes its table)."""
    spec = b.tensors[tid]
    if spec.dtype not in _BYTE:
        return {}
    out = {} if spec.is_const else {tid: np.arange(-128, 128) if spec.dtype == DType.INT8 else np.arange(256)}
    node = _producer(b, tid)
    if node is not None and node.op == "lut":
        x, table = b.tensors[node.inputs[0]], b.tensors[node.inputs[1]]
        if x.dtype in _BYTE and not x.is_const and table.shape == (256,) and table.is_const:
            out[node.inputs[0]] = table.array().astype(np.int64)
    return out


def fold_binary(b: GraphBuilder, op: str, a: Val, c: Val, out_name: str, out_dtype: DType, qp: QParams,
                attrs: Mapping[str, int], env: dict[int, np.ndarray], name: str) -> Val | None:
    """``lut(x)`` equal to ``op(a, c)`` when both are functions of one byte tensor ``x``; None otherwise."""
    if not ENABLED or a.tid is None or c.tid is None or out_dtype not in _BYTE:
        return None
    if a.data.shape != c.data.shape:
        return None
    sa, sc = _sources(b, a.tid), _sources(b, c.tid)
    common = [x for x in sa if x in sc and b.tensors[x].shape == b.tensors[a.tid].shape]
    if not common:
        return None
    x = common[0]
    va, vc = (np.asarray(v, dtype=b.tensors[t].dtype.np) for v, t in ((sa[x], a.tid), (sc[x], c.tid)))
    specs = list(b.tensors)
    specs.append(TensorSpec("_fold", out_dtype, (256,), float(np.float32(qp.scale)), qp.zero_point))
    schema_attrs = tuple(tuple([int(attrs[k])]) for k in _attr_names(op))
    node = Node(op, (a.tid, c.tid), (len(specs) - 1,), schema_attrs, name)
    table = np.asarray(_PREPARERS[op](node, specs)([va, vc]), dtype=out_dtype.np)
    t = b.const(out_name + "_table", table)
    return b.add_node("lut", [x, t], out_name, out_dtype, None, qp, {}, env, name)


def _attr_names(op: str) -> tuple[str, ...]:
    from ..ops import BY_NAME

    return tuple(BY_NAME[op].attrs)
