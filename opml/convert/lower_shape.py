"""Lowering of data-movement, index and quantization-boundary ops."""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from . import layout
from .builder import QInfo, QParams, Val, choose_qparams
from .context import BATCH_HINT, Context
from .lower import lowering


def _same(ctx: Context, x: Val) -> QParams | None:
    s = ctx.b.spec(x)
    quantized = s.dtype in (DType.INT8, DType.UINT8) or (s.dtype == DType.INT16 and s.scale > 0)  # (13-bit int16)
    return QParams(s.scale, s.zero_point) if quantized else None


def _move(ctx: Context, node: onnx.NodeProto, op: str, x: Val, attrs: dict[str, object], out_shape=None) -> None:
    s = ctx.b.spec(x)
    out = ctx.b.add_node(op, [x.ref], node.output[0], s.dtype, out_shape, _same(ctx, x), attrs, ctx.env,  # type: ignore[arg-type]
                         node.name)
    out.onnx_dtype = x.onnx_dtype
    ctx.set(node, out)


def _reshape_to(ctx: Context, node: onnx.NodeProto, x: Val, shape: tuple[int, ...]) -> None:
    if tuple(shape) == x.data.shape:
        ctx.set(node, x)
        return
    _move(ctx, node, "reshape", x, {}, tuple(shape))


