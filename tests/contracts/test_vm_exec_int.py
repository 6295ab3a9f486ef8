"""``LibExecInt`` (the Solidity integer executor) against ``fraud_vm.isa.execute``.

The compiled library runs inside py-evm through ``ExecHarness.exec(Instr, Regs, StepMemory)`` and
must give, for every integer instruction kind, the same registers, the same written words, the same
touched words, or the same named error (revert selector == ``fraud_vm.errors`` class name), on:

- every integer step of every vector in ``tests/vectors/fraud_vm`` (positive and failure witnesses:
  a failure whose error is raised by the instruction must revert with exactly that error);
- steps of example-model nodes (every step of small nodes, sampled steps of big ones), with the
  words the step touches (``fraud_vm.vm.prove_step``);
- hypothesis-drawn instructions per kind over random regions, words and registers, with extreme
  immediates (int64/int256 edges, shifts 0/1/62/63/255/256, huge multipliers and zero points),
  operands outside their region, PAD where a value is needed and words missing from the witness.

The Python side runs ``execute`` over the same words as ``verify_step`` does: a word the witness
lacks is ``WordNotInWitness``, an unnamed ``InvalidStep`` is ``ElementOutOfRange``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pinned_hypothesis import no_local_constants  # noqa: F401 (autouse: examples independent of the imports)

from fraud_vm import errors as E
from fraud_vm import isa as I
from fraud_vm import stepper
from fraud_vm.context import decode_context
from fraud_vm.isa import PAD, Instr, Kind, Regs, execute
from fraud_vm.memory import Region, StepAccess
from fraud_vm.state import I64_MAX, I64_MIN, I256_MAX, I256_MIN, LANES, N_SCALARS, decode_state
from fraud_vm.trace import NodeTrace
from fraud_vm.vm import StepWitness, prove_step
from opml.bundle import DType, load_bundle
from opml.engine import get_plan

ROOT = Path(__file__).resolve().parents[2]
VEC_DIR = ROOT / "tests" / "vectors" / "fraud_vm"
FLOAT_KINDS = {Kind.QUANT, Kind.DEQUANT, Kind.CAST}
INT_KINDS = [k for k in Kind if k not in FLOAT_KINDS]
PAD_WORD = (1 << 256) - 1
_NAMES = E.ERROR_NAMES
EXEC_ERRORS = {*_NAMES[_NAMES.index("ArithmeticOverflow") : _NAMES.index("ValueOutOfRange") + 1], "WordNotInWitness"}
"""The errors an instruction's execution raises (``docs/fraud_vm.md`` "verify_step", step 7)."""

Words = dict[tuple[int, int], bytes]
OUTCOMES: Counter[tuple[str, str]] = Counter()
"""(kind, error name or "ok") -> count, over this module's comparisons."""


# ------------------------------------------------------------------------------------------------
# the two executors


@dataclass(frozen=True)
class Outcome:
    """The result of one step: registers and words after it (touched/written flags), or an error."""

    error: str | None
    regs: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None
    values: tuple[bytes, ...] = ()
    touched: tuple[bool, ...] = ()
    written: bool = False


def python_exec(ins: Instr, regions: Sequence[Region], words: Words, regs: Regs) -> Outcome:
    """``fraud_vm.isa.execute`` over the witness words, with ``verify_step``'s error naming."""

    def fetch(r: int, w: int) -> bytes:
        if (r, w) not in words:
            raise E.WordNotInWitness(f"word {w} of region {r}")
        return words[(r, w)]

    access = StepAccess(regions, fetch)
    try:
        execute(ins, regs, access)
    except E.FraudVMError as e:
        return Outcome(type(e).__name__ if E.is_named(e) else "ElementOutOfRange")
    addrs = sorted(words)
    values = tuple(access.written.get(a, words[a]) for a in addrs)
    return Outcome(None, regs.frozen(), values, tuple(a in access.before for a in addrs), bool(access.written))


def pack(op: tuple[int, int]) -> int:
    return PAD_WORD if op == PAD else (op[0] << 128) | op[1]


def instr_abi(ins: Instr) -> tuple[Any, ...]:
    return (int(ins.kind), list(ins.out), [pack(o) for o in ins.a], [pack(o) for o in ins.b],
            [pack(o) for o in ins.c], list(ins.imm))


