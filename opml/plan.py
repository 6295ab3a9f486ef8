"""Prepared execution plans for one batch size: every node bound to buffers allocated once, and the runs
of nodes with a native kernel executed by one C call (``opml/native/plan.c``).

The per-node path (``engine._execute``) costs about 10 us of Python per node around each kernel; at
batch 1 that is as much as the kernels of a small encoder. A :class:`BatchPlan` knows every tensor's
concrete shape at its batch size (decoding and ``check_input`` guarantee the declared shapes), so it
preallocates one arena with liveness-based reuse, binds each node whose kernel has a native form to an
op record {op code, buffer addresses, dimensions, constants} and hands whole runs of records to
``opml_plan_run``. Every op kind has a record (GEMMs, convs, lookups, the float boundary, copies, casts,
reductions; ``_LOWERINGS``); a case a record does not take (a dtype, a broadcast, a bound) runs the node's
usual Python kernel between the C runs, with its result copied into its buffer, so every bundle runs.

Exactness: each record calls the same native kernel, with the same constants, that the node's Python
kernel calls (read from the prepared kernel itself, so nothing is packed twice), or one that computes
the same integers or float32 operations (copies, comparisons, ``quantize``'s divide-round-add, exact int64
sums under a checked bound); every path of every kernel is exact, so the bytes equal the per-node path's
at every batch, thread count and instruction set (``tests/opml/test_plan*.py``). Safety: every dimension
in a record is checked here against the buffers it points into; the C loop trusts the records; inputs
reach the arena only through ``engine.check_input``'s validated shapes (or its fast path's equal checks).
The only data-dependent refusals (NaN into ``quantize`` or a float-to-integer ``cast``, a ``gather`` index
out of range) stop the run, and the node's Python kernel then raises its named error.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import native
from .bundle import Bundle, Node, TensorSpec
from .errors import OpmlError
from .parallel import worker_count
from .plan_copies import COPIES
from .plan_records import COMPUTE, DATA_ERROR, MAX_DIMS, RECORD_WORDS, Shape, _Lowered

__all__ = ["ALIGN", "DATA_ERROR", "MAX_ARENA_BYTES", "MAX_DIMS", "RECORD_WORDS", "BatchPlan", "available", "build"]

ALIGN = 64
MAX_ARENA_BYTES = 1 << 26  # larger plans (huge batches) keep the per-node path
_LIB = native.library()


def _declare() -> bool:
    if _LIB is None:
        return False
    try:
        _LIB.opml_plan_record_words.restype = ctypes.c_int64
        _LIB.opml_plan_run.restype = ctypes.c_int64
        _LIB.opml_plan_run.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p]
    except AttributeError:  # a library built before plan.c
        return False
    return int(_LIB.opml_plan_record_words()) == RECORD_WORDS


_READY = _declare()
_RUN = _LIB.opml_plan_run if _READY and _LIB is not None else None
_THREAD_ARGS: dict[int, ctypes.c_int] = {}


def _threads(n: int) -> ctypes.c_int:
    """``n`` as a ctypes argument (made once per count: a conversion per call costs about 0.4 us)."""
    arg = _THREAD_ARGS.get(n)
    if arg is None:
        arg = _THREAD_ARGS[n] = ctypes.c_int(n)
    return arg


def available() -> bool:
    """Whether the native library with the plan loop is loaded."""
    return _READY


def _closure(fn: object) -> dict[str, object]:
    """The variables a prepared kernel (a closure) captured: its native objects and constants."""
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None) or ()
    out: dict[str, object] = {}
    for name, cell in zip(code.co_freevars if code is not None else (), cells, strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            pass
    return out


# ------------------------------------------------------------------------------------------ lowering

_LOWERINGS = {**COMPUTE, **COPIES}  # op name -> its lowering (opml/plan_records.py, opml/plan_copies.py)


def _lower(node: Node, kernel: object, specs: Sequence[TensorSpec], shapes: dict[int, Shape]) -> _Lowered | None:
    """The record of one node at the plan's shapes, or None when it runs its Python kernel: no native
    form, a case the native kernel does not take, or shapes the kernel would reject (it raises then)."""
    if len(node.outputs) != 1:
        return None
    cv = _closure(kernel)
    cv["_ins"], cv["_out"] = [specs[i] for i in node.inputs], specs[node.outputs[0]]  # (for lowerings by the spec)
    ins = [shapes[i] for i in node.inputs]
    dts = [specs[i].dtype.np for i in node.inputs]
    out_shape, out_dtype = shapes[node.outputs[0]], specs[node.outputs[0]].dtype.np
    lower = _LOWERINGS.get(node.op)
    if lower is None:
        return None
    try:
        low = lower(node, cv, ins, dts)
    except OverflowError:
        return None  # an attribute beyond int64 (a stride of 2^100 can still give valid shapes): Python kernel
    if low is None:
        return None
    shape, dtype, lowered = low
    if tuple(shape) != out_shape or np.dtype(dtype) != out_dtype:
        return None  # the Python kernel runs and its guard raises ShapeMismatchError
    if any(type(w) is int and not -(1 << 63) <= w < (1 << 63) for w in lowered.words):
        return None  # (the record is int64 words)
    return lowered


# ---------------------------------------------------------------------------------------- the plan


RunNode = Callable[[int, list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class _Segment:
    """Consecutive native nodes: their records, run by one ``opml_plan_run`` call."""

    records: np.ndarray  # int64 [count, RECORD_WORDS]
    nodes: tuple[int, ...]  # the node index of each record (for messages)
    address_arg: ctypes.c_void_p = field(init=False)  # the records' address and count as ctypes arguments
    count_arg: ctypes.c_int64 = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address_arg", ctypes.c_void_p(int(self.records.ctypes.data)))
        object.__setattr__(self, "count_arg", ctypes.c_int64(int(self.records.shape[0])))


@dataclass(eq=False)
class BatchPlan:
    """A bundle prepared for one batch size: an arena holding every non-constant tensor (reused by
    liveness), the native records of the nodes that have them, and the Python nodes between them.
    One call at a time (``lock``); the engine runs the per-node path while it is busy."""

    bundle: Bundle
    batch: int
    steps: tuple[_Segment | int, ...]  # a run of native records, or the index of a Python node
    views: dict[int, np.ndarray]  # every non-constant tensor's buffer, in its shape and dtype
    consts: dict[int, np.ndarray]
    arena_bytes: int
    native_nodes: int
    keep: list[object]  # the arena and every array a record points into
    lock: threading.Lock = field(default_factory=threading.Lock)
    code: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))  # opml_plan_run's failure code
    code_arg: ctypes.c_void_p = field(init=False)
    outputs: list[np.ndarray] = field(init=False)  # the output buffers (or constants), copied out by run

    def __post_init__(self) -> None:
        self.code_arg = ctypes.c_void_p(int(self.code.ctypes.data))
        self.outputs = [self.consts[o] if o in self.consts else self.views[o] for o in self.bundle.outputs]

    def run(self, inputs: dict[int, np.ndarray], run_node: RunNode) -> list[np.ndarray]:
        """The outputs (fresh C-ordered arrays) for validated ``inputs`` (by tensor index, the declared
        shapes at this batch); ``run_node(j, args)`` runs node ``j``'s Python kernel with the engine's
        checks. The caller holds ``lock``."""
        views, consts, nodes = self.views, self.consts, self.bundle.nodes
        for i, v in inputs.items():
            np.copyto(views[i], v)
        run_c = _RUN
        assert run_c is not None
        threads = _threads(worker_count())
        code = self.code
        code_arg = self.code_arg
        for step in self.steps:
            if isinstance(step, _Segment):
                rc = run_c(step.address_arg, step.count_arg, threads, code_arg)
                if rc:
                    j = step.nodes[rc - 1]
                    if int(code[0]) == DATA_ERROR:  # the node's own kernel raises its named error
                        run_node(j, [consts[i] if i in consts else views[i] for i in nodes[j].inputs])
                    raise OpmlError(f"node {j} ({nodes[j].op} {nodes[j].name!r}): the native kernel refused the "
                                    "plan's record (a bug in opml/plan.py)")
            else:
                node = nodes[step]
                y = run_node(step, [consts[i] if i in consts else views[i] for i in node.inputs])
                np.copyto(views[node.outputs[0]], y)
        return [a.copy(order="C") for a in self.outputs]


def _first_fit(live: list[tuple[int, int]], size: int) -> int:
    """The lowest aligned offset where ``size`` bytes fit between the live blocks (sorted by offset)."""
    off = 0
    for start, length in live:
        if off + size <= start:
            return off
        off = max(off, -(-(start + length) // ALIGN) * ALIGN)
    return off


def _reshape_alias(node: Node, specs: Sequence[TensorSpec], shapes: dict[int, Shape]) -> bool:
    """Whether a reshape node's output can share its input's buffer: what its kernel returns (a view of
    the input in the declared output shape) and that shape's bytes are the same."""
    i, o = node.inputs[0], node.outputs[0]
    x_spec = specs[i]
    if x_spec.is_const or len(node.outputs) != 1 or specs[o].dtype != x_spec.dtype:
        return False
    x = shapes[i]
    batch = x[0] // -x_spec.shape[0] if x_spec.shape and x_spec.shape[0] < 0 else 1
    return specs[o].concrete_shape(batch) == shapes[o] and math.prod(shapes[o]) == math.prod(x)


