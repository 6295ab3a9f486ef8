"""Shared helpers of the benchmark scripts: thread counts, timing, onnxruntime sessions, metrics."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

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
    """Seconds per call: median and best of ``runs`` timed calls (after ``warmup`` untimed ones)."""

    median_s: float
    best_s: float
    runs: int
    warmup: int

    @property
    def ms(self) -> float:
        return self.median_s * 1e3

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


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
    return Timing(statistics.median(times), min(times), len(times), warmup)


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
