"""Activation range choice for int8 quantization: minmax, percentile and MSE-optimal ranges, and the
per-conversion accuracy options (range method, bias correction, int16 tensors).

Every choice here is a pure function of the calibrated values (float64 numbers computed elementwise
from the engine's integer data): order statistics are exact (``np.partition``), histograms count
with elementwise comparisons, and every sum that decides a choice is ``math.fsum`` (exactly rounded,
so independent of the summation order a CPU's vector units would take). The bundle bytes are thus a
function of the model, the calibration data and the options.

- ``minmax``: the calibrated minimum and maximum (always including 0): what conversion has always
  done, and the default (existing bundles keep their bytes).
- ``percentile``: the ``PERCENTILE`` and ``100 - PERCENTILE`` order statistics (a few outliers clip).
- ``mse``: the range ``alpha [lo, hi]`` (``alpha`` on a fixed grid from 1 down to 0.25) whose int8
  grid has the smallest squared error over a 2048-bin histogram of the values, clipping included.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..errors import ConversionError

METHODS = ("minmax", "percentile", "mse")
T = TypeVar("T")
PERCENTILE = 99.99
HIST_BINS = 2048
MSE_ALPHAS = tuple(1.0 - 0.025 * k for k in range(31))  # 1.0, 0.975, ..., 0.25


@dataclass(frozen=True)
class AccuracyOptions:
    """How a conversion chooses activation ranges and dtypes (the default: today's int8 conversion).

    ``method``: one of :data:`METHODS`; ``bias_correction``: fold the mean effect of each float weight's
    rounding on its layer's output (over the calibration inputs) into the int32 bias; ``int16``: ONNX
    value names (outputs of Conv, Gemm/MatMul or Add nodes) to produce as 13-bit int16 tensors."""

    method: str = "minmax"
    bias_correction: bool = False
    int16: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConversionError(f"unknown calibration method {self.method!r}; use one of {', '.join(METHODS)}")

    @property
    def is_default(self) -> bool:
        return self.method == "minmax" and not self.bias_correction and not self.int16

    def metadata(self) -> dict[str, str]:
        """Bundle metadata recording the non-default choices (none for the default: same bytes as before)."""
        meta: dict[str, str] = {}
        if self.method != "minmax":
            meta["calibration"] = self.method
        if self.bias_correction:
            meta["bias_correction"] = "1"
        if self.int16:
            meta["int16"] = ",".join(sorted(self.int16))
        return meta

    def describe(self) -> str:
        """The command-line flags that reproduce these options."""
        parts = [f"--calibration-method {self.method}"]
        parts.append("--bias-correction" if self.bias_correction else "--no-bias-correction")
        if self.int16:
            parts.append("--int16 " + ",".join(sorted(self.int16)))
        return " ".join(parts)


class Int16NotProduced(ConversionError):
    """Names asked for as int16 that the conversion did not produce as int16 (``names``)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"int16 was asked for {names}, which are not outputs of Conv, Gemm, MatMul (by a "
                         "constant) or Add nodes of this model; name such outputs")
        self.names = names


@dataclass
class ConversionTrace:
    """What a conversion reports besides the bundle: the graph outputs on the calibration data (the
    engine's values, computed during conversion) and the readers of int16 tensors that have no int16
    path (each reads an int8 copy: ``op name``)."""

    outputs: list[np.ndarray] = field(default_factory=list)
    int8_readers: list[str] = field(default_factory=list)


def choose_range(method: str, real: np.ndarray, relu: bool = False) -> tuple[float, float]:
    """The ``(lo, hi)`` real range to quantize ``real`` onto (``lo = 0`` for a fused Relu); in a lockstep
    conversion (:func:`run_lockstep`), the range of all batches' values together."""
    flat = np.asarray(real, dtype=np.float64).reshape(-1)
    inside, out = _merged(f"range {method}{' relu' if relu else ''}", flat,
                          lambda ps: choose_range(method, np.concatenate(ps), relu))
    if inside:
        return out  # type: ignore[no-any-return]
    lo, hi = (0.0 if relu else float(flat.min())), float(flat.max())
    if method == "minmax" or flat.size < 2:
        return lo, hi
    if method == "percentile":
        return _percentile_range(flat, lo, hi, relu)
    if method == "mse":
        return _mse_range(flat, lo, hi)
    raise ConversionError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")


