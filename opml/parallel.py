"""Row-tile parallelism for the engine's elementwise passes.

BLAS already spreads each GEMM over its threads; the passes around it (requantization, softmax,
layernorm, table lookups) are numpy ufunc loops, which release the GIL, so a few Python threads can
run them on disjoint row ranges at once. Each output element is computed by the same sequence of
exact operations whichever thread runs it and however the rows are split, so results do not depend
on the thread count (``tests/opml/test_determinism.py`` runs with 1 and 2 threads).

The worker count is read at import: ``OPML_THREADS`` if set, else ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``, else
the CPU count, capped at 8; 1 disables the pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MIN_ROWS_PER_WORKER_ELEMENTS = 1 << 15  # below this many elements per worker, threads cost more than they save

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _from_environment() -> int:
    for var in ("OPML_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return min(int(value), 8)
    return max(1, min(os.cpu_count() or 1, 8))


_WORKERS = _from_environment()


def worker_count() -> int:
    """How many threads the elementwise passes may use (read from the environment at import)."""
    return _WORKERS


def set_worker_count(n: int | None) -> None:
    """Override the worker count (``None``: back to the environment's)."""
    global _WORKERS
    _WORKERS = _from_environment() if n is None else max(1, int(n))


def _pool(n: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != n:
            _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=n, thread_name_prefix="opml"), n
        return _POOL


def _forget_pool() -> None:
    """A forked child has none of the parent's threads: start a fresh pool there when needed."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def for_row_ranges(fn: Callable[[int, int], None], rows: int, row_elements: int) -> None:
    """Call ``fn(r0, r1)`` on consecutive row ranges covering ``range(rows)``, in parallel when worth it.

    ``fn`` must only write rows ``r0:r1`` of its outputs. Exceptions propagate to the caller.
    """
    workers = _WORKERS
    per = MIN_ROWS_PER_WORKER_ELEMENTS // max(row_elements, 1) + 1
    n = min(workers, rows // per) if workers > 1 else 1
    if n <= 1:
        fn(0, rows)
        return
    bounds = [rows * i // n for i in range(n + 1)]
    pool = _pool(workers)
    futures = [pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, n)]
    fn(bounds[0], bounds[1])
    for f in futures:
        f.result()
