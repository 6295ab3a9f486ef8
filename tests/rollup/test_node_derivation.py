"""A second node rebuilds the sequencer's chain from its batches alone, block hash for block hash.

The sequencer (an in-process ``Sequencer`` following a scripted L1 through ``choose_origin``) mines
blocks that name their L1 origin; ``batch_of_block`` turns them into batches, which travel through
channels and frames and the deriver as they would through L1, and a fresh node builds each derived
batch with ``build_from_batch``. Invalid batches are rejected without committing anything.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_typing import BlockNumber

from ai_evm.node.chain import BatchRejected, L1Origin, NodeConfig, Sequencer, origin_of
from ai_evm.node.vm import make_resolver
from ai_evm.rollup import codec
from ai_evm.rollup.derive import Deriver, L1Block, RollupConfig, SafeHead
from ai_evm.rollup.sequencing import OriginLag, batch_of_block, choose_origin

SINK = "0x000000000000000000000000000000000000dEaD"
CFG = RollupConfig(seq_window=100, channel_timeout=10, max_sequencer_drift=30)


def l1_chain(n: int, start: int) -> list[L1Block]:
    out, parent = [], b"\xee" * 32
    for i in range(n):
        h = bytes([i + 1]) * 32
        out.append(L1Block(i, h, parent, start + 10 * i))
        parent = h
    return out


def node(path: Path) -> Sequencer:
    return Sequencer(NodeConfig(path, sync=False), make_resolver(None))


def raw(key: bytes, nonce: int, **extra: object) -> bytes:
    fields = {"to": SINK, "value": 1 + nonce, "gas": 60_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
              "nonce": nonce, "chainId": 31337, "type": 2, **extra}
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


def test_a_fresh_node_rebuilds_the_chain_from_batches(tmp_path: Path) -> None:
    now = int(time.time())
    l1 = l1_chain(8, now - 40)
    by_number = {b.number: b for b in l1}
    genesis_origin = L1Origin(0, l1[0].hash, l1[0].timestamp)
    seq = node(tmp_path / "a")
    seq.origin_for = lambda parent, ts: choose_origin(origin_of(parent) or genesis_origin, ts, by_number.get,
                                                      CFG.max_sequencer_drift)
    key = seq.config.accounts[0].private_key
    for n in range(6):
        extra = {"to": None, "data": bytes.fromhex("600160005260206000f3")} if n == 2 else {}  # a contract creation
        assert seq.submit([seq.decode_raw(raw(key, n, **extra))]) == [None]
        (mined,) = seq.mine_pending()
    blocks = [seq.chain.get_canonical_block_by_number(BlockNumber(n)) for n in range(1, seq.head().block_number + 1)]
    origins = [origin_of(b.header) for b in blocks]
    assert all(o is not None for o in origins)
    assert [o.number for o in origins if o] == sorted(o.number for o in origins if o)  # never backwards

    batches = [batch_of_block(b) for b in blocks]
    frames = codec.split_frames(b"c" * 16, codec.encode_channel(batches), 200)
    inclusion = max(o.number for o in origins if o) + 1
    posted = L1Block(inclusion, l1[inclusion].hash, l1[inclusion - 1].hash, l1[inclusion].timestamp,
                     (codec.encode_batcher_data(frames),))
    fresh = node(tmp_path / "b")
    genesis = fresh.head()
    assert bytes(genesis.hash) == bytes(seq.chain.get_canonical_block_header_by_number(BlockNumber(0)).hash)
    d = Deriver(CFG, SafeHead(bytes(genesis.hash), 0, int(genesis.timestamp), 0), l1[:inclusion])
    d.add_l1_block(posted)
    for b in d.batches():
        h = fresh.build_from_batch(b.transactions, b.timestamp, L1Origin(b.epoch_number, b.epoch_hash))
        d.advance(h)
    assert d.dropped == []
    assert fresh.head().block_number == seq.head().block_number
    for n in range(seq.head().block_number + 1):
        ha = seq.chain.get_canonical_block_header_by_number(BlockNumber(n))
        hb = fresh.chain.get_canonical_block_header_by_number(BlockNumber(n))
        assert (ha.hash, ha.state_root) == (hb.hash, hb.state_root), n
    ra, rb = seq.record(3), fresh.record(3)
    assert ra is not None and rb is not None and ra["inferenceRoot"] == rb["inferenceRoot"]


def test_an_invalid_batch_is_rejected_and_nothing_is_committed(tmp_path: Path) -> None:
    fresh = node(tmp_path / "c")
    key = fresh.config.accounts[0].private_key
    head = fresh.head()
    origin = L1Origin(0, b"\x01" * 32)
    with pytest.raises(BatchRejected, match="undecodable"):
        fresh.build_from_batch([b"\x02junk"], int(head.timestamp) + 1, origin)
    with pytest.raises(BatchRejected, match="does not build"):
        fresh.build_from_batch([raw(key, 5)], int(head.timestamp) + 1, origin)  # nonce gap
    with pytest.raises(BatchRejected, match="not after"):
        fresh.build_from_batch([raw(key, 0)], int(head.timestamp), origin)
    assert fresh.head() == head
    h = fresh.build_from_batch([raw(key, 0)], int(head.timestamp) + 1, origin)
    assert bytes(fresh.head().hash) == h and origin_of(fresh.head()) == origin


def test_choose_origin_policy() -> None:
    l1 = {b.number: b for b in l1_chain(3, 1000)}
    o0 = L1Origin(0, l1[0].hash, 1000)
    assert choose_origin(o0, 1005, l1.get, 30).number == 0  # L1 block 1 (t=1010) is after the L2 time
    assert choose_origin(o0, 1010, l1.get, 30) == L1Origin(1, l1[1].hash, 1010)  # advance by one
    o2 = L1Origin(2, l1[2].hash, 1020)
    assert choose_origin(o2, 1050, l1.get, 30) == o2  # L1 3 unknown: stay, within the drift
    with pytest.raises(OriginLag):
        choose_origin(o2, 1051, l1.get, 30)
