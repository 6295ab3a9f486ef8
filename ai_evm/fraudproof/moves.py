"""The moves of the EVM fraud-proof game and what the referee hands to level 3 (``docs/evm_fraud_proof.md`` §2-§5).

:class:`OpenOutput` (the proposer opens its output), :class:`BisectBlocks` and :class:`OpenBlock`
(level 1), :class:`BisectTxs` and :class:`StepTx` (level 2); :class:`BlockContext`, what
:class:`OpenBlock` proved about the disputed block; :class:`TransactionVerifier`, level 3 behind one
method; :data:`INVALID_TRANSITION`, the state after a transaction that cannot be applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from eth.abc import BlockHeaderAPI

from ai_evm.evm.call import InferenceRecord
from fraud_vm.game import Role

from .commitments import TxState

#: The post-state a verifier returns for a transaction that cannot be applied (never a state's hash).
INVALID_TRANSITION = bytes(32)


class Level(IntEnum):
    """Which trace the bisection is over (``OPENING``: the proposer has not opened its output yet)."""

    OPENING = 0
    BLOCKS = 1
    TRANSACTIONS = 2
    RESOLVED = 3


@dataclass(frozen=True)
class BlockContext:
    """Level 2's fixed data: the agreed parent, the disputed header (its template is the block's inputs),
    the record counts both claims carry, the transactions (proven against the header), the output's records."""

    parent: BlockHeaderAPI
    header: BlockHeaderAPI
    parent_record_count: int
    record_count: int
    transactions: tuple[bytes, ...]
    records: tuple[InferenceRecord, ...]
    parent_record_fault: bool = False

    @property
    def number(self) -> int:
        return int(self.header.block_number)


class TransactionVerifier(Protocol):
    """Level 3 behind one method: the post-state of one transaction from the agreed pre-state."""

    def verify_transaction(self, block: BlockContext, pre: TxState, index: int, witness: Any) -> bytes:
        """Hash of the :class:`TxState` after transaction ``index`` of ``block`` applied to ``pre``, or
        :data:`INVALID_TRANSITION` if it cannot be applied (raises a named error for a bad witness)."""


#: ``header_rules(parent, header)``: the header the node derives for the child of ``parent`` with
#: ``header``'s timestamp and L1 origin (``ChainView.expected_header``).
HeaderRules = Callable[[BlockHeaderAPI, BlockHeaderAPI], BlockHeaderAPI]


# ------------------------------------------------------------------------------------------------
# Moves


@dataclass(frozen=True)
class OpenOutput:
    """The claimant's first move: the disputed output's block header (RLP). No bond: it is part of the claim."""

    header: bytes


@dataclass(frozen=True)
class BisectBlocks:
    """Answer the last level-1 claim and post the block claim of ``header`` (RLP), ``record_count`` and
    ``record_fault``."""

    parent: int
    is_attack: bool
    header: bytes
    record_count: int
    record_fault: bool = False


@dataclass(frozen=True)
class OpenBlock:
    """Answer the last level-1 claim, leaving a leaf (block ``k``), and open level 2 on it.

    ``parent_header``/``parent_record_count``/``parent_record_fault`` open the agreed claim,
    ``header``/``record_count``/``record_fault`` the disputed one (both were published by the moves
    that posted them); ``transactions`` are block
    ``k``'s transactions, canonically encoded. On a padding leaf (past block ``n``) only
    ``parent``/``is_attack`` are read."""

    parent: int
    is_attack: bool
    parent_header: bytes = b""
    parent_record_count: int = 0
    header: bytes = b""
    record_count: int = 0
    transactions: tuple[bytes, ...] = ()
    parent_record_fault: bool = False
    record_fault: bool = False


@dataclass(frozen=True)
class BisectTxs:
    """Answer the last level-2 claim and post ``claim`` (an intermediate state's hash, or a block claim)."""

    parent: int
    is_attack: bool
    claim: bytes


@dataclass(frozen=True)
class StepTx:
    """Answer the last level-2 claim, leaving a leaf (transaction ``j``, or the seal), and resolve it:
    ``pre`` is the agreed state's encoding, ``witness`` what the verifier needs for transaction ``j``."""

    parent: int
    is_attack: bool
    pre: bytes = b""
    witness: Any = None


Move = OpenOutput | BisectBlocks | OpenBlock | BisectTxs | StepTx


@dataclass
class MoveRecord:
    """One accepted move, for the game log."""

    number: int
    role: Role
    kind: str
    position: int
    level: Level
    time: int


__all__ = [
    "INVALID_TRANSITION", "BisectBlocks", "BisectTxs", "BlockContext", "HeaderRules", "Level", "Move", "MoveRecord",
    "OpenBlock", "OpenOutput", "StepTx", "TransactionVerifier",
]
