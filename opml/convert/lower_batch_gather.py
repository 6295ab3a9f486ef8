"""Gather along a flattened batch: the per-sample lookup transformers 5 builds its attention masks with.

``transformers`` (BERT, DistilBERT, GPT-2, T5 exports) turns the ``[N, S]`` attention mask into a
``[N * S, 1]`` tensor (``Flatten``) and reads it with ``Gather(axis 0)`` at the index
``b * S + j`` (``arange(N)`` times ``S`` plus a key index, built from ``Shape``/``Range``: a constant
folded on the calibration batch). Axis 0 of that tensor is the batch times ``S`` (a ``-S`` leading
dimension in the bundle), so the gather is per sample: ``reshape`` the data to ``[N, S, ...]`` and
``gather`` along axis 1 with the index of sample 0 (the same for every sample once ``b * S`` is taken
off, which is checked on the folded index). Two existing ops; no new primitive.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from .builder import QParams, Val
from .context import Context


def per_sample_gather(ctx: Context, node: onnx.NodeProto, data: Val, idx: Val) -> bool:
    """Lower ``Gather(data, idx, axis=0)`` as a per-sample gather when ``idx`` has that form; False if not."""
    n = ctx.b.batch
    ind = np.asarray(idx.data)
    rows = data.data.shape[0] if data.data.ndim else 0
    if not (n and idx.is_const and idx.batch_dependent and ind.dtype.kind in "iu" and ind.ndim >= 1
            and ind.shape[0] == n and rows and rows % n == 0):
        return False
    s = rows // n
    local = ind.astype(np.int64) - (np.arange(n, dtype=np.int64) * s).reshape((n,) + (1,) * (ind.ndim - 1))
    if not (np.all(local == local[:1]) and local.min(initial=0) >= 0 and local.max(initial=0) < s):
        return False
    spec = ctx.b.spec(data)
    qp = QParams(spec.scale, spec.zero_point) if spec.dtype in (DType.INT8, DType.UINT8) else None
    out = node.output[0]
    per = ctx.b.add_node("reshape", [data.ref], f"{out}_per_sample", spec.dtype, (n, s, *data.data.shape[1:]), qp, {},
                         ctx.env)
    per.onnx_dtype = data.onnx_dtype
    it = ctx.b.const(f"{out}_idx", np.ascontiguousarray(local[0]))
    g = ctx.b.add_node("gather", [per.ref, it], out, spec.dtype, None, qp, {"axis": 1}, ctx.env, node.name)
    g.onnx_dtype = data.onnx_dtype
    ctx.set(node, g)
    return True
