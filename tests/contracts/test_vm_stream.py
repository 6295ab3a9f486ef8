"""The Solidity index helpers and elementwise/rows programs against ``fraud_vm`` (differential).

- ``LibIndexing`` (through ``LibIndexingHarness``) against ``fraud_vm.indexing`` on seeded random
  shapes: every helper returns the same value, ``broadcastShape`` reverts ``UnsupportedOp`` exactly
  where Python raises, and every source kind gives the same operand for every output element.
- ``LibStream`` (through ``StreamHarness``, which decodes the context with ``LibContext``) against
  ``fraud_vm.stepper``: for every elementwise/rows node of the vectors and of the example models
  (batch 1 and 3), for seeded synthetic contexts of every op of the family and for fixed ones (concat
  of 3 inputs on a negative axis, negative-step and clamped slices, 3-way broadcasts, negative
  transpose/gather/softmax axes, multi-chunk rows), the step count equals
  ``num_steps`` and the instruction at sampled pcs (first, last, seeded others) equals ``instr_at``;
  inconsistent contexts revert ``UnsupportedOp`` where ``make_plan`` raises it, and mutated contexts
  give the same instruction or the same error name as Python.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraud_vm import indexing as X
from fraud_vm.context import NodeContext, context_for, decode_context
from fraud_vm.errors import FraudVMError
from fraud_vm.isa import Instr
from fraud_vm.stepper import instr_at, num_steps
from opml.bundle import DType, Node, load_bundle, node_descriptor_words

ROOT = Path(__file__).resolve().parents[2]
VEC_DIR = ROOT / "tests" / "vectors" / "fraud_vm"
MODELS = ("digits_mlp", "digits_cnn", "encoder")
ROWS_OPS = ("softmax", "layernorm")
STREAM_OPS = ("add", "mul", "where", "gather", "concat", "transpose", "slice", "reshape", "lut", "quantize",
              "dequantize", "cast", "flip_sign_bit", *ROWS_OPS)

SEEDS = [0, 1, 2]


def pack(op: tuple[int, int]) -> int:
    """A Python operand ``(region, element)`` packed as the contracts hold it (PAD = all ones)."""
    region, element = op
    return (1 << 256) - 1 if (region, element) == (-1, -1) else region << 128 | element


def _shape(rng: random.Random, lo: int = 0, hi: int = 4, dim: int = 5) -> tuple[int, ...]:
    return tuple(rng.randint(1, dim) for _ in range(rng.randint(lo, hi)))


# ---------------------------------------------------------------------------------------------
# LibIndexing


@pytest.fixture(scope="module")
def idx(prague: Any) -> Any:
    return prague.deploy("LibIndexingHarness")


def _sources(rng: random.Random) -> list[tuple[X.Source, str, tuple[Any, ...], int]]:
    """One random instance of every source kind: (Python source, harness function, its arguments
    before the element list, output size)."""
    out: list[tuple[X.Source, str, tuple[Any, ...], int]] = []
    shape = _shape(rng, 0, 4)
    out.append((X.IdentitySource(2), "identityAt", (2,), math.prod(shape)))
    bshape = tuple(d if rng.random() < 0.5 else 1 for d in shape)[rng.randint(0, len(shape)):]
    out.append((X.BroadcastSource(1, shape, bshape), "broadcastAt", (1, list(shape), list(bshape)), math.prod(shape)))
    post, p, n = rng.randint(1, 6), rng.randint(1, 5), rng.randint(0, 4)
    size = rng.randint(1, 3) * post * p
    out.append((X.GatherIndexSource(post, p), "gatherIndexAt", (post, p), size))
    out.append((X.GatherDataSource(post, p, n), "gatherDataAt", (post, p, n), size))
    x = _shape(rng, 1, 4)
    nd = len(x)
    ax = rng.randint(0, nd - 1)
    parts = [tuple(rng.randint(0, 3) if i == ax else d for i, d in enumerate(x)) for _ in range(rng.randint(1, 4))]
    cshape = x[:ax] + (sum(q[ax] for q in parts),) + x[ax + 1 :]
    out.append((X.ConcatSource(cshape, ax, tuple(parts)), "concatAt", (list(cshape), ax, [list(q) for q in parts]),
                math.prod(cshape)))
    perm = list(range(nd))
    rng.shuffle(perm)
    tshape = tuple(x[q] for q in perm)
    out.append((X.TransposeSource(tshape, tuple(perm), x), "transposeAt", (list(tshape), perm, list(x)), math.prod(x)))
    ns = rng.randint(0, nd)
    steps = tuple(rng.choice([-3, -2, -1, 1, 2, 3]) for _ in range(ns))
    ranges = [range(*slice(rng.randint(-8, 8), rng.randint(-8, 8), st).indices(d))
              for st, d in zip(steps, x, strict=False)]
    sshape = tuple(len(r) for r in ranges) + x[ns:]
    starts = tuple(r.start for r in ranges)
    out.append((X.SliceSource(sshape, starts, steps, x), "sliceAt", (list(sshape), list(starts), list(steps), list(x)),
                math.prod(sshape)))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_index_helpers_equal_python(idx: Any, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        a = rng.choice([0, 1, rng.getrandbits(64), rng.getrandbits(255)])
        b = rng.choice([1, 32, rng.getrandbits(40) + 1])
        assert idx.value("ceilDiv", a, b) == X.ceil_div(a, b)
        shape = _shape(rng, 0, 5, rng.choice([3, 7, 1 << 31]))
        size = math.prod(shape)
        i = rng.randrange(size)
        coords = X.unravel(i, shape)
        assert list(idx.value("unravel", i, list(shape))) == coords
        assert idx.value("ravel", coords, list(shape)) == X.ravel(coords, shape) == i
        assert list(idx.value("strides", list(shape))) == list(X.strides(shape))
        dims = tuple((rng.randint(1, 9), rng.getrandbits(rng.randint(0, 40))) for _ in range(rng.randint(0, 4)))
        j = rng.randrange(math.prod(s for s, _ in dims))
        assert idx.value("ravelDims", j, [list(d) for d in dims]) == X.ravel_dims(j, dims)
        full = _shape(rng, 0, 4)
        shapes = [tuple(d if rng.random() < 0.5 else 1 for d in full)[rng.randint(0, len(full)):] for _ in range(3)]
        if rng.random() < 0.4 and full:  # a clash some of the time (a size other than 1 and the dim's)
            k, d = rng.randrange(3), rng.randrange(len(full))
            shapes[k] = full[:d] + (full[d] + 1,) + full[d + 1 :]
        try:
            expected: Any = list(X.broadcast_shape(shapes))
        except X.UnsupportedOp:
            expected = "UnsupportedOp"
        result = idx.call("broadcastShape", [list(s) for s in shapes])
        assert (list(result.values[0]) if result.ok else result.error and result.error[0]) == expected, shapes
        bc = X.unravel(rng.randrange(math.prod(full)), full)
        assert idx.value("broadcastSource", bc, list(shapes[0])) == X.broadcast_source(bc, shapes[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_sources_equal_python(idx: Any, seed: int) -> None:
    rng = random.Random(100 + seed)
    for src, fn, args, size in [c for _ in range(4) for c in _sources(rng)]:
        os_ = list(range(size)) if size <= 64 else sorted(rng.sample(range(size), 64))
        first = rng.randrange(size) if size else 0
        count = rng.randint(0, min(40, size - first))
        ats, run = idx.call(fn, *args, os_, first, count).values
        assert list(ats) == [pack(src.at(o)) for o in os_], src
        assert list(run) == [pack(src.at(o)) for o in range(first, first + count)], (src, first, count)


# ---------------------------------------------------------------------------------------------
# LibStream: elementwise and rows programs


@pytest.fixture(scope="module")
def stream(prague: Any) -> Any:
    return prague.deploy("StreamHarness")


def as_solidity(ins: Instr) -> tuple[Any, ...]:
    """An instruction as ``StreamHarness.program`` returns it (operands packed)."""
    return (int(ins.kind), list(ins.out), [pack(x) for x in ins.a], [pack(x) for x in ins.b],
            [pack(x) for x in ins.c], list(ins.imm))


def from_solidity(values: Any) -> tuple[Any, ...]:
    kind, out, a, b, c, imm = values
    return (kind, list(out), list(a), list(b), list(c), list(imm))


def python_program(data: bytes, pcs: list[int]) -> Any:
    """``(num_steps, [instr_at(pc)..])`` or the fraud-VM error's class name."""
    try:
        ctx = decode_context(data)
        n = num_steps(ctx)
        return n, [as_solidity(instr_at(ctx, pc)) for pc in pcs if pc < n]
    except FraudVMError as e:
        return type(e).__name__


