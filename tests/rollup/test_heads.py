"""The block tags ``safe``/``finalized`` of a rollup node and ``aievm_outputAtBlock``.

In process: a sequencer following a scripted L1 mines blocks (one with an inference); its batches
travel through frames into L1 blocks that a :class:`BatchMatcher` reads; the RPC methods resolve
the tags through the node's ``heads`` (a scripted :class:`RollupHeads` where L1 is not needed), and
``aievm_outputAtBlock`` equals :func:`ai_evm.rollup.outputs.output_at` over the same node.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from eth_typing import BlockNumber
from eth_utils import to_checksum_address
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.evm import encode_call
from ai_evm.node.chain import L1Origin, NodeConfig, Sequencer, origin_of
from ai_evm.node.errors import InvalidParams, LimitExceeded, ServerError
from ai_evm.node.methods import MAX_OUTPUT_BLOCKS, EthApi
from ai_evm.node.vm import make_resolver
from ai_evm.rollup import codec
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.config import RollupDeployment
from ai_evm.rollup.derive import L1Block, RollupConfig
from ai_evm.rollup.heads import BatchMatcher, L1Heads
from ai_evm.rollup.outputs import output_at
from ai_evm.rollup.sequencing import batch_of_block, choose_origin
from opml.store import LocalStore

ROOT = Path(__file__).resolve().parents[2]
SINK = "0x000000000000000000000000000000000000dEaD"
PRECOMPILE = to_checksum_address("0x00000000000000000000000000000000000000a1")
CFG = RollupConfig(seq_window=100, channel_timeout=10, max_sequencer_drift=30)


class ScriptedL1:
    """An L1 chain that grows as the sequencer asks for origins: L2 block n's origin is L1 block n,
    stamped with the L2 block's own timestamp.

    So the origins do not depend on how long mining takes. (L1 timestamps fixed in advance, 10 s
    apart from the wall clock, let an inference slowed by a loaded machine move block 5 to the next
    origin, and the test then posted past the end of the scripted chain.)
    """

    def __init__(self, start: int) -> None:
        self.blocks = [L1Block(0, b"\x01" * 32, b"\xee" * 32, start)]

    def get(self, number: int) -> L1Block | None:
        return self.blocks[number] if 0 <= number < len(self.blocks) else None

    def append(self, timestamp: int) -> None:
        n = len(self.blocks)
        self.blocks.append(L1Block(n, bytes([n + 1]) * 32, self.blocks[-1].hash, timestamp))

    def origin_for(self, parent: Any, timestamp: int) -> L1Origin:
        """The sequencer's ``origin_for``: the next L1 block, created at ``timestamp`` if missing."""
        genesis = self.blocks[0]
        origin = origin_of(parent) or L1Origin(0, genesis.hash, genesis.timestamp)
        if origin.number + 1 == len(self.blocks):
            self.append(timestamp)
        return choose_origin(origin, timestamp, self.get, CFG.max_sequencer_drift)


def deployment() -> RollupDeployment:
    a = "0x" + "11" * 20
    return RollupDeployment(1, 31337, a, a, a, a, a, a, a, a, a, a, a, 0, "0x" + "01" * 32, 0,
                            derivation=asdict(CFG))


