"""The interpreter and the one-step verifier.

``step(state, memory)`` executes one instruction on a full memory; ``step_with_witness`` also
returns the ``StepWitness`` of that step; ``verify_step(pre_state_hash, witness)`` re-executes the
step from the witness alone and returns the post-state hash, which is what the on-chain verifier
mirrors check by check, each failing with its named error (``fraud_vm.errors``);
``check_step`` also compares with a claimed post-state. ``StepWitness.encode``/``decode`` are the
exact calldata bytes the L1 verifier takes (``docs/fraud_vm.md`` "Witness calldata").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opml.merkle import keccak

from . import stepper
from .context import NodeContext, decode_context
from .errors import (
    ContextHashMismatch,
    ElementOutOfRange,
    FraudVMError,
    InvalidStep,
    InvalidWitness,
    MalformedContext,
    MalformedWitness,
    MemoryRootMismatch,
    PostStateMismatch,
    PreStateHashMismatch,
    SiblingsExhausted,
    StateHalted,
    StepOutOfRange,
    TooManyWords,
    UnusedSiblings,
    UnusedWord,
    WordNotInWitness,
    WordOutOfRange,
    WordsNotSorted,
    is_named,
)
from .isa import Regs, execute
from .memory import Memory, StepAccess, roots_from_words
from .state import HALTED, RUNNING, STATE_BYTES, VMState, decode_state

MAX_WITNESS_WORDS = 256
HEADER_BYTES = 6
"""Calldata header: uint16 context words, uint16 memory words, uint16 siblings (big-endian)."""
INDEX_BITS = 64
"""A word address is ``region << 64 | index``."""
MAX_COUNT = (1 << 16) - 1
STEP_SELECTOR = keccak(b"step(bytes32,bytes)")[:4]
"""Selector of the L1 verifier's ``step(bytes32 preStateHash, bytes witness) returns (bytes32)``."""


@dataclass(frozen=True)
class CalldataCost:
    """Calldata of one ``step(bytes32 preStateHash, bytes witness)`` call and its gas."""

    bytes: int
    tokens: int  # zero bytes + 4 * non-zero bytes (EIP-7623)
    standard_gas: int  # 4 * tokens: 4 gas per zero byte, 16 per non-zero byte
    floor_gas: int  # EIP-7623 floor: 10 * tokens (a transaction pays at least 21000 + this)


@dataclass(frozen=True)
class StepWitness:
    """Everything needed to check one step: pre-state, context, touched words, multiproof."""

    pre_state: bytes
    context: bytes
    words: tuple[tuple[int, int, bytes], ...]  # (region, word index, value before the step)
    siblings: tuple[bytes, ...]

    def size_bytes(self) -> int:
        """Payload bytes: state + context + (address word + value) per word + siblings (the number the
        vectors and the dispute benchmark report; the calldata adds the 6-byte header, ``size``)."""
        return len(self.pre_state) + len(self.context) + 64 * len(self.words) + 32 * len(self.siblings)

    @property
    def size(self) -> int:
        """Bytes of :meth:`encode` (the ``witness`` argument of the L1 verifier)."""
        return HEADER_BYTES + self.size_bytes()

    def encode(self) -> bytes:
        """The witness calldata (``docs/fraud_vm.md`` "Witness calldata")::

            uint16 nContext ‖ uint16 nWords ‖ uint16 nSiblings ‖ preState (800)
            ‖ context (32·nContext) ‖ (uint256 region << 64 | index ‖ bytes32 value) × nWords
            ‖ bytes32 sibling × nSiblings
        """
        if len(self.pre_state) != STATE_BYTES or len(self.context) % 32 or not self.context:
            raise MalformedWitness("a witness has an 800-byte state and a whole number of context words")
        n_ctx = len(self.context) // 32
        if max(n_ctx, len(self.words), len(self.siblings)) > MAX_COUNT:
            raise MalformedWitness("a witness count does not fit uint16")
        parts = [n_ctx.to_bytes(2, "big"), len(self.words).to_bytes(2, "big"),
                 len(self.siblings).to_bytes(2, "big"), self.pre_state, self.context]
        for r, i, v in self.words:
            if not (0 <= i < 1 << INDEX_BITS and 0 <= r < 1 << (256 - INDEX_BITS)) or len(v) != 32:
                raise MalformedWitness(f"word ({r}, {i}) does not fit the address layout")
            parts += [((r << INDEX_BITS) | i).to_bytes(32, "big"), v]
        for s in self.siblings:
            if len(s) != 32:
                raise MalformedWitness("a sibling hash is 32 bytes")
            parts.append(s)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> StepWitness:
        """Parse witness calldata; ``MalformedWitness`` unless it is exactly the canonical encoding."""
        data = bytes(data)
        if len(data) < HEADER_BYTES + STATE_BYTES:
            raise MalformedWitness(f"{len(data)} bytes is shorter than the header and the state")
        n_ctx, n_words, n_sib = (int.from_bytes(data[i : i + 2], "big") for i in (0, 2, 4))
        if n_ctx == 0:
            raise MalformedWitness("the context has at least its address word")
        want = HEADER_BYTES + STATE_BYTES + 32 * n_ctx + 64 * n_words + 32 * n_sib
        if len(data) != want:
            raise MalformedWitness(f"the header announces {want} bytes, the witness has {len(data)}")
        pos = HEADER_BYTES + STATE_BYTES
        pre, context = data[HEADER_BYTES:pos], data[pos : pos + 32 * n_ctx]
        pos += 32 * n_ctx
        words = []
        for _ in range(n_words):
            addr = int.from_bytes(data[pos : pos + 32], "big")
            words.append((addr >> INDEX_BITS, addr & ((1 << INDEX_BITS) - 1), data[pos + 32 : pos + 64]))
            pos += 64
        siblings = tuple(data[pos + 32 * k : pos + 32 * k + 32] for k in range(n_sib))
        return cls(pre, context, tuple(words), siblings)

    def calldata(self) -> bytes:
        """The full calldata of ``step(bytes32 preStateHash, bytes witness)`` with this witness: selector,
        ``keccak(pre_state)``, the ABI offset and length words, the witness zero-padded to 32 bytes."""
        w = self.encode()
        return (STEP_SELECTOR + keccak(self.pre_state) + (64).to_bytes(32, "big") + len(w).to_bytes(32, "big")
                + w + bytes(-len(w) % 32))

    def calldata_cost(self) -> CalldataCost:
        """Bytes, EIP-7623 tokens, standard calldata gas (16 per non-zero, 4 per zero byte) and the
        EIP-7623 floor of :meth:`calldata`."""
        data = self.calldata()
        zeros = data.count(0)
        tokens = zeros + 4 * (len(data) - zeros)
        return CalldataCost(len(data), tokens, 4 * tokens, 10 * tokens)

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
            raise MalformedWitness(f"malformed witness JSON: {e}") from None


