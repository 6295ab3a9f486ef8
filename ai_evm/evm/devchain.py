"""An in-process AI EVM chain for tests, benchmarks and scripts (no node, no RPC).

:class:`DevChain` wraps an :class:`AIChain` over an in-memory database with one funded key, and
offers the few things a test needs: deploy a contract, send transactions (mined with
``mine_all``, several per block when given a batch), ``eth_call``-style calls, and the inference
records of every mined block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from eth.abc import ComputationAPI, ReceiptAPI, SignedTransactionAPI, StateAPI
from eth.db.atomic import AtomicDB
from eth.vm.message import Message
from eth.vm.spoof import SpoofTransaction
from eth_keys import keys
from eth_keys.datatypes import PrivateKey
from eth_typing import Address
from eth_utils import keccak

from opml.store import ModelStore

from .call import InferenceRecord
from .models import ModelResolver
from .records import inference_records
from .vm import AIChain, make_chain_class

DEV_KEY = keys.PrivateKey(keccak(b"ai-evm dev key 0"))
GAS_LIMIT = 60_000_000
GAS_PRICE = 10**9


@dataclass(frozen=True)
class TxResult:
    """One mined transaction: its receipt, top-level computation and inference records."""

    tx: SignedTransactionAPI
    receipt: ReceiptAPI
    computation: ComputationAPI
    records: list[InferenceRecord]

    gas_used: int


class DevChain:
    """A funded in-memory AI EVM chain; see the module docstring."""

    def __init__(self, store: ModelStore | None = None, chain_id: int = 1337, key: PrivateKey = DEV_KEY) -> None:
        self.resolver = ModelResolver(store, fetch_inline=True)  # one user, no lock: remote reads inline
        self.key = key
        self.sender = Address(key.public_key.to_canonical_address())
        self.chain_id = chain_id
        chain_class = make_chain_class(self.resolver, chain_id)
        genesis = {"difficulty": 0, "gas_limit": GAS_LIMIT, "timestamp": 1_700_000_000, "extra_data": b""}
        state = {self.sender: {"balance": 10**30, "nonce": 0, "code": b"", "storage": {}}}
        self.chain: AIChain = chain_class.from_genesis(AtomicDB(), genesis, state)  # type: ignore[arg-type,assignment]
        self._nonce = 0

    def sign(self, to: bytes | None, data: bytes = b"", gas: int = 5_000_000, value: int = 0) -> SignedTransactionAPI:
        """A signed legacy transaction from the dev key with the next nonce."""
        vm = self.chain.get_vm()
        tx = vm.create_unsigned_transaction(
            nonce=self._nonce, gas_price=GAS_PRICE, gas=gas, to=Address(to or b""), value=value, data=data
        ).as_signed_transaction(self.key, chain_id=self.chain_id)
        self._nonce += 1
        return tx

    def mine(self, txs: Sequence[SignedTransactionAPI]) -> list[TxResult]:
        """Mine ``txs`` into one block with ``mine_all``; results in order."""
        timestamp = self.chain.header.timestamp + 1
        _, receipts, computations = self.chain.mine_all(list(txs), timestamp=timestamp)
        out, prev = [], 0
        for tx, receipt, computation in zip(txs, receipts, computations, strict=True):
            records = inference_records([computation], [tx])
            out.append(TxResult(tx, receipt, computation, records, receipt.gas_used - prev))
            prev = receipt.gas_used
        return out

    def transact(self, to: bytes | None, data: bytes = b"", gas: int = 5_000_000, value: int = 0) -> TxResult:
        """Sign and mine one transaction in its own block."""
        return self.mine([self.sign(to, data, gas, value)])[0]

    def deploy(self, bytecode: bytes, gas: int = 8_000_000) -> bytes:
        """Deploy init code; returns the new contract's address (raises if the creation failed)."""
        result = self.transact(None, bytecode, gas)
        if not result.computation.is_success:
            raise RuntimeError(f"deployment failed: {result.computation.error}")
        return bytes(result.computation.msg.storage_address)

    def call(self, to: bytes, data: bytes = b"", gas: int = 30_000_000) -> ComputationAPI:
        """Execute a call against the head state without mining (like ``eth_call``); state is discarded."""
        head = self.chain.get_canonical_head()
        vm = self.chain.get_vm(head)
        unsigned = vm.create_unsigned_transaction(
            nonce=vm.state.get_nonce(self.sender), gas_price=0, gas=gas, to=Address(to), value=0, data=data
        )
        tx = SpoofTransaction(unsigned, from_=self.sender)
        with vm.in_costless_state() as state:
            return state.costless_execute_transaction(tx)  # type: ignore[arg-type]

    def execute_message(self, to: bytes, data: bytes, gas: int) -> ComputationAPI:
        """Run one message frame (e.g. a precompile) directly on the head state, no transaction.

        The fastest way to exercise a precompile: no signature, no intrinsic gas, state discarded.
        """
        with self.head_state() as state:
            return apply_message(state, self.sender, to, data, gas)

    @contextmanager
    def head_state(self) -> Iterator[StateAPI]:
        """A throw-away copy of the head state (everything done on it is reverted)."""
        vm = self.chain.get_vm(self.chain.get_canonical_head())
        with vm.in_costless_state() as state:
            yield state


def apply_message(state: StateAPI, sender: bytes, to: bytes, data: bytes, gas: int) -> ComputationAPI:
    """Apply one message frame from ``sender`` to ``to`` on ``state``; returns its computation."""
    message = Message(gas=gas, to=Address(to), sender=Address(sender), value=0, data=data,
                      code=state.get_code(Address(to)))
    context = state.get_transaction_context_class()(gas_price=0, origin=Address(sender))
    return state.computation_class.apply_computation(state, message, context)
