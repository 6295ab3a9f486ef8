"""The deposit transaction (EIP-2718 type ``0x7E``, as the OP Stack's): an L1 deposit executed on L2.

A deposit is created only by derivation, from the L1 Portal's ``TransactionDeposited`` event
(``ai_evm.rollup.deposits``); nobody signs it. Its payload is
``rlp([sourceHash, from, to, mint, value, gasLimit, data])`` where ``sourceHash =
keccak256(abi.encode(portal, nonce))`` makes every deposit's hash unique; the transaction hash is
``keccak256(0x7E ‖ payload)``. Its sender is ``from`` (the L1 sender, or its alias for a contract).

Execution (:class:`ai_evm.evm.state.AITransactionExecutor`): ``balance(from) += mint`` first and
always, ``nonce(from) += 1``, then a message call ``from -> to`` with ``value`` and the gas limit,
at gas price 0: nothing is bought, refunded or paid to the coinbase, and no EIP-7623 calldata floor
applies. A call that fails (reverts, runs out of gas, or whose gas limit is below the intrinsic
gas, in which case it is not run) keeps the mint and the nonce; its receipt has status 0 and the gas
it used counts in the block. Deposit receipts are plain typed receipts (status, cumulative gas,
bloom, logs), without OP's ``depositNonce``/``depositReceiptVersion``.

Wired by configuration: :class:`AITypedTransaction` and :class:`AITypedReceipt` add the type to
Prague's decoder tables, :class:`AIBlock` carries them, and ``AIVM.block_class`` is :class:`AIBlock`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import rlp
from cached_property import cached_property
from eth.abc import (
    ComputationAPI,
    ReceiptAPI,
    SetCodeAuthorizationAPI,
    SignedTransactionAPI,
    TransactionDecoderAPI,
)
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.rlp.sedes import address, hash32
from eth.rlp.transactions import SignedTransactionMethods
from eth.validation import validate_canonical_address, validate_uint64, validate_uint256
from eth.vm.forks.berlin.transactions import calculate_txn_intrinsic_gas_berlin
from eth.vm.forks.prague.blocks import PragueBlock, PragueBlockHeader
from eth.vm.forks.prague.receipts import PragueReceiptBuilder, PragueTypedReceipt
from eth.vm.forks.prague.transactions import PragueTransactionBuilder, PragueTypedTransaction
from eth.vm.forks.shanghai.withdrawals import Withdrawal
from eth_hash.auto import keccak
from eth_typing import Address, Hash32
from eth_utils import ValidationError
from rlp.sedes import CountableList, big_endian_int, binary

#: EIP-2718 type of a deposit transaction (the OP Stack's).
DEPOSIT_TX_TYPE = 0x7E


class DepositTransaction(rlp.Serializable, SignedTransactionMethods):
    """The payload of a deposit (module docstring); wrapped in :class:`AITypedTransaction`."""

    source_hash: bytes
    from_address: Address
    mint: int

    fields = [
        ("source_hash", hash32),
        ("from_address", address),
        ("to", address),
        ("mint", big_endian_int),
        ("value", big_endian_int),
        ("gas", big_endian_int),
        ("data", binary),
    ]

    def validate(self) -> None:
        """Field ranges (a deposit has no signature to check)."""
        if len(self.source_hash) != 32:
            raise ValidationError("deposit sourceHash must be 32 bytes")
        validate_canonical_address(self.from_address, title="Deposit.from")
        validate_canonical_address(self.to, title="Deposit.to")
        validate_uint256(self.mint, title="Deposit.mint")
        validate_uint256(self.value, title="Deposit.value")
        validate_uint64(self.gas, title="Deposit.gas")

    # -- what a signed transaction has, and a deposit has not (or has as zero) --------------------
    @property
    def nonce(self) -> int:
        return 0

    @property
    def chain_id(self) -> int | None:  # type: ignore[override]
        return None

    @property
    def gas_price(self) -> int:
        return 0

    @property
    def max_fee_per_gas(self) -> int:
        return 0

    @property
    def max_priority_fee_per_gas(self) -> int:
        return 0

    @property
    def access_list(self) -> Sequence[tuple[Address, Sequence[int]]]:
        return ()

    @property
    def authorization_list(self) -> Sequence[SetCodeAuthorizationAPI]:
        return ()

    @property
    def max_fee_per_blob_gas(self) -> int:
        return 0

    @property
    def blob_versioned_hashes(self) -> Sequence[Hash32]:
        return ()

    @property
    def y_parity(self) -> int:
        return 0

    @property
    def r(self) -> int:
        return 0

    @property
    def s(self) -> int:
        return 0

    def get_sender(self) -> Address:
        return self.from_address

    def check_signature_validity(self) -> None:
        """Nothing to check: a deposit is authenticated by L1, not by a signature."""

    def get_message_for_signing(self) -> bytes:
        raise ValidationError("a deposit transaction is not signed")

    def get_intrinsic_gas(self) -> int:
        return calculate_txn_intrinsic_gas_berlin(self)

    @cached_property
    def hash(self) -> Hash32:  # type: ignore[override]
        raise NotImplementedError("Call hash() on the TypedTransaction instead")

    def encode(self) -> bytes:
        return rlp.encode(self)

    def make_receipt(self, status: bytes, gas_used: int,
                     log_entries: tuple[tuple[bytes, tuple[int, ...], bytes], ...]) -> ReceiptAPI:
        logs = [Log(addr, topics, data) for addr, topics, data in log_entries]
        return Receipt(state_root=status, gas_used=gas_used, logs=logs)  # type: ignore[abstract]

    def gas_used_by(self, computation: ComputationAPI) -> int:
        return self.get_intrinsic_gas() + computation.get_gas_used()


class DepositPayloadDecoder(TransactionDecoderAPI):
    """Decodes the RLP payload of a ``0x7E`` transaction."""

    @classmethod
    def decode(cls, payload: bytes) -> SignedTransactionAPI:
        return cast(SignedTransactionAPI, rlp.decode(payload, sedes=DepositTransaction))


class AITypedReceipt(PragueTypedReceipt):
    """Prague's typed receipts plus the deposit's (the same body as the others)."""

    codecs = {**PragueTypedReceipt.codecs, DEPOSIT_TX_TYPE: Receipt}  # type: ignore[dict-item]


class AIReceiptBuilder(PragueReceiptBuilder):
    """Prague's receipt builder decoding deposit receipts too."""

    typed_receipt_class = AITypedReceipt


