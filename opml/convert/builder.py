"""The graph under construction during conversion, and the values that flow through lowering.

Conversion lowers ONNX nodes one by one into primitive ops and immediately runs each new op on the
calibration batch with the engine's own kernels, so every later choice of quantization parameters is
made from deterministic integer data (DESIGN §4: calibration uses the engine's own path).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..bundle import Bundle, DType, Node, TensorSpec
from ..engine import _PREPARERS
from ..errors import ConversionError
from ..intmath import quantize_multiplier
from ..ops import BY_NAME
from .lockstep import merged_range


@dataclass
class QInfo:
    """Integer values with their (possibly per-axis) scale and zero point, e.g. from DequantizeLinear."""

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None


@dataclass
class Val:
    """An ONNX value during lowering: a folded constant, or an activation tensor of the new graph.

    ``data`` is the constant's value, or the activation's calibration data in its graph dtype (physical
    layout when ``pending``).
    ``onnx_dtype`` is what the ONNX model sees (float32 for a quantized int8 activation that stands
    for real numbers). ``batch_dependent`` marks constants folded from the shape of an activation.
    """

    data: np.ndarray
    tid: int | None = None
    onnx_dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    qinfo: QInfo | None = None
    batch_dependent: bool = False
    # a transposed view whose ONNX layout moves the batch: ``data`` / ``tid`` hold the physical tensor (batch
    # first) and ONNX axis i is physical axis pending[i] (``lower_shape``: only layout-aware lowerings read it)
    pending: tuple[int, ...] | None = None

    @property
    def is_const(self) -> bool:
        return self.tid is None

    @property
    def ref(self) -> int:
        """The tensor id of a graph value; a folded constant has none (a converter bug to use it)."""
        if self.tid is None:
            raise ConversionError("internal: a folded constant was used where a graph tensor is needed")
        return self.tid


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int


def choose_qparams(lo: float, hi: float) -> QParams:
    """Asymmetric int8 parameters covering [lo, hi] (always including 0), computed in float64; in a conversion
    on several calibration batches in lockstep, [lo, hi] of all batches (``lockstep.merged_range``)."""
    lo, hi = merged_range(lo, hi)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ConversionError("calibration produced a non-finite activation range: a step before it (Reciprocal, Div, "
                              "Exp, Pow) overflows float32 on its input's int8 grid, e.g. 1/sqrt of a variance whose "
                              "grid reaches 0 (an activation's int8 grid always holds 0, an epsilon added before does "
                              "not help); export that block as LayerNormalization or Softmax")
    if hi - lo < 1e-8:
        hi = lo + 1e-8 * 255
    scale = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(np.rint(-128.0 - lo / scale), -128, 127))
    return QParams(scale, zp)


def requant_params(real: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Per-element fixed-point (mult, shift) arrays (int32) for real multipliers."""
    flat = np.atleast_1d(np.asarray(real, dtype=np.float64)).reshape(-1)
    pairs = [quantize_multiplier(float(r)) if r > 0 else (0, 1) for r in flat]
    return np.array([p[0] for p in pairs], dtype=np.int32), np.array([p[1] for p in pairs], dtype=np.int32)


