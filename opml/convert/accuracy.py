"""Choosing a conversion's accuracy options by measured error against float (``--accuracy auto``).

The float reference is onnxruntime float32 on the calibration data; the quantized outputs are the
converted graph's own values on the same data (computed during conversion, so measuring costs no
extra run). For each float output the report gives the cosine per calibration row (the batch axis;
with several batches of a fixed-batch model, one row per batch), its mean and minimum (an output of
one value per row: the cosine of that column); an integer output reports the fraction of equal
elements.

The search (:func:`choose_options`), every step a full conversion:

1. the range method and bias correction: each of ``minmax``, ``percentile``, ``mse`` with and without
   bias correction; the best mean cosine (the worst output's) wins, ties keep the earlier (simpler);
2. if that misses ``target_cosine``: int16 tensors. The candidates are outputs of Conv, Gemm/MatMul
   and Add nodes read by an op with an int16 path (Add, LayerNormalization) or that are graph outputs
   (int8-only readers get an int8 copy: an ``add`` of a zero constant). Each candidate's gain is
   measured alone on top of step 1's choice; then candidates join in order of gain (graph order on
   ties) while the cosine improves, until the target is met or ``max_conversions`` is spent.

The choice depends on onnxruntime's float32 results only through comparisons of cosines rounded to
1e-6; the chosen options are stored in the bundle metadata and printed as the flags that reproduce
the same bundle without a search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..bundle import Bundle
from ..errors import ConversionError
from .calibrate import METHODS, AccuracyOptions, ConversionTrace, Int16NotProduced
from .lockstep import Batches

# ops whose output can be int16 (``_emit_requant``: conv/linear; ``lower_add``), and ops that read int16
INT16_PRODUCERS = ("Conv", "Gemm", "AievmLinear", "MatMul", "Add")
INT16_READERS = ("Add", "LayerNormalization", "Conv", "Clip", "Relu", "GlobalAveragePool", "ReduceMean", "ReduceSum",
                 "Gemm", "AievmLinear", "MatMul")
# ops whose output stays int16 when their input is (data movement, the clamping Clip/Relu, a wide Add)
INT16_KEEPERS = ("Clip", "Relu", "Add", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice",
                 "Split", "Gather", "Identity", "Dropout", "Expand")
COSINE_GRID = 1e-6


@dataclass(frozen=True)
class OutputAccuracy:
    """One output's agreement with float over the calibration rows."""

    name: str
    mean: float
    min: float
    metric: str = "cosine"  # or "equal" (integer outputs: fraction of equal elements)

    def line(self) -> str:
        return f"{self.name}: {self.metric} mean {self.mean:.5f} min {self.min:.5f}"


@dataclass
class AccuracyResult:
    """The converted bundle, the options that made it, its report and the search's log."""

    bundle: Bundle
    options: AccuracyOptions
    report: list[OutputAccuracy]
    int8_readers: list[str] = field(default_factory=list)  # readers of int16 tensors without an int16 path
    log: list[str] = field(default_factory=list)
    conversions: int = 1
    baseline: list[OutputAccuracy] | None = None  # plain int8 (minmax), when the search measured it
    baseline_bundle: Bundle | None = None

    @property
    def score(self) -> float:
        return score(self.report)


def score(report: list[OutputAccuracy]) -> float:
    """The worst output's mean agreement, on a 1e-6 grid (comparisons ignore float noise below it)."""
    return round(min((r.mean for r in report), default=1.0) / COSINE_GRID) * COSINE_GRID


def batch_outputs(model: onnx.ModelProto, batches: list[list[np.ndarray]]) -> list[np.ndarray]:
    """onnxruntime float32 outputs on calibration batches laid out as ``convert``'s trace has them: one batch
    as it is, several stacked on a new first axis (a dynamic-batch model's batches are one, concatenated)."""
    if len(batches) == 1:
        return float_outputs(model, batches[0])
    per = [float_outputs(model, b) for b in batches]
    return [np.stack([p[j] for p in per]) for j in range(len(per[0]))]


def _batches(m: onnx.ModelProto, calibration: object) -> tuple[list[list[np.ndarray]], object]:
    """The checked calibration batches (a dynamic-batch model's concatenated into one) and what ``convert``
    is given for them."""
    from . import _calibration_batches, _graph_inputs, _is_dynamic

    batches = _calibration_batches(m, calibration)
    if len(batches) > 1 and any(_is_dynamic(vi) for vi in _graph_inputs(m)):
        batches = [[np.concatenate(col) for col in zip(*batches, strict=True)]]
    return batches, (batches[0] if len(batches) == 1 else Batches(batches))


