"""The pending-pool journal: admitted raw transactions on disk, so that a crash loses none of them.

With interval mining (``--block-time``) a send returns before its transaction is mined. To keep
the promise that an acknowledged transaction is never lost, the sequencer appends every admitted
raw transaction to ``DATADIR/pool.journal`` and fsyncs it *before* the send returns (geth keeps a
similar ``transactions.rlp``, without the fsync). After each mined block the journal is rewritten
with the transactions still pending (write a temporary file, fsync, rename, fsync the directory),
so it stays as small as the pool. On start the node replays it through the normal admission
checks: transactions mined meanwhile or no longer valid are dropped, the others are pending again.

File format: a sequence of records ``length (4 bytes, big-endian) || crc32 (4 bytes, big-endian)
|| raw transaction``. A crash while appending can leave a torn last record (its send never
returned); reading stops at the first record that is short or fails its checksum, and the next
rewrite drops it.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL_NAME = "pool.journal"
#: A record longer than this is corruption, not a transaction (the RPC body limit is far below).
MAX_RECORD = 64 * 1024 * 1024
_HEADER = 8


class JournalError(OSError):
    """The journal could not be written; the transactions it was asked to keep were not admitted."""


def encode_records(raws: Iterable[bytes]) -> bytes:
    """The journal bytes of ``raws`` (each ``length || crc32 || raw``)."""
    out = bytearray()
    for raw in raws:
        out += len(raw).to_bytes(4, "big") + zlib.crc32(raw).to_bytes(4, "big") + raw
    return bytes(out)


def decode_records(data: bytes) -> tuple[list[bytes], int]:
    """The complete, intact records at the start of ``data`` and the number of bytes they span."""
    raws: list[bytes] = []
    pos = 0
    while pos + _HEADER <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        crc = int.from_bytes(data[pos + 4 : pos + 8], "big")
        end = pos + _HEADER + length
        if length > MAX_RECORD or end > len(data):
            break
        raw = data[pos + _HEADER : end]
        if zlib.crc32(raw) != crc:
            break
        raws.append(raw)
        pos = end
    return raws, pos


class PoolJournal:
    """Append-and-fsync log of admitted raw transactions, compacted by :meth:`rewrite`."""

    def __init__(self, datadir: Path, sync: bool = True) -> None:
        self.path = Path(datadir) / JOURNAL_NAME
        self.sync = sync

    def load(self) -> list[bytes]:
        """The raw transactions recorded so far (a torn or corrupt tail is ignored, with a warning)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        raws, used = decode_records(data)
        if used != len(data):
            log.warning("%s: ignoring %d bytes after record %d (torn or corrupt)", self.path, len(data) - used,
                        len(raws))  # fmt: skip
        return raws

    def append(self, raws: list[bytes]) -> None:
        """Append ``raws`` and make them durable before returning.

        Raises :class:`JournalError` if they could not be written; the file is then cut back to
        its previous length, so no partial record is left behind.
        """
        if not raws:
            return
        payload = encode_records(raws)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as e:
            raise JournalError(f"cannot open the pool journal {self.path}: {e}") from None
        try:
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, payload)
                if self.sync:
                    os.fsync(fd)
            except OSError as e:
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    log.exception("cannot cut the pool journal back after a failed write")
                raise JournalError(f"cannot write the pool journal {self.path}: {e}") from None
        finally:
            os.close(fd)

    def rewrite(self, raws: list[bytes]) -> None:
        """Replace the journal by exactly ``raws`` (atomically: temporary file, fsync, rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(fd, encode_records(raws))
                if self.sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            if self.sync:
                _fsync_dir(self.path.parent)
        except OSError as e:
            raise JournalError(f"cannot rewrite the pool journal {self.path}: {e}") from None

    def remove(self) -> None:
        """Delete the journal (automine needs none once its transactions are mined)."""
        try:
            self.path.unlink(missing_ok=True)
            if self.sync:
                _fsync_dir(self.path.parent)
        except OSError as e:
            raise JournalError(f"cannot remove the pool journal {self.path}: {e}") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
