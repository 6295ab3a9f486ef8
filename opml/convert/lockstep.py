"""Calibration over several batches of a fixed-batch model: K conversions in lockstep.

A model whose batch is fixed cannot take its calibration samples as one batch. ``convert`` then runs one
conversion per batch (``run_lockstep``): K threads of which exactly one runs at a time, handing the turn on
at every choice made from calibration data. Each such choice (``builder.choose_qparams`` through
``merged_range``, ``calibrate.choose_range``, ``calibrate.channel_means``, the int16 ranges and outlier
test of ``wide.py``) waits for the same choice in all K conversions and returns the one made from all K
batches' values together, so every conversion builds the same graph: the one a dynamic-batch copy of the
model would give on the K samples concatenated. A conversion that takes another path on some batch is
refused (:class:`CalibrationDiverged`). Outside a lockstep every function here returns its input.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..errors import ConversionError

T = TypeVar("T")


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


def merged_choice(key: str, payload: object, merge: Callable[[list[Any]], Any]) -> tuple[bool, Any]:
    """Inside a lockstep conversion: ``(True, merge(payloads of all K conversions, in batch order))``, after all
    K reached this choice (``key`` names it: different keys mean different paths, refused); outside one, or
    while a merge runs, ``(False, None)``."""
    ls = getattr(_LOCAL, "lockstep", None)
    if ls is None or getattr(_LOCAL, "suspended", False):
        return False, None
    return True, ls.arrive(_LOCAL.index, (key, payload, merge))


def merged_range(lo: float, hi: float) -> tuple[float, float]:
    """A range chosen from one batch's values widened to all batches' (min of minima, max of maxima),
    which is the range of their concatenation; unchanged outside a lockstep conversion."""
    inside, out = merged_choice("range", (float(lo), float(hi)),
                          lambda ps: (min(p[0] for p in ps), max(p[1] for p in ps)))
    return out if inside else (lo, hi)


def merged_channel_max(chan: np.ndarray) -> np.ndarray:
    """A per-channel maximum of one batch's values widened to all batches' (the concatenation's)."""
    inside, out = merged_choice("channel max", chan, lambda ps: np.max(np.stack(ps), axis=0))
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
