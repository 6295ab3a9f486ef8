"""``AIState``: Prague's state whose computations are :class:`AIComputation`, and whose
transaction executor enforces the Prague validity rules py-evm lacks (:mod:`ai_evm.evm.validation`)
and executes deposit transactions (:mod:`ai_evm.evm.deposit`)."""

from __future__ import annotations

from eth.abc import ComputationAPI, MessageAPI, SignedTransactionAPI, TransactionContextAPI
from eth.exceptions import VMError
from eth.vm.forks.prague.state import PragueState, PragueTransactionExecutor
from eth.vm.message import Message
from eth.vm.spoof import SpoofTransaction

from .computation import AIComputation
from .deposit import as_deposit
from .validation import validate_transaction_in_state, validate_transaction_rules


class DepositFailed(VMError):
    """A deposit's call cannot start (gas limit below its intrinsic gas, or value above the balance):
    the call is not run; the mint and the nonce bump stay."""


class AITransactionExecutor(PragueTransactionExecutor):
    """Prague's executor, validating every transaction as the execution-specs do before running it.

    A transaction that breaks a rule raises :class:`~ai_evm.evm.validation.InvalidTransaction`
    (a py-evm ``ValidationError``): a block containing it cannot be built or imported. Spoofed
    transactions (``eth_call``, ``eth_estimateGas``) get the stateless rules only, as geth skips
    nonce, balance and EOA checks for calls.

    A deposit (``0x7E``) skips those rules (it has no signature, nonce or fee: L1 authenticated it);
    it mints, bumps the sender's nonce and runs its call at gas price 0 (``ai_evm.evm.deposit``).
    """

    def validate_transaction(self, transaction: SignedTransactionAPI) -> None:
        """The Prague rules first (geth's messages), then py-evm's own checks; a deposit's field ranges."""
        if as_deposit(transaction) is not None:
            transaction.validate()
            return
        validate_transaction_rules(transaction, int(self.vm_state.execution_context.chain_id))
        if not isinstance(transaction, SpoofTransaction):
            validate_transaction_in_state(self.vm_state, transaction)
        super().validate_transaction(transaction)

    #: Why the deposit being executed fails before its call runs (set by build_evm_message).
    _deposit_failure: str | None = None

    def build_evm_message(self, transaction: SignedTransactionAPI) -> MessageAPI:
        """A deposit mints ``mint`` to its sender first, whatever the call does afterwards.

        As op-geth, a deposit whose call cannot start (gas limit below its intrinsic gas, or
        ``value`` above the sender's balance after the mint) fails without running: its nonce is
        bumped, the mint stays, and it uses its whole gas limit."""
        deposit = as_deposit(transaction)
        if deposit is None:
            return super().build_evm_message(transaction)
        sender = transaction.sender
        self.vm_state.delta_balance(sender, deposit.mint)
        if transaction.gas < transaction.intrinsic_gas:
            self._deposit_failure = (f"deposit gas limit {transaction.gas} is below its intrinsic gas "
                                     f"{transaction.intrinsic_gas}")
        elif self.vm_state.get_balance(sender) < transaction.value:
            self._deposit_failure = (f"deposit value {transaction.value} exceeds the sender's balance "
                                     f"{self.vm_state.get_balance(sender)} after the mint")
        if self._deposit_failure is None:
            return super().build_evm_message(transaction)  # fee 0: AIState.get_gas_price
        self.vm_state.increment_nonce(sender)
        return Message(gas=0, to=transaction.to, sender=sender, value=0, data=b"", code=b"")

    def build_computation(self, message: MessageAPI, transaction: SignedTransactionAPI) -> ComputationAPI:
        """A deposit that cannot start (see :meth:`build_evm_message`) fails without running its call."""
        if self._deposit_failure is None:
            return super().build_computation(message, transaction)
        computation = self.vm_state.get_computation(message, self.vm_state.get_transaction_context(transaction))
        computation.error = DepositFailed(self._deposit_failure)
        return computation

    def calc_data_floor_gas(self, transaction: SignedTransactionAPI,  # type: ignore[override]
                            gas_used: int, gas_refund: int) -> int:
        """No EIP-7623 calldata floor for a deposit (its gas was paid on L1)."""
        if as_deposit(transaction) is not None:
            return 0
        return PragueTransactionExecutor.calc_data_floor_gas(transaction, gas_used, gas_refund)


class AIState(PragueState):
    """Prague state with the inference precompiles, the complete Prague transaction rules and deposits."""

    computation_class = AIComputation
    transaction_executor_class = AITransactionExecutor

    def get_gas_price(self, transaction: SignedTransactionAPI) -> int:
        """What the sender pays per gas: 0 for a deposit."""
        return 0 if as_deposit(transaction) is not None else super().get_gas_price(transaction)

    def get_tip(self, transaction: SignedTransactionAPI) -> int:
        """What the coinbase earns per gas: 0 for a deposit."""
        return 0 if as_deposit(transaction) is not None else super().get_tip(transaction)

    def get_transaction_context(self, transaction: SignedTransactionAPI) -> TransactionContextAPI:
        """``GASPRICE`` reads 0 in a deposit; ``ORIGIN`` is its sender."""
        if as_deposit(transaction) is None:
            return super().get_transaction_context(transaction)
        return self.get_transaction_context_class()(gas_price=0, origin=transaction.sender)
