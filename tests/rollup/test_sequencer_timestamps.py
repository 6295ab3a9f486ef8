"""A sequencer back from an outage walks its origin forward one L1 block per L2 block, and each of
those blocks must lie within ``max_sequencer_drift`` of its origin: with the wall clock alone they
would all be dropped by every deriver. ``attach_sequencer``'s ``max_timestamp`` caps them."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from eth_account import Account

from ai_evm.node.chain import L1Origin, NodeConfig, Sequencer, origin_of
from ai_evm.node.vm import make_resolver
from ai_evm.rollup import codec
from ai_evm.rollup.codec import Batch
from ai_evm.rollup.derive import Deriver, L1Block, RollupConfig, SafeHead
from ai_evm.rollup.node import attach_sequencer
from ai_evm.rollup.sequencing import batch_of_block

CFG = RollupConfig(seq_window=64, channel_timeout=50, max_sequencer_drift=600)
PORTAL = "0x" + "77" * 20


def l1_chain(n: int, start: int) -> list[L1Block]:
    out, parent = [], b"\xff" * 32
    for i in range(n):
        h = bytes([i + 1]) * 32
        out.append(L1Block(i, h, parent, start + 12 * i, (), ()))
        parent = h
    return out


def with_batches(b: L1Block, batches: list[Batch]) -> L1Block:
    data = codec.encode_batcher_data(codec.split_frames(b"c" * 16, codec.encode_channel(batches), 100_000))
    return L1Block(b.number, b.hash, b.parent_hash, b.timestamp, (data,), b.deposits)


def follower(chain: list[L1Block]) -> SimpleNamespace:
    """What ``attach_sequencer`` reads of an :class:`L1Follower`, over a scripted L1."""
    by_number = {b.number: b for b in chain}
    deployment = SimpleNamespace(genesis_origin=L1Origin(0, chain[0].hash, chain[0].timestamp),
                                 rollup_config=CFG, portal=PORTAL, genesis_l1_number=0)
    registry = SimpleNamespace(is_registered=lambda model: True, on_registered=None)
    return SimpleNamespace(deployment=deployment, block=by_number.get, next=len(chain), registry=registry,
                           on_block=None, on_reorg=[])


def test_blocks_after_an_outage_stay_within_the_drift_of_their_origins(tmp_path: Path) -> None:
    start = int(time.time()) - 7200  # L1 blocks of two hours ago: the sequencer was down since
    chain = l1_chain(12, start)
    seq = Sequencer(NodeConfig(tmp_path / "seq", sync=False), make_resolver(None))
    attach_sequencer(seq, follower(chain))  # type: ignore[arg-type]
    key = seq.config.accounts[0].private_key
    for nonce in range(5):
        tx = {"to": "0x000000000000000000000000000000000000dEaD", "value": 1, "gas": 21_000,
              "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "nonce": nonce, "chainId": 31337, "type": 2}
        assert seq.submit([seq.decode_raw(bytes(Account.sign_transaction(tx, key).raw_transaction))]) == [None]
        seq.mine_pending()
    blocks = [seq.chain.get_canonical_block_by_number(n) for n in range(1, 6)]  # type: ignore[arg-type]
    for n, b in enumerate(blocks, 1):
        origin = origin_of(b.header)
        assert origin is not None and origin.number == n  # one L1 block further per L2 block
        assert b.header.timestamp == chain[n].timestamp + CFG.max_sequencer_drift  # capped, not the wall clock
    # every deriver accepts them
    genesis = seq.chain.get_canonical_block_header_by_number(0)  # type: ignore[arg-type]
    deriver = Deriver(CFG, SafeHead(bytes(genesis.hash), 0, int(genesis.timestamp), 0), chain[:1])
    for block in chain[1:6]:
        deriver.add_l1_block(block)
    deriver.add_l1_block(with_batches(chain[6], [batch_of_block(b) for b in blocks]))
    got = []
    for batch in deriver.batches():
        got.append(batch)
        deriver.advance(bytes(blocks[len(got) - 1].hash))
    assert len(got) == 5 and deriver.dropped == [], deriver.dropped


def test_a_live_sequencer_keeps_the_wall_clock(tmp_path: Path) -> None:
    start = int(time.time()) - 30  # recent L1: the cap is far ahead of the wall clock
    chain = l1_chain(3, start)
    seq = Sequencer(NodeConfig(tmp_path / "seq", sync=False), make_resolver(None))
    attach_sequencer(seq, follower(chain))  # type: ignore[arg-type]
    before = int(time.time())
    (mined,) = seq.mine_pending(allow_empty=True)
    header = seq.chain.get_canonical_block_header_by_number(mined.number)  # type: ignore[arg-type]
    assert before <= header.timestamp <= int(time.time()) + 1