def memory_abi(regions: Sequence[Region], words: Words) -> tuple[Any, ...]:
    regs = [(list(r.header), int(r.dtype), r.itemsize, r.nbytes, r.n_words, r.depth) for r in regions]
    addrs = sorted(words)
    # hint: every region's lookup starts at word 0 (any hint gives the same answers)
    return (regs, [(r << 64) | w for r, w in addrs], [words[a] for a in addrs], [False] * len(addrs), False,
            [0] * len(regions))


def solidity_exec(harness: Any, ins: Instr, regions: Sequence[Region], words: Words,
                  regs: Regs) -> Outcome:
    """``ExecHarness.exec`` on the same inputs; a revert is named by its selector."""
    s, acc, aux = regs.frozen()
    res = harness.call("exec", instr_abi(ins), (list(s), list(acc), list(aux)), memory_abi(regions, words))
    if not res.ok:
        cls = E.error_from_selector(res.output)
        if cls is not None:
            return Outcome(cls.__name__)
        return Outcome("NotAnIntegerKind" if res.error and res.error[0] == "NotAnIntegerKind"
                       else f"raw revert 0x{res.output.hex()}")
    (rs, racc, raux), (_, _, values, touched, written, _) = res.values
    return Outcome(None, (tuple(rs), tuple(racc), tuple(raux)), tuple(bytes(v) for v in values),
                   tuple(touched), written)


def check_same(harness: Any, ins: Instr, regions: Sequence[Region], words: Words,
               pre: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]) -> Outcome:
    """Both executors from the same pre-registers; they must agree exactly. Returns Python's outcome."""
    want = python_exec(ins, regions, words, Regs(*pre))
    got = solidity_exec(harness, ins, regions, words, Regs(*pre))
    assert got == want, f"{ins.kind.name}: solidity {got} != python {want}\ninstr {ins.to_json()}\nregs {pre}"
    OUTCOMES[(ins.kind.name, want.error or "ok")] += 1
    return want


@pytest.fixture(scope="module")
def harness(prague: Any) -> Any:
    return prague.deploy("ExecHarness")


# ------------------------------------------------------------------------------------------------
# vectors and example models


def _witness_case(w: StepWitness) -> tuple[Instr, list[Region], Words, Any] | None:
    """(instruction, regions, words, pre-registers) of a witness whose state and context decode and
    whose step is an integer instruction; None otherwise."""
    try:
        state = decode_state(w.pre_state)
        ctx = decode_context(w.context)
        if state.step >= stepper.num_steps(ctx):
            return None
        ins = stepper.instr_at(ctx, state.step)
    except E.FraudVMError:
        return None
    if ins.kind in FLOAT_KINDS:
        return None
    regions = ctx.regions
    words = {(r, i): v for r, i, v in w.words if 0 <= r < len(regions) and 0 <= i < regions[r].n_words}
    return ins, regions, words, (state.scalars, state.acc, state.aux)


def _vector_cases() -> list[tuple[str, StepWitness, str | None]]:
    cases: list[tuple[str, StepWitness, str | None]] = []
    for p in sorted(VEC_DIR.glob("*.json")):
        doc = json.loads(p.read_text())
        for v in doc["vectors"]:
            cases.append((f"{p.stem}/{v['step']}", StepWitness.from_json(v["witness"]), None))
        for f in doc["failures"]:
            try:
                w = StepWitness.decode(bytes.fromhex(f["witness_calldata"][2:]))
            except E.MalformedWitness:
                continue
            cases.append((f"{p.stem}/{f['name']}", w, f["error"]))
    return cases


def test_vectors_match_python(harness: Any) -> None:
    kinds, failures = set(), 0
    for name, w, error in _vector_cases():
        case = _witness_case(w)
        if case is None:
            continue
        ins, regions, words, pre = case
        out = check_same(harness, ins, regions, words, pre)
        kinds.add(ins.kind)
        if error in EXEC_ERRORS:
            assert out.error == error, f"{name}: {out.error} != {error}"
            failures += 1
    assert kinds == set(INT_KINDS), f"vectors lack {sorted(k.name for k in set(INT_KINDS) - kinds)}"
    assert failures >= 10


MODELS = {"digits_mlp": 1, "digits_cnn": 1, "encoder": 1}
SCAN_LIMIT = 600  # steps of a node scanned for the first step of each kind


