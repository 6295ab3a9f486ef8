"""ONNX -> bundle conversion: lowering, int8 quantization with calibration, constant folding.

``convert(model, calibration)`` walks the ONNX graph in order. Constant subgraphs (shape
computations, weight preprocessing) are folded; every other node is lowered to primitive ops
(``opml.ops``) and run at once on the calibration batch with the engine's kernels, which gives the
integer data the next node's quantization parameters are chosen from. Models already quantized
with QuantizeLinear/DequantizeLinear keep their own scales. Unsupported ops or attributes raise
:class:`ConversionError` naming the node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..bundle import Bundle, DType
from ..errors import BundleError, ConversionError
from . import (  # noqa: F401  (register lowerings)
    lower_batch_gather,
    lower_deconv,
    lower_logic,
    lower_masked,
    lower_math,
    lower_ml,
    lower_pad,
    lower_qlinear,
    lower_resize,
    lower_select,
    lower_shape,
    lower_stft,
    lower_window,
    ml,
    recurrent,
)
from .builder import GraphBuilder, Val
from .calibrate import AccuracyOptions, ConversionTrace, Int16NotProduced
from .context import Context
from .coverage import one_line, unsupported_op_message
from .lockstep import DIVERGED, Batches, CalibrationDiverged, run_lockstep
from .lower import LOWERINGS
from .rewrite import rewrite_graph

__all__ = ["Batches", "convert", "load_onnx"]


def load_onnx(model: str | Path | bytes | onnx.ModelProto) -> onnx.ModelProto:
    """Load and check an ONNX model from a path, bytes or a ModelProto."""
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, bytes):
            m = onnx.load_from_string(model)
        else:
            m = onnx.load(str(model))
    except FileNotFoundError:
        raise ConversionError(f"ONNX file not found: {model!s}") from None
    except Exception as e:
        raise ConversionError(f"not a readable ONNX model: {e}") from None
    return m


def _graph_inputs(m: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in m.graph.initializer}
    return [i for i in m.graph.input if i.name not in inits]


def _is_dynamic(vi: onnx.ValueInfoProto) -> bool:
    """The leading dimension is the batch: named, unknown, or written as -1 (older exporters)."""
    dims = vi.type.tensor_type.shape.dim
    return bool(dims) and (dims[0].HasField("dim_param") or not dims[0].HasField("dim_value")
                           or dims[0].dim_value < 0)


def _raw_calibration(m: onnx.ModelProto, calibration: object) -> list[np.ndarray]:
    """The calibration arrays by model input (one batch, or batches on a leading axis), not yet checked."""
    ins = _graph_inputs(m)
    if calibration is None:
        raise ConversionError("calibration data is required: pass an array (or a dict by input name) of inputs")
    if isinstance(calibration, str | Path):
        try:
            loaded = np.load(str(calibration), allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConversionError(f"cannot read calibration file {calibration}: {e}") from None
        calibration = dict(loaded) if isinstance(loaded, np.lib.npyio.NpzFile) else loaded
    if isinstance(calibration, Mapping):
        missing = [i.name for i in ins if i.name not in calibration]
        if missing:
            raise ConversionError(f"calibration data lacks inputs {missing}")
        arrays = [np.asarray(calibration[i.name]) for i in ins]
    elif isinstance(calibration, list | tuple):
        arrays = [np.asarray(a) for a in calibration]
    else:
        arrays = [np.asarray(calibration)]
    if len(arrays) != len(ins):
        raise ConversionError(f"model has {len(ins)} inputs, calibration gives {len(arrays)}")
    return arrays


def _calibration_arrays(m: onnx.ModelProto, calibration: object) -> list[np.ndarray]:
    """One calibration batch, checked against the model's inputs (dtype, rank, fixed dimensions)."""
    return _checked(m, _raw_calibration(m, calibration))