def _unhex(s: str, size: int | None = None) -> bytes:
    if not isinstance(s, str) or not s.startswith("0x"):
        raise ValueError("hex strings must start with 0x")
    b = bytes.fromhex(s[2:])
    if size is not None and len(b) != size:
        raise ValueError(f"expected {size} bytes, got {len(b)}")
    return b


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


@contextmanager
def _named(default: type[FraudVMError]) -> Iterator[None]:
    """Re-raise an unnamed fraud-VM error (a base class raised by a helper) as ``default``."""
    try:
        yield
    except FraudVMError as e:
        if is_named(e):
            raise
        raise default(str(e)) from e


def _post(state: VMState, regs: Regs, root: bytes, num_steps: int) -> VMState:
    s, acc, aux = regs.frozen()
    nxt = state.step + 1
    return VMState(state.context_hash, root, nxt, HALTED if nxt >= num_steps else RUNNING, s, acc, aux)


def _check_runnable(state: VMState, num_steps: int) -> None:
    if state.status != RUNNING:
        raise StateHalted(f"state at step {state.step}")
    if state.step >= num_steps:
        raise StepOutOfRange(f"step {state.step} of a program of {num_steps} steps")


def step_with_witness(state: VMState, memory: NodeMemory) -> tuple[VMState, StepWitness]:
    """Execute one instruction on ``memory`` (mutated) and return the post-state and witness."""
    n_steps = stepper.num_steps(memory.ctx)
    _check_runnable(state, n_steps)
    if state.context_hash != memory.ctx.hash or state.memory_root != memory.root():
        raise InvalidStep("state does not belong to this memory (context hash or memory root differ)")
    access = StepAccess(memory.regions, memory.read_word)
    regs = Regs(state.scalars, state.acc, state.aux)
    with _named(ElementOutOfRange):
        execute(stepper.instr_at(memory.ctx, state.step), regs, access)
    addrs = sorted(access.before)
    witness = StepWitness(state.encode(), memory.ctx.encode(),
                          tuple((r, w, access.before[(r, w)]) for r, w in addrs), tuple(memory.prove(addrs)))
    for (r, w), v in access.written.items():
        memory.write_word(r, w, v)
    memory.commit()
    return _post(state, regs, memory.root(), n_steps), witness


def step(state: VMState, memory: NodeMemory) -> VMState:
    """Execute one instruction on ``memory`` (mutated) and return the post-state."""
    return step_with_witness(state, memory)[0]


