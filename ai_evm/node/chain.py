"""The sequencer: a persistent AI EVM chain that admits transactions and mines them in batches.

One :class:`Sequencer` owns the chain database (:class:`~ai_evm.node.db.LMDBAtomicDB`), the
py-evm chain object and the transaction pool. Every access goes through :attr:`Sequencer.lock`
(py-evm objects are not thread-safe). A block is built with ``chain.mine_all`` over the longest
prefix of pending transactions that fits the block gas limit; the block, py-evm's indexes, the
node's block record (:mod:`ai_evm.node.index`) and the new head are then committed in one database
transaction. A batch that ``mine_all`` refuses is split in one linear pass (``_select_runnable``):
the transactions that cannot run are dropped, the others mined. A new datadir starts from a
genesis that prefunds the dev accounts and holds the L2 predeploys
(:mod:`ai_evm.rollup.predeploys`); an existing one continues from its head (its chain id must match).

In a rollup every block opens with the deposit transactions (type 0x7E) its L1 origin brings
(:attr:`Sequencer.deposits_for`, the same function on the sequencer and on a deriving node,
docs/bridge.md "Deposits"); a deposit is never taken from the pool, a raw send or a batch.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from eth.abc import BlockHeaderAPI, SignedTransactionAPI, StateAPI
from eth.chains.base import MiningChain
from eth.exceptions import TransactionNotFound
from eth_typing import BlockNumber, Hash32

from ai_evm.evm import ModelFetchRequired, ModelResolver
from ai_evm.evm.deposit import as_deposit, is_deposit_raw

from .accounts import DEV_BALANCE, DevAccount, dev_accounts
from .db import LMDBAtomicDB
from .errors import InvalidParams, NodeError, ServerError, TransactionRejected
from .history import forget_blocks_after
from .index import META_KEY, block_key, block_record, decode_record, encode_record
from .journal import JournalError, PoolJournal
from .models import ModelWaits
from .origin import DEPOSIT_REFUSED, MAX_ORIGIN_LAG, L1Origin, NoL1Origin, deposit_nonces, origin_of
from .pool import PoolLimits, TxPool
from .vm import block_inferences, canonical_header_by_hash, canonical_header_by_number, chain_class

log = logging.getLogger(__name__)

DEFAULT_CHAIN_ID = 31337
DEFAULT_GAS_LIMIT = 30_000_000
GENESIS_BASE_FEE = 1_000_000_000
GENESIS_TIMESTAMP = 1_700_000_000
RECORD_CACHE = 64
#: Exceptions that abort a block build without dropping any transaction: they propagate out of
#: :meth:`Sequencer.mine_pending` untouched (nothing is committed) so that the caller can retry
#: later. ``ModelFetchRequired``: a model must be fetched first (its sender's transactions are
#: parked meanwhile, see :meth:`Sequencer._mine_all_pending` and docs/node.md "Models").
#: ``NoL1Origin``: the node's view of L1 lags behind the L2 time (the pool waits for L1).


RETRY_LATER: tuple[type[Exception], ...] = (ModelFetchRequired, NoL1Origin)
class BatchRejected(NodeError):
    """A derived batch cannot be built into the next block (a transaction in it is invalid)."""


@dataclass(frozen=True)
class NodeConfig:
    """Everything that defines a node's chain and how it mines."""

    datadir: Path
    chain_id: int = DEFAULT_CHAIN_ID
    gas_limit: int = DEFAULT_GAS_LIMIT
    #: Interval mining: sends return before mining, so the pool is journaled (:mod:`.journal`).
    block_time: float | None = None
    accounts: tuple[DevAccount, ...] = field(default_factory=dev_accounts)
    sync: bool = True


@dataclass(frozen=True)
class MinedBlock:
    """What one call to the miner produced."""

    number: int
    tx_hashes: tuple[bytes, ...]


class ChainMismatch(ServerError):
    """The datadir holds a chain with another chain id."""


class RollupHeads(Protocol):
    """What L1 says about this node's chain (``ai_evm.rollup.heads.L1Heads``): the block tags
    ``safe`` and ``finalized``, and the last output before a block."""

    def safe(self) -> int:
        """Number of the last L2 block that L1 data produces."""

    def finalized(self) -> int:
        """Number of the L2 block of the latest finalized output."""

    def previous_output(self, number: int) -> int:
        """The L2 block of the latest live output before block ``number`` (0 if none)."""


