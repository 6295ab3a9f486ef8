"""``VMProgram`` (Solidity) against ``fraud_vm.stepper`` / ``fraud_vm.context`` (differential).

``VMProgram.program(context, pc)`` must return exactly ``(num_steps, ctx.regions, instr_at(ctx,
pc))`` (operands packed ``region << 128 | element``, PAD all ones) for every context of the vectors
(``tests/vectors/fraud_vm``) and every node of the example models at batch 1 and 3, at a seeded
sample of pcs (first, last, FIN steps and block boundaries, random ones); a pc past the program
gives a NOP with empty lists. Mutated contexts (truncated, an extra word, a bad dtype, the wrong
arity, inconsistent shapes, huge dims, batches and attributes) revert with the error Python names
(``decode_context`` then ``num_steps``, as ``fraud_vm.vm._context``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ai_evm.contracts import artifact
from fraud_vm import stepper
from fraud_vm.context import NodeContext, context_for, decode_context
from fraud_vm.errors import FraudVMError, MalformedContext, is_named
from fraud_vm.isa import PAD, Instr, Operand
from fraud_vm.memory import Region
from opml.bundle import Node, load_bundle, node_descriptor_words

ROOT = Path(__file__).resolve().parents[2]
VEC_DIR = ROOT / "tests" / "vectors" / "fraud_vm"
MODELS = ("digits_mlp", "digits_cnn", "encoder")
WORD = 32
ALL_ONES = (1 << 256) - 1
RANDOM_PCS = 6


FAMILIES = ("VMProgramBlocked", "VMProgramStream")
EIP170_LIMIT = 24_576


@pytest.fixture(scope="module")
def vmp(prague: Any) -> Any:
    """The ``VMProgram`` router over its two family contracts (what the step verifier calls)."""
    blocked, stream = (prague.deploy(name) for name in FAMILIES)
    router = prague.deploy("VMProgram", blocked.address, stream.address)
    # the router passes the families' revert data through: decode their errors by their ABIs
    router._errors.update({**blocked._errors, **stream._errors})
    return router


# ---------------------------------------------------------------------------------------------
# the Python side, in the contract's ABI form


def pack(op: Operand) -> int:
    """A Python operand as the contract packs it: ``region << 128 | element``; PAD all ones."""
    return ALL_ONES if op == PAD else op[0] << 128 | op[1]


def instr_tuple(ins: Instr) -> tuple[Any, ...]:
    """``Instr`` as the ABI tuple ``(kind, out, a, b, c, imm)``."""
    return (int(ins.kind), tuple(ins.out), tuple(pack(x) for x in ins.a), tuple(pack(x) for x in ins.b),
            tuple(pack(x) for x in ins.c), tuple(ins.imm))


def region_tuple(r: Region) -> tuple[Any, ...]:
    """``Region`` as the ABI tuple ``(header, dtype, itemsize, nbytes, nWords, depth)``."""
    return (tuple(r.header), int(r.dtype), r.itemsize, r.nbytes, r.n_words, r.depth)


NOP = (0, (), (), (), (), ())


def python_error(data: bytes) -> str | None:
    """The error name ``decode_context`` + ``num_steps`` raise (``fraud_vm.vm._context``), or None."""
    try:
        stepper.num_steps(decode_context(data))
    except FraudVMError as e:
        return type(e).__name__ if is_named(e) else MalformedContext.__name__
    return None


def expected(ctx: NodeContext, pc: int) -> tuple[Any, ...]:
    n = stepper.num_steps(ctx)
    ins = instr_tuple(stepper.instr_at(ctx, pc)) if pc < n else NOP
    return (n, tuple(region_tuple(r) for r in ctx.regions), ins)


def sample_pcs(ctx: NodeContext, rng: random.Random, n_random: int = RANDOM_PCS) -> list[int]:
    """First, last, one past the end, the FIN steps / block boundaries of the first blocks, random."""
    n = stepper.num_steps(ctx)
    plan = stepper.plan_of(ctx)
    pcs = {0, n - 1, n}
    period = getattr(plan, "k", None)
    if period is None:
        period = getattr(plan, "t_steps", None)
    if period is None:
        period = getattr(plan, "per_row", 0) - 1
    if period >= 0:
        for b in range(3):
            pcs |= {b * (period + 1) + period, b * (period + 1) + period + 1}
    pcs |= {rng.randrange(n) for _ in range(n_random)}
    return sorted(p for p in pcs if p <= n)


BLOCKED = {"linear", "matmul", "conv", "maxpool", "avgpool", "reduce", "argmax"}


def check(vmp: Any, ctx: NodeContext, pcs: list[int], length: bool = True) -> None:
    data = ctx.encode()
    for pc in pcs:
        got = vmp.call("program", data, pc)
        assert got.ok, f"{ctx.node.op} pc {pc}: reverted {got.error}"
        assert got.values == expected(ctx, pc), f"{ctx.node.op} pc {pc}"
    if length:
        assert vmp.value("numSteps", data) == stepper.num_steps(ctx)


# ---------------------------------------------------------------------------------------------
# equal programs


def vector_contexts() -> Iterator[NodeContext]:
    for path in sorted(VEC_DIR.glob("*.json")):
        for hexctx in sorted({v["witness"]["context"] for v in json.loads(path.read_text())["vectors"]}):
            yield decode_context(bytes.fromhex(hexctx[2:]))


def test_program_equals_stepper_on_vectors(vmp: Any) -> None:
    rng = random.Random("vectors")
    for ctx in vector_contexts():
        check(vmp, ctx, sample_pcs(ctx, rng, 20))


def structure_key(ctx: NodeContext) -> tuple[Any, ...]:
    """A context up to its tensor ids and quantization parameters (repeated layers share it)."""
    shapes = tuple((t.dtype, t.shape, t.size > 1) for t in ctx.tensors)
    return (ctx.node.op, ctx.node.attrs, shapes)


@pytest.mark.parametrize("name", MODELS)
def test_program_equals_stepper_on_models(vmp: Any, name: str) -> None:
    bundle = load_bundle(str(ROOT / "models" / name / "model.bundle"))
    rng = random.Random(name)
    seen: set[tuple[Any, ...]] = set()
    for j in range(len(bundle.nodes)):
        for batch in (1, 3):
            ctx = context_for(bundle, j, batch)
            key = structure_key(ctx)
            if key in seen:
                continue
            seen.add(key)
            n = stepper.num_steps(ctx)
            check(vmp, ctx, sorted({0, n - 1, rng.randrange(n)}), length=False)


def synthetic(op: str, attrs: tuple[tuple[int, ...], ...], x: tuple[int, ...], out: tuple[int, ...],
              out_dtype: int = 1) -> NodeContext:
    """A one-input node context over an int8 ``x`` (zero point 3) with the given output shape."""
    words = node_descriptor_words(Node(op, (0,), (1,), attrs))
    descs = ((1, len(x), *x, 0, 0x3C000000, 3, 0), (out_dtype, len(out), *out, 0, 0x3C000000, -2, 0))
    return NodeContext(bytes(range(32)), 0, 1, tuple(words), descs)


def test_reductions_over_several_kept_dims(vmp: Any) -> None:
    """Every pc of reduce / argmax programs whose 32-row blocks start inside several kept dims
    (the row operands advance like an odometer across them)."""
    x = (3, 5, 7, 4)
    for ctx in (synthetic("reduce", ((0,), (2,), (1,), (1 << 30,), (30,)), x, (3, 5, 1, 4)),
                synthetic("reduce", ((2,), (-3, 3), (0,), (1 << 30,), (30,)), x, (3, 7)),
                synthetic("argmax", ((1,), (0,), (1,)), x, (3, 7, 4), out_dtype=5)):
        check(vmp, ctx, list(range(stepper.num_steps(ctx) + 1)))


def window_out(hw: tuple[int, int], k: tuple[int, int], st: tuple[int, int], dil: tuple[int, int],
               pads: tuple[int, int, int, int]) -> tuple[int, int]:
    """``OH, OW`` of a window (``plan_window``'s formula)."""
    return ((hw[0] + pads[0] + pads[2] - (k[0] - 1) * dil[0] - 1) // st[0] + 1,
            (hw[1] + pads[1] + pads[3] - (k[1] - 1) * dil[1] - 1) // st[1] + 1)


def test_strided_dilated_grouped_windows(vmp: Any) -> None:
    """Every pc of small windows the models lack: strided and dilated maxpool with uneven pads,
    avgpool with a stride of 3 (10 lanes), a grouped strided dilated conv (PAD taps at both ends)."""
    pads, st, dil = (1, 0, 2, 1), (2, 3), (2, 1)
    oh, ow = window_out((9, 11), (2, 3), st, dil, pads)
    ctxs = [synthetic("maxpool", ((2, 3), st, pads, dil), (1, 2, 9, 11), (1, 2, oh, ow))]
    oh, ow = window_out((5, 40), (1, 2), (1, 3), (1, 1), (0, 1, 0, 0))
    ctxs.append(synthetic("avgpool", ((1, 2), (1, 3), (0, 1, 0, 0), (0,), (1 << 30,), (30,)), (1, 1, 5, 40),
                          (1, 1, oh, ow)))
    oh, ow = window_out((7, 8), (3, 2), (1, 2), (2, 1), (1, 1, 0, 1))
    conv_attrs = ((1, 1, 0, 1), (1, 2), (2, 1), (2,), (-128,), (127,))
    conv = synthetic("conv", conv_attrs, (1, 4, 7, 8), (1, 6, oh, ow), out_dtype=4)
    weights = (1, 4, 6, 2, 3, 2, 1, 0x3C000000, 0, 0)
    ctxs.append(NodeContext(conv.address, 0, 1, tuple(node_descriptor_words(Node("conv", (0, 1), (2,), conv_attrs))),
                            (conv.descs[0], weights, conv.descs[1])))
    for ctx in ctxs:
        n = stepper.num_steps(ctx)
        check(vmp, ctx, list(range(min(n, 40))) + [n - 1, n])


# ---------------------------------------------------------------------------------------------
# rejections: the error Python names


def contract_result(vmp: Any, data: bytes, pc: int) -> Any:
    got = vmp.call("program", data, pc)
    if not got.ok:
        assert got.error is not None, f"reverted without a named error: {got.output.hex()}"
        return got.error[0]
    return got.values


def python_result(data: bytes, pc: int) -> Any:
    err = python_error(data)
    return err if err is not None else expected(decode_context(data), pc)


def words_of(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + WORD], "big", signed=True) for i in range(WORD, len(data), WORD)]


