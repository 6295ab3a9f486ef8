"""Lowering context: the value table, attribute access, folding and quantization helpers."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..bundle import DType
from ..errors import ConversionError
from ..lut import unary_float, unary_lut
from .builder import GraphBuilder, QInfo, QParams, Val, choose_qparams
from .calibrate import AccuracyOptions, choose_range

INT8 = np.dtype(np.int8)
# what makes a model whose graph moves or mixes the batch axis convertible (bundles keep the batch first)
BATCH_HINT = ("; the batch must stay the first axis: convert with a fixed batch (give the model inputs a numeric "
              "first dimension) or export the model batch first")


class Context:
    """State shared by the lowering functions of one conversion."""

    def __init__(self, builder: GraphBuilder, graph: onnx.GraphProto) -> None:
        self.b = builder
        self.graph = graph
        self.vals: dict[str, Val] = {}
        self.env: dict[int, np.ndarray] = {}
        self.current: onnx.NodeProto | None = None
        self.weight_qmax = 127  # float weights are quantized per channel to [-weight_qmax, weight_qmax]
        self.opset = 17  # the model's ai.onnx opset (set by ``convert``)
        self._int8_of: dict[int, Val] = {}  # tensor id of a float32 activation -> its quantized int8 form
        # outputs of nodes that a lowering already handled together with an earlier node
        self.lowered_ahead: set[str] = set()
        # QuantizeLinear nodes fix the output parameters of the op that feeds them (QDQ models)
        self.preferred: dict[str, QParams] = {}
        # range method, bias correction, int16 tensors (``calibrate.py``); the default is plain int8 minmax
        self.accuracy = AccuracyOptions()
        self.int16_done: set[str] = set()  # names of ``accuracy.int16`` produced as int16 so far
        self.int8_readers: list[str] = []  # nodes that read an int16 tensor through an int8 copy
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        self.consumers = consumers
        inits = {i.name: i for i in graph.initializer}
        for n in graph.node:
            if n.op_type == "QuantizeLinear" and len(n.input) >= 2 and n.input[1] in inits:
                s = onnx.numpy_helper.to_array(inits[n.input[1]])
                z = onnx.numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] in inits else None
                if s.size == 1 and (z is None or z.size == 1):
                    zp = int(z.reshape(-1)[0]) if z is not None else 0
                    if z is not None and z.dtype == np.uint8:
                        zp -= 128
                    self.preferred.setdefault(n.input[0], QParams(float(s.reshape(-1)[0]), zp))

    # ------------------------------------------------------------------ values and attributes
    def where(self) -> str:
        """How errors name the node being lowered: its name and op, or its op and first output."""
        n = self.current
        if n is None:
            return "graph"
        if n.name:
            return f"node {n.name!r} ({n.op_type})"
        return f"{n.op_type} node" + (f" producing {n.output[0]!r}" if n.output and n.output[0] else "")

    def err(self, msg: str) -> ConversionError:
        return ConversionError(f"{self.where()}: {msg}")

    def get(self, node: onnx.NodeProto, i: int) -> Val | None:
        v = self.raw(node, i)
        if v is not None and v.pending is not None:
            raise self.err(f"input {node.input[i]!r} is a transpose that moves the batch dimension, which this op "
                           "cannot read" + BATCH_HINT)
        return v

    def raw(self, node: onnx.NodeProto, i: int) -> Val | None:
        """Input ``i`` as stored: possibly a pending transposed view (only layout-aware lowerings use this)."""
        if i >= len(node.input) or not node.input[i]:
            return None
        v = self.vals.get(node.input[i])
        if v is None:
            raise self.err(f"input {node.input[i]!r} is not defined before use")
        return v

    def need(self, node: onnx.NodeProto, i: int) -> Val:
        v = self.get(node, i)
        if v is None:
            raise self.err(f"missing required input {i}")
        return v

    def const_of(self, node: onnx.NodeProto, i: int, what: str) -> np.ndarray:
        v = self.need(node, i)
        if not v.is_const:
            raise self.err(f"{what} must be a constant")
        return v.data

    def set(self, node: onnx.NodeProto, v: Val, i: int = 0) -> None:
        self.vals[node.output[i]] = v

    @staticmethod
    def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def reject_attrs(self, node: onnx.NodeProto, allowed: Collection[str]) -> None:
        for a in node.attribute:
            if a.name not in allowed:
                raise self.err(f"attribute {a.name!r} is not supported")

    # ------------------------------------------------------------------ folding
    def fold(self, node: onnx.NodeProto) -> None:
        """Evaluate a node whose inputs are all constants with the ONNX reference evaluator."""
        from onnx.reference import ReferenceEvaluator

        ins = [self.vals[i] for i in node.input if i]
        names = [i for i in node.input if i]
        g = helper.make_graph(
            [node], "fold",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.data.dtype), v.data.shape)
             for n, v in zip(names, ins, strict=True)],
            [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o],
        )
        if node.op_type == "GatherElements" and len(ins) == 2:  # (the reference evaluator broadcasts the index)
            self.vals[node.output[0]] = Val(gather_elements(np.asarray(ins[0].data), np.asarray(ins[1].data),
                                                            int(self.attr(node, "axis", 0))),
                                            batch_dependent=any(v.batch_dependent for v in ins))
            self.vals[node.output[0]].onnx_dtype = self.vals[node.output[0]].data.dtype
            return
        try:
            feeds = {n: v.data for n, v in zip(names, ins, strict=True)}
            # the model's own opset: attribute forms of old opsets (Unsqueeze axes, ...) evaluate as written
            model = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
            outs = ReferenceEvaluator(model).run(None, feeds)
        except Exception as e:
            raise self.err(f"constant folding failed: {e}") from None
        dep = any(v.batch_dependent for v in ins)
        for name, o in zip([o for o in node.output if o], outs, strict=True):
            arr = np.asarray(o)
            self.vals[name] = Val(arr, onnx_dtype=arr.dtype, batch_dependent=dep)

    # ------------------------------------------------------------------ quantization
    def out_qparams(self, node: onnx.NodeProto, real: np.ndarray, relu: bool = False) -> QParams:
        """Output parameters: those of a following QuantizeLinear, else from the calibrated range."""
        pref = self.preferred.get(node.output[0])
        if pref is not None:
            return pref
        if real.size == 0:
            return choose_qparams(0.0, 1.0)
        if self.accuracy.method != "minmax":
            return choose_qparams(*choose_range(self.accuracy.method, real, relu))
        lo, hi = float(real.min()), float(real.max())
        return choose_qparams(0.0 if relu else lo, hi)

    def dequant(self, v: Val) -> np.ndarray:
        """The real values an int8 activation stands for (float64, for range estimation only)."""
        s = self.b.spec(v)
        return (v.data.astype(np.float64) - s.zero_point) * np.float64(np.float32(s.scale))

    def quantized(self, v: Val, name: str = "q") -> Val:
        """An int8 activation for ``v``: quantize a float32 activation, flip a uint8 one."""
        if v.is_const:
            raise self.err("expected an activation")
        s = self.b.spec(v)
        if s.dtype == DType.INT8:
            return v
        if s.dtype == DType.UINT8:  # (a fresh flip each time: DequantizeLinear gives its own the parameters)
            from .builder import QParams as QP

            return self.b.add_node("flip_sign_bit", [v.ref], name + "_i8", DType.INT8, None,
                                   QP(s.scale, s.zero_point - 128), {}, self.env)
        if s.dtype == DType.FLOAT32:
            assert v.tid is not None
            if v.tid in self._int8_of:  # one quantize per float tensor, however many nodes read it
                return self._int8_of[v.tid]
            lo, hi = float(v.data.min(initial=0)), float(v.data.max(initial=0))
            if self.accuracy.method != "minmax" and v.data.size:
                lo, hi = choose_range(self.accuracy.method, v.data)
            qp = self.preferred.get(self._name_of(v)) or choose_qparams(lo, hi)
            out = self.b.add_node("quantize", [v.ref], name + "_q", DType.INT8, None, qp, {}, self.env)
            out.onnx_dtype = np.dtype(np.float32)
            self._int8_of[v.tid] = out
            return out
        if s.dtype == DType.INT16:  # a 13-bit activation (``calibrate.py``) read by an int8-only op
            return self._int8_copy(v, name)
        raise self.err(f"cannot quantize a {s.dtype.name} tensor")

    def _int8_copy(self, v: Val, name: str) -> Val:
        """An int16 activation re-expressed in int8 (an ``add`` of a zero constant), once per tensor."""
        assert v.tid is not None
        if self.current is not None:
            self.int8_readers.append(f"{self.current.op_type} {self.current.name or self.current.output[0]}")
        if v.tid in self._int8_of:
            return self._int8_of[v.tid]
        s = self.b.spec(v)
        real = self.dequant(v)
        qp = choose_qparams(*choose_range(self.accuracy.method, real)) if real.size else choose_qparams(0.0, 1.0)
        so = np.float64(np.float32(qp.scale))
        ratio = np.float64(np.float32(s.scale)) / so
        shift = int(np.clip(30 - int(np.ceil(np.log2(ratio))) if ratio > 0 else 30, 1, 62))
        zero = self.b.const(name + "_zero", np.zeros(1, dtype=np.int8))
        attrs = {"a_mult": int(np.rint(ratio * 2.0**shift)), "b_mult": 0, "shift": shift, "qmin": -128, "qmax": 127}
        out = self.b.add_node("add", [v.ref, zero], name + "_i8", DType.INT8, None, qp, attrs, self.env)
        self._int8_of[v.tid] = out
        return out

    def _name_of(self, v: Val) -> str:
        for k, val in self.vals.items():
            if val is v:
                return k
        return ""

    def requantize_to(self, v: Val, qp: QParams, name: str) -> Val:
        """Re-express an int8 activation with other quantization parameters (a LUT)."""
        s = self.b.spec(v)
        if abs(s.scale - np.float32(qp.scale)) == 0 and s.zero_point == qp.zero_point:
            return v
        table = unary_lut("identity", {}, s.scale, s.zero_point, qp.scale, qp.zero_point)
        return self.lut(v, table, qp, name)

    def lut(self, v: Val, table: np.ndarray, qp: QParams, name: str) -> Val:
        t = self.b.const(name + "_table", table)
        return self.b.add_node("lut", [v.ref, t], name, DType.INT8, None, qp, {}, self.env, name)

    def unary_from(self, node: onnx.NodeProto, v: Val, fn: str, params: dict[str, float]) -> None:
        """Lower a unary real function of an activation to a lookup table."""
        x = self.quantized(v, node.output[0] + "_in")
        s = self.b.spec(x)
        real = unary_float(fn, self.dequant(x).astype(np.float32), params).astype(np.float64)
        qp = self.out_qparams(node, real)
        table = unary_lut(fn, params, s.scale, s.zero_point, qp.scale, qp.zero_point)
        self.set(node, self.lut(x, table, qp, node.output[0]))

    def batch_free(self, v: Val, like: Val) -> Val:
        """A constant computed from the batch size, as its first row when it is used beside the activation
        ``like``: same rank, leading axis the calibration batch (so it lines up with ``like``'s batch axis).
        Its rows must be equal (e.g. a token or a default mask ``Expand``-ed to the batch); the one row then
        broadcasts over any batch. Anything else is returned as it is."""
        if not (v.is_const and v.batch_dependent and self.b.batch and not like.is_const):
            return v
        d = np.asarray(v.data)
        if d.ndim != like.data.ndim or d.ndim == 0 or d.shape[0] != self.b.batch or like.data.shape[0] != self.b.batch:
            return v
        if not (d == d[:1]).all():
            raise self.err("a constant computed from the batch size differs between batch rows; it cannot "
                           "follow the batch at run time (export it as an input, or convert with a fixed batch)")
        return Val(np.ascontiguousarray(d[:1]), onnx_dtype=v.onnx_dtype, qinfo=v.qinfo)

    def quantize_const(self, arr: np.ndarray, name: str, qp: QParams | None = None) -> tuple[int, QParams]:
        """A float constant as a per-tensor int8 constant tensor (for elementwise ops)."""
        a = np.asarray(arr, dtype=np.float64)
        qp = qp or choose_qparams(float(a.min(initial=0)), float(a.max(initial=0)))
        q = np.clip(np.rint(a / np.float64(np.float32(qp.scale))) + qp.zero_point, -128, 127).astype(np.int8)
        tid = self.b.const(name, q)
        t = self.b.tensors[tid]
        from ..bundle import TensorSpec

        self.b.tensors[tid] = TensorSpec(t.name, t.dtype, t.shape, float(np.float32(qp.scale)), qp.zero_point, t.data)
        return tid, qp

    def graph_output(self, name: str, vi: onnx.ValueInfoProto) -> int:
        v = self.vals.get(name)
        if v is None:
            raise ConversionError(f"graph output {name!r} is never computed")
        if v.is_const:
            raise ConversionError(f"graph output {name!r} is a constant; nothing to compute")
        if v.pending is not None:
            raise ConversionError(f"graph output {name!r} is a transpose that moves the batch dimension" + BATCH_HINT)
        s = self.b.spec(v)
        want = np.dtype(v.onnx_dtype)
        if s.dtype.np == want:
            return v.tid  # type: ignore[return-value]
        self.b.rename(v.tid, name + "_" + s.dtype.name.lower())  # type: ignore[arg-type]
        self.b.free_name(name)
        if want == np.float32 and s.dtype in (DType.INT8, DType.UINT8, DType.INT16):
            return self.b.add_node("dequantize", [v.ref], name, DType.FLOAT32, None, None, {}, self.env).ref  # type: ignore[return-value]
        if want == np.uint8 and s.dtype == DType.INT8:
            return self.b.add_node("flip_sign_bit", [v.ref], name, DType.UINT8, None, None, {}, self.env).ref  # type: ignore[return-value]
        if want == np.int8 and s.dtype == DType.UINT8:
            return self.b.add_node("flip_sign_bit", [v.ref], name, DType.INT8, None, None, {}, self.env).ref  # type: ignore[return-value]
        return self.b.add_node("cast", [v.ref], name, DType.from_np(want), None, None, {}, self.env).ref  # type: ignore[return-value]


def qinfo_of(v: Val) -> QInfo | None:
    return v.qinfo


def gather_elements(data: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """ONNX GatherElements: ``out[..., i, ...] = data[..., index[..., i, ...], ...]`` along ``axis``; the output
    has the index's shape, which may be smaller than the data's on the other axes (onnxruntime's reading)."""
    axis = axis + data.ndim if axis < 0 else axis
    if index.ndim != data.ndim or any(index.shape[a] > data.shape[a] for a in range(data.ndim) if a != axis):
        raise ConversionError(f"GatherElements: index shape {index.shape} does not fit data shape {data.shape}")
    n = data.shape[axis]
    if index.size and (index.min() < -n or index.max() >= n):
        raise ConversionError(f"GatherElements: index out of range [-{n}, {n - 1}]")
    view = data[tuple(slice(0, index.shape[a]) if a != axis else slice(None) for a in range(data.ndim))]
    return np.take_along_axis(view, np.where(index < 0, index + n, index).astype(np.int64), axis=axis)
