"""One-node cases of the batch plan's records for the ops that used to run their Python kernel between native
runs (quantize, dequantize, concat, slice, gather, cast, argmax, reshape copies, wide lookups, int16 adds,
broadcast pair lookups, where, flip_sign_bit, int16 layernorm, reduce, avgpool, depthwise conv): each runs as a record
(``native_nodes``) and gives the per-node path's bytes and the reference's, at batch 1 and 3, with 1 and 2
threads, and under every instruction set this CPU runs (a subprocess per set, ``OPML_NATIVE_ISA``). Inputs
include the values where the formulas turn: ties of the quantizer's rounding, +-inf, float32's integer
limits, int32 values beyond 2^24, negative and repeated indices, ties of argmax, windows half in the
padding. Data errors (NaN, an index out of range) raise the per-node path's named error from the plan too.

The hypothesis suites (``test_engine_reference*.py``) also run every op through ``engine.run``, so through
these records.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from opml import engine, native
from opml.bundle import Bundle, DType, Node
from opml.errors import InferenceInputError
from opml.ops import REDUCE_MAX, REDUCE_MEAN, REDUCE_SUM
from opml.parallel import set_worker_count
from opml.reference import run_reference

sys.path.insert(0, str(Path(__file__).parent))
from engine_cases import act, attrs_of, const, one_node  # noqa: E402
from native_child import child_hash  # noqa: E402
from test_plan import assert_same, digest, needs_plan, run_both  # noqa: E402

INT8, UINT8, INT16, INT32, INT64, F32, BOOL = (DType.INT8, DType.UINT8, DType.INT16, DType.INT32, DType.INT64,
                                               DType.FLOAT32, DType.BOOL)
Case = tuple[str, Bundle, list[np.ndarray]]


@pytest.fixture(autouse=True)
def _plans_default() -> object:
    yield
    engine.set_batch_plans(None)
    set_worker_count(None)


def _floats(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Random values, exact ties of x / scale, +-inf, float32's extremes and the int32/int64 limits."""
    x = (rng.standard_normal(shape) * 300).astype(np.float32)
    flat = x.reshape(-1)
    special = np.array([np.inf, -np.inf, 3.4e38, -3.4e38, 2.0**31, -2.0**31, 2.0**63, -2.0**63, 255.5, -0.5,
                        0.5 * scale, 1.5 * scale, -2.5 * scale, 127.49, -128.5, 1e-40], dtype=np.float32)
    flat[: min(flat.size, special.size)] = special[: flat.size]
    return x


