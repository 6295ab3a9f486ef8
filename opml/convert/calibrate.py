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

With several calibration batches of a fixed-batch model (``lockstep.py``), each choice here is made
from all batches' values together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConversionError
from .lockstep import merged_choice

METHODS = ("minmax", "percentile", "mse")
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
    inside, out = merged_choice(f"range {method}{' relu' if relu else ''}", flat,
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
    inside, out = merged_choice("means", q, lambda ps: channel_means(np.stack(ps), zero_point, scale, axis + 1))
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