def prove_step(state: VMState, memory: NodeMemory) -> StepWitness:
    """The witness of the step at ``state``, built even when the step fails: the words the step
    touched up to its failure (how a failure vector shows which check a step hits)."""
    access = StepAccess(memory.regions, memory.read_word)
    if state.status == RUNNING and state.step < stepper.num_steps(memory.ctx):
        try:
            execute(stepper.instr_at(memory.ctx, state.step), Regs(state.scalars, state.acc, state.aux), access)
        except FraudVMError:
            pass
    addrs = sorted(access.before)
    return StepWitness(state.encode(), memory.ctx.encode(),
                       tuple((r, w, access.before[(r, w)]) for r, w in addrs), tuple(memory.prove(addrs)))


def verify_step(pre_state_hash: bytes, witness: StepWitness | bytes) -> bytes:
    """Check ``witness`` (a ``StepWitness`` or its calldata) against ``pre_state_hash``, execute one
    step, return the post-state hash. Every failure is a named error (``fraud_vm.errors``), raised
    in the order of ``docs/fraud_vm.md`` "verify_step"."""
    w = StepWitness.decode(witness) if isinstance(witness, bytes | bytearray) else witness
    # SAFETY: everything below is derived from the witness only after its hash chain is checked.
    if keccak(w.pre_state) != pre_state_hash:
        raise PreStateHashMismatch()
    state = decode_state(w.pre_state)
    if keccak(w.context) != state.context_hash:
        raise ContextHashMismatch()
    ctx, num_steps = _context(state.context_hash, w.context)
    _check_runnable(state, num_steps)
    # INVARIANT: the words are a sorted set of in-range addresses proven against the memory root.
    if len(w.words) > MAX_WITNESS_WORDS:
        raise TooManyWords(f"{len(w.words)} > {MAX_WITNESS_WORDS}")
    regions = ctx.regions
    words: dict[tuple[int, int], bytes] = {}
    prev = (-1, -1)
    for r, i, v in w.words:
        if (r, i) <= prev:
            raise WordsNotSorted(f"word ({r}, {i}) after ({prev[0]}, {prev[1]})")
        if not 0 <= r < len(regions) or not 0 <= i < regions[r].n_words:
            raise WordOutOfRange(f"word {i} of region {r}")
        if len(v) != 32:
            raise MalformedWitness("a word value is 32 bytes")
        words[(r, i)] = v
        prev = (r, i)
    root, used = _memory_root(regions, words, w.siblings) if words else (state.memory_root, 0)
    if root != state.memory_root:
        raise MemoryRootMismatch()
    if used != len(w.siblings):
        raise UnusedSiblings(f"{len(w.siblings) - used} left over")

    def fetch(r: int, i: int) -> bytes:
        if (r, i) not in words:
            raise WordNotInWitness(f"word {i} of region {r}")
        return words[(r, i)]

    access = StepAccess(regions, fetch)
    regs = Regs(state.scalars, state.acc, state.aux)
    instr = stepper.instr_at(ctx, state.step)
    with _named(ElementOutOfRange):
        execute(instr, regs, access)
    if len(access.before) != len(words):
        raise UnusedWord(f"{len(words) - len(access.before)} words the step does not touch")
    post_root = state.memory_root
    if access.written:
        post_root, _ = _memory_root(regions, {**words, **access.written}, w.siblings)
    return _post(state, regs, post_root, num_steps).hash()


_DECODED: OrderedDict[bytes, tuple[NodeContext, int]] = OrderedDict()


def _context(context_hash: bytes, data: bytes) -> tuple[NodeContext, int]:
    """The decoded context and its number of steps (``fraud_vm.stepper``, numpy-free), for context
    bytes whose hash was checked; cached by that hash (a pure function of the bytes), so consecutive
    steps of one node decode it once."""
    hit = _DECODED.get(context_hash)
    if hit is not None:
        _DECODED.move_to_end(context_hash)
        return hit
    with _named(MalformedContext):
        ctx = decode_context(data)
        n_steps = stepper.num_steps(ctx)
    _DECODED[context_hash] = hit = (ctx, n_steps)
    while len(_DECODED) > 256:
        _DECODED.popitem(last=False)
    return hit


def _memory_root(regions: Sequence[Any], words: dict[tuple[int, int], bytes],
                 siblings: Sequence[bytes]) -> tuple[bytes, int]:
    """Memory root from in-range words and the multiproof; running out of siblings is named."""
    try:
        return roots_from_words(regions, words, siblings)
    except InvalidWitness as e:
        if is_named(e):
            raise
        raise SiblingsExhausted(str(e)) from e


def check_step(pre_state_hash: bytes, witness: StepWitness | bytes, post_state_hash: bytes) -> None:
    """``verify_step`` and compare with a claimed post-state: ``PostStateMismatch`` if it differs."""
    if verify_step(pre_state_hash, witness) != post_state_hash:
        raise PostStateMismatch()
