"""The batch format: L2 blocks as batches, batches in compressed channels, channels in frames.

A **batch** is one L2 block as the sequencer built it: its parent's hash, its L1 origin (the L1
block it names as its epoch: number and hash), its timestamp and its raw signed transactions. The
batcher RLP-encodes a list of batches (a **channel**), compresses it with zlib and cuts the bytes
into **frames**; each L1 batcher transaction (calldata, or the data of its blobs) carries a version
byte and one or more frames. Decoding is bounded everywhere (frame and channel sizes, the
decompressed size, the RLP shape), and every malformed input is a :class:`CodecError` naming what is
wrong: the derivation (``ai_evm.rollup.derive``) then drops that input, it never stops on it.

Layout (``docs/rollup.md`` "Batch format"):

```
batcher data  = 0x00 (version) ‖ frame ‖ frame ‖ ...
frame         = channel_id (16) ‖ frame_number (uint16 BE) ‖ length (uint32 BE) ‖ data ‖ is_last (0 | 1)
channel bytes = frame 0 data ‖ frame 1 data ‖ ... (the frames with is_last on the last one)
channel       = zlib(rlp([batch, ...]))
batch         = rlp([parent_hash (32), epoch_number, epoch_hash (32), timestamp, [raw tx, ...]])
```
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import rlp

VERSION = 0
CHANNEL_ID_BYTES = 16
FRAME_OVERHEAD = CHANNEL_ID_BYTES + 2 + 4 + 1
MAX_FRAME_DATA = 1_000_000
"""Largest frame payload accepted (an L1 transaction or blob set is smaller anyway)."""
MAX_FRAMES_PER_CHANNEL = 1024
MAX_CHANNEL_BYTES = 10_000_000
"""Largest compressed channel accepted (the sum of its frames' data)."""
MAX_DECOMPRESSED_BYTES = 10_000_000
"""Largest RLP payload a channel may decompress to (a zip bomb stops here)."""
MAX_BATCHES_PER_CHANNEL = 10_000
MAX_TX_BYTES = 1 << 20


class CodecError(ValueError):
    """Malformed batcher data, frame, channel or batch (the message says which and why)."""


# ------------------------------------------------------------------------------------------------
# batches


@dataclass(frozen=True)
class Batch:
    """One L2 block as posted to L1 (everything derivation needs to rebuild it)."""

    parent_hash: bytes
    epoch_number: int
    epoch_hash: bytes
    timestamp: int
    transactions: tuple[bytes, ...]

    def to_rlp(self) -> list[object]:
        return [self.parent_hash, self.epoch_number, self.epoch_hash, self.timestamp, list(self.transactions)]

    @classmethod
    def from_rlp(cls, item: object) -> Batch:
        """Batch from its decoded RLP item; :class:`CodecError` for any other shape."""
        if not isinstance(item, list) or len(item) != 5:
            raise CodecError("a batch is a list of 5 items")
        parent, num, ehash, ts, txs = item
        if not isinstance(parent, bytes) or len(parent) != 32:
            raise CodecError("batch parent_hash must be 32 bytes")
        if not isinstance(ehash, bytes) or len(ehash) != 32:
            raise CodecError("batch epoch_hash must be 32 bytes")
        number, timestamp = _uint(num, "epoch_number"), _uint(ts, "timestamp")
        if not isinstance(txs, list) or not all(isinstance(t, bytes) and 0 < len(t) <= MAX_TX_BYTES for t in txs):
            raise CodecError(f"batch transactions must be a list of non-empty byte strings (<= {MAX_TX_BYTES} B)")
        return cls(parent, number, ehash, timestamp, tuple(txs))


def _uint(v: object, what: str) -> int:
    """A canonical RLP unsigned integer below 2^64 (no leading zero byte)."""
    if not isinstance(v, bytes) or len(v) > 8 or (v and v[0] == 0):
        raise CodecError(f"batch {what} must be a canonical integer below 2^64")
    return int.from_bytes(v, "big")


# ------------------------------------------------------------------------------------------------
# channels


def encode_channel(batches: Sequence[Batch], level: int = 9) -> bytes:
    """The compressed bytes of a channel holding ``batches`` (in order)."""
    if not 0 < len(batches) <= MAX_BATCHES_PER_CHANNEL:
        raise CodecError(f"a channel holds 1..{MAX_BATCHES_PER_CHANNEL} batches")
    return zlib.compress(rlp.encode([b.to_rlp() for b in batches]), level)


def decode_channel(data: bytes) -> list[Batch]:
    """The batches of a channel's bytes; bounded decompression, :class:`CodecError` on anything else."""
    if len(data) > MAX_CHANNEL_BYTES:
        raise CodecError(f"channel of {len(data)} bytes exceeds {MAX_CHANNEL_BYTES}")
    d = zlib.decompressobj()
    try:
        raw = d.decompress(data, MAX_DECOMPRESSED_BYTES)
        if d.unconsumed_tail:
            raise CodecError(f"channel decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")
        raw += d.flush()
    except zlib.error as e:
        raise CodecError(f"channel is not valid zlib data: {e}") from None
    if not d.eof or d.unused_data:
        raise CodecError("channel zlib stream is truncated or followed by extra bytes")
    try:
        items = rlp.decode(raw, strict=True)
    except rlp.exceptions.DecodingError as e:
        raise CodecError(f"channel is not one RLP list: {e}") from None
    except RecursionError:  # (lists nested ~100k deep fit in a few bytes of zlib)
        raise CodecError("channel RLP is nested too deeply") from None
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCHES_PER_CHANNEL:
        raise CodecError(f"a channel is a list of 1..{MAX_BATCHES_PER_CHANNEL} batches")
    return [Batch.from_rlp(it) for it in items]


# ------------------------------------------------------------------------------------------------
# frames


@dataclass(frozen=True)
class Frame:
    """A piece of a channel."""

    channel_id: bytes
    number: int
    data: bytes
    is_last: bool

    def encode(self) -> bytes:
        return (self.channel_id + self.number.to_bytes(2, "big") + len(self.data).to_bytes(4, "big") + self.data
                + bytes([int(self.is_last)]))


def new_channel_id() -> bytes:
    """A random channel id (the batcher's; any 16 bytes are valid)."""
    return os.urandom(CHANNEL_ID_BYTES)


def split_frames(channel_id: bytes, data: bytes, max_frame_data: int) -> list[Frame]:
    """Cut a channel's bytes into frames of at most ``max_frame_data`` bytes of payload."""
    if len(channel_id) != CHANNEL_ID_BYTES or not 0 < max_frame_data <= MAX_FRAME_DATA:
        raise CodecError("bad channel id or frame size")
    chunks = [data[i : i + max_frame_data] for i in range(0, len(data), max_frame_data)] or [b""]
    if len(chunks) > MAX_FRAMES_PER_CHANNEL:
        raise CodecError(f"channel needs {len(chunks)} frames, more than {MAX_FRAMES_PER_CHANNEL}")
    return [Frame(channel_id, i, c, i == len(chunks) - 1) for i, c in enumerate(chunks)]


def encode_batcher_data(frames: Iterable[Frame]) -> bytes:
    """The data of one batcher transaction: the version byte and the frames."""
    return bytes([VERSION]) + b"".join(f.encode() for f in frames)


def decode_batcher_data(data: bytes) -> list[Frame]:
    """The frames of one batcher transaction's data; all or nothing (:class:`CodecError`)."""
    if not data:
        raise CodecError("empty batcher data")
    if data[0] != VERSION:
        raise CodecError(f"unknown batcher data version {data[0]}")
    frames, pos = [], 1
    while pos < len(data):
        if len(data) - pos < FRAME_OVERHEAD:
            raise CodecError("truncated frame header")
        cid = data[pos : pos + CHANNEL_ID_BYTES]
        pos += CHANNEL_ID_BYTES
        number = int.from_bytes(data[pos : pos + 2], "big")
        length = int.from_bytes(data[pos + 2 : pos + 6], "big")
        pos += 6
        if length > MAX_FRAME_DATA or pos + length + 1 > len(data):
            raise CodecError(f"frame data length {length} is too large or runs past the end")
        payload = data[pos : pos + length]
        pos += length
        last = data[pos]
        pos += 1
        if last > 1:
            raise CodecError(f"frame is_last byte is {last}, not 0 or 1")
        frames.append(Frame(cid, number, payload, bool(last)))
    return frames


__all__ = ["Batch", "CodecError", "Frame", "decode_batcher_data", "decode_channel", "encode_batcher_data",
           "encode_channel", "new_channel_id", "split_frames"]
