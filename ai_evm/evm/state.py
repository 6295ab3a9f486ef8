"""``AIState``: Prague's state whose computations are :class:`AIComputation`, and whose
transaction executor enforces the Prague validity rules py-evm lacks (:mod:`ai_evm.evm.validation`)."""

from __future__ import annotations

from eth.abc import SignedTransactionAPI
from eth.vm.forks.prague.state import PragueState, PragueTransactionExecutor
from eth.vm.spoof import SpoofTransaction

from .computation import AIComputation
from .validation import validate_transaction_in_state, validate_transaction_rules


class AITransactionExecutor(PragueTransactionExecutor):
    """Prague's executor, validating every transaction as the execution-specs do before running it.

    A transaction that breaks a rule raises :class:`~ai_evm.evm.validation.InvalidTransaction`
    (a py-evm ``ValidationError``): a block containing it cannot be built or imported. Spoofed
    transactions (``eth_call``, ``eth_estimateGas``) get the stateless rules only, as geth skips
    nonce, balance and EOA checks for calls.
    """

    def validate_transaction(self, transaction: SignedTransactionAPI) -> None:
        """The Prague rules first (geth's messages), then py-evm's own checks."""
        validate_transaction_rules(transaction, int(self.vm_state.execution_context.chain_id))
        if not isinstance(transaction, SpoofTransaction):
            validate_transaction_in_state(self.vm_state, transaction)
        super().validate_transaction(transaction)


class AIState(PragueState):
    """Prague state with the inference precompiles and the complete Prague transaction rules."""

    computation_class = AIComputation
    transaction_executor_class = AITransactionExecutor
