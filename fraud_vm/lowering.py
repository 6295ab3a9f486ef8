"""Per-op lowering rules: graph node (via its context) -> program (``docs/fraud_vm.md`` "Programs").

Every rule reads only the node context (descriptors, attributes, batch), never tensor data, so the
instruction at any ``pc`` is a pure function of ``(context, pc)``.
"""

from __future__ import annotations

import math

import numpy as np

from opml import kernels_data
from opml.bundle import DType

from .context import NodeContext, TensorInfo
from .errors import UnsupportedOp
from .isa import PAD, Instr, Kind
from .programs import BlockedProgram, ElementwiseProgram, Program, RowsProgram
from .state import WIDTH

QRANGE = {DType.INT8: (-128, 127), DType.UINT8: (0, 255)}


def _qrange(t: TensorInfo, what: str) -> tuple[int, int]:
    if t.dtype not in QRANGE:
        raise UnsupportedOp(f"{what}: output dtype {t.dtype.name} is not int8/uint8")
    return QRANGE[t.dtype]


def _ar(t: TensorInfo) -> np.ndarray:
    return np.arange(t.size, dtype=np.int64).reshape(t.shape)


def _check_shape(ctx: NodeContext, shape: tuple[int, ...]) -> None:
    if tuple(shape) != ctx.output.shape:
        raise UnsupportedOp(f"{ctx.node.op}: output shape {ctx.output.shape} does not match the inputs {tuple(shape)}")


def _fin_req(ctx: NodeContext, outs: np.ndarray, cols: np.ndarray, raw: bool, imm: tuple[int, int]) -> Instr:
    """FIN_REQ over output columns ``cols`` (bias/mult/shift from inputs 2..4 when present)."""
    out, ins = ctx.output, ctx.inputs
    lo, hi = (0, 0) if raw else (ctx.node.iattr("qmin"), ctx.node.iattr("qmax"))
    n = len(cols)

    def ops(k: int) -> tuple:
        if k >= len(ins):
            return (PAD,) * n
        return tuple((k, int(c) if ins[k].size > 1 else 0) for c in cols)

    bias = ops(2) if len(ins) > 2 and ctx.node.op != "matmul" else (PAD,) * n
    return Instr(Kind.FIN_REQ, _outs(outs), bias, ops(3), ops(4), (out.zero_point, lo, hi, int(raw), *imm))


def _outs(out: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in out)


