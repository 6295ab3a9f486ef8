"""Derivation (ai_evm.rollup.derive): channels from ordered frames, batch validity, drops with reasons."""

from __future__ import annotations

import pytest

from ai_evm.rollup import codec
from ai_evm.rollup.codec import Batch, Frame
from ai_evm.rollup.derive import (
    ChannelBank,
    Deriver,
    L1Block,
    L1Reorg,
    ReorgTooDeep,
    RollupConfig,
    SafeHead,
    check_batch,
)

CFG = RollupConfig(seq_window=10, channel_timeout=5, max_sequencer_drift=100)
GENESIS = SafeHead(b"\x00" * 32, 0, 1000, 0)


def l1_chain(n: int) -> list[L1Block]:
    out, parent = [], b"\xff" * 32
    for i in range(n):
        h = bytes([i + 1]) * 32
        out.append(L1Block(i, h, parent, 1000 + 12 * i))
        parent = h
    return out


def with_data(b: L1Block, *data: bytes) -> L1Block:
    return L1Block(b.number, b.hash, b.parent_hash, b.timestamp, data)


def l2_hash(n: int) -> bytes:
    return bytes([0xA0 + n]) * 32


def chain_of_batches(l1: list[L1Block], n: int) -> list[Batch]:
    out, parent, ts = [], GENESIS.hash, GENESIS.timestamp
    for i in range(n):
        epoch = l1[min(i // 2, len(l1) - 1)]
        ts = max(ts + 1, epoch.timestamp)
        out.append(Batch(parent, epoch.number, epoch.hash, ts, (bytes([2, i]),)))
        parent = l2_hash(i + 1)
    return out


def derive_all(d: Deriver) -> list[Batch]:
    got = []
    for b in d.batches():
        got.append(b)
        d.advance(l2_hash(d.safe.number + 1))
    return got


def test_sequencer_batches_derive_in_order_across_frames_and_blocks() -> None:
    l1 = l1_chain(6)
    bs = chain_of_batches(l1, 6)
    frames = codec.split_frames(b"a" * 16, codec.encode_channel(bs), 40)
    assert len(frames) >= 3
    d = Deriver(CFG, GENESIS, l1[:3])
    d.add_l1_block(with_data(l1[3], codec.encode_batcher_data(frames[:2])))
    assert derive_all(d) == []  # channel not complete yet
    d.add_l1_block(with_data(l1[4], codec.encode_batcher_data(frames[2:])))
    assert derive_all(d) == bs
    assert d.safe == SafeHead(l2_hash(6), 6, bs[-1].timestamp, bs[-1].epoch_number)
    assert d.dropped == []


def test_garbage_in_the_inbox_is_dropped_not_fatal() -> None:
    l1 = l1_chain(4)
    bs = chain_of_batches(l1, 2)
    good = codec.encode_batcher_data(codec.split_frames(b"g" * 16, codec.encode_channel(bs), 1000))
    bad_channel = codec.encode_batcher_data([Frame(b"h" * 16, 0, b"not zlib", True)])
    d = Deriver(CFG, GENESIS, l1[:2])
    d.add_l1_block(with_data(l1[2], b"", b"\x07junk", bad_channel, good))
    assert derive_all(d) == bs
    assert len(d.dropped) == 3 and "empty" in d.dropped[0] and "version" in d.dropped[1]


def test_out_of_order_frames_and_replaced_channels() -> None:
    bank = ChannelBank(CFG)
    f = codec.split_frames(b"a" * 16, b"x" * 30, 10)
    assert bank.add(1, f[1]) is None and "out of order" in bank.dropped[-1]
    assert bank.add(1, f[0]) is None
    assert bank.add(1, f[2]) is None and "out of order" in bank.dropped[-1]
    g = codec.split_frames(b"b" * 16, b"y" * 5, 10)
    assert bank.add(2, g[0]) == b"y" * 5 and "replaced" in bank.dropped[-1]
    assert bank.add(2, f[1]) is None  # channel a is gone


def test_channel_timeout() -> None:
    bank = ChannelBank(CFG)
    f = codec.split_frames(b"a" * 16, b"x" * 20, 10)
    assert bank.add(10, f[0]) is None
    assert bank.add(10 + CFG.channel_timeout + 1, f[1]) is None
    assert "timed out" in bank.dropped[0]
    bank2 = ChannelBank(CFG)
    bank2.add(10, f[0])
    assert bank2.add(10 + CFG.channel_timeout, f[1]) == b"x" * 20


def test_batch_validity_rules() -> None:
    l1 = {b.number: b for b in l1_chain(30)}
    ok = Batch(GENESIS.hash, 0, l1[0].hash, 1001, ())
    assert check_batch(ok, GENESIS, l1, 3, CFG) is None
    cases = {
        "safe head": Batch(b"\x01" * 32, 0, l1[0].hash, 1001, ()),
        "not after": Batch(GENESIS.hash, 0, l1[0].hash, 1000, ()),
        "nor the next": Batch(GENESIS.hash, 2, l1[2].hash, 1030, ()),
        "canonical": Batch(GENESIS.hash, 1, b"\x09" * 32, 1013, ()),
        "outside the epoch": Batch(GENESIS.hash, 0, l1[0].hash, 1101, ()),
    }
    for why, b in cases.items():
        assert why in (check_batch(b, GENESIS, l1, 3, CFG) or ""), why
    assert "window" in (check_batch(ok, GENESIS, l1, 11, CFG) or "")
    assert "canonical" in (check_batch(Batch(GENESIS.hash, 1, l1[1].hash, 1013, ()), GENESIS, l1, 0, CFG) or "")


def test_rejected_batch_keeps_the_safe_head() -> None:
    l1 = l1_chain(3)
    bs = chain_of_batches(l1, 2)
    d = Deriver(CFG, GENESIS, l1[:2])
    d.add_l1_block(with_data(l1[2], codec.encode_batcher_data(codec.split_frames(b"a" * 16, codec.encode_channel(bs),
                                                                                  999))))
    assert d.next_batch() == bs[0]
    d.reject("a transaction is invalid on L2")
    assert d.safe == GENESIS
    assert d.next_batch() is None  # bs[1] names bs[0]'s block as parent: dropped
    assert "safe head" in d.dropped[-1]


def test_l1_reorg_rewinds_to_the_common_ancestors_state() -> None:
    """A channel split over L1 blocks 3 and 4; L1 replaces block 4 (and the derived batches go): the
    deriver returns to its state after block 3 (open channel included), and the new block 4 carrying
    the same frames derives the same batches again. A reorg below the kept checkpoints is refused."""
    l1 = l1_chain(6)
    bs = chain_of_batches(l1, 6)
    frames = codec.split_frames(b"r" * 16, codec.encode_channel(bs), 40)
    d = Deriver(CFG, GENESIS, l1[:3])
    d.add_l1_block(with_data(l1[3], codec.encode_batcher_data(frames[:2])))
    d.add_l1_block(with_data(l1[4], codec.encode_batcher_data(frames[2:])))
    assert derive_all(d) == bs and d.safe.number == 6
    other = L1Block(4, b"\x44" * 32, l1[3].hash, l1[4].timestamp + 1)
    with pytest.raises(L1Reorg):
        d.add_l1_block(L1Block(5, b"\x55" * 32, other.hash, l1[5].timestamp))
    assert d.rewind_l1(3) == GENESIS and d.l1_hash(4) is None and d.l1_hash(3) == l1[3].hash
    d.add_l1_block(other)  # the new block 4 has no batcher data: the channel stays open, nothing derives
    assert derive_all(d) == [] and d.safe == GENESIS
    d.rewind_l1(3)
    d.add_l1_block(L1Block(4, b"\x46" * 32, l1[3].hash, l1[4].timestamp + 2, (codec.encode_batcher_data(frames[2:]),)))
    assert derive_all(d) == bs
    with pytest.raises(ReorgTooDeep):
        d.rewind_l1(1)  # blocks 0..2 were given as history: no checkpoint before block 3
    assert d.safe.number == 6  # unchanged by the refused rewind


def test_a_pending_batch_is_read_again_after_a_reorg() -> None:
    l1 = l1_chain(6)
    bs = chain_of_batches(l1, 2)
    d = Deriver(CFG, GENESIS, l1[:3])
    d.add_l1_block(with_data(l1[3], codec.encode_batcher_data(codec.split_frames(b"p" * 16,
                                                                                 codec.encode_channel(bs), 10_000))))
    assert d.next_batch() == bs[0]  # pending (say the node waits for a model), then L1 block 4 is replaced
    d.add_l1_block(l1[4])
    d.rewind_l1(3)  # the state before block 4 was read: the pending batch is ready again
    assert derive_all(d) == bs
