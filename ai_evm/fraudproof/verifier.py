"""A transaction verifier by re-execution: the result level 3 (the EVM-step game) must reach.

:class:`ReexecutionVerifier` answers :meth:`~ai_evm.fraudproof.game.TransactionVerifier.verify_transaction`
by re-executing the block's transactions ``0 .. j`` from the agreed parent's state on a full node's
database (:class:`~ai_evm.fraudproof.trace.ChainView`): it checks that the prefix reproduces the agreed
state ``pre``, applies transaction ``j`` and returns the hash of the state after it. It is an
off-chain oracle (it trusts its database and runs models), not an L1 verifier: the EVM-step game of
``docs/evm_fraud_proof.md`` §4 replaces it behind the same method. It also checks what a one-step
proof of the inference precompile checks: the records the transaction makes are the disputed
output's records at the next indices (all six fields); if not, the post-state has ``record_fault``
set. A transaction that cannot be applied gives :data:`~ai_evm.fraudproof.game.INVALID_TRANSITION`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .commitments import TxState, block_claim
from .errors import UnknownPreState
from .game import INVALID_TRANSITION, BlockContext
from .trace import ChainView, InvalidBlockTransaction, decode_transactions, trace_block


@dataclass(frozen=True)
class OpenedTrace:
    """An opened block (level 2) re-executed: its states while every transaction applies, the first
    transaction that does not (None: all do), and the seal's block claim."""

    states: tuple[TxState, ...]
    invalid_at: int | None
    final: bytes

    def after_leaf(self, t: int) -> bytes:
        """The state after level-2 leaf ``t``: ``S_{t+1}``, the invalid hash from the first transaction
        that cannot be applied on, the seal's block claim from leaf ``T`` on (padding)."""
        if t + 1 < len(self.states):
            return self.states[t + 1].hash
        return INVALID_TRANSITION if self.invalid_at is not None else self.final


def reexecute_block(view: ChainView, block: BlockContext) -> OpenedTrace:
    """Block ``block`` (its template, transactions and the output's records) executed from its parent."""
    txs = decode_transactions(block.transactions)

    def run(stop: int) -> Any:
        return trace_block(view, block.parent, block.header, txs, block.parent_record_count, stop_after=stop,
                           output_records=block.records, parent_record_fault=block.parent_record_fault)

    try:
        trace = run(len(txs))
    except InvalidBlockTransaction as e:
        return OpenedTrace(run(e.index).states, e.index, INVALID_TRANSITION)
    return OpenedTrace(trace.states, None, block_claim(trace.header_rlp, trace.record_count, trace.record_fault))


class ReexecutionVerifier:
    """Level 3 stood in for by re-execution on ``view`` (see the module docstring)."""

    def __init__(self, view: ChainView) -> None:
        self.view = view

    def verify_transaction(self, block: BlockContext, pre: TxState, index: int, witness: Any) -> bytes:
        """The hash of the state after transaction ``index`` (``witness`` is not used)."""
        txs = decode_transactions(block.transactions)
        if not 0 <= index < len(txs):
            raise UnknownPreState(f"block {block.number} has no transaction {index}")
        try:
            trace = trace_block(self.view, block.parent, block.header, txs, block.parent_record_count,
                                stop_after=index + 1, output_records=block.records,
                                parent_record_fault=block.parent_record_fault)
        except InvalidBlockTransaction:
            prefix = trace_block(self.view, block.parent, block.header, txs, block.parent_record_count,
                                 stop_after=index, output_records=block.records,
                                 parent_record_fault=block.parent_record_fault)
            if prefix.states[index] != pre:
                raise UnknownPreState(f"the agreed state before transaction {index} of block {block.number} "
                                      "is not the re-executed one") from None
            return INVALID_TRANSITION
        if trace.states[index] != pre:
            raise UnknownPreState(f"the agreed state before transaction {index} of block {block.number} "
                                  "is not the re-executed one")
        return trace.states[index + 1].hash

__all__ = ["OpenedTrace", "ReexecutionVerifier", "reexecute_block"]