def _calibration_batches(m: onnx.ModelProto, calibration: object) -> list[list[np.ndarray]]:
    """The calibration batches, each checked: a :class:`Batches`, or arrays (in memory or in a .npy/.npz file)
    of which some have one axis more than their model input: that leading axis numbers the batches, and an
    input given at the model's own rank is the same in every batch (e.g. a constant sample rate)."""
    if isinstance(calibration, Batches):
        return [_calibration_arrays(m, b) for b in calibration.items]
    arrays = _raw_calibration(m, calibration)
    ins = _graph_inputs(m)
    ranks = [len(vi.type.tensor_type.shape.dim) if vi.type.tensor_type.HasField("shape") else None for vi in ins]
    stacked = [r is not None and a.ndim == r + 1 for a, r in zip(arrays, ranks, strict=True)]
    if not any(stacked):
        return [_checked(m, arrays)]
    counts = {a.shape[0] for a, s in zip(arrays, stacked, strict=True) if s}
    if len(counts) != 1 or 0 in counts:
        raise ConversionError(f"calibration arrays with a leading batches axis give different numbers of batches "
                              f"{sorted(counts)}; give each input the same number (or one batch at the input's rank)")
    k = counts.pop()
    return [_checked(m, [a[j] if s else a for a, s in zip(arrays, stacked, strict=True)]) for j in range(k)]


def _checked(m: onnx.ModelProto, arrays: list[np.ndarray]) -> list[np.ndarray]:
    ins = _graph_inputs(m)
    out = []
    for vi, a in zip(ins, arrays, strict=True):
        want = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        if a.dtype != want:
            if a.dtype.kind != np.dtype(want).kind and not (a.dtype.kind in "iu" and np.dtype(want).kind in "iu"):
                raise ConversionError(f"calibration for {vi.name!r} has dtype {a.dtype}, model wants {np.dtype(want)}")
            a = a.astype(want)
        try:
            DType.from_np(a.dtype)
        except BundleError:
            raise ConversionError(f"input {vi.name!r}: dtype {a.dtype} is not supported by bundles") from None
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape"):
            if a.ndim != len(dims):
                raise ConversionError(f"calibration for {vi.name!r} has rank {a.ndim}, the model input has {len(dims)}")
            for ax, d in enumerate(dims):
                if d.HasField("dim_value") and d.dim_value >= 0 and not (ax == 0 and _is_dynamic(vi)) and \
                        a.shape[ax] != d.dim_value:
                    raise ConversionError(
                        f"calibration for {vi.name!r} has shape {a.shape}; axis {ax} must be {d.dim_value}"
                    )
        if a.size == 0:
            raise ConversionError(f"input {vi.name!r}: zero-sized (empty) tensors are not supported")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ConversionError(f"calibration for {vi.name!r} contains NaN or infinity")
        out.append(a if a.ndim == 0 else np.ascontiguousarray(a))  # (0-d: as given, for onnxruntime)
    return out


def _lower_nodes(ctx: Context, nodes: Iterable[onnx.NodeProto]) -> None:
    """Fold or lower ``nodes`` in order (the graph's, or an inlined If branch's)."""
    for node in nodes:
        lower = LOWERINGS.get(node.op_type) if node.domain in ("", "ai.onnx", "aievm") else \
            lower_ml.ML_LOWERINGS.get(node.op_type) if node.domain == ml.ML_DOMAIN else None  # (tree ensembles)
        ctx.current = node
        if node.output and node.output[0] in ctx.lowered_ahead:
            continue
        if node.op_type == "If" and node.domain in ("", "ai.onnx"):
            _inline_if(ctx, node)
            continue
        expander = ml.expand if node.domain == ml.ML_DOMAIN and lower is None else recurrent.expand if (
            node.op_type in ("LSTM", "GRU") and node.domain in ("", "ai.onnx")) else None
        if expander is not None:  # scikit-learn operators, recurrent layers: standard nodes, lowered as usual
            try:
                nodes = expander(ctx, node)
            except ConversionError as e:
                raise ConversionError(one_line(ctx.where(), str(e))) from None
            except Exception as e:  # weights of shapes the expansion did not anticipate: one line naming the node
                raise ConversionError(one_line(ctx.where(), f"cannot expand this node ({type(e).__name__}: {e})")) \
                    from None
            _lower_nodes(ctx, nodes)
            continue
        all_const = all(ctx.vals.get(i) is not None and ctx.vals[i].is_const for i in node.input if i)
        if all_const and node.op_type not in ("Shape",) and node.domain in ("", "ai.onnx"):
            ctx.fold(node)
            continue
        if lower is None:
            raise ConversionError(unsupported_op_message(node, [i for i in node.input if i and i not in ctx.vals or
                                                                 i and not ctx.vals[i].is_const]))
        try:
            lower(ctx, node)
        except ConversionError as e:
            raise ConversionError(one_line(ctx.where(), str(e))) from None
        except Exception as e:  # a model the lowering did not anticipate: still one line naming the node
            raise ConversionError(one_line(ctx.where(), f"cannot lower this node ({type(e).__name__}: {e})")) from None