def solidity_program(stream: Any, data: bytes, pcs: list[int]) -> Any:
    result = stream.call("program", data, pcs)
    if not result.ok:
        assert result.error is not None, f"reverted without a custom error: {result.output.hex()}"
        return result.error[0]
    n, instrs = result.values
    return n, [from_solidity(v) for v, pc in zip(instrs, pcs, strict=True) if pc < n]


def sample_pcs(rng: random.Random, n: int, k: int = 4) -> list[int]:
    """First, last and ``k`` seeded pcs of an ``n``-step program."""
    return sorted({0, n - 1, *(rng.randrange(n) for _ in range(k))})


def check_same(stream: Any, ctx: NodeContext, rng: random.Random, k: int = 4) -> None:
    pcs = sample_pcs(rng, num_steps(ctx), k)
    data = ctx.encode()
    expected = python_program(data, pcs)
    assert not isinstance(expected, str), (ctx.node.op, expected)
    assert solidity_program(stream, data, pcs) == expected, ctx.node.op


def test_vector_nodes_equal_python(stream: Any) -> None:
    rng = random.Random(0)
    seen = 0
    for path in sorted(VEC_DIR.glob("*.json")):
        for hexctx in sorted({v["witness"]["context"] for v in json.loads(path.read_text())["vectors"]}):
            ctx = decode_context(bytes.fromhex(hexctx[2:]))
            if ctx.node.op in STREAM_OPS:
                check_same(stream, ctx, rng)
                seen += 1
    assert seen >= 10


