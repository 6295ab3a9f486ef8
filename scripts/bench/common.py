"""Shared helpers of the benchmark scripts: thread counts, timing, onnxruntime sessions, metrics."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


def blas_threads() -> int:
    """Threads numpy's BLAS uses (via threadpoolctl when available, else the CPU count)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return os.cpu_count() or 1
    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else (os.cpu_count() or 1)


def blas_name() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return "unknown"
    libs = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(libs) or "unknown"


@dataclass
class Timing:
    """Seconds per call: median and best of ``runs`` timed calls (``warmup``: untimed calls, or
    rounds for :func:`time_rounds`, each with one untimed call per block)."""

    median_s: float
    best_s: float
    runs: int
    warmup: int
    samples: list[float] = field(default_factory=list, repr=False, compare=False)

    @property
    def ms(self) -> float:
        return self.median_s * 1e3

    def as_dict(self) -> dict[str, float | int]:
        return {k: v for k, v in asdict(self).items() if k != "samples"}


def time_call(fn: Callable[[], object], repeats: int, budget_s: float, warmup: int = 1) -> Timing:
    """Time ``fn``: ``warmup`` calls first, then up to ``repeats`` timed calls, stopping early once
    ``budget_s`` seconds of timed calls have passed (at least one timed call always runs)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max(1, repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return Timing(statistics.median(times), min(times), len(times), warmup, times)


def time_rounds(
    fns: dict[str, Callable[[], object]], repeats: int, budget_s: float, rounds: int = 3, pause_s: float = 0.1
) -> dict[str, Timing]:
    """Time several functions in ``rounds`` rounds; in each round every function gets a block of one
    warm-up call then up to ``repeats / rounds`` timed calls (``budget_s / (rounds * len(fns))``
    seconds at most, one call at least). Blocks, not call-by-call interleaving: onnxruntime's and
    OpenBLAS's worker threads spin for a while after each call and would steal the cores from the
    next runtime; a short pause between blocks lets them go idle. Several rounds spread the load
    changes of a shared machine over all runtimes."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    per_block = max(1, -(-repeats // rounds))
    block_budget = budget_s / (rounds * max(1, len(fns)))
    for _ in range(rounds):
        for k, fn in fns.items():
            time.sleep(pause_s)
            t = time_call(fn, per_block, block_budget, warmup=1)
            times[k].extend(t.samples)
    return {k: Timing(statistics.median(v), min(v), len(v), rounds) for k, v in times.items()}


def cpu_name() -> str:
    """The CPU's model name and its int8-relevant instruction-set flags (Linux /proc/cpuinfo), for naming
    the machine a benchmark ran on."""
    model, flags, ids = platform.processor() or platform.machine(), set(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (p.strip() for p in line.partition(":"))
            if key == "model name":
                model = value
            elif key in ("cpu family", "model"):
                ids[key] = value
            elif key == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
    family = f"family {ids['cpu family']} model {ids['model']}; " if len(ids) == 2 else ""
    return f"{model} ({family}{' '.join(f for f in wanted if f in flags) or 'no avx2'})"


def machine_load() -> str:
    """Load average and CPU pressure (Linux), to flag timings taken on a busy machine."""
    parts = []
    try:
        parts.append("loadavg " + " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    except OSError:
        pass
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]  # "some avg10=.. avg60=.."
        parts.append("cpu pressure " + " ".join(first.split()[1:3]))
    except (OSError, IndexError):
        pass
    return ", ".join(parts) or "unknown"


def ort_session(model: str | bytes, threads: int):  # -> onnxruntime.InferenceSession
    """A CPU onnxruntime session with ``threads`` intra-op threads and sequential execution."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def quantize_dynamic_int8(src_path: str, dst_path: str) -> None:
    """onnxruntime dynamic quantization: QInt8 weights, uint8 activations quantized at run time."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(src_path, dst_path, weight_type=QuantType.QInt8)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent of class scores ``pred`` [N, C] against integer ``labels``."""
    return float(100.0 * np.mean(np.argmax(pred, axis=-1) == labels))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of rows whose argmax (last axis) agrees."""
    return float(100.0 * np.mean(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """The best of ``repeat`` wall-clock timings of ``fn()`` (seconds), after one untimed call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two tensors, flattened, in float64."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    d = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / d) if d else float("nan")


def row_cosine(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and minimum per-row cosine similarity (rows: leading dimension), in float64."""
    x = a.astype(np.float64).reshape(a.shape[0], -1)
    y = b.astype(np.float64).reshape(b.shape[0], -1)
    d = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    c = np.where(d > 0, (x * y).sum(axis=1) / np.where(d > 0, d, 1.0), np.nan)
    return float(np.nanmean(c)), float(np.nanmin(c))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
