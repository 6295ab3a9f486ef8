"""The transaction pool: admission checks with geth's error messages, and batches for mining.

A transaction is admitted only if it could run as the next transaction of its sender on top of
the head state plus the sender's pending transactions: valid under Prague's rules
(:mod:`ai_evm.evm.validation`: chain id, signature bounds, nonce below 2^64 - 1, initcode size,
gas at least the intrinsic gas and the EIP-7623 calldata floor, fee fields, EIP-7702 shape),
nonce equal to the sender's pending nonce (this dev node does not queue future nonces), gas
within the block gas limit, fees not below the next block's base fee, a balance that covers
``gas * maxFee + value`` after the sender's pending transactions, and a sender without code
other than an EIP-7702 delegation. The same rules run again when a block executes the
transaction (:class:`ai_evm.evm.state.AITransactionExecutor`), so what the pool admits and what
a block may contain cannot drift apart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from eth.abc import SignedTransactionAPI, StateAPI

from ai_evm.evm.validation import (
    SUPPORTED_TYPES,
    InvalidTransaction,
    max_cost,
    validate_fee_cap,
    validate_sender_code,
    validate_transaction_rules,
)

from .errors import TransactionRejected
from .index import tx_type

#: How many dropped transactions (mined-out failures) the pool remembers for their senders.
DROPPED_MEMORY = 4096


@dataclass(frozen=True)
class PoolLimits:
    """What the next block allows."""

    chain_id: int
    gas_limit: int
    base_fee: int


def _hex_addr(address: bytes) -> str:
    return "0x" + address.hex()


class TxPool:
    """Pending transactions in arrival order, with each sender's pending nonce and spend."""

    def __init__(self) -> None:
        self.pending: OrderedDict[bytes, SignedTransactionAPI] = OrderedDict()
        self._next_nonce: dict[bytes, int] = {}
        self._spend: dict[bytes, int] = {}
        self.dropped: OrderedDict[bytes, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self.pending)

    def pending_nonce(self, sender: bytes, state_nonce: int) -> int:
        """The nonce the sender's next transaction must carry."""
        return self._next_nonce.get(sender, state_nonce)

    def check(
        self, tx: SignedTransactionAPI, state: StateAPI, limits: PoolLimits,
        is_known: Callable[[bytes], bool],
    ) -> None:  # fmt: skip
        """Raise :class:`TransactionRejected` unless ``tx`` may join the pool now.

        First Prague's own validity rules (:func:`ai_evm.evm.validation.validate_transaction_rules`:
        type, chain id, signature bounds, nonce limit, initcode size, intrinsic gas, the EIP-7623
        calldata floor, fee fields, EIP-7702 shape), then the signature itself, then the pool's
        rules against the head state plus the sender's pending transactions.
        """
        kind = tx_type(tx)
        if kind not in SUPPORTED_TYPES:
            raise TransactionRejected(f"transaction type {kind} not supported")
        try:
            validate_transaction_rules(tx, limits.chain_id)
            tx.validate()
            sender = tx.sender
        except InvalidTransaction as e:
            raise TransactionRejected(str(e)) from None
        except Exception as e:  # py-evm raises ValidationError/BadSignature/ValueError variously
            raise TransactionRejected(f"invalid transaction: {e}") from None
        tx_hash = bytes(tx.hash)
        if tx_hash in self.pending or is_known(tx_hash):
            raise TransactionRejected("already known")
        if tx.gas > limits.gas_limit:
            raise TransactionRejected("exceeds block gas limit")
        if kind in (0, 1):
            if tx.gas_price < limits.base_fee:
                raise TransactionRejected(
                    f"transaction underpriced: address {_hex_addr(sender)}, gasPrice: {tx.gas_price}, "
                    f"baseFee: {limits.base_fee}"
                )
        else:
            try:
                validate_fee_cap(tx, limits.base_fee)
            except InvalidTransaction as e:
                raise TransactionRejected(str(e)) from None
        state_nonce = state.get_nonce(sender)
        expected = self.pending_nonce(sender, state_nonce)
        if tx.nonce < state_nonce:
            raise TransactionRejected(
                f"nonce too low: address {_hex_addr(sender)}, tx: {tx.nonce} state: {state_nonce}"
            )
        if tx.nonce < expected:
            raise TransactionRejected(
                f"replacement transaction underpriced: nonce {tx.nonce} of {_hex_addr(sender)} is taken "
                "by a pending transaction (this node does not replace pending transactions)"
            )
        if tx.nonce > expected:
            raise TransactionRejected(
                f"nonce too high: address {_hex_addr(sender)}, tx: {tx.nonce} next: {expected} "
                "(this node does not queue transactions with future nonces)"
            )
        balance = state.get_balance(sender) - self._spend.get(sender, 0)
        cost = max_cost(tx)
        if balance < cost:
            raise TransactionRejected(
                f"insufficient funds for gas * price + value: address {_hex_addr(sender)} have {max(balance, 0)} "
                f"want {cost}"
            )
        try:
            validate_sender_code(state.get_code(sender), sender)
        except InvalidTransaction as e:
            raise TransactionRejected(str(e)) from None

    def add(self, tx: SignedTransactionAPI) -> None:
        """Append a checked transaction."""
        sender = tx.sender
        self.pending[bytes(tx.hash)] = tx
        self._next_nonce[sender] = tx.nonce + 1
        self._spend[sender] = self._spend.get(sender, 0) + max_cost(tx)

    def take(
        self, gas_limit: int, skip: Callable[[SignedTransactionAPI], bool] | None = None
    ) -> list[SignedTransactionAPI]:
        """The longest prefix of pending transactions whose gas fits in ``gas_limit`` (not removed),
        leaving out those for which ``skip`` is true (senders waiting for a model fetch)."""
        batch, total = [], 0
        for tx in self.pending.values():
            if skip is not None and skip(tx):
                continue
            if total + tx.gas > gas_limit:
                break
            batch.append(tx)
            total += tx.gas
        return batch

    def remove(self, txs: list[SignedTransactionAPI]) -> None:
        """Forget mined (or dropped) transactions; recompute per-sender bookkeeping."""
        for tx in txs:
            self.pending.pop(bytes(tx.hash), None)
        self._next_nonce.clear()
        self._spend.clear()
        for tx in self.pending.values():
            sender = tx.sender
            self._next_nonce[sender] = tx.nonce + 1
            self._spend[sender] = self._spend.get(sender, 0) + max_cost(tx)

    def drop(self, failed: list[tuple[SignedTransactionAPI, str]]) -> None:
        """Remove transactions that cannot be mined, remembering why for their senders.

        One call for all of a block's failures: the per-sender bookkeeping is rebuilt once.
        """
        self.remove([tx for tx, _ in failed])
        for tx, reason in failed:
            self.dropped[bytes(tx.hash)] = reason
        while len(self.dropped) > DROPPED_MEMORY:
            self.dropped.popitem(last=False)
