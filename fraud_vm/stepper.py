"""Scalar stepper: the instruction at any ``pc`` of a node's program, in closed form.

``num_steps(ctx)`` and ``instr_at(ctx, pc)`` derive a node's program from its context
(``fraud_vm.context``) with integer arithmetic only: decoding ``pc`` into loop indices, ravelling
and unravelling N-d indices, numpy broadcasting, conv/pool windows, data movement. The work is
bounded by the lanes of one instruction times the rank of its tensors, and nothing is allocated in
proportion to a tensor. This is what the one-step verifier (``fraud_vm.vm.verify_step``) runs and
what the Solidity verifier mirrors function by function (``docs/fraud_vm.md`` "Programs" lists
the closed forms); the numpy lowering (``fraud_vm.lowering``) builds the same instructions from
whole index arrays for tracing and fast-forward, and the two are tested equal at every ``pc``.

A **plan** (``fraud_vm.plans``) is a node's program parameters (shapes, strides, immediates), read
here once from the context in O(rank + inputs) (``make_plan``, with every shape and attribute
check); its ``instr(pc)`` is the closed form. This module imports no numpy.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from opml.bundle import DType

from .context import NodeContext, TensorInfo, check_arity
from .errors import InvalidStep, UnsupportedOp
from .indexing import (
    BroadcastSource,
    ConcatSource,
    Dims,
    GatherDataSource,
    GatherIndexSource,
    IdentitySource,
    Shape,
    SliceSource,
    Source,
    TransposeSource,
    broadcast_shape,
    strides,
)
from .isa import Instr, Kind
from .plans import ElementwisePlan, FinReq, GemmPlan, Plan, ReducePlan, RowsPlan, WindowPlan
from .state import WIDTH

QRANGE = {DType.INT8: (-128, 127), DType.UINT8: (0, 255)}


def _qrange(t: TensorInfo, what: str) -> tuple[int, int]:
    if t.dtype not in QRANGE:
        raise UnsupportedOp(f"{what}: output dtype {t.dtype.name} is not int8/uint8")
    return QRANGE[t.dtype]


def _check_shape(ctx: NodeContext, shape: Shape) -> None:
    if tuple(shape) != ctx.output.shape:
        raise UnsupportedOp(f"{ctx.node.op}: output shape {ctx.output.shape} does not match the inputs {tuple(shape)}")


def _pair(ctx: NodeContext, name: str, n: int = 2) -> tuple[int, ...]:
    v = ctx.node.attr(name)
    if len(v) != n:
        raise UnsupportedOp(f"{ctx.node.op}: attribute {name} must have {n} values")
    return v


def _fin_req(ctx: NodeContext, raw: bool, imm: tuple[int, int]) -> FinReq:
    ins = ctx.inputs
    lo, hi = (0, 0) if raw else (ctx.node.iattr("qmin"), ctx.node.iattr("qmax"))
    per_col = [None if k >= len(ins) else ins[k].size > 1 for k in (2, 3, 4)]
    if ctx.node.op == "matmul":
        per_col[0] = None
    return FinReq((per_col[0], per_col[1], per_col[2]), (ctx.output.zero_point, lo, hi, int(raw), *imm))


# ---------------------------------------------------------------------------------------------
# plans from the node context (O(rank + inputs); UnsupportedOp where the lowering has none)


def plan_gemm(ctx: NodeContext) -> GemmPlan:
    """linear ``x[.., K] · W[K, N]`` (bias, mult, shift inputs 2..4) and broadcast-batched matmul."""
    node, ins, out = ctx.node, ctx.inputs, ctx.output
    raw = out.dtype == DType.INT32
    if node.op == "linear":
        a, w = ins[0], ins[1]
        if len(w.shape) != 2 or not a.shape or a.shape[-1] != w.shape[0]:
            raise UnsupportedOp("linear: weights must be [K, N] with K the input's last dimension")
        k, n = w.shape
        rows = math.prod(a.shape[:-1])
        _check_shape(ctx, a.shape[:-1] + (n,))
        if not raw and len(ins) < 5:
            raise UnsupportedOp("linear with an int8 output needs mult and shift inputs")
        return GemmPlan(1, k, n, (rows,), (rows,), (), (a.zero_point, 0), _fin_req(ctx, raw, (0, 0)))
    a, b = ins[0], ins[1]
    if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[-1] != b.shape[-2]:
        raise UnsupportedOp("matmul operands must be at least 2-D with matching K")
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    batch = broadcast_shape((a.shape[:-2], b.shape[:-2]))
    _check_shape(ctx, batch + (m, n))
    return GemmPlan(m, k, n, batch, a.shape[:-2], b.shape[:-2], (a.zero_point, b.zero_point),
                    _fin_req(ctx, raw, (node.iattr("mult"), node.iattr("shift"))))


def plan_window(ctx: NodeContext) -> WindowPlan:
    """conv (weights ``[M, C/group, KH, KW]``), maxpool, avgpool over ``[B, C, H, W]``."""
    node, x, out = ctx.node, ctx.inputs[0], ctx.output
    if len(x.shape) != 4:
        raise UnsupportedOp(f"{node.op}: input must be [B, C, H, W]")
    bsz, c, h, w = x.shape
    if node.op == "conv":
        if len(ctx.inputs[1].shape) != 4:
            raise UnsupportedOp("conv: weights must be [M, C/group, KH, KW]")
        m, cg, kh, kw = ctx.inputs[1].shape
        group = node.iattr("group")
        if group <= 0 or m % group or c != cg * group:
            raise UnsupportedOp("conv: channels do not match the group count")
        dil = _pair(ctx, "dilations")
    else:
        kh, kw = _pair(ctx, "kernel")
        m, cg, group = c, 1, c
        dil = _pair(ctx, "dilations") if node.op == "maxpool" else (1, 1)
    pt, pl, pb, pr = _pair(ctx, "pads", 4)
    sh, sw = _pair(ctx, "strides")
    if min(kh, kw, sh, sw, *dil) < 1:
        raise UnsupportedOp(f"{node.op}: kernel, strides and dilations must be positive")
    oh = (h + pt + pb - (kh - 1) * dil[0] - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dil[1] - 1) // sw + 1
    _check_shape(ctx, (bsz, m, oh, ow))
    geometry = (x.shape, m, cg, m // group, (kh, kw), (sh, sw), (dil[0], dil[1]), (pt, pl), (oh, ow), x.zero_point)
    if node.op == "conv":
        return WindowPlan(Kind.MAC, *geometry, 0, _fin_req(ctx, out.dtype == DType.INT32, (0, 0)))
    if node.op == "maxpool":
        return WindowPlan(Kind.ACC_MAX, *geometry, _qrange(x, "maxpool")[0], Instr(Kind.FIN_MOVE, imm=(0,)))
    lo, hi = _qrange(out, "avgpool")
    fin_imm = (node.iattr("mult"), node.iattr("shift"), out.zero_point, lo, hi,
               int(not node.iattr("count_include_pad")), kh * kw, 0)
    return WindowPlan(Kind.ACC_SUM, *geometry, 0, Instr(Kind.FIN_DIV, imm=fin_imm))


def _split_dims(shape: Shape, axes: Sequence[int]) -> tuple[Dims, Dims]:
    """(size, stride) of the dims not in ``axes`` and of those in ``axes``, each in order."""
    st = strides(shape)
    kept = tuple((shape[d], st[d]) for d in range(len(shape)) if d not in axes)
    return kept, tuple((shape[d], st[d]) for d in axes)


def plan_reduce(ctx: NodeContext) -> ReducePlan:
    """reduce over ``axes`` (sorted, mod rank): rows = kept dims, reduction over the reduced dims."""
    node, x, out = ctx.node, ctx.inputs[0], ctx.output
    nd = len(x.shape)
    axes = sorted({a % nd for a in node.attr("axes")}) if nd else []
    kept, reduced = _split_dims(x.shape, axes)
    if out.size != math.prod(s for s, _ in kept):
        raise UnsupportedOp("reduce: output size does not match the kept dimensions")
    mode = node.iattr("mode")
    if mode == 3:
        return ReducePlan(Kind.ACC_MAX, kept, reduced, x.zero_point, 0, Instr(Kind.FIN_MOVE, imm=(0,)))
    if mode not in (0, 1, 2):
        raise UnsupportedOp(f"reduce: unknown mode {mode}")
    lo, hi = QRANGE.get(out.dtype, (0, 0))
    cnt = math.prod(s for s, _ in reduced) if mode == 1 else 1
    fin = Instr(Kind.FIN_DIV, imm=(node.iattr("mult"), node.iattr("shift"), out.zero_point, lo, hi, 0, cnt,
                                   int(mode == 2)))
    return ReducePlan(Kind.ACC_SQ if mode == 2 else Kind.ACC_SUM, kept, reduced, x.zero_point, 0, fin)


def _axis(x: TensorInfo, axis: int) -> int:
    if not x.shape:
        raise UnsupportedOp("axis op on a 0-d tensor")
    return axis % len(x.shape)


def plan_argmax(ctx: NodeContext) -> ReducePlan:
    """argmax along ``axis``: rows = the other dims, ACC_ARG over the axis, FIN_MOVE from ``aux``."""
    node, x, out = ctx.node, ctx.inputs[0], ctx.output
    axis = _axis(x, node.iattr("axis"))
    kept, reduced = _split_dims(x.shape, [axis])
    if out.size != math.prod(s for s, _ in kept) or out.dtype != DType.INT64 or x.shape[axis] == 0:
        raise UnsupportedOp("argmax: output must be int64 with one element per row, over a non-empty axis")
    return ReducePlan(Kind.ACC_ARG, kept, reduced, 0, node.iattr("select_last_index"), Instr(Kind.FIN_MOVE, imm=(1,)))


def plan_rows(ctx: NodeContext) -> RowsPlan:
    """softmax along ``axis`` / layernorm along the last axis."""
    node, x, out = ctx.node, ctx.inputs[0], ctx.output
    _check_shape(ctx, x.shape)
    if node.op == "softmax":
        axis = _axis(x, node.iattr("axis"))
        params: tuple[int, ...] = (out.zero_point, *_qrange(out, "softmax"))
    else:
        axis = _axis(x, -1)
        params = tuple(node.iattr(k) for k in ("eps", "frac_bits", "mult", "shift")) + (
            out.zero_point, node.iattr("qmin"), node.iattr("qmax"))
    if x.shape[axis] == 0:
        raise UnsupportedOp(f"{node.op} over an empty axis")
    kept, ((cols, stride),) = _split_dims(x.shape, [axis])
    return RowsPlan(node.op, kept, cols, stride, params)


_ARITY = {"add": 2, "mul": 2, "where": 3, "gather": 2}


def plan_elementwise(ctx: NodeContext) -> ElementwisePlan:
    """One step per output word: broadcasting, gather, concat, transpose, slice, same-shape ops."""
    node, ins, out = ctx.node, ctx.inputs, ctx.output
    op, shape, x = node.op, out.shape, ins[0]

    def plan(kind: Kind, imm: tuple[int, ...], *sources: Source) -> ElementwisePlan:
        return ElementwisePlan(kind, out.size, WIDTH // out.dtype.itemsize, sources, imm)

    if len(ins) != _ARITY.get(op, len(ins)):
        raise UnsupportedOp(f"{op}: expected {_ARITY[op]} inputs, the context has {len(ins)}")
    if op in ("add", "mul", "where"):
        _check_shape(ctx, broadcast_shape([t.shape for t in ins]))
        srcs = tuple(IdentitySource(i) if t.shape == shape else BroadcastSource(i, shape, t.shape)
                     for i, t in enumerate(ins))
        if op == "add":
            am, bm, sh, lo, hi = (node.iattr(k) for k in ("a_mult", "b_mult", "shift", "qmin", "qmax"))
            return plan(Kind.ADD, (x.zero_point, ins[1].zero_point, am, bm, sh, out.zero_point, lo, hi), *srcs)
        if op == "mul":
            return plan(Kind.MUL, (x.zero_point, ins[1].zero_point, node.iattr("mult"), node.iattr("shift"),
                                   out.zero_point, node.iattr("qmin"), node.iattr("qmax")), *srcs)
        return plan(Kind.WHERE, (int(x.dtype),), *srcs)
    if op == "gather":
        axis = _axis(x, node.iattr("axis"))
        n, post, p = x.shape[axis], math.prod(x.shape[axis + 1 :]), ins[1].size
        _check_shape(ctx, x.shape[:axis] + ins[1].shape + x.shape[axis + 1 :])
        return plan(Kind.GATHER, (n, post), GatherIndexSource(post, p), GatherDataSource(post, p, n))
    if op == "concat":
        nd, axis = len(x.shape), node.iattr("axis")
        if not nd or not -nd <= axis < nd or any(len(t.shape) != nd for t in ins):
            raise UnsupportedOp("concat: inputs must have one rank and the axis must be within it")
        axis %= nd
        if any(t.shape[:axis] != x.shape[:axis] or t.shape[axis + 1 :] != x.shape[axis + 1 :] for t in ins):
            raise UnsupportedOp("concat: inputs differ outside the concatenation axis")
        _check_shape(ctx, x.shape[:axis] + (sum(t.shape[axis] for t in ins),) + x.shape[axis + 1 :])
        return plan(Kind.COPY, (), ConcatSource(shape, axis, tuple(t.shape for t in ins)))
    if op == "transpose":
        nd, perm = len(x.shape), node.attr("perm")
        if len(perm) != nd or any(not -nd <= q < nd for q in perm) or len({q % nd for q in perm}) != nd:
            raise UnsupportedOp(f"transpose: perm {perm} is not a permutation of {nd} axes")
        perm = tuple(q % nd for q in perm)
        _check_shape(ctx, tuple(x.shape[q] for q in perm))
        return plan(Kind.COPY, (), TransposeSource(shape, perm, x.shape))
    if op == "slice":
        starts, ends, steps = node.attr("starts"), node.attr("ends"), node.attr("steps")
        if not len(starts) == len(ends) == len(steps) <= len(x.shape) or 0 in steps:
            raise UnsupportedOp("slice: starts, ends, steps must have one length <= rank, steps nonzero")
        # numpy basic slicing = Python's slice.indices; a negative end with a negative step is "to the front"
        ranges = [range(*slice(s, e if e >= 0 or st > 0 else None, st).indices(d))
                  for s, e, st, d in zip(starts, ends, steps, x.shape, strict=False)]
        _check_shape(ctx, tuple(len(r) for r in ranges) + x.shape[len(starts) :])
        return plan(Kind.COPY, (), SliceSource(shape, tuple(r.start for r in ranges), tuple(steps), x.shape))
    if x.size != out.size:
        raise UnsupportedOp(f"{op}: output size {out.size} differs from the input size {x.size}")
    if op != "reshape":
        _check_shape(ctx, x.shape)
    a = IdentitySource(0)
    if op == "reshape":
        return plan(Kind.COPY, (), a)
    if op == "lut":
        return plan(Kind.LUT, (1, 128 if x.dtype == DType.INT8 else 0), a)
    if op == "quantize":
        if not (math.isfinite(out.scale) and out.scale > 0):
            raise UnsupportedOp("quantize: the output scale must be positive and finite")
        return plan(Kind.QUANT, (out.scale_bits, out.zero_point, *_qrange(out, "quantize")), a)
    if op == "dequantize":
        if not math.isfinite(x.scale):
            raise UnsupportedOp("dequantize: the input scale must be finite")
        return plan(Kind.DEQUANT, (x.zero_point, x.scale_bits), a)
    if op == "cast":
        return plan(Kind.CAST, (int(x.dtype), int(out.dtype)), a)
    if op == "flip_sign_bit":
        return plan(Kind.FLIP, (), a)
    raise UnsupportedOp(f"op {op!r} has no VM lowering")


_RULES = {"linear": plan_gemm, "matmul": plan_gemm, "conv": plan_window, "maxpool": plan_window,
          "avgpool": plan_window, "reduce": plan_reduce, "argmax": plan_argmax, "softmax": plan_rows,
          "layernorm": plan_rows}
_MIN_INPUTS = {"linear": 2, "matmul": 2, "conv": 2}


def make_plan(ctx: NodeContext) -> Plan:
    """The plan of a node context: one NOP for an empty output, else the op's rule."""
    check_arity(ctx)
    if ctx.output.size == 0:
        return Plan()
    op = ctx.node.op
    if len(ctx.inputs) < _MIN_INPUTS.get(op, 1):
        raise UnsupportedOp(f"{op}: the context has too few inputs ({len(ctx.inputs)})")
    try:
        return _RULES.get(op, plan_elementwise)(ctx)
    except IndexError:
        raise UnsupportedOp(f"{op}: an attribute has too few values") from None


_PLANS: OrderedDict[bytes, Plan] = OrderedDict()


def plan_of(ctx: NodeContext) -> Plan:
    """``make_plan(ctx)``, cached by context hash (a plan is O(rank + inputs) integers)."""
    key = ctx.hash
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = make_plan(ctx)
        while len(_PLANS) > 256:
            _PLANS.popitem(last=False)
    return plan


def num_steps(ctx: NodeContext) -> int:
    """Number of instructions of the node's program (at least one)."""
    return max(plan_of(ctx).steps, 1)


def instr_at(ctx: NodeContext, pc: int) -> Instr:
    """The instruction at ``pc``; InvalidStep outside ``0 .. num_steps(ctx) - 1``."""
    plan = plan_of(ctx)
    n = max(plan.steps, 1)
    if not 0 <= pc < n:
        raise InvalidStep(f"pc {pc} is outside the program (0..{n - 1})")
    return plan.instr(pc)


__all__ = ["instr_at", "make_plan", "num_steps", "plan_of"]
