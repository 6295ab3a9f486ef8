"""A one-step proof of a plain value transfer: the first transaction class level 3 proves from a witness.

A transfer (a signed type 0, 1 or 2 transaction with no data and no access list, or a deposit
(type 0x7E) with no data, to an account without code) runs no EVM code, so its level-3 trace is
one step: the transaction's start and end.
:func:`verify_transfer` computes the post-state from the agreed :class:`TxState` and a
:class:`TransferWitness` alone, as an L1 contract would (``docs/evm_fraud_proof.md`` §4.2):

1. the block template (its hash is the state's context hash) gives the base fee, gas limit and
   coinbase; the transaction is leaf ``rlp(index)`` of the template's transactions root;
2. the sender, the recipient and the coinbase are read from Merkle-Patricia proofs against the
   state root; the transaction must be valid there (the node's rules, ``ai_evm.evm.validation``:
   chain id, signature, nonce, fee cap, funds, sender code), else the post-state is
   :data:`~ai_evm.fraudproof.moves.INVALID_TRANSITION`;
3. the sender pays ``21000 x effective price + value`` and its nonce goes up, the recipient gets
   the value, the coinbase the priority fee (the base fee is burned); a deposit mints to its sender
   first and pays no fee (``ai_evm.evm.deposit``); the state root is recomputed from the proof
   nodes;
4. the receipt (status 1, cumulative gas, empty bloom and logs) is inserted at ``rlp(index)`` into
   the receipts trie, from a proof of that key's absence.

:func:`transfer_witness` builds the witness from a node's database (the prover's side), and
:class:`TransferVerifier` is a :class:`~ai_evm.fraudproof.moves.TransactionVerifier` that uses
them. Any other transaction raises :class:`UnsupportedTransaction`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.rlp.receipts import Receipt
from eth_utils import ValidationError
from trie import HexaryTrie
from trie.exceptions import MissingTrieNode

from ai_evm.evm.deposit import DEPOSIT_TX_TYPE, as_deposit
from ai_evm.evm.validation import max_cost, validate_fee_cap, validate_sender_code, validate_transaction_rules
from opml.merkle import keccak

from .commitments import TxState, decode_header, encode_header, template
from .errors import EvmFraudError, UnknownPreState
from .moves import INVALID_TRANSITION, BlockContext, TransactionVerifier
from .trace import ChainView, decode_transactions, trace_block

#: Gas of a transfer: the intrinsic gas, nothing else runs (the EIP-7623 floor is the same with no data).
TRANSFER_GAS = 21_000


class UnsupportedTransaction(EvmFraudError):
    """The transaction is not a plain value transfer (the transfer verifier proves only those)."""


class InvalidProof(EvmFraudError):
    """A Merkle-Patricia proof of the witness does not reach its key from its root."""


class ContextMismatch(EvmFraudError):
    """The witness's block template does not hash to the state's context hash."""


@dataclass(frozen=True)
class TransferWitness:
    """What the verifier is given for transaction ``index``: the block template (RLP), the transaction,
    and RLP trie nodes: its path in the transactions root, the paths of the sender, recipient and
    coinbase in the state root, and the path of key ``rlp(index)`` in the receipts root."""

    template: bytes
    transaction: bytes
    tx_proof: tuple[bytes, ...]
    state_proof: tuple[bytes, ...]
    receipts_proof: tuple[bytes, ...]

    @property
    def size(self) -> int:
        """Bytes an L1 contract would receive (the encodings, without ABI framing)."""
        return (len(self.template) + len(self.transaction)
                + sum(len(n) for p in (self.tx_proof, self.state_proof, self.receipts_proof) for n in p))


def _index_key(index: int) -> bytes:
    return bytes(rlp.encode(index, sedes=rlp.sedes.big_endian_int))


def _trie(root: bytes, nodes: Iterable[bytes]) -> HexaryTrie:
    return HexaryTrie({keccak(n): n for n in nodes}, root)


def _read(trie: HexaryTrie, key: bytes, what: str) -> bytes:
    try:
        return bytes(trie.get(key))
    except MissingTrieNode:
        raise InvalidProof(f"the proof does not reach {what}") from None


@dataclass
class _Account:
    nonce: int = 0
    balance: int = 0
    storage_root: bytes = BLANK_ROOT_HASH
    code_hash: bytes = EMPTY_SHA3

    @classmethod
    def decode(cls, raw: bytes) -> _Account:
        if not raw:
            return cls()
        nonce, balance, storage, code = rlp.decode(raw)
        return cls(int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"), bytes(storage), bytes(code))

    def encode(self) -> bytes:
        return bytes(rlp.encode([self.nonce, self.balance, self.storage_root, self.code_hash]))

    @property
    def empty(self) -> bool:  # EIP-161
        return self.nonce == 0 and self.balance == 0 and self.code_hash == EMPTY_SHA3


def verify_transfer(pre: TxState, index: int, w: TransferWitness, chain_id: int) -> bytes:
    """The hash of the state after transfer ``index`` applied to ``pre`` (see the module docstring)."""
    # INVARIANT: the witness is about this block and this transaction.
    if not isinstance(w, TransferWitness):
        raise InvalidProof("a transfer step needs a TransferWitness")
    if keccak(w.template) != pre.context_hash:
        raise ContextMismatch("the template does not hash to the state's context hash")
    if pre.tx_index != index:
        raise UnknownPreState(f"the state is after {pre.tx_index} transactions, the step is transaction {index}")
    header = decode_header(w.template)
    if _read(_trie(bytes(header.transaction_root), w.tx_proof), _index_key(index), f"transaction {index}") \
            != w.transaction:
        raise InvalidProof(f"the transaction is not leaf {index} of the block's transactions root")
    try:
        (tx,) = decode_transactions([w.transaction])
    except Exception:  # rlp or field errors: a block holding it is invalid
        return INVALID_TRANSITION
    deposit = as_deposit(tx)
    access_list: Sequence[Any] = getattr(tx, "access_list", None) or ()
    if tx.type_id not in (None, 1, 2, DEPOSIT_TX_TYPE) or tx.data or not tx.to or access_list:
        raise UnsupportedTransaction("only value transfers (type 0, 1, 2 or a deposit) without data or access list "
                                     "are proven")
    # the accounts, from the proof (every path the step reads or writes)
    state = _trie(pre.state_root, w.state_proof)
    try:
        sender = bytes(tx.sender)
    except Exception:  # eth_keys BadSignature, ValidationError: the signature does not recover
        return INVALID_TRANSITION
    coinbase, recipient = bytes(header.coinbase), bytes(tx.to)
    accounts = {a: _Account.decode(_read(state, keccak(a), f"account {a.hex()}"))
                for a in (sender, recipient, coinbase)}
    if accounts[recipient].code_hash != EMPTY_SHA3:
        raise UnsupportedTransaction("the recipient has code: the transaction runs EVM code")
    if pre.gas_used + tx.gas > header.gas_limit:
        return INVALID_TRANSITION
    if deposit is not None:
        # a deposit (ai_evm.evm.deposit): its field ranges, the mint first, the nonce, the value at gas
        # price 0, no fee
        try:
            tx.validate()
        except ValidationError:
            return INVALID_TRANSITION
        accounts[sender].balance += deposit.mint
        accounts[sender].nonce += 1
        if tx.gas < tx.intrinsic_gas or accounts[sender].balance < tx.value:
            # its call cannot start: it fails, keeping the mint and the nonce, using its whole gas limit
            return _finish(pre, index, w, state, accounts, tx, int(tx.gas), success=False)
        accounts[sender].balance -= tx.value
        accounts[recipient].balance += tx.value
        return _finish(pre, index, w, state, accounts, tx, TRANSFER_GAS)
    # SAFETY: the node's validity rules, in its order; an invalid transaction makes the block invalid.
    base_fee = int(header.base_fee_per_gas or 0)
    try:
        validate_transaction_rules(tx, chain_id)
        validate_fee_cap(tx, base_fee)
        if tx.nonce != accounts[sender].nonce or accounts[sender].balance < max_cost(tx):
            return INVALID_TRANSITION
        if accounts[sender].code_hash != EMPTY_SHA3:
            raise UnsupportedTransaction("the sender has code (an EIP-7702 delegation needs its code)")
        validate_sender_code(b"", sender)
    except ValidationError:
        return INVALID_TRANSITION
    # the transfer: gas bought at the effective price, the value moved, the tip to the coinbase
    tip = min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee)
    accounts[sender].nonce += 1
    accounts[sender].balance -= TRANSFER_GAS * (base_fee + tip) + tx.value
    accounts[recipient].balance += tx.value
    accounts[coinbase].balance += TRANSFER_GAS * tip
    return _finish(pre, index, w, state, accounts, tx, TRANSFER_GAS)


def _finish(pre: TxState, index: int, w: TransferWitness, state: HexaryTrie, accounts: dict[bytes, _Account],
            tx: Any, gas: int, success: bool = True) -> bytes:
    """Write the touched accounts, insert the receipt (``gas`` used, its status), and hash the post-state."""
    try:
        for address, account in accounts.items():
            key = keccak(address)
            if account.empty:  # EIP-161: a touched empty account is not in the state
                if _read(state, key, f"account {address.hex()}"):
                    raise UnsupportedTransaction(f"account {address.hex()} would be deleted (needs its siblings)")
                continue
            state[key] = account.encode()
    except MissingTrieNode:
        raise InvalidProof("the state proof lacks a node the update needs") from None
    # the receipt, at the next key of the receipts trie
    receipts = _trie(pre.receipts_root, w.receipts_proof)
    if _read(receipts, _index_key(index), f"receipt {index}"):
        raise InvalidProof(f"the receipts trie already holds receipt {index}")
    gas_used = pre.gas_used + gas
    receipt = bytes(rlp.encode(Receipt(b"\x01" if success else b"", gas_used, [])))  # type: ignore[abstract]
    if tx.type_id is not None:
        receipt = bytes([tx.type_id]) + receipt
    try:
        receipts[_index_key(index)] = receipt
    except MissingTrieNode:
        raise InvalidProof("the receipts proof lacks a node the insertion needs") from None
    return TxState(pre.context_hash, index + 1, bytes(state.root_hash), gas_used, pre.blob_gas_used,
                   bytes(receipts.root_hash), pre.logs_bloom, pre.record_count, pre.record_fault).hash


def _proof(db: Any, root: bytes, key: bytes) -> tuple[bytes, ...]:
    """RLP nodes on ``key``'s path in the trie ``root`` of ``db``, root first."""
    if root == BLANK_ROOT_HASH:
        return ()
    return tuple(bytes(rlp.encode(node)) for node in HexaryTrie(db, root).get_proof(key))