class Sequencer:
    """The chain, its pool and its miner (see the module docstring)."""

    def __init__(self, config: NodeConfig, resolver: ModelResolver) -> None:
        self.config = config
        self.resolver = resolver
        #: The L1 origin of the next block from its parent and timestamp (a sequencer following
        #: L1); None: blocks name no origin (a plain devnet).
        self.origin_for: Callable[[BlockHeaderAPI, int], L1Origin] | None = None
        #: The earliest timestamp the next block may have (a rollup block is never before its origin).
        self.min_timestamp: Callable[[BlockHeaderAPI], int] | None = None
        #: The latest timestamp a block after ``parent`` chosen at ``timestamp`` may have and stay
        #: valid for every deriver (its origin's timestamp + ``max_sequencer_drift``); None: no cap.
        self.max_timestamp: Callable[[BlockHeaderAPI, int], int] | None = None
        #: The deposit transactions a block on ``origin`` whose parent is ``parent`` starts with (those
        #: of every L1 block in (parent's origin, origin], ``ai_evm.rollup.deposits``); None: none.
        self.deposits_for: Callable[[BlockHeaderAPI, L1Origin], list[SignedTransactionAPI]] | None = None
        #: Whether the L1 blocks read after the head's origin hold deposits not on L2 yet (automine
        #: then mines blocks for them without waiting for a send); None: never.
        self.deposits_pending: Callable[[BlockHeaderAPI], bool] | None = None
        #: How many L1 blocks the newest one read is past the origin of a block (a sequencer following L1).
        self.origin_lag: Callable[[BlockHeaderAPI], int] | None = None
        #: A validator: no pool, no mining; blocks only from derived batches.
        self.derives_from_l1 = False
        #: The rollup's view of this chain from L1; None: ``safe`` and ``finalized`` are the head.
        self.heads: RollupHeads | None = None
        #: Told the block number :meth:`rewind` went back to (the RPC's filters and WebSocket feed).
        self.rewind_listeners: list[Callable[[int], None]] = []
        self.lock = threading.RLock()
        self.db = LMDBAtomicDB(Path(config.datadir) / "chain", sync=config.sync)
        self.pool = TxPool()
        #: Senders whose transactions wait for a model being fetched (never under this lock).
        self.model_waits = ModelWaits(resolver.fetcher, self._models_arrived)
        self._records: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._state: StateAPI | None = None
        cls = chain_class(resolver, config.chain_id)
        meta_raw = self.db.get(META_KEY)
        if meta_raw is None:
            self.chain = self._genesis(cls)
        else:
            meta = json.loads(meta_raw)
            if meta.get("chainId") != config.chain_id:
                self.db.close()
                raise ChainMismatch(
                    f"{config.datadir} holds chain id {meta.get('chainId')}, not {config.chain_id}; "
                    "use another --datadir or the same --chain-id"
                )
            self.chain = cls(self.db)
        self.builder = self.chain.get_vm().get_transaction_builder()
        #: With interval mining, every admitted transaction is on disk before its send returns.
        self.journal: PoolJournal | None = None
        journal = PoolJournal(Path(config.datadir), sync=config.sync)
        if config.block_time or journal.path.exists():
            self.journal = journal
            self._replay_journal()
            if not config.block_time:
                self._drain_journal()

    # -- genesis ----------------------------------------------------------------------------------
    def _genesis(self, cls: type[MiningChain]) -> MiningChain:
        params = {
            "difficulty": 0, "gas_limit": self.config.gas_limit, "timestamp": GENESIS_TIMESTAMP,
            "base_fee_per_gas": GENESIS_BASE_FEE, "coinbase": b"\0" * 20,
        }  # fmt: skip
        from ai_evm.rollup.predeploys import genesis_accounts  # the rollup layer imports this module

        state = {
            a.address_bytes: {"balance": DEV_BALANCE, "nonce": 0, "code": b"", "storage": {}}
            for a in self.config.accounts
        }
        state.update(genesis_accounts())  # the L2 predeploys (L2ToL1MessagePasser)
        chain = cast(MiningChain, cls.from_genesis(self.db, params, state))  # type: ignore[arg-type]
        genesis = chain.get_canonical_block_by_number(BlockNumber(0))
        self.db[block_key(0)] = encode_record(block_record(genesis, (), [], b"\0" * 32))
        self.db[META_KEY] = json.dumps({"chainId": self.config.chain_id, "version": 1}).encode()
        self.db.commit()
        return chain

    # -- head and state ---------------------------------------------------------------------------
    def head(self) -> BlockHeaderAPI:
        """The canonical head header."""
        return self.chain.get_canonical_head()

    def limits(self) -> PoolLimits:
        """Chain id, gas limit and base fee of the next block."""
        pending = self.chain.header
        return PoolLimits(self.config.chain_id, pending.gas_limit, int(pending.base_fee_per_gas or 0))

    def head_state(self) -> StateAPI:
        """A state object on the head (reused until the next block)."""
        if self._state is None:
            self._state = self.chain.get_vm().state
        return self._state

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        """The canonical header at ``number`` or None."""
        return canonical_header_by_number(self.chain, number)

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        """The header with this hash if it is canonical, else None."""
        return canonical_header_by_hash(self.chain, block_hash)

    def record(self, number: int) -> dict[str, Any] | None:
        """The node's stored record of canonical block ``number`` (cached)."""
        rec = self._records.get(number)
        if rec is not None:
            self._records.move_to_end(number)
            return rec
        raw = self.db.get(block_key(number))
        if raw is None:
            return None
        rec = decode_record(raw)
        self._records[number] = rec
        while len(self._records) > RECORD_CACHE:
            self._records.popitem(last=False)
        return rec

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(block number, index) of a mined transaction, or None."""
        try:
            number, index = self.chain.chaindb.get_transaction_index(Hash32(tx_hash))
        except (TransactionNotFound, KeyError):
            return None
        return int(number), int(index)

    # -- admission --------------------------------------------------------------------------------
    def decode_raw(self, raw: bytes) -> SignedTransactionAPI:
        """Decode raw transaction bytes (legacy RLP or EIP-2718 typed) for the chain's fork."""
        if not raw:
            raise InvalidParams("invalid raw transaction: empty")
        if raw[0] == 3:
            raise TransactionRejected("transaction type 3 not supported (blob transactions)")
        if is_deposit_raw(raw):
            raise TransactionRejected(DEPOSIT_REFUSED)
        try:
            return self.builder.decode(raw)
        except Exception as e:  # rlp.DecodingError, ValidationError, ValueError...
            raise InvalidParams(f"invalid raw transaction: {type(e).__name__}: {e}") from None

    def submit(self, txs: Sequence[SignedTransactionAPI]) -> list[TransactionRejected | None]:
        """Check and add transactions to the pool; per transaction None (accepted) or its error."""
        out: list[TransactionRejected | None] = []
        if self.derives_from_l1:
            return [TransactionRejected("this node derives its chain from L1: send transactions to the sequencer")
                    for _ in txs]
        with self.lock:
            state, limits = self.head_state(), self.limits()
            admitted: list[SignedTransactionAPI] = []
            for tx in txs:
                try:
                    self.pool.check(tx, state, limits, lambda h: self.tx_location(h) is not None)
                except TransactionRejected as e:
                    out.append(e)
                    continue
                self.pool.add(tx)
                admitted.append(tx)
                out.append(None)
            if self.journal is not None and admitted:
                try:
                    self.journal.append([bytes(tx.encode()) for tx in admitted])
                except JournalError as e:  # not durable: not admitted
                    log.error("%s", e)
                    self.pool.remove(admitted)
                    refused = TransactionRejected(f"transaction not admitted: {e}")
                    out = [refused if r is None else r for r in out]
        return out

    def _replay_journal(self) -> None:
        """Re-admit the journaled transactions (start-up); drop those mined or invalid meanwhile."""
        assert self.journal is not None
        raws = self.journal.load()
        kept: list[bytes] = []
        state, limits = self.head_state(), self.limits()
        for raw in raws:
            try:
                tx = self.decode_raw(raw)
                self.pool.check(tx, state, limits, lambda h: self.tx_location(h) is not None)
            except NodeError as e:
                log.info("pool journal: dropping a transaction: %s", e.message)
                continue
            self.pool.add(tx)
            kept.append(raw)
        self.journal.rewrite(kept)
        if raws:
            log.warning("pool journal: %d of %d journaled transactions are pending again", len(kept), len(raws))

    def _drain_journal(self) -> None:
        """Automine start on a datadir last run with ``--block-time``: mine what its journal held,
        then remove the journal (kept, and used, if that fails: nothing acknowledged is lost)."""
        assert self.journal is not None
        try:
            self.mine_pending()
        except Exception:
            log.exception("pool journal: mining the replayed transactions failed; keeping the journal")
            return
        if not self.pool.pending:
            self.journal.remove()
            self.journal = None

    def _compact_journal(self) -> None:
        """Rewrite the journal with exactly the pending transactions (after blocks and drops)."""
        if self.journal is None:
            return
        try:
            self.journal.rewrite([bytes(tx.encode()) for tx in self.pool.pending.values()])
        except JournalError:  # the old journal is a superset: a replay drops what was mined
            log.exception("pool journal not compacted")

    # -- mining -----------------------------------------------------------------------------------
    def mine_pending(self, allow_empty: bool = False) -> list[MinedBlock]:
        """Mine every pending transaction (one block per gas-limit-sized batch)."""
        mined: list[MinedBlock] = []
        if self.derives_from_l1:
            return mined  # blocks come only from L1 batches (build_from_batch)
        with self.lock:
            before = len(self.pool)
            try:
                self._mine_all_pending(mined, allow_empty)
            finally:
                if len(self.pool) != before or any(block.tx_hashes for block in mined):
                    self._compact_journal()
        return mined

    def _mine_all_pending(self, mined: list[MinedBlock], allow_empty: bool) -> None:
        """The loop of :meth:`mine_pending` (blocks are appended to ``mined`` as they are committed)."""
        parked = self.model_waits.is_parked  # senders waiting for a model fetch are skipped
        if allow_empty and all(parked(tx) for tx in self.pool.pending.values()):
            try:
                mined.append(self._mine([], self._next_timestamp(self.head())))
            except NoL1Origin as e:
                log.warning("not mining: %s", e)
                return
        while any(not parked(tx) for tx in self.pool.pending.values()):
            reserve = self._next_deposit_gas()  # the deposits opening the block come out of its gas limit
            batch = self.pool.take(self.chain.header.gas_limit - reserve, skip=parked)
            if not batch and reserve:  # the deposits fill the block: mine them alone, the pool goes next
                try:
                    mined.append(self._mine([], self._next_timestamp(self.head())))
                except NoL1Origin as e:
                    log.warning("not mining: %s", e)
                    return
                continue
            if not batch:  # admission bounds gas by the block gas limit; never spin on a stale pool
                first = next(tx for tx in self.pool.pending.values() if not parked(tx))
                self.pool.drop([(first, "transaction dropped: exceeds block gas limit")])
                continue
            try:
                block = self._mine_batch(batch)
            except ModelFetchRequired as e:  # nothing committed: park the sender, mine the others
                if not self.model_waits.park(e):
                    raise
                continue
            except NoL1Origin as e:  # nothing committed: the pool waits for L1 (see l1_advanced)
                log.warning("not mining: %s", e)
                return
            if block is not None:
                mined.append(block)

    def l1_advanced(self) -> None:
        """A new L1 block was read: under automine, mine what waited for an L1 origin, then blocks
        until the deposits read from L1 are on L2 (each block's origin advances by at most one L1
        block; it stops when the origin cannot advance yet), and, once the head's origin is more than
        :data:`MAX_ORIGIN_LAG` L1 blocks behind the newest one read, empty blocks until it is at most
        one behind: an idle automine sequencer would otherwise keep an old origin, and its next block's
        batch would fall outside the origin's sequencing window or drift, which every deriving node
        drops. (Idle, that is a burst of empty blocks every ``MAX_ORIGIN_LAG`` L1 blocks.) With
        ``--block-time`` the interval miner's blocks (empty ones included) do all this."""
        if self.config.block_time is not None or self.derives_from_l1:
            return
        if len(self.pool):
            self.mine_pending()

        catch_up = self.origin_lag is not None and self.origin_lag(self.head()) > MAX_ORIGIN_LAG

        def behind() -> bool:
            head = self.head()
            return (self.deposits_pending is not None and self.deposits_pending(head)) or (
                catch_up and self.origin_lag is not None and self.origin_lag(head) > 1)

        while behind():
            before = origin_of(self.head())
            if not self.mine_pending(allow_empty=True) or origin_of(self.head()) == before:
                return

    def _models_arrived(self) -> None:
        """Parked senders may run again (their model is local, or no store has it): mine them now
        under automine; with ``--block-time`` the next interval does. Called from a fetch thread."""
        if self.config.block_time is None:
            self.mine_pending()

    def _mine_batch(self, batch: list[SignedTransactionAPI]) -> MinedBlock | None:
        """Mine ``batch`` into one block, dropping the transactions that cannot run; linear in the batch.

        Admission already refuses every transaction Prague forbids, so the usual case is one
        ``mine_all``. If it raises anyway (an EIP-7702 authorization or a contract call changed a
        pending sender's nonce, code or balance after admission; a pool replayed from the journal),
        :meth:`_select_runnable` applies the batch once, one transaction after the other on one
        scratch state, and drops each one that fails validation; a second ``mine_all`` then builds
        the block from the others. At most three passes over the batch, whatever fails.
        """
        timestamp = self._next_timestamp(self.head())
        origin = self.origin_for(self.head(), timestamp) if self.origin_for is not None else None
        try:
            return self._mine(batch, timestamp, origin)
        except RETRY_LATER:
            raise
        except Exception as e:
            log.warning("mining %d transactions failed (%s); dropping the ones that cannot run", len(batch), e)
        good, failed = self._select_runnable(batch, timestamp, origin)
        if failed:
            self.pool.drop([(tx, f"transaction dropped: {reason}") for tx, reason in failed])
        if not good:
            return None
        try:
            return self._mine(good, timestamp, origin)
        except RETRY_LATER:
            raise
        except Exception as e:  # never leave unminable transactions in the pool
            log.exception("mining the remaining %d transactions failed", len(good))
            self.pool.drop([(tx, f"transaction dropped: block build failed: {e}") for tx in good])
            return None

    def _stamp_pending_header(self, timestamp: int, origin: L1Origin | None = None) -> None:
        """Give the pending header the block's timestamp (and L1 origin) *before* anything executes.

        ``mine_all`` executes on ``chain.header`` and only stamps ``timestamp`` into the header
        afterwards; left alone, ``TIMESTAMP`` would read the time the pending header was made (the
        previous block's) and a validator re-executing the block would compute another state. The
        same holds for the origin, which PREVRANDAO and the model registry check read.
        """
        fields = origin.header_fields() if origin is not None else {}
        self.chain.header = self.chain.header.copy(timestamp=timestamp, **fields)

    def _select_runnable(
        self, batch: list[SignedTransactionAPI], timestamp: int, origin: L1Origin | None = None
    ) -> tuple[list[SignedTransactionAPI], list[tuple[SignedTransactionAPI, str]]]:
        """Split ``batch`` into the transactions the next block can hold and the others.

        The same steps as ``mine_all`` (the VM of the pending header; per transaction py-evm's
        ``VM.apply_transaction`` and ``apply_all_transactions`` steps: header gas check, apply,
        receipt, receipt into the header) on
        one scratch state, except that a transaction that raises is reverted to its snapshot and
        set aside instead of failing the whole batch. Nothing is committed.
        """
        head = self.head()
        good: list[SignedTransactionAPI] = []
        failed: list[tuple[SignedTransactionAPI, str]] = []
        try:
            self._stamp_pending_header(timestamp, origin)
            header = self.chain.header
            vm = self.chain.get_vm(header)
            for tx in self._deposits(head, origin):  # never dropped: a block cannot be built without them
                receipt, _ = vm.apply_transaction(header, tx)
                header = vm.add_receipt_to_header(header, receipt)
            for tx in batch:
                # VM.apply_transaction, with a snapshot taken after its lock_changes() so that a
                # transaction that raises can be reverted alone
                try:
                    vm.validate_transaction_against_header(header, tx)
                    vm.state.lock_changes()
                    snapshot = vm.state.snapshot()
                except Exception as e:
                    failed.append((tx, str(e) or type(e).__name__))
                    continue
                try:
                    computation = vm.state.apply_transaction(tx)
                    receipt = vm.make_receipt(header, tx, computation, vm.state)
                    vm.validate_receipt(receipt)
                except RETRY_LATER:
                    raise
                except Exception as e:  # ValidationError, or anything a broken transaction raises
                    vm.state.revert(snapshot)
                    failed.append((tx, str(e) or type(e).__name__))
                    continue
                header = vm.increment_blob_gas_used(vm.add_receipt_to_header(header, receipt), tx)
                good.append(tx)
        finally:
            self.db.discard()
            self._reset_to(head)
        return good, failed

    def rewind(self, number: int) -> list[SignedTransactionAPI]:
        """Make canonical block ``number`` the head again, forgetting every later block in one database
        commit (``evm_revert``; an L1 reorg that removed the later blocks' L1 origins). Returns the
        forgotten blocks' transactions other than deposits, in order (a rollup sequencer sends them again);
        then tells :attr:`rewind_listeners`."""
        with self.lock:
            try:
                dropped = forget_blocks_after(self, number)
            finally:
                self._reset_to(self.head())  # pending header and cached head state from the (new) head
        for listener in self.rewind_listeners:
            listener(number)
        return dropped

    def _reset_to(self, head: BlockHeaderAPI) -> None:
        self.chain.header = self.chain.create_header_from_parent(head)
        self._state = None

    def _next_timestamp(self, head: BlockHeaderAPI) -> int:
        """Wall-clock time, after the head, never before the L1 origin the block will stay on
        (``min_timestamp``: a sequencer following L1 whose clock is behind L1's), and never past what
        the block's origin allows (``max_timestamp``: after an outage the wall clock is further than
        ``max_sequencer_drift`` past the old origins the chain must walk through one by one, and
        such a batch would be dropped by every deriver)."""
        floor = max(head.timestamp + 1, self.min_timestamp(head) if self.min_timestamp is not None else 0)
        t = max(int(time.time()), floor)
        if self.max_timestamp is not None:
            t = max(min(t, self.max_timestamp(head, t)), floor)
        return t

    def _next_deposit_gas(self) -> int:
        """Gas limit of the deposits a block mined now would open with (0 if its origin is not known yet)."""
        if self.deposits_for is None or self.origin_for is None:
            return 0
        head = self.head()
        try:
            return sum(int(tx.gas) for tx in self.deposits_for(head, self.origin_for(head, self._next_timestamp(head))))
        except RETRY_LATER:
            return 0

    def _deposits(self, head: BlockHeaderAPI, origin: L1Origin | None) -> list[SignedTransactionAPI]:
        """The deposits that open the block after ``head`` on ``origin`` (docs/bridge.md "Deposits")."""
        if origin is None or self.deposits_for is None:
            return []
        return self.deposits_for(head, origin)

    def _mine(self, batch: list[SignedTransactionAPI], timestamp: int, origin: L1Origin | None = None) -> MinedBlock:
        head = self.head()
        if origin is None and self.origin_for is not None:
            origin = self.origin_for(head, timestamp)
        if any(as_deposit(tx) is not None for tx in batch):
            raise TransactionRejected(DEPOSIT_REFUSED)
        deposits = self._deposits(head, origin)
        txs = deposits + list(batch)
        nonces = deposit_nonces(self.head_state(), deposits)
        try:
            self._stamp_pending_header(timestamp, origin)
            fields = origin.header_fields() if origin is not None else {}
            result, receipts, computations = self.chain.mine_all(txs, timestamp=timestamp, **fields)
            block = result.imported_block
            inferences, root = block_inferences(computations, txs)
            record = block_record(block, receipts, inferences, root, nonces)
            self.db[block_key(block.number)] = encode_record(record)
            self.db.commit()
        except BaseException:
            self.db.discard()
            self._reset_to(head)
            raise
        self._state = None
        self._records[block.number] = record
        self.pool.remove(batch)
        log.info("block %d: %d txs (%d deposits), %d gas", block.number, len(txs), len(txs) - len(batch),
                 block.header.gas_used)
        return MinedBlock(block.number, tuple(bytes(tx.hash) for tx in txs))

    # -- derivation -------------------------------------------------------------------------------
    def build_from_batch(self, raw_txs: Sequence[bytes], timestamp: int, origin: L1Origin) -> bytes:
        """Build the next block from exactly ``raw_txs`` at ``timestamp`` on ``origin`` (a derived
        batch, docs/rollup.md "Derivation"); returns its hash. Every transaction must decode and
        run, else :class:`BatchRejected` and nothing is committed (the deriver drops the batch)."""
        with self.lock:
            head = self.head()
            if timestamp <= head.timestamp:
                raise BatchRejected(f"timestamp {timestamp} is not after the head's {head.timestamp}")
            if any(is_deposit_raw(raw) for raw in raw_txs):
                raise BatchRejected("the batch carries a deposit transaction (type 0x7e): deposits come only from L1")
            try:
                txs = [self.decode_raw(raw) for raw in raw_txs]
            except NodeError as e:
                raise BatchRejected(f"undecodable transaction: {e}") from None
            try:
                mined = self._mine(txs, timestamp, origin)
            except RETRY_LATER:
                raise
            except Exception as e:  # an invalid transaction: the batch is not the sequencer's
                raise BatchRejected(f"the batch does not build: {e}") from None
            return bytes(self.chain.get_canonical_block_header_by_number(BlockNumber(mined.number)).hash)

    def close(self) -> None:
        """Close the database (nothing pending is lost: every block is committed when mined)."""
        with self.lock:
            self.db.close()
