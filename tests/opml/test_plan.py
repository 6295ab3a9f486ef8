"""Batch plans (``opml/plan.py``, ``opml/native/plan.c``) give the per-node path's bytes, and its errors.

Every example model under ``models/``: random inputs (the test set's range and far outside it), batch 1
and 3, every intermediate tensor (the graph re-declared with all node outputs as outputs) and the plain
graph (where buffers are reused): plan == per-node path == reference. Then thread counts 1 and 2
in-process, each instruction set this CPU runs in a subprocess (``OPML_NATIVE_ISA``), the arena's
liveness reuse (no two tensors live at once share a byte), one-node cases of each native op (including
the layouts the example models do not reach: int32 transposes, padded and dilated pooling and conv,
broadcast pair lookups), the error paths, concurrent calls and the switch.

The one-node differential suite (``test_engine_reference.py``) also runs through plans: ``engine.run``
uses them by default.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from opml import engine, native
from opml import plan as batch_plan
from opml.bundle import Bundle, DType, Node, load_bundle
from opml.errors import InferenceInputError, OpmlError, ShapeMismatchError
from opml.parallel import set_worker_count
from opml.reference import run_reference
from opml.shapes import MAX_BATCH

sys.path.insert(0, str(Path(__file__).parent))
from engine_cases import act, attrs_of, const, one_node  # noqa: E402
from native_child import child_hash  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODELS = sorted(p.parent.name for p in ROOT.glob("models/*/model.bundle"))
INT8, UINT8, INT32 = DType.INT8, DType.UINT8, DType.INT32

needs_plan = pytest.mark.skipif(not batch_plan.available() and not os.environ.get("CI"), reason=native.describe())


@pytest.fixture(autouse=True)
def _plans_default() -> object:
    yield
    engine.set_batch_plans(None)
    set_worker_count(None)


def all_tensors(b: Bundle) -> Bundle:
    """The same graph with every node output also a graph output."""
    outs = tuple(dict.fromkeys(b.outputs + tuple(n.outputs[0] for n in b.nodes)))
    return Bundle(b.tensors, b.nodes, b.inputs, outs, b.metadata)


def model(name: str) -> Bundle:
    return load_bundle((ROOT / "models" / name / "model.bundle").read_bytes())


def random_inputs(b: Bundle, batch: int, seed: int) -> list[np.ndarray]:
    """Inputs in the test data's range [0, 1] for half the batch, far outside it (and +-inf) for the rest."""
    rng = np.random.default_rng(seed)
    out = []
    for s in b.input_specs():
        shape = s.concrete_shape(batch)
        if s.dtype.np.kind == "f":
            x = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
            wild = rng.uniform(-40.0, 40.0, size=shape).astype(np.float32)
            x[batch // 2 :] = wild[batch // 2 :]
            x.reshape(-1)[-1] = np.inf
            out.append(x)
        else:
            out.append(rng.integers(0, 2, size=shape).astype(s.dtype.np))
    return out


def run_both(b: Bundle, xs: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(per-node path, plan) outputs."""
    engine.set_batch_plans(False)
    per_node = engine.run(b, xs)
    engine.set_batch_plans(True)
    planned = engine.run(b, xs)
    return per_node, planned


def assert_same(a: list[np.ndarray], b: list[np.ndarray], what: str) -> None:
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        assert (x.dtype, x.shape) == (y.dtype, y.shape), f"{what}: output {k} {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
        assert x.tobytes() == y.tobytes(), f"{what}: output {k} differs at {np.argwhere(x != y)[:3].tolist()}"


def digest(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# Ops that may keep their Python kernel in the example models: none (every op kind has a record)
PYTHON_OPS: set[str] = set()


@needs_plan
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", MODELS)
def test_examples_plan_equals_per_node_and_reference(name: str, batch: int) -> None:
    b = model(name)
    xs = random_inputs(b, batch, seed=batch)
    per_node, planned = run_both(b, xs)
    assert_same(per_node, planned, f"{name} batch {batch}")
    assert_same(run_reference(b, xs), planned, f"{name} batch {batch} reference")
    full = all_tensors(b)
    per_node, planned = run_both(full, xs)
    assert_same(per_node, planned, f"{name} batch {batch}, every tensor")
    bp = engine.batch_plan_for(engine.get_plan(b), batch)
    assert bp is not None and bp.batch == batch
    python_ops = {b.nodes[s].op for s in bp.steps if isinstance(s, int)}
    assert python_ops <= PYTHON_OPS, f"{name}: {python_ops - PYTHON_OPS} ran in Python"
    reshapes = sum(n.op == "reshape" for n in b.nodes)
    assert bp.native_nodes + len([s for s in bp.steps if isinstance(s, int)]) + reshapes == len(b.nodes)


@needs_plan
@pytest.mark.parametrize("name", MODELS)
def test_thread_counts(name: str) -> None:
    """Rows and GEMM panels split over 1 or 2 threads (a batch large enough to split): same bytes."""
    b = model(name)
    xs = random_inputs(b, 96, seed=7)
    engine.set_batch_plans(False)
    want = engine.run(b, xs)
    engine.set_batch_plans(True)
    for n in (1, 2):
        set_worker_count(n)
        assert_same(want, engine.run(b, xs), f"{name} threads {n}")


CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
from test_plan import MODELS, all_tensors, digest, model, random_inputs
from opml import engine, native
outs = []
for name in MODELS:
    b = all_tensors(model(name))
    for batch in (1, 3):
        outs += engine.run(b, random_inputs(b, batch, seed=batch))
        assert engine.batch_plan_for(engine.get_plan(b), batch) is not None
print(native.describe())
print("HASH " + digest(outs))
"""


def _per_node_hash() -> str:
    engine.set_batch_plans(False)
    outs = []
    for name in MODELS:
        b = all_tensors(model(name))
        for batch in (1, 3):
            outs += engine.run(b, random_inputs(b, batch, seed=batch))
    return "HASH " + digest(outs)


@needs_plan
@pytest.mark.parametrize("isa", native.ISAS)
def test_instruction_sets_in_subprocess(isa: str) -> None:
    if isa not in native.cpu_isas():
        pytest.skip(f"this CPU lacks {native.CPU_FLAGS.get(isa, isa)}")
    desc, got = child_hash(CHILD, {"OPML_NATIVE_ISA": isa, "OPML_PLAN": "1", "OPML_THREADS": "2"})
    assert f"loaded ({isa})" in desc
    assert got == _per_node_hash(), f"plan with {desc}"


@needs_plan
def test_arena_reuse_never_overlaps_live_tensors() -> None:
    """Liveness-based reuse: the arena is smaller than all tensors together, and no two tensors live at
    the same time (other than a reshape and its input, which share their bytes) overlap."""
    b = model("encoder")
    bp = engine.batch_plan_for(engine.get_plan(b), 4)
    assert bp is not None
    total = sum(v.nbytes for v in bp.views.values())
    assert bp.arena_bytes < total / 2
    end = len(b.nodes)
    born = {i: -1 for i in b.inputs}
    last = {i: -1 for i in b.inputs}
    root = {i: i for i in b.inputs}
    for j, node in enumerate(b.nodes):
        o = node.outputs[0]
        born[o] = last[o] = j
        src = node.inputs[0]
        alias = node.op == "reshape" and src in bp.views and np.shares_memory(bp.views[o], bp.views[src])
        root[o] = root[src] if alias else o
        for i in node.inputs:
            if i in last:
                last[i] = j
    for o in b.outputs:
        last[o] = end
    span: dict[int, tuple[int, int]] = {}
    for t, r in root.items():  # a storage lives from its first tensor's birth to its aliases' last use
        lo, hi = span.get(r, (born[t], last[t]))
        span[r] = (min(lo, born[t]), max(hi, last[t]))
    roots = sorted(span)
    for x in roots:
        for y in roots:
            if x < y and span[x][0] <= span[y][1] and span[y][0] <= span[x][1]:
                assert not np.shares_memory(bp.views[x], bp.views[y]), f"tensors {x} and {y} overlap while live"


# --------------------------------------------------------------------------------- one-node cases


def _cases() -> list[tuple[str, Bundle, list[np.ndarray]]]:
    rng = np.random.default_rng(3)

    def i8(*s: int) -> np.ndarray:
        return np.asarray(rng.integers(-128, 128, size=s), dtype=np.int8)

    def u8(*s: int) -> np.ndarray:
        return np.asarray(rng.integers(0, 256, size=s), dtype=np.uint8)

    cases: list[tuple[str, Bundle, list[np.ndarray]]] = []
    arr: np.ndarray
    for dtype, arr in ((INT32, rng.integers(-2**31, 2**31, size=(3, 4, 5, 6)).astype(np.int32)),
                       (DType.INT16, rng.integers(-2**15, 2**15, size=(3, 4, 5, 6)).astype(np.int16)),
                       (UINT8, u8(3, 4, 5, 6))):
        for perm in ((0, 2, 1, 3), (0, 3, 1, 2), (0, 1, 3, 2)):
            shape = tuple(arr.shape[p] for p in perm)
            b = one_node("transpose", [act("x", dtype, arr.shape, dyn=True)], act("y", dtype, shape, dyn=True),
                         perm=perm)
            cases.append((f"transpose {dtype.name} {perm}", b, [arr]))
    x = i8(2, 3, 9, 11)
    cases.append(("maxpool padded dilated", one_node(
        "maxpool", [act("x", INT8, x.shape, 0.1, 0, dyn=True)], act("y", INT8, (-1, 3, 4, 5), 0.1, 0),
        kernel=(3, 2), strides=(2, 2), pads=(1, 0, 2, 1), dilations=(2, 3)), [x]))
    xu = u8(2, 3, 9, 11)
    cases.append(("maxpool uint8", one_node(
        "maxpool", [act("x", UINT8, xu.shape, 0.1, 0, dyn=True)], act("y", UINT8, (-1, 3, 4, 5), 0.1, 0),
        kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1)), [xu]))
    w = rng.integers(-100, 101, size=(5, 3, 3, 2)).astype(np.int8)
    for out_dtype in (INT32, INT8):
        ins = [act("x", UINT8, xu.shape, 0.05, 3, dyn=True), const("w", w), const("b", rng.integers(-500, 500, 5)
                                                                          .astype(np.int32))]
        extra: dict[str, object] = {}
        if out_dtype == INT8:
            ins += [const("m", np.array([1 << 29], np.int32)), const("s", np.array([38], np.int32))]
            extra = {"qmin": -128, "qmax": 127}
        # pads (2, 1, 0, 3): 11 x 15 padded; kernel 3 x 2 dilated (2, 1), strides (2, 3): 4 x 5
        cases.append((f"conv {out_dtype.name}", one_node(
            "conv", ins, act("y", out_dtype, (-1, 5, 4, 5), 0.1, 0), pads=(2, 1, 0, 3), strides=(2, 3),
            dilations=(2, 1), group=1, **({"qmin": 0, "qmax": 0} | extra)), [xu]))
    a, c = i8(2, 4, 6), i8(6)
    cases.append(("add broadcast", one_node(
        "add", [act("a", INT8, a.shape, 0.1, 2, dyn=True), const("c", c, 0.1, -3)], act("y", INT8, a.shape, 0.1, 1),
        a_mult=1 << 20, b_mult=3 << 19, shift=21, qmin=-128, qmax=127), [a]))
    m1, m2 = u8(2, 3, 5, 7), i8(2, 3, 7, 4)
    cases.append(("matmul", one_node(
        "matmul", [act("a", UINT8, m1.shape, 0.1, 128, dyn=True), act("b", INT8, m2.shape, 0.1, 0, dyn=True)],
        act("y", INT8, (-1, 3, 5, 4), 0.1, 0), mult=1 << 28, shift=36, qmin=-128, qmax=127), [m1, m2]))
    return cases


CASES = _cases()


@needs_plan
@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_one_node_cases_run_natively(case: int) -> None:
    name, b, xs = CASES[case]
    per_node, planned = run_both(b, xs)
    assert_same(per_node, planned, name)
    assert_same(run_reference(b, xs), planned, f"{name} reference")
    bp = engine.batch_plan_for(engine.get_plan(b), xs[0].shape[0])
    assert bp is not None and bp.native_nodes == 1, f"{name} did not run natively"


# ---------------------------------------------------------------------------------------- errors


def _linear_then_lut(declared: tuple[int, ...]) -> Bundle:
    """linear (native) -> lut (native), the linear's output declared as ``declared``."""
    rng = np.random.default_rng(5)
    w = rng.integers(-60, 61, size=(8, 6)).astype(np.int8)
    table = rng.integers(-128, 128, size=256).astype(np.int8)
    tensors = (act("x", INT8, (-1, 8), 0.1, 0), const("w", w), const("b", np.zeros(6, np.int32)),
               const("m", np.array([1 << 30], np.int32)), const("s", np.array([36], np.int32)),
               act("h", INT8, declared, 0.1, 0), const("t", table), act("y", INT8, (-1, 6), 0.1, 0))
    nodes = (Node("linear", (0, 1, 2, 3, 4), (5,), attrs_of("linear", {"qmin": -128, "qmax": 127}), name="fc"),
             Node("lut", (5, 6), (7,), (), name="act"))
    return Bundle(tensors, nodes, (0,), (7,), {})


@needs_plan
def test_shape_guard_is_kept() -> None:
    """A node whose declared output is not what its kernel gives runs in Python, which raises the guard's
    error, with plans on as off; the honest bundle runs natively."""
    x = np.ones((2, 8), np.int8)
    messages = []
    for on in (False, True):
        engine.set_batch_plans(on)
        with pytest.raises(ShapeMismatchError, match=r"node 0 \(linear 'fc'\) produced int8 \(2, 6\)") as e:
            engine.run(_linear_then_lut((-1, 5)), [x])
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    honest = _linear_then_lut((-1, 6))
    per_node, planned = run_both(honest, [x])
    assert_same(per_node, planned, "honest")
    bp = engine.batch_plan_for(engine.get_plan(honest), 2)
    assert bp is not None and bp.native_nodes == 2 and len(bp.steps) == 1


@needs_plan
def test_input_errors_and_recovery() -> None:
    """Bad inputs raise the same named errors with plans on; the plan runs correctly afterwards."""
    b = model("encoder")
    engine.set_batch_plans(True)
    good = random_inputs(b, 2, seed=1)
    want = engine.run(b, good)
    with pytest.raises(InferenceInputError, match="NaN"):
        engine.run(b, [np.full((2, 8, 8), np.nan, np.float32)])
    with pytest.raises(InferenceInputError, match="expected shape"):
        engine.run(b, [np.zeros((2, 8, 7), np.float32)])
    with pytest.raises(InferenceInputError, match="leading dimension"):
        engine.run(b, [np.zeros((0, 8, 8), np.float32)])
    assert_same(want, engine.run(b, good), "after errors")
    # gather (a native record whose index check fails: the node's kernel raises its error) out of range
    table = np.arange(40, dtype=np.int8).reshape(10, 4)
    tensors = (act("i", DType.INT64, (-1, 3)), const("t", table, 0.1, 0), act("e", INT8, (-1, 3, 4), 0.1, 0),
               act("y", INT8, (-1, 4, 3), 0.1, 0))
    g = Bundle(tensors, (Node("gather", (1, 0), (2,), attrs_of("gather", {"axis": 0}), name="embed"),
                         Node("transpose", (2,), (3,), attrs_of("transpose", {"perm": (0, 2, 1)}), name="t")),
               (0,), (3,), {})
    with pytest.raises(InferenceInputError, match="gather index out of range"):
        engine.run(g, [np.array([[1, 2, 10]])])
    assert engine.run(g, [np.array([[1, 2, -1]])])[0].tolist() == [[[4, 8, 36], [5, 9, 37], [6, 10, 38], [7, 11, 39]]]
    bp = engine.batch_plan_for(engine.get_plan(g), 1)
    assert bp is not None and bp.native_nodes == 2 and len(bp.steps) == 1


@needs_plan
def test_concurrent_calls() -> None:
    """Threads share a model: one holds the plan, the others take the per-node path; all correct."""
    b = model("encoder")
    xs = [random_inputs(b, 3, seed=s) for s in range(6)]
    engine.set_batch_plans(False)
    want = [engine.run(b, x) for x in xs]
    engine.set_batch_plans(True)
    errors: list[str] = []

    def work(k: int) -> None:
        for _ in range(5):
            got = engine.run(b, xs[k])
            if any(g.tobytes() != w.tobytes() for g, w in zip(got, want[k], strict=True)):
                errors.append(f"thread {k}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPML_PLAN=0 (or set_batch_plans(False)) keeps the per-node path; the outputs do not change."""
    b = model("digits_mlp")
    plan = engine.get_plan(b)
    monkeypatch.setenv("OPML_PLAN", "0")
    engine.set_batch_plans(None)
    assert engine.batch_plan_for(plan, 1) is None
    monkeypatch.setenv("OPML_PLAN", "1")
    engine.set_batch_plans(None)
    assert (engine.batch_plan_for(plan, 1) is not None) == batch_plan.available()


@needs_plan
def test_cached_plans_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most BATCH_PLAN_ENTRIES plans holding BATCH_PLAN_BYTES of buffers together, least recently used
    out first; a model leaving the plan cache takes its batch plans with it."""
    b = model("digits_mlp")
    engine.set_batch_plans(True)
    monkeypatch.setattr(engine, "BATCH_PLAN_ENTRIES", 3)
    for batch in range(1, 6):
        engine.run(b, random_inputs(b, batch, seed=batch))
    mine = [k[1] for k in engine._BATCH_PLANS if k[0] == b.address]
    assert mine == [3, 4, 5]
    one = engine.batch_plan_for(engine.get_plan(b), 5)
    assert one is not None
    monkeypatch.setattr(engine, "BATCH_PLAN_BYTES", one.arena_bytes * 2)
    engine.run(b, random_inputs(b, 2, seed=2))  # 2, 5 fit (smaller than 5 twice), 4 does not
    assert [k[1] for k in engine._BATCH_PLANS if k[0] == b.address] == [5, 2]
    monkeypatch.setattr(engine, "CACHE_SIZE", 0)
    fresh = one_node("transpose", [act("x", INT8, (-1, 7, 13))], act("y", INT8, (-1, 13, 7)), perm=(0, 2, 1))
    engine.get_plan(fresh)  # a model not yet cached: its plan evicts every other, digits_mlp included
    assert not [k for k in engine._BATCH_PLANS if k[0] == b.address]


def test_plan_errors_are_opml_errors() -> None:
    assert issubclass(ShapeMismatchError, OpmlError) and issubclass(InferenceInputError, OpmlError)


def test_fast_input_path_matches_checked_path() -> None:
    """engine.run takes arrays already of the declared dtype, C order and shape without check_input; anything
    else (another integer or float dtype, Fortran order, a list, a mapping) goes through check_input: the same
    outputs, and the same named errors for a wrong shape, batch or dtype kind."""
    b = model("encoder")
    x = random_inputs(b, 3, seed=4)[0]
    want = engine.run(b, {b.input_specs()[0].name: x})
    for v in (x, np.asfortranarray(x), x.astype(np.float64), x.tolist()):
        for wrap in (list, tuple):
            assert_same(want, engine.run(b, wrap([v])), f"{type(v).__name__} in a {wrap.__name__}")
    for bad, match in ((np.zeros((3, 8, 7), np.float32), "expected shape"), (np.zeros((0, 8, 8), np.float32),
                                                                              "leading dimension"),
                       (np.zeros((3, 8, 8), np.int32), "expected dtype"), (np.zeros((8, 8), np.float32),
                                                                           "expected shape")):
        with pytest.raises(InferenceInputError, match=match):
            engine.run(b, [bad])
    with pytest.raises(InferenceInputError, match="takes 1 inputs"):
        engine.run(b, [x, x])
    with pytest.raises(InferenceInputError, match="exceeds the limit"):
        engine.run(b, [np.zeros((MAX_BATCH + 1, 8, 8), np.float32)])
