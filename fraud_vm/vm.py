"""The interpreter and the one-step verifier.

``step(state, memory)`` executes one instruction on a full memory; ``step_with_witness`` also
returns the ``StepWitness`` of that step; ``verify_step(pre_state_hash, witness)`` re-executes the
step from the witness alone and returns the post-state hash, which is what the on-chain verifier
mirrors (``docs/fraud_vm.md`` "Witness" documents every byte).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opml.merkle import keccak

from .compiler import NodeContext, compile_context, decode_context
from .errors import InvalidStep, InvalidWitness
from .isa import Regs, execute
from .memory import Memory, StepAccess, roots_from_words
from .state import HALTED, RUNNING, STATE_BYTES, VMState, decode_state

MAX_WITNESS_WORDS = 256


class NodeMemory(Memory):
    """The full memory of one node's run, with its context."""

    def __init__(self, ctx: NodeContext, data: Sequence[bytes | None],
                 trees: Sequence[Sequence[bytes] | None] | None = None) -> None:
        super().__init__(ctx.regions, data, trees)
        self.ctx = ctx

    def with_output(self, data: bytes) -> NodeMemory:
        """A copy sharing the input regions' trees, with the output region holding ``data``."""
        from opml.commitment import tree_levels

        from .tensors import region_root

        new = object.__new__(NodeMemory)
        new.__dict__.update(self.__dict__)
        r = len(self.regions) - 1
        new.levels = list(self.levels)
        new.levels[r] = [bytearray(x) for x in tree_levels(data)]
        new.roots = list(self.roots)
        new.roots[r] = region_root(self.regions[r].header, new.data_root(r))
        new._dirty = set()
        new._rlevels = None
        return new


@dataclass(frozen=True)
class StepWitness:
    """Everything needed to check one step: pre-state, context, touched words, multiproof."""

    pre_state: bytes
    context: bytes
    words: tuple[tuple[int, int, bytes], ...]  # (region, word index, value before the step)
    siblings: tuple[bytes, ...]

    def size_bytes(self) -> int:
        """Calldata bytes: state + context + (address word + value) per word + siblings."""
        return len(self.pre_state) + len(self.context) + 64 * len(self.words) + 32 * len(self.siblings)

    def to_json(self) -> dict[str, Any]:
        return {
            "pre_state": "0x" + self.pre_state.hex(),
            "context": "0x" + self.context.hex(),
            "words": [{"region": r, "index": i, "value": "0x" + v.hex()} for r, i, v in self.words],
            "siblings": ["0x" + s.hex() for s in self.siblings],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StepWitness:
        try:
            words = tuple((int(w["region"]), int(w["index"]), _unhex(w["value"], 32)) for w in d["words"])
            return cls(_unhex(d["pre_state"], STATE_BYTES), _unhex(d["context"]), words,
                       tuple(_unhex(s, 32) for s in d["siblings"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidWitness(f"malformed witness JSON: {e}") from None


def _unhex(s: str, size: int | None = None) -> bytes:
    if not isinstance(s, str) or not s.startswith("0x"):
        raise ValueError("hex strings must start with 0x")
    b = bytes.fromhex(s[2:])
    if size is not None and len(b) != size:
        raise ValueError(f"expected {size} bytes, got {len(b)}")
    return b


def _post(state: VMState, regs: Regs, root: bytes, num_steps: int) -> VMState:
    s, acc, aux = regs.frozen()
    nxt = state.step + 1
    return VMState(state.context_hash, root, nxt, HALTED if nxt >= num_steps else RUNNING, s, acc, aux)


def _check_runnable(state: VMState, num_steps: int) -> None:
    if state.status != RUNNING or state.step >= num_steps:
        raise InvalidStep(f"state at step {state.step} is halted (program has {num_steps} steps)")


def step_with_witness(state: VMState, memory: NodeMemory) -> tuple[VMState, StepWitness]:
    """Execute one instruction on ``memory`` (mutated) and return the post-state and witness."""
    prog = compile_context(memory.ctx)
    _check_runnable(state, prog.num_steps)
    if state.context_hash != memory.ctx.hash or state.memory_root != memory.root():
        raise InvalidStep("state does not belong to this memory (context hash or memory root differ)")
    access = StepAccess(memory.regions, memory.read_word)
    regs = Regs(state.scalars, state.acc, state.aux)
    execute(prog.instr(state.step), regs, access)
    addrs = sorted(access.before)
    witness = StepWitness(state.encode(), memory.ctx.encode(),
                          tuple((r, w, access.before[(r, w)]) for r, w in addrs), tuple(memory.prove(addrs)))
    for (r, w), v in access.written.items():
        memory.write_word(r, w, v)
    memory.commit()
    return _post(state, regs, memory.root(), prog.num_steps), witness


def step(state: VMState, memory: NodeMemory) -> VMState:
    """Execute one instruction on ``memory`` (mutated) and return the post-state."""
    return step_with_witness(state, memory)[0]


def verify_step(pre_state_hash: bytes, witness: StepWitness) -> bytes:
    """Check ``witness`` against ``pre_state_hash``, execute one step, return the post-state hash.

    Raises InvalidWitness when the witness does not match (state, context, words, proofs) and
    InvalidStep when the instruction cannot execute from that state.
    """
    # SAFETY: everything below is derived from the witness only after its hash chain is checked.
    if keccak(witness.pre_state) != pre_state_hash:
        raise InvalidWitness("pre-state does not hash to the given state hash")
    state = decode_state(witness.pre_state)
    if keccak(witness.context) != state.context_hash:
        raise InvalidWitness("node context does not hash to the state's context hash")
    ctx = decode_context(witness.context)
    prog = compile_context(ctx)
    _check_runnable(state, prog.num_steps)
    if len(witness.words) > MAX_WITNESS_WORDS:
        raise InvalidWitness(f"witness has more than {MAX_WITNESS_WORDS} words")
    words = {(r, i): v for r, i, v in witness.words}
    if len(words) != len(witness.words) or list(words) != sorted(words):
        raise InvalidWitness("witness words must be sorted by (region, index) without repeats")
    root, used = roots_from_words(ctx.regions, words, witness.siblings) if words else (state.memory_root, 0)
    if root != state.memory_root or used != len(witness.siblings):
        raise InvalidWitness("witness words and siblings do not prove the pre-state memory root")

    def fetch(r: int, w: int) -> bytes:
        if (r, w) not in words:
            raise InvalidWitness(f"witness lacks word {w} of region {r}")
        return words[(r, w)]

    access = StepAccess(ctx.regions, fetch)
    regs = Regs(state.scalars, state.acc, state.aux)
    execute(prog.instr(state.step), regs, access)
    if set(access.before) != set(words):
        raise InvalidWitness("witness has words the step does not touch")
    post_root = state.memory_root
    if access.written:
        post_root, _ = roots_from_words(ctx.regions, {**words, **access.written}, witness.siblings)
    return _post(state, regs, post_root, prog.num_steps).hash()
