"""Derivation under adversarial L1 data (ai_evm.rollup.derive) and rollup.json fuzzing (ai_evm.rollup.config).

Random L1 chains carry garbage batcher data, truncated and reordered frames, channels that time out, honest
batches (some posted late, racing the forced-block window) and adversarial ones (wrong parent, epoch from
another fork, timestamps out of range, deposit transactions). Properties:

* the deriver never raises (an L1 reorg raises :class:`L1Reorg`, which the caller answers with ``rewind_l1``);
* every derived block extends the previous one (parent, strictly later timestamp, epoch the same or next);
* a deriver fed the final chain straight, one that also saw forks of random depth in between (reorgs
  answered as ``ai_evm.rollup.node`` does), and one rewound at a random depth and replayed all end on the
  same L2 chain.

rollup.json: random JSON values per field, random bytes and deeply nested documents load as a config whose
properties work or raise :class:`RollupConfigError`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict
from pathlib import Path

import pytest
import rlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_evm.rollup import codec
from ai_evm.rollup.codec import Batch
from ai_evm.rollup.config import RollupConfigError, RollupDeployment
from ai_evm.rollup.derive import Deriver, L1Block, L1Reorg, RollupConfig, SafeHead

GENESIS_TS = 1000
REJECT = b"\xbb"  # a transaction starting with this byte does not build (the block is rejected on L2)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def l2_hash(parent: bytes, b: Batch) -> bytes:
    """The L2 block a batch builds into: a function of its content (as the real builder's hash is)."""
    return hashlib.sha256(parent + rlp.encode(b.to_rlp())).digest()


def block_hash(tag: str, number: int) -> bytes:
    return hashlib.sha256(f"{tag}/{number}".encode()).digest()


class Scenario:
    """A canonical L1 chain, forks off it, and everything posted to the inbox."""

    def __init__(self, seed: int) -> None:
        self.r = r = random.Random(seed)
        self.cfg = RollupConfig(seq_window=r.randint(2, 8), channel_timeout=r.randint(1, 6),
                                max_sequencer_drift=r.choice([12, 30, 100]))
        self.n = r.randint(12, 40)
        self.genesis = SafeHead(b"\x00" * 32, 0, GENESIS_TS, 0)
        self.history = [L1Block(0, block_hash("c", 0), b"\xff" * 32, GENESIS_TS)]
        self.canon = self.chain("c", self.history[0], self.n)
        # the honest sequencer's intended chain: 0-2 blocks per L1 block, epochs lagging a little
        self.intended: list[Batch] = []
        parent, ts = self.genesis.hash, GENESIS_TS
        for blk in self.canon:
            for _ in range(r.randint(0, 2)):
                epoch = self.canon[max(0, blk.number - 1 - r.randint(0, 2))] if blk.number > 1 else self.history[0]
                ts = max(ts + 1, epoch.timestamp)
                if ts > epoch.timestamp + self.cfg.max_sequencer_drift:
                    continue
                txs = tuple(bytes([r.choice([2, 0x7E, 0xBB, 1])]) + r.randbytes(r.randint(0, 4))
                            for _ in range(r.randint(0, 2)))
                b = Batch(parent, epoch.number, epoch.hash, ts, txs)
                self.intended.append(b)
                parent = l2_hash(parent, b)
        self.fill(self.canon, self.intended)

    def chain(self, tag: str, base: L1Block, n: int, start: int = 1) -> list[L1Block]:
        out, prev = [], base
        for i in range(start, start + n):
            blk = L1Block(i, block_hash(tag, i), prev.hash, prev.timestamp + self.r.choice([1, 12, 12, 40]))
            out.append(blk)
            prev = blk
        return out

    def mutate(self, b: Batch, blocks: list[L1Block]) -> Batch:
        r = self.r
        k = r.randint(0, 5)
        if k == 0:
            return Batch(r.randbytes(32), b.epoch_number, b.epoch_hash, b.timestamp, b.transactions)
        if k == 1:
            e = r.choice(blocks)
            return Batch(b.parent_hash, e.number, e.hash, b.timestamp, b.transactions)
        if k == 2:
            return Batch(b.parent_hash, b.epoch_number, b.epoch_hash, b.timestamp + r.choice([-2, 0, 200, 2**63]),
                         b.transactions)
        if k == 3:
            return Batch(b.parent_hash, b.epoch_number, b.epoch_hash, b.timestamp, b.transactions + (b"\x7e\x01",))
        if k == 4:
            return Batch(b.parent_hash, b.epoch_number + r.choice([1, 2, 2**64 - 1 - b.epoch_number]),
                         r.randbytes(32), b.timestamp, b.transactions)
        return b

    def fill(self, blocks: list[L1Block], batches: list[Batch]) -> None:
        """Put the batches (some mutated, some late, some twice) and garbage into ``blocks``' inbox data."""
        r = self.r
        data: list[list[bytes]] = [[] for _ in blocks]
        i, pos = 0, 0
        while i < len(batches):
            chunk = batches[i : i + r.randint(1, 3)]
            i += len(chunk)
            if r.random() < 0.3:
                chunk = [self.mutate(b, blocks) for b in chunk]
            if r.random() < 0.15:
                chunk = chunk[::-1]
            pos = min(len(blocks) - 1, pos + r.choice([0, 1, 1, 2, self.cfg.seq_window]))
            frames = codec.split_frames(r.randbytes(16), codec.encode_channel(chunk), r.choice([20, 60, 10_000]))
            if r.random() < 0.1 and len(frames) > 1:
                frames = frames[1:] if r.random() < 0.5 else [frames[1], frames[0]] + frames[2:]
            at = pos
            for f in frames:
                data[at].append(codec.encode_batcher_data([f]))
                if r.random() < 0.3:
                    at = min(len(blocks) - 1, at + r.randint(1, self.cfg.channel_timeout + 1))
            if r.random() < 0.1:  # a duplicate channel, later
                data[min(len(blocks) - 1, at + 1)].append(codec.encode_batcher_data(frames))
        for d in data:
            for _ in range(r.choice([0, 0, 1, 2])):
                g = r.randint(0, 3)
                if g == 0:
                    d.insert(r.randint(0, len(d)), r.randbytes(r.randint(0, 40)))
                elif g == 1 and d:
                    s = r.choice(d)
                    d.insert(r.randint(0, len(d)), s[: r.randint(0, len(s))])
                elif g == 2:
                    f = codec.Frame(r.randbytes(16), r.randint(0, 3), r.randbytes(r.randint(0, 30)), r.random() < .5)
                    d.insert(r.randint(0, len(d)), codec.encode_batcher_data([f]))
                else:
                    d.insert(r.randint(0, len(d)), b"\x00" + r.randbytes(16) + b"\x00\x00\xff\xff\xff\xff")
        for k, blk in enumerate(blocks):
            blocks[k] = L1Block(blk.number, blk.hash, blk.parent_hash, blk.timestamp, tuple(data[k]))

    def fork(self, at: int, depth: int, tag: str) -> list[L1Block]:
        """``depth`` blocks replacing the canonical ones after ``at``, with their own inbox data."""
        base = self.history[0] if at == 0 else self.canon[at - 1]
        blocks = self.chain(tag, base, depth, start=at + 1)
        self.fill(blocks, [self.mutate(b, blocks) for b in self.intended[: self.r.randint(0, 6)]])
        return blocks


class Driver:
    """A node's use of the deriver: read a block, then build every batch (advance / reject)."""

    def __init__(self, s: Scenario) -> None:
        self.d = Deriver(s.cfg, s.genesis, s.history)
        self.chain: list[Batch] = []

    def feed(self, blk: L1Block, canonical: dict[int, bytes]) -> None:
        try:
            self.d.add_l1_block(blk)
        except L1Reorg:
            n = blk.number - 1  # the node's follower walks back to the common ancestor
            while self.d.l1_hash(n) != canonical.get(n):
                n -= 1
            safe = self.d.rewind_l1(n)
            del self.chain[safe.number :]
            self.d.add_l1_block(blk)
        self.build()

    def build(self) -> None:
        while (b := self.d.next_batch()) is not None:
            safe = self.d.safe
            assert b.parent_hash == safe.hash and b.timestamp > safe.timestamp
            assert b.epoch_number in (safe.epoch_number, safe.epoch_number + 1)
            assert b.epoch_number <= (self.d.last_l1 or 0)
            if not self.d.pending_forced and any(tx[:1] == REJECT for tx in b.transactions):
                self.d.reject("does not build")
                continue
            self.chain.append(b)
            assert self.d.advance(l2_hash(safe.hash, b)).number == len(self.chain)


@SETTINGS
@given(st.integers(0, 2**64 - 1))
def test_derivers_agree_under_garbage_races_and_reorgs(seed: int) -> None:
    s = Scenario(seed)
    canonical = {b.number: b.hash for b in s.history + s.canon}
    straight = Driver(s)
    for blk in s.canon:
        straight.feed(blk, canonical)
    # one that sees forks of random depth (then the canonical blocks again)
    forked = Driver(s)
    i = 0
    while i < len(s.canon):
        forked.feed(s.canon[i], canonical)
        i += 1
        if s.r.random() < 0.15:
            depth = s.r.randint(1, 6)
            at = max(0, i - s.r.randint(0, min(i, 5)))  # the fork branches at or below the last block read
            fork = s.fork(at, depth, f"f{i}")
            if at < i:
                safe = forked.d.rewind_l1(at)
                del forked.chain[safe.number :]
            fork_hashes = {**canonical, **{b.number: b.hash for b in fork}}
            for blk in fork:
                forked.feed(blk, fork_hashes)
            for blk in s.canon[at : i]:  # back to the canonical chain: the first block raises L1Reorg
                forked.feed(blk, canonical)
    if forked.d.last_l1 != s.canon[-1].number:  # a fork above the canonical tip (no block left to replace it)
        n = s.canon[-1].number
        while forked.d.l1_hash(n) != canonical[n]:
            n -= 1
        del forked.chain[forked.d.rewind_l1(n).number :]
        for blk in s.canon[n:]:
            forked.feed(blk, canonical)
    # one rewound to a random depth at the end and replayed
    replayed = Driver(s)
    for blk in s.canon:
        replayed.feed(blk, canonical)
    back = s.r.randint(0, min(len(s.canon), 60))
    safe = replayed.d.rewind_l1(len(s.canon) - back)
    del replayed.chain[safe.number :]
    for blk in s.canon[len(s.canon) - back :]:
        replayed.feed(blk, canonical)
    assert forked.chain == straight.chain
    assert replayed.chain == straight.chain
    assert forked.d.safe == straight.d.safe == replayed.d.safe
    # the sequencing window holds: the safe head's next epoch is not more than a window behind L1
    assert straight.d.safe.epoch_number + 1 + s.cfg.seq_window > s.canon[-1].number or \
        s.canon[-1].number - straight.d.safe.epoch_number <= s.cfg.seq_window


A = "0x" + "11" * 20


def _good() -> dict[str, object]:
    d = RollupDeployment(1, 2, A, A, A, A, A, A, A, A, A, A, A, 5, "0x" + "01" * 32, 100)
    return json.loads(json.dumps(asdict(d)))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                    | st.text(max_size=70) | st.just("0x" + "ab" * 32) | st.just("0x" + "ab" * 20) | st.just("0xzz"),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=20), c, max_size=3),
                    max_leaves=6)


