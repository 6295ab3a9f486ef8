"""Lowering of ONNX ops with activation inputs to primitive ops (float models and QDQ models)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from ..bundle import DType
from ..intmath import chunk_for, exact_matmul
from ..lut import softmax_exp_table
from ..ops import REDUCE_L2, REDUCE_MAX, REDUCE_MEAN, REDUCE_SUM
from .builder import QInfo, QParams, Val, requant_params
from .context import BATCH_HINT, Context
from .fold_lut import fold_binary
from .wide import WIDE_LIMIT, feeds_residual_norm, is_wide, wide_qparams, wide_sum_qparams

Lowering = Callable[[Context, onnx.NodeProto], None]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*names: str) -> Callable[[Lowering], Lowering]:
    def deco(fn: Lowering) -> Lowering:
        for n in names:
            LOWERINGS[n] = fn
        return fn

    return deco


# ------------------------------------------------------------------------------ weights


def _weights_per_channel(ctx: Context, w: Val, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights, float64 per-channel scales) of a constant, channels along ``axis``."""
    if w.qinfo is not None:
        qi = w.qinfo
        zp = np.asarray(qi.zero_point).reshape(-1)
        if qi.q.dtype == np.int8 and not zp.any():
            scale = np.broadcast_to(np.asarray(qi.scale, dtype=np.float64).reshape(-1), (qi.q.shape[axis],))
            return qi.q, scale.astype(np.float64)
    real = np.asarray(w.data, dtype=np.float64)
    if not np.isfinite(real).all():
        raise ctx.err("weights contain NaN or infinity")
    other = tuple(a for a in range(real.ndim) if a != axis)
    amax = np.abs(real).max(axis=other) if other else np.abs(real)
    qmax = ctx.weight_qmax
    scale = np.where(amax > 0, amax / float(qmax), 1.0)
    shape = [1] * real.ndim
    shape[axis] = -1
    q = np.clip(np.rint(real / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


def _bias(ctx: Context, bias: np.ndarray | None, n: int, scale: np.ndarray) -> np.ndarray:
    if bias is None:
        return np.zeros(n, dtype=np.int32)
    b = np.broadcast_to(np.asarray(bias, dtype=np.float64).reshape(-1), (n,))
    return np.clip(np.rint(b / scale), -(2**31), 2**31 - 1).astype(np.int32)


def corrected_bias(ctx: Context, xq: Val, bias: np.ndarray | None, w: np.ndarray, wq: np.ndarray, sw: np.ndarray,
                   axis: int, group: int = 1) -> np.ndarray:
    """``bias`` less the mean output shift that rounding ``w`` to ``wq`` causes on the calibration inputs
    (bias correction; ``calibrate.py``). ``axis``: the output-channel axis of ``w`` (1 linear, 0 conv)."""
    from .calibrate import channel_means, conv_rounding_shift, weight_rounding_shift

    s = ctx.b.spec(xq)
    real = np.asarray(w, dtype=np.float64)
    shape = [1] * real.ndim
    shape[axis] = -1
    err = wq.astype(np.float64) * sw.reshape(shape) - real
    n = wq.shape[axis]
    if axis == 1:
        shift = weight_rounding_shift(channel_means(xq.data, s.zero_point, s.scale, xq.data.ndim - 1), err)
    else:
        shift = conv_rounding_shift(channel_means(xq.data, s.zero_point, s.scale, 1), err, group)
    base = np.zeros(n) if bias is None else np.broadcast_to(np.asarray(bias, dtype=np.float64).reshape(-1), (n,))
    return base - shift


def _emit_requant(ctx: Context, node: onnx.NodeProto, op: str, inputs: list[int], real_acc_scale: np.ndarray,
                  acc: np.ndarray, channel_axis: int, attrs: dict[str, object], relu: bool, wide: bool = False) -> None:
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    real = acc * real_acc_scale.reshape(shape) if real_acc_scale.size > 1 else acc * real_acc_scale.reshape(-1)[0]
    if wide or node.output[0] in ctx.accuracy.int16:
        wqp: QParams | None = wide_sum_qparams(real)
        if not wide:
            ctx.int16_done.add(node.output[0])
    else:
        wqp = wide_qparams(ctx, node, real) if op == "linear" and not relu and feeds_residual_norm(ctx, node) else None
    qp = wqp or ctx.out_qparams(node, real, relu)
    mult, shift = requant_params(real_acc_scale / np.float64(np.float32(qp.scale)))
    m_id = ctx.b.const(node.output[0] + "_mult", mult)
    s_id = ctx.b.const(node.output[0] + "_shift", shift)
    lo, hi = (0 if relu else -WIDE_LIMIT, WIDE_LIMIT) if wqp else (qp.zero_point if relu else -128, 127)
    ctx.set(node, ctx.b.add_node(op, inputs + [m_id, s_id], node.output[0], DType.INT16 if wqp else DType.INT8, None,
                                 qp, dict(attrs, qmin=lo, qmax=hi), ctx.env, node.name))


def linear(ctx: Context, node: onnx.NodeProto, x: Val, w: Val, bias: np.ndarray | None, relu: bool,
           wide: bool = False) -> None:
    """Lower ``x @ w + bias`` (optionally fused Relu; ``wide``: a 13-bit int16 output, see ``wide``).
    A 13-bit int16 ``x`` (``wide16.py``) is read directly when the int32 accumulator cannot overflow."""
    wq, sw = _weights_per_channel(ctx, w, axis=1)
    wide_in = is_wide(ctx, x) and ctx.b.spec(x).zero_point == 0 and \
        WIDE_LIMIT * int(np.abs(wq.astype(np.int64)).sum(axis=0).max(initial=0)) < 2**30
    xq = x if wide_in else ctx.quantized(x, node.input[0])
    sx = np.float64(np.float32(ctx.b.spec(xq).scale))
    scale = sx * sw
    b_float = corrected_bias(ctx, xq, bias, w.data, wq, sw, axis=1) if ctx.accuracy.bias_correction and \
        w.qinfo is None else bias
    bq = _bias(ctx, b_float, wq.shape[1], scale)
    if wide_in and np.abs(bq.astype(np.int64)).max(initial=0) >= 2**30:  # (a bias too large on the fine grid)
        return linear(ctx, node, ctx.quantized(x, node.input[0]), w, bias, relu, wide)
    zp = ctx.b.spec(xq).zero_point
    if wide_in:  # (exact in int64; the float32 chunks of exact_matmul are sized for 8-bit operands)
        acc = np.matmul(xq.data.astype(np.int64), wq.astype(np.int64))
    else:
        chunk = chunk_for(np.dtype(np.int8), np.dtype(np.int8))
        acc = exact_matmul(xq.data.astype(np.float32), wq.astype(np.float32), chunk)
    acc = acc - zp * wq.astype(np.int64).sum(axis=0) + bq
    ins = [xq.tid, ctx.b.const(node.output[0] + "_w", wq), ctx.b.const(node.output[0] + "_b", bq)]
    _emit_requant(ctx, node, "linear", ins, scale, acc.astype(np.float64), acc.ndim - 1, {}, relu,  # type: ignore[arg-type]
                  wide)


@lowering("Gemm")
def lower_gemm(ctx: Context, node: onnx.NodeProto) -> None:
    ctx.reject_attrs(node, {"alpha", "beta", "transA", "transB", "aievm_relu"})
    if ctx.attr(node, "transA", 0):
        raise ctx.err("transA=1 is not supported")
    x, w = ctx.need(node, 0), ctx.need(node, 1)
    if not w.is_const:
        raise ctx.err("Gemm with a non-constant B is not supported")
    alpha, beta = float(ctx.attr(node, "alpha", 1.0)), float(ctx.attr(node, "beta", 1.0))
    wr = np.asarray(w.data, dtype=np.float64)
    if w.qinfo is not None and alpha == 1.0:
        wv = w if not ctx.attr(node, "transB", 0) else Val(wr.T, qinfo=_transpose_qinfo(w.qinfo))
    else:
        wr = (wr.T if ctx.attr(node, "transB", 0) else wr) * alpha
        wv = Val(wr)
    c = ctx.get(node, 2)
    bias = None
    if c is not None:
        if not c.is_const or (c.data.ndim == 2 and c.data.shape[0] != 1):
            raise ctx.err("Gemm C must be a constant vector")
        bias = np.asarray(c.data, dtype=np.float64) * beta
    linear(ctx, node, x, wv, bias, bool(ctx.attr(node, "aievm_relu", 0)))


def _transpose_qinfo(qi: QInfo) -> QInfo:
    return QInfo(qi.q.T, qi.scale, qi.zero_point, None if qi.axis is None else 1 - qi.axis)


@lowering("AievmLinear")
def lower_fused_linear(ctx: Context, node: onnx.NodeProto) -> None:
    from .ffn import split_ffn

    x, w = ctx.need(node, 0), ctx.need(node, 1)
    bias = ctx.const_of(node, 2, "bias")
    if not ctx.attr(node, "aievm_relu", 0) and split_ffn(ctx, node, x, w, bias):
        return
    linear(ctx, node, x, w, bias, bool(ctx.attr(node, "aievm_relu", 0)))


@lowering("MatMul")
def lower_matmul(ctx: Context, node: onnx.NodeProto) -> None:
    a, b = ctx.need(node, 0), ctx.need(node, 1)
    if b.is_const and b.data.ndim == 2:
        return linear(ctx, node, a, b, None, bool(ctx.attr(node, "aievm_relu", 0)))
    aq = ctx.quantized(a, node.input[0]) if not a.is_const else _const_act(ctx, a, node.input[0])
    bq = ctx.quantized(b, node.input[1]) if not b.is_const else _const_act(ctx, b, node.input[1])
    if aq.data.ndim < 2 or bq.data.ndim < 2:
        raise ctx.err("MatMul of 1-D activations is not supported")
    sa, sb = ctx.b.spec(aq), ctx.b.spec(bq)
    acc = np.matmul(aq.data.astype(np.int64) - sa.zero_point, bq.data.astype(np.int64) - sb.zero_point)
    scale = np.float64(np.float32(sa.scale)) * np.float64(np.float32(sb.scale))
    qp = ctx.out_qparams(node, acc * scale)
    mult, shift = requant_params(scale / np.float64(np.float32(qp.scale)))
    attrs = {"mult": int(mult[0]), "shift": int(shift[0]), "qmin": -128, "qmax": 127}
    ctx.set(node, ctx.b.add_node("matmul", [aq.ref, bq.ref], node.output[0], DType.INT8, None, qp, attrs, ctx.env,
                                 node.name))


def _const_act(ctx: Context, v: Val, name: str) -> Val:
    tid, _ = ctx.quantize_const(v.data, name)
    return Val(ctx.b.tensors[tid].array(), tid)


def conv(ctx: Context, node: onnx.NodeProto, x: Val, w: Val, bias: np.ndarray | None, pads: list[int],
         relu: bool, group: int | None = None, strides: list[int] | None = None,
         dilations: list[int] | None = None) -> None:
    """Lower a 2-D convolution of ``x`` [N, C, H, W] by constant weights ``w`` [M, C/group, KH, KW]
    (group, strides and dilations default to the node's attributes)."""
    from .wide16 import conv_wide_input

    wide_in = is_wide(ctx, x) and ctx.b.spec(x).zero_point == 0  # an int16 input: two int8 halves (wide16.py)
    xq = x if wide_in else ctx.quantized(x, node.input[0])
    sx = np.float64(np.float32(ctx.b.spec(xq).scale))
    wq, sw = _weights_per_channel(ctx, w, axis=0)
    scale = sx * sw
    group = int(ctx.attr(node, "group", 1)) if group is None else group
    if ctx.accuracy.bias_correction and w.qinfo is None:
        bias = corrected_bias(ctx, xq, bias, w.data, wq, sw, axis=0, group=group)
    attrs = {"pads": pads, "strides": strides or list(ctx.attr(node, "strides", [1, 1])),
             "dilations": dilations or list(ctx.attr(node, "dilations", [1, 1])), "group": group}
    if wide_in:
        return conv_wide_input(ctx, node, xq, wq, sw, bias, attrs, relu)
    bq = _bias(ctx, bias, wq.shape[0], scale)
    ins = [xq.ref, ctx.b.const(node.output[0] + "_w", wq), ctx.b.const(node.output[0] + "_b", bq)]
    # raw accumulators first (int32 output), then the requantized node
    raw = ctx.b.add_node("conv", ins, node.output[0] + "_acc", DType.INT32, None, None,
                         dict(attrs, qmin=0, qmax=0), {**ctx.env})
    ctx.b.nodes.pop()
    _emit_requant(ctx, node, "conv", ins, scale, raw.data.astype(np.float64), 1, attrs, relu)


# ------------------------------------------------------------------------------ elementwise


def _scalar(v: Val) -> float | None:
    if v.is_const and v.qinfo is None and v.data.size >= 1 and np.all(v.data == v.data.reshape(-1)[0]):
        return float(np.asarray(v.data, dtype=np.float64).reshape(-1)[0])
    return None


def _broadcast_shape_ok(ctx: Context, act: Val, const: Val) -> None:
    if const.data.ndim > act.data.ndim:
        raise ctx.err("a constant operand of higher rank than the activation is not supported")


@lowering("Add", "Sub")
def lower_add(ctx: Context, node: onnx.NodeProto) -> None:
    a, b = ctx.need(node, 0), ctx.need(node, 1)
    a, b = ctx.batch_free(a, b), ctx.batch_free(b, a)
    sign = -1.0 if node.op_type == "Sub" else 1.0
    if (b.is_const and not a.is_const and ctx.b.spec(a).dtype == DType.FLOAT32 and not np.any(np.asarray(b.data))
            and np.broadcast_shapes(a.data.shape, b.data.shape) == a.data.shape):
        return ctx.set(node, a)  # a float32 activation plus zeros (silero-vad's state output): itself, unrounded
    if b.is_const and (c := _scalar(b)) is not None:
        return ctx.unary_from(node, a, "affine", {"mul": 1.0, "add": sign * c})
    if a.is_const and (c := _scalar(a)) is not None:
        return ctx.unary_from(node, b, "affine", {"mul": sign, "add": c})
    wide = is_wide(ctx, a) or is_wide(ctx, b) or node.output[0] in ctx.accuracy.int16
    if node.output[0] in ctx.accuracy.int16:
        ctx.int16_done.add(node.output[0])
    aq = _const_act(ctx, a, node.input[0]) if a.is_const else a if is_wide(ctx, a) else ctx.quantized(a, node.input[0])
    bq = _const_act(ctx, b, node.input[1]) if b.is_const else b if is_wide(ctx, b) else ctx.quantized(b, node.input[1])
    ra, rb = ctx.dequant(aq), ctx.dequant(bq)
    qp = wide_sum_qparams(ra + sign * rb) if wide else ctx.out_qparams(node, ra + sign * rb)
    sa, sb = (np.float64(np.float32(ctx.b.spec(v).scale)) for v in (aq, bq))
    so = np.float64(np.float32(qp.scale))
    # shift chosen so the larger multiplier uses 30 bits
    big = max(sa, sb) / so
    shift = int(np.clip(30 - int(np.ceil(np.log2(big))) if big > 0 else 30, 1, 62))
    am = int(np.rint(sa / so * 2.0**shift))
    bm = int(np.rint(sign * sb / so * 2.0**shift))
    lo, hi = (-WIDE_LIMIT, WIDE_LIMIT) if wide else (-128, 127)
    attrs = {"a_mult": am, "b_mult": bm, "shift": shift, "qmin": lo, "qmax": hi}
    if not wide and (v := fold_binary(ctx.b, "add", aq, bq, node.output[0], DType.INT8, qp, attrs, ctx.env,
                                      node.name)) is not None:  # x + lut(x): one table (fold_lut.py)
        return ctx.set(node, v)
    ctx.set(node, ctx.b.add_node("add", [aq.ref, bq.ref], node.output[0], DType.INT16 if wide else DType.INT8, None,
                                 qp, attrs, ctx.env, node.name))


def _mul_wide(ctx: Context, node: onnx.NodeProto, a: Val, b: Val) -> None:
    """``mul`` of a 13-bit int16 activation (zero point 0) read directly and an int8 one (or two int16 ones),
    onto a 13-bit int16 grid (an LSTM's carried cell state ``f * C_prev``: recurrent.py)."""
    aq = a if is_wide(ctx, a) else ctx.quantized(a, node.input[0])
    bq = b if is_wide(ctx, b) else ctx.quantized(b, node.input[1])
    qp = wide_sum_qparams(ctx.dequant(aq) * ctx.dequant(bq))
    scale = np.float64(np.float32(ctx.b.spec(aq).scale)) * np.float64(np.float32(ctx.b.spec(bq).scale))
    mult, shift = requant_params(scale / np.float64(np.float32(qp.scale)))
    attrs = {"mult": int(mult[0]), "shift": int(shift[0]), "qmin": -WIDE_LIMIT, "qmax": WIDE_LIMIT}
    ctx.set(node, ctx.b.add_node("mul", [aq.ref, bq.ref], node.output[0], DType.INT16, None, qp, attrs, ctx.env,
                                 node.name))


@lowering("Mul", "Div")
def lower_mul(ctx: Context, node: onnx.NodeProto) -> None:
    a, b = ctx.need(node, 0), ctx.need(node, 1)
    a, b = ctx.batch_free(a, b), ctx.batch_free(b, a)
    div = node.op_type == "Div"
    if not div and _integer_times_zero(a, b):  # (silero-vad's ``sr * 0``: data-independent, folds)
        shape = np.broadcast_shapes(a.data.shape, b.data.shape)
        dt = np.result_type(a.data.dtype, b.data.dtype)
        batched = bool(ctx.b.batch) and len(shape) > 0 and any(not v.is_const or v.batch_dependent for v in (a, b))
        return ctx.set(node, Val(np.zeros(shape, dt), onnx_dtype=dt, batch_dependent=batched))
    if b.is_const and (c := _scalar(b)) is not None:
        if div and c == 0:
            raise ctx.err("division by zero")
        return ctx.unary_from(node, a, "affine", {"div": c} if div else {"mul": c})
    if div:
        if not b.is_const:
            raise ctx.err("Div is supported only by constants")
        if np.any(np.asarray(b.data) == 0):
            raise ctx.err("division by zero")
        b = Val(1.0 / np.asarray(b.data, dtype=np.float64))
    elif a.is_const and (c := _scalar(a)) is not None:
        return ctx.unary_from(node, b, "affine", {"mul": c, "add": 0.0})
    if not div and (is_wide(ctx, a) or is_wide(ctx, b)) and ctx.b.spec(a if is_wide(ctx, a) else b).zero_point == 0:
        return _mul_wide(ctx, node, a, b)
    aq = _const_act(ctx, a, node.input[0]) if a.is_const else ctx.quantized(a, node.input[0])
    bq = _const_act(ctx, b, node.input[1]) if b.is_const else ctx.quantized(b, node.input[1])
    qp = ctx.out_qparams(node, ctx.dequant(aq) * ctx.dequant(bq))
    scale = np.float64(np.float32(ctx.b.spec(aq).scale)) * np.float64(np.float32(ctx.b.spec(bq).scale))
    mult, shift = requant_params(scale / np.float64(np.float32(qp.scale)))
    attrs = {"mult": int(mult[0]), "shift": int(shift[0]), "qmin": -128, "qmax": 127}
    if (v := fold_binary(ctx.b, "mul", aq, bq, node.output[0], DType.INT8, qp, attrs, ctx.env, node.name)) is not None:
        return ctx.set(node, v)  # SiLU, hard-swish, x * x: one table (fold_lut.py)
    ctx.set(node, ctx.b.add_node("mul", [aq.ref, bq.ref], node.output[0], DType.INT8, None, qp, attrs, ctx.env,
                                 node.name))


def _integer_times_zero(a: Val, b: Val) -> bool:
    """An integer product with an all-zero constant factor: zero whatever the other factor holds."""
    if np.dtype(a.onnx_dtype).kind not in "iu" or np.dtype(b.onnx_dtype).kind not in "iu":
        return False
    return any(v.is_const and not np.any(np.asarray(v.data)) for v in (a, b))


def _unary(fn: str, **defaults: float) -> Lowering:
    def run(ctx: Context, node: onnx.NodeProto) -> None:
        params = {k: float(ctx.attr(node, k, v)) for k, v in defaults.items()}
        if fn == "relu":
            from .wide16 import clip_wide

            if clip_wide(ctx, node, ctx.need(node, 0), 0.0, float("inf")):  # an int16 input stays int16
                return
        ctx.unary_from(node, ctx.need(node, 0), fn, params)

    return run


for _op, _fn, _defaults in [
    ("Relu", "relu", {}), ("Sigmoid", "sigmoid", {}), ("Tanh", "tanh", {}), ("Erf", "erf", {}),
    ("Exp", "exp", {}), ("Sqrt", "sqrt", {}), ("Neg", "neg", {}), ("Reciprocal", "reciprocal", {}),
    ("LeakyRelu", "leaky_relu", {"alpha": 0.01}), ("HardSigmoid", "hardsigmoid", {"alpha": 0.2, "beta": 0.5}),
]:
    LOWERINGS[_op] = _unary(_fn, **_defaults)


@lowering("Gelu")
def lower_gelu(ctx: Context, node: onnx.NodeProto) -> None:
    approx = ctx.attr(node, "approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    ctx.unary_from(node, ctx.need(node, 0), "gelu_tanh" if approx == "tanh" else "gelu", {})


@lowering("Clip")
def lower_clip(ctx: Context, node: onnx.NodeProto) -> None:
    lo = ctx.get(node, 1)
    hi = ctx.get(node, 2)
    params = {
        "min": float(lo.data) if lo is not None else float(ctx.attr(node, "min", -3.4e38)),
        "max": float(hi.data) if hi is not None else float(ctx.attr(node, "max", 3.4e38)),
    }
    from .wide16 import clip_wide

    if clip_wide(ctx, node, ctx.need(node, 0), params["min"], params["max"]):  # an int16 input stays int16
        return
    ctx.unary_from(node, ctx.need(node, 0), "clip", params)


@lowering("Pow")
def lower_pow(ctx: Context, node: onnx.NodeProto) -> None:
    e = _scalar(ctx.need(node, 1))
    if e == 2.0:
        return ctx.unary_from(node, ctx.need(node, 0), "square", {})
    if e == 0.5:
        return ctx.unary_from(node, ctx.need(node, 0), "sqrt", {})
    if e == 1.0:
        ctx.set(node, ctx.need(node, 0))
        return
    if e is not None and e == int(e) and 3 <= e <= 8:  # x^n = x^(n-1) * x: a square table, then products
        prev = node.output[0] + "_pow2"
        ctx.unary_from(onnx.helper.make_node("Pow", node.input, [prev]), ctx.need(node, 0), "square", {})
        for k in range(3, int(e) + 1):
            out = node.output[0] if k == int(e) else f"{node.output[0]}_pow{k}"
            LOWERINGS["Mul"](ctx, onnx.helper.make_node("Mul", [prev, node.input[0]], [out],
                                                         name=node.name if k == int(e) else ""))
            prev = out
        return
    raise ctx.err(f"Pow with exponent {e} is not supported (0.5 and the integers 1 to 8 are)")


@lowering("Softmax")
def lower_softmax(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.quantized(ctx.need(node, 0), node.input[0])
    axis = int(ctx.attr(node, "axis", -1))
    nd = x.data.ndim
    axis = axis + nd if axis < 0 else axis
    if axis != nd - 1 and int(ctx.attr(node, "axis", -1)) != -1:
        # opset < 13 flattens trailing axes; with a single trailing axis both agree
        if nd - axis != 1:
            raise ctx.err("Softmax is supported over one axis")
    table = softmax_exp_table(ctx.b.spec(x).scale)
    t = ctx.b.const(node.output[0] + "_exp", table)
    qp = QParams(1.0 / 256.0, -128)
    ctx.set(node, ctx.b.add_node("softmax", [x.ref, t], node.output[0], DType.INT8, None, qp, {"axis": axis},
                                 ctx.env, node.name))


LAYERNORM_FRAC_BITS = 10
LAYERNORM_GAMMA_MAX = 8191


@lowering("LayerNormalization")
def lower_layernorm(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    x = x if is_wide(ctx, x) else ctx.quantized(x, node.input[0])
    axis = int(ctx.attr(node, "axis", -1))
    if axis not in (-1, x.data.ndim - 1):
        raise ctx.err("LayerNormalization is supported over the last axis only")
    n = x.data.shape[-1]
    gamma = np.broadcast_to(np.asarray(ctx.const_of(node, 1, "scale"), dtype=np.float64).reshape(-1), (n,))
    b = ctx.get(node, 2)
    beta = np.zeros(n) if b is None else np.broadcast_to(np.asarray(b.data, dtype=np.float64).reshape(-1), (n,))
    layernorm(ctx, node, x, gamma, beta, float(ctx.attr(node, "epsilon", 1e-5)))


def layernorm(ctx: Context, node: onnx.NodeProto, x: Val, gamma: np.ndarray, beta: np.ndarray, eps: float) -> None:
    from ..kernels import LAYERNORM_SQRT_BITS

    sx = np.float64(np.float32(ctx.b.spec(x).scale))
    n = x.data.shape[-1]
    f = LAYERNORM_FRAC_BITS
    gmax = float(np.abs(gamma).max()) or 1.0
    sg = gmax / LAYERNORM_GAMMA_MAX
    gq = np.rint(gamma / sg).astype(np.int32)
    bq = np.clip(np.rint(beta / (sg * 2.0**-f)), -(2**31), 2**31 - 1).astype(np.int32)
    eps_q = int(np.rint(n * n * eps / (sx * sx) * 2.0 ** (2 * LAYERNORM_SQRT_BITS)))
    xr = x.data.astype(np.float64)
    mu = xr.mean(axis=-1, keepdims=True)
    real = (xr - mu) / np.sqrt(((xr - mu) ** 2).mean(axis=-1, keepdims=True) + eps / (sx * sx)) * gamma + beta
    qp = ctx.out_qparams(node, real)
    mult, shift = requant_params(sg * 2.0**-f / np.float64(np.float32(qp.scale)))
    attrs = {"eps": eps_q, "frac_bits": f, "mult": int(mult[0]), "shift": int(shift[0]), "qmin": -128, "qmax": 127}
    ins = [x.tid, ctx.b.const(node.output[0] + "_gamma", gq), ctx.b.const(node.output[0] + "_beta", bq)]
    ctx.set(node, ctx.b.add_node("layernorm", ins, node.output[0], DType.INT8, None, qp, attrs, ctx.env,  # type: ignore[arg-type]
                                 node.name))


# ------------------------------------------------------------------------------ pooling, reductions


def _reduce(ctx: Context, node: onnx.NodeProto, x: Val, mode: int, axes: list[int], keep: bool) -> None:
    nd = x.data.ndim
    axes = sorted({a + nd if a < 0 else a for a in axes}) if axes else list(range(nd))
    if 0 in axes and ctx.b.batch:
        raise ctx.err("reducing over the batch dimension is not supported" + BATCH_HINT)
    s = ctx.b.spec(x)
    xr = ctx.dequant(x)
    if mode == REDUCE_MAX:
        qp, mult, shift = QParams(s.scale, s.zero_point), 0, 1
    else:
        real = {REDUCE_SUM: lambda: xr.sum(axis=tuple(axes)), REDUCE_MEAN: lambda: xr.mean(axis=tuple(axes)),
                REDUCE_L2: lambda: np.sqrt((xr * xr).sum(axis=tuple(axes)))}[mode]()
        # (a mean keeps the input's grid; an int16 input's mean goes onto an int8 grid of its own)
        same_grid = mode == REDUCE_MEAN and s.dtype != DType.INT16
        qp = QParams(s.scale, s.zero_point) if same_grid else ctx.out_qparams(node, real)
        if mode == REDUCE_MEAN and node.output[0] in ctx.preferred:
            qp = ctx.preferred[node.output[0]]
        m, sh = requant_params(np.float64(np.float32(s.scale)) / np.float64(np.float32(qp.scale)))
        mult, shift = int(m[0]), int(sh[0])
    attrs = {"mode": mode, "axes": axes, "keepdims": int(keep), "mult": mult, "shift": shift}
    ctx.set(node, ctx.b.add_node("reduce", [x.ref], node.output[0], DType.INT8, None, qp, attrs, ctx.env, node.name))


def _reduce_lowering(mode: int) -> Lowering:
    def run(ctx: Context, node: onnx.NodeProto) -> None:
        x = ctx.need(node, 0)
        # (an int16 activation's mean or sum is read directly: reduce takes any integer input)
        x = x if is_wide(ctx, x) and mode in (REDUCE_MEAN, REDUCE_SUM) else ctx.quantized(x, node.input[0])
        axes = ctx.attr(node, "axes", None)
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = ctx.const_of(node, 1, "axes").tolist()
        if not axes and ctx.attr(node, "noop_with_empty_axes", 0):
            ctx.set(node, x)
            return
        _reduce(ctx, node, x, mode, list(axes or []), bool(ctx.attr(node, "keepdims", 1)))

    return run


LOWERINGS["ReduceMean"] = _reduce_lowering(REDUCE_MEAN)
LOWERINGS["ReduceSum"] = _reduce_lowering(REDUCE_SUM)
LOWERINGS["ReduceL2"] = _reduce_lowering(REDUCE_L2)
LOWERINGS["ReduceMax"] = _reduce_lowering(REDUCE_MAX)