@pytest.mark.parametrize("name", MODELS)
def test_model_nodes_equal_python(stream: Any, name: str) -> None:
    bundle = load_bundle(str(ROOT / "models" / name / "model.bundle"))
    rng = random.Random(name)
    programs = set()  # repeated layers: one per (op, attributes, dtypes and shapes, batch)
    for j, node in enumerate(bundle.nodes):
        if node.op in STREAM_OPS:
            for batch in (1, 3):
                ctx = context_for(bundle, j, batch)
                key = (node.op, node.attrs, tuple((t.dtype, t.shape) for t in ctx.tensors), batch)
                if key not in programs:
                    programs.add(key)
                    check_same(stream, ctx, rng, 2)
    assert programs


# synthetic contexts (as tests/fraud_vm/test_stepper.py)


def _ctx(op: str, ins: list[tuple[DType, tuple[int, ...]]], out: tuple[DType, tuple[int, ...]],
         attrs: tuple[tuple[int, ...], ...], zps: tuple[int, ...] = (), scale: int = 0x3D800000) -> NodeContext:
    node = Node(op, tuple(range(len(ins))), (len(ins),), attrs)
    descs = []
    for k, (dt, shape) in enumerate([*ins, out]):
        zp = zps[k] if k < len(zps) else 0
        descs.append((int(dt), len(shape), *shape, 0, scale, zp, 0))
    return NodeContext(bytes(32), 0, 1, tuple(node_descriptor_words(node)), tuple(descs))


I8, U8, I16, I32, I64, F32, BOOL = (DType.INT8, DType.UINT8, DType.INT16, DType.INT32, DType.INT64, DType.FLOAT32,
                                    DType.BOOL)


