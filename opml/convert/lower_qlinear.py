"""Lowering of the integer ONNX ops: QLinearMatMul, QLinearConv, MatMulInteger, ConvInteger."""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType, TensorSpec
from .builder import QInfo, QParams, Val, requant_params
from .context import Context
from .lower import lowering
from .lower_window import conv_pads


def _tag(ctx: Context, v: Val, scale: float, zp: int, name: str) -> Val:
    """An int8 activation carrying explicit parameters (uint8 inputs are flipped to int8 first)."""
    s = ctx.b.spec(v)
    off = 128 if s.dtype == DType.UINT8 else 0
    if s.dtype == DType.UINT8:
        v = ctx.b.add_node("flip_sign_bit", [v.tid], name + "_i8", DType.INT8, None, QParams(scale, zp - off), {},  # type: ignore[list-item]
                           ctx.env)
    elif s.dtype != DType.INT8:
        raise ctx.err(f"expected an int8/uint8 tensor, got {s.dtype.name}")
    s = ctx.b.spec(v)
    assert v.tid is not None
    ctx.b.tensors[v.tid] = TensorSpec(s.name, s.dtype, s.shape, float(np.float32(scale)), zp - off, s.data)
    return v


def _scalar(ctx: Context, node: onnx.NodeProto, i: int, default: float = 0) -> float:
    v = ctx.get(node, i)
    if v is None:
        return default
    if not v.is_const or v.data.size != 1:
        raise ctx.err(f"input {i} must be a constant scalar")
    return float(v.data.reshape(-1)[0])


def _int_weights(ctx: Context, w: np.ndarray, zp: np.ndarray, axis: int) -> np.ndarray:
    """Constant integer weights minus their zero point, as int8 when they fit, else int16."""
    shape = [1] * w.ndim
    if zp.size > 1:
        shape[axis] = -1
    c = w.astype(np.int64) - zp.astype(np.int64).reshape(shape if zp.size > 1 else ())
    if c.min(initial=0) >= -128 and c.max(initial=0) <= 127:
        return c.astype(np.int8)
    return c.astype(np.int16)


def _zp(ctx: Context, node: onnx.NodeProto, i: int) -> np.ndarray:
    v = ctx.get(node, i)
    return np.zeros(1, dtype=np.int64) if v is None else np.asarray(v.data)


def _integer_gemm(ctx: Context, node: onnx.NodeProto, a: Val, a_zp: int, a_scale: float, b: Val, b_zp: np.ndarray,
                  b_scale: np.ndarray, out: QParams | None) -> None:
    """a @ b with integer inputs: linear (constant b) or matmul; int32 out when ``out`` is None."""
    aq = _tag(ctx, a, a_scale, a_zp, node.input[0])
    name = node.output[0]
    if b.is_const and b.data.ndim == 2:
        wq = _int_weights(ctx, np.asarray(b.data), b_zp, 1)
        n = wq.shape[1]
        ins = [aq.tid, ctx.b.const(name + "_w", wq), ctx.b.const(name + "_b", np.zeros(n, dtype=np.int32))]
        if out is None:
            ctx.set(node, _as(ctx.b.add_node("linear", ins, name, DType.INT32, None, None, {"qmin": 0, "qmax": 0},  # type: ignore[arg-type]
                                             ctx.env, node.name), np.int32))
            return
        real = np.float64(np.float32(a_scale)) * np.broadcast_to(b_scale.astype(np.float64).reshape(-1), (n,))
        mult, shift = requant_params(real / np.float64(np.float32(out.scale)))
        ins += [ctx.b.const(name + "_mult", mult), ctx.b.const(name + "_shift", shift)]
        v = ctx.b.add_node("linear", ins, name, DType.INT8, None, out, {"qmin": -128, "qmax": 127}, ctx.env, node.name)  # type: ignore[arg-type]
        ctx.set(node, v)
        return
    if b_zp.size != 1 or b_scale.size != 1:
        raise ctx.err("per-channel parameters need constant 2-D weights")
    if b.is_const:
        tid = ctx.b.const(name + "_bconst", np.asarray(b.data))
        b = Val(ctx.b.tensors[tid].array(), tid)
    bq = _tag(ctx, b, float(b_scale.reshape(-1)[0]), int(b_zp.reshape(-1)[0]), node.input[1])
    if out is None:
        attrs = {"mult": 0, "shift": 1, "qmin": 0, "qmax": 0}
        ctx.set(node, _as(ctx.b.add_node("matmul", [aq.tid, bq.tid], name, DType.INT32, None, None, attrs, ctx.env,  # type: ignore[list-item]
                                         node.name), np.int32))
        return
    real = np.float64(np.float32(a_scale)) * np.float64(np.float32(b_scale.reshape(-1)[0]))  # type: ignore[assignment]
    mult, shift = requant_params(real / np.float64(np.float32(out.scale)))
    attrs = {"mult": int(mult[0]), "shift": int(shift[0]), "qmin": -128, "qmax": 127}
    ctx.set(node, ctx.b.add_node("matmul", [aq.tid, bq.tid], name, DType.INT8, None, out, attrs, ctx.env, node.name))  # type: ignore[list-item]


