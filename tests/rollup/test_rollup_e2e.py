"""The rollup on real components: anvil as L1 with the contracts deployed, the sequencer node
following it, the batcher process posting batches (calldata, then blobs), and a validator node that
derives the chain from L1 alone: same block hashes and state roots; sends to the validator are
refused; a restarted batcher resumes from what L1 holds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.devnet import DEV_KEYS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai_evm" / "node"))
from nodeproc import NodeProcess, RpcFailure, rollup_pair, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

ROOT = Path(__file__).resolve().parents[2]
BATCHER = Account.from_key(DEV_KEYS[1])
SINK = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture(scope="module")
def l1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Anvil(Path(tmp_path_factory.mktemp("rollup-l1")) / "anvil.log", block_time=1) as url:
        yield url


def batcher_once(rollup: Path, l1: str, l2: str, da: str = "calldata") -> str:
    out = subprocess.run([sys.executable, "-c", "from ai_evm.cli import main; main()", "batcher", "--rollup",
                          str(rollup), "--l1", l1, "--l2", l2, "--key", "0x" + BATCHER.key.hex(), "--da", da,
                          "--once"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def send_transfers(seq: NodeProcess, key: Any, first_nonce: int, n: int) -> None:
    for i in range(n):
        tx = {"to": SINK, "value": 10 + i, "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
              "nonce": first_nonce + i, "chainId": 31337, "type": 2}
        seq.rpc("eth_sendRawTransaction", "0x" + bytes(Account.sign_transaction(tx, key).raw_transaction).hex())



def test_validator_derives_the_sequencers_chain_from_l1(l1: str, tmp_path: Path) -> None:
    d, rollup, seq, val = rollup_pair(l1, tmp_path)
    try:
        dev_key = DEV_KEYS[0]
        send_transfers(seq, dev_key, 0, 3)
        head = int(seq.rpc("eth_blockNumber"), 16)
        assert head >= 3
        blk = seq.rpc("eth_getBlockByNumber", hex(head), False)
        assert len(bytes.fromhex(blk["extraData"][2:])) == 8  # names its L1 origin
        assert seq.rpc("eth_getBlockByNumber", "safe", False)["number"] == "0x0"  # nothing on L1 yet
        out = batcher_once(rollup, l1, seq.url)
        assert f"L2 blocks 1..{head}" in out
        assert "nothing to post" in batcher_once(rollup, l1, seq.url)  # a new batcher resumes from L1
        wait_for(lambda: seq.rpc("eth_getBlockByNumber", "safe", False)["number"] == hex(head), 60,
                 "the sequencer's safe head to reach its first batch")
        send_transfers(seq, dev_key, 3, 2)
        head2 = int(seq.rpc("eth_blockNumber"), 16)
        assert f"L2 blocks {head + 1}..{head2}" in batcher_once(rollup, l1, seq.url, da="blobs")
        wait_for(lambda: int(val.rpc("eth_blockNumber"), 16) == head2, 120, "the validator to derive every block")
        for n in range(head2 + 1):
            a = seq.rpc("eth_getBlockByNumber", hex(n), False)
            b = val.rpc("eth_getBlockByNumber", hex(n), False)
            assert (a["hash"], a["stateRoot"]) == (b["hash"], b["stateRoot"]), n
        # the block tags follow L1: every block's batch is on L1 (safe); no output yet (finalized 0)
        wait_for(lambda: seq.rpc("eth_getBlockByNumber", "safe", False)["number"] == hex(head2), 60,
                 "the sequencer's safe head to reach its batches on L1")
        assert val.rpc("eth_getBlockByNumber", "safe", False)["number"] == hex(head2)
        assert seq.rpc("eth_getBlockByNumber", "finalized", False)["number"] == "0x0"
        assert val.rpc("eth_getBlockByNumber", "finalized", False)["number"] == "0x0"
        output = seq.rpc("aievm_outputAtBlock", hex(head2))
        assert output == val.rpc("aievm_outputAtBlock", hex(head2)) and output["previousBlock"] == "0x0"
        tx = {"to": SINK, "value": 1, "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
              "nonce": 5, "chainId": 31337, "type": 2}
        with pytest.raises(RpcFailure, match="derives its chain from L1"):
            val.rpc("eth_sendRawTransaction", "0x" + bytes(Account.sign_transaction(tx, dev_key).raw_transaction).hex())
    finally:
        seq.stop()
        val.stop()