def _synthetic(seed: int) -> list[NodeContext]:
    """One seeded context of every op of the family (broadcasts, negative axes, negative-step and
    clamped slices, concat of up to 4 inputs, gather of any-rank indices, rows along any axis)."""
    rng = random.Random(seed)
    out = []
    full = _shape(rng, 1, 4)
    s2 = [tuple(d if rng.random() < 0.5 else 1 for d in full)[rng.randint(0, len(full) - 1):] for _ in range(3)]
    s2[0] = full
    rng.shuffle(s2)
    qa = ((3,), (5,), (4,), (-128,), (127,))
    out.append(_ctx("add", [(I8, s2[1]), (I8, full)][:: rng.choice([1, -1])], (I8, full), qa, (1, 2, -3)))
    out.append(_ctx("mul", [(U8, s2[2]), (U8, full)][:: rng.choice([1, -1])], (U8, full), ((7,), (9,), (0,), (255,)),
                    (4, 5, 6)))
    out.append(_ctx("where", [(BOOL, s2[2]), (I8, s2[1]), (I8, s2[0])], (I8, full), ()))
    x = _shape(rng, 1, 4, 6)
    nd = len(x)
    perm = list(range(nd))
    rng.shuffle(perm)
    perm = [p - nd if rng.random() < 0.3 else p for p in perm]
    out.append(_ctx("transpose", [(I8, x)], (I8, np.empty(x).transpose(perm).shape), (tuple(perm),)))
    while True:  # a non-empty slice (an empty output is the one-NOP program)
        ns = rng.randint(0, nd)
        steps = tuple(rng.choice([-3, -2, -1, 1, 2, 3]) for _ in range(ns))
        starts = tuple(rng.randint(-8, 8) for _ in range(ns))
        ends = tuple(rng.randint(-8, 8) for _ in range(ns))
        idx = tuple(slice(s, e if e >= 0 or st > 0 else None, st) for s, e, st in zip(starts, ends, steps, strict=True))
        sshape = np.empty(x)[idx].shape
        if math.prod(sshape):
            break
    out.append(_ctx("slice", [(I16, x)], (I16, sshape), (starts, ends, steps)))
    ax = rng.randint(-nd, nd - 1)
    parts = [tuple(rng.randint(0, 3) if i == ax % nd else d for i, d in enumerate(x)) for _ in range(rng.randint(1, 4))]
    parts[0] = x
    cshape = np.concatenate([np.empty(p) for p in parts], axis=ax).shape
    out.append(_ctx("concat", [(I8, p) for p in parts], (I8, cshape), ((ax,),)))
    ishape = _shape(rng, 0, 2, 5)
    gshape = x[: ax % nd] + ishape + x[ax % nd + 1 :]
    out.append(_ctx("gather", [(F32, x), (I64, ishape)], (F32, gshape), ((ax + rng.choice([0, 3 * nd]),),)))
    out.append(_ctx("reshape", [(I16, x)], (I16, (math.prod(x),)), ()))
    out.append(_ctx("lut", [(rng.choice([I8, U8]), x), (I8, (256,))], (I8, x), ()))
    out.append(_ctx("quantize", [(F32, x)], (rng.choice([I8, U8]), x), (), (0, -7), rng.choice([1, 0x3F800000,
                                                                                             0x7F7FFFFF])))
    out.append(_ctx("dequantize", [(I8, x)], (F32, x), (), (-9, 0), rng.choice([0, 0x80000001, 0xFF7FFFFF])))
    out.append(_ctx("cast", [(F32, x)], (rng.choice([I32, I8, I64, BOOL]), x), ()))
    out.append(_ctx("flip_sign_bit", [(U8, x)], (I8, x), ()))
    y = _shape(rng, 1, 4, 40)
    ay = rng.randint(-len(y), len(y) - 1)
    out.append(_ctx("softmax", [(I8, y), (I32, (256,))], (rng.choice([I8, U8]), y), ((ay,),), (0, 0, -5)))
    ln = ((1,), (8,), (3,), (9,), (-128,), (127,))
    out.append(_ctx("layernorm", [(I8, y), (I32, (y[-1],)), (I32, (y[-1],))], (I8, y), ln, (0, 0, 0, 11)))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_synthetic_contexts_equal_python(stream: Any, seed: int) -> None:
    rng = random.Random(seed)
    for ctx in _synthetic(seed):
        check_same(stream, ctx, rng, 3)