def encode_words(address: bytes, words: list[int]) -> bytes:
    return address + b"".join((w % (1 << 256)).to_bytes(WORD, "big") for w in words)


def replace(ctx: NodeContext, **changes: Any) -> bytes:
    """``ctx`` with fields replaced (node words / descriptors as given), encoded."""
    fields = {"address": ctx.address, "node_index": ctx.node_index, "batch": ctx.batch,
              "node_words": ctx.node_words, "descs": ctx.descs, **changes}
    return NodeContext(**fields).encode()


def with_desc(ctx: NodeContext, j: int, pos: int, value: int) -> bytes:
    descs = [list(d) for d in ctx.descs]
    descs[j][pos] = value
    return replace(ctx, descs=tuple(tuple(d) for d in descs))


def with_node_word(ctx: NodeContext, pos: int, value: int | None) -> bytes:
    words = list(ctx.node_words)
    if value is None:
        del words[pos]
    else:
        words[pos] = value
    return replace(ctx, node_words=tuple(words))


def attr_pos(ctx: NodeContext, a: int) -> int:
    """Index in the node words of attribute ``a``'s length word."""
    w = ctx.node_words
    pos = 2 + w[1]
    pos += 1 + w[pos]  # n_out, outs: now at n_attrs
    for _ in range(a):
        pos += 1
        pos += w[pos]
    return pos + 1


