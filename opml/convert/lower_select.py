"""Lowering of the value-selecting ops (Max, Min, Abs, Where) onto ``add``, ``lut`` and ``where``.

Rounding to an int8 grid and clamping are non-decreasing, so they commute with max and min: the
quantized ``max(a, b)`` is ``max(q(a), q(b))`` once both inputs are re-expressed (``lut``) on the
output's grid. On one grid (scale ``s``, zero point ``z``) the elementwise maximum of two int8
tensors is two exact ``add`` nodes::

    r = add(a, b; a_mult 2, b_mult -2, shift 1) -> zero point -128, [-128, 127]
                                 # r + 128 = clamp(a - b, 0, 255) = relu(a - b): a - b is in [-255, 255]
    max = add(b, r; 2, 2, shift 1) -> zero point z          # b + relu(a - b)
    min = add(a, r; 2, -2, shift 1) -> zero point z         # a - relu(a - b)

(``round_shift(2 v, 1) = v`` for every integer ``v``; both results lie in [-128, 127], so no clamp
binds.) Broadcasting is the ``add`` op's own. n-ary Max/Min fold pairwise; a scalar constant operand
is a clip table instead (one ``lut``). ``Abs`` is the table of ``leaky_relu`` with ``alpha = -1``
(``x < 0 ? -x : x``, exact in float32). ``Where`` with a float output re-expresses both branches on
the output's grid and selects with the ``where`` op; integer branches are selected as they are.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from .builder import QParams, Val
from .context import Context
from .lower import lowering


def _is_float(v: Val) -> bool:
    return np.dtype(v.onnx_dtype).kind == "f"


def _on_grid(ctx: Context, v: Val, qp: QParams, name: str) -> int:
    """``v`` (activation or constant) as an int8 tensor on the grid ``qp``."""
    if v.is_const:
        tid, _ = ctx.quantize_const(np.asarray(v.data, dtype=np.float64), name, qp)
        return tid
    return ctx.requantize_to(v, qp, name).ref  # v: an int8 activation


def _relu_diff(ctx: Context, a: int, b: int, qp: QParams, name: str) -> Val:
    """``relu(a - b)`` of two int8 tensors on the grid ``qp`` (same scale, zero point -128)."""
    attrs = {"a_mult": 2, "b_mult": -2, "shift": 1, "qmin": -128, "qmax": 127}
    return ctx.b.add_node("add", [a, b], name, DType.INT8, None, QParams(qp.scale, -128), attrs, ctx.env)


@lowering("Max", "Min")
def lower_max_min(ctx: Context, node: onnx.NodeProto) -> None:
    is_max = node.op_type == "Max"
    vals = [ctx.need(node, i) for i in range(len(node.input)) if node.input[i]]
    if not vals:
        raise ctx.err(f"{node.op_type} needs at least one input")
    acts = [v for v in vals if not v.is_const]
    vals = [ctx.batch_free(v, acts[0]) if acts else v for v in vals]
    if len(vals) == 1:
        ctx.set(node, vals[0])
        return
    if not all(_is_float(v) for v in vals):
        kinds = {np.dtype(v.onnx_dtype) for v in vals}
        if len(kinds) != 1 or kinds.pop() not in (np.int8, np.uint8) or len(acts) != len(vals):
            raise ctx.err(f"{node.op_type} of integer tensors is lowered for int8/uint8 activations only; compute "
                          "it on constants so that it folds, or on float values")
        # the same two adds on the raw integers (uint8 as int8 with zero point -128, flipped back at the end)
        grid = [ctx.quantized(v, n).ref for v, n in zip(vals, [i for i in node.input if i], strict=True)]
        sp = ctx.b.tensors[grid[0]]
        _select_chain(ctx, node, grid, QParams(sp.scale, sp.zero_point), is_max)
        ctx.vals[node.output[0]].onnx_dtype = vals[0].onnx_dtype
        return
    consts = [np.asarray(v.data, dtype=np.float64) for v in vals if v.is_const]
    pick = np.maximum if is_max else np.minimum
    c = None
    if consts:
        c = consts[0]
        for k in consts[1:]:
            c = pick(c, k)
    if len(acts) == 1 and c is not None and c.size >= 1 and np.all(c == c.reshape(-1)[0]) and \
            c.ndim <= acts[0].data.ndim:
        bound = float(c.reshape(-1)[0])
        ctx.unary_from(node, acts[0], "clip", {"min": bound} if is_max else {"max": bound})
        return
    names = [node.input[i] for i in range(len(node.input)) if node.input[i] and not ctx.vals[node.input[i]].is_const]
    operands = [ctx.quantized(v, n) for v, n in zip(acts, names, strict=True)] + ([Val(c)] if c is not None else [])
    real = None
    for v in operands:
        r = v.data.astype(np.float64) if v.is_const else ctx.dequant(v)
        real = r if real is None else pick(real, r)
    assert real is not None
    qp = ctx.out_qparams(node, real)
    name = node.output[0]
    _select_chain(ctx, node, [_on_grid(ctx, v, qp, f"{name}_in{i}") for i, v in enumerate(operands)], qp, is_max)


def _select_chain(ctx: Context, node: onnx.NodeProto, grid: list[int], qp: QParams, is_max: bool) -> None:
    """max/min of int8 tensors on one grid, pairwise: two exact adds per pair (module docstring)."""
    name = node.output[0]
    acc = grid[0]
    for i, b in enumerate(grid[1:], 1):
        out = name if i == len(grid) - 1 else f"{name}_{i}"
        diff = _relu_diff(ctx, acc, b, qp, f"{name}_relu{i}")
        # max = b + relu(acc - b); min = acc - relu(acc - b)
        ins, bm = ([b, diff.ref], 2) if is_max else ([acc, diff.ref], -2)
        attrs = {"a_mult": 2, "b_mult": bm, "shift": 1, "qmin": -128, "qmax": 127}
        v = ctx.b.add_node("add", ins, out, DType.INT8, None, qp, attrs, ctx.env, node.name if out == name else "")
        acc = v.ref
    ctx.set(node, v)


@lowering("Abs")
def lower_abs(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    if not _is_float(x):
        raise ctx.err("Abs of an integer activation is not supported (only float tensors, which are quantized)")
    ctx.unary_from(node, x, "leaky_relu", {"alpha": -1.0})


def _condition(ctx: Context, node: onnx.NodeProto, v: Val) -> int:
    if v.is_const:
        if v.batch_dependent and ctx.b.batch and v.data.ndim and v.data.shape[0] == ctx.b.batch:
            raise ctx.err("the condition is a constant computed from the batch size that does not line up with "
                          "the branches' batch axis; make it independent of the batch (shape [1, ...])")
        return ctx.b.const(node.output[0] + "_cond", np.asarray(v.data).astype(np.bool_))
    s = ctx.b.spec(v)
    if s.dtype == DType.FLOAT32 or (s.dtype in (DType.INT8, DType.UINT8) and _is_float(v)):
        raise ctx.err("the condition is a float activation; Where needs a bool or integer condition")
    return v.ref


@lowering("Where")
def lower_where(ctx: Context, node: onnx.NodeProto) -> None:
    cond, a, b = (ctx.need(node, i) for i in range(3))
    like = next((v for v in (a, b, cond) if not v.is_const), None)
    if like is not None:
        cond, a, b = (ctx.batch_free(v, like) for v in (cond, a, b))
    c_id = _condition(ctx, node, cond)
    name = node.output[0]
    if a.is_const and b.is_const:  # only the condition is an activation
        if not _is_float(a):
            dt = np.result_type(a.data, b.data)
            ins = [ctx.b.const(name + "_x", np.asarray(a.data, dt)), ctx.b.const(name + "_y", np.asarray(b.data, dt))]
            out = ctx.b.add_node("where", [c_id, *ins], name, DType.from_np(dt), None, None, {}, ctx.env, node.name)
            out.onnx_dtype = np.dtype(dt)
            ctx.set(node, out)
            return
    if _is_float(a) != _is_float(b):
        raise ctx.err("Where branches of different kinds (float and integer)")
    if _is_float(a):
        cd = np.asarray(cond.data) != 0
        a, b = (v if v.is_const else ctx.quantized(v, node.input[i]) for i, v in ((1, a), (2, b)))
        ra, rb = (v.data.astype(np.float64) if v.is_const else ctx.dequant(v) for v in (a, b))
        try:
            real = np.where(cd, ra, rb)
        except ValueError:
            raise ctx.err(f"condition {cd.shape} and branches {ra.shape}, {rb.shape} do not broadcast") from None
        qp = ctx.out_qparams(node, real)
        ins = [_on_grid(ctx, a, qp, name + "_x"), _on_grid(ctx, b, qp, name + "_y")]
        ctx.set(node, ctx.b.add_node("where", [c_id, *ins], name, DType.INT8, None, qp, {}, ctx.env, node.name))
        return
    acts = [v for v in (a, b) if not v.is_const]
    dts = {ctx.b.spec(v).dtype for v in acts}
    if len(dts) != 1:
        raise ctx.err("Where branches have different integer types")
    kind = dts.pop()
    ins = [v.ref if not v.is_const else ctx.b.const(name + "_c", np.asarray(v.data, dtype=kind.np)) for v in (a, b)]
    out = ctx.b.add_node("where", [c_id, *ins], name, kind, None, None, {}, ctx.env, node.name)
    out.onnx_dtype = acts[0].onnx_dtype
    ctx.set(node, out)


# ------------------------------------------------------------------------------ compositions of other lowerings


def _via(ctx: Context, op: str, ins: list[str], out: str, label: str = "", **attrs: object) -> None:
    """Lower the standard node ``op(ins) -> out`` with the existing lowering (or fold it); errors keep naming
    the node being converted (``ctx.current``)."""
    from .lower import LOWERINGS

    syn = onnx.helper.make_node(op, ins, [out], name=label)
    syn.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in attrs.items())
    if all(ctx.vals[i].is_const for i in ins if i):
        saved = ctx.current
        ctx.fold(syn)
        ctx.current = saved
        return
    LOWERINGS[op](ctx, syn)


def _const_name(ctx: Context, name: str, arr: np.ndarray) -> str:
    ctx.vals[name] = Val(arr, onnx_dtype=arr.dtype)
    return name


@lowering("Sum", "Mean")
def lower_sum_mean(ctx: Context, node: onnx.NodeProto) -> None:
    """Sum: a chain of Add; Mean: that sum times 1/n (a table)."""
    ins = [i for i in node.input if i]
    out = node.output[0]
    if len(ins) == 1:
        ctx.set(node, ctx.need(node, 0))
        return
    acc = ins[0]
    for k, nxt in enumerate(ins[1:], 1):
        last = k == len(ins) - 1 and node.op_type == "Sum"
        step = out if last else f"{out}_sum{k}"
        _via(ctx, "Add", [acc, nxt], step, node.name if last else "")
        acc = step
    if node.op_type == "Mean":
        _via(ctx, "Mul", [acc, _const_name(ctx, f"{out}_inv_n", np.array(1.0 / len(ins), np.float32))], out,
             node.name)


@lowering("PRelu")
def lower_prelu(ctx: Context, node: onnx.NodeProto) -> None:
    """A scalar slope is the leaky_relu table; a per-channel slope is ``Relu(x) + slope * Min(x, 0)``."""
    x = ctx.need(node, 0)
    slope = np.asarray(ctx.const_of(node, 1, "the slope"), dtype=np.float32)
    if slope.size and np.all(slope == slope.reshape(-1)[0]):
        ctx.unary_from(node, x, "leaky_relu", {"alpha": float(slope.reshape(-1)[0])})
        return
    out, xn = node.output[0], node.input[0]
    _via(ctx, "Relu", [xn], out + "_pos")
    _via(ctx, "Min", [xn, _const_name(ctx, out + "_zero", np.array(0.0, np.float32))], out + "_neg")
    _via(ctx, "Mul", [out + "_neg", _const_name(ctx, out + "_slope", slope)], out + "_scaled")
    _via(ctx, "Add", [out + "_pos", out + "_scaled"], out, node.name)


@lowering("HardSwish")
def lower_hardswish(ctx: Context, node: onnx.NodeProto) -> None:
    """``x * HardSigmoid(x; 1/6, 1/2)``: a table and a ``mul`` of two activations."""
    out = node.output[0]
    _via(ctx, "HardSigmoid", [node.input[0]], out + "_gate", alpha=1.0 / 6.0, beta=0.5)
    _via(ctx, "Mul", [node.input[0], out + "_gate"], out, node.name)
