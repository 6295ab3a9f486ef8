"""Read-only snapshots of the committed chain, for reads that must never wait for the chain lock.

The sequencer serializes every use of its py-evm chain object with one lock, and a block being
built lives in the database's in-memory overlay until its commit. A :class:`HeadSnapshot` does not
touch either: it is one LMDB read transaction (a consistent view of the last committed block,
whatever the miner is doing meanwhile) under a private write overlay (:class:`SnapshotDB`), with its
own py-evm chain object. ``eth_call`` and ``eth_estimateGas`` run on one, so sends and other reads
never wait behind a slow call, and whatever py-evm writes during a call (trie nodes...) stays in
the overlay and disappears with the snapshot. :func:`committed_head_number` reads the head's number
the same way (``eth_blockNumber``, ``/health``).

A committed block is visible to every snapshot opened after its commit, so a client that saw its
transaction's hash returned by an automining send sees that block in its next call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import lmdb
from eth.abc import AtomicWriteBatchAPI, BlockHeaderAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB
from eth.db.chain import ChainDB

from .db import LMDBAtomicDB
from .vm import canonical_header_by_hash, canonical_header_by_number

_DELETED = None


class SnapshotDB(BaseAtomicDB):
    """An ``AtomicDatabaseAPI`` reading one LMDB read transaction, writing to a private overlay."""

    def __init__(self, txn: lmdb.Transaction) -> None:
        self._txn = txn
        self._overlay: dict[bytes, bytes | None] = {}

    def __getitem__(self, key: bytes) -> bytes:
        if key in self._overlay:
            value = self._overlay[key]
        else:
            raw = self._txn.get(key)
            value = None if raw is None else bytes(raw)
        if value is None:
            raise KeyError(key)
        return value

    def _exists(self, key: bytes) -> bool:
        if key in self._overlay:
            return self._overlay[key] is not None
        return self._txn.get(key) is not None

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._overlay[bytes(key)] = bytes(value)

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        self._overlay[bytes(key)] = _DELETED

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        """py-evm's atomic batch, into the overlay (never into the chain database)."""
        with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch


class HeadSnapshot:
    """A py-evm chain over a :class:`SnapshotDB` of the last commit; use as a context manager."""

    def __init__(self, db: LMDBAtomicDB, chain_class: type[MiningChain]) -> None:
        self._txn = db.begin_read()
        try:
            self.db = SnapshotDB(self._txn)
            self.chain = chain_class(self.db)
            self._head = self.chain.get_canonical_head()
        except BaseException:
            self._txn.abort()
            raise

    def head(self) -> BlockHeaderAPI:
        """The committed head header as of the snapshot."""
        return self._head

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        """The canonical header at ``number`` or None."""
        return canonical_header_by_number(self.chain, number)

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        """The header with this hash if it is canonical, else None."""
        return canonical_header_by_hash(self.chain, block_hash)

    def vm(self, header: BlockHeaderAPI) -> Any:
        """The VM that runs on top of ``header`` (its state is the block's post-state)."""
        return self.chain.get_vm(header)

    def close(self) -> None:
        """End the read transaction (drops the overlay with it)."""
        self._txn.abort()

    def __enter__(self) -> HeadSnapshot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:  # fmt: skip
        self.close()


def committed_head_number(db: LMDBAtomicDB) -> int:
    """Number of the last committed block, read without the chain lock."""
    txn = db.begin_read()
    try:
        return int(ChainDB(SnapshotDB(txn)).get_canonical_head().block_number)
    finally:
        txn.abort()