def _as(v: Val, dt: type) -> Val:
    v.onnx_dtype = np.dtype(dt)
    return v


def _out_qp(ctx: Context, node: onnx.NodeProto, si: int, zi: int) -> tuple[QParams, np.dtype]:
    scale = _scalar(ctx, node, si)
    z = ctx.get(node, zi)
    zdt = np.dtype(np.uint8) if z is None else np.asarray(z.data).dtype
    zp = int(_scalar(ctx, node, zi)) - (128 if zdt == np.uint8 else 0)
    return QParams(scale, zp), zdt


@lowering("QLinearMatMul")
def lower_qlinear_matmul(ctx: Context, node: onnx.NodeProto) -> None:
    a, b = ctx.need(node, 0), ctx.need(node, 3)
    out, zdt = _out_qp(ctx, node, 6, 7)
    b_scale = np.asarray(ctx.const_of(node, 4, "b_scale"), dtype=np.float32)
    _integer_gemm(ctx, node, a, int(_scalar(ctx, node, 2)), _scalar(ctx, node, 1), b, _zp(ctx, node, 5), b_scale, out)
    ctx.vals[node.output[0]].onnx_dtype = zdt


@lowering("MatMulInteger")
def lower_matmul_integer(ctx: Context, node: onnx.NodeProto) -> None:
    a, b = ctx.need(node, 0), ctx.need(node, 1)
    a_zp = _zp(ctx, node, 2)
    if a_zp.size != 1:
        raise ctx.err("per-row a_zero_point is not supported")
    _integer_gemm(ctx, node, a, int(a_zp.reshape(-1)[0]), 1.0, b, _zp(ctx, node, 3), np.ones(1, np.float32), None)


def _integer_conv(ctx: Context, node: onnx.NodeProto, x: Val, x_scale: float, x_zp: int, w: np.ndarray,
                  w_zp: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None, out: QParams | None) -> None:
    ctx.reject_attrs(node, {"pads", "strides", "dilations", "group", "kernel_shape", "auto_pad"})
    if w.ndim != 4:
        raise ctx.err("only 2-D convolutions are supported")
    xq = _tag(ctx, x, x_scale, x_zp, node.input[0])
    wq = _int_weights(ctx, w, w_zp, 0)
    m = wq.shape[0]
    name = node.output[0]
    b = np.zeros(m, dtype=np.int32) if bias is None else np.asarray(bias, dtype=np.int32)
    attrs = {"pads": conv_pads(ctx, node, xq.data.shape[2:], w.shape[2:]),
             "strides": list(ctx.attr(node, "strides", [1, 1])), "dilations": list(ctx.attr(node, "dilations", [1, 1])),
             "group": int(ctx.attr(node, "group", 1))}
    ins = [xq.tid, ctx.b.const(name + "_w", wq), ctx.b.const(name + "_b", b)]
    if out is None:
        ctx.set(node, _as(ctx.b.add_node("conv", ins, name, DType.INT32, None, None, dict(attrs, qmin=0, qmax=0),  # type: ignore[arg-type]
                                         ctx.env, node.name), np.int32))
        return
    real = np.float64(np.float32(x_scale)) * np.broadcast_to(w_scale.astype(np.float64).reshape(-1), (m,))
    mult, shift = requant_params(real / np.float64(np.float32(out.scale)))
    ins += [ctx.b.const(name + "_mult", mult), ctx.b.const(name + "_shift", shift)]
    ctx.set(node, ctx.b.add_node("conv", ins, name, DType.INT8, None, out, dict(attrs, qmin=-128, qmax=127),  # type: ignore[arg-type]
                                 ctx.env, node.name))


@lowering("QLinearConv")
def lower_qlinear_conv(ctx: Context, node: onnx.NodeProto) -> None:
    out, zdt = _out_qp(ctx, node, 6, 7)
    bias = ctx.get(node, 8)
    _integer_conv(ctx, node, ctx.need(node, 0), _scalar(ctx, node, 1), int(_scalar(ctx, node, 2)),
                  np.asarray(ctx.const_of(node, 3, "w")), _zp(ctx, node, 5),
                  np.asarray(ctx.const_of(node, 4, "w_scale"), dtype=np.float32),
                  None if bias is None else np.asarray(bias.data), out)
    ctx.vals[node.output[0]].onnx_dtype = zdt


@lowering("ConvInteger")
def lower_conv_integer(ctx: Context, node: onnx.NodeProto) -> None:
    x_zp = _zp(ctx, node, 2)
    _integer_conv(ctx, node, ctx.need(node, 0), 1.0, int(x_zp.reshape(-1)[0]), np.asarray(ctx.const_of(node, 1, "w")),
                  _zp(ctx, node, 3), np.ones(1, np.float32), None, None)


_ = QInfo  # re-exported for type users
