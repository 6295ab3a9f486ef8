"""Phase-1 commitments: the state of an inference after each graph node, and the claim.

A bundle has ``T`` tensors (ids ``0..T-1``) and ``n`` nodes. The *tensor table* after ``i`` nodes
(``0 <= i <= n``) has one 32-byte leaf per tensor id: ``commit_tensor(value)`` for every tensor
defined so far (the graph inputs, and the outputs of nodes ``0..i-1``), the zero word for every
other tensor (constants included: they are committed by the model address). The phase-1 state is::

    tensors_root_i = merkle_root(leaves_i)           # depth tree_depth(T), opml.merkle layout
    state_i        = keccak256(model_address || uint256(i) || tensors_root_i)

so ``state_0`` follows from the model address and the input tensor roots alone, and
``state_{i+1}`` from ``state_i``'s tensors root with only node ``i``'s output leaves set (each
tensor is written once: the graph is in SSA form). The claim binds the model, the inputs and the
outputs: ``input_hash = keccak256(root_in_0 || root_in_1 || ...)`` and likewise ``output_hash``
over the graph outputs' roots, in declared order. ``docs/dispute_game.md`` is the spec.

The tensor commitment function (``fraud_vm.tensors.commit_tensor``) is passed in, so this module
depends on nothing but ``opml``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from opml.bundle import VERSION, Bundle, DType
from opml.commitment import GraphHeader
from opml.engine import check_input, get_plan
from opml.errors import InferenceInputError, OpmlError
from opml.merkle import ZERO_WORD, LevelTree, keccak, root_from_proof, tree_depth

from .errors import FraudVMError, InputCountMismatch, InvalidClaim, InvalidTableProof, MalformedMove

CommitTensor = Callable[[np.ndarray, int], bytes]
_CODE: dict[np.dtype, DType] = {dt.np: dt for dt in DType}


class Phase1Error(FraudVMError):
    """A player-side phase-1 request that cannot be served (a state or tensor outside the trace).

    The referee-side checks (``check_claim``, ``check_leaf``, ``apply_outputs``) raise the game's
    named errors (``fraud_vm.errors``) instead.
    """


def state_hash(model_address: bytes, counter: int, tensors_root: bytes) -> bytes:
    """``keccak256(model_address || uint256(counter) || tensors_root)``: the phase-1 state."""
    if len(model_address) != 32 or len(tensors_root) != 32 or not 0 <= counter < 1 << 256:
        raise MalformedMove("a phase-1 state takes a 32-byte address, a uint256 counter and a 32-byte root")
    return keccak(model_address + counter.to_bytes(32, "big") + tensors_root)


def io_hash(roots: Sequence[bytes]) -> bytes:
    """``keccak256`` of tensor roots concatenated: the claim's input hash or output hash."""
    if any(not isinstance(r, bytes) or len(r) != 32 for r in roots):
        raise MalformedMove("tensor roots are 32 bytes each")
    return keccak(b"".join(roots))


def graph_header(bundle: Bundle) -> GraphHeader:
    """The graph facts of ``bundle`` that ``opml.commitment.prove_header`` proves against its address."""
    return GraphHeader(VERSION, len(bundle.tensors), len(bundle.nodes), tuple(bundle.inputs), tuple(bundle.outputs))


def table_depth(graph: GraphHeader | Bundle) -> int:
    """Depth of the tensor table's Merkle tree: ``ceil(log2 T)``."""
    n = graph.n_tensors if isinstance(graph, GraphHeader) else len(graph.tensors)
    return tree_depth(n)


def check_ssa(bundle: Bundle) -> None:
    """Raise unless every non-constant tensor is a graph input or the output of exactly one node."""
    defined = set(bundle.inputs)
    for j, node in enumerate(bundle.nodes):
        for o in node.outputs:
            if o in defined or bundle.tensors[o].is_const:
                raise Phase1Error(f"node {j} writes tensor {o}, which is already defined: the graph is not SSA")
            defined.add(o)


def _root32(r: object) -> bytes:
    if not isinstance(r, bytes) or len(r) != 32:
        raise MalformedMove("tensor roots and proof words are 32 bytes each")
    return r


def initial_tensors_root(header: GraphHeader, input_roots: Sequence[bytes]) -> bytes:
    """The tensor table before node 0: the graph inputs' roots, zero elsewhere."""
    if len(input_roots) != len(header.inputs):
        raise InvalidClaim(f"the model has {len(header.inputs)} inputs, got {len(input_roots)} roots")
    tree = LevelTree.from_leaves([ZERO_WORD] * header.n_tensors, table_depth(header))
    tree.update_many({t: _root32(r) for t, r in zip(header.inputs, input_roots, strict=True)})
    return tree.root