def _traces(name: str, batch: int) -> list[NodeTrace]:
    b = load_bundle(str(ROOT / "models" / name / "model.bundle"))
    x = np.load(ROOT / "models" / name / "test_x.npy")[:batch]
    plan = get_plan(b)
    env = {b.inputs[0]: x}
    out = []
    for j, (node, kernel) in enumerate(zip(b.nodes, plan.kernels, strict=True)):
        out.append(NodeTrace(b, j, dict(env)))
        env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
    return out


def _sampled_steps(tr: NodeTrace, rng: random.Random) -> list[int]:
    """The first step of each instruction kind of the node (scanning at most ``SCAN_LIMIT``
    steps), its last step and one random step."""
    n = tr.num_steps
    first: dict[Kind, int] = {}
    for k in range(min(n, SCAN_LIMIT)):
        first.setdefault(stepper.instr_at(tr.context, k).kind, k)
    return sorted({*first.values(), n - 1, rng.randrange(n)})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_steps_match_python(harness: Any, name: str) -> None:
    """One node per op of each example model (the first), at its sampled steps."""
    rng = random.Random(f"exec-int-{name}")
    ops: set[str] = set()
    for tr in _traces(name, MODELS[name]):
        if tr.context.node.op in ops:
            continue
        ops.add(tr.context.node.op)
        for k in _sampled_steps(tr, rng):
            state, mem = tr.state_at(k), tr.memory_at(k)
            ins = stepper.instr_at(tr.context, k)
            if ins.kind in FLOAT_KINDS:
                continue
            w = prove_step(state, mem)
            words = {(r, i): v for r, i, v in w.words}
            out = check_same(harness, ins, tr.context.regions, words, (state.scalars, state.acc, state.aux))
            assert out.error is None, f"node {tr.node_index} step {k}: {out.error}"


# ------------------------------------------------------------------------------------------------
# hypothesis: random instructions per kind

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
EDGES = [0, 1, -1, 2, 7, 8, 16, 30, 31, 32, 61, 62, 63, 64, 127, 128, 255, 256, 257, I32_MIN, I32_MAX,
         1 << 30, I64_MIN, I64_MAX, I64_MIN + 1, 1 << 62, 1 << 127, -(1 << 127), 1 << 200, I256_MAX, I256_MIN,
         I256_MAX - 1, I256_MIN + 1, 1 << 254, -(1 << 254)]
SHIFTS = [-1, 0, 1, 2, 16, 30, 31, 40, 61, 62, 63, 64, 200, 254, 255, 256, 1 << 64, I256_MIN]

small = st.integers(-300, 300)
imm_any = st.one_of(small, st.sampled_from(EDGES), st.integers(I64_MIN, I64_MAX), st.integers(I256_MIN, I256_MAX))
imm_shift = st.one_of(st.integers(1, 62), st.sampled_from(SHIFTS))
imm_flag = st.sampled_from([0, 1, 1, -1, 2, I256_MIN])
lane_any = st.one_of(small, st.sampled_from([v for v in EDGES if I64_MIN <= v <= I64_MAX]),
                     st.integers(I64_MIN, I64_MAX))
scalar_any = st.one_of(small, st.integers(-(1 << 40), 1 << 40), st.sampled_from(EDGES), st.integers(I256_MIN, I256_MAX))
byte_patterns = st.sampled_from([0, 1, 2, 3, 0x7F, 0x80, 0xFE, 0xFF])
word_st = st.one_of(st.binary(min_size=32, max_size=32), st.lists(byte_patterns, min_size=32, max_size=32).map(bytes),
                    st.lists(st.integers(0, 3), min_size=32, max_size=32).map(bytes))


TABLE_KINDS = {Kind.LUT, Kind.SM_SUM, Kind.SM_OUT}


