"""Step witnesses: JSON round trip, size bound, and rejection of every kind of tampering."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fraud_vm import errors as E
from fraud_vm.compiler import context_for, decode_context
from fraud_vm.state import decode_state
from fraud_vm.strategies import corrupt
from fraud_vm.tensors import commit_tensor, region_root, tensor_header
from fraud_vm.trace import NodeTrace, initial_state
from fraud_vm.vm import StepWitness, verify_step
from opml.bundle import load_bundle
from opml.commitment import tensor_data_root
from opml.engine import get_plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def encoder_traces() -> dict[str, NodeTrace]:
    """One trace per op kind of the encoder (first node of each op)."""
    b = load_bundle(str(ROOT / "models/encoder/model.bundle"))
    x = np.load(ROOT / "models/encoder/test_x.npy")[:1]
    plan, env, out = get_plan(b), {b.inputs[0]: x}, {}
    for j, (node, kernel) in enumerate(zip(b.nodes, plan.kernels, strict=True)):
        if node.op not in out:
            out[node.op] = NodeTrace(b, j, dict(env))
        env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
    return out


def _flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]


def _case(traces: dict[str, NodeTrace], op: str) -> tuple[NodeTrace, int, StepWitness]:
    tr = traces[op]
    k = tr.num_steps // 2
    return tr, k, tr.witness_at(k)


@pytest.mark.parametrize("op", ["linear", "layernorm", "softmax", "add", "lut", "matmul", "transpose", "reduce"])
def test_witness_round_trip_and_size(encoder_traces: dict[str, NodeTrace], op: str) -> None:
    tr, k, w = _case(encoder_traces, op)
    assert StepWitness.from_json(w.to_json()) == w == StepWitness.decode(w.encode())
    assert verify_step(tr.state_hash_at(k), w) == tr.state_hash_at(k + 1)
    assert w.size_bytes() < 8192


@pytest.mark.parametrize("op", ["linear", "layernorm", "softmax", "add"])
def test_tampered_witnesses_are_rejected(encoder_traces: dict[str, NodeTrace], op: str) -> None:
    tr, k, w = _case(encoder_traces, op)
    h = tr.state_hash_at(k)
    r, i, v = w.words[0]
    bad: list[tuple[StepWitness, type[E.FraudVMError]]] = [
        (replace(w, words=((r, i, _flip(v, 5)),) + w.words[1:]), E.MemoryRootMismatch),  # a word's value
        (replace(w, siblings=(_flip(w.siblings[0]),) + w.siblings[1:]), E.MemoryRootMismatch),  # a proof sibling
        (replace(w, siblings=w.siblings[:-1]), E.SiblingsExhausted),  # a sibling missing
        (replace(w, siblings=w.siblings + (bytes(32),)), E.UnusedSiblings),  # a sibling too many
        (replace(w, words=w.words + w.words[:1]), E.WordsNotSorted),  # a repeated word
        (replace(w, pre_state=_flip(w.pre_state, 300)), E.PreStateHashMismatch),  # a register
        (replace(w, context=_flip(w.context, 40)), E.ContextHashMismatch),  # the node context
    ]
    for b, err in bad:
        for form in (b, b.encode()):
            with pytest.raises(err):
                verify_step(h, form)
    with pytest.raises(E.InvalidWitness):  # a touched word missing: the multiproof no longer fits
        verify_step(h, replace(w, words=w.words[1:]))
    with pytest.raises(E.PreStateHashMismatch):
        verify_step(_flip(h), w)


def test_extra_proven_word_is_rejected(encoder_traces: dict[str, NodeTrace]) -> None:
    """A word that is correctly proven but not touched by the step makes the witness invalid."""
    tr = encoder_traces["add"]
    k = 0
    honest = tr.witness_at(k)
    mem = tr.memory_at(k)
    addrs = sorted({(r, i) for r, i, _ in honest.words} | {(0, 7)})
    padded = StepWitness(honest.pre_state, honest.context, tuple((r, i, mem.read_word(r, i)) for r, i in addrs),
                         tuple(mem.prove(addrs)))
    with pytest.raises(E.UnusedWord):
        verify_step(tr.state_hash_at(k), padded)


def test_halted_state_cannot_step(encoder_traces: dict[str, NodeTrace]) -> None:
    tr = encoder_traces["lut"]
    final = tr.state_at(tr.num_steps)
    w = StepWitness(final.encode(), tr.context.encode(), (), ())
    with pytest.raises(E.StateHalted):
        verify_step(final.hash(), w)


def test_context_and_state_decoding(encoder_traces: dict[str, NodeTrace]) -> None:
    tr = encoder_traces["layernorm"]
    assert decode_context(tr.context.encode()) == tr.context
    s = tr.state_at(tr.num_steps // 2)
    assert decode_state(s.encode()) == s
    with pytest.raises(E.InvalidWitness):
        decode_context(tr.context.encode()[:-32])
    with pytest.raises(E.MalformedState):
        decode_state(s.encode()[:-1])


def test_start_state_is_derived_from_address_node_and_input_roots(encoder_traces: dict[str, NodeTrace]) -> None:
    """Constant inputs' roots follow from the data roots the model address commits to."""
    tr = encoder_traces["linear"]
    b = tr.bundle
    node = b.nodes[tr.node_index]
    roots = []
    for t_idx, x, info in zip(node.inputs, tr.xs, tr.context.inputs, strict=True):
        spec = b.tensors[t_idx]
        if spec.is_const:
            root = region_root(tensor_header(info.dtype, info.shape), tensor_data_root(spec.data))
            assert root == commit_tensor(x, info.dtype)
        else:
            root = commit_tensor(x, info.dtype)
        roots.append(root)
    ctx = context_for(b, tr.node_index, 1)
    assert initial_state(b.address, tr.node_index, roots, ctx) == tr.start_state() == tr.state_at(0)


def test_commitment_mixes_in_shape_and_dtype() -> None:
    a = np.arange(64, dtype=np.int8)
    assert commit_tensor(a, 1) != commit_tensor(a.reshape(8, 8), 1)
    assert commit_tensor(a.view(np.uint8), 2) != commit_tensor(a, 1)
    assert commit_tensor(a.reshape(8, 8), 1) == commit_tensor(a.reshape(8, 8).copy(), 1)


def test_fast_forward_memory_root_matches_full_memory(encoder_traces: dict[str, NodeTrace]) -> None:
    """The path-updated memory roots of ``state_at`` equal the root of the full memory at every
    sampled step (prefix writes, partial boundary words, row masks, the final state)."""
    for tr in encoder_traces.values():
        n = tr.num_steps
        for k in sorted({0, 1, 2, n // 3, n // 2, n - 2, n - 1, n} & set(range(n + 1))):
            assert tr.state_at(k).memory_root == tr.memory_at(k).root(), (tr.context.node.op, k)
        assert tr.output_roots() == [commit_tensor(tr.y, tr.context.output.dtype)]
        # a copy given another output (what `aievm replay --against` does) does not reuse the memo
        other = copy.copy(tr)
        y = corrupt(tr.y)
        other.y = y
        assert other.state_at(n).memory_root != tr.state_at(n).memory_root
        assert other.output_roots() == [commit_tensor(y, tr.context.output.dtype)]