def initial_state(address: bytes, header: GraphHeader, input_roots: Sequence[bytes]) -> bytes:
    """``state_0``: derived from the model address and the claim's input roots."""
    return state_hash(address, 0, initial_tensors_root(header, input_roots))


def check_leaf(header: GraphHeader, tensors_root: bytes, tensor_id: int, leaf: bytes,
               proof: Sequence[bytes]) -> None:
    """Raise InvalidTableProof unless ``leaf`` is tensor ``tensor_id``'s leaf in the table ``tensors_root``."""
    if not isinstance(proof, Sequence) or not 0 <= tensor_id < header.n_tensors or len(proof) != table_depth(header):
        raise InvalidTableProof(f"a tensor-table proof for tensor {tensor_id} has {table_depth(header)} words")
    path = [_root32(p) for p in proof]
    if root_from_proof(_root32(leaf), tensor_id, path) != tensors_root:
        raise InvalidTableProof(f"tensor {tensor_id}'s leaf does not open against the tensor table root")


def apply_outputs(header: GraphHeader, tensors_root: bytes, output_ids: Sequence[int], output_roots: Sequence[bytes],
                  proofs: Sequence[Sequence[bytes]]) -> bytes:
    """The tensor table after a node with outputs ``output_ids``, given the one before it.

    ``proofs[j]`` is output ``j``'s sibling path in the table as it is when output ``j`` is written
    (outputs are written in order); each output's leaf must be zero before (SSA).
    """
    if len(output_roots) != len(output_ids) or len(proofs) != len(output_ids):
        raise InputCountMismatch(f"the node has {len(output_ids)} outputs")
    root = tensors_root
    for t, r, proof in zip(output_ids, output_roots, proofs, strict=True):
        check_leaf(header, root, t, ZERO_WORD, proof)
        root = root_from_proof(_root32(r), t, list(proof))
    return root


def intermediate_tensors(bundle: Bundle, inputs: Sequence[np.ndarray]) -> dict[int, np.ndarray]:
    """Every non-constant tensor of one inference (inputs and every node's outputs), by tensor id.

    Walks the engine's plan like ``opml.engine.run`` does, without freeing anything; inputs are
    checked and converted with the engine's own input check.
    """
    specs = bundle.tensors
    if len(inputs) != len(bundle.inputs):
        raise InferenceInputError(f"model takes {len(bundle.inputs)} inputs, got {len(inputs)}")
    env: dict[int, np.ndarray] = {}
    batches = set()
    for t, spec, x in zip(bundle.inputs, bundle.input_specs(), inputs, strict=True):
        env[t], batch = check_input(spec, x)  # the engine's own dtype/shape/batch checks and errors
        batches.add(batch)
    if len(batches - {None}) > 1:
        raise InferenceInputError("inputs disagree on the batch size")
    plan = get_plan(bundle)
    for j, (node, kernel) in enumerate(zip(bundle.nodes, plan.kernels, strict=True)):
        args = [env[i] if i in env else specs[i].array() for i in node.inputs]
        try:
            env[node.outputs[0]] = kernel(args)
        except (ValueError, IndexError, TypeError, OverflowError, ArithmeticError) as e:
            raise OpmlError(f"node {j} ({node.op}) is inconsistent with its inputs: {e}") from None
    return env


@dataclass(frozen=True)
class Phase1Trace:
    """One party's phase-1 view of an inference: every tensor root and every state."""

    bundle: Bundle
    roots: Mapping[int, bytes]
    leaves: tuple[tuple[bytes, ...], ...]
    tensors_roots: tuple[bytes, ...]
    states: tuple[bytes, ...]

    @property
    def num_nodes(self) -> int:
        return len(self.bundle.nodes)

    def state(self, i: int) -> bytes:
        """``state_i``; past the last node the trace is padded with the final state."""
        if i < 0:
            raise Phase1Error(f"state index {i} is negative")
        return self.states[min(i, self.num_nodes)]

    def tensors_root(self, i: int) -> bytes:
        return self.tensors_roots[min(i, self.num_nodes)]

    def leaf_proof(self, i: int, tensor_id: int) -> list[bytes]:
        """Sibling path of ``tensor_id`` in the table after ``i`` nodes."""
        return self.table_paths(i, [tensor_id], [])[0][0]

    def table_paths(self, i: int, reads: Sequence[int], writes: Sequence[int]) -> tuple[list[list[bytes]],
                                                                                         list[list[bytes]]]:
        """Paths of the leaves ``reads`` in the table after ``i`` nodes, and the path of each leaf of
        ``writes`` in the table as it is when that leaf is written (in order, each set to its root):
        what ``OpenSteps`` carries. The table's tree is hashed once for all of them."""
        leaves = self.leaves[min(i, self.num_nodes)]
        for t in (*reads, *writes):
            if not 0 <= t < len(leaves):
                raise Phase1Error(f"tensor {t} is not in the table (0..{len(leaves) - 1})")
        tree = LevelTree.from_leaves(leaves, table_depth(self.bundle))
        read_paths = [tree.path(t) for t in reads]
        write_paths = []
        for t in writes:
            write_paths.append(tree.path(t))
            tree.update(t, self.roots[t])
        return read_paths, write_paths

    def input_roots(self) -> list[bytes]:
        return [self.roots[t] for t in self.bundle.inputs]

    def output_roots(self) -> list[bytes]:
        return [self.roots[t] for t in self.bundle.outputs]

    def node_input_roots(self, node_index: int) -> dict[int, bytes]:
        """Roots of node ``node_index``'s non-constant inputs, by tensor id."""
        node = self.bundle.nodes[node_index]
        return {t: self.roots[t] for t in node.inputs if not self.bundle.tensors[t].is_const}