def _use(d: RollupDeployment) -> None:
    """What the processes read of a loaded config."""
    assert isinstance(d.genesis_origin.hash, bytes) and len(d.genesis_origin.hash) == 32
    assert isinstance(d.rollup_config, RollupConfig)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(_good()) + ["extra"]), JSON, st.booleans())
def test_rollup_json_field_fuzz(tmp_path: Path, field: str, value: object, drop: bool) -> None:
    raw = _good()
    if drop:
        raw.pop(field, None)
    else:
        raw[field] = value
    p = tmp_path / "rollup.json"
    p.write_text(json.dumps(raw))
    try:
        d = RollupDeployment.load(p)
    except RollupConfigError as e:
        assert str(e).count("\n") == 0
        return
    _use(d)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", "1e999", "\"x\"", "[" * 3000 + "]" * 3000,
                                  "{\"a\":" * 3000 + "1" + "}" * 3000])
def test_rollup_json_malformed_documents(tmp_path: Path, text: str) -> None:
    p = tmp_path / "rollup.json"
    p.write_text(text)
    with pytest.raises(RollupConfigError):
        RollupDeployment.load(p)


def test_rollup_json_bytes_and_directory(tmp_path: Path) -> None:
    p = tmp_path / "rollup.json"
    p.write_bytes(b"\xff\xfe{\x00")
    with pytest.raises(RollupConfigError):
        RollupDeployment.load(p)
    with pytest.raises(RollupConfigError):
        RollupDeployment.load(tmp_path)


