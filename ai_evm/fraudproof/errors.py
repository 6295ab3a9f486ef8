"""Named errors of the EVM state-transition fraud proof (``docs/evm_fraud_proof.md``).

The game machinery's errors (turn, clock, bond, position, move kind) are the inference game's, the
same classes from :mod:`fraud_vm.errors` (``NotYourTurn``, ``ClockExpired``, ``ParentNotLast``...),
so that one ``Errors.sol`` serves both games. The errors below are the EVM game's own: each one
rejects a move (the move is void, nothing changes) or the opening of a game, and says what was wrong.
"""

from __future__ import annotations

from fraud_vm.errors import GameError


class EvmFraudError(GameError):
    """A move or opening of the EVM fraud-proof game that the rules reject."""


class MalformedHeader(EvmFraudError):
    """A block header is not the RLP encoding of an AI EVM (Prague) header."""


class OutputMismatch(EvmFraudError):
    """An output's opened fields (header, state root, record count) do not give its output root."""


class WrongBlockNumber(EvmFraudError):
    """A block claim's header is not the block its position commits to."""


class InvalidRecordCount(EvmFraudError):
    """A record count is negative, above the output's records, or goes down."""


class AgreedClaimMismatch(EvmFraudError):
    """The opened agreed claim does not hash to the agreed state of the bisection."""


class DisputedClaimMismatch(EvmFraudError):
    """The opened disputed claim does not hash to the disputed state of the bisection."""


class TransactionsMismatch(EvmFraudError):
    """The transactions given do not have the disputed header's transactions root."""


class PreStateMismatch(EvmFraudError):
    """The opened intermediate state does not hash to the agreed state of the bisection."""


class UnknownPreState(EvmFraudError):
    """The re-execution verifier cannot reproduce the agreed intermediate state from the parent block."""


__all__ = [
    "AgreedClaimMismatch", "DisputedClaimMismatch", "EvmFraudError", "InvalidRecordCount", "MalformedHeader",
    "OutputMismatch", "PreStateMismatch", "TransactionsMismatch", "UnknownPreState", "WrongBlockNumber",
]