def sign(key: bytes, nonce: int, to: str = SINK, payload: bytes = b"", gas: int = 60_000) -> bytes:
    fields = {"to": to, "value": 0 if payload else 1, "gas": gas, "maxFeePerGas": 10**10,
              "maxPriorityFeePerGas": 10**9, "nonce": nonce, "chainId": 31337, "type": 2, "data": payload}
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sequencer, list[L1Block]]:
    """A sequencer with 5 blocks over a scripted L1; block 3 holds an inference of digits_mlp."""
    tmp = tmp_path_factory.mktemp("heads")
    store = LocalStore(tmp / "extra")
    model = store.put((ROOT / "models" / "digits_mlp" / "model.bundle").read_bytes())
    from ai_evm.cli.node import open_model_store

    seq = Sequencer(NodeConfig(tmp / "node", sync=False),
                    make_resolver(open_model_store((str(tmp / "extra"),), tmp / "data")))  # type: ignore[arg-type]
    l1 = ScriptedL1(int(time.time()) - 40)
    seq.origin_for = l1.origin_for
    key = seq.config.accounts[0].private_key
    x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")[:1].astype("<f4").tobytes()
    for n in range(5):
        payload = encode_call(model, 40, x) if n == 2 else b""
        tx = seq.decode_raw(sign(key, n, PRECOMPILE if payload else SINK, payload, 2_000_000 if payload else 60_000))
        assert seq.submit([tx]) == [None]
        seq.mine_pending()
    record = seq.record(3)
    assert record is not None and len(record["inferences"]) == 1
    assert [origin_of(seq.chain.get_canonical_block_header_by_number(BlockNumber(n))).number  # type: ignore[union-attr]
            for n in range(1, 6)] == [1, 2, 3, 4, 5]
    for _ in range(3):  # L1 blocks after the last origin, for the batches
        l1.append(l1.blocks[-1].timestamp + 10)
    return seq, l1.blocks


class ScriptedHeads:
    """A :class:`~ai_evm.node.chain.RollupHeads` with given answers."""

    def __init__(self, safe: int, finalized: int, outputs: list[int]) -> None:
        self._safe, self._finalized, self.outputs = safe, finalized, outputs

    def safe(self) -> int:
        return self._safe

    def finalized(self) -> int:
        return self._finalized

    def previous_output(self, number: int) -> int:
        return max([o for o in self.outputs if o < number], default=0)


def test_tags_are_the_head_without_a_rollup_and_l1_heads_with_one(chain: tuple[Sequencer, list[L1Block]]) -> None:
    seq, _ = chain
    api = EthApi(seq)
    head = int(seq.head().block_number)
    assert head == 5
    for tag in ("safe", "finalized", "latest"):
        assert int(api.eth_getBlockByNumber(tag)["number"], 16) == head  # type: ignore[index]
    seq.heads = ScriptedHeads(safe=4, finalized=2, outputs=[2])
    try:
        assert int(api.eth_getBlockByNumber("safe")["number"], 16) == 4  # type: ignore[index]
        assert int(api.eth_getBlockByNumber("finalized")["number"], 16) == 2  # type: ignore[index]
        assert int(api.eth_getBlockByNumber("latest")["number"], 16) == head  # type: ignore[index]
        sink = SINK
        assert api.eth_getBalance(sink, "finalized") == hex(2)  # transfers of 1 wei in blocks 1 and 2
        assert api.eth_getBalance(sink, "safe") == hex(3)  # block 3 was the inference
        assert api.eth_call({"to": sink}, "finalized") == "0x"
        assert api.eth_getBlockTransactionCountByNumber("finalized") == "0x1"
        seq.heads = ScriptedHeads(safe=9, finalized=7, outputs=[])  # L1 ahead of a lagging node: the head
        assert int(api.eth_getBlockByNumber("finalized")["number"], 16) == head  # type: ignore[index]
        assert api.eth_getBalance(sink, "safe") == hex(4)
    finally:
        seq.heads = None