def mutations(ctx: NodeContext) -> Iterator[tuple[str, bytes]]:
    """Named hand mutations of a context: structure, bounds, arity, shapes, attributes."""
    data = ctx.encode()
    yield "empty", b""
    yield "address only", data[:WORD]
    yield "three words", data[: 4 * WORD]
    yield "truncated word", data[:-WORD]
    yield "truncated byte", data[:-1]
    yield "extra word", data + bytes(WORD)
    yield "too long", data + bytes(WORD * 4096)
    yield "batch 0", replace(ctx, batch=0)
    yield "batch -1", replace(ctx, batch=-1)
    yield "batch 2^16+1", replace(ctx, batch=(1 << 16) + 1)
    yield "batch 2^16", replace(ctx, batch=1 << 16)
    if ctx.descs[0][2] > 0:
        yield "leading -k", with_desc(ctx, 0, 2, -ctx.descs[0][2])
        yield "leading -k, batch 2^16", replace(NodeContext(ctx.address, ctx.node_index, 1 << 16, ctx.node_words,
                                                            ctx.descs), descs=(
            (ctx.descs[0][:2] + (-ctx.descs[0][2],) + ctx.descs[0][3:]),) + ctx.descs[1:])
    yield "no descriptors", replace(ctx, descs=())
    yield "one descriptor too few", replace(ctx, descs=ctx.descs[:-1])
    yield "one descriptor too many", replace(ctx, descs=ctx.descs + ctx.descs[-1:])
    yield "no node words", replace(ctx, node_words=())
    for j, d in enumerate(ctx.descs):
        if 0 < j < len(ctx.descs) - 1:
            continue  # the first input and the output stand for every descriptor
        nd = d[1]
        yield f"dtype 0 in {j}", with_desc(ctx, j, 0, 0)
        yield f"dtype 8 in {j}", with_desc(ctx, j, 0, 8)
        yield f"dtype int32 in {j}", with_desc(ctx, j, 0, 4)
        yield f"ndim+1 in {j}", with_desc(ctx, j, 1, nd + 1)
        yield f"short descriptor {j}", replace(ctx, descs=ctx.descs[:j] + (d[:5],) + ctx.descs[j + 1 :])
        yield f"zero point 2^63 in {j}", with_desc(ctx, j, 4 + nd, 1 << 63)
        yield f"zero point -2^63 in {j}", with_desc(ctx, j, 4 + nd, -(1 << 63))
        yield f"scale 2^32 in {j}", with_desc(ctx, j, 3 + nd, 1 << 32)
        yield f"scale -1 in {j}", with_desc(ctx, j, 3 + nd, -1)
        for i in range(nd):
            for v in (0, d[2 + i] + 1, -1, 1 << 32, -(1 << 255)) if i == 0 else (0, d[2 + i] + 1, 1 << 32):
                yield f"dim {i} = {v} in {j}", with_desc(ctx, j, 2 + i, v)
        if nd >= 2:
            huge = list(d)
            huge[2:4] = [(1 << 32) - 1, (1 << 32) - 1]
            yield f"2^64 elements in {j}", replace(ctx, descs=ctx.descs[:j] + (tuple(huge),) + ctx.descs[j + 1 :])
    w = ctx.node_words
    yield "op 0", with_node_word(ctx, 0, 0)
    yield "op 23", with_node_word(ctx, 0, 23)
    yield "n_in + 1", with_node_word(ctx, 1, w[1] + 1)
    yield "n_in - 1", with_node_word(ctx, 1, w[1] - 1)
    yield "n_in -1", with_node_word(ctx, 1, -1)
    yield "n_out 2", with_node_word(ctx, 2 + w[1], 2)
    yield "n_attrs + 1", with_node_word(ctx, 4 + w[1], w[4 + w[1]] + 1)
    yield "n_attrs -1", with_node_word(ctx, 4 + w[1], -1)
    n_attrs = w[4 + w[1]]
    for a in range(n_attrs):
        p = attr_pos(ctx, a)
        ln = w[p]
        yield f"attr {a} empty", replace(ctx, node_words=w[:p] + (0,) + w[p + 1 + ln :])
        yield f"attr {a} len -1", with_node_word(ctx, p, -1)
        yield f"attr {a} one more", replace(ctx, node_words=w[: p] + (ln + 1,) + w[p + 1 : p + 1 + ln] + (1,)
                                            + w[p + 1 + ln :])
        for i in range(ln):
            for v in (1 << 63, -(1 << 63) - 1, w[p + 1 + i] + 1):
                yield f"attr {a}[{i}] = {v}", with_node_word(ctx, p + 1 + i, v)