@st.composite
def layouts(draw: Any, kind: Kind) -> tuple[list[Region], Words]:
    """1-3 input regions and an output region of random dtypes and sizes, with every word present
    (sometimes one dropped: ``WordNotInWitness``); often one dtype for most regions, so values fit
    the output. For the table kinds, region 0 is a 256-entry
    table and region 1 an int8 input, so indices land inside the table as often as outside."""
    n_in = draw(st.integers(2 if kind in TABLE_KINDS | {Kind.GATHER} else 1, 3))
    same = draw(st.sampled_from([None, *DType]))  # half the layouts: one dtype everywhere
    regions = []
    for r in range(n_in + 1):
        dt = draw(st.sampled_from(list(DType))) if same is None or draw(st.integers(0, 1)) else same
        n = draw(st.integers(1, 40))
        if kind in TABLE_KINDS and r == 0:
            dt, n = draw(st.sampled_from([DType.INT8, DType.UINT8, DType.INT32])), 256
        elif kind in TABLE_KINDS and r == 1 and draw(st.integers(0, 4)):
            dt = DType.INT8
        elif kind == Kind.GATHER and r == 1:
            dt = draw(st.sampled_from([DType.INT8, DType.INT16, DType.INT32, DType.INT64]))
        regions.append(Region((int(dt), 1, n), dt, n * dt.itemsize))
    small_words = st.lists(st.integers(0, 3), min_size=32, max_size=32).map(bytes)
    words = {(r, w): draw(small_words if kind == Kind.GATHER and r == 1 and draw(st.integers(0, 3)) else word_st)
             for r, reg in enumerate(regions) for w in range(reg.n_words)}
    if draw(st.integers(0, 9)) == 0:
        del words[draw(st.sampled_from(sorted(words)))]
    return regions, words


