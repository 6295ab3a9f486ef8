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

**Forced blocks** (the sequencing window; the OP Stack's "forced empty batches"). Let ``E`` be the
safe head's epoch. Once the deriver has read L1 block ``E + 1 + seq_window`` and the batches included
up to it did not move the safe head to a later epoch, no valid batch for epoch ``E + 1`` can come any
more (it would be included past its window): every deriver then builds the **forced block**
(:func:`forced_batch`): parent the safe head, epoch ``E + 1``, timestamp
``max(safe.timestamp + 1, L1(E + 1).timestamp)``, no transactions but the epoch's deposits (the
building node puts them first, as in every block), and goes on epoch by epoch while the window stays
expired. A silent sequencer (or one that leaves a deposit out) thus cannot stop deposits: they reach
L2 at most ``seq_window`` L1 blocks late. Batches read later that extend the replaced blocks name
another parent and are dropped.

**L1 reorgs.** Before reading each L1 block the deriver keeps a checkpoint of its state (safe head,
open channel, batches read but not yet used) for the last :data:`MAX_REORG_DEPTH` blocks. When L1
replaces blocks, :meth:`Deriver.rewind_l1` returns to the state it had with the common ancestor as
its last L1 block; the caller rewinds the L2 chain to that safe head and feeds the new L1 blocks.
Since derivation is a function of L1 alone, this gives every node the chain the new L1 defines.
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

#: How many L1 blocks back a reorg can be followed (checkpoints kept); a deeper one stops derivation.
MAX_REORG_DEPTH = 64


class L1Reorg(ValueError):
    """An L1 block that does not extend the last one read: L1 replaced blocks after ``ancestor_below``
    (the common ancestor is at most that number; the caller finds it and rewinds)."""

    def __init__(self, number: int, message: str) -> None:
        super().__init__(message)
        self.number = number


class ForcedBlockFailed(RuntimeError):
    """A forced block (deposits only) could not be built: the node cannot follow the chain L1 defines."""


class ReorgTooDeep(RuntimeError):
    """An L1 reorg below the oldest checkpoint (or below the rollup's genesis origin)."""


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


def forced_batch(safe: SafeHead, l1: dict[int, L1Block], last_l1: int, config: RollupConfig) -> Batch | None:
    """The forced block that must extend ``safe`` once L1 blocks through ``last_l1`` are read (module
    docstring, "Forced blocks"), or None while the window of the safe head's next epoch is open (or
    when that epoch's L1 block was not read)."""
    epoch = safe.epoch_number + 1
    origin = l1.get(epoch)
    if last_l1 < epoch + config.seq_window or origin is None:
        return None
    return Batch(safe.hash, epoch, origin.hash, max(safe.timestamp + 1, origin.timestamp), ())