def test_a_block_read_again_raises_l1reorg_and_a_gap_is_named() -> None:
    """Found by the fuzzing: a replaced block whose parent is still canonical was read over the old one (the
    blocks above it from the old fork stayed, and the derivers disagreed)."""
    s = Scenario(1)
    d = Deriver(s.cfg, s.genesis, s.history)
    for blk in s.canon[:4]:
        d.add_l1_block(blk)
    other = L1Block(3, block_hash("other", 3), s.canon[1].hash, s.canon[2].timestamp)
    with pytest.raises(L1Reorg):
        d.add_l1_block(other)
    with pytest.raises(ValueError, match="in order"):
        d.add_l1_block(L1Block(9, block_hash("other", 9), block_hash("other", 8), 5000))
    d.rewind_l1(2)
    d.add_l1_block(other)
    assert d.l1_hash(3) == other.hash and d.l1_hash(4) is None


def test_rewind_to_the_last_block_read_keeps_the_state() -> None:
    """A reorg whose common ancestor is the last block read (L1 came back) left nothing to forget: it raised
    ReorgTooDeep (no checkpoint is kept for the last block)."""
    s = Scenario(2)
    d = Driver(s)
    canonical = {b.number: b.hash for b in s.history + s.canon}
    for blk in s.canon:
        d.feed(blk, canonical)
    safe = d.d.safe
    assert d.d.rewind_l1(s.canon[-1].number) == safe
    assert d.d.next_batch() is None  # everything was derived already


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2))
def test_codec_decoders_raise_only_codec_errors(data: bytes, how: int) -> None:
    """Inbox bytes: frames of batcher data, a channel's zlib/RLP, wrapped the three ways the deriver reads them."""
    import zlib

    blob = data if how == 0 else zlib.compress(data) if how == 1 else zlib.compress(rlp.encode([[data, 1, data, 2,
                                                                                                 [data]]]))
    try:
        codec.decode_batcher_data(b"\x00" + blob if how else blob)
    except codec.CodecError:
        pass
    try:
        codec.decode_channel(blob)
    except codec.CodecError:
        pass


def test_deeply_nested_channel_rlp_is_dropped_not_raised() -> None:
    """Found: a channel of RLP lists nested 100,000 deep (a few hundred bytes of zlib) raised RecursionError out
    of decode_channel, through ChannelBank.read, out of the deriver."""
    import zlib

    payload = b"\xc0"
    for _ in range(100_000):
        n = len(payload)
        k = (n.bit_length() + 7) // 8
        payload = (bytes([0xC0 + n]) if n < 56 else bytes([0xF7 + k]) + n.to_bytes(k, "big")) + payload
    channel = zlib.compress(payload)
    with pytest.raises(codec.CodecError, match="nested too deeply"):
        codec.decode_channel(channel)
    s = Scenario(3)
    d = Deriver(s.cfg, s.genesis, s.history)
    frames = codec.split_frames(b"n" * 16, channel, 100_000)
    blk = s.canon[0]
    d.add_l1_block(L1Block(blk.number, blk.hash, blk.parent_hash, blk.timestamp, (codec.encode_batcher_data(frames),)))
    assert any("nested too deeply" in why for why in d.dropped)