def build(bundle: Bundle, kernels: Sequence[object], consts: dict[int, np.ndarray], batch: int) -> BatchPlan | None:
    """The plan of a prepared bundle at ``batch``; None when it would not help (the library or its plan
    loop absent, no node with a native form) or its arena would exceed :data:`MAX_ARENA_BYTES`."""
    specs = bundle.tensors
    if not _READY or any(specs[i].is_const for i in bundle.inputs):
        return None
    shapes = {i: tuple(s.concrete_shape(batch)) for i, s in enumerate(specs)}
    nodes = bundle.nodes
    store: dict[int, int] = {}  # tensor -> storage
    sizes: list[int] = []
    first: list[int] = []
    last: list[int] = []

    def new_storage(nbytes: int, t: int) -> int:
        sizes.append(max(nbytes, 1))
        first.append(t)
        last.append(t)
        return len(sizes) - 1

    def nbytes(i: int) -> int:
        return math.prod(shapes[i]) * specs[i].dtype.np.itemsize

    for i in bundle.inputs:
        if not specs[i].is_const and i not in store:
            store[i] = new_storage(nbytes(i), -1)
    lowered: list[_Lowered | None] = []
    aliases: set[int] = set()  # reshape nodes whose output shares its input's buffer
    scratch: dict[int, list[int]] = {}
    for j, (node, kernel) in enumerate(zip(nodes, kernels, strict=True)):
        low = None
        if node.op == "reshape" and _reshape_alias(node, specs, shapes) and node.inputs[0] in store:
            store[node.outputs[0]] = store[node.inputs[0]]
            aliases.add(j)
        else:
            low = _lower(node, kernel, specs, shapes)
            for o in node.outputs:
                if specs[o].is_const or o in store:
                    return None  # not SSA over non-constant tensors: keep the per-node path
                store[o] = new_storage(nbytes(o), j)
            if low is not None:
                scratch[j] = [new_storage(n, j) for n in low.scratch]
        lowered.append(low)
        for i in node.inputs:
            if i in store:
                last[store[i]] = max(last[store[i]], j)
    for o in bundle.outputs:
        if o in store:
            last[store[o]] = len(nodes)
    if not any(low is not None for low in lowered):
        return None
    # first fit in order of definition; a node's outputs are placed before its inputs are freed
    offsets = [0] * len(sizes)
    live: list[tuple[int, int]] = []
    order = sorted(range(len(sizes)), key=lambda s: (first[s], s))
    ends = sorted(range(len(sizes)), key=lambda s: (last[s], s))
    top, e = 0, 0
    for t in range(-1, len(nodes) + 1):
        for s in (s for s in order if first[s] == t):
            offsets[s] = _first_fit(live, sizes[s])
            live.append((offsets[s], sizes[s]))
            live.sort()
            top = max(top, offsets[s] + sizes[s])
        while e < len(ends) and last[ends[e]] <= t:
            live.remove((offsets[ends[e]], sizes[ends[e]]))
            e += 1
    if top > MAX_ARENA_BYTES:
        return None
    raw = np.zeros(top + ALIGN, dtype=np.uint8)
    base = (-raw.ctypes.data) % ALIGN
    arena = raw[base : base + top]
    views = {i: arena[offsets[s] : offsets[s] + nbytes(i)].view(specs[i].dtype.np).reshape(shapes[i])
             for i, s in store.items()}
    plan_consts = dict(consts)
    keep: list[object] = [raw, plan_consts]
    steps: list[_Segment | int] = []
    run: list[np.ndarray] = []
    run_nodes: list[int] = []
    isa = native.isa()

    def address(word: object, node: Node, j: int) -> int:
        if isinstance(word, int):
            return word
        assert isinstance(word, tuple)
        kind, v = word[:2]
        if kind == "table":
            table = np.array([address(w, node, j) for w in v], dtype=np.int64)
            keep.append(table)
            return int(table.ctypes.data)
        if kind in ("buf", "at"):
            i = node.inputs[v]
            a = plan_consts[i] if i in plan_consts else views[i]
            if kind == "at":  # an address inside the input (the lowering checked the offset)
                a = np.ascontiguousarray(a)
                keep.append(a)
                return int(a.ctypes.data) + word[2]
        elif kind == "out":
            a = views[node.outputs[v]]
        elif kind == "scratch":
            s = scratch[j][v]
            a = arena[offsets[s] : offsets[s] + sizes[s]]
        else:
            a = v
        assert isinstance(a, np.ndarray)
        a = np.ascontiguousarray(a)  # (a copy only for a constant stored otherwise)
        keep.append(a)
        return int(a.ctypes.data)

    def flush() -> None:
        if run:
            steps.append(_Segment(np.ascontiguousarray(np.stack(run)), tuple(run_nodes)))
            run.clear()
            run_nodes.clear()

    for j, (node, low) in enumerate(zip(nodes, lowered, strict=True)):
        if j in aliases:
            continue  # nothing to run
        if low is None:
            flush()
            steps.append(j)
            continue
        rec = np.zeros(RECORD_WORDS, dtype=np.int64)
        words = [low.op] + [address(w, node, j) for w in low.words]
        if len(words) >= RECORD_WORDS:
            raise AssertionError(f"plan record of {node.op} has {len(words)} words")
        rec[: len(words)] = words
        rec[RECORD_WORDS - 1] = isa
        keep.extend(low.keep)
        run.append(rec)
        run_nodes.append(j)
    flush()
    native_nodes = sum(low is not None for low in lowered)
    return BatchPlan(bundle, batch, tuple(steps), views, plan_consts, top, native_nodes, keep)
