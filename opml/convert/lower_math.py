"""Log, Mod and IsNaN as compositions of existing primitives (no new engine op).

- ``Log(x)``: a lookup table on the int8 activation (``lut``, built from :func:`opml.f32prog.log`). The int8
  grid holds 0 and (usually) negative values, where the logarithm is -inf or NaN: every grid value below one
  step (the input scale) reads ``log(scale)``, so the table stays finite and a value that quantized to 0 reads
  the logarithm of the smallest positive value the grid can tell apart from it.
- ``Mod(x, d)`` by a constant ``d`` (ONNX ``fmod`` 0 or 1): on an 8- or 16-bit integer activation, the table
  of ``v mod d`` over every value ``v`` of the type, exact: a ``lut`` (256 entries) for int8/uint8, a ``cast``
  to int32 and a ``gather`` from 65,536 entries (negative values index from the end) for int16; on a float
  activation, a lookup table of the float32 program ``mod`` (:mod:`opml.lut`). A divisor that varies over
  the tensor takes one branch per distinct value (at most ``MAX_DIVISORS``), combined by ``where`` with
  constant masks. 32/64-bit integer activations are refused: the engine has no integer division and their
  range has no table.
- ``IsNaN(x)``: false everywhere. No value the engine computes is NaN (integers), and a float input with a NaN
  is refused by its ``quantize`` at run time (DESIGN section 3). On an int8/int16 activation the result folds to
  a constant; on a float input it is computed from the input's ``quantize`` (a table of zeros, cast to bool)
  so that the refusal stays in the bundle even when IsNaN is the input's only reader.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..bundle import DType
from .builder import QParams, Val
from .context import Context
from .lower import LOWERINGS, lowering
from .lower_select import _const_name, _via

MAX_DIVISORS = 16
TABLE_DTYPES: dict[DType, type[np.integer]] = {DType.INT8: np.int8, DType.UINT8: np.uint8, DType.INT16: np.int16}


@lowering("Log")
def lower_log(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.quantized(ctx.need(node, 0), node.output[0] + "_in")
    ctx.unary_from(node, x, "log", {"floor": float(np.float32(ctx.b.spec(x).scale))})


def _int_table(dt: type[np.integer], d: int, floor_mod: bool) -> np.ndarray:
    """``v mod d`` for every value ``v`` of ``dt``, ordered for ``gather`` (negative ``v`` at ``n + v``)."""
    info = np.iinfo(dt)
    n = int(info.max) - int(info.min) + 1
    v = np.arange(n, dtype=np.int64)
    if info.min < 0:
        v = np.where(v > info.max, v - n, v)
    r = np.mod(v, d) if floor_mod else np.fmod(v, d)
    return r.astype(dt)


def _branch(ctx: Context, node: onnx.NodeProto, x: Val, d: float, floor_mod: bool, out: str) -> None:
    """``x mod d`` for one scalar ``d`` into the value ``out``."""
    s = ctx.b.spec(x)
    if np.dtype(x.onnx_dtype).kind in "iu":
        if s.dtype not in TABLE_DTYPES or d != int(d):
            raise ctx.err(f"Mod of a {s.dtype.name.lower()} activation: the engine has no integer division; only "
                          "8- and 16-bit integer tensors (a table) and float tensors are supported")
        table = _int_table(TABLE_DTYPES[s.dtype], int(d), floor_mod)
        if s.dtype == DType.INT16:  # gather from 65,536 entries (indices are int32 in a bundle)
            wide = out + "_index"
            LOWERINGS["Cast"](ctx, helper.make_node("Cast", [node.input[0]], [wide], to=onnx.TensorProto.INT32))
            _via(ctx, "Gather", [_const_name(ctx, out + "_table", table), wide], out, axis=0)
            return
        if s.dtype == DType.INT8:  # (a lut reads entry q + 128)
            table = np.roll(table, 128)
        tid = ctx.b.const(out + "_table", table)
        v = ctx.b.add_node("lut", [x.ref, tid], out, s.dtype, None, None, {}, ctx.env, node.name)
        v.onnx_dtype = np.dtype(x.onnx_dtype)
        ctx.vals[out] = v
        return
    syn = helper.make_node("Mod", [node.input[0]], [out], name=node.name)
    ctx.unary_from(syn, x, "mod", {"divisor": d, "fmod": 0.0 if floor_mod else 1.0})


@lowering("Mod")
def lower_mod(ctx: Context, node: onnx.NodeProto) -> None:
    x, dv = ctx.need(node, 0), ctx.need(node, 1)
    if not dv.is_const or x.is_const:
        raise ctx.err("Mod is supported by a constant divisor only")
    d = np.asarray(dv.data)
    floor_mod = not int(ctx.attr(node, "fmod", 0))
    if not np.all(d != 0):
        raise ctx.err("Mod by zero")
    if np.broadcast_shapes(x.data.shape, d.shape) != x.data.shape:
        raise ctx.err(f"a divisor of shape {d.shape} that widens the dividend {x.data.shape} is not supported")
    values = np.unique(d)
    if len(values) > MAX_DIVISORS:
        raise ctx.err(f"Mod by {len(values)} different divisors (at most {MAX_DIVISORS}: one table each)")
    if len(values) == 1:
        _branch(ctx, node, x, float(values[0]), floor_mod, node.output[0])
        return
    acc = ""
    for k, v in enumerate(values):
        part = f"{node.output[0]}_mod{k}"
        _branch(ctx, node, x, float(v), floor_mod, part)
        if k == 0:
            acc = part
            continue
        mask = _const_name(ctx, f"{part}_mask", np.asarray(d == v))
        out = node.output[0] if k == len(values) - 1 else f"{part}_sel"
        _via(ctx, "Where", [mask, part, acc], out, label=node.name)
        acc = out


@lowering("IsNaN")
def lower_isnan(ctx: Context, node: onnx.NodeProto) -> None:
    v = ctx.need(node, 0)
    if np.dtype(v.onnx_dtype).kind != "f":
        raise ctx.err(f"IsNaN of a {np.dtype(v.onnx_dtype)} tensor (ONNX allows only floats)")
    shape = v.data.shape
    if ctx.b.spec(v).dtype != DType.FLOAT32:  # an activation the engine computed: integers, never NaN
        batched = bool(ctx.b.batch) and len(shape) > 0
        ctx.set(node, Val(np.zeros(shape, bool), onnx_dtype=np.dtype(bool), batch_dependent=batched))
        return
    x = ctx.quantized(v, node.input[0])  # (its quantize refuses a NaN at run time)
    zeros = ctx.lut(x, np.zeros(256, np.int8), QParams(1.0, 0), node.output[0] + "_zero")
    zeros.onnx_dtype = np.dtype(np.int8)
    name = node.output[0] + "_zero"
    ctx.vals[name] = zeros
    LOWERINGS["Cast"](ctx, helper.make_node("Cast", [name], [node.output[0]], name=node.name, to=onnx.TensorProto.BOOL))
