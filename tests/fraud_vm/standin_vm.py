"""A small stand-in fraud VM with the interface of ``fraud_vm.trace`` / ``fraud_vm.vm``.

It lets the game be tested independently of the real VM: a node's "program" writes the node's
output ``CHUNK`` bytes per step into a hash-chained accumulator. The state commits to the model,
node, step count, the node's non-constant input roots and the accumulator; a step's witness carries
the pre-state, the node context and the node's non-constant input tensors, and ``verify_step``
recomputes the chunk with the engine's kernel (the stand-in looks constants up by model address,
which the real VM proves from the address instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fraud_vm.compiler import NodeContext, context_for
from fraud_vm.errors import FinalStateMismatch, InvalidStep, MalformedMove, PreStateHashMismatch, StateHalted
from fraud_vm.tensors import commit_tensor
from opml.bundle import Bundle, DType
from opml.engine import get_plan
from opml.merkle import keccak

CHUNK = 16
_BUNDLES: dict[bytes, Bundle] = {}


@dataclass(frozen=True)
class SState:
    model_address: bytes
    node_index: int
    step: int
    num_steps: int
    inputs_hash: bytes
    acc: bytes
    halted: bool = False

    def encode(self) -> bytes:
        w = lambda v: v.to_bytes(32, "big")  # noqa: E731
        return (self.model_address + w(self.node_index) + w(self.step) + w(self.num_steps) + self.inputs_hash
                + self.acc + w(int(self.halted)))

    def hash(self) -> bytes:
        return keccak(self.encode())


def decode(data: bytes) -> SState:
    if not isinstance(data, bytes) or len(data) != 7 * 32:
        raise MalformedMove("a stand-in state is 224 bytes")
    w = [data[i * 32 : i * 32 + 32] for i in range(7)]
    i = lambda b: int.from_bytes(b, "big")  # noqa: E731
    return SState(w[0], i(w[1]), i(w[2]), i(w[3]), w[4], w[5], bool(i(w[6])))


@dataclass(frozen=True)
class SWitness:
    pre: bytes
    context: bytes
    inputs: tuple[tuple[int, tuple[int, ...], bytes], ...]

    def size_bytes(self) -> int:
        return len(self.pre) + len(self.context) + sum(len(d) for _, _, d in self.inputs)


def _dyn_inputs(bundle: Bundle, k: int) -> list[int]:
    return [t for t in bundle.nodes[k].inputs if not bundle.tensors[t].is_const]


def _output(bundle: Bundle, k: int, dyn: Sequence[np.ndarray]) -> bytes:
    node = bundle.nodes[k]
    it = iter(dyn)
    args = [bundle.tensors[t].array() if bundle.tensors[t].is_const else next(it) for t in node.inputs]
    out = get_plan(bundle).kernels[k](args)
    return np.ascontiguousarray(out).tobytes()


def _steps(nbytes: int) -> int:
    return max(1, -(-nbytes // CHUNK))


def _chain(acc: bytes, data: bytes, start: int, stop: int) -> bytes:
    for j in range(start, stop):
        acc = keccak(acc + data[j * CHUNK : (j + 1) * CHUNK])
    return acc


def _batch(bundle: Bundle, k: int, env: dict[int, np.ndarray]) -> int:
    for t in bundle.nodes[k].inputs:
        shape = bundle.tensors[t].shape
        if shape and shape[0] < 0 and t in env:
            return int(env[t].shape[0] // -shape[0])
    return 1


class StandinTrace:
    def __init__(self, bundle: Bundle, k: int, env: dict[int, np.ndarray]) -> None:
        _BUNDLES[bundle.address] = bundle
        self.bundle, self.k = bundle, k
        self.context = context_for(bundle, k, _batch(bundle, k, env))
        self.inputs = [np.ascontiguousarray(env[t]) for t in _dyn_inputs(bundle, k)]
        self.out = _output(bundle, k, self.inputs)
        self.num_steps = _steps(len(self.out))
        roots = [commit_tensor(a, int(DType.from_np(a.dtype))) for a in self.inputs]
        self.start = SState(bundle.address, k, 0, self.num_steps, keccak(b"".join(roots)), bytes(32))
        self.accs = [self.start.acc]
        for j in range(self.num_steps):
            self.accs.append(_chain(self.accs[-1], self.out, j, j + 1))

    def state_at(self, k: int) -> SState:
        if not 0 <= k <= self.num_steps:
            raise InvalidStep(f"step {k} out of range")
        return replace(self.start, step=k, acc=self.accs[k], halted=k == self.num_steps)

    def state_hash_at(self, k: int) -> bytes:
        return self.state_at(k).hash()

    def witness_at(self, k: int) -> SWitness:
        dt = lambda a: int(DType.from_np(a.dtype))  # noqa: E731
        return SWitness(self.state_at(k).encode(), self.context.encode(),
                        tuple((dt(a), a.shape, a.tobytes()) for a in self.inputs))


class StandinBackend:
    """The referee's and players' view of the stand-in VM (``fraud_vm.game.VMBackend``)."""

    commit_tensor = staticmethod(commit_tensor)

    def num_steps(self, context: NodeContext) -> int:
        out = context.output
        return _steps(out.size * out.dtype.np.itemsize)

    def node_steps(self, bundle: Bundle, node_index: int, batch: int) -> int:
        return self.num_steps(context_for(bundle, node_index, batch))

    def start_state_hash(self, context: NodeContext, input_roots: Sequence[bytes]) -> bytes:
        dyn = [r for r, t in zip(input_roots, context.inputs, strict=True) if not t.is_const]
        n = self.num_steps(context)
        return SState(context.address, context.node_index, 0, n, keccak(b"".join(dyn)), bytes(32)).hash()

    def witness_context_hash(self, witness: Any) -> bytes:
        if not isinstance(witness, SWitness):
            raise MalformedMove("not a stand-in witness")
        return keccak(witness.context)

    def verify_step(self, pre_state_hash: bytes, witness: Any) -> bytes:
        if not isinstance(witness, SWitness):
            raise MalformedMove("not a stand-in witness")
        pre = decode(witness.pre)
        if pre.hash() != pre_state_hash:
            raise PreStateHashMismatch("the witness's pre-state does not match the pre-state hash")
        arrays = [np.frombuffer(d, dtype=DType(c).np).reshape(s) for c, s, d in witness.inputs]
        roots = [commit_tensor(a, c) for a, (c, _, _) in zip(arrays, witness.inputs, strict=True)]
        if keccak(b"".join(roots)) != pre.inputs_hash:
            raise PreStateHashMismatch("the witness's inputs do not match the state's input roots")
        if pre.halted or pre.step >= pre.num_steps:
            raise StateHalted("the VM has halted")
        out = _output(_BUNDLES[pre.model_address], pre.node_index, arrays)
        acc = _chain(pre.acc, out, pre.step, pre.step + 1)
        return replace(pre, step=pre.step + 1, acc=acc, halted=pre.step + 1 == pre.num_steps).hash()

    def final_output_root(self, context: NodeContext, final_state: bytes, proof: Any) -> bytes:
        try:
            s = decode(final_state)
        except MalformedMove:
            raise FinalStateMismatch("not a stand-in state") from None
        if not s.halted or s.node_index != context.node_index or s.model_address != context.address:
            raise FinalStateMismatch("the final state is not a HALTED state of this node")
        out = context.output
        if not isinstance(proof, bytes) or len(proof) != out.size * out.dtype.np.itemsize \
                or _chain(bytes(32), proof, 0, s.num_steps) != s.acc:
            raise FinalStateMismatch("the output bytes do not match the final state")
        arr = np.frombuffer(proof, dtype=out.dtype.np).reshape(out.shape)
        return commit_tensor(arr, int(out.dtype))

    def witness_size(self, witness: Any) -> int:
        return witness.size_bytes()

    def node_trace(self, bundle: Bundle, node_index: int, env: dict[int, np.ndarray],
                   roots: object = None, env_has_output: bool = False) -> StandinTrace:
        return StandinTrace(bundle, node_index, env)

    def final_opening(self, trace: StandinTrace) -> tuple[bytes, Any]:
        return trace.state_at(trace.num_steps).encode(), trace.out

    def forge_final(self, trace: StandinTrace, outputs: Sequence[np.ndarray]) -> tuple[bytes, Any]:
        data = np.ascontiguousarray(outputs[0]).tobytes()
        acc = _chain(bytes(32), data, 0, trace.num_steps)
        return replace(trace.state_at(trace.num_steps), acc=acc).encode(), data
