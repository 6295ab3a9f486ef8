"""Derivation: the L2 chain as a pure function of L1 data (``docs/rollup.md`` "Derivation").

The deriver reads, L1 block by L1 block, the data of the batcher's transactions to the batch inbox
(already filtered by sender and recipient by the L1 reader), reassembles channels from frames
(:class:`ChannelBank`), decodes their batches and checks each one against the safe L2 head and the
L1 chain (:func:`check_batch`). A valid batch is the next L2 block's attributes; the caller builds
the block (the same AI EVM as the sequencer) and reports its hash with :meth:`Deriver.advance`,
which the next batch must name as its parent. Everything invalid is **dropped** with a reason (a
frame out of order, a channel that timed out, a batch whose parent or epoch does not fit): bytes
that anyone can post to the inbox never stop the deriver and never fork it, because every node
drops the same things.

Rules (the OP Stack's, reduced to one sequencer and strictly ordered frames, as its "Holocene"):

- **Channels**: one open channel at a time. Frame 0 of a new channel id opens it (an incomplete
  channel open before is dropped); a frame of the open channel must carry the next number, else it
  is dropped; the frame with ``is_last`` closes it. A channel not closed within
  ``channel_timeout`` L1 blocks of its first frame is dropped. Size and frame-count bounds are those
  of :mod:`ai_evm.rollup.codec`.
- **Batches**: ``parent_hash`` is the safe head's hash; ``timestamp`` is after the safe head's;
  the epoch is the safe head's or the next L1 block, its hash is the canonical L1 block's, and the
  timestamp lies in ``[epoch timestamp, epoch timestamp + max_sequencer_drift]``; the batch is
  included on L1 at most ``seq_window`` blocks after its epoch; it carries no deposit transaction
  (type 0x7E: the deposits of a block come from L1, ``ai_evm.rollup.deposits``, and are put first in
  the block by the node that builds it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ai_evm.evm.deposit import DEPOSIT_TX_TYPE

from .codec import (
    MAX_CHANNEL_BYTES,
    MAX_FRAMES_PER_CHANNEL,
    Batch,
    CodecError,
    Frame,
    decode_batcher_data,
    decode_channel,
)
from .deposits import Deposit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class L1Block:
    """What the deriver reads of one L1 block: identity, time, the inbox data (in tx order) and the
    Portal's deposits (in log order, ``ai_evm.rollup.deposits``)."""

    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    batcher_data: tuple[bytes, ...] = ()
    deposits: tuple[Deposit, ...] = ()


@dataclass(frozen=True)
class RollupConfig:
    """The derivation's parameters (fixed at genesis; every node must use the same)."""

    seq_window: int = 64
    """L1 blocks after its epoch within which a batch must be included."""
    channel_timeout: int = 50
    """L1 blocks after its first frame within which a channel must be complete."""
    max_sequencer_drift: int = 600
    """Seconds an L2 timestamp may run ahead of its epoch's L1 timestamp."""


@dataclass(frozen=True)
class SafeHead:
    """The last derived L2 block: what the next batch must extend."""

    hash: bytes
    number: int
    timestamp: int
    epoch_number: int


@dataclass
class _Channel:
    channel_id: bytes
    opened_at: int
    frames: list[bytes] = field(default_factory=list)
    size: int = 0


class ChannelBank:
    """Reassembles channels from strictly ordered frames (module docstring, "Channels")."""

    def __init__(self, config: RollupConfig) -> None:
        self.config = config
        self._open: _Channel | None = None
        self.dropped: list[str] = []  # reasons, for progress output and tests

    def drop(self, why: str) -> None:
        self.dropped.append(why)
        log.info("derivation: dropped %s", why)

    def expire(self, l1_number: int) -> None:
        """Drop the open channel if it was not completed in time."""
        ch = self._open
        if ch is not None and l1_number > ch.opened_at + self.config.channel_timeout:
            self.drop(f"channel {ch.channel_id.hex()} timed out (opened at L1 block {ch.opened_at})")
            self._open = None

    def add(self, l1_number: int, frame: Frame) -> bytes | None:
        """Add one frame seen in L1 block ``l1_number``; returns a completed channel's bytes."""
        self.expire(l1_number)
        ch = self._open
        if frame.number == 0:
            if ch is not None:
                self.drop(f"incomplete channel {ch.channel_id.hex()} replaced by {frame.channel_id.hex()}")
            ch = self._open = _Channel(frame.channel_id, l1_number)
        elif ch is None or frame.channel_id != ch.channel_id or frame.number != len(ch.frames):
            self.drop(f"frame {frame.number} of channel {frame.channel_id.hex()} (out of order or no open channel)")
            return None
        ch.frames.append(frame.data)
        ch.size += len(frame.data)
        if ch.size > MAX_CHANNEL_BYTES or len(ch.frames) > MAX_FRAMES_PER_CHANNEL:
            self.drop(f"channel {ch.channel_id.hex()} exceeds the size or frame bounds")
            self._open = None
            return None
        if not frame.is_last:
            return None
        self._open = None
        return b"".join(ch.frames)

    def read(self, block: L1Block) -> list[Batch]:
        """The batches of every channel ``block``'s inbox data completes (malformed data and
        channels are dropped with a reason)."""
        self.expire(block.number)
        out: list[Batch] = []
        for i, data in enumerate(block.batcher_data):
            try:
                frames = decode_batcher_data(data)
            except CodecError as e:
                self.drop(f"batcher data {i} of L1 block {block.number}: {e}")
                continue
            for frame in frames:
                channel = self.add(block.number, frame)
                if channel is None:
                    continue
                try:
                    out += decode_channel(channel)
                except CodecError as e:
                    self.drop(f"channel {frame.channel_id.hex()} of L1 block {block.number}: {e}")
        return out


