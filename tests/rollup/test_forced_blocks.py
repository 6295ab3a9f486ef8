"""Forced deposit-only blocks when the sequencing window expires (``docs/rollup.md`` "Forced blocks").

Deriver units over a scripted L1: the window of the safe head's next epoch expiring forces blocks
epoch by epoch with the rule's timestamp; a batch included inside the window wins; a batch included
after it is dropped (its parent was replaced) while one that builds on the forced block is
accepted; an L1 reorg rewinds across a forced block. In process with nodes: the validator and the
sequencer (its :class:`BatchMatcher`, which rewinds its own unposted blocks) build the same forced
blocks, each opening with its epoch's deposits, and the sequencer's transactions go on top of them;
the matcher waits for the sequencer's L1 follower before rewinding anything, and an L1 reorg after a
forced block derives the same block again without touching the sequencer's chain.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import pytest
from eth_account import Account
from eth_typing import Address, BlockNumber

from ai_evm.node.chain import L1Origin, NodeConfig, Sequencer, origin_of
from ai_evm.node.vm import make_resolver
from ai_evm.rollup import codec
from ai_evm.rollup.codec import Batch
from ai_evm.rollup.config import RollupDeployment
from ai_evm.rollup.deposits import Deposit, deposits_hook
from ai_evm.rollup.derive import (
    Deriver,
    ForcedBlockFailed,
    L1Block,
    L1Reorg,
    RollupConfig,
    SafeHead,
    forced_batch,
)
from ai_evm.rollup.heads import BatchMatcher
from ai_evm.rollup.sequencing import choose_origin

CFG = RollupConfig(seq_window=10, channel_timeout=5, max_sequencer_drift=100)
GENESIS = SafeHead(b"\x00" * 32, 0, 1000, 0)


def l1_chain(n: int, start: int = 1000, deposits: dict[int, tuple[Deposit, ...]] | None = None) -> list[L1Block]:
    out, parent = [], b"\xff" * 32
    for i in range(n):
        h = bytes([i + 1]) * 32
        out.append(L1Block(i, h, parent, start + 12 * i, (), (deposits or {}).get(i, ())))
        parent = h
    return out


def with_batches(b: L1Block, *batches: Batch, channel: bytes = b"c" * 16) -> L1Block:
    data = codec.encode_batcher_data(codec.split_frames(channel, codec.encode_channel(list(batches)), 100_000))
    return L1Block(b.number, b.hash, b.parent_hash, b.timestamp, (data,), b.deposits)


def l2_hash(n: int) -> bytes:
    return bytes([0xA0 + n]) * 32


def derive_all(d: Deriver) -> list[Batch]:
    got = []
    for b in d.batches():
        got.append(b)
        d.advance(l2_hash(d.safe.number + 1))
    return got


def test_window_expiry_forces_deposit_only_blocks_epoch_by_epoch() -> None:
    l1 = l1_chain(20)
    d = Deriver(CFG, GENESIS, l1[:1])
    for b in l1[1:11]:  # through L1 block 10: epoch 1's window (blocks 1..11) is still open
        d.add_l1_block(b)
        assert derive_all(d) == []
    d.add_l1_block(l1[11])  # E + 1 + seq_window = 0 + 1 + 10
    assert derive_all(d) == [Batch(GENESIS.hash, 1, l1[1].hash, 1012, ())]  # max(1000 + 1, L1(1).timestamp)
    for b in l1[12:15]:  # three L1 blocks read at once: one forced block per epoch whose window expired
        d.add_l1_block(b)
    assert derive_all(d) == [Batch(l2_hash(n - 1), n, l1[n].hash, 1000 + 12 * n, ()) for n in (2, 3, 4)]
    assert d.safe == SafeHead(l2_hash(4), 4, 1048, 4) and d.forced == 4
    assert derive_all(d) == []  # epoch 5's window is open until L1 block 15
    # the safe head later than the epoch's L1 time: one second after it
    late = SafeHead(b"\x01" * 32, 7, 5000, 3)
    assert forced_batch(late, {b.number: b for b in l1}, 14, CFG) == Batch(late.hash, 4, l1[4].hash, 5001, ())
    assert forced_batch(late, {b.number: b for b in l1}, 13, CFG) is None


def test_a_batch_inside_the_window_wins() -> None:
    l1 = l1_chain(20)
    ok = Batch(GENESIS.hash, 1, l1[1].hash, 1013, (b"\x02tx",))
    d = Deriver(CFG, GENESIS, l1[:11])
    d.add_l1_block(with_batches(l1[11], ok))  # included in the last block of epoch 1's window
    assert derive_all(d) == [ok] and d.forced == 0
    # a batch on the safe head's own epoch keeps that epoch: the window is counted from it again
    d2 = Deriver(CFG, GENESIS, l1[:10])
    same = Batch(GENESIS.hash, 0, l1[0].hash, 1001, ())
    d2.add_l1_block(with_batches(l1[10], same))
    assert derive_all(d2) == [same]
    d2.add_l1_block(l1[11])
    assert derive_all(d2) == [Batch(l2_hash(1), 1, l1[1].hash, 1012, ())]


def test_a_late_batch_is_dropped_and_one_on_the_forced_block_is_not() -> None:
    l1 = l1_chain(20)
    late = Batch(GENESIS.hash, 1, l1[1].hash, 1013, (b"\x02tx",))  # names the block the forced one replaced
    on_forced = Batch(l2_hash(1), 2, l1[2].hash, 1030, (b"\x02tx",))
    d = Deriver(CFG, GENESIS, l1[:11])
    d.add_l1_block(l1[11])
    d.add_l1_block(with_batches(l1[12], late, on_forced))  # read before the deriver is asked: same result
    assert derive_all(d) == [Batch(GENESIS.hash, 1, l1[1].hash, 1012, ()), on_forced]
    assert len(d.dropped) == 1 and "is not the safe head" in d.dropped[0]
    assert d.forced == 1 and d.safe.epoch_number == 2


def test_a_forced_block_cannot_be_rejected() -> None:
    l1 = l1_chain(12)
    d = Deriver(CFG, GENESIS, l1)
    assert d.next_batch() is not None and d.pending_forced
    with pytest.raises(ForcedBlockFailed, match="forced block 1"):
        d.reject("whatever")


def test_an_l1_reorg_rewinds_across_a_forced_block() -> None:
    l1 = l1_chain(20)
    d = Deriver(CFG, GENESIS, l1[:11])
    d.add_l1_block(l1[11])
    assert len(derive_all(d)) == 1 and d.safe.number == 1
    # L1 replaces block 11 by one that holds a batch for epoch 1: no forced block any more
    ok = Batch(GENESIS.hash, 1, l1[1].hash, 1013, (b"\x02tx",))
    other = with_batches(L1Block(11, b"\x4b" * 32, l1[10].hash, l1[11].timestamp + 1), ok)
    with pytest.raises(L1Reorg):
        d.add_l1_block(L1Block(12, b"\x4c" * 32, other.hash, 1200))
    assert d.rewind_l1(10) == GENESIS and d.last_l1 == 10
    d.add_l1_block(other)
    assert derive_all(d) == [ok] and d.forced == 1  # the count is of blocks derived, the rewound one too
    # a forced block pending when L1 reorganizes is derived again, not read back as a batch
    d2 = Deriver(CFG, GENESIS, l1[:11])
    d2.add_l1_block(l1[11])
    forced = d2.next_batch()
    d2.add_l1_block(l1[12])  # read while the node still builds the forced block
    d2.rewind_l1(11)
    assert d2.next_batch() == forced and d2.pending_forced and d2.dropped == []


# -- with nodes ---------------------------------------------------------------------------------------

PORTAL = "0x" + "77" * 20
USER = Account.from_key("0x" + "31" * 32)
RECIPIENT = bytes.fromhex("42" * 20)


def deposit(nonce: int, l1_block: int, value: int) -> Deposit:
    return Deposit(nonce, bytes.fromhex(USER.address[2:]), RECIPIENT, value, value, 21_000, b"", l1_block, 0)


def node(path: Path, l1: dict[int, L1Block]) -> Sequencer:
    seq = Sequencer(NodeConfig(path, sync=False), make_resolver(None))
    seq.deposits_for = deposits_hook(PORTAL, 0, l1.get)
    return seq


def transfer(seq: Sequencer, nonce: int) -> None:
    key = seq.config.accounts[0].private_key
    tx = {"to": "0x000000000000000000000000000000000000dEaD", "value": 1, "gas": 21_000, "maxFeePerGas": 10**10,
          "maxPriorityFeePerGas": 10**9, "nonce": nonce, "chainId": 31337, "type": 2}
    assert seq.submit([seq.decode_raw(bytes(Account.sign_transaction(tx, key).raw_transaction))]) == [None]


def test_validator_and_sequencer_build_the_same_forced_blocks(tmp_path: Path) -> None:
    """The sequencer mines blocks that never reach L1; L1 block 3 holds a deposit. Once the window
    expires the validator derives forced blocks (the deposit first in epoch 3's); the sequencer's
    matcher rewinds its own blocks, builds the same forced blocks and sends its transactions again;
    it builds ahead the forced blocks of the epochs whose windows close within the catch-up margin,
    and mines its transactions on top of them, on an epoch whose window is open."""
    cfg = RollupConfig(seq_window=4, channel_timeout=5, max_sequencer_drift=600)
    start = int(time.time()) - 200
    chain = l1_chain(12, start, {3: (deposit(0, 3, 10**18),)})
    l1 = {b.number: b for b in chain}
    seq = node(tmp_path / "seq", l1)
    seq.origin_for = lambda parent, ts: choose_origin(origin_of(parent) or L1Origin(0, chain[0].hash, start), ts,
                                                      l1.get, cfg.max_sequencer_drift)
    for n in range(3):  # three blocks on origins 1, 2, 3 (the wall clock is past them): never posted
        transfer(seq, n)
        seq.mine_pending()
    assert int(seq.head().block_number) == 3
    d = RollupDeployment(1, 31337, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL,
                         PORTAL, 0, "0x" + chain[0].hash.hex(), start, derivation=asdict(cfg), portal=PORTAL)
    matcher = BatchMatcher(seq, d)
    val = node(tmp_path / "val", l1)
    deriver = Deriver(cfg, SafeHead(bytes(val.head().hash), 0, int(val.head().timestamp), 0), chain[:1])
    for b in chain[1:9]:  # through L1 block 8: windows of epochs 1..4 expired (1 + 4 ... 4 + 4)
        matcher.add_l1_block(b)
        deriver.add_l1_block(b)
        for batch in deriver.batches():
            deriver.advance(val.build_from_batch(batch.transactions, batch.timestamp,
                                                 L1Origin(batch.epoch_number, batch.epoch_hash)))
    assert deriver.forced == 4 and matcher.safe == 4 and matcher.replaced == 1 and matcher.mismatches == 0
    for n in range(5):
        a, v = (x.chain.get_canonical_block_header_by_number(BlockNumber(n)) for x in (seq, val))
        assert (a.hash, a.state_root) == (v.hash, v.state_root), n
        assert origin_of(a) == (L1Origin(n, chain[n].hash) if n else None)
        if n:
            assert a.timestamp == chain[n].timestamp
    # block 1 opens with the deposits of L1 blocks 0..1 (none), block 3 with L1 block 3's one
    records = [val.record(n) for n in range(1, 5)]
    assert [[t["type"] for t in r["txs"]] for r in records if r] == [[], [], ["0x7e"], []]
    assert val.head_state().get_balance(Address(RECIPIENT)) == 10**18
    assert len(seq.pool) == 3  # the replaced blocks' transfers, sent again
    # catch-up: the sequencer built the forced blocks of epochs 5 and 6 itself (their windows close
    # within seq_window // 2 = 2 L1 blocks of block 8), so its own block 7 is on epoch 7
    assert matcher.caught_up == 2 + 3 and int(seq.head().block_number) == 6
    seq.mine_pending()
    assert int(seq.head().block_number) == 7 and origin_of(seq.head()) == L1Origin(7, chain[7].hash)
    assert len(seq.pool) == 0
    rec = seq.record(7)
    assert rec is not None and len(rec["txs"]) == 3
    for b in chain[9:11]:  # the validator derives the same blocks 5 and 6
        deriver.add_l1_block(b)
        for batch in deriver.batches():
            deriver.advance(val.build_from_batch(batch.transactions, batch.timestamp,
                                                 L1Origin(batch.epoch_number, batch.epoch_hash)))
    assert deriver.forced == 6 and bytes(val.head().hash) == bytes(seq.head().parent_hash)


def test_the_sequencer_waits_for_its_follower_before_replacing_blocks(tmp_path: Path) -> None:
    """The matcher reads L1 ahead of the sequencer's follower (another poller): a forced block whose
    epoch the follower has not read waits, nothing rewound, and is built on a later call."""
    cfg = RollupConfig(seq_window=4, channel_timeout=5, max_sequencer_drift=600)
    start = int(time.time()) - 200
    chain = l1_chain(8, start, {1: (deposit(0, 1, 5),)})
    followed = {0: chain[0]}  # the follower read the genesis L1 block only
    seq = node(tmp_path / "seq", followed)
    seq.origin_for = lambda parent, ts: L1Origin(0, chain[0].hash)
    transfer(seq, 0)
    seq.mine_pending()  # block 1 on origin 0: never posted
    assert int(seq.head().block_number) == 1
    d = RollupDeployment(1, 31337, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL,
                         PORTAL, 0, "0x" + chain[0].hash.hex(), start, derivation=asdict(cfg), portal=PORTAL)
    matcher = BatchMatcher(seq, d)
    before = bytes(seq.head().hash)
    for b in chain[1:6]:
        matcher.add_l1_block(b)  # the forced block 1 is due at L1 block 5; the follower has not read block 1
    assert matcher.safe == 0 and bytes(seq.head().hash) == before and matcher.replaced == 0
    followed.update({b.number: b for b in chain[:6]})
    matcher.match()
    assert matcher.safe == 1 and matcher.replaced == 1 and len(seq.pool) == 1
    record = seq.record(1)
    assert record is not None and [t["type"] for t in record["txs"]] == ["0x7e"]  # L1 block 1's deposit
    assert int(seq.head().block_number) == 3 and matcher.caught_up == 2  # epochs 2 and 3: windows close by 5 + 2


def test_an_l1_reorg_after_a_forced_block_keeps_the_sequencers_chain(tmp_path: Path) -> None:
    """L1 replaces the block at which the sequencer's matcher forced a block (the epoch's block stays):
    back to the checkpoint before it, the new block forces the same block, which the sequencer has:
    nothing is rewound or rebuilt."""
    cfg = RollupConfig(seq_window=4, channel_timeout=5, max_sequencer_drift=600)
    start = int(time.time()) - 200
    chain = l1_chain(8, start, {1: (deposit(0, 1, 5),)})
    l1 = {b.number: b for b in chain}
    seq = node(tmp_path / "seq", l1)
    d = RollupDeployment(1, 31337, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL, PORTAL,
                         PORTAL, 0, "0x" + chain[0].hash.hex(), start, derivation=asdict(cfg), portal=PORTAL)
    matcher = BatchMatcher(seq, d)
    for b in chain[1:6]:
        matcher.add_l1_block(b)  # blocks 1 (at L1 block 4), 2 and 3 (at 5) built ahead by catch-up; 1 forced at 5
    assert matcher.safe == 1 and int(seq.head().block_number) == 3 and matcher.caught_up == 3
    heads = [bytes(seq.header_by_number(n).hash) for n in range(4)]  # type: ignore[union-attr]
    other = L1Block(5, b"\x5e" * 32, chain[4].hash, chain[5].timestamp + 1)
    with pytest.raises(L1Reorg):
        matcher.add_l1_block(L1Block(6, b"\x6e" * 32, other.hash, chain[6].timestamp))
    matcher.rewind_l1(4)
    assert matcher.safe == 0
    matcher.add_l1_block(other)
    assert matcher.safe == 1 and matcher.replaced == 0 and matcher.caught_up == 3
    assert [bytes(seq.header_by_number(n).hash) for n in range(4)] == heads  # type: ignore[union-attr]
