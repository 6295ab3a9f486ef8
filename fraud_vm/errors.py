"""Named errors of the fraud VM, its one-step verifier and the dispute-game referee.

Every check of ``fraud_vm.vm.verify_step`` and of the referee (``fraud_vm.game``) fails with its own
class, and the Solidity side declares the same names as custom errors (``contracts/dispute/lib/
Errors.sol``: ``error Name();``, no arguments), so "same verdict, same error" is testable. A class's
``selector()`` is the 4-byte selector of that custom error, ``keccak256("Name()")[:4]``.

The classes sit under four bases that existing ``except`` clauses use: ``InvalidWitness`` (the
witness does not match the agreed state), ``InvalidStep`` (the instruction cannot execute from that
state), ``GameError`` (a move the rules reject) and ``UnsupportedOp`` (a node the VM cannot express).
The bases themselves are never raised by the verifier path; ``ERROR_CLASSES`` lists the concrete
errors in a fixed order (the order ``Errors.sol`` keeps), ``ERROR_NAMES`` their names. A message may
add detail for people; the class alone is the verdict.

This module imports nothing but the keccak binding, so the verifier path stays numpy-free.
"""

from __future__ import annotations

import sha3


class FraudVMError(Exception):
    """Base class of every fraud-VM error."""

    def __init__(self, detail: str = "") -> None:
        doc = (type(self).__doc__ or type(self).__name__).strip().splitlines()[0].rstrip(".")
        super().__init__(f"{doc}: {detail}" if detail else doc)
        self.detail = detail

    @classmethod
    def selector(cls) -> bytes:
        """The 4-byte selector of the Solidity custom error ``Name()``."""
        return selector_of(cls.__name__)


def selector_of(name: str) -> bytes:
    """``keccak256(name + "()")[:4]``: the selector of an argument-less custom error."""
    return sha3.keccak_256(f"{name}()".encode()).digest()[:4]


class InvalidWitness(FraudVMError):
    """A step witness does not match the pre-state hash, the context or the memory root."""


class InvalidStep(FraudVMError):
    """The instruction cannot execute from this state."""


class UnsupportedOp(FraudVMError):
    """The node context describes a node the VM cannot express as a program."""


class GameError(FraudVMError):
    """A move that the rules reject (the move is void, as if it had never been sent)."""


# ------------------------------------------------------------------------------------------------
# verify_step: decoding and the witness's hash chain (checked in this order)


class MalformedWitness(InvalidWitness):
    """The witness calldata is not the canonical encoding (lengths, offsets, padding, trailing bytes)."""


class PreStateHashMismatch(InvalidWitness):
    """The witness's pre-state does not hash to the given pre-state hash."""


class MalformedState(InvalidWitness):
    """The pre-state is not a canonical state encoding (size, status, step, reserved word)."""


class ContextHashMismatch(InvalidWitness):
    """The witness's node context does not hash to the state's context hash."""


class MalformedContext(InvalidWitness):
    """The node context is not a canonical context encoding (lengths, descriptors, dtypes)."""


class StateHalted(InvalidStep):
    """The pre-state is HALTED: a halted VM takes no further step."""


class StepOutOfRange(InvalidStep):
    """The pre-state's step is at or past the program's number of steps."""


class TooManyWords(InvalidWitness):
    """The witness carries more memory words than a step may touch."""


class WordsNotSorted(InvalidWitness):
    """The witness's words are not sorted by (region, index), or one is repeated."""


class WordOutOfRange(InvalidWitness):
    """A witness word's region or index lies outside the memory the context describes."""


class SiblingsExhausted(InvalidWitness):
    """The multiproof ran out of sibling hashes before reaching the memory root."""


class MemoryRootMismatch(InvalidWitness):
    """The witness's words and siblings do not prove the pre-state's memory root."""


class UnusedSiblings(InvalidWitness):
    """The multiproof has sibling hashes left over after reaching the memory root."""


class WordNotInWitness(InvalidWitness):
    """The step reads or writes a memory word the witness does not carry."""


class UnusedWord(InvalidWitness):
    """The witness carries a memory word the step does not touch."""


class PostStateMismatch(InvalidWitness):
    """The claimed post-state hash differs from the one the step computes."""


# ------------------------------------------------------------------------------------------------
# verify_step: executing the instruction


class ArithmeticOverflow(InvalidStep):
    """An intermediate value leaves int256, or an accumulator lane leaves int64."""


class InvalidShift(InvalidStep):
    """A shift amount lies outside its range (requantization: 1..62; left shifts: 0..255)."""


class NonPositiveDivisor(InvalidStep):
    """A division by a divisor <= 0 (an average over an empty window, a zero row length...)."""


class NegativeSquareRoot(InvalidStep):
    """A square root of a negative value."""


class NanOperand(InvalidStep):
    """A float32 NaN where the instruction needs a number (quantize, cast to an integer type)."""


class InvalidScale(InvalidStep):
    """A float32 scale that is not a finite positive float32 (quantize) or not finite (dequantize)."""


class InvalidDType(InvalidStep):
    """An instruction names a dtype code the VM does not know."""


class GatherIndexOutOfRange(InvalidStep):
    """A gather index lies outside [-n, n)."""


class TableIndexOutOfRange(InvalidStep):
    """A lookup-table index (LUT, softmax exponent table) lies outside the table's region."""


class ElementOutOfRange(InvalidStep):
    """An instruction addresses an element outside its region (an inconsistent program)."""


