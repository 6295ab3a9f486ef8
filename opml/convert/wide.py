"""Wide (13-bit, int16) residual activations for outlier channels of transformer encoders.

Real BERT-style encoders (all-MiniLM-L6-v2 among them) have a few hidden channels whose values are
tens of times larger than the rest. Where such a channel passes through ``linear -> Add(residual) ->
LayerNormalization``, one int8 scale either clips the outlier or leaves ~8 levels for every other
channel. There, and only when the calibrated output has outlier channels (the largest per-channel
maximum of ``|x|`` exceeds :data:`WIDE_RATIO` times the median one), the linear's output and the
residual Add's output are int16 tensors limited to ``[-WIDE_LIMIT, WIDE_LIMIT]`` (symmetric, zero
point 0) and feed the LayerNormalization directly.

No new op: ``linear``, ``add`` and ``layernorm`` are defined on any integer input (``docs/bundle.md``);
the 13-bit limit keeps every layernorm intermediate below 2^62 (``(n 2^13)^2 << 16`` for n <= 1024),
so the engine's int64 path equals the reference exactly. Models without such outliers convert to the
same bundles as before.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from .builder import QParams, Val
from .context import Context
from .lockstep import merged_channel_max, merged_range

WIDE_RATIO = 4.0
WIDE_LIMIT = 4095


def is_wide(ctx: Context, v: Val) -> bool:
    """Whether ``v`` is a wide (int16) residual activation."""
    return not v.is_const and ctx.b.spec(v).dtype == DType.INT16


def _only(ctx: Context, name: str, op: str) -> onnx.NodeProto | None:
    cons = ctx.consumers.get(name, [])
    outs = {o.name for o in ctx.graph.output}
    return cons[0] if len(cons) == 1 and cons[0].op_type == op and name not in outs else None


def feeds_residual_norm(ctx: Context, node: onnx.NodeProto) -> bool:
    """``node``'s output goes only to an Add whose output goes only to a LayerNormalization."""
    add = _only(ctx, node.output[0], "Add")
    return add is not None and _only(ctx, add.output[0], "LayerNormalization") is not None


def wide_qparams(ctx: Context, node: onnx.NodeProto, real: np.ndarray) -> QParams | None:
    """Symmetric 13-bit parameters when ``real`` has outliers and the pattern holds, else None."""
    if real.size == 0 or node.output[0] in ctx.preferred:
        return None
    chan = np.abs(real).reshape(-1, real.shape[-1]).max(axis=0)  # per output channel
    chan = merged_channel_max(chan)  # (several calibration batches in lockstep: all of them)
    top, typical = float(chan.max()), float(np.median(chan))
    if not np.isfinite(top) or top <= WIDE_RATIO * typical:
        return None
    return QParams(float(np.float32(top / WIDE_LIMIT)), 0)


def wide_sum_qparams(real: np.ndarray) -> QParams:
    """Symmetric 13-bit parameters covering ``real`` (the residual Add of a wide operand)."""
    top = float(np.abs(real).max()) if real.size else 0.0
    top = merged_range(-top, top)[1]  # (several calibration batches in lockstep: all of them)
    return QParams(float(np.float32(max(top, 1e-8) / WIDE_LIMIT)), 0)
