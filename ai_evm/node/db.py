"""LMDB-backed key/value store for py-evm, with one durable write transaction per block.

py-evm writes chain data (trie nodes, headers, block bodies, receipts, the canonical head pointer)
through an :class:`eth.abc.AtomicDatabaseAPI`. :class:`LMDBAtomicDB` implements that contract, but
every write - direct or through ``atomic_batch()`` - first lands in an in-memory overlay that reads
see. :meth:`LMDBAtomicDB.commit` moves the whole overlay to disk in **one** LMDB write transaction
(fsync'ed by default), so the sequencer commits a block, its indexes and the new head pointer all at
once: a process killed at any moment leaves either the previous head or the new one on disk, never a
mix. :meth:`LMDBAtomicDB.discard` drops the overlay (used when building a block fails). One
process at a time: an exclusive ``flock`` on ``aievm.lock`` refuses a second node on the same
datadir (the kernel releases it when the holder dies, kill -9 included).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import lmdb
from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB

#: Virtual size reserved for the memory map; the file only grows as data is written.
DEFAULT_MAP_SIZE = 1 << 38
LOCK_NAME = "aievm.lock"
_DELETED = None


class DatabaseError(Exception):
    """The chain database cannot be opened or written (wrong path, locked, disk full...)."""


def _lock_exclusively(path: Path) -> IO[str]:
    """Hold an exclusive ``flock`` on ``path/aievm.lock`` (released on close or process death)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle = open(path / LOCK_NAME, "a+")
    except OSError as e:
        raise DatabaseError(f"cannot open the chain database at {path}: {e}") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise DatabaseError(
            f"the chain database at {path} is in use by another node (pid {owner}); stop it or use another --datadir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class LMDBAtomicDB(BaseAtomicDB):
    """An ``AtomicDatabaseAPI`` over one LMDB environment, committed explicitly per block."""

    def __init__(self, path: str | Path, map_size: int = DEFAULT_MAP_SIZE, sync: bool = True) -> None:
        self.path = Path(path)
        self._lock_file = _lock_exclusively(self.path)
        try:
            self._env = lmdb.open(
                str(self.path), map_size=map_size, sync=sync, metasync=sync, max_dbs=0,
                readahead=False, max_readers=256,
            )  # fmt: skip
        except (OSError, lmdb.Error) as e:
            self._lock_file.close()
            raise DatabaseError(f"cannot open the chain database at {self.path}: {e}") from None
        self._pending: dict[bytes, bytes | None] = {}
        self._read: lmdb.Transaction | None = None

    # -- reads ------------------------------------------------------------------------------------
    def _reader(self) -> lmdb.Transaction:
        if self._read is None:
            self._read = self._env.begin(buffers=False)
        return self._read

    def begin_read(self) -> lmdb.Transaction:
        """A new read-only LMDB transaction over the last commit (never the overlay).

        It may be used from any thread without the sequencer's lock (py-lmdb opens environments
        with ``MDB_NOTLS``); the caller must ``abort()`` it. Used by read-only snapshots of the head
        (:mod:`ai_evm.node.snapshot`)."""
        try:
            return self._env.begin(buffers=False)
        except lmdb.Error as e:
            raise DatabaseError(f"cannot read the chain database at {self.path}: {e}") from None

    def _get_committed(self, key: bytes) -> bytes | None:
        value = self._reader().get(key)
        return None if value is None else bytes(value)

    def __getitem__(self, key: bytes) -> bytes:
        if key in self._pending:
            value = self._pending[key]
        else:
            value = self._get_committed(key)
        if value is None:
            raise KeyError(key)
        return value

    def _exists(self, key: bytes) -> bool:
        if key in self._pending:
            return self._pending[key] is not None
        return self._get_committed(key) is not None

    # -- writes (to the overlay) ------------------------------------------------------------------
    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pending[bytes(key)] = bytes(value)

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        self._pending[bytes(key)] = _DELETED

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        """py-evm's atomic batch: all or nothing into the overlay (and so into the next commit)."""
        with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch

    # -- durability -------------------------------------------------------------------------------
    @property
    def pending_count(self) -> int:
        """Number of keys written or deleted since the last commit."""
        return len(self._pending)

    def commit(self) -> int:
        """Write every pending change in one LMDB transaction; returns how many keys it touched."""
        if not self._pending:
            return 0
        items = self._pending
        try:
            with self._env.begin(write=True) as txn:
                for key, value in items.items():
                    if value is None:
                        txn.delete(key)
                    else:
                        txn.put(key, value)
        except lmdb.Error as e:
            raise DatabaseError(f"cannot write the chain database at {self.path}: {e}") from None
        self._pending = {}
        self._drop_reader()
        return len(items)

    def discard(self) -> None:
        """Forget every change since the last commit."""
        self._pending = {}

    def _drop_reader(self) -> None:
        if self._read is not None:
            self._read.abort()
            self._read = None

    def close(self) -> None:
        """Close the environment (pending changes that were not committed are lost)."""
        self._drop_reader()
        self._pending = {}
        self._env.close()
        self._lock_file.close()  # releases the exclusive lock

    def __repr__(self) -> str:
        return f"LMDBAtomicDB({str(self.path)!r}, pending={len(self._pending)})"