class ValueOutOfRange(InvalidStep):
    """A value to be stored does not fit the output region's dtype."""


# ------------------------------------------------------------------------------------------------
# the referee's move checks (fraud_vm.game)


class GameOver(GameError):
    """The game is already resolved: no further move or timeout claim."""


class GameNotOver(GameError):
    """The game is still in progress: nothing can be paid out yet."""


class NotYourTurn(GameError):
    """The move comes from the player who is not to move."""


class TimeNotMonotonic(GameError):
    """The move's time is earlier than the previous move's."""


class ClockExpired(GameError):
    """The mover's chess clock has run out: the move comes too late."""


class ClockNotExpired(GameError):
    """A timeout is claimed while the mover still has time on its clock."""


class ParentNotLast(GameError):
    """A move must answer the last claim of the bisection."""


class CannotDefendRoot(GameError):
    """The root claim of a phase can only be attacked."""


class WrongMoveKind(GameError):
    """The move's kind does not fit the position (bisect above the leaves, open or step at a leaf)."""


class MalformedMove(GameError):
    """A move's fields are malformed (a claim not 32 bytes, a final state not bytes...)."""


class IncorrectBond(GameError):
    """The bond sent with a move differs from the bond its move number requires."""


class InvalidClaim(GameError):
    """The claim does not open: wrong model address, batch, final tensor table or output count."""


class PreTensorsMismatch(GameError):
    """The opened tensor table does not hash to the agreed phase-1 state."""


class InputCountMismatch(GameError):
    """The opening carries a different number of input roots or proofs than the node has inputs."""


class InvalidTableProof(GameError):
    """A tensor root does not open against the tensor-table root with its proof."""


class InvalidDescriptorProof(GameError):
    """A node or tensor descriptor is not proven against the model address."""


class OutputsContradictClaim(GameError):
    """The mover's node outputs do not give (or, for the other player, give) the disputed state."""


class FinalStateMismatch(GameError):
    """The mover's final VM state is not HALTED or does not hold the mover's node output roots."""


# ------------------------------------------------------------------------------------------------
# the claim registry (fraud_vm.registry; the game factory on L1)


class UnknownClaim(GameError):
    """No claim has this id."""


class ChallengeWindowClosed(GameError):
    """The claim's challenge window has passed: no new challenge."""


class ClaimAlreadyRejected(GameError):
    """The claim lost a game: it cannot be challenged again or become final."""


class ClaimAlreadyFinal(GameError):
    """The claim is already final."""


class DuplicateChallenge(GameError):
    """This challenger already has a game on this claim."""


class ChallengeWindowOpen(GameError):
    """The claim's challenge window has not passed yet: it cannot become final."""


class GamesInProgress(GameError):
    """A game on the claim is not resolved yet: the claim cannot become final."""


class NoCredit(GameError):
    """The account has no credit to claim."""


ERROR_CLASSES: tuple[type[FraudVMError], ...] = (
    # verify_step, in check order
    MalformedWitness, PreStateHashMismatch, MalformedState, ContextHashMismatch, MalformedContext,
    UnsupportedOp, StateHalted, StepOutOfRange, TooManyWords, WordsNotSorted, WordOutOfRange,
    SiblingsExhausted, MemoryRootMismatch, UnusedSiblings, WordNotInWitness, UnusedWord,
    ArithmeticOverflow, InvalidShift, NonPositiveDivisor, NegativeSquareRoot, NanOperand, InvalidScale,
    InvalidDType, GatherIndexOutOfRange, TableIndexOutOfRange, ElementOutOfRange, ValueOutOfRange,
    PostStateMismatch,
    # the referee
    GameOver, GameNotOver, NotYourTurn, TimeNotMonotonic, ClockExpired, ClockNotExpired, ParentNotLast,
    CannotDefendRoot, WrongMoveKind, MalformedMove, IncorrectBond, InvalidClaim, PreTensorsMismatch,
    InputCountMismatch, InvalidTableProof, InvalidDescriptorProof, OutputsContradictClaim, FinalStateMismatch,
    # the claim registry
    UnknownClaim, ChallengeWindowClosed, ClaimAlreadyRejected, ClaimAlreadyFinal, DuplicateChallenge,
    ChallengeWindowOpen, GamesInProgress, NoCredit,
)
"""Every concrete error, in the order ``Errors.sol`` declares them."""

ERROR_NAMES: tuple[str, ...] = tuple(c.__name__ for c in ERROR_CLASSES)
"""The custom-error names, CamelCase, as ``Errors.sol`` declares them."""

ERROR_DOCS: dict[str, str] = {c.__name__: (c.__doc__ or "").strip() for c in ERROR_CLASSES}
"""One-line description per name (the NatSpec ``@notice`` of each custom error)."""

SELECTORS: dict[bytes, type[FraudVMError]] = {c.selector(): c for c in ERROR_CLASSES}
"""4-byte selector -> class (for decoding a contract's revert data)."""

if len(SELECTORS) != len(ERROR_CLASSES):  # pragma: no cover - a selector collision is a naming bug
    raise ImportError("two fraud-VM error names share a 4-byte selector")


def error_from_selector(data: bytes) -> type[FraudVMError] | None:
    """The error class whose selector starts ``data`` (revert data of a contract call), if any."""
    return SELECTORS.get(bytes(data[:4]))


_NAMED = frozenset(ERROR_CLASSES)


def is_named(exc: BaseException) -> bool:
    """True if ``exc`` is one of the concrete named errors (not a base class or a foreign error)."""
    return type(exc) in _NAMED