def _inline_if(ctx: Context, node: onnx.NodeProto) -> None:
    """An If whose condition folds to a constant (a test on static shapes) is its taken branch, inlined."""
    cond = ctx.need(node, 0)
    if not cond.is_const:
        raise ctx.err("the condition depends on the input data; an If converts only when its condition folds to a "
                      "constant (a test on static shapes); export without data-dependent control flow")
    # (a condition folded from Shape is evaluated on the calibration shapes, as every folded shape is)
    branch = ctx.attr(node, "then_branch" if bool(np.asarray(cond.data).reshape(-1)[0]) else "else_branch")
    for init in branch.initializer:
        arr = numpy_helper.to_array(init)
        ctx.vals[init.name] = Val(arr, onnx_dtype=arr.dtype)
    _lower_nodes(ctx, branch.node)
    ctx.current = node
    if len(branch.output) != len(node.output):
        raise ctx.err(f"the branch has {len(branch.output)} outputs, the If node {len(node.output)}")
    for out, bo in zip(node.output, branch.output, strict=True):
        if out:
            if bo.name not in ctx.vals:
                raise ctx.err(f"branch output {bo.name!r} is never computed")
            ctx.vals[out] = ctx.vals[bo.name]


def convert(
    model: str | Path | bytes | onnx.ModelProto,
    calibration: object = None,
    *,
    name: str | None = None,
    weight_bits: int = 8,
    accuracy: AccuracyOptions | None = None,
    trace: ConversionTrace | None = None,
) -> Bundle:
    """Convert an ONNX model into a bundle. ``calibration``: inputs (array, list or dict by name, or a
    .npy/.npz path) used to choose activation quantization parameters; its first dimension is the
    batch when the model's inputs have a dynamic leading dimension.

    Several calibration batches: a :class:`Batches` of such inputs, or arrays with one axis more than
    the model input (that leading axis numbers the batches; an input at its own rank is shared by all).
    A dynamic-batch model is calibrated on their concatenation; a fixed-batch model (e.g. a streaming
    model whose state fixes the batch) is converted on each batch in lockstep, every activation range
    chosen from all batches' values (``lockstep.run_lockstep``). One batch gives the bytes it always did.

    ``weight_bits`` (2-8): float weights are quantized per channel to ``+-(2^(bits-1) - 1)``. With 7 bits
    (``|w| <= 63``) the engine's native GEMM can use its exact uint8 x int8 kernel (``docs/engine.md``)
    at the price of one bit of weight precision; the bundle format is the same, 8-bit bundles keep
    their bytes, and weights a model brings already quantized (QDQ) keep their values.

    ``accuracy``: range method, bias correction and int16 tensors (``opml/convert/calibrate.py``; the
    default is plain int8 with minmax ranges, today's bytes); ``opml.convert.accuracy`` chooses them by
    measured error. ``trace``, when given, receives the converted graph's outputs on the calibration
    data (the engine's own values, computed during conversion) and the int8-only readers of int16 tensors."""
    if not 2 <= weight_bits <= 8:
        raise ConversionError(f"weight_bits must be in [2, 8], not {weight_bits}")
    m = load_onnx(model)
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception:  # shape inference is a convenience; conversion runs on real shapes anyway
        pass
    ins = _graph_inputs(m)
    batches = _calibration_batches(m, calibration)
    if len(batches) > 1 and any(_is_dynamic(vi) for vi in ins):  # one batch: the concatenation (same ranges)
        if any(a.ndim == 0 for b in batches for a in b):
            raise ConversionError("a model with a dynamic batch takes calibration inputs with a batch axis")
        batches = [[np.concatenate(col) for col in zip(*batches, strict=True)]]
    if len(batches) == 1:
        return _convert_batch(m, batches[0], name, weight_bits, accuracy, trace)
    for k, b in enumerate(batches[1:], 1):  # (one graph for all: the shapes must agree)
        for vi, a0, a in zip(ins, batches[0], b, strict=True):
            if a.shape != a0.shape:
                raise ConversionError(f"calibration batches of a fixed-batch model must have the same shapes: input "
                                      f"{vi.name!r} is {a0.shape} in batch 0 and {a.shape} in batch {k}")
    traces = [ConversionTrace() for _ in batches]
    bundles = run_lockstep(lambda i: _convert_batch(m, batches[i], name, weight_bits, accuracy, traces[i]),
                           len(batches))
    if any(b.encoded != bundles[0].encoded for b in bundles[1:]):
        raise CalibrationDiverged(DIVERGED.format("a choice made from the data other than a range"))
    if trace is not None:  # outputs of all batches, stacked on a new first axis (one row per batch)
        trace.outputs = [np.stack([t.outputs[j] for t in traces]) for j in range(len(traces[0].outputs))]
        trace.int8_readers = traces[0].int8_readers
    return bundles[0]