FIXED = [  # the patterns named in the brief, independent of the seeds
    _ctx("concat", [(I8, (2, 1, 3)), (I8, (2, 4, 3)), (I8, (2, 2, 3))], (I8, (2, 7, 3)), ((-2,),)),
    _ctx("concat", [(I16, (5, 1)), (I16, (5, 0)), (I16, (5, 9))], (I16, (5, 10)), ((1,),)),
    _ctx("slice", [(I8, (7, 5, 3))], (I8, (4, 2, 3)), ((-1, 100), (-100, -100), (-2, -3))),
    _ctx("slice", [(I8, (7, 5))], (I8, (3, 5)), ((-3, -9), (100, 9), (1, 1))),
    _ctx("slice", [(I8, (40,))], (I8, (13,)), ((-2,), (-50,), (-3,))),
    _ctx("where", [(BOOL, (3, 1, 1)), (I8, (1, 4, 1)), (I8, (5,))], (I8, (3, 4, 5)), ()),
    _ctx("add", [(I8, ()), (I8, (2, 3, 4))], (I8, (2, 3, 4)), ((3,), (5,), (4,), (-128,), (127,)), (1, 2, 3)),
    _ctx("mul", [(I8, (2, 1, 4)), (I8, (3, 1))], (I8, (2, 3, 4)), ((3,), (5,), (-128,), (127,)), (1, 2, 3)),
    _ctx("transpose", [(I8, (2, 3, 4, 5))], (I8, (5, 2, 4, 3)), ((-1, 0, -2, 1),)),
    _ctx("gather", [(I8, (4, 6, 5)), (I64, (2, 3))], (I8, (4, 2, 3, 5)), ((-2,),)),
    _ctx("gather", [(I32, (9,)), (I64, ())], (I32, ()), ((0,),)),
    _ctx("softmax", [(I8, (3, 70, 2)), (I32, (256,))], (U8, (3, 70, 2)), ((-2,),)),
    _ctx("layernorm", [(I8, (2, 65)), (I32, (65,)), (I32, (65,))], (I8, (2, 65)),
         ((1,), (8,), (3,), (9,), (-128,), (127,))),
]


def test_fixed_patterns_equal_python(stream: Any) -> None:
    rng = random.Random(7)
    for ctx in FIXED:
        check_same(stream, ctx, rng, 3)


UNSUPPORTED = [
    _ctx("transpose", [(I8, (2, 3))], (I8, (3, 2)), ((0, 0),)),
    _ctx("transpose", [(I8, (2, 3))], (I8, (3, 2)), ((1, 2),)),
    _ctx("transpose", [(I8, (2, 3))], (I8, (3, 2)), ((1,),)),
    _ctx("transpose", [(I8, (2, 3))], (I8, (2, 3)), ((1, 0),)),
    _ctx("add", [(I8, (2, 3)), (I8, (4, 3))], (I8, (4, 3)), ((1,), (1,), (1,), (-128,), (127,))),
    _ctx("add", [(I8, (2, 3)), (I8, (1, 3))], (I8, (2, 1, 3)), ((1,), (1,), (1,), (-128,), (127,))),
    _ctx("add", [(I8, (2, 3)), (I8, (1, 3))], (I8, (2, 3)), ((1,), (), (1,), (-128,), (127,))),
    _ctx("add", [(I8, (2, 3))], (I8, (2, 3)), ((1,), (1,), (1,), (-128,), (127,))),
    _ctx("mul", [(I8, (3,)), (I8, (3,)), (I8, (3,))], (I8, (3,)), ((1,), (1,), (-128,), (127,))),
    _ctx("where", [(BOOL, (3,)), (I8, (3,))], (I8, (3,)), ()),
    _ctx("gather", [(I8, (4, 3))], (I8, (2, 3)), ((0,),)),
    _ctx("gather", [(I8, ()), (I64, (2,))], (I8, (2,)), ((0,),)),
    _ctx("gather", [(I8, (4, 3)), (I64, (2,))], (I8, (3, 2)), ((0,),)),
    _ctx("gather", [(I8, (4, 3)), (I64, (2,))], (I8, (2, 3)), ((),)),
    _ctx("concat", [(I8, (2, 3)), (I8, (2, 4))], (I8, (4, 3)), ((0,),)),
    _ctx("concat", [(I8, (2, 3)), (I8, (2, 4))], (I8, (2, 7)), ((2,),)),
    _ctx("concat", [(I8, (2, 3)), (I8, (2, 4))], (I8, (2, 7)), ((-3,),)),
    _ctx("concat", [(I8, (2, 3)), (I8, (2, 3, 1))], (I8, (4, 3)), ((0,),)),
    _ctx("concat", [(I8, ()), (I8, ())], (I8, (2,)), ((0,),)),
    _ctx("slice", [(I8, (2, 3))], (I8, (2, 3)), ((0,), (2,), (0,))),
    _ctx("slice", [(I8, (2, 3))], (I8, (1, 3)), ((0,), (1, 2), (1,))),
    _ctx("slice", [(I8, (2, 3))], (I8, (1, 1)), ((0, 0, 0), (1, 1, 1), (1, 1, 1))),
    _ctx("slice", [(I8, (5, 3))], (I8, (2, 3)), ((-1,), (-9,), (-2,))),
    _ctx("reshape", [(I8, (2, 3))], (I8, (5,)), ()),
    _ctx("lut", [(I8, (2, 3)), (I8, (256,))], (I8, (3, 2)), ()),
    _ctx("quantize", [(F32, (3,))], (I8, (3,)), (), (), 0x7F800000),
    _ctx("quantize", [(F32, (3,))], (I8, (3,)), (), (), 0x7FC00000),
    _ctx("quantize", [(F32, (3,))], (I8, (3,)), (), (), 0),
    _ctx("quantize", [(F32, (3,))], (I8, (3,)), (), (), 0x80000000),
    _ctx("quantize", [(F32, (3,))], (I8, (3,)), (), (), 0xBF800000),
    _ctx("quantize", [(F32, (3,))], (I32, (3,)), ()),
    _ctx("dequantize", [(I8, (3,))], (F32, (3,)), (), (), 0xFF800000),
    _ctx("dequantize", [(I8, (3,))], (F32, (3,)), (), (), 0x7FFFFFFF),
    _ctx("softmax", [(I8, (2, 3)), (I32, (256,))], (I32, (2, 3)), ((1,),)),
    _ctx("softmax", [(I8, (2, 3)), (I32, (256,))], (I8, (3, 2)), ((1,),)),
    _ctx("softmax", [(I8, ()), (I32, (256,))], (I8, ()), ((0,),)),
    _ctx("softmax", [(I8, (2, 3)), (I32, (256,))], (I8, (2, 3)), ((),)),
    _ctx("layernorm", [(I8, (2, 3)), (I32, (3,)), (I32, (3,))], (I8, (2, 3)), ((1,), (8,), (), (9,), (0,), (1,))),
]


