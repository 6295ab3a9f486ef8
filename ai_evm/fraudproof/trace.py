"""Re-executing L2 blocks transaction by transaction: the intermediate states of level 2.

:func:`trace_block` runs a block's transactions from its parent's state with the node's own VM
class (``ai_evm.evm.AIVM``: the same transaction executor, deposits, precompiles and fee rules as
``Sequencer._mine``), exactly as py-evm's ``mine_all`` does (``apply_transaction``,
``add_receipt_to_header``, ``increment_blob_gas_used`` per transaction, no block pre-processing, no
block reward), and records a :class:`~ai_evm.fraudproof.commitments.TxState` before the first
transaction and after each one. Sealing the last state into the block's template gives the block's
header: :func:`honest_chain` checks that it is byte for byte the header the node stored.

Every write goes to a private in-memory overlay over the node's database (:class:`ChainView`):
re-execution never changes the node's chain. A ``tamper`` hook lets a test build a dishonest
proposer's chain (one balance changed after one transaction, every later state and block following
from it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI, DatabaseAPI, ReceiptAPI, SignedTransactionAPI, StateAPI
from eth.constants import BLANK_ROOT_HASH
from eth.db.atomic import AtomicDB
from eth.db.batch import BatchDB
from eth.db.chain import ChainDB
from eth.db.trie import make_trie_root_and_nodes
from eth.vm.chain_context import ChainContext
from eth_typing import BlockNumber
from trie import HexaryTrie

from ai_evm.evm.call import InferenceRecord
from ai_evm.evm.deposit import AITransactionBuilder
from ai_evm.evm.records import computation_records
from opml.merkle import keccak

from .commitments import TxState, block_claim, encode_header, seal, start_state, template
from .errors import EvmFraudError

#: ``tamper(tx_index, state)``: called after transaction ``tx_index`` is applied, before its state root.
Tamper = Callable[[int, StateAPI], None]


class ReexecutionMismatch(EvmFraudError):
    """Re-executing a stored block does not reproduce its stored header (a node or trace bug)."""


class InvalidBlockTransaction(EvmFraudError):
    """A transaction of the block cannot be applied to the state before it (the block is invalid)."""

    #: Index of the transaction in its block.
    index: int = -1


@dataclass
class ChainView:
    """A node's chain database, read only, with a private in-memory overlay that re-execution writes to.

    Reads go to the node's database as it is: on a running sequencer, hold ``Sequencer.lock`` while
    tracing (py-evm objects are not thread-safe), or work on a node that is not mining."""

    base_db: DatabaseAPI
    chain_class: Any
    chain_id: int
    overlay: AtomicDB = field(init=False)

    def __post_init__(self) -> None:
        self.overlay = AtomicDB(BatchDB(self.base_db))  # BatchDB buffers writes: never committed to base_db

    @classmethod
    def of(cls, sequencer: Any) -> ChainView:
        """The view of a running :class:`~ai_evm.node.chain.Sequencer` (its database, chain class, chain id)."""
        chain = sequencer.chain
        return cls(sequencer.db, type(chain), int(chain.chain_id))

    @property
    def chaindb(self) -> ChainDB:
        return ChainDB(self.overlay)

    def header(self, number: int) -> BlockHeaderAPI:
        """The canonical header at ``number`` (``HeaderNotFound`` if none)."""
        return self.chaindb.get_canonical_block_header_by_number(BlockNumber(number))

    def transactions(self, number: int) -> tuple[SignedTransactionAPI, ...]:
        """The transactions of canonical block ``number``."""
        header = self.header(number)
        vm_class = self.chain_class.get_vm_class_for_block_number(BlockNumber(number))
        block = vm_class.get_block_class().from_header(header, self.chaindb)
        return tuple(block.transactions)

    def expected_header(self, parent: BlockHeaderAPI, header: BlockHeaderAPI) -> BlockHeaderAPI:
        """The header the node would start block ``parent + 1`` from, with ``header``'s timestamp and L1
        origin (``mix_hash``, ``extra_data``): ``Sequencer._stamp_pending_header`` on ``create_header_from_parent``."""
        vm_class = self.chain_class.get_vm_class_for_block_number(BlockNumber(parent.block_number + 1))
        return vm_class.create_header_from_parent(parent).copy(
            timestamp=header.timestamp, mix_hash=header.mix_hash, extra_data=header.extra_data)


@dataclass(frozen=True)
class BlockTrace:
    """One block re-executed: its parent, sealed header, transactions, intermediate states, records."""

    parent: BlockHeaderAPI
    header: BlockHeaderAPI
    transactions: tuple[SignedTransactionAPI, ...]
    states: tuple[TxState, ...]
    records: tuple[InferenceRecord, ...]
    receipts: tuple[ReceiptAPI, ...] = ()

    @property
    def number(self) -> int:
        return int(self.header.block_number)

    @property
    def header_rlp(self) -> bytes:
        return encode_header(self.header)

    @property
    def record_count(self) -> int:
        """Records of the disputed output consumed through the end of this block."""
        return self.states[-1].record_count

    @property
    def record_fault(self) -> bool:
        """Whether a call through the end of this block consumed a record not its own."""
        return self.states[-1].record_fault

    @property
    def claim(self) -> bytes:
        """The level-1 state after this block."""
        return block_claim(self.header_rlp, self.record_count, self.record_fault)

    @property
    def raw_transactions(self) -> tuple[bytes, ...]:
        return tuple(bytes(tx.encode()) for tx in self.transactions)


def decode_transactions(raws: Sequence[bytes]) -> tuple[SignedTransactionAPI, ...]:
    """Transactions from their canonical encodings (deposits included)."""
    return tuple(AITransactionBuilder.decode(raw) for raw in raws)


def transactions_root(transactions: Sequence[SignedTransactionAPI]) -> bytes:
    """The transactions trie root a header holds for these transactions."""
    root, _ = make_trie_root_and_nodes(tuple(transactions))
    return bytes(root)


def trace_block(view: ChainView, parent: BlockHeaderAPI, header: BlockHeaderAPI,
                transactions: Sequence[SignedTransactionAPI], parent_record_count: int,
                tamper: Tamper | None = None, stop_after: int | None = None,
                output_records: Sequence[InferenceRecord] | None = None,
                parent_record_fault: bool = False, persist_each: bool = False) -> BlockTrace:
    """Execute ``transactions`` on ``parent``'s state in the context of ``header``'s inputs.

    ``header`` gives the block's inputs only (its result fields are ignored); the returned trace's
    header is ``header``'s template sealed with the last state. ``stop_after``: execute only the
    first ``stop_after`` transactions (the trace is then a prefix; its header is not a block's).
    ``output_records``: the disputed output's records (indexed from its first block); a transaction
    whose records are not the next ones of that list (all six fields) sets ``record_fault``.
    None: the block's own records define the output (no fault). ``persist_each``: write the state to
    the overlay after every transaction (so that proofs against each intermediate root can be read).
    """
    ctx_header = template(header)
    exec_header = ctx_header.copy(state_root=parent.state_root, transaction_root=BLANK_ROOT_HASH,
                                  receipt_root=BLANK_ROOT_HASH)
    vm_class = view.chain_class.get_vm_class_for_block_number(BlockNumber(header.block_number))
    vm = vm_class(header=exec_header, chaindb=view.chaindb, chain_context=ChainContext(view.chain_id),
                  consensus_context=view.chain_class.consensus_context_class(view.overlay))
    states = [start_state(parent, parent_record_count, header, parent_record_fault)]
    fault = parent_record_fault
    ctx = states[0].context_hash
    current = exec_header
    receipts_trie = HexaryTrie({}, BLANK_ROOT_HASH)  # grown one receipt at a time (make_trie_root_and_nodes' keys)
    receipts: list[ReceiptAPI] = []
    records: list[InferenceRecord] = []
    count = parent_record_count
    limit = len(transactions) if stop_after is None else min(stop_after, len(transactions))
    for i, tx in enumerate(transactions[:limit]):
        try:
            receipt, computation = vm.apply_transaction(current, tx)
        except EvmFraudError:
            raise
        except Exception as e:  # py-evm ValidationError: nonce, balance, gas limit, signature...
            invalid = InvalidBlockTransaction(f"transaction {i} of block {header.block_number}: {e}")
            invalid.index = i
            raise invalid from None
        current = vm.increment_blob_gas_used(vm.add_receipt_to_header(current, receipt), tx)
        if tamper is not None:
            tamper(i, vm.state)
        found = computation_records(computation, bytes(tx.hash))
        if output_records is not None:
            expected = output_records[count:count + len(found)]
            fault = fault or [r.encode() for r in found] != [r.encode() for r in expected]
        records += found
        count += len(found)
        receipts_trie[rlp.encode(i, sedes=rlp.sedes.big_endian_int)] = receipt.encode()
        receipts_root = receipts_trie.root_hash
        receipts.append(receipt)
        if persist_each:
            vm.state.persist()
        states.append(TxState(ctx, i + 1, bytes(vm.state.make_state_root()), int(current.gas_used),
                              int(current.blob_gas_used), bytes(receipts_root), int(current.bloom), count, fault))
    vm.state.persist()  # into the overlay: a later block may start from this state
    return BlockTrace(parent, seal(header, states[-1]), tuple(transactions[:limit]), tuple(states), tuple(records),
                      tuple(receipts))


def honest_chain(view: ChainView, first: int, last: int,
                 output_records: Sequence[InferenceRecord] | None = None) -> list[BlockTrace]:
    """Blocks ``first .. last`` of the node's canonical chain re-executed, records counted from ``first``;
    with ``output_records`` (a disputed output's), each call's record checked against that list.

    Raises :class:`ReexecutionMismatch` if a sealed header differs from the stored one."""
    out: list[BlockTrace] = []
    count = 0
    fault = False
    for n in range(first, last + 1):
        stored = view.header(n)
        trace = trace_block(view, view.header(n - 1), stored, view.transactions(n), count,
                            output_records=output_records, parent_record_fault=fault)
        fault = trace.record_fault
        if trace.header_rlp != encode_header(stored):
            raise ReexecutionMismatch(f"block {n}: re-execution gives header {keccak(trace.header_rlp).hex()}, "
                                      f"the node stored {bytes(stored.hash).hex()}")
        out.append(trace)
        count = trace.record_count
    return out


def tampered_chain(view: ChainView, first: int, last: int, block: int, tamper: Tamper | None = None,
                   inputs: Callable[[BlockHeaderAPI], BlockHeaderAPI] | None = None,
                   sealed: Callable[[BlockHeaderAPI], BlockHeaderAPI] | None = None) -> list[BlockTrace]:
    """A dishonest proposer's blocks ``first .. last``: the node's blocks, except block ``block``, where
    ``tamper`` changes the state after a transaction, ``inputs`` changes the header the block executes
    in, and ``sealed`` changes the header after execution (a lie about a result field only); every
    later block is re-executed on the result, its parent hash pointing at the changed block."""
    out: list[BlockTrace] = []
    count = 0
    for n in range(first, last + 1):
        stored = view.header(n)
        parent = view.header(n - 1) if not out else out[-1].header
        header = stored.copy(parent_hash=keccak(encode_header(parent)))
        if n == block and inputs is not None:
            header = inputs(header)
        trace = trace_block(view, parent, header, view.transactions(n), count, tamper if n == block else None)
        if n == block and sealed is not None:
            trace = replace(trace, header=sealed(trace.header))
        out.append(trace)
        count = trace.record_count
    return out


__all__ = [
    "BlockTrace", "ChainView", "InvalidBlockTransaction", "ReexecutionMismatch", "Tamper", "decode_transactions",
    "honest_chain", "tampered_chain", "trace_block", "transactions_root",
]