def test_output_at_block_equals_the_proposers_output(chain: tuple[Sequencer, list[L1Block]]) -> None:
    seq, _ = chain
    api = EthApi(seq)

    def rpc(method: str, *params: Any) -> Any:
        return getattr(api, method)(*params)

    got = api.aievm_outputAtBlock("0x4")
    assert got is not None
    want = output_at(rpc, 0, 4)
    assert got["outputRoot"] == "0x" + want.output_root.hex()
    assert got["inferenceRoot"] == "0x" + want.inference_root.hex()
    assert (got["blockHash"], got["stateRoot"]) == ("0x" + want.l2_block_hash.hex(), "0x" + want.state_root.hex())
    assert got["previousBlock"] == "0x0" and len(got["records"]) == 1
    seq.heads = ScriptedHeads(safe=5, finalized=0, outputs=[2, 5])
    try:  # after the output at 2, the output at 4 commits to the inference of block 3; at 3 too
        got = api.aievm_outputAtBlock("0x4")
        assert got is not None and got["previousBlock"] == "0x2"
        assert got["outputRoot"] == "0x" + output_at(rpc, 2, 4).output_root.hex()
        assert api.aievm_outputAtBlock("0x2")["records"] == []  # type: ignore[index]  # after 0: no inference
        assert api.aievm_outputAtBlock("0x5")["previousBlock"] == "0x2"  # type: ignore[index]
        seq.heads = ScriptedHeads(safe=5, finalized=0, outputs=[3])
        assert api.aievm_outputAtBlock("0x4")["records"] == []  # type: ignore[index]
    finally:
        seq.heads = None
    assert api.aievm_outputAtBlock("0x6") is None  # beyond the head
    with pytest.raises(InvalidParams, match="genesis"):
        api.aievm_outputAtBlock("0x0")
    with pytest.raises(InvalidParams):
        api.aievm_outputAtBlock("soon")


