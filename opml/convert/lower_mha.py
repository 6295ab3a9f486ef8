"""Lowering of the batch-first attention nodes ``rewrite_mha`` emits, with data-movement ops only.

``AievmHeadsSplit(qkv [N, L, 3E], s0, s1; index c)`` -> ``[N * H, L, d]`` (a ``-H`` leading dimension)::

    slice(qkv, last axis [cE, (c+1)E]) -> reshape [N, L, H, d] -> transpose (0, 2, 1, 3) -> reshape [N * H, L, d]

``AievmHeadsMerge(y [N, H, L, d], s3, s4)`` -> ``[N, L, H * d]``::

    transpose (0, 2, 1, 3) -> reshape [N, L, H * d]

Each first checks, on the concrete calibration shapes, that the model's own Reshape targets are the
sequence-first ones the rewrite assumed (``s0 = [L, N, k, E]``, ``s1 = [L, N * H, d]`` following the
batch, ``s3 = [L * N, H * d]``, ``s4 = [L, N, E']``). Otherwise a dynamic batch is refused in one line, and
a static one computes the chain as written (transposes that move the first axis are allowed there), so
a model that converted before the rewrite existed still does. The ops move int8 (or whatever the input
holds) values without arithmetic, so the result is exactly the tensor the original chain computes.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from .builder import QParams, Val
from .context import BATCH_HINT, Context
from .lower import lowering

_NOT_THIS = "; this is not the sequence-first attention layout the batch-first rewrite expects" + BATCH_HINT


def resolve_reshape(in_shape: tuple[int, ...], target: list[int], allowzero: bool) -> tuple[int, ...] | None:
    """ONNX Reshape's output shape for ``in_shape`` and ``target`` (0 copies the input's dimension unless
    ``allowzero``, one -1 is inferred); None when the target does not fit the input."""
    t = [in_shape[i] if d == 0 and not allowzero and i < len(in_shape) else d for i, d in enumerate(target)]
    size = int(np.prod(in_shape, dtype=np.int64))
    if t.count(-1) > 1 or any(d < -1 for d in t):
        return None
    if -1 in t:
        rest = int(np.prod([d for d in t if d != -1], dtype=np.int64))
        if rest == 0 or size % rest:
            return None
        t[t.index(-1)] = size // rest
    return tuple(t) if int(np.prod(t, dtype=np.int64)) == size else None


def _target(ctx: Context, node: onnx.NodeProto, i: int, in_shape: tuple[int, ...], allowzero: int,
            what: str) -> tuple[int, ...]:
    v = ctx.need(node, i)
    if not v.is_const:
        raise ctx.err(f"the {what} reshape target must be computable before the data (a shape computation)")
    out = resolve_reshape(in_shape, [int(d) for d in np.asarray(v.data).reshape(-1)], bool(allowzero))
    if out is None:
        raise ctx.err(f"the {what} reshape target {np.asarray(v.data).tolist()} does not fit {list(in_shape)}")
    return out


def _qp(ctx: Context, v: Val) -> QParams | None:
    s = ctx.b.spec(v)
    return QParams(s.scale, s.zero_point) if s.dtype in (DType.INT8, DType.UINT8, DType.INT16) else None


def _move(ctx: Context, op: str, x: Val, name: str, attrs: dict[str, object], shape: tuple[int, ...] | None) -> Val:
    out = ctx.b.add_node(op, [x.ref], name, ctx.b.spec(x).dtype, shape, _qp(ctx, x), attrs, ctx.env)
    out.onnx_dtype = x.onnx_dtype
    return out


def _activation(ctx: Context, node: onnx.NodeProto, rank: int) -> Val:
    x = ctx.need(node, 0)
    if x.is_const or x.data.ndim != rank:
        raise ctx.err(f"expected a rank-{rank} activation, got {'a constant' if x.is_const else x.data.shape}"
                      + _NOT_THIS)
    return x


class _Mismatch(Exception):
    """A reshape target is not the sequence-first attention layout: refused with a dynamic batch, computed as
    written with a static one."""


@lowering("AievmHeadsSplit")
def lower_heads_split(ctx: Context, node: onnx.NodeProto) -> None:
    x = _activation(ctx, node, 3)
    try:
        out = _split_batch_first(ctx, node, x)
    except _Mismatch as e:
        if ctx.b.batch:
            raise ctx.err(str(e) + _NOT_THIS) from None
        out = _split_as_written(ctx, node, x)
    ctx.set(node, out)


def _split_batch_first(ctx: Context, node: onnx.NodeProto, x: Val) -> Val:
    n, seq, width = x.data.shape
    index = int(ctx.attr(node, "index", -1))
    perm = [int(p) for p in ctx.attr(node, "perm", [1, 0, 2])]
    az = [int(a) for a in ctx.attr(node, "allowzero", [])] + [0, 0]
    if sorted(perm) != [0, 1, 2] or perm[0] != 1:
        raise _Mismatch(f"the heads transpose {perm} does not put the merged batch-heads axis first")
    name = node.output[0]
    if index >= 0:  # packed projections: [L, N, k * E] -> [L, N, k, E], then part ``index``
        s0 = _target(ctx, node, 1, (seq, n, width), az.pop(0), "packed projection")
        if len(s0) != 4 or s0[:2] != (seq, n) or s0[2] * s0[3] != width or not index < s0[2]:
            raise _Mismatch(f"the packed projection reshapes [L, N, kE] = {[seq, n, width]} to {list(s0)}, not "
                            f"[L, N, k, E] with k > {index}")
        e = s0[3]
        big = 1 << 62  # (the batch axis is sliced whole, whatever the batch)
        x = _move(ctx, "slice", x, name + "_part", {"starts": [0, 0, index * e], "ends": [big, seq, (index + 1) * e],
                                                      "steps": [1, 1, 1]}, None)
    e = x.data.shape[2]
    s1 = _target(ctx, node, 2, (seq, n, e), az.pop(0), "heads")
    h = s1[1] // n if len(s1) == 3 and s1[1] % n == 0 else 0
    if len(s1) != 3 or s1[0] != seq or h == 0 or s1[2] * h != e:
        raise _Mismatch(f"the heads reshape of [L, N, E] = {[seq, n, e]} gives {list(s1)}, not [L, N * H, E / H]")
    target = ctx.need(node, 2)  # (follows the batch: computed from a shape, or -1 where N * H is)
    if ctx.b.batch and not target.batch_dependent and int(np.asarray(target.data).reshape(-1)[1]) != -1:
        raise ctx.err(f"the heads reshape target {list(s1)} is a constant: it does not follow the batch" + BATCH_HINT)
    d = s1[2]
    groups = {0: [1], 1: [0, 2], 2: [3]}  # ONNX axes of [L, N * H, d] -> physical axes of [N, L, H, d]
    phys = [a for p in perm for a in groups[p]]
    r = _move(ctx, "reshape", x, name + "_heads", {}, (n, seq, h, d))
    if phys != [0, 1, 2, 3]:
        r = _move(ctx, "transpose", r, name + "_batch_first", {"perm": phys}, None)
    return _move(ctx, "reshape", r, name, {}, tuple((seq, n * h, d)[p] for p in perm))


def _split_as_written(ctx: Context, node: onnx.NodeProto, x: Val) -> Val:
    """The original chain on a static batch: transpose (1, 0, 2), [reshape s0, part ``index``], reshape s1,
    the heads transpose."""
    name = node.output[0]
    index = int(ctx.attr(node, "index", -1))
    perm = [int(p) for p in ctx.attr(node, "perm", [1, 0, 2])]
    az = [int(a) for a in ctx.attr(node, "allowzero", [])] + [0, 0]
    t = _move(ctx, "transpose", x, name + "_seq_first", {"perm": [1, 0, 2]}, None)
    if index >= 0:
        s0 = _target(ctx, node, 1, t.data.shape, az.pop(0), "packed projection")
        if len(s0) != 4 or not index < s0[2]:
            raise ctx.err(f"the packed projection reshapes {list(t.data.shape)} to {list(s0)}: part {index} of axis 2 "
                          "does not exist")
        r = _move(ctx, "reshape", t, name + "_packed", {}, s0)
        idx = ctx.b.const(name + "_index", np.array(index, dtype=np.int64))
        t = ctx.b.add_node("gather", [r.ref, idx], name + "_part", ctx.b.spec(r).dtype, None, _qp(ctx, r),
                           {"axis": 2}, ctx.env)
        t.onnx_dtype = x.onnx_dtype
    s1 = _target(ctx, node, 2, t.data.shape, az.pop(0), "heads")
    if len(s1) != len(perm):
        raise ctx.err(f"the heads reshape gives rank {len(s1)}, its transpose has {len(perm)} axes")
    r1 = _move(ctx, "reshape", t, name + "_heads", {}, s1)
    return _move(ctx, "transpose", r1, name, {"perm": perm}, None)


@lowering("AievmHeadsMerge")
def lower_heads_merge(ctx: Context, node: onnx.NodeProto) -> None:
    merged = bool(ctx.attr(node, "merged", 0))
    y = _activation(ctx, node, 3 if merged else 4)
    try:
        out = _merge_batch_first(ctx, node, y, merged)
    except _Mismatch as e:
        if ctx.b.batch:
            raise ctx.err(str(e) + _NOT_THIS) from None
        out = _merge_as_written(ctx, node, y, merged)
    ctx.set(node, out)


def _merge_batch_first(ctx: Context, node: onnx.NodeProto, y: Val, merged: bool) -> Val:
    eo = int(ctx.attr(node, "out_features", 0))
    az = [int(a) for a in ctx.attr(node, "allowzero", [])] + [0, 0]
    name = node.output[0]
    if merged:  # y [N * H, L, d] (torch's bmm path): N from the merge target [L * N, H * d]
        nh, seq, d = y.data.shape
        s3 = _target(ctx, node, 1, (seq, nh, d), az[0], "heads merge")
        n = s3[0] // seq if len(s3) == 2 and s3[0] % seq == 0 else 0
        if n == 0 or nh % n or s3[1] != nh // n * d or (ctx.b.batch and n != ctx.b.batch):
            raise _Mismatch(f"the heads merge reshapes [L, N * H, d] = {[seq, nh, d]} to {list(s3)}, not "
                            "[L * N, H * d] with N the batch")
        h = nh // n
    else:
        n, h, seq, d = y.data.shape
        s3 = _target(ctx, node, 1, (seq, n, h, d), az[0], "heads merge")
        if s3 != (seq * n, h * d):
            raise _Mismatch(f"the heads merge reshapes [L, N, H, d] = {[seq, n, h, d]} to {list(s3)}, not "
                            "[L * N, H * d]")
    s4 = _target(ctx, node, 2, (seq * n, eo), az[1], "output")
    if s4 != (seq, n, eo):
        raise _Mismatch(f"the output reshape of [L * N, E'] = {[seq * n, eo]} gives {list(s4)}, not [L, N, E']")
    if merged:
        y = _move(ctx, "reshape", y, name + "_heads", {}, (n, h, seq, d))
    t = _move(ctx, "transpose", y, name + "_nlhd", {"perm": [0, 2, 1, 3]}, None)
    return _move(ctx, "reshape", t, name, {}, (n, seq, h * d))


def _merge_as_written(ctx: Context, node: onnx.NodeProto, y: Val, merged: bool) -> Val:
    """The original chain on a static batch, up to the output projection (which works row by row, so the rows'
    reshape s4 and the last transpose come before it): transpose, reshape s3, reshape s4 (last axis kept),
    transpose (1, 0, 2)."""
    eo = int(ctx.attr(node, "out_features", 0))
    az = [int(a) for a in ctx.attr(node, "allowzero", [])] + [0, 0]
    name = node.output[0]
    t = _move(ctx, "transpose", y, name + "_seq_first", {"perm": [1, 0, 2] if merged else [2, 0, 1, 3]}, None)
    s3 = _target(ctx, node, 1, t.data.shape, az[0], "heads merge")
    s4 = _target(ctx, node, 2, (s3[0], eo), az[1], "output") if len(s3) == 2 else ()
    if len(s3) != 2 or len(s4) != 3 or s4[2] != eo:
        raise ctx.err(f"the heads merge reshapes to {list(s3)} and the output to {list(s4)}: not rows of the "
                      "output projection")
    r = _move(ctx, "reshape", t, name + "_rows", {}, (s4[0], s4[1], s3[1]))
    return _move(ctx, "transpose", r, name, {"perm": [1, 0, 2]}, None)
