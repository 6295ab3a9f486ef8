"""The transaction pool: admission checks with geth's error messages, and batches for mining.

A transaction is admitted only if it could run as the next transaction of its sender on top of
the head state plus the sender's pending transactions: right chain id, valid signature, nonce
equal to the sender's pending nonce (this dev node does not queue future nonces), gas within the
block gas limit and above the intrinsic gas, fees not below the next block's base fee, and a
balance that covers ``gas * maxFee + value`` after the sender's pending transactions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from eth.abc import SignedTransactionAPI, StateAPI

from .errors import TransactionRejected
from .index import tx_type

#: How many dropped transactions (mined-out failures) the pool remembers for their senders.
DROPPED_MEMORY = 4096
SUPPORTED_TYPES = (0, 1, 2, 4)


@dataclass(frozen=True)
class PoolLimits:
    """What the next block allows."""

    chain_id: int
    gas_limit: int
    base_fee: int


def _hex_addr(address: bytes) -> str:
    return "0x" + address.hex()


def max_cost(tx: SignedTransactionAPI) -> int:
    """The most the sender can pay: ``gas * (gasPrice | maxFeePerGas) + value``."""
    price = tx.gas_price if tx_type(tx) in (0, 1) else tx.max_fee_per_gas
    return int(tx.gas) * int(price) + int(tx.value)


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
        """Raise :class:`TransactionRejected` unless ``tx`` may join the pool now."""
        kind = tx_type(tx)
        if kind not in SUPPORTED_TYPES:
            raise TransactionRejected(f"transaction type {kind} not supported")
        chain_id = tx.chain_id
        if chain_id is not None and chain_id != limits.chain_id:
            raise TransactionRejected(f"invalid chain id: have {chain_id} want {limits.chain_id}")
        try:
            intrinsic = tx.intrinsic_gas
        except Exception as e:
            raise TransactionRejected(f"invalid transaction: {e}") from None
        if tx.gas < intrinsic:
            raise TransactionRejected(f"intrinsic gas too low: gas {tx.gas}, minimum needed {intrinsic}")
        try:
            tx.validate()
            sender = tx.sender
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
            if tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
                raise TransactionRejected(
                    f"max priority fee per gas higher than max fee per gas: address {_hex_addr(sender)}, "
                    f"maxPriorityFeePerGas: {tx.max_priority_fee_per_gas}, maxFeePerGas: {tx.max_fee_per_gas}"
                )
            if tx.max_fee_per_gas < limits.base_fee:
                raise TransactionRejected(
                    f"max fee per gas less than block base fee: address {_hex_addr(sender)}, "
                    f"maxFeePerGas: {tx.max_fee_per_gas}, baseFee: {limits.base_fee}"
                )
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

    def add(self, tx: SignedTransactionAPI) -> None:
        """Append a checked transaction."""
        sender = tx.sender
        self.pending[bytes(tx.hash)] = tx
        self._next_nonce[sender] = tx.nonce + 1
        self._spend[sender] = self._spend.get(sender, 0) + max_cost(tx)

    def take(self, gas_limit: int) -> list[SignedTransactionAPI]:
        """The longest prefix of pending transactions whose gas fits in ``gas_limit`` (not removed)."""
        batch, total = [], 0
        for tx in self.pending.values():
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

    def drop(self, tx: SignedTransactionAPI, reason: str) -> None:
        """Remove a transaction that cannot be mined, remembering why for its sender."""
        self.remove([tx])
        self.dropped[bytes(tx.hash)] = reason
        while len(self.dropped) > DROPPED_MEMORY:
            self.dropped.popitem(last=False)