def cases() -> list[Case]:
    rng = np.random.default_rng(11)

    def ints(dt: np.dtype, *s: int, lo: int | None = None, hi: int | None = None) -> np.ndarray:
        info = np.iinfo(dt)
        return rng.integers(info.min if lo is None else lo, (info.max if hi is None else hi) + 1, size=s,
                            dtype=np.int64).astype(dt)

    out: list[Case] = []
    # quantize / dequantize
    for odt, zp in ((INT8, -3), (UINT8, 128)):
        x = _floats(rng, (3, 5, 7), 0.05)
        out.append((f"quantize {odt.name}", one_node(
            "quantize", [act("x", F32, x.shape, dyn=True)], act("y", odt, x.shape, 0.05, zp, dyn=True)), [x]))
    for dt, x in ((INT8, ints(np.int8, 3, 9)), (UINT8, ints(np.uint8, 3, 9)), (INT16, ints(np.int16, 3, 9)),
                  (INT32, ints(np.int32, 3, 9))):
        zp = {INT8: 5, UINT8: 130, INT16: -7, INT32: 1 << 20}[dt]
        out.append((f"dequantize {dt.name}", one_node(
            "dequantize", [act("x", dt, x.shape, 0.0371, zp, dyn=True)], act("y", F32, x.shape, dyn=True)), [x]))
    # concat (with a constant part), slice, gather, argmax
    a, c = ints(np.int16, 3, 2, 5), ints(np.int16, 3, 4, 5)
    tensors = (act("a", INT16, a.shape), const("c", c), act("y", INT16, (3, 6, 5)))
    out.append(("concat axis 1 with a constant", Bundle(tensors, (Node("concat", (0, 1), (2,),
                                                                        attrs_of("concat", {"axis": 1}), name="cat"),),
                                                         (0,), (2,), {}), [a]))
    xs = [ints(np.int8, 3, 4), ints(np.int8, 3, 1), ints(np.int8, 3, 7)]
    out.append(("concat axis -1", one_node("concat", [act(f"x{k}", INT8, x.shape, dyn=True) for k, x in enumerate(xs)],
                                           act("y", INT8, (3, 12), dyn=True), axis=-1), xs))
    x = ints(np.int32, 3, 6, 7, 5)
    for starts, ends, steps, shape in (((0, 5, 1, 0), (1 << 62, -1 << 62, 7, 5), (1, -2, 3, 1), (3, 3, 2, 5)),
                                       ((0, 1, -1), (1 << 62, 5, -1 << 62), (1, 1, -2), (3, 4, 4, 5)),
                                       ((0, -3), (1 << 62, 100), (1, 1), (3, 3, 7, 5))):
        out.append((f"slice {steps}", one_node("slice", [act("x", INT32, x.shape, dyn=True)],
                                               act("y", INT32, shape, dyn=True), starts=starts, ends=ends,
                                               steps=steps), [x]))
    x = ints(np.int8, 3, 5, 4, 1)  # a trailing unit dimension: one block copy, a tiled transpose
    out.append(("slice of everything", one_node("slice", [act("x", INT8, x.shape, dyn=True)],
                                                act("y", INT8, x.shape, dyn=True), starts=(0, 0, 0, 0),
                                                ends=(1 << 62, 5, 4, 1), steps=(1, 1, 1, 1)), [x]))
    for dt, t, perm in ((INT8, x, (0, 2, 1, 3)), (INT16, ints(np.int16, 3, 17, 33), (0, 2, 1)),
                        (INT64, ints(np.int64, 3, 4, 5), (0, 2, 1)),
                        (UINT8, ints(np.uint8, 3, 1, 6, 1, 7), (0, 4, 2, 3, 1))):
        out.append((f"transpose {dt.name} {perm}", one_node(
            "transpose", [act("x", dt, t.shape, dyn=True)], act("y", dt, tuple(t.shape[p] for p in perm), dyn=True),
            perm=perm), [t]))
    d = ints(np.uint8, 3, 6, 4)
    out.append(("gather constant indices", one_node(
        "gather", [act("d", UINT8, d.shape, dyn=True), const("i", np.array([[5, -1], [0, 0], [-6, 2]], np.int64))],
        act("y", UINT8, (3, 3, 2, 4), dyn=True), axis=1), [d]))
    idx = np.array([[3, -10, 9], [0, 0, -1]], np.int32)
    out.append(("gather runtime int32 indices", one_node(
        "gather", [const("d", ints(np.int16, 10, 3)), act("i", INT32, idx.shape, dyn=True)],
        act("y", INT16, (2, 3, 3), dyn=True), axis=0), [idx]))
    x = ints(np.int8, 3, 5, 4, lo=-2, hi=2)  # many ties
    for axis, keep, last in ((1, 0, 0), (1, 1, 1), (-1, 0, 1), (2, 1, 0)):
        shape = list(x.shape)
        if keep:
            shape[axis] = 1
        else:
            del shape[axis]
        out.append((f"argmax axis {axis} keep {keep} last {last}", one_node(
            "argmax", [act("x", INT8, x.shape, dyn=True)], act("y", INT64, tuple(shape), dyn=True), axis=axis,
            keepdims=keep, select_last_index=last), [x]))
    # cast: every kind pair that matters
    srcs = {INT8: ints(np.int8, 3, 8), UINT8: ints(np.uint8, 3, 8), INT32: ints(np.int32, 3, 8),
            INT64: ints(np.int64, 3, 8), F32: _floats(rng, (3, 8), 1.0), BOOL: ints(np.int8, 3, 8, lo=0, hi=1) > 0}
    srcs[INT32][0, :3] = [(1 << 24) + 1, (1 << 31) - 1, -(1 << 31)]
    for src, x in srcs.items():
        for dst in (INT8, UINT8, INT16, INT32, INT64, F32, BOOL):
            if src != dst:
                out.append((f"cast {src.name} -> {dst.name}", one_node(
                    "cast", [act("x", src, x.shape, dyn=True)], act("y", dst, x.shape, dyn=True)), [x]))
    # lookups: a wide (int32) table, an int16 add, broadcast pair lookups
    x = ints(np.int8, 3, 10)
    out.append(("lut int8 -> int32", one_node("lut", [act("x", INT8, x.shape, 0.1, 0, dyn=True),
                                                      const("t", ints(np.int32, 256))],
                                              act("y", INT32, x.shape, dyn=True)), [x]))
    a, b = ints(np.int16, 3, 4, 6), ints(np.int8, 6)
    out.append(("add int16 (wide)", one_node(
        "add", [act("a", INT16, a.shape, 0.01, -3, dyn=True), const("b", b, 0.1, 2)], act("y", INT16, a.shape, 0.01, 1,
                                                                                      dyn=True),
        a_mult=1 << 29, b_mult=5 << 28, shift=30, qmin=-32768, qmax=32767), [a]))
    for ashape, bshape in (((3, 4, 1), (3, 4, 6)), ((3, 5, 1, 1), (3, 5, 3, 3)), ((3, 1, 6), (3, 4, 1)),
                           ((3, 300, 1), (3, 300, 300))):
        a, b = ints(np.int8, *ashape), ints(np.uint8, *bshape)
        shape = np.broadcast_shapes(ashape, bshape)
        for first in (True, False):
            ins = [act("a", INT8, ashape, 0.1, 1, dyn=True), act("b", UINT8, bshape, 0.05, 128, dyn=True)]
            vals = [a, b]
            if not first:
                ins, vals = ins[::-1], vals[::-1]
            if first or ashape[1] != 300:
                out.append((f"mul {ins[0].shape} x {ins[1].shape}", one_node(
                    "mul", ins, act("y", INT8, shape, 0.2, -1, dyn=True), mult=1 << 30, shift=33, qmin=-128, qmax=127),
                    vals))
    # where: a mask broadcast over rows, a scalar branch
    cond, a = ints(np.int8, 3, 1, 5, lo=0, hi=1).astype(np.bool_), ints(np.int16, 3, 4, 5)
    out.append(("where", one_node("where", [act("c", BOOL, cond.shape, dyn=True), act("a", INT16, a.shape, dyn=True),
                                            const("b", np.array(-7, np.int16))], act("y", INT16, a.shape, dyn=True)),
                 [cond, a]))
    cond8 = ints(np.uint8, 4, 5, lo=0, hi=2)
    out.append(("where uint8 condition", one_node(
        "where", [const("c", cond8), const("a", ints(np.int8, 5)), act("b", INT8, (3, 4, 5), dyn=True)],
        act("y", INT8, (3, 4, 5), dyn=True)), [ints(np.int8, 3, 4, 5)]))
    for src, dst in ((INT8, UINT8), (UINT8, INT8)):
        x = ints(src.np, 3, 7)
        out.append((f"flip_sign_bit {src.name}", one_node("flip_sign_bit", [act("x", src, x.shape, 0.1, 0, dyn=True)],
                                                           act("y", dst, x.shape, 0.1, 128, dyn=True)), [x]))
    # an int16 layernorm (its dtype's bound; the Python kernel uses the data's)
    x = ints(np.int16, 3, 4, 24)
    x[0, 0, :3] = [-32768, 32767, 0]
    out.append(("layernorm int16", one_node(
        "layernorm", [act("x", INT16, x.shape, 0.01, 0, dyn=True), const("g", ints(np.int32, 24, lo=-9999, hi=9999)),
                      const("b", ints(np.int32, 24, lo=-99999, hi=99999))], act("y", INT8, x.shape, 0.05, 2, dyn=True),
        eps=3, frac_bits=10, mult=1 << 28, shift=40, qmin=-128, qmax=127), [x]))
    # reduce, avgpool, depthwise conv
    x = ints(np.uint8, 3, 5, 4, 6)
    for mode, axes, keep in ((REDUCE_MEAN, (2, 3), 1), (REDUCE_SUM, (1,), 0), (REDUCE_MAX, (3,), 0),
                             (REDUCE_MEAN, (1, 2), 0)):
        shape = tuple(1 if d in [a % 4 for a in axes] else v for d, v in enumerate(x.shape)) if keep else tuple(
            v for d, v in enumerate(x.shape) if d not in [a % 4 for a in axes])
        out.append((f"reduce mode {mode} axes {axes}", one_node(
            "reduce", [act("x", UINT8, x.shape, 0.1, 120, dyn=True)], act("y", UINT8, shape, 0.1, 7, dyn=True),
            mode=mode, axes=axes, keepdims=keep, mult=1 << 29, shift=31), [x]))
    x16 = ints(np.int16, 3, 5, 4)
    out.append(("reduce max int16", one_node("reduce", [act("x", INT16, x16.shape, dyn=True)],
                                             act("y", INT16, (3, 4), dyn=True), mode=REDUCE_MAX, axes=(1,),
                                             keepdims=0, mult=1, shift=0), [x16]))
    x = ints(np.int8, 3, 4, 7, 9)
    for incl in (0, 1):
        out.append((f"avgpool include pad {incl}", one_node(
            "avgpool", [act("x", INT8, x.shape, 0.1, -2, dyn=True)], act("y", INT8, (3, 4, 4, 4), 0.1, 3, dyn=True),
            kernel=(3, 3), strides=(2, 3), pads=(1, 2, 2, 1), count_include_pad=incl, mult=3 << 28, shift=30), [x]))
    x = ints(np.uint8, 3, 8, 9, 9)
    w = ints(np.int8, 8, 1, 3, 3)
    out.append(("depthwise conv", one_node(
        "conv", [act("x", UINT8, x.shape, 0.05, 3, dyn=True), const("w", w), const("b", ints(np.int32, 8, lo=-999,
                                                                                              hi=999)),
                 const("m", np.full(8, 1 << 29, np.int32)), const("s", np.full(8, 37, np.int32))],
        act("y", INT8, (3, 8, 5, 5), 0.1, 0, dyn=True), pads=(1, 1, 1, 1), strides=(2, 2), dilations=(1, 1), group=8,
        qmin=-128, qmax=127), [x]))
    return out