def test_inconsistent_contexts_revert_unsupported_op(stream: Any) -> None:
    for ctx in UNSUPPORTED:
        assert python_program(ctx.encode(), [0]) == "UnsupportedOp", ctx
        assert solidity_program(stream, ctx.encode(), [0]) == "UnsupportedOp", ctx


def test_empty_output_and_pcs_past_the_end(stream: Any) -> None:
    empty = _ctx("slice", [(I8, (5, 3))], (I8, (0, 3)), ((2,), (1,), (1,)))
    nop: tuple[int, list[Any]] = (1, [(0, [], [], [], [], [])])
    assert python_program(empty.encode(), [0]) == solidity_program(stream, empty.encode(), [0]) == nop
    ctx = _synthetic(0)[0]
    n = num_steps(ctx)
    result = stream.call("program", ctx.encode(), [n, n + 5, 2**256 - 1])
    assert result.ok and [from_solidity(v) for v in result.values[1]] == [(0, [], [], [], [], [])] * 3


@pytest.mark.parametrize("seed", range(3))
def test_mutated_contexts_agree_with_python(stream: Any, seed: int) -> None:
    """A random word of a valid context replaced by a small or extreme value: the same program (or
    the same error name: MalformedContext from the decoder, UnsupportedOp from the plan)."""
    rng = random.Random(1000 + seed)
    base = _synthetic(seed)
    outcomes = set()
    for _ in range(40):
        ctx = rng.choice(base)
        words = [int.from_bytes(ctx.encode()[i : i + 32], "big", signed=True) for i in range(32, len(ctx.encode()), 32)]
        k = rng.randrange(3, len(words))
        words[k] = rng.choice([0, 1, 2, -1, -2, words[k] + 1, words[k] - 1, 2**63, -(2**63) - 1, 2**32, 0x7F800000])
        data = ctx.address + b"".join(w.to_bytes(32, "big", signed=True) for w in words)
        try:
            op = decode_context(data).node.op
        except FraudVMError:
            op = ctx.node.op
        if op not in STREAM_OPS:
            continue
        expected = python_program(data, [0, 1, 7])
        outcomes.add(expected if isinstance(expected, str) else "ok")
        assert solidity_program(stream, data, [0, 1, 7]) == expected, (ctx.node.op, k, words[k])
    assert len(outcomes) >= 2