def build_phase1(bundle: Bundle, roots: Mapping[int, bytes]) -> Phase1Trace:
    """Phase-1 states from the roots of every non-constant tensor (by id)."""
    check_ssa(bundle)
    d = table_depth(bundle)
    leaves = [ZERO_WORD] * len(bundle.tensors)
    for t in bundle.inputs:
        leaves[t] = roots[t]
    all_leaves = [tuple(leaves)]
    # the full tree once, then only the path of each written leaf (same root as merkle_root)
    tree = LevelTree.from_leaves(leaves, d)
    troots_list = [tree.root]
    for node in bundle.nodes:
        for o in node.outputs:
            leaves[o] = roots[o]
            tree.update(o, roots[o])
        all_leaves.append(tuple(leaves))
        troots_list.append(tree.root)
    troots = tuple(troots_list)
    states = tuple(state_hash(bundle.address, i, r) for i, r in enumerate(troots))
    return Phase1Trace(bundle, dict(roots), tuple(all_leaves), troots, states)


def commit_env(bundle: Bundle, env: Mapping[int, np.ndarray], commit: CommitTensor) -> dict[int, bytes]:
    """``commit_tensor`` of every non-constant tensor in ``env``."""
    return {t: commit(a, int(_CODE.get(a.dtype) or DType.from_np(a.dtype))) for t, a in env.items()
            if not bundle.tensors[t].is_const}


@dataclass(frozen=True)
class Claim:
    """The claim ``(model address, input hash) -> output hash`` with what links it to phase 1.

    ``final_state`` is the claimant's ``state_n``; ``final_tensors_root`` its tensor table;
    ``output_proofs[j]`` output ``j``'s path in that table. ``batch`` fixes every tensor's shape.
    """

    model_address: bytes
    batch: int
    input_roots: tuple[bytes, ...]
    output_roots: tuple[bytes, ...]
    final_state: bytes
    final_tensors_root: bytes
    output_proofs: tuple[tuple[bytes, ...], ...]

    @property
    def input_hash(self) -> bytes:
        return io_hash(self.input_roots)

    @property
    def output_hash(self) -> bytes:
        return io_hash(self.output_roots)


def make_claim(trace: Phase1Trace, batch: int) -> Claim:
    """The claim a party holding ``trace`` makes."""
    n = trace.num_nodes
    return Claim(
        trace.bundle.address, batch, tuple(trace.input_roots()), tuple(trace.output_roots()), trace.state(n),
        trace.tensors_root(n), tuple(tuple(trace.leaf_proof(n, t)) for t in trace.bundle.outputs),
    )


def check_claim(address: bytes, header: GraphHeader, claim: Claim) -> bytes:
    """Check a claim's links (address, batch, output roots inside ``state_n``); return ``state_0``.

    Raises InvalidClaim (or MalformedMove for fields of the wrong size).
    """
    if claim.model_address != address:
        raise InvalidClaim("the claim names another model address")
    if not isinstance(claim.batch, int) or not 1 <= claim.batch <= 1 << 16:
        raise InvalidClaim(f"batch {claim.batch!r} is outside 1..65536")
    n = header.n_nodes
    if state_hash(address, n, _root32(claim.final_tensors_root)) != claim.final_state:
        raise InvalidClaim("the claim's final tensor table does not hash to its final state")
    if len(claim.output_roots) != len(header.outputs) or len(claim.output_proofs) != len(header.outputs):
        raise InvalidClaim(f"the model has {len(header.outputs)} outputs")
    for t, r, p in zip(header.outputs, claim.output_roots, claim.output_proofs, strict=True):
        try:
            check_leaf(header, claim.final_tensors_root, t, r, p)
        except InvalidTableProof as e:
            raise InvalidClaim(f"an output root does not open in the final table: {e.detail}") from None
    return initial_state(address, header, claim.input_roots)