class GraphBuilder:
    """Accumulates tensors and nodes; runs each node on the calibration batch as it is added."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.tensors: list[TensorSpec] = []
        self.nodes: list[Node] = []
        self._const_cache: dict[tuple, int] = {}
        self._names: set[str] = set()

    def _unique(self, name: str) -> str:
        base, i = name or "t", 0
        while name in self._names or not name:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def rename(self, tid: int, name: str) -> None:
        t = self.tensors[tid]
        self._names.discard(t.name)
        self.tensors[tid] = TensorSpec(self._unique(name), t.dtype, t.shape, t.scale, t.zero_point, t.data)

    def free_name(self, name: str) -> None:
        self._names.discard(name)

    def batch_shape(self, shape: tuple[int, ...], what: str) -> tuple[int, ...]:
        """Replace a leading dimension that scales with the calibration batch by ``-k``."""
        if self.batch == 0:  # static model: shapes are fixed
            return tuple(int(d) for d in shape)
        if not shape:
            raise ConversionError(f"{what}: scalar activations are not supported")
        if shape[0] % self.batch:
            raise ConversionError(
                f"{what}: leading dimension {shape[0]} does not scale with the batch ({self.batch}); "
                "models must keep the batch dimension first"
            )
        return (-(shape[0] // self.batch),) + tuple(int(d) for d in shape[1:])

    def const(self, name: str, arr: np.ndarray) -> int:
        arr = np.require(arr, requirements="C")
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key in self._const_cache:
            return self._const_cache[key]
        tid = len(self.tensors)
        spec = TensorSpec(self._unique(name), DType.from_np(arr.dtype), tuple(arr.shape), data=arr.tobytes())
        self.tensors.append(spec)
        self._const_cache[key] = tid
        return tid

    def activation(self, name: str, dtype: DType, shape: tuple[int, ...], qp: QParams | None = None) -> int:
        tid = len(self.tensors)
        spec = TensorSpec(self._unique(name), dtype, self.batch_shape(shape, name),
                          float(np.float32(qp.scale)) if qp else 0.0, qp.zero_point if qp else 0)
        self.tensors.append(spec)
        return tid

    def add_node(self, op: str, inputs: list[int], out_name: str, out_dtype: DType, out_shape: tuple[int, ...] | None,
                 qp: QParams | None, attrs: Mapping[str, object], env: dict[int, np.ndarray], name: str = "") -> Val:
        """Append a node, run it on the calibration data in ``env`` and return its output value."""
        schema = BY_NAME[op]
        attr_t = tuple(
            tuple(int(v) for v in (attrs[a] if isinstance(attrs[a], list | tuple) else [attrs[a]]))  # type: ignore[attr-defined]
            for a in schema.attrs
        )
        # provisional output spec: the shape is only known after running the kernel
        tid = len(self.tensors)
        pending = self.batch_shape(out_shape, out_name) if out_shape is not None else (-1,)
        self.tensors.append(TensorSpec("_pending", out_dtype, pending, float(np.float32(qp.scale)) if qp else 0.0,
                                       qp.zero_point if qp else 0))
        node = Node(op, tuple(inputs), (tid,), attr_t, name)
        args = [env[i] if i in env else self.tensors[i].array() for i in inputs]
        try:
            result = _PREPARERS[op](node, self.tensors)(args)
        except ConversionError:
            raise
        except Exception as e:  # a kernel rejecting the lowered node is a conversion bug or bad model
            raise ConversionError(f"{name or op}: lowering to {op} failed: {e}") from None
        shape = tuple(result.shape) if out_shape is None else out_shape
        spec = self.tensors[tid]
        self.tensors[tid] = TensorSpec(self._unique(out_name), spec.dtype, self.batch_shape(shape, out_name),
                                       spec.scale, spec.zero_point)
        self.nodes.append(node)
        env[tid] = result
        return Val(result, tid)

    def spec(self, v: Val) -> TensorSpec:
        assert v.tid is not None
        return self.tensors[v.tid]

    def bundle(self, inputs: list[int], outputs: list[int], metadata: dict[str, str]) -> Bundle:
        return _prune(Bundle(tuple(self.tensors), tuple(self.nodes), tuple(inputs), tuple(outputs), metadata))


def _prune(b: Bundle) -> Bundle:
    """Drop nodes and tensors that do not contribute to an output; renumber densely."""
    needed = set(b.outputs)
    keep_nodes = []
    for node in reversed(b.nodes):
        if node.outputs[0] in needed:
            keep_nodes.append(node)
            needed.update(node.inputs)
    keep_nodes.reverse()
    needed.update(b.inputs)
    order = [i for i in range(len(b.tensors)) if i in needed]
    remap = {old: new for new, old in enumerate(order)}
    nodes = tuple(Node(n.op, tuple(remap[i] for i in n.inputs), tuple(remap[o] for o in n.outputs), n.attrs, n.name)
                  for n in keep_nodes)
    return Bundle(tuple(b.tensors[i] for i in order), nodes, tuple(remap[i] for i in b.inputs),
                  tuple(remap[o] for o in b.outputs), b.metadata)