def test_mutated_contexts_revert_like_python(vmp: Any) -> None:
    """Every hand mutation of a conv context (6 attributes, 3 inputs: every bound and count) and of
    an attribute-less elementwise one (routed to the other family)."""
    ctxs = list(vector_contexts())
    conv = next(c for c in ctxs if c.node.op == "conv")
    flip = next(c for c in ctxs if c.node.op == "flip_sign_bit")
    for ctx in (conv, flip):
        for what, data in mutations(ctx):
            want = python_result(data, 0)
            assert contract_result(vmp, data, 0) == want, f"{ctx.node.op}: {what}"


def test_random_word_mutations(vmp: Any) -> None:
    rng = random.Random(7)
    values = [0, 1, -1, 2, 4, 7, 8, 9, 32, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, -(1 << 63) - 1,
              (1 << 255) - 1, -(1 << 255)]
    for ctx in vector_contexts():
        data = ctx.encode()
        words = words_of(data)
        for _ in range(6):
            w = list(words)
            k = rng.randrange(len(w))
            w[k] = rng.choice(values + [w[k] + 1, w[k] - 1])
            mutated = encode_words(ctx.address, w)
            pc = rng.choice([0, 1, 40])
            assert contract_result(vmp, mutated, pc) == python_result(mutated, pc), f"{ctx.node.op}: word {k}"


def test_pc_past_the_program_is_a_nop(vmp: Any) -> None:
    for ctx in list(vector_contexts())[:2]:
        n = stepper.num_steps(ctx)
        for pc in (n, n + 1, ALL_ONES):
            assert vmp.call("program", ctx.encode(), pc).values[2] == NOP


def test_router_families_and_sizes(prague: Any, vmp: Any) -> None:
    """Each family rejects the other's ops (the router never sends them); a context too short to
    name an op is rejected alike by both; every contract fits EIP-170."""
    blocked, stream = (prague.deploy(name) for name in FAMILIES)
    for ctx in vector_contexts():
        if not ctx.output.size:
            continue
        wrong = stream if ctx.node.op in BLOCKED else blocked
        assert wrong.call("program", ctx.encode(), 0).error == ("UnsupportedOp", ())
    for data in (b"", bytes(32 * 4), bytes(32 * 5)):
        for c in (vmp, blocked, stream):
            assert c.call("program", data, 0).error == ("MalformedContext", ())
    for name in (*FAMILIES, "VMProgram"):
        size = len(artifact(name).deployed_bytecode)
        assert 0 < size <= EIP170_LIMIT, f"{name}: {size} bytes"
