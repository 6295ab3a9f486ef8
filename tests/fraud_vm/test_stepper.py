"""The scalar stepper (``fraud_vm.stepper``) == the numpy lowering (``fraud_vm.lowering``).

Every ``pc`` of every vector's node; every ``pc`` of every node of the example models (batch 1
and 3) with under 50k steps, and 400 seeded pcs plus the first and last of the larger ones (only
digits_cnn's 16->32 conv at batch 3, 111k steps); seeded synthetic contexts for the index
arithmetic the models do not reach (broadcast batches, strided/dilated/grouped/padded windows,
any-axis reduce/argmax/softmax, transpose perms, negative-step slices, concat, gather); forged
(mutated) contexts give an instruction or a fraud-VM error; the verifier path imports no numpy.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fraud_vm.compiler import compile_context
from fraud_vm.context import NodeContext, context_for, decode_context
from fraud_vm.errors import FraudVMError, InvalidStep, UnsupportedOp
from fraud_vm.isa import Kind
from fraud_vm.stepper import instr_at, num_steps
from fraud_vm.vm import StepWitness
from opml.bundle import DType, Node, load_bundle, node_descriptor_words

ROOT = Path(__file__).resolve().parents[2]
VEC_DIR = ROOT / "tests" / "vectors" / "fraud_vm"
MODELS = ("digits_mlp", "digits_cnn", "encoder")
FULL_LIMIT = 50_000  # nodes with fewer steps are compared at every pc
SAMPLE = 400


def _same_program(ctx: NodeContext, pcs: list[int] | range | None = None) -> None:
    prog = compile_context(ctx)
    assert num_steps(ctx) == prog.num_steps
    for pc in range(prog.num_steps) if pcs is None else pcs:
        assert instr_at(ctx, pc) == prog.instr(pc), f"{ctx.node.op} pc {pc}"


@pytest.mark.parametrize("path", sorted(VEC_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_stepper_equals_lowering_on_vectors(path: Path) -> None:
    contexts = {v["witness"]["context"] for v in json.loads(path.read_text())["vectors"]}
    for hexctx in contexts:
        _same_program(decode_context(bytes.fromhex(hexctx[2:])))


@pytest.mark.parametrize("name", MODELS)
def test_stepper_equals_lowering_on_models(name: str) -> None:
    bundle = load_bundle(str(ROOT / "models" / name / "model.bundle"))
    rng = random.Random(name)
    for j in range(len(bundle.nodes)):
        for batch in (1, 3):
            ctx = context_for(bundle, j, batch)
            n = compile_context(ctx).num_steps
            pcs = None if n < FULL_LIMIT else sorted({0, n - 1, *rng.sample(range(n), SAMPLE)})
            _same_program(ctx, pcs)


# ---------------------------------------------------------------------------------------------
# synthetic contexts


def _ctx(op: str, ins: list[tuple[DType, tuple[int, ...]]], out: tuple[DType, tuple[int, ...]],
         attrs: tuple[tuple[int, ...], ...], zps: tuple[int, ...] = ()) -> NodeContext:
    node = Node(op, tuple(range(len(ins))), (len(ins),), attrs)
    descs = []
    for k, (dt, shape) in enumerate([*ins, out]):
        zp = zps[k] if k < len(zps) else 0
        descs.append((int(dt), len(shape), *shape, 0, 0x3D800000, zp, 0))
    return NodeContext(bytes(32), 0, 1, tuple(node_descriptor_words(node)), tuple(descs))


I8, I32, I64 = DType.INT8, DType.INT32, DType.INT64


def _shape(rng: random.Random, nd: int, hi: int = 4) -> tuple[int, ...]:
    return tuple(rng.randint(1, hi) for _ in range(nd))


def _cases(seed: int) -> list[NodeContext]:
    rng = random.Random(seed)
    out = []
    # matmul with broadcast batch dims
    m, k, n = rng.randint(1, 3), rng.randint(1, 5), rng.randint(1, 40)
    full = _shape(rng, rng.randint(0, 3))
    ab = tuple(d if rng.random() < 0.5 else 1 for d in full)
    bb = tuple(d if rng.random() < 0.5 else 1 for d in full)[rng.randint(0, len(full)):]
    batch = np.broadcast_shapes(ab, bb)
    out.append(_ctx("matmul", [(I8, ab + (m, k)), (I8, bb + (k, n))], (I8, tuple(batch) + (m, n)),
                    ((1 << 20,), (24,), (-128,), (127,)), (3, -2)))
    # linear, int32 output (raw) with a per-tensor bias
    x = _shape(rng, rng.randint(1, 3))
    n = rng.randint(1, 70)
    out.append(_ctx("linear", [(I8, x), (I8, (x[-1], n)), (I32, (1,))], (I32, x[:-1] + (n,)), ((-128,), (127,)), (5,)))
    # conv: groups, stride, dilation, padding
    g = rng.randint(1, 2)
    cg, mg = rng.randint(1, 2), rng.randint(1, 2)
    kh, kw, sh, sw, dy, dx = (rng.randint(1, 3) for _ in range(6))
    pads = tuple(rng.randint(0, 2) for _ in range(4))
    h, w = rng.randint(kh * dy, 7), rng.randint(kw * dx, 9)
    oh = (h + pads[0] + pads[2] - (kh - 1) * dy - 1) // sh + 1
    ow = (w + pads[1] + pads[3] - (kw - 1) * dx - 1) // sw + 1
    xs = (rng.randint(1, 2), cg * g, h, w)
    ins = [(I8, xs), (I8, (mg * g, cg, kh, kw)), (I32, (mg * g,)), (I32, (mg * g,)), (I32, (1,))]
    out.append(_ctx("conv", ins, (I8, (xs[0], mg * g, oh, ow)),
                    (pads, (sh, sw), (dy, dx), (g,), (-128,), (127,)), (1,)))
    pool = (kh, kw), (sh, sw), pads
    out.append(_ctx("maxpool", [(I8, xs)], (I8, (xs[0], xs[1], oh, ow)), (*pool, (dy, dx))))
    oh1 = (h + pads[0] + pads[2] - kh) // sh + 1
    ow1 = (w + pads[1] + pads[3] - kw) // sw + 1
    out.append(_ctx("avgpool", [(I8, xs)], (I8, (xs[0], xs[1], oh1, ow1)), (*pool, (rng.randint(0, 1),), (3,), (4,))))
    # reduce over random axes (negative and repeated), argmax / softmax along any axis
    x = _shape(rng, rng.randint(1, 4), 5)
    nd = len(x)
    axes = tuple(rng.randint(-nd, nd - 1) for _ in range(rng.randint(0, 3)))
    kept = tuple(d for i, d in enumerate(x) if i not in {a % nd for a in axes})
    mode = rng.randint(0, 3)
    out.append(_ctx("reduce", [(I8, x)], (I8, kept), ((mode,), axes, (0,), (1,), (1,)), (7,)))
    ax = rng.randint(-nd, nd - 1)
    rows = tuple(d for i, d in enumerate(x) if i != ax % nd)
    out.append(_ctx("argmax", [(I8, x)], (I64, rows), ((ax,), (0,), (rng.randint(0, 1),))))
    out.append(_ctx("softmax", [(I8, x), (I32, (256,))], (I8, x), ((ax,),)))
    out.append(_ctx("layernorm", [(I8, x), (I32, (x[-1],)), (I32, (x[-1],))], (I8, x),
                    ((1,), (8,), (3,), (9,), (-128,), (127,))))
    # elementwise with broadcasting (where: three shapes)
    full = _shape(rng, rng.randint(1, 4), 5)
    s2 = [tuple(d if rng.random() < 0.5 else 1 for d in full)[rng.randint(0, len(full) - 1):] for _ in range(3)]
    s2[0] = full
    out.append(_ctx("add", [(I8, s2[1]), (I8, s2[0])], (I8, full), ((3,), (5,), (4,), (-128,), (127,)), (1, 2)))
    out.append(_ctx("where", [(DType.BOOL, s2[2]), (I8, s2[1]), (I8, s2[0])], (I8, full), ()))
    # transpose, slice, concat, gather
    x = _shape(rng, rng.randint(1, 4), 6)
    nd = len(x)
    perm = list(range(nd))
    rng.shuffle(perm)
    perm = [p - nd if rng.random() < 0.3 else p for p in perm]
    out.append(_ctx("transpose", [(I8, x)], (I8, np.empty(x).transpose(perm).shape), (tuple(perm),)))
    ns = rng.randint(0, nd)
    steps = tuple(rng.choice([-3, -2, -1, 1, 2, 3]) for _ in range(ns))
    starts = tuple(rng.randint(-8, 8) for _ in range(ns))
    ends = tuple(rng.randint(-8, 8) for _ in range(ns))
    idx = tuple(slice(s, e if e >= 0 or st > 0 else None, st) for s, e, st in zip(starts, ends, steps, strict=True))
    out.append(_ctx("slice", [(DType.INT16, x)], (DType.INT16, np.empty(x)[idx].shape), (starts, ends, steps)))
    ax = rng.randint(-nd, nd - 1)
    parts = [tuple(rng.randint(0, 3) if i == ax % nd else d for i, d in enumerate(x)) for _ in range(rng.randint(1, 4))]
    cshape = np.concatenate([np.empty(p) for p in parts], axis=ax).shape
    out.append(_ctx("concat", [(I8, p) for p in parts], (I8, cshape), ((ax,),)))
    ishape = _shape(rng, rng.randint(0, 2), 5)
    gshape = x[: ax % nd] + ishape + x[ax % nd + 1 :]
    out.append(_ctx("gather", [(DType.FLOAT32, x), (I64, ishape)], (DType.FLOAT32, gshape), ((ax,),)))
    out.append(_ctx("reshape", [(DType.INT16, x)], (DType.INT16, (int(np.prod(x)),)), ()))
    return out


@pytest.mark.parametrize("seed", range(25))
def test_stepper_equals_lowering_on_synthetic_contexts(seed: int) -> None:
    for ctx in _cases(seed):
        if compile_context(ctx).num_steps > 4000:
            _same_program(ctx, sorted(random.Random(seed).sample(range(compile_context(ctx).num_steps), 500)))
        else:
            _same_program(ctx)


def test_pc_outside_the_program_is_invalid_step() -> None:
    ctx = _cases(0)[0]
    n = num_steps(ctx)
    for pc in (-1, n, n + 10**30):
        with pytest.raises(InvalidStep):
            instr_at(ctx, pc)


def test_inconsistent_contexts_are_unsupported_by_both() -> None:
    bad = [
        _ctx("transpose", [(I8, (2, 3))], (I8, (3, 2)), ((0, 0),)),
        _ctx("add", [(I8, (2, 3)), (I8, (4, 3))], (I8, (4, 3)), ((1,), (1,), (1,), (-128,), (127,))),
        _ctx("concat", [(I8, (2, 3)), (I8, (2, 4))], (I8, (4, 3)), ((0,),)),
        _ctx("slice", [(I8, (2, 3))], (I8, (2, 3)), ((0,), (2,), (0,))),
        _ctx("linear", [(I8, (2, 3)), (I8, (4, 5)), (I32, (5,))], (I32, (2, 5)), ((-128,), (127,))),
        _ctx("reduce", [(I8, (2, 3))], (I8, (5,)), ((0,), (1,), (0,), (1,), (1,))),
        _ctx("softmax", [(I8, (2, 3)), (I32, (256,))], (I32, (2, 3)), ((1,),)),
    ]
    for ctx in bad:
        with pytest.raises(UnsupportedOp):
            compile_context(ctx)
        with pytest.raises(UnsupportedOp):
            num_steps(ctx)


def test_verifier_path_imports_no_numpy() -> None:
    """``verify_step`` of a real vector in a fresh interpreter: numpy never enters ``sys.modules``."""
    vec = next(v for p in sorted(VEC_DIR.glob("*.json")) for v in json.loads(p.read_text())["vectors"])
    code = (
        "import json, sys\n"
        "from fraud_vm.vm import StepWitness, verify_step\n"
        "v = json.loads(sys.stdin.read())\n"
        "post = verify_step(bytes.fromhex(v['pre_state_hash'][2:]), StepWitness.from_json(v['witness']))\n"
        "assert post == bytes.fromhex(v['post_state_hash'][2:]), 'wrong post-state'\n"
        "print(sorted(m for m in sys.modules if m == 'numpy' or m.startswith('numpy.')))\n"
    )
    assert {"pre_state_hash", "post_state_hash"} <= set(vec), "vector layout changed"
    res = subprocess.run([sys.executable, "-c", code], input=json.dumps(vec), capture_output=True, text=True,
                         timeout=120, cwd=ROOT, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", f"numpy imported on the verifier path: {res.stdout}"
    StepWitness.from_json(vec["witness"])  # the vector parses here too


def test_mutated_contexts_give_an_instruction_or_a_named_error() -> None:
    """Seeded mutations of the vectors' and synthetic contexts (small integers written over node or
    descriptor words): the stepper returns an instruction or raises a fraud-VM error, never another
    exception (a forged context must not crash the verifier)."""
    rng = random.Random(7)
    base = [decode_context(bytes.fromhex(v["witness"]["context"][2:]))
            for p in sorted(VEC_DIR.glob("*.json")) for v in json.loads(p.read_text())["vectors"][:1]]
    base += _cases(3)
    outcomes = {"instr": 0, "error": 0}
    for _ in range(1500):
        ctx = rng.choice(base)
        node_words, descs = list(ctx.node_words), [list(d) for d in ctx.descs]
        for _ in range(rng.randint(1, 3)):
            v = rng.choice([-2, -1, 0, 1, 2, 3, 5, 7, 33, 1 << 40])
            if rng.random() < 0.5:
                node_words[rng.randrange(1, len(node_words))] = v
            else:
                d = rng.choice(descs)
                d[rng.randrange(len(d))] = v
        forged = NodeContext(ctx.address, ctx.node_index, ctx.batch, tuple(node_words), tuple(map(tuple, descs)))
        try:
            n = num_steps(forged)
            if n > 1 << 24:
                continue
            for pc in {0, n - 1, rng.randrange(n)}:
                assert isinstance(instr_at(forged, pc).kind, Kind)
            outcomes["instr"] += 1
        except FraudVMError:
            outcomes["error"] += 1
    assert min(outcomes.values()) > 100, outcomes  # both outcomes are exercised (582 / 918)