def catch_up_margin(config: RollupConfig) -> int:
    """L1 blocks before a window closes from which a sequencer builds the forced block itself
    (``ai_evm.rollup.heads.BatchMatcher``, "catch-up"): half the window, at least one."""
    return max(1, config.seq_window // 2)


class Deriver:
    """L1 blocks in, L2 block attributes out (module docstring)."""

    def __init__(self, config: RollupConfig, safe: SafeHead, l1_history: Sequence[L1Block] = ()) -> None:
        self.config = config
        self.safe = safe
        self.bank = ChannelBank(config)
        self.l1: dict[int, L1Block] = {b.number: b for b in l1_history}
        self._ready: deque[tuple[int, Batch]] = deque()
        self._pending: tuple[int, Batch] | None = None
        self._pending_forced = False
        #: The number of the last L1 block read (None: none yet).
        self.last_l1: int | None = max(self.l1) if self.l1 else None
        #: Forced blocks derived (the sequencing window expired), for progress output and tests.
        self.forced = 0
        #: L1 number n -> the state with n as the last L1 block read (see "L1 reorgs")
        self._checkpoints: dict[int, tuple[SafeHead, _Channel | None, tuple[tuple[int, Batch], ...],
                                           tuple[int, Batch] | None]] = {}

    @property
    def dropped(self) -> list[str]:
        return self.bank.dropped

    @property
    def pending_forced(self) -> bool:
        """Whether the pending batch is a forced block (:func:`forced_batch`: it cannot be rejected)."""
        return self._pending_forced

    def add_l1_block(self, block: L1Block) -> None:
        """Read one L1 block (in order): its inbox data become frames, channels, batches. A block at or below
        the last one read raises :class:`L1Reorg` (the caller rewinds first), a gap ``ValueError``."""
        if self.last_l1 is not None and block.number != self.last_l1 + 1:
            if block.number <= self.last_l1:  # (its parent may match: only a rewind forgets the blocks above)
                raise L1Reorg(block.number, f"L1 block {block.number} was read already (last read {self.last_l1}): "
                                            "rewind_l1 below it first")
            raise ValueError(f"L1 block {block.number} after L1 block {self.last_l1}: blocks are read in order")
        prev = self.l1.get(block.number - 1)
        if prev is not None and prev.hash != block.parent_hash:
            raise L1Reorg(block.number, f"L1 block {block.number} does not extend {prev.hash.hex()}: an L1 reorg")
        ch = self.bank._open
        self._checkpoints[block.number - 1] = (  # a pending forced block is not kept: it is derived again
            self.safe, None if ch is None else _Channel(ch.channel_id, ch.opened_at, list(ch.frames), ch.size),
            tuple(self._ready), None if self._pending_forced else self._pending)
        self._checkpoints.pop(block.number - 1 - MAX_REORG_DEPTH, None)
        self.l1[block.number] = block
        self.last_l1 = block.number
        self._ready.extend((block.number, b) for b in self.bank.read(block))

    def next_batch(self) -> Batch | None:
        """The next valid batch extending the safe head (invalid ones are dropped), or the forced block
        when the safe head's sequencing window expired (module docstring), or None."""
        if self._pending is not None:
            raise RuntimeError("advance() the previous batch first")
        while self._ready:
            if (forced := self._force(self._ready[0][0] - 1)) is not None:  # expired before the batch's L1 block
                return forced
            inclusion, batch = self._ready.popleft()
            why = check_batch(batch, self.safe, self.l1, inclusion, self.config)
            if why is None:
                self._pending = (inclusion, batch)
                return batch
            self.bank.drop(f"batch at L1 block {inclusion}: {why}")
        return None if self.last_l1 is None else self._force(self.last_l1)

    def _force(self, through: int) -> Batch | None:
        """The forced block (made pending) if it is due with L1 read through ``through``."""
        batch = forced_batch(self.safe, self.l1, through, self.config)
        if batch is None:
            return None
        self._pending, self._pending_forced = (batch.epoch_number + self.config.seq_window, batch), True
        log.warning("derivation: no batch for epoch %d by L1 block %d (sequencing window): forced deposit-only "
                    "L2 block %d", batch.epoch_number, batch.epoch_number + self.config.seq_window,
                    self.safe.number + 1)
        return batch

    def advance(self, block_hash: bytes) -> SafeHead:
        """The pending batch was built into the L2 block ``block_hash``: it is the new safe head."""
        if self._pending is None:
            raise RuntimeError("no pending batch")
        b = self._pending[1]
        self.forced += self._pending_forced
        self._pending, self._pending_forced = None, False
        self.safe = SafeHead(block_hash, self.safe.number + 1, b.timestamp, b.epoch_number)
        return self.safe

    def reject(self, why: str) -> None:
        """The pending batch could not be built (a transaction invalid on L2): drop it."""
        if self._pending is None:
            raise RuntimeError("no pending batch")
        if self._pending_forced:
            raise ForcedBlockFailed(f"the forced block {self.safe.number + 1} (epoch {self._pending[1].epoch_number}) "
                                    f"does not build: {why}")
        self.bank.drop(f"batch for L2 block {self.safe.number + 1}: {why}")
        self._pending = None

    def l1_hash(self, number: int) -> bytes | None:
        """The hash of the L1 block ``number`` read (None if not read)."""
        b = self.l1.get(number)
        return None if b is None else b.hash

    def rewind_l1(self, number: int) -> SafeHead:
        """Forget every L1 block after ``number`` (an L1 reorg whose common ancestor is ``number``):
        back to the state the deriver had when ``number`` was its last L1 block; returns that state's
        safe head, to which the caller rewinds its L2 chain. A pending batch is put back to be read
        again. Raises :class:`ReorgTooDeep` without changing anything when no checkpoint is kept."""
        if number == self.last_l1:  # nothing after it to forget (a reorg that came back): the state it has
            if self._pending is not None and not self._pending_forced:
                self._ready.appendleft(self._pending)
            self._pending, self._pending_forced = None, False
            return self.safe
        snap = self._checkpoints.get(number)
        if snap is None:
            raise ReorgTooDeep(f"an L1 reorg down to block {number} is deeper than the {MAX_REORG_DEPTH} blocks "
                               "the deriver can follow (or before the rollup's first L1 block)")
        self.safe, ch, ready, pending = snap
        self.bank._open = None if ch is None else _Channel(ch.channel_id, ch.opened_at, list(ch.frames), ch.size)
        self._ready = deque(([pending] if pending is not None else []) + list(ready))
        self._pending, self._pending_forced = None, False
        self.last_l1 = number
        for n in [n for n in self.l1 if n > number]:
            del self.l1[n]
        for n in [n for n in self._checkpoints if n > number]:
            del self._checkpoints[n]
        log.warning("derivation: L1 reorg: back to L1 block %d, safe L2 head %d", number, self.safe.number)
        return self.safe

    def batches(self) -> Iterator[Batch]:
        """Iterate valid batches; the caller must ``advance`` or ``reject`` each before the next."""
        while (b := self.next_batch()) is not None:
            yield b


__all__ = ["MAX_REORG_DEPTH", "ChannelBank", "Deriver", "ForcedBlockFailed", "L1Block", "L1Reorg", "ReorgTooDeep",
           "RollupConfig", "SafeHead", "catch_up_margin", "check_batch", "forced_batch"]