def float_outputs(model: onnx.ModelProto, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """onnxruntime float32 outputs of ``model`` on the calibration arrays (one thread)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # (no warnings about unused initializers on stderr)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        feeds = {i.name: a for i, a in zip(sess.get_inputs(), arrays, strict=True)}
        return [np.asarray(o) for o in sess.run(None, feeds)]
    except Exception as e:
        raise ConversionError(f"onnxruntime cannot run the float model for the accuracy report: {e}") from None


def compare(names: list[str], got: list[np.ndarray], want: list[np.ndarray]) -> list[OutputAccuracy]:
    """Per output: cosine per row (axis 0) for float outputs, equal fraction for integer ones."""
    out = []
    for name, g, w in zip(names, got, want, strict=True):
        w = np.asarray(w)
        if g.shape != w.shape:
            raise ConversionError(f"output {name!r}: the bundle gives shape {g.shape}, float {w.shape}")
        rows = g.shape[0] if g.ndim >= 1 and g.shape[0] > 0 else 1
        a = g.reshape(rows, -1).astype(np.float64)
        b = w.reshape(rows, -1).astype(np.float64)
        if a.shape[1] == 1 and w.dtype.kind == "f":  # (one value per row: a row's cosine is only its sign)
            a, b = a.reshape(1, -1), b.reshape(1, -1)
        if w.dtype.kind != "f":
            eq = (a == b).mean(axis=1)
            out.append(OutputAccuracy(name, float(eq.mean()), float(eq.min()), "equal"))
            continue
        na, nb = np.sqrt((a * a).sum(axis=1)), np.sqrt((b * b).sum(axis=1))
        dot = (a * b).sum(axis=1)
        both_zero = (na == 0) & (nb == 0)
        cos = np.where(both_zero, 1.0, dot / np.maximum(na * nb, 1e-300))
        out.append(OutputAccuracy(name, float(cos.mean()), float(cos.min())))
    return out


def int16_candidates(model: onnx.ModelProto) -> list[str]:
    """Outputs (after the converter's fusions) that may be int16 and have a reader that gains from it."""
    from .rewrite import rewrite_graph

    g = rewrite_graph(model.graph)
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    readers: dict[str, set[str]] = {}
    nodes_reading: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, set()).add(n.op_type)
            nodes_reading.setdefault(i, []).append(n)

    def reaches_concat(y: str) -> bool:
        """Whether int16 would flow from ``y`` into a Concat (which needs one dtype) through ops that keep it."""
        todo, seen = [y], set()
        while todo:
            v = todo.pop()
            for r in nodes_reading.get(v, []):
                if r.op_type == "Concat":
                    return True
                if r.op_type in INT16_KEEPERS and r.output and r.output[0] not in seen:
                    seen.add(r.output[0])
                    todo.extend(o for o in r.output if o)
        return False

    outs = {o.name for o in g.output}
    found = []
    for n in g.node:
        if n.op_type not in INT16_PRODUCERS or not n.output or n.domain not in ("", "ai.onnx", "aievm"):
            continue
        if n.op_type == "Add" and any(i in consts for i in n.input):
            continue  # (a constant operand: a lookup table, no int16 path)
        if n.op_type == "MatMul" and n.input[1] not in consts:
            continue  # (two activations: int8 matmul only)
        y = n.output[0]
        if (y in outs or readers.get(y, set()) & set(INT16_READERS)) and not reaches_concat(y):
            found.append(y)
    return found


def measure(model: onnx.ModelProto, arrays: object, want: list[np.ndarray], options: AccuracyOptions,
            name: str | None, weight_bits: int) -> tuple[Bundle, list[OutputAccuracy], list[str]]:
    """Convert with ``options`` on the calibration ``arrays`` (one batch or :class:`Batches`) and compare its
    calibration outputs with ``want``."""
    from . import convert

    trace = ConversionTrace()
    bundle = convert(model, arrays, name=name, weight_bits=weight_bits, accuracy=options, trace=trace)
    return bundle, compare([o.name for o in model.graph.output], trace.outputs, want), trace.int8_readers


def report_for(model: str | Path | bytes | onnx.ModelProto, calibration: object, options: AccuracyOptions,
               *, name: str | None = None, weight_bits: int = 8) -> AccuracyResult:
    """Convert with fixed ``options`` and report the accuracy against float (no search)."""
    from . import load_onnx

    m = load_onnx(model)
    batches, arrays = _batches(m, calibration)
    bundle, rep, readers = measure(m, arrays, batch_outputs(m, batches), options, name, weight_bits)
    return AccuracyResult(bundle, options, rep, readers)


def choose_options(model: str | Path | bytes | onnx.ModelProto, calibration: object, *, name: str | None = None,
                   weight_bits: int = 8, target_cosine: float = 0.99, max_conversions: int = 32) -> AccuracyResult:
    """Search range methods, bias correction and int16 tensors for the best measured accuracy (above)."""
    from . import load_onnx

    if not 0.0 < target_cosine <= 1.0:
        raise ConversionError(f"target cosine must be in (0, 1], not {target_cosine}")
    if max_conversions < 1:
        raise ConversionError(f"max_conversions must be at least 1, not {max_conversions}")
    m = load_onnx(model)
    batches, arrays = _batches(m, calibration)
    want = batch_outputs(m, batches)
    log: list[str] = []
    n = 0
    best: AccuracyResult | None = None
    baseline: list[OutputAccuracy] | None = None
    baseline_bundle: Bundle | None = None
    for method in METHODS:
        for bc in (False, True):
            if n >= max_conversions:
                break
            opts = AccuracyOptions(method, bc)
            bundle, rep, readers = measure(m, arrays, want, opts, name, weight_bits)
            n += 1
            if baseline is None:
                baseline, baseline_bundle = rep, bundle
            log.append(f"{opts.describe()}: {score(rep):.6f}")
            if best is None or score(rep) > best.score:
                best = AccuracyResult(bundle, opts, rep, readers)
    assert best is not None
    if best.score < target_cosine and n < max_conversions:
        best, n = _choose_int16(m, arrays, want, best, name, weight_bits, target_cosine, max_conversions, n, log)
    best.log, best.conversions, best.baseline, best.baseline_bundle = log, n, baseline, baseline_bundle
    return best


def int8_noise(model: onnx.ModelProto, arrays: object, names: list[str], method: str) -> list[float]:
    """Per tensor: the relative squared error (noise / signal power) of its float values (on every
    calibration batch) on the int8 grid ``method`` would choose for it, from onnxruntime runs with the
    tensors as extra outputs."""
    from .builder import choose_qparams
    from .calibrate import choose_range

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for nm in names:
        if nm not in known:
            m.graph.output.append(onnx.helper.make_tensor_value_info(nm, onnx.TensorProto.FLOAT, None))
    batches = arrays.items if isinstance(arrays, Batches) else [arrays]
    values = dict(zip([o.name for o in m.graph.output], batch_outputs(m, list(batches)), strict=True))  # type: ignore[arg-type]
    noise = []
    for nm in names:
        v = np.asarray(values[nm], dtype=np.float64).reshape(-1)
        qp = choose_qparams(*choose_range(method, v))
        s = np.float64(np.float32(qp.scale))
        deq = (np.clip(np.rint(v / s) + qp.zero_point, -128, 127) - qp.zero_point) * s
        sig = math.fsum((v * v).tolist())
        noise.append(math.fsum(((v - deq) ** 2).tolist()) / sig if sig > 0 else 0.0)
    return noise


def _choose_int16(m: onnx.ModelProto, arrays: object, want: list[np.ndarray], base: AccuracyResult,
                  name: str | None, weight_bits: int, target: float, budget: int, n: int,
                  log: list[str]) -> tuple[AccuracyResult, int]:
    """The shortest prefix of the candidates ranked by int8 noise (largest first) that reaches ``target``:
    prefixes of 1, 2, 4, ... candidates, then a bisection below the first that reaches it."""
    cands = int16_candidates(m)
    if not cands:
        return base, n
    noise = int8_noise(m, arrays, cands, base.options.method)
    ranked = [c for _, _, c in sorted((-round(z, 12), k, c) for k, (z, c) in enumerate(zip(noise, cands, strict=True)))]
    tried: dict[int, AccuracyResult] = {}

    def attempt(k: int) -> AccuracyResult:
        nonlocal n
        if k not in tried:
            opts = AccuracyOptions(base.options.method, base.options.bias_correction, frozenset(ranked[:k]))
            n += 1
            try:
                bundle, rep, readers = measure(m, arrays, want, opts, name, weight_bits)
            except Int16NotProduced as e:  # (e.g. an Add of a constant folded from an input: not int16)
                log.append(f"int16 top {k} of {len(ranked)}: {e.names} cannot be int16; left out")
                dropped = [c for c in ranked if c not in e.names]
                if not dropped or len(dropped) == len(ranked):
                    tried[k] = AccuracyResult(base.bundle, base.options, [OutputAccuracy(o.name, -1.0, -1.0)
                                                                          for o in base.report])
                    return tried[k]
                ranked[:] = dropped
                tried.clear()
                return attempt(min(k, len(ranked)))
            except ConversionError as e:  # (a reader the candidate rules did not foresee: not a usable choice)
                log.append(f"int16 top {k} of {len(ranked)}: does not convert ({e})")
                tried[k] = AccuracyResult(base.bundle, base.options, [OutputAccuracy(o.name, -1.0, -1.0)
                                                                      for o in base.report])
                return tried[k]
            log.append(f"int16 top {k} of {len(ranked)} by int8 noise: {score(rep):.6f}")
            tried[k] = AccuracyResult(bundle, opts, rep, readers)
        return tried[k]

    k, lo, hit = 1, 0, 0
    while n < budget:
        k = min(k, len(ranked))
        if attempt(k).score >= target:
            hit = k
            break
        lo = k
        if k == len(ranked):
            break
        k *= 2
    if hit:
        hi = hit
        while hi - lo > 1 and n < budget:
            mid = (lo + hi) // 2
            if attempt(mid).score >= target:
                hi = mid
            else:
                lo = mid
        best = tried[hi] if hi in tried else attempt(hi)  # (a candidate left out since clears ``tried``)
    else:  # the target is out of reach: the best measured (smaller sets on ties)
        best = max([base] + [tried[k] for k in sorted(tried)], key=lambda r: r.score)
    return best, n