class AITypedTransaction(PragueTypedTransaction):
    """Prague's typed transactions plus the deposit (``0x7E``)."""

    decoders = {**PragueTypedTransaction.decoders, DEPOSIT_TX_TYPE: DepositPayloadDecoder}
    receipt_builder = AIReceiptBuilder


class AITransactionBuilder(PragueTransactionBuilder):
    """Prague's transaction builder decoding deposits too."""

    typed_transaction = AITypedTransaction


class AIBlock(PragueBlock):
    """A Prague block whose transactions and receipts may be deposits."""

    transaction_builder = AITransactionBuilder
    receipt_builder = AIReceiptBuilder
    fields = [
        ("header", PragueBlockHeader),
        ("transactions", CountableList(AITransactionBuilder)),
        ("uncles", CountableList(None, max_length=0)),
        ("withdrawals", CountableList(Withdrawal)),
    ]


def as_deposit(tx: Any) -> DepositTransaction | None:
    """The deposit payload of ``tx`` if it is a deposit transaction, else None."""
    if getattr(tx, "type_id", None) != DEPOSIT_TX_TYPE:
        return None
    inner = getattr(tx, "_inner", None)
    return inner if isinstance(inner, DepositTransaction) else None


def is_deposit_raw(raw: bytes) -> bool:
    """Whether encoded transaction bytes are a deposit (type byte ``0x7E``)."""
    return len(raw) > 0 and raw[0] == DEPOSIT_TX_TYPE


def deposit_source_hash(portal: bytes, nonce: int) -> bytes:
    """``keccak256(abi.encode(portal, nonce))``: what makes a deposit unique."""
    if len(portal) != 20:
        raise ValueError("the portal address must be 20 bytes")
    return keccak(portal.rjust(32, b"\0") + nonce.to_bytes(32, "big"))


def new_deposit(source_hash: bytes, sender: bytes, to: bytes, mint: int, value: int, gas: int,
                data: bytes) -> AITypedTransaction:
    """The deposit transaction with these fields (validated: ``ValidationError`` if out of range)."""
    inner = DepositTransaction(source_hash, Address(sender), Address(to), mint, value, gas, data)
    inner.validate()
    return AITypedTransaction(DEPOSIT_TX_TYPE, inner)


__all__ = [
    "AIBlock",
    "AIReceiptBuilder",
    "AITransactionBuilder",
    "AITypedReceipt",
    "AITypedTransaction",
    "DEPOSIT_TX_TYPE",
    "DepositPayloadDecoder",
    "DepositTransaction",
    "as_deposit",
    "deposit_source_hash",
    "is_deposit_raw",
    "new_deposit",
]
