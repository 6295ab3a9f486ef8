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

from typing import Any

from .commitments import TxState
from .errors import UnknownPreState
from .game import INVALID_TRANSITION, BlockContext
from .trace import ChainView, InvalidBlockTransaction, decode_transactions, trace_block


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

__all__ = ["ReexecutionVerifier"]