def _percentile_range(flat: np.ndarray, lo: float, hi: float, relu: bool) -> tuple[float, float]:
    """Exact order statistics: the value with ``k`` larger ones above it, ``k = floor(n (1 - p))``."""
    n = flat.size
    k = int(math.floor(n * (100.0 - PERCENTILE) / 100.0))
    if k == 0:
        return lo, hi
    top = float(np.partition(flat, n - 1 - k)[n - 1 - k])
    bottom = lo if relu else float(np.partition(flat, k)[k])
    return bottom, top


def _grid_error(centers: np.ndarray, counts: np.ndarray, lo: float, hi: float) -> float:
    """Squared error of the int8 grid covering [lo, hi] on a histogram (bin centres, counts)."""
    from .builder import choose_qparams

    qp = choose_qparams(lo, hi)
    s = np.float64(np.float32(qp.scale))
    q = np.clip(np.rint(centers / s) + qp.zero_point, -128, 127)
    err = (centers - (q - qp.zero_point) * s) ** 2 * counts
    return math.fsum(err.tolist())


def _mse_range(flat: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0 or not (math.isfinite(lo) and math.isfinite(hi)):
        return lo, hi
    counts, edges = np.histogram(flat, bins=HIST_BINS, range=(lo, hi))
    centers = (edges[:-1] + edges[1:]) * 0.5
    nz = counts > 0
    centers, weights = centers[nz], counts[nz].astype(np.float64)
    best, best_err = 1.0, math.inf
    for alpha in MSE_ALPHAS:
        e = _grid_error(centers, weights, lo * alpha, hi * alpha)
        if e < best_err:  # (strict: ties keep the wider range)
            best, best_err = alpha, e
    return lo * best, hi * best


def weight_rounding_shift(mean_x: np.ndarray, err: np.ndarray) -> np.ndarray:
    """``sum_k mean_x[k] err[k, c]`` per column ``c`` (exactly rounded sums): the mean change of a
    layer's output that rounding its weights (``err = dequantized - float``) causes."""
    prod = mean_x.reshape(-1, 1) * err
    return np.array([math.fsum(col) for col in prod.T.tolist()], dtype=np.float64)


def channel_means(q: np.ndarray, zero_point: int, scale: float, axis: int) -> np.ndarray:
    """Mean real value of an int8 activation per channel (``axis``): an exact integer sum, one division
    (in a lockstep conversion, over all batches: the sums of the stacked batches)."""
    inside, out = _merged("means", q, lambda ps: channel_means(np.stack(ps), zero_point, scale, axis + 1))
    if inside:
        return out  # type: ignore[no-any-return]
    other = tuple(a for a in range(q.ndim) if a != axis)
    sums = q.astype(np.int64).sum(axis=other) if other else q.astype(np.int64)
    count = q.size // q.shape[axis]
    return (sums.astype(np.float64) / count - zero_point) * np.float64(np.float32(scale))


def conv_rounding_shift(mean_x: np.ndarray, err: np.ndarray, group: int) -> np.ndarray:
    """Per output channel ``m`` of a convolution with weights error ``err`` [M, C/g, kh, kw]: the mean
    output change, ``sum mean_x[c] err[m, c, i, j]`` over its group's input channels (padding ignored)."""
    m, cg = err.shape[0], err.shape[1]
    per_group = m // group
    out = np.empty(m, dtype=np.float64)
    for k in range(m):
        c0 = (k // per_group) * cg
        out[k] = math.fsum((err[k] * mean_x[c0:c0 + cg].reshape(-1, 1, 1)).ravel().tolist())
    return out


# ---------------------------------------------------------------- several calibration batches

@dataclass(frozen=True)
class Batches:
    """Calibration data given as several batches: each item is what ``convert`` takes as one batch (an
    array, a list of arrays by input, a dict by input name). A model with a dynamic batch is calibrated
    on their concatenation along the batch axis; a fixed-batch model is converted on every batch in
    lockstep (:func:`run_lockstep`), each range chosen from the values of all batches."""

    items: tuple[object, ...]

    def __init__(self, items: Iterable[object]) -> None:
        object.__setattr__(self, "items", tuple(items))
        if not self.items:
            raise ConversionError("calibration batches: give at least one batch")


class CalibrationDiverged(ConversionError):
    """The conversions of a fixed-batch model on different calibration batches took different paths."""


DIVERGED = ("the calibration batches lead the converter to different graphs ({}); the converter merges "
            "activation ranges across batches but not this data-dependent choice: calibrate on one batch")
_DONE = object()
_LOCAL = threading.local()


class _Lockstep:
    """Runs ``k`` conversions one at a time in turn (0, 1, ..., k-1, 0, ...), switching at each range choice.
    The last of a round merges the round's payloads; every conversion continues with the merged result."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.go = [threading.Event() for _ in range(k)]  # (set: that conversion's turn; only it runs)
        self.go[0].set()
        self.entries: list[object] = [None] * k
        self.result: object = None
        self.failed: str | None = None

    def wait_turn(self, i: int) -> None:
        self.go[i].wait()

    def arrive(self, i: int, entry: object) -> object:
        """Deposit ``(key, payload, merge)`` (or ``_DONE``); wait for the merged result of the round."""
        self.entries[i] = entry
        if i == self.k - 1 and self.failed is None:
            self._complete_round()
        self.go[i].clear()  # (before the next one can hand the turn back)
        for j in range(self.k) if self.failed is not None else [(i + 1) % self.k]:
            self.go[j].set()
        if entry is _DONE:
            return None
        self.go[i].wait()
        if self.failed is not None:
            raise CalibrationDiverged(self.failed)
        return self.result

    def _complete_round(self) -> None:
        done = [e is _DONE for e in self.entries]
        if all(done):
            return
        if any(done):
            self.failed = DIVERGED.format("one batch finished while another still chose ranges")
            return
        keys = [e[0] for e in self.entries]  # type: ignore[index]
        if any(k != keys[0] for k in keys):
            self.failed = DIVERGED.format(f"choices {keys[0]!r} and {next(k for k in keys if k != keys[0])!r}")
            return
        merge = self.entries[0][2]  # type: ignore[index]
        _LOCAL.suspended = True  # (the merge itself runs the plain choice functions)
        try:
            self.result = merge([e[1] for e in self.entries])  # type: ignore[index]
        except Exception as e:
            self.failed = str(e)
        finally:
            _LOCAL.suspended = False


def _merged(key: str, payload: object, merge: Callable[[list[Any]], Any]) -> tuple[bool, Any]:
    """``(True, merged result)`` inside a lockstep conversion, else ``(False, None)``."""
    ls = getattr(_LOCAL, "lockstep", None)
    if ls is None or getattr(_LOCAL, "suspended", False):
        return False, None
    return True, ls.arrive(_LOCAL.index, (key, payload, merge))


def merged_range(lo: float, hi: float) -> tuple[float, float]:
    """A range chosen from one batch's values widened to all batches' (min of minima, max of maxima),
    which is the range of their concatenation; unchanged outside a lockstep conversion."""
    inside, out = _merged("range", (float(lo), float(hi)),
                          lambda ps: (min(p[0] for p in ps), max(p[1] for p in ps)))
    return out if inside else (lo, hi)


def merged_channel_max(chan: np.ndarray) -> np.ndarray:
    """A per-channel maximum of one batch's values widened to all batches' (the concatenation's)."""
    inside, out = _merged("channel max", chan, lambda ps: np.max(np.stack(ps), axis=0))
    return out if inside else chan  # type: ignore[no-any-return]


def run_lockstep(fn: Callable[[int], T], k: int) -> list[T]:
    """``[fn(0), ..., fn(k - 1)]``, run in lockstep so that every activation range (``merged_range``,
    ``choose_range``) and calibration mean (``channel_means``) each conversion chooses is the one of all
    ``k`` batches together. One conversion runs at a time (no two kernels in parallel; deterministic).
    A conversion error is raised as the lowest-numbered batch's."""
    ls = _Lockstep(k)
    results: list[Any] = [None] * k
    errors: list[BaseException | None] = [None] * k

    def work(i: int) -> None:
        ls.wait_turn(i)
        _LOCAL.lockstep, _LOCAL.index, _LOCAL.suspended = ls, i, False
        try:
            results[i] = fn(i)
        except BaseException as e:  # (reported by the caller's thread below)
            errors[i] = e
        finally:
            _LOCAL.lockstep = None
            ls.arrive(i, _DONE)

    threads = [threading.Thread(target=work, args=(i,), name=f"calibration-batch-{i}", daemon=True)
               for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    real = [e for e in errors if e is not None and not isinstance(e, CalibrationDiverged)]
    if real:
        raise real[0]
    diverged = [e for e in errors if e is not None]
    if diverged:
        raise diverged[0]
    return results