def lower_gemm(ctx: NodeContext) -> Program:
    node, ins, out = ctx.node, ctx.inputs, ctx.output
    raw = out.dtype == DType.INT32
    if node.op == "linear":
        a, w = ins[0], ins[1]
        if len(w.shape) != 2 or not a.shape or a.shape[-1] != w.shape[0]:
            raise UnsupportedOp("linear: weights must be [K, N] with K the input's last dimension")
        k, n = w.shape
        m, rows = 1, int(np.prod(a.shape[:-1], dtype=np.int64))
        a_off, b_off = np.arange(rows, dtype=np.int64) * k, np.zeros(rows, dtype=np.int64)
        _check_shape(ctx, a.shape[:-1] + (n,))
        if not raw and len(ins) < 5:
            raise UnsupportedOp("linear with an int8 output needs mult and shift inputs")
        zps, imm = (a.zero_point, 0), (0, 0)
    else:
        a, b = ins
        if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[-1] != b.shape[-2]:
            raise UnsupportedOp("matmul operands must be at least 2-D with matching K")
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        nb_ = int(np.prod(batch, dtype=np.int64))
        a_off = np.broadcast_to(np.arange(int(np.prod(a.shape[:-2]))).reshape(a.shape[:-2]), batch).reshape(nb_) * m * k
        b_off = np.broadcast_to(np.arange(int(np.prod(b.shape[:-2]))).reshape(b.shape[:-2]), batch).reshape(nb_) * k * n
        rows = nb_ * m
        _check_shape(ctx, tuple(batch) + (m, n))
        zps, imm = (a.zero_point, b.zero_point), (node.iattr("mult"), node.iattr("shift"))
    nblk = -(-n // WIDTH)
    t = np.arange(k, dtype=np.int64)[:, None]

    def block(bk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r, j = divmod(bk, nblk)
        bi, mi = divmod(r, m)
        lanes = np.arange(j * WIDTH, min((j + 1) * WIDTH, n), dtype=np.int64)[None, :]
        a_idx = np.broadcast_to(a_off[bi] + mi * k + t, (k, lanes.shape[1]))
        return a_idx, b_off[bi] + t * n + lanes, r * n + lanes[0]

    return BlockedProgram(ctx, rows * nblk, k, Kind.MAC, lambda _t: zps, block,
                          lambda bk, o: _fin_req(ctx, o, o % n, raw, imm))


def lower_window(ctx: NodeContext) -> Program:
    """conv, maxpool, avgpool: lanes along the output row."""
    node, x, out = ctx.node, ctx.inputs[0], ctx.output
    if len(x.shape) != 4:
        raise UnsupportedOp(f"{node.op}: input must be [B, C, H, W]")
    bsz, c, h, w = x.shape
    if node.op == "conv":
        wt = ctx.inputs[1]
        m, cg, kh, kw = wt.shape
        group = node.iattr("group")
        if group <= 0 or m % group or c != cg * group:
            raise UnsupportedOp("conv: channels do not match the group count")
        dil = node.attr("dilations")
    else:
        kh, kw = node.attr("kernel")
        m, cg, group = c, 1, c
        dil = node.attr("dilations") if node.op == "maxpool" else (1, 1)
    pt, pl, pb, pr = node.attr("pads")
    sh, sw = node.attr("strides")
    oh = (h + pt + pb - (kh - 1) * dil[0] - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dil[1] - 1) // sw + 1
    _check_shape(ctx, (bsz, m, oh, ow))
    lb = max(1, WIDTH // sw)
    nxb = -(-ow // lb)
    tt = np.arange(cg * kh * kw, dtype=np.int64)
    ic, ky, kx = tt // (kh * kw), (tt // kw) % kh, tt % kw

    def block(bk: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        rest, xb = divmod(bk, nxb)
        rest, oy = divmod(rest, oh)
        bn, oc = divmod(rest, m)
        ox = np.arange(xb * lb, min((xb + 1) * lb, ow), dtype=np.int64)
        iy = oy * sh + ky * dil[0] - pt
        ix = ox[None, :] * sw + kx[:, None] * dil[1] - pl
        ok = ((iy >= 0) & (iy < h))[:, None] & (ix >= 0) & (ix < w)
        ch = (oc // (m // group)) * cg + ic if node.op == "conv" else np.full_like(ic, oc)
        a_idx = np.where(ok, ((bn * c + ch) * h + iy)[:, None] * w + ix, -1)
        b_idx = None
        if node.op == "conv":
            b_idx = np.broadcast_to((oc * cg * kh * kw + tt)[:, None], a_idx.shape)
        return a_idx, b_idx, ((bn * m + oc) * oh + oy) * ow + ox

    nblocks = bsz * m * oh * nxb
    steps = len(tt)
    if node.op == "conv":
        raw = out.dtype == DType.INT32
        return BlockedProgram(ctx, nblocks, steps, Kind.MAC, lambda _t: (x.zero_point, 0), block,
                              lambda bk, o: _fin_req(ctx, o, np.full(len(o), (bk // (nxb * oh)) % m), raw, (0, 0)))
    if node.op == "maxpool":
        lo = _qrange(x, "maxpool")[0]
        return BlockedProgram(ctx, nblocks, steps, Kind.ACC_MAX, lambda t: (int(t == 0), lo), block,
                              lambda bk, o: Instr(Kind.FIN_MOVE, _outs(o), imm=(0,)))
    lo, hi = _qrange(out, "avgpool")
    inc = node.iattr("count_include_pad")
    fin_imm = (node.iattr("mult"), node.iattr("shift"), out.zero_point, lo, hi, int(not inc), kh * kw, 0)
    return BlockedProgram(ctx, nblocks, steps, Kind.ACC_SUM, lambda _t: (x.zero_point,), block,
                          lambda bk, o: Instr(Kind.FIN_DIV, _outs(o), imm=fin_imm))


def _rows_blocked(ctx: NodeContext, idx: np.ndarray, kind: Kind, imm, fin) -> Program:
    o, j = idx.shape

    def block(bk: int) -> tuple[np.ndarray, None, np.ndarray]:
        lanes = np.arange(bk * WIDTH, min((bk + 1) * WIDTH, o), dtype=np.int64)
        return idx[lanes].T, None, lanes

    return BlockedProgram(ctx, -(-o // WIDTH), j, kind, imm, block, fin)


def lower_reduce(ctx: NodeContext) -> Program:
    node, x, out = ctx.node, ctx.inputs[0], ctx.output
    nd = len(x.shape)
    axes = sorted({a % nd for a in node.attr("axes")}) if nd else []
    rest = [a for a in range(nd) if a not in axes]
    o = int(np.prod([x.shape[a] for a in rest], dtype=np.int64))
    j = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    if out.size != o:
        raise UnsupportedOp("reduce: output size does not match the kept dimensions")
    idx = _ar(x).transpose(rest + axes).reshape(o, j)
    mode, zp = node.iattr("mode"), x.zero_point
    if mode == 3:
        return _rows_blocked(ctx, idx, Kind.ACC_MAX, lambda t: (int(t == 0), 0),
                             lambda bk, lanes: Instr(Kind.FIN_MOVE, _outs(lanes), imm=(0,)))
    if mode not in (0, 1, 2):
        raise UnsupportedOp(f"reduce: unknown mode {mode}")
    lo, hi = QRANGE.get(out.dtype, (0, 0))
    cnt = j if mode == 1 else 1
    fin_imm = (node.iattr("mult"), node.iattr("shift"), out.zero_point, lo, hi, 0, cnt, int(mode == 2))
    return _rows_blocked(ctx, idx, Kind.ACC_SQ if mode == 2 else Kind.ACC_SUM, lambda _t: (zp,),
                         lambda bk, lanes: Instr(Kind.FIN_DIV, _outs(lanes), imm=fin_imm))


def _axis_rows(x: TensorInfo, axis: int) -> np.ndarray:
    if not x.shape:
        raise UnsupportedOp("axis op on a 0-d tensor")
    axis %= len(x.shape)
    return np.moveaxis(_ar(x), axis, -1).reshape(-1, x.shape[axis])


def lower_argmax(ctx: NodeContext) -> Program:
    node, x = ctx.node, ctx.inputs[0]
    idx = _axis_rows(x, node.iattr("axis"))
    last = node.iattr("select_last_index")
    if ctx.output.size != idx.shape[0] or ctx.output.dtype != DType.INT64 or idx.shape[1] == 0:
        raise UnsupportedOp("argmax: output must be int64 with one element per row, over a non-empty axis")
    return _rows_blocked(ctx, idx, Kind.ACC_ARG, lambda t: (t, last),
                         lambda bk, lanes: Instr(Kind.FIN_MOVE, _outs(lanes), imm=(1,)))


def lower_rows(ctx: NodeContext) -> Program:
    node, x, out = ctx.node, ctx.inputs[0], ctx.output
    _check_shape(ctx, x.shape)
    if node.op == "softmax":
        rows = _axis_rows(x, node.iattr("axis"))
        params: tuple[int, ...] = (out.zero_point, *_qrange(out, "softmax"))
    else:
        rows = _axis_rows(x, -1)
        params = tuple(node.iattr(k) for k in ("eps", "frac_bits", "mult", "shift")) + (
            out.zero_point, node.iattr("qmin"), node.iattr("qmax"))
    if rows.shape[1] == 0:
        raise UnsupportedOp(f"{node.op} over an empty axis")
    return RowsProgram(ctx, node.op, rows, params)


def _bcast(t: TensorInfo, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(_ar(t), shape).reshape(-1)


def _src(region: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.full(idx.size, region, dtype=np.int64), idx.reshape(-1)


def lower_elementwise(ctx: NodeContext) -> Program:
    node, ins, out = ctx.node, ctx.inputs, ctx.output
    op, shape = node.op, out.shape
    x = ins[0]
    try:
        if op in ("add", "mul", "where"):
            bshape = np.broadcast_shapes(*(t.shape for t in ins))
            _check_shape(ctx, bshape)
            srcs = {k: _src(i, _bcast(ins[i], shape)) for i, k in enumerate("abc"[: len(ins)])}
            if op == "add":
                am, bm, sh, lo, hi = (node.iattr(k) for k in ("a_mult", "b_mult", "shift", "qmin", "qmax"))
                imm = (x.zero_point, ins[1].zero_point, am, bm, sh, out.zero_point, lo, hi)
                return ElementwiseProgram(ctx, Kind.ADD, imm, srcs)
            if op == "mul":
                mul_imm = (x.zero_point, ins[1].zero_point, node.iattr("mult"), node.iattr("shift"), out.zero_point,
                           node.iattr("qmin"), node.iattr("qmax"))
                return ElementwiseProgram(ctx, Kind.MUL, mul_imm, srcs)
            return ElementwiseProgram(ctx, Kind.WHERE, (int(x.dtype),), srcs)
        if op == "gather":
            axis = node.iattr("axis") % len(x.shape)
            n, post = x.shape[axis], int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
            _check_shape(ctx, x.shape[:axis] + ins[1].shape + x.shape[axis + 1 :])
            o = np.arange(out.size, dtype=np.int64)
            p = ins[1].size
            ip, pi, po = (o // post) % p, o // (post * p), o % post  # out.size > 0, so p, post > 0
            return ElementwiseProgram(ctx, Kind.GATHER, (n, post), {"a": _src(1, ip), "b": _src(0, pi * n * post + po)})
        if op == "concat":
            enc = [(np.int64(i) << 40) + _ar(t) for i, t in enumerate(ins)]
            idx = np.concatenate(enc, axis=node.iattr("axis")).reshape(-1)
            _check_shape(ctx, np.concatenate(enc, axis=node.iattr("axis")).shape)
            return ElementwiseProgram(ctx, Kind.COPY, (), {"a": (idx >> 40, idx & ((1 << 40) - 1))})
        if op in ("transpose", "slice"):
            prep = getattr(kernels_data, "prepare_" + op)(node, [])
            idx = prep([_ar(x)])
            _check_shape(ctx, idx.shape)
            return ElementwiseProgram(ctx, Kind.COPY, (), {"a": _src(0, idx)})
    except (ValueError, IndexError, TypeError) as e:
        raise UnsupportedOp(f"{op}: inconsistent shapes or attributes ({e})") from None
    if x.size != out.size:
        raise UnsupportedOp(f"{op}: output size {out.size} differs from the input size {x.size}")
    if op != "reshape":
        _check_shape(ctx, x.shape)
    srcs = {"a": _src(0, np.arange(out.size, dtype=np.int64))}
    if op == "reshape":
        return ElementwiseProgram(ctx, Kind.COPY, (), srcs)
    if op == "lut":
        return ElementwiseProgram(ctx, Kind.LUT, (1, 128 if x.dtype == DType.INT8 else 0), srcs)
    if op == "quantize":
        s = out.scale
        if not (math.isfinite(s) and s > 0):
            raise UnsupportedOp("quantize: the output scale must be positive and finite")
        return ElementwiseProgram(ctx, Kind.QUANT, (out.scale_bits, out.zero_point, *_qrange(out, "quantize")), srcs)
    if op == "dequantize":
        if not math.isfinite(x.scale):
            raise UnsupportedOp("dequantize: the input scale must be finite")
        return ElementwiseProgram(ctx, Kind.DEQUANT, (x.zero_point, x.scale_bits), srcs)
    if op == "cast":
        return ElementwiseProgram(ctx, Kind.CAST, (int(x.dtype), int(out.dtype)), srcs)
    if op == "flip_sign_bit":
        return ElementwiseProgram(ctx, Kind.FLIP, (), srcs)
    raise UnsupportedOp(f"op {op!r} has no VM lowering")


_RULES = {"linear": lower_gemm, "matmul": lower_gemm, "conv": lower_window, "maxpool": lower_window,
          "avgpool": lower_window, "reduce": lower_reduce, "argmax": lower_argmax, "softmax": lower_rows,
          "layernorm": lower_rows}


def lower(ctx: NodeContext) -> Program:
    """The program of a node context; UnsupportedOp if the node cannot be lowered."""
    if ctx.output.size == 0:
        return Program(ctx, 1)
    return _RULES.get(ctx.node.op, lower_elementwise)(ctx)