def transfer_witness(view: ChainView, block: BlockContext, index: int) -> TransferWitness:
    """The witness of transaction ``index`` of ``block`` (re-executes the transactions before it)."""
    txs = decode_transactions(block.transactions)
    prefix = trace_block(view, block.parent, block.header, txs, block.parent_record_count, stop_after=index,
                         output_records=block.records, parent_record_fault=block.parent_record_fault,
                         persist_each=True)
    pre = prefix.states[index]
    tx = txs[index]
    tx_trie: dict[bytes, bytes] = {}
    tx_root = HexaryTrie(tx_trie)
    for i, t in enumerate(txs):
        tx_root[_index_key(i)] = t.encode()
    receipts_db: dict[bytes, bytes] = {}
    receipts = HexaryTrie(receipts_db)
    for i, r in enumerate(prefix.receipts):
        receipts[_index_key(i)] = r.encode()
    try:
        sender = bytes(tx.sender)
    except (ValidationError, ValueError):
        sender = b""
    state_nodes: list[bytes] = []
    for address in (sender, bytes(tx.to or b""), bytes(block.header.coinbase)):
        if len(address) == 20:
            state_nodes += [n for n in _proof(view.overlay, pre.state_root, keccak(address)) if n not in state_nodes]
    return TransferWitness(encode_header(template(block.header)), bytes(tx.encode()),
                           _proof(tx_trie, tx_root.root_hash, _index_key(index)), tuple(state_nodes),
                           _proof(receipts_db, receipts.root_hash, _index_key(index)))