def _check_arity(node: onnx.NodeProto, opset: int | None) -> None:
    """ConversionError when a standard node lacks a required input or has more inputs than its ONNX schema
    allows (an uploaded graph is checked before the rewrites read inputs by position)."""
    if node.domain not in ("", "ai.onnx") or opset is None:
        return
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return  # (an unknown op: the lowering names it)
    where = f"node {node.name!r} ({node.op_type})"
    if len(node.input) > schema.max_input:
        raise ConversionError(f"{where} has {len(node.input)} inputs; its ONNX schema allows {schema.max_input}")
    for i, f in enumerate(schema.inputs):
        if f.option == onnx.defs.OpSchema.FormalParameterOption.Single and (i >= len(node.input) or not node.input[i]):
            raise ConversionError(f"{where} lacks its required input {i} ({f.name})")


def _convert_batch(m: onnx.ModelProto, arrays: list[np.ndarray], name: str | None, weight_bits: int,
                   accuracy: AccuracyOptions | None, trace: ConversionTrace | None) -> Bundle:
    """``convert`` on one calibration batch (``arrays``, checked)."""
    arrays = [np.require(a, requirements="C") for a in arrays]  # (keeps a 0-d input 0-d: shape () in the bundle)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    for node in m.graph.node:
        _check_arity(node, opset)
    try:  # (the rewrites read inputs by position: a malformed graph must not escape as IndexError)
        graph = rewrite_graph(m.graph)
    except ConversionError:
        raise
    except Exception as e:
        raise ConversionError(one_line("the graph rewrites", f"a malformed graph ({type(e).__name__}: {e})")) from None
    ins = _graph_inputs(m)
    dynamic = any(_is_dynamic(vi) for vi in ins)
    batch = 0
    if dynamic:
        batch = arrays[0].shape[0] if arrays[0].ndim else 0
        if batch < 2:
            raise ConversionError("models with a dynamic batch dimension need at least 2 calibration samples")
        for vi, a in zip(ins, arrays, strict=True):
            if a.ndim == 0 or a.shape[0] != batch:
                raise ConversionError(f"calibration input {vi.name!r} does not have batch size {batch}")
    builder = GraphBuilder(batch)
    ctx = Context(builder, graph)
    ctx.weight_qmax = (1 << (weight_bits - 1)) - 1
    ctx.accuracy = accuracy or AccuracyOptions()
    ctx.opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), ctx.opset)
    for init in graph.initializer:
        ctx.vals[init.name] = Val(numpy_helper.to_array(init), onnx_dtype=numpy_helper.to_array(init).dtype)
    input_ids = []
    for vi, a in zip(ins, arrays, strict=True):
        tid = builder.activation(vi.name, DType.from_np(a.dtype), a.shape)
        ctx.env[tid] = a
        ctx.vals[vi.name] = Val(a, tid, onnx_dtype=a.dtype)
        input_ids.append(tid)
    _lower_nodes(ctx, graph.node)
    output_ids = [ctx.graph_output(o.name, o) for o in graph.output]
    missing = sorted(ctx.accuracy.int16 - ctx.int16_done)
    if missing:
        raise Int16NotProduced(missing)
    meta = {"producer": "aievm", "source": name or (m.graph.name or "model")}
    if weight_bits != 8:  # (8-bit bundles keep their earlier bytes and addresses)
        meta["weight_bits"] = str(weight_bits)
    meta.update(ctx.accuracy.metadata())  # (none for the default options)
    if trace is not None:
        trace.outputs = [ctx.env[t] for t in output_ids]
        trace.int8_readers = list(ctx.int8_readers)
    return builder.bundle(input_ids, output_ids, meta)