@lowering("Reshape")
def lower_reshape(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    target = [int(d) for d in ctx.const_of(node, 1, "the target shape").reshape(-1)]
    if not ctx.attr(node, "allowzero", 0):
        target = [x.data.shape[i] if d == 0 else d for i, d in enumerate(target)]
    try:
        shape = np.empty(0).reshape(0) if False else np.reshape(x.data, target).shape
    except ValueError as e:
        raise ctx.err(f"cannot reshape {x.data.shape} to {target}: {e}") from None
    _reshape_to(ctx, node, x, shape)


@lowering("Flatten")
def lower_flatten(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    axis = int(ctx.attr(node, "axis", 1))
    axis = axis + x.data.ndim if axis < 0 else axis
    lead = int(np.prod(x.data.shape[:axis], dtype=np.int64))
    _reshape_to(ctx, node, x, (lead, int(x.data.size // max(lead, 1))))


@lowering("Squeeze", "Unsqueeze")
def lower_squeeze(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.raw(node, 0) if node.op_type == "Squeeze" else ctx.need(node, 0)
    assert x is not None
    axes = ctx.attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = ctx.const_of(node, 1, "axes").tolist()
    if x.pending is not None:
        layout.squeeze(ctx, node, x, axes)
        return
    if node.op_type == "Squeeze":
        nd = x.data.ndim
        if axes is not None:
            ax = [a + nd if a < 0 else a for a in axes]
        else:
            ax = [i for i, d in enumerate(x.data.shape) if d == 1]
        shape = tuple(d for i, d in enumerate(x.data.shape) if i not in ax)
    else:
        nd = x.data.ndim + len(axes)
        ax = sorted(a + nd if a < 0 else a for a in axes)
        shape_l = list(x.data.shape)
        for a in ax:
            shape_l.insert(a, 1)
        shape = tuple(shape_l)
    _reshape_to(ctx, node, x, shape)


@lowering("Identity")
def lower_identity(ctx: Context, node: onnx.NodeProto) -> None:
    ctx.set(node, ctx.need(node, 0))


@lowering("Dropout")
def lower_dropout(ctx: Context, node: onnx.NodeProto) -> None:
    mask = node.output[1] if len(node.output) > 1 else ""
    if mask and (ctx.consumers.get(mask) or any(o.name == mask for o in ctx.graph.output)):
        raise ctx.err("the mask output of Dropout is read by the model; export in eval mode without using it")
    ctx.set(node, ctx.need(node, 0))  # (an unread mask, as old exporters name it, is ignored)


@lowering("Transpose")
def lower_transpose(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.raw(node, 0)
    assert x is not None
    rank = len(x.pending) if x.pending is not None else x.data.ndim
    perm = list(ctx.attr(node, "perm", list(range(rank))[::-1]))
    if x.pending is not None or (ctx.b.batch and perm[0] != 0):  # held back until the batch leads again
        layout.transpose(ctx, node, x, perm)
        return
    _move(ctx, node, "transpose", x, {"perm": perm})


@lowering("Concat")
def lower_concat(ctx: Context, node: onnx.NodeProto) -> None:
    vals = [ctx.need(node, i) for i in range(len(node.input))]
    acts = [v for v in vals if not v.is_const]
    axis = int(ctx.attr(node, "axis"))
    nd = acts[0].data.ndim
    axis = axis + nd if axis < 0 else axis
    if ctx.b.batch and axis == 0:
        raise ctx.err("concatenation along the batch dimension is not supported" + BATCH_HINT)
    dtypes = {ctx.b.spec(a).dtype for a in acts}
    quantized = any(ctx.b.spec(a).dtype != DType.FLOAT32 for a in acts)
    if dtypes <= {DType.INT8, DType.UINT8, DType.FLOAT32} and quantized or (
        any(v.is_const for v in vals) and acts[0].onnx_dtype == np.float32
    ):
        acts_q = [ctx.quantized(a, f"{node.output[0]}_in{i}") for i, a in enumerate(acts)]
        lo = min(float(ctx.dequant(a).min()) for a in acts_q)
        hi = max(float(ctx.dequant(a).max()) for a in acts_q)
        for v in vals:
            if v.is_const:
                lo, hi = min(lo, float(v.data.min())), max(hi, float(v.data.max()))
        qp = ctx.preferred.get(node.output[0]) or choose_qparams(lo, hi)
        ins, it = [], iter(acts_q)
        for i, v in enumerate(vals):
            if v.is_const:
                if ctx.b.batch:
                    ins.append(_batched_const(ctx, ctx.batch_free(v, acts_q[0]), acts_q[0], qp,
                                              f"{node.output[0]}_c{i}"))
                else:
                    ins.append(_const_act_q(ctx, v, f"{node.output[0]}_c{i}", qp, 0))
            else:
                ins.append(ctx.requantize_to(next(it), qp, f"{node.output[0]}_rq{i}").ref)
        dtype = DType.INT8
    else:
        if any(v.is_const for v in vals):
            raise ctx.err("concatenating constants with non-float activations is not supported")
        ins, qp, dtype = [a.ref for a in acts], None, ctx.b.spec(acts[0]).dtype
        if len({ctx.b.spec(a).dtype for a in acts}) != 1:
            raise ctx.err("Concat inputs have different types")
    out = ctx.b.add_node("concat", ins, node.output[0], dtype, None, qp, {"axis": axis}, ctx.env, node.name)
    out.onnx_dtype = acts[0].onnx_dtype
    ctx.set(node, out)


def _const_act_q(ctx: Context, v: Val, name: str, qp: QParams, batch: int) -> int:
    tid, _ = ctx.quantize_const(v.data, name, qp)
    return tid


def _batched_const(ctx: Context, c: Val, act: Val, qp: QParams, name: str) -> int:
    """A constant row ``c`` [1, ...] repeated over the batch of the int8 activation ``act`` (e.g. ViT's class
    token ``Expand``-ed to the batch before a Concat): ``z = slice(act)`` [N, 1, ..., 1] supplies the batch,
    ``add(z, c; a_mult 0, b_mult 2, shift 1)`` broadcasts to [N, ...] and equals ``c`` quantized on ``qp``."""
    if c.data.ndim != act.data.ndim or c.data.shape[0] != 1:
        raise ctx.err(f"a constant of shape {c.data.shape} cannot be concatenated with batched activations "
                      f"{act.data.shape}: only constants computed from the batch size (equal rows) follow the batch")
    nd = act.data.ndim
    z = ctx.b.add_node("slice", [act.ref], name + "_batch", DType.INT8, None, _same(ctx, act),
                       {"starts": [0] * nd, "ends": [1 << 62] + [1] * (nd - 1), "steps": [1] * nd}, ctx.env)
    tid, _ = ctx.quantize_const(c.data, name, qp)
    attrs = {"a_mult": 0, "b_mult": 2, "shift": 1, "qmin": -128, "qmax": 127}
    return ctx.b.add_node("add", [z.ref, tid], name + "_rows", DType.INT8, None, qp, attrs, ctx.env).ref


@lowering("Slice")
def lower_slice(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    nd = x.data.ndim
    starts = [int(v) for v in ctx.const_of(node, 1, "starts").reshape(-1)]
    ends = [int(v) for v in ctx.const_of(node, 2, "ends").reshape(-1)]
    axes = list(range(len(starts)))
    if ctx.get(node, 3) is not None:
        axes = [int(v) for v in ctx.const_of(node, 3, "axes").reshape(-1)]
    steps = [1] * len(starts)
    if ctx.get(node, 4) is not None:
        steps = [int(v) for v in ctx.const_of(node, 4, "steps").reshape(-1)]
    full = [slice(None)] * nd
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a = a + nd if a < 0 else a
        if st == 0:
            raise ctx.err("slice step 0")
        full[a] = slice(s, e, st)
    norm_s, norm_e, norm_st = [], [], []
    for a in range(nd):
        s, e, st = _onnx_slice_bounds(full[a], x.data.shape[a])
        if a == 0 and ctx.b.batch and (s, e, st) != (0, x.data.shape[0], 1):
            raise ctx.err("slicing the batch dimension is not supported" + BATCH_HINT)
        norm_s.append(s)
        norm_e.append(e if not (a == 0 and ctx.b.batch) else (1 << 62))
        norm_st.append(st)
    _move(ctx, node, "slice", x, {"starts": norm_s, "ends": norm_e, "steps": norm_st})


def _onnx_slice_bounds(sl: slice, dim: int) -> tuple[int, int, int]:
    """ONNX Slice clamping: negative indices count from the end; with a negative step the start is
    clamped to [0, dim - 1] and the end to [-1, dim - 1] (-1 meaning "before the first element")."""
    st = 1 if sl.step is None else sl.step
    if sl.start is None and sl.stop is None:
        return (0, dim, 1) if st > 0 else (dim - 1, -1, st)
    s = 0 if sl.start is None else sl.start
    e = dim if sl.stop is None else sl.stop
    s, e = (s + dim if s < 0 else s), (e + dim if e < 0 else e)
    if st > 0:
        return min(max(s, 0), dim), min(max(e, 0), dim), st
    return min(max(s, 0), dim - 1), min(max(e, -1), dim - 1), st


@lowering("Split")
def lower_split(ctx: Context, node: onnx.NodeProto) -> None:
    """One ``slice`` per output."""
    x = ctx.raw(node, 0)
    assert x is not None
    shape = tuple(x.data.shape[p] for p in x.pending) if x.pending is not None else x.data.shape
    nd = len(shape)
    axis = int(ctx.attr(node, "axis", 0))
    axis = axis + nd if axis < 0 else axis
    if not 0 <= axis < nd:
        raise ctx.err(f"axis {ctx.attr(node, 'axis', 0)} out of range for rank {nd}")
    if ctx.b.batch and axis == 0 and x.pending is None:
        raise ctx.err("splitting the batch dimension is not supported; split another axis")
    dim, n = shape[axis], len(node.output)
    if ctx.get(node, 1) is not None:
        sizes = [int(v) for v in ctx.const_of(node, 1, "split").reshape(-1)]
    elif ctx.attr(node, "split", None) is not None:
        sizes = [int(v) for v in ctx.attr(node, "split")]
    elif ctx.attr(node, "num_outputs", None) is not None:
        step = -(-dim // n)
        sizes = [min(step, max(dim - i * step, 0)) for i in range(n)]
    else:
        if dim % n:
            raise ctx.err(f"cannot split an axis of {dim} into {n} equal parts; give the split sizes")
        sizes = [dim // n] * n
    if len(sizes) != n or sum(sizes) != dim or min(sizes) < 0:
        raise ctx.err(f"split sizes {sizes} do not divide an axis of {dim} into {n} outputs")
    if x.pending is not None:
        layout.split(ctx, node, x, axis, sizes)
        return
    start = 0
    for i, (out_name, size) in enumerate(zip(node.output, sizes, strict=True)):
        if not size:
            raise ctx.err(f"output {out_name!r} would be empty (zero-sized tensors are not supported)")
        starts, ends = [0] * nd, list(x.data.shape)
        starts[axis], ends[axis] = start, start + size
        if ctx.b.batch:
            ends[0] = 1 << 62
        start += size
        if not out_name:
            continue
        s = ctx.b.spec(x)
        out = ctx.b.add_node("slice", [x.ref], out_name, s.dtype, None, _same(ctx, x),
                             {"starts": starts, "ends": ends, "steps": [1] * nd}, ctx.env, node.name)
        out.onnx_dtype = x.onnx_dtype
        ctx.set(node, out, i)


@lowering("Expand")
def lower_expand(ctx: Context, node: onnx.NodeProto) -> None:
    """Broadcast by ``gather`` with all-zero indices on each axis of size 1 that grows (exact data movement)."""
    x = ctx.need(node, 0)
    target = [int(d) for d in ctx.const_of(node, 1, "the target shape").reshape(-1)]
    try:
        out_shape = np.broadcast_shapes(x.data.shape, tuple(target))
    except ValueError:
        raise ctx.err(f"cannot expand {x.data.shape} to {target}") from None
    lead = len(out_shape) - x.data.ndim
    if ctx.b.batch and (lead or out_shape[0] != x.data.shape[0]):
        raise ctx.err(f"expanding {x.data.shape} to {tuple(out_shape)} changes the batch axis; only axes after "
                      "the batch may be expanded")
    v = x
    if lead:
        v = _reshaped(ctx, v, (1,) * lead + x.data.shape, node.output[0] + "_rank")
    grow = [a for a in range(len(out_shape)) if v.data.shape[a] != out_shape[a]]
    if not grow:
        ctx.set(node, v)
        return
    s = ctx.b.spec(v)
    for k, a in enumerate(grow):
        idx = ctx.b.const(f"{node.output[0]}_idx{out_shape[a]}", np.zeros(out_shape[a], dtype=np.int64))
        last = k == len(grow) - 1
        v = ctx.b.add_node("gather", [v.ref, idx], node.output[0] if last else f"{node.output[0]}_{a}", s.dtype,
                           None, _same(ctx, x), {"axis": a}, ctx.env, node.name if last else "")
        v.onnx_dtype = x.onnx_dtype
    ctx.set(node, v)


def _reshaped(ctx: Context, x: Val, shape: tuple[int, ...], name: str) -> Val:
    s = ctx.b.spec(x)
    out = ctx.b.add_node("reshape", [x.ref], name, s.dtype, shape, _same(ctx, x), {}, ctx.env)
    out.onnx_dtype = x.onnx_dtype
    return out


@lowering("Gather")
def lower_gather(ctx: Context, node: onnx.NodeProto) -> None:
    raw = ctx.raw(node, 0)
    if raw is not None and raw.pending is not None:
        layout.gather(ctx, node, raw, ctx.need(node, 1), int(ctx.attr(node, "axis", 0)))
        return
    data, idx = ctx.need(node, 0), ctx.need(node, 1)
    axis = int(ctx.attr(node, "axis", 0))
    if data.is_const:
        if data.data.dtype.kind == "f":
            tid, qp = ctx.quantize_const(data.data, node.input[0])
        else:
            tid, qp = ctx.b.const(node.input[0], np.asarray(data.data)), None
        if idx.is_const:
            raise ctx.err("unexpected constant gather")
        spec_t = ctx.b.tensors[tid]
        out = ctx.b.add_node("gather", [tid, idx.tid], node.output[0], spec_t.dtype, None, qp, {"axis": axis},  # type: ignore[list-item]
                             ctx.env, node.name)
        out.onnx_dtype = data.data.dtype
        ctx.set(node, out)
        return
    nd = data.data.ndim
    axis = axis + nd if axis < 0 else axis
    if ctx.b.batch and axis == 0:
        from .lower_batch_gather import per_sample_gather

        if per_sample_gather(ctx, node, data, idx):  # (transformers' flattened attention mask)
            return
        raise ctx.err("gathering along the batch dimension is not supported" + BATCH_HINT)
    ind = idx.data if idx.is_const else None
    if ind is None:
        raise ctx.err("gathering from an activation with activation indices is not supported")
    it = ctx.b.const(node.output[0] + "_idx", np.asarray(ind, dtype=np.int64))
    s = ctx.b.spec(data)
    out = ctx.b.add_node("gather", [data.tid, it], node.output[0], s.dtype, None, _same(ctx, data), {"axis": axis},  # type: ignore[list-item]
                         ctx.env, node.name)
    out.onnx_dtype = data.onnx_dtype
    ctx.set(node, out)


@lowering("ArgMax")
def lower_argmax(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    axis = int(ctx.attr(node, "axis", 0))
    axis = axis + x.data.ndim if axis < 0 else axis
    attrs = {"axis": axis, "keepdims": int(ctx.attr(node, "keepdims", 1)),
             "select_last_index": int(ctx.attr(node, "select_last_index", 0))}
    out = ctx.b.add_node("argmax", [x.tid], node.output[0], DType.INT64, None, None, attrs, ctx.env, node.name)  # type: ignore[list-item]
    out.onnx_dtype = np.dtype(np.int64)
    ctx.set(node, out)


@lowering("Cast")
def lower_cast(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    to = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(ctx.attr(node, "to"))))
    s = ctx.b.spec(x)
    if to == x.onnx_dtype:
        ctx.set(node, x)
        return
    if to == np.float32 and s.dtype in (DType.INT8, DType.UINT8) and x.onnx_dtype == np.float32:
        ctx.set(node, x)
        return
    if s.dtype in (DType.INT8, DType.UINT8) and x.onnx_dtype.kind == "f":
        raise ctx.err(f"casting a quantized float tensor to {to} is not supported")
    try:
        dt = DType.from_np(to)
    except Exception:
        raise ctx.err(f"cast to {to} is not supported") from None
    out = ctx.b.add_node("cast", [x.tid], node.output[0], dt, None, None, {}, ctx.env, node.name)  # type: ignore[list-item]
    out.onnx_dtype = to
    ctx.set(node, out)


@lowering("Shape")
def lower_shape(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.raw(node, 0)  # (a pending transposed view has its ONNX shape: the physical one permuted)
    assert x is not None
    shape = np.array([x.data.shape[p] for p in x.pending] if x.pending is not None else x.data.shape, dtype=np.int64)
    start, end = ctx.attr(node, "start", 0), ctx.attr(node, "end", None)
    shape = shape[start:end]
    ctx.set(node, Val(shape, onnx_dtype=np.dtype(np.int64), batch_dependent=bool(ctx.b.batch) or x.batch_dependent))


# ------------------------------------------------------------------------------ quantization boundary


def _qparams_from(ctx: Context, node: onnx.NodeProto, si: int, zi: int) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    scale = np.asarray(ctx.const_of(node, si, "scale"), dtype=np.float32)
    z = ctx.get(node, zi)
    zp = np.asarray(z.data) if z is not None else np.zeros((), dtype=np.uint8)
    return scale, zp, zp.dtype


@lowering("QuantizeLinear")
def lower_quantize_linear(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    scale, zp, zdt = _qparams_from(ctx, node, 1, 2)
    if scale.size != 1:
        raise ctx.err("per-axis QuantizeLinear of activations is not supported")
    if zdt not in (np.int8, np.uint8):
        raise ctx.err(f"QuantizeLinear to {zdt} is not supported")
    qp = QParams(float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]) - (128 if zdt == np.uint8 else 0))
    s = ctx.b.spec(x)
    if s.dtype == DType.FLOAT32:
        out = ctx.b.add_node("quantize", [x.ref], node.output[0], DType.INT8, None, qp, {}, ctx.env, node.name)
    else:
        out = ctx.requantize_to(ctx.quantized(x, node.input[0]), qp, node.output[0])
    out = Val(out.data, out.tid, onnx_dtype=np.dtype(zdt))
    ctx.set(node, out)


@lowering("DequantizeLinear")
def lower_dequantize_linear(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    scale, zp, zdt = _qparams_from(ctx, node, 1, 2)
    if x.is_const:
        axis = int(ctx.attr(node, "axis", 1)) if scale.size > 1 else None
        q = np.asarray(x.data)
        shape = [1] * q.ndim
        if axis is not None:
            shape[axis] = -1
        real = (q.astype(np.float64) - zp.astype(np.float64).reshape(shape if zp.size > 1 else ())) * scale.astype(
            np.float64).reshape(shape if scale.size > 1 else ())
        qi = QInfo(q.astype(np.int8) if q.dtype == np.int8 else q, scale.astype(np.float64), zp, axis)
        ctx.set(node, Val(real.astype(np.float32), onnx_dtype=np.dtype(np.float32), qinfo=qi))
        return
    if scale.size != 1:
        raise ctx.err("per-axis DequantizeLinear of activations is not supported")
    s = ctx.b.spec(x)
    if s.dtype not in (DType.INT8, DType.UINT8):  # a raw 16-bit input is not a 13-bit activation of calibrate.py
        raise ctx.err(f"DequantizeLinear of a {s.dtype.name.lower()} activation is not supported (8-bit only): "
                      "16-bit quantized activations")
    off = 128 if s.dtype == DType.UINT8 else 0
    want = QParams(float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]) - off)
    xq = ctx.quantized(x, node.input[0])
    sq = ctx.b.spec(xq)
    if np.float32(sq.scale) != np.float32(want.scale) or sq.zero_point != want.zero_point:
        # the raw integer tensor carries no parameters yet: give it these
        from ..bundle import TensorSpec

        assert xq.tid is not None
        ctx.b.tensors[xq.tid] = TensorSpec(sq.name, sq.dtype, sq.shape, float(np.float32(want.scale)), want.zero_point,
                                           sq.data)
    ctx.set(node, Val(xq.data, xq.tid, onnx_dtype=np.dtype(np.float32)))