def check_batch(batch: Batch, safe: SafeHead, l1: dict[int, L1Block], inclusion: int,
                config: RollupConfig) -> str | None:
    """Why ``batch`` (included in L1 block ``inclusion``) cannot extend ``safe``; None if it can."""
    if batch.parent_hash != safe.hash:
        return f"parent {batch.parent_hash.hex()} is not the safe head {safe.hash.hex()}"
    if batch.timestamp <= safe.timestamp:
        return f"timestamp {batch.timestamp} is not after the safe head's {safe.timestamp}"
    if batch.epoch_number not in (safe.epoch_number, safe.epoch_number + 1):
        return f"epoch {batch.epoch_number} is neither the safe head's {safe.epoch_number} nor the next"
    origin = l1.get(batch.epoch_number)
    if origin is None or batch.epoch_number > inclusion or origin.hash != batch.epoch_hash:
        return f"epoch {batch.epoch_number} hash {batch.epoch_hash.hex()} is not a canonical L1 block"
    if not origin.timestamp <= batch.timestamp <= origin.timestamp + config.max_sequencer_drift:
        return f"timestamp {batch.timestamp} outside the epoch's [{origin.timestamp}, +{config.max_sequencer_drift}]"
    if inclusion > batch.epoch_number + config.seq_window:
        return f"included at L1 block {inclusion}, past the sequencing window of epoch {batch.epoch_number}"
    if any(tx[:1] == bytes([DEPOSIT_TX_TYPE]) for tx in batch.transactions):
        return "it carries a deposit transaction (type 0x7e): deposits come only from L1"
    return None


class Deriver:
    """L1 blocks in, L2 block attributes out (module docstring)."""

    def __init__(self, config: RollupConfig, safe: SafeHead, l1_history: Sequence[L1Block] = ()) -> None:
        self.config = config
        self.safe = safe
        self.bank = ChannelBank(config)
        self.l1: dict[int, L1Block] = {b.number: b for b in l1_history}
        self._ready: deque[tuple[int, Batch]] = deque()
        self._pending: Batch | None = None

    @property
    def dropped(self) -> list[str]:
        return self.bank.dropped

    def add_l1_block(self, block: L1Block) -> None:
        """Read one L1 block (in order): its inbox data become frames, channels, batches."""
        prev = self.l1.get(block.number - 1)
        if prev is not None and prev.hash != block.parent_hash:
            raise ValueError(f"L1 block {block.number} does not extend {prev.hash.hex()} (L1 reorgs are not handled)")
        self.l1[block.number] = block
        self._ready.extend((block.number, b) for b in self.bank.read(block))

    def next_batch(self) -> Batch | None:
        """The next valid batch extending the safe head (invalid ones are dropped), or None."""
        if self._pending is not None:
            raise RuntimeError("advance() the previous batch first")
        while self._ready:
            inclusion, batch = self._ready.popleft()
            why = check_batch(batch, self.safe, self.l1, inclusion, self.config)
            if why is None:
                self._pending = batch
                return batch
            self.bank.drop(f"batch at L1 block {inclusion}: {why}")
        return None

    def advance(self, block_hash: bytes) -> SafeHead:
        """The pending batch was built into the L2 block ``block_hash``: it is the new safe head."""
        b = self._pending
        if b is None:
            raise RuntimeError("no pending batch")
        self._pending = None
        self.safe = SafeHead(block_hash, self.safe.number + 1, b.timestamp, b.epoch_number)
        return self.safe

    def reject(self, why: str) -> None:
        """The pending batch could not be built (a transaction invalid on L2): drop it."""
        if self._pending is None:
            raise RuntimeError("no pending batch")
        self.bank.drop(f"batch for L2 block {self.safe.number + 1}: {why}")
        self._pending = None

    def batches(self) -> Iterator[Batch]:
        """Iterate valid batches; the caller must ``advance`` or ``reject`` each before the next."""
        while (b := self.next_batch()) is not None:
            yield b


__all__ = ["ChannelBank", "Deriver", "L1Block", "RollupConfig", "SafeHead", "check_batch"]