def operand(draw: Any, regions: Sequence[Region], prefer: int | None = None, pad: int = 1) -> tuple[int, int]:
    """Mostly an element inside an input region (``prefer`` three times in four, if given);
    sometimes (about 1 in 100 each) PAD (``pad`` in 100), outside its region, in no region; 2 in 100
    in the output region (read after this step's writes)."""
    choice = draw(st.integers(0, 99))
    if choice < pad:
        return PAD
    choice = max(choice - pad + 1, 1)
    if prefer is not None and choice >= 25:
        return (prefer, draw(st.integers(0, regions[prefer].nbytes // regions[prefer].itemsize - 1)))
    if choice == 1:
        return (len(regions) + draw(st.integers(0, 2)), 0)
    r = len(regions) - 1 if choice in (3, 4) else draw(st.integers(0, len(regions) - 2))
    size = regions[r].nbytes // regions[r].itemsize
    if choice == 2:
        return (r, size + draw(st.integers(0, 3)))
    return (r, draw(st.integers(0, size - 1)))


def out_index(draw: Any, regions: Sequence[Region]) -> int:
    size = regions[-1].nbytes // regions[-1].itemsize
    return draw(st.integers(0, size)) if draw(st.integers(0, 29)) == 0 else draw(st.integers(0, size - 1))


def table_region(draw: Any, regions: Sequence[Region]) -> int:
    """Mostly region 0 (the table); 1 in 5 another region, the output, or none."""
    if draw(st.integers(0, 4)):
        return 0
    return draw(st.sampled_from([*range(1, len(regions) - 1), -1, len(regions) - 1, len(regions), 1 << 64]))


def imm_for(draw: Any, kind: Kind, regions: Sequence[Region]) -> tuple[int, ...]:
    a, sh, fl = imm_any, imm_shift, imm_flag
    lo, hi = I._RANGE[regions[-1].dtype]
    bounds = st.one_of(st.just((lo, hi)), st.just((lo, hi)), st.tuples(small, small),
                       st.tuples(*[st.sampled_from([-128, 127, 0, 255, I32_MIN, I32_MAX, I64_MIN, I64_MAX])] * 2))
    qlo, qhi = draw(bounds)
    bound = st.just(qlo)
    qmax = st.just(qhi)
    specs: dict[Kind, list[Any]] = {
        Kind.NOP: [], Kind.MAC: [a, a], Kind.ACC_SUM: [a], Kind.ACC_SQ: [a], Kind.ACC_MAX: [fl, a],
        Kind.ACC_ARG: [st.one_of(st.integers(0, 40), a), fl], Kind.FIN_REQ: [a, bound, qmax, fl, a, sh],
        Kind.FIN_DIV: [a, st.one_of(st.integers(0, 40), sh), a, bound, qmax, fl, st.one_of(st.integers(-2, 40), a),
                       fl],
        Kind.FIN_MOVE: [fl], Kind.ADD: [a, a, a, a, sh, a, bound, qmax], Kind.MUL: [a, a, a, sh, a, bound, qmax],
        Kind.LUT: [None, st.sampled_from([128, 128, 128, 0, 127, 129, -1, I256_MAX, I256_MIN])],
        Kind.COPY: [], Kind.FLIP: [],
        Kind.WHERE: [st.sampled_from([*range(1, 8), *range(1, 8), 0, 8, -1, 1 << 200])],
        Kind.GATHER: [st.one_of(st.integers(4, 50), st.integers(-2, 50), a), st.one_of(st.integers(-1, 2), a)],
        Kind.SM_MAX: [fl], Kind.SM_SUM: [None], Kind.SM_OUT: [None, a, bound, qmax, fl],
        Kind.LN_SUM: [], Kind.LN_VAR: [st.one_of(st.integers(-2, 64), a)],
        Kind.LN_DEN: [st.one_of(st.integers(-2, 64), a), st.one_of(st.integers(0, 2000), a)],
        Kind.LN_OUT: [st.one_of(st.integers(-2, 64), a), st.one_of(st.integers(-10, 20), sh), a, sh, a, bound, qmax,
                      fl],
    }
    return tuple(table_region(draw, regions) if s is None else draw(s) for s in specs[kind])


@st.composite
def cases(draw: Any, kind: Kind) -> tuple[Instr, list[Region], Words, Any]:
    regions, words = draw(layouts(kind))
    prefer = 1 if kind in TABLE_KINDS | {Kind.GATHER} else None
    pad = 20 if kind in {Kind.MAC, Kind.ACC_SUM, Kind.ACC_SQ, Kind.ACC_MAX} else 1  # PAD lanes are skipped
    n = LANES if draw(st.integers(0, 7)) == 0 else draw(st.integers(1 if kind == Kind.SM_MAX else 0, 6))

    def ops() -> tuple[tuple[int, int], ...]:
        return tuple(operand(draw, regions, prefer, pad) for _ in range(n))

    out = tuple(out_index(draw, regions) for _ in range(n))
    lane_kinds = {Kind.MAC, Kind.ACC_SUM, Kind.ACC_SQ, Kind.ACC_MAX, Kind.ACC_ARG}
    rows = {Kind.SM_MAX, Kind.SM_SUM, Kind.LN_SUM, Kind.LN_VAR}
    a: tuple[tuple[int, int], ...] = ()
    b, c = a, a
    if kind in {Kind.MAC, Kind.ADD, Kind.MUL, Kind.GATHER}:
        a, b = ops(), ops()
    elif kind in {Kind.FIN_REQ, Kind.WHERE, Kind.LN_OUT}:
        a, b, c = ops(), ops(), ops()
        if kind == Kind.FIN_REQ:  # per-channel multiplier/shift operands are rare
            b = tuple(x if draw(st.integers(0, 3)) == 0 else PAD for x in b)
            c = tuple(x if draw(st.integers(0, 3)) == 0 else PAD for x in c)
    elif kind not in {Kind.NOP, Kind.FIN_DIV, Kind.FIN_MOVE, Kind.LN_DEN}:
        a = ops()
    if kind in lane_kinds or kind in rows or kind in {Kind.NOP, Kind.LN_DEN}:
        out = ()
    ins = Instr(kind, out, a, b, c, imm_for(draw, kind, regions))
    s = tuple(draw(scalar_any) for _ in range(N_SCALARS))
    if kind in TABLE_KINDS and draw(st.integers(0, 2)):
        s = (127, *s[1:])  # a row maximum of int8 inputs: every index s0 - A lies in [0, 255]
    acc = tuple(draw(lane_any) for _ in range(LANES))
    aux = tuple(draw(st.one_of(st.integers(-2, 40), lane_any)) for _ in range(LANES))
    return ins, regions, words, (s, acc, aux)


@pytest.mark.parametrize("kind", INT_KINDS, ids=lambda k: k.name)
def test_random_instructions_match_python(harness: Any, kind: Kind) -> None:
    @settings(max_examples=15, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(cases(kind))
    def run(case: tuple[Instr, list[Region], Words, Any]) -> None:
        check_same(harness, *case)

    OUTCOMES.clear()
    run()
    seen = {what for (_, what) in OUTCOMES}
    print(f"\n{kind.name}", dict(sorted(Counter({w: n for (_, w), n in OUTCOMES.items()}).items())))
    # the draws reach both sides of the kind's checks: successful steps and named errors
    assert "ok" in seen and (kind == Kind.NOP or len(seen) > 1), seen


# ------------------------------------------------------------------------------------------------
# the checked helpers on edge values (one EVM call per helper)

HELPER_VALUES = sorted({*EDGES, *(-v for v in EDGES if v != I256_MIN), 3, 5, -5, 1 << 128, (1 << 128) - 1,
                        I64_MAX + 1, I64_MIN - 1, 1 << 32, 0x7F800000, 0x7F800001, 0xFF800000, 0x80000000,
                        0x80000001, 0xFFFFFFFF, 0x3F800000, 0xBF800000, 0x7FFFFFFF})
PAIR_VALUES = [0, 1, -1, 2, -2, 3, -5, 62, 63, 255, 256, I32_MIN, I32_MAX, I64_MIN, I64_MAX, 1 << 127,
               -(1 << 127), (1 << 128) - 1, 1 << 128, 1 << 254, -(1 << 254), I256_MAX, I256_MAX - 1, I256_MIN,
               I256_MIN + 1]
VALUE_PAIRS = [(a, b) for a in PAIR_VALUES for b in PAIR_VALUES]


def _py_floor_div(a: int, b: int) -> int:
    return a // b


def _py_cast_bool(v: int, dt: int) -> int:
    from fraud_vm.isa import _dtype, cast_value

    return int(bool(cast_value(v, _dtype(dt), DType.BOOL)))


HELPERS: list[tuple[int, str, Any, Any]] = [
    (0, "add", lambda a, b: I.i256(a + b), VALUE_PAIRS),
    (1, "sub", lambda a, b: I.i256(a - b), VALUE_PAIRS),
    (2, "mul", lambda a, b: I.i256(a * b), VALUE_PAIRS),
    (3, "floorDiv", _py_floor_div, [(a, b) for a, b in VALUE_PAIRS if b > 0]),
    (4, "i64", I.i64, [(a,) for a in HELPER_VALUES]),
    (5, "shl", I.shl, [(a, s) for a in PAIR_VALUES for s in SHIFTS]),
    (6, "roundShift", I.round_shift, [(a, s) for a in PAIR_VALUES for s in SHIFTS]),
    (7, "roundDiv", I.round_div, VALUE_PAIRS),
    (8, "requant", I.requant, [(acc, m, s, zp, -128, 127) for acc in (0, -7, 1 << 40, I32_MIN - 5, I256_MIN)
                               for m in (1 << 30, -(1 << 30), I256_MAX, I256_MIN, (1 << 224) + (1 << 200),
                                         -(1 << 224) - 1, 1 << 223) for s in (0, 1, 31, 62, 63)
                               for zp in (0, -3, I256_MAX, I256_MIN)]),
    (9, "isqrt", I.isqrt, [(a,) for a in HELPER_VALUES] + [(v * v + d,) for v in (3, 1 << 60, (1 << 127) + 5)
                                                           for d in (-1, 0, 1)]),
    (10, "orderKey", I.order_key, [(v, dt) for v in HELPER_VALUES if 0 <= v < 1 << 32 for dt in (1, 4, 6)]),
    (11, "clamp", I.clamp, [(v, lo, hi) for v in (-5, 0, 5, I256_MIN, I256_MAX) for lo, hi in ((-1, 1), (3, -3))]),
    (12, "castBool", _py_cast_bool, [(v, dt) for v in (0, 1, 0x80000000, 0x7F800000, 256, -1)
                                     for dt in (0, 1, 2, 6, 7, 8)]),
]


@pytest.mark.parametrize(("fn", "name", "py", "args"), HELPERS, ids=[h[1] for h in HELPERS])
def test_helpers_match_python(harness: Any, fn: int, name: str, py: Any, args: list[tuple[int, ...]]) -> None:
    """Every helper on a grid of edge values: the same value or the same named error."""
    res = harness.call("helpers", fn, [list(a) for a in args])
    assert res.ok, res
    values, errors = res.values
    for a, v, err in zip(args, values, errors, strict=True):
        try:
            want: Any = py(*a)
        except E.FraudVMError as e:
            want = type(e).__name__
        cls = E.error_from_selector(err) if err != bytes(4) else None
        got = v if err == bytes(4) else (cls.__name__ if cls else f"0x{err.hex()}")
        assert got == want, f"{name}{a}: solidity {got} != python {want}"


def test_float_kinds_are_not_executed(harness: Any) -> None:
    regions = [Region((6, 1, 1), DType.FLOAT32, 4), Region((1, 1, 1), DType.INT8, 1)]
    words = {(0, 0): bytes(32), (1, 0): bytes(32)}
    for kind in FLOAT_KINDS:
        ins = Instr(kind, (0,), ((0, 0),), (), (), (1, 0, -128, 127)[: 2 if kind != Kind.QUANT else 4])
        got = solidity_exec(harness, ins, regions, words, Regs((0,) * 4, (0,) * 32, (0,) * 32))
        assert got.error == "NotAnIntegerKind", (kind, got)



# ------------------------------------------------------------------------------------------------
# FIN_REQ's operand reuse (LibExecInt.finReq: a lane whose operand equals the previous lane's reuses
# its value unless the operand lies in the output region)


def _elements(values: Sequence[int], itemsize: int) -> dict[int, bytes]:
    """Region words holding ``values`` (little-endian, two's complement), 32 bytes each."""
    raw = b"".join((v % (1 << (8 * itemsize))).to_bytes(itemsize, "little") for v in values)
    raw += bytes(-len(raw) % 32)
    return {w: raw[32 * w: 32 * w + 32] for w in range(len(raw) // 32)}


def _fin_req_layout() -> tuple[list[Region], Words]:
    """bias (int32 x 4), multiplier (int32 x 4), shift (int32 x 4), output int32 x 16."""
    cols = [[7, -9, 1 << 20, -3], [1 << 30, 3 << 28, 1 << 29, 5 << 27], [31, 30, 33, 29],
            [11 * k - 60 for k in range(16)]]
    regions = [Region((int(DType.INT32), 1, len(v)), DType.INT32, 4 * len(v)) for v in cols]
    words = {(r, w): b for r, v in enumerate(cols) for w, b in _elements(v, 4).items()}
    return regions, words


FIN_REQ_CASES = {
    # (a, b, c per lane; out; raw): conv-like, every lane the same channel
    "one_channel": ([(0, 1)] * 8, [(1, 1)] * 8, [(2, 1)] * 8, tuple(range(8)), 0),
    # a block straddling channels, and back: A A B B A (reuse only from the previous lane)
    "straddle": ([(0, 0), (0, 0), (0, 2), (0, 2), (0, 0)], [(1, 0), (1, 0), (1, 2), (1, 2), (1, 0)],
                 [(2, 3), (2, 3), (2, 1), (2, 1), (2, 3)], (0, 1, 2, 3, 4), 0),
    # PAD between equal operands
    "pad_between": ([(0, 3), PAD, (0, 3)], [(1, 2), PAD, (1, 2)], [PAD, (2, 0), (2, 0)], (5, 6, 7), 0),
    # the same output element read by every lane while earlier lanes write it: read every time
    "output_operand": ([(3, 1)] * 6, [PAD] * 6, [PAD] * 6, (1, 1, 2, 1, 3, 1), 1),
    "output_operand_requant": ([(3, 4)] * 4, [(1, 0)] * 4, [(2, 0)] * 4, (4, 4, 4, 5), 0),
}


@pytest.mark.parametrize("case", sorted(FIN_REQ_CASES))
def test_fin_req_operand_reuse(harness: Any, case: str) -> None:
    a, b, c, out, raw = FIN_REQ_CASES[case]
    regions, words = _fin_req_layout()
    acc = tuple((-1) ** k * (1000 * k + 17) for k in range(LANES))
    ins = Instr(Kind.FIN_REQ, out, tuple(a), tuple(b), tuple(c), (3, I32_MIN, I32_MAX, raw, 1 << 30, 31))
    want = check_same(harness, ins, regions, words, ((0,) * N_SCALARS, acc, (0,) * LANES))
    assert want.error is None, want
    # a word the lanes share is missing: the first lane that reads it fails, in both
    missing = dict(words)
    del missing[(a[0][0], 0)]
    assert check_same(harness, ins, regions, missing, ((0,) * N_SCALARS, acc, (0,) * LANES)).error == "WordNotInWitness"
