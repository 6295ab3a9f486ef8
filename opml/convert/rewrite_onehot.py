"""One-hot embeddings: ``Cast(Equal(Expand(x[..., 1]), arange(K)), float) @ W`` is ``Gather(W, x)``.

Exporters of JAX and TensorFlow models (``jax.nn.one_hot`` then an einsum; magika's byte embedding) write an
embedding lookup as a one-hot comparison against ``arange(K)`` followed by a MatMul with the ``[K, D]``
table. Row ``x`` of the one-hot matrix has a single 1 at column ``x``, so the product is row ``x`` of ``W``:
the rewrite emits ``Squeeze(x, -1)`` and ``Gather(W, ., axis 0)`` (no Equal, no ``[.., K]`` float tensor).
Applied only when the whole pattern holds: the compared constant is ``arange(K)`` on its last axis (ones
elsewhere), the integer side is a Reshape to a constant shape ending in 1 broadcast by Expand, and each
intermediate has one reader. The indices must lie in ``[0, K)`` (a one-hot of any other value is a zero row;
the gather refuses an index of ``K`` or more at run time with a named error, and reads a negative one from
the end), which is the contract of such models (magika: bytes 0-255 and the padding token 256, K = 257).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .rewrite import _attr, _Graph


def _arange_last(c: np.ndarray | None) -> int:
    """K when ``c`` is ``arange(K)`` along its last axis with every other axis 1, else 0."""
    if c is None or c.dtype.kind not in "iu" or c.ndim < 1 or any(d != 1 for d in c.shape[:-1]):
        return 0
    k = c.shape[-1]
    return k if np.array_equal(c.reshape(-1), np.arange(k)) else 0


def fuse_onehot_matmul(g: _Graph) -> bool:
    """Rewrite one one-hot MatMul into a Gather; True if it did."""
    for eq in g.nodes:
        if eq.op_type != "Equal" or len(eq.input) != 2:
            continue
        for side in (0, 1):
            k = _arange_last(g.const(eq.input[1 - side]))
            if not k:
                continue
            ex = g.producer.get(eq.input[side])
            if ex is None or ex.op_type != "Expand" or id(g.only_consumer(ex.output[0])) != id(eq):
                continue
            rs = g.producer.get(ex.input[0])
            shape = g.const(rs.input[1]) if rs is not None and rs.op_type == "Reshape" else None
            if shape is None or int(np.asarray(shape).reshape(-1)[-1]) != 1:
                continue
            cast = g.only_consumer(eq.output[0])
            if cast is None or cast.op_type != "Cast" or _attr(cast, "to") != onnx.TensorProto.FLOAT:
                continue
            mm = g.only_consumer(cast.output[0])
            w = g.const(mm.input[1]) if mm is not None and mm.op_type == "MatMul" and mm.input[0] == cast.output[0] \
                else None
            if mm is None or w is None or w.ndim != 2 or w.shape[0] != k:
                continue
            axes = g.add_init(eq.output[0] + "_onehot_axes", np.array([-1], dtype=np.int64))
            idx = eq.output[0] + "_onehot_index"
            sq = helper.make_node("Squeeze", [ex.input[0], axes], [idx], name=eq.name + "_onehot_squeeze")
            gather = helper.make_node("Gather", [mm.input[1], idx], list(mm.output), name=mm.name, axis=0)
            old = {id(n) for n in (ex, eq, cast, mm)}
            pos = min(i for i, n in enumerate(g.nodes) if id(n) == id(ex))
            g.nodes = [n for n in g.nodes[:pos] if id(n) not in old] + [sq, gather] + \
                [n for n in g.nodes[pos:] if id(n) not in old]
            g._index()
            return True
    return False