CASES = cases()


def _inputs(b: Bundle, xs: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """The case's inputs cut to ``batch`` along their dynamic leading axis."""
    return [x[:batch] if s.shape and s.shape[0] < 0 else x for s, x in zip(b.input_specs(), xs, strict=True)]


@needs_plan
@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_record_equals_per_node_and_reference(case: int) -> None:
    name, b, xs = CASES[case]
    for batch in (1, 3):
        ins = _inputs(b, xs, batch)
        with np.errstate(all="ignore"):
            want = run_reference(b, ins)
        for n in (1, 2):
            set_worker_count(n)
            per_node, planned = run_both(b, ins)
            assert_same(per_node, planned, f"{name} batch {batch} threads {n}")
            assert_same(want, planned, f"{name} batch {batch} reference")
        bp = engine.batch_plan_for(engine.get_plan(b), batch)
        assert bp is not None and bp.native_nodes == len(b.nodes), f"{name}: ran in Python"


@needs_plan
def test_reshape_of_a_constant_is_a_copy_record() -> None:
    """A reshape whose input is a constant cannot alias it: one copy record, then the pair lookup."""
    c = np.arange(12, dtype=np.int8).reshape(3, 4)
    tensors = (act("x", INT8, (-1, 12), 0.1, 0), const("c", c, 0.1, 0), act("r", INT8, (12,), 0.1, 0),
               act("y", INT8, (-1, 12), 0.1, 0))
    nodes = (Node("reshape", (1,), (2,), (), name="r"),
             Node("add", (0, 2), (3,), attrs_of("add", {"a_mult": 1 << 20, "b_mult": 1 << 20, "shift": 20,
                                                         "qmin": -128, "qmax": 127}), name="add"))
    b = Bundle(tensors, nodes, (0,), (3,), {})
    x = np.arange(-36, 36, dtype=np.int8).reshape(6, 12)
    per_node, planned = run_both(b, [x])
    assert_same(per_node, planned, "reshape of a constant")
    bp = engine.batch_plan_for(engine.get_plan(b), 6)
    assert bp is not None and bp.native_nodes == 2


@needs_plan
def test_data_errors_are_the_per_node_errors() -> None:
    """NaN into quantize or a float -> int cast, an index out of range: the plan's record stops, and the node's
    own kernel raises its named error; the plan runs correctly afterwards."""
    q = one_node("quantize", [act("x", F32, (-1, 3))], act("y", INT8, (-1, 3), 0.1, 0))
    long = one_node("quantize", [act("x", F32, (-1, 100))], act("y", UINT8, (-1, 100), 0.1, 9))  # vector loop
    cst = one_node("cast", [act("x", F32, (-1, 3))], act("y", INT32, (-1, 3)))
    g = one_node("gather", [const("d", np.arange(6, dtype=np.int8)), act("i", INT64, (-1, 2))], act("y", INT8, (-1, 2)),
                 axis=0)
    bad = {id(q): np.array([[1.0, np.nan, 2.0]], np.float32), id(cst): np.array([[np.nan, 0, 1]], np.float32),
           id(g): np.array([[0, 6]], np.int64), id(long): np.linspace(-30, 30, 100, dtype=np.float32)[None]}
    bad[id(long)][0, 45] = np.nan
    good = {id(q): np.array([[1.0, 2.5, -3.5]], np.float32), id(cst): np.array([[1.5, -2.5, 7]], np.float32),
            id(g): np.array([[-6, 5]], np.int64), id(long): np.linspace(-30, 30, 100, dtype=np.float32)[None]}
    for b, match in ((q, "NaN"), (cst, "NaN"), (g, "out of range"), (long, "NaN")):
        messages = []
        for on in (False, True):
            engine.set_batch_plans(on)
            with pytest.raises(InferenceInputError, match=match) as err:
                engine.run(b, [bad[id(b)]])
            messages.append(str(err.value))
        assert messages[0] == messages[1]
        per_node, planned = run_both(b, [good[id(b)]])
        assert_same(per_node, planned, f"{b.nodes[0].op} after the error")
        bp = engine.batch_plan_for(engine.get_plan(b), 1)
        assert bp is not None and bp.native_nodes == 1


CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from test_plan_ops import CASES, _inputs, digest
from opml import engine, native
outs = []
for name, b, xs in CASES:
    for batch in (1, 3):
        outs += engine.run(b, _inputs(b, xs, batch))
        bp = engine.batch_plan_for(engine.get_plan(b), batch)
        assert bp is not None and bp.native_nodes == len(b.nodes), name
print(native.describe())
print("HASH " + digest(outs))
"""


@needs_plan
@pytest.mark.parametrize("isa", native.ISAS)
def test_records_under_each_instruction_set(isa: str) -> None:
    if isa not in native.cpu_isas():
        pytest.skip(f"this CPU lacks {native.CPU_FLAGS.get(isa, isa)}")
    engine.set_batch_plans(False)
    outs: list[np.ndarray] = []
    for _, b, xs in CASES:
        for batch in (1, 3):
            outs += engine.run(b, _inputs(b, xs, batch))
    desc, got = child_hash(CHILD, {"OPML_NATIVE_ISA": isa, "OPML_PLAN": "1", "OPML_THREADS": "2"})
    assert f"loaded ({isa})" in desc
    assert got == "HASH " + digest(outs), f"plan with {desc}"