def test_output_at_block_errors_are_named(chain: tuple[Sequencer, list[L1Block]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seq, _ = chain
    api = EthApi(seq)

    class Down(ScriptedHeads):
        def previous_output(self, number: int) -> int:
            raise ConnectionError("connection refused")

    seq.heads = Down(0, 0, [])
    try:
        with pytest.raises(ServerError, match="cannot read the previous output from L1: connection refused"):
            api.aievm_outputAtBlock("0x3")
    finally:
        seq.heads = None
    monkeypatch.setattr("ai_evm.node.methods.MAX_OUTPUT_BLOCKS", 3)
    with pytest.raises(LimitExceeded, match="spans 4 blocks"):
        api.aievm_outputAtBlock("0x4")
    assert MAX_OUTPUT_BLOCKS == 10_000


def post(l1: list[L1Block], number: int, frames: list[bytes]) -> L1Block:
    b = l1[number]
    return L1Block(b.number, b.hash, b.parent_hash, b.timestamp, tuple(frames))


def test_the_sequencers_safe_head_follows_its_batches_on_l1(chain: tuple[Sequencer, list[L1Block]]) -> None:
    seq, l1 = chain
    blocks = [seq.chain.get_canonical_block_by_number(BlockNumber(n)) for n in range(1, 6)]
    batches = [batch_of_block(b) for b in blocks]
    first = codec.encode_batcher_data(codec.split_frames(b"a" * 16, codec.encode_channel(batches[:3]), 10_000))
    rest = codec.encode_batcher_data(codec.split_frames(b"b" * 16, codec.encode_channel(batches[3:]), 10_000))
    origin = max(o.number for o in (origin_of(b.header) for b in blocks) if o is not None)
    assert origin == 5 and len(l1) == origin + 4
    matcher = BatchMatcher(seq, deployment())
    assert matcher.safe == 0
    for n in range(origin + 1):
        matcher.add_l1_block(l1[n])
    assert matcher.safe == 0  # nothing posted yet
    matcher.add_l1_block(post(l1, origin + 1, [first]))
    assert matcher.safe == 3 and matcher.mismatches == 0
    # a batch for block 4 that is not the block the sequencer built: reported, the safe head stays
    forged = codec.Batch(batches[3].parent_hash, batches[3].epoch_number, batches[3].epoch_hash,
                         batches[3].timestamp, ())
    other = codec.encode_batcher_data(codec.split_frames(b"c" * 16, codec.encode_channel([forged]), 10_000))
    matcher.add_l1_block(post(l1, origin + 2, [other]))
    assert matcher.safe == 3 and matcher.mismatches == 1
    matcher.add_l1_block(post(l1, origin + 3, [rest]))
    assert matcher.safe == 5 and matcher.deriver.safe.hash == bytes(seq.head().hash)


class FakeCall:
    def __init__(self, value: Any) -> None:
        self.value = value

    def call(self) -> Any:
        return self.value


class FakeOracle:
    """The OutputOracle's views over a list of output block numbers, counting calls."""

    def __init__(self, blocks: list[int], finalized: int) -> None:
        self.blocks, self.final, self.calls = blocks, finalized, 0
        self.functions = self

    def outputCount(self) -> FakeCall:  # noqa: N802 - the contract's names
        return FakeCall(len(self.blocks))

    def finalizedCount(self) -> FakeCall:  # noqa: N802
        return FakeCall(self.final)

    def output(self, i: int) -> FakeCall:
        self.calls += 1
        return FakeCall((b"", b"", b"", self.blocks[i]))


def test_l1_heads_reads_the_oracle(chain: tuple[Sequencer, list[L1Block]]) -> None:
    seq, _ = chain

    class Derived:
        class safe:  # noqa: N801 - Derivation.safe's shape
            number = 4

    heads = L1Heads.__new__(L1Heads)  # no L1 connection: the oracle is replaced below
    heads.derivation, heads.matcher, heads._finalized = Derived(), None, 0  # type: ignore[assignment]
    heads._stop = __import__("threading").Event()
    oracle = FakeOracle(list(range(10, 1010, 10)), finalized=0)
    heads.oracle = oracle  # type: ignore[assignment]
    heads.poll_once()
    assert heads.finalized() == 0 and heads.safe() == 4
    oracle.final = 37
    heads.poll_once()
    assert heads.finalized() == 370
    oracle.final = 36  # never backwards
    heads.poll_once()
    assert heads.finalized() == 370
    for number, want in ((1, 0), (10, 0), (11, 10), (20, 10), (555, 550), (1000, 990), (5000, 1000)):
        oracle.calls = 0
        assert heads.previous_output(number) == want, number
        assert oracle.calls <= 9  # a binary search, not a scan of 100 outputs
    oracle.blocks = []
    assert heads.previous_output(7) == 0


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")
def test_l1_heads_on_a_real_output_oracle(chain: tuple[Sequencer, list[L1Block]], tmp_path: Path) -> None:
    seq, _ = chain
    with Anvil(tmp_path / "anvil.log") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        w3.eth.default_account = w3.eth.accounts[0]
        art = artifact("OutputOracle")
        factory = w3.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
        receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(w3.eth.accounts[0], 1, 100).transact())
        oracle = w3.eth.contract(address=receipt["contractAddress"], abi=list(art.abi))
        now = int(w3.eth.get_block("latest")["timestamp"])
        for number in (10, 20, 30):
            w3.eth.wait_for_transaction_receipt(
                oracle.functions.propose(number, now, b"\x01" * 32, b"\x02" * 32, b"").transact({"value": 1}))  # type: ignore[arg-type]

        class Derived:
            class safe:  # noqa: N801 - Derivation.safe's shape
                number = 33

        d = replace(deployment(), oracle=str(receipt["contractAddress"]))
        heads = L1Heads(w3, d, seq, Derived())  # type: ignore[arg-type]
        heads.poll_once()
        assert (heads.safe(), heads.finalized()) == (33, 0)
        assert [heads.previous_output(n) for n in (1, 10, 11, 20, 25, 30, 31, 99)] == [0, 0, 10, 10, 20, 20, 30, 30]
        w3.provider.make_request("evm_increaseTime", [101])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        w3.eth.wait_for_transaction_receipt(oracle.functions.finalize(1).transact())
        heads.start()
        try:
            deadline = time.monotonic() + 20
            while heads.finalized() != 20 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert heads.finalized() == 20 and heads.error == ""
        finally:
            heads.stop()
