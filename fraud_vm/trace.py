"""One node's VM run: start state, fast-forward to any step, witnesses, final-state checks.

``NodeTrace(bundle, node_index, env)`` computes the node's output with the engine's kernel once
(or takes it from the caller's own engine pass), then answers ``state_at(k)`` for any ``k``
directly: the registers come from the program's closed-form ``regs_at`` (partial sums over numpy
values) and the memory root from the output elements the first ``k`` steps have written
(``written_at``), so no step before ``k`` is run. Only the output region changes between states,
so a state's memory root is one path update of the region tree, and for prefix-writing programs
the output's data root is one hash per level at the written-prefix boundary.

Linking to phase 1 (``docs/fraud_vm.md`` "Phase links"): the start state is
``initial_state(model_address, node_index, input_roots, context)``; a final state's output
commitment is checked with ``node_final_check``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property

import numpy as np

from opml.bundle import Bundle
from opml.engine import get_plan
from opml.merkle import (
    ZERO_HASHES,
    ZERO_WORD,
    LevelTree,
    MerkleError,
    fast_bytes_root,
    merkle_proof,
    merkle_root,
    root_from_proof,
    tree_levels,
)

from .compiler import NodeContext, compile_context, context_for
from .errors import FraudVMError
from .memory import region_depth
from .state import HALTED, RUNNING, VMState
from .stepper import num_steps as stepper_num_steps
from .tensors import commit_tensor, region_root, tensor_bytes
from .vm import NodeMemory, StepWitness, step_with_witness


def zero_region_root(ctx: NodeContext, r: int) -> bytes:
    """Root of region ``r`` when all its words are zero (the output region at step 0)."""
    reg = ctx.regions[r]
    return region_root(reg.header, ZERO_HASHES[reg.depth] if reg.n_words else ZERO_WORD)


def initial_state(model_address: bytes, node_index: int, input_roots: Sequence[bytes], context: NodeContext) -> VMState:
    """The start state of a node's run.

    ``input_roots`` are ``commit_tensor`` of every node input in input order (constants included:
    their roots follow from the model address, ``docs/fraud_vm.md``); ``context`` must name the same
    model address and node. The output region starts zeroed.
    """
    if context.address != model_address or context.node_index != node_index:
        raise FraudVMError("the node context names another model address or node index")
    if len(input_roots) != len(context.inputs):
        raise FraudVMError(f"node has {len(context.inputs)} inputs, got {len(input_roots)} roots")
    roots = [*input_roots, zero_region_root(context, len(context.inputs))]
    mem_root = merkle_root(roots, region_depth(len(roots)))
    return VMState(context.hash, mem_root, 0, RUNNING)


_CONST_TREES: OrderedDict[tuple[bytes, int], list[bytes]] = OrderedDict()


def constant_tree(bundle: Bundle, tensor_id: int) -> list[bytes]:
    """``tree_levels`` of constant ``tensor_id``'s canonical bytes, computed once per model.

    Like a constant's root (``fraud_vm.tensors.constant_root``) this is a function of the model
    alone; the levels are immutable ``bytes``, shared by every memory that holds the constant.
    """
    key = (bundle.address, tensor_id)
    tree = _CONST_TREES.get(key)
    if tree is None:
        spec = bundle.tensors[tensor_id]
        if not spec.is_const:
            raise FraudVMError(f"tensor {tensor_id} is not a constant")
        tree = _CONST_TREES[key] = tree_levels(tensor_bytes(spec.array(), spec.dtype))
        while len(_CONST_TREES) > 1024:
            _CONST_TREES.popitem(last=False)
    else:
        _CONST_TREES.move_to_end(key)
    return tree


def region_proof(roots: Sequence[bytes], r: int) -> list[bytes]:
    """Bottom-first sibling path of region ``r`` in the region tree of ``roots``."""
    return merkle_proof(list(roots), r, region_depth(len(roots)))


def node_final_check(final_state: VMState, context: NodeContext, output_root: bytes, proof: Sequence[bytes]) -> bool:
    """True iff ``final_state`` is the halted end of ``context``'s program and its memory holds
    an output region with root ``output_root`` (``proof``: sibling path of the output region,
    ``region_proof``). Phase 2's last state is thereby tied to the output commitment of phase 1.
    """
    n_out = len(context.inputs)
    if final_state.context_hash != context.hash or final_state.status != HALTED \
            or final_state.step != stepper_num_steps(context):
        return False
    if len(proof) != region_depth(n_out + 1):
        return False
    try:
        return root_from_proof(output_root, n_out, list(proof)) == final_state.memory_root
    except (MerkleError, TypeError):
        return False


def _batch(bundle: Bundle, node_index: int, xs: Sequence[np.ndarray]) -> int:
    for i, x in zip(bundle.nodes[node_index].inputs, xs, strict=True):
        shape = bundle.tensors[i].shape
        if shape and shape[0] < 0 and x.ndim:
            return int(x.shape[0] // -shape[0])
    return 1


class NodeTrace:
    """The VM run of node ``node_index`` on values ``env`` (tensor id -> array; constants optional).

    A caller that already has the node's output (its engine pass) and the roots of its inputs (its
    phase-1 commitments) passes them as ``output`` / ``input_roots`` (every input, constants
    included, in input order) so they are not computed twice; ``output`` must be what the engine's
    kernel gives (a party that passes another value gets the trace of that value). States are
    memoised per trace; setting ``y`` clears the memo.
    """

    def __init__(self, bundle: Bundle, node_index: int, env: Mapping[int, np.ndarray], *,
                 output: np.ndarray | None = None, input_roots: Sequence[bytes] | None = None) -> None:
        self.bundle, self.node_index = bundle, node_index
        node = bundle.nodes[node_index]
        self.xs = [np.asarray(env[i]) if i in env else bundle.tensors[i].array() for i in node.inputs]
        self.context = context_for(bundle, node_index, _batch(bundle, node_index, self.xs))
        self.program = compile_context(self.context)
        for x, t in zip(self.xs, self.context.inputs, strict=True):
            if tuple(x.shape) != t.shape or x.dtype != t.dtype.np:
                raise FraudVMError(f"node {node_index} input {x.dtype}{x.shape} does not match its descriptor {t}")
        y = get_plan(bundle).kernels[node_index](self.xs) if output is None else np.asarray(output)
        out = self.context.output
        if tuple(y.shape) != out.shape or y.dtype != out.dtype.np:
            raise FraudVMError(f"engine output {y.dtype}{y.shape} of node {node_index} differs from its descriptor")
        self.y = y
        if input_roots is None:
            input_roots = [commit_tensor(x, t.dtype) for x, t in zip(self.xs, self.context.inputs, strict=True)]
        if len(input_roots) != len(self.xs) or any(len(r) != 32 for r in input_roots):
            raise FraudVMError(f"node {node_index} takes {len(self.xs)} input roots of 32 bytes")
        self.input_roots = list(input_roots)
        self.num_steps = self.program.num_steps
        # the region tree over [inputs..., output]: only the output leaf changes between states
        self._rtree = LevelTree.from_leaves([*self.input_roots, ZERO_WORD], region_depth(len(self.input_roots) + 1),
                                            mutable=False)

    @property
    def y(self) -> np.ndarray:
        """The node's output (C order); setting it clears the memoised states."""
        return self._y

    @y.setter
    def y(self, value: np.ndarray) -> None:
        self._y = np.ascontiguousarray(value)
        self._memo: dict[object, object] = {}

    @cached_property
    def input_data(self) -> list[bytes]:
        """Canonical bytes of every input (for the full memory)."""
        return [tensor_bytes(x, t.dtype) for x, t in zip(self.xs, self.context.inputs, strict=True)]

    def _input_trees(self) -> list[list[bytes] | None]:
        """Word trees of the node's constant inputs (per model, cached); None for the others."""
        node = self.bundle.nodes[self.node_index]
        return [constant_tree(self.bundle, t) if self.bundle.tensors[t].is_const else None for t in node.inputs]

    def _output_bytes(self, k: int) -> bytes:
        w = self.program.written_at(k)
        flat = self.y.reshape(-1)
        if isinstance(w, np.ndarray):
            masked = np.where(w, flat, np.zeros(1, flat.dtype)).astype(flat.dtype)
            return tensor_bytes(masked, self.context.output.dtype)
        return tensor_bytes(flat[:w], self.context.output.dtype) + bytes((flat.size - w) * flat.itemsize)

    def _check_k(self, k: int, hi: int) -> None:
        if not 0 <= k <= hi:
            raise FraudVMError(f"step {k} is outside 0..{hi}")

    def _memory_root(self, out_root: bytes) -> bytes:
        """Root of the region tree with ``out_root`` as the output region (path update only)."""
        return self._rtree.root_with(len(self.input_roots), out_root)

    def start_state(self) -> VMState:
        """State 0 (``initial_state`` of the model address, node and input roots)."""
        return initial_state(self.bundle.address, self.node_index, self.input_roots, self.context)

    def _output_tree(self) -> LevelTree:
        """Word tree of the whole output (memoised)."""
        hit = self._memo.get("levels")
        if hit is None:
            hit = self._memo["levels"] = LevelTree.from_data(tensor_bytes(self.y, self.context.output.dtype),
                                                             mutable=False)
        assert isinstance(hit, LevelTree)
        return hit

    def _output_data_root(self, k: int) -> bytes:
        """Data root of the output region after ``k`` steps.

        When the first ``k`` steps have written a prefix of the output (every program shape but
        rows), the tree over "final words, then zeros" is the full output's tree on the left of
        the boundary word and zero subtrees on its right: one hash per level, no rehashing.
        """
        w = self.program.written_at(k)
        if isinstance(w, np.ndarray):
            return fast_bytes_root(self._output_bytes(k))
        return self._output_tree().prefix_root(w * self.y.itemsize)

    def state_at(self, k: int) -> VMState:
        """State after ``k`` steps, computed directly (fast-forward)."""
        self._check_k(k, self.num_steps)
        hit = self._memo.get(k)
        if hit is None:
            reg = self.context.regions[-1]
            out_root = region_root(reg.header, self._output_data_root(k))
            s, acc, aux = self.program.regs_at(k, self.xs)
            status = HALTED if k >= self.num_steps else RUNNING
            hit = self._memo[k] = VMState(self.context.hash, self._memory_root(out_root), k, status, s, acc, aux)
        assert isinstance(hit, VMState)
        return hit

    def state_hash_at(self, k: int) -> bytes:
        key = ("hash", k)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self.state_at(k).hash()
        assert isinstance(hit, bytes)
        return hit

    @cached_property
    def _base_memory(self) -> NodeMemory:
        trees = self._input_trees()
        data = [None if tree is not None else tensor_bytes(x, t.dtype)
                for x, t, tree in zip(self.xs, self.context.inputs, trees, strict=True)]
        return NodeMemory(self.context, [*data, None], [*trees, None])

    def memory_at(self, k: int) -> NodeMemory:
        """Full memory after ``k`` steps (input trees are shared and built once)."""
        return self._base_memory.with_output(self._output_bytes(k))

    def witness_at(self, k: int) -> StepWitness:
        """Witness of step ``k`` (``0 <= k < num_steps``)."""
        self._check_k(k, self.num_steps - 1)
        return step_with_witness(self.state_at(k), self.memory_at(k))[1]

    def interpret(self) -> Iterator[VMState]:
        """Run the program step by step from state 0, yielding every state (0..num_steps)."""
        state, mem = self.start_state(), self.memory_at(0)
        yield state
        while state.status == RUNNING:
            state, _ = step_with_witness(state, mem)
            yield state

    def outputs(self) -> list[np.ndarray]:
        """The node's outputs as the final state's memory holds them."""
        data = self._output_bytes(self.num_steps)
        out = self.context.output
        return [np.frombuffer(data, dtype=out.dtype.np.newbyteorder("<")).astype(out.dtype.np).reshape(out.shape)]

    def output_roots(self) -> list[bytes]:
        hit = self._memo.get("out")
        if hit is None:  # commit_tensor of the output: its header and the whole output's data root
            header = self.context.regions[-1].header
            hit = self._memo["out"] = region_root(header, self._output_data_root(self.num_steps))
        assert isinstance(hit, bytes)
        return [hit]

    def final_region_proof(self) -> list[bytes]:
        """Sibling path of the output region in the final state's region tree."""
        return region_proof([*self.input_roots, *self.output_roots()], len(self.input_roots))