class TransferVerifier:
    """A :class:`~ai_evm.fraudproof.moves.TransactionVerifier` for value transfers: the post-state from
    the witness alone (``witness``: a :class:`TransferWitness`; None: built here from ``view``, the
    prover's side, then verified)."""

    def __init__(self, chain_id: int, view: ChainView | None = None) -> None:
        self.chain_id = chain_id
        self.view = view

    def verify_transaction(self, block: BlockContext, pre: TxState, index: int, witness: Any) -> bytes:
        if witness is None:
            if self.view is None:
                raise InvalidProof("a transfer step needs a witness")
            witness = transfer_witness(self.view, block, index)
        return verify_transfer(pre, index, witness, self.chain_id)


class StepVerifiers:
    """Level 3 as it grows, one transaction class at a time: a :class:`TransferWitness` is proven by
    :func:`verify_transfer`; any other witness goes to ``fallback`` (e.g. the re-execution verifier,
    for the classes not proven from a witness yet)."""

    def __init__(self, chain_id: int, fallback: TransactionVerifier) -> None:
        self.transfers = TransferVerifier(chain_id)
        self.fallback = fallback

    def verify_transaction(self, block: BlockContext, pre: TxState, index: int, witness: Any) -> bytes:
        if isinstance(witness, TransferWitness):
            return self.transfers.verify_transaction(block, pre, index, witness)
        return self.fallback.verify_transaction(block, pre, index, witness)


def prove_step(view: ChainView, block: BlockContext, index: int) -> TransferWitness | None:
    """The transfer witness of transaction ``index`` if it is a transfer this module proves, else None."""
    witness = transfer_witness(view, block, index)
    txs = decode_transactions(block.transactions)
    prefix = trace_block(view, block.parent, block.header, txs, block.parent_record_count, stop_after=index,
                         output_records=block.records, parent_record_fault=block.parent_record_fault)
    try:
        verify_transfer(prefix.states[index], index, witness, int(view.chain_id))
    except UnsupportedTransaction:
        return None
    return witness


__all__ = [
    "TRANSFER_GAS", "ContextMismatch", "InvalidProof", "StepVerifiers", "TransferVerifier", "TransferWitness",
    "UnsupportedTransaction", "prove_step", "transfer_witness", "verify_transfer",
]
