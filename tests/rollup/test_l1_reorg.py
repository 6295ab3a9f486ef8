"""L1 reorgs: the rollup follows the chain L1 ends up with.

On anvil (interval mining), ``evm_revert`` to a snapshot replaces every later L1 block by new ones
(other timestamps, and without the transactions mined after the snapshot): a real reorg as every
reader sees it. Here it removes a batch and the L1 blocks that later L2 blocks named as origins:

- the validator goes back to the derivation state it had with the common ancestor, rewinds its L2
  chain to that state's safe head, and derives again from the new L1 blocks;
- the sequencer rewinds its L2 blocks whose origin L1 no longer has and sends their transactions
  again (they land in new blocks on the new origins); idle, it mines empty blocks to keep its origin
  near L1's head (else a batch after an idle spell would fall outside its origin's window);
- the batcher sees its last post gone and posts again from what L1 holds;
- in the end the validator's chain is the sequencer's, hash for hash, and every transfer is in it.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from ai_evm.node.chain import MAX_ORIGIN_LAG
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.batcher import Batcher
from ai_evm.rollup.devnet import DEV_KEYS
from ai_evm.rollup.node import L1Follower

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai_evm" / "node"))
from nodeproc import NodeProcess, rollup_pair, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

DEPLOYER = Account.from_key(DEV_KEYS[0])
BATCHER = Account.from_key(DEV_KEYS[1])
SINK = "0x000000000000000000000000000000000000bEEF"


@pytest.fixture()
def l1(tmp_path: Path) -> Iterator[str]:
    with Anvil(tmp_path / "anvil.log", block_time=1) as url:
        yield url


def send(node: NodeProcess, nonce: int, value: int) -> str:
    tx = {"to": SINK, "value": value, "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
          "nonce": nonce, "chainId": 31337, "type": 2}
    return str(node.rpc("eth_sendRawTransaction",
                        "0x" + bytes(Account.sign_transaction(tx, DEV_KEYS[0]).raw_transaction).hex()))



def origin(node: NodeProcess, number: int) -> int:
    return int(node.rpc("eth_getBlockByNumber", hex(number), False)["extraData"], 16)


def test_the_rollup_follows_an_l1_reorg(l1: str, tmp_path: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(l1))
    d, rollup, seq, val = rollup_pair(l1, tmp_path)
    l2 = Web3(Web3.HTTPProvider(seq.url))
    batcher = Batcher(w3, l2, d, BATCHER.key)
    behind = L1Follower(w3, d, confirmations=3)  # --l1-confs 3: reads L1 three blocks behind its head
    before = int(w3.eth.block_number)
    behind.poll_once()
    assert before - 3 + 1 <= behind.next <= int(w3.eth.block_number) - 3 + 1
    try:
        for i in range(2):
            send(seq, i, 100 + i)
        p1 = batcher.step()
        assert p1 is not None
        first = p1.last
        wait_for(lambda: int(val.rpc("eth_blockNumber"), 16) == first, 90, "the validator to derive the first batch")

        snap = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        fork_at = int(w3.eth.block_number)
        # after the snapshot: L2 blocks on newer L1 origins (an idle automine sequencer mines empty
        # blocks to keep its origin within MAX_ORIGIN_LAG of L1), and a batch carrying them
        wait_for(lambda: int(w3.eth.block_number) >= fork_at + MAX_ORIGIN_LAG + 3, 60, "L1 to move on")
        wait_for(lambda: origin(seq, int(seq.rpc("eth_blockNumber"), 16)) > fork_at, 30,
                 "the idle sequencer to follow L1 with empty blocks")
        for i in range(2, 5):
            send(seq, i, 100 + i)
        posted = batcher.step()
        assert posted is not None
        head = posted.last
        assert origin(seq, head) > fork_at, "the test needs an L2 block whose origin the reorg removes"
        wait_for(lambda: int(val.rpc("eth_blockNumber"), 16) == head, 90, "the validator to derive the second batch")
        old_hash = seq.rpc("eth_getBlockByNumber", hex(head), False)["hash"]

        assert w3.provider.make_request("evm_revert", [snap])["result"] is True  # type: ignore[arg-type]
        # new L1 blocks replace the removed ones (interval mining goes on from the snapshot)
        wait_for(lambda: int(w3.eth.block_number) >= fork_at + 3, 30, "L1 to mine past the fork")

        # the sequencer drops the blocks on removed origins and mines their transfers again
        def sequencer_rebuilt() -> bool:
            try:
                return rebuilt()
            except TypeError:  # a block read as null: the sequencer rewound between two reads
                return False

        def rebuilt() -> bool:
            n = int(seq.rpc("eth_blockNumber"), 16)
            block = seq.rpc("eth_getBlockByNumber", hex(n), False)  # (None: rewound since the number was read)
            return block is not None and block["hash"] != old_hash and \
                int(seq.rpc("eth_getTransactionCount", DEPLOYER.address, "latest"), 16) == 5 and \
                all(origin(seq, k) <= int(w3.eth.block_number) for k in range(first + 1, n + 1))
        wait_for(sequencer_rebuilt, 90, "the sequencer to rebuild its chain on the new L1 blocks")
        for k in range(first + 1, int(seq.rpc("eth_blockNumber"), 16) + 1):  # every origin is canonical now
            blk = seq.rpc("eth_getBlockByNumber", hex(k), False)
            o = int(blk["extraData"], 16)
            assert "0x" + bytes(w3.eth.get_block(o)["hash"]).hex() == blk["mixHash"], k

        # the batcher's last post is gone from L1: it posts again from what L1 holds
        again = batcher.step()
        assert batcher.resyncs == 1 and again is not None and again.first == first + 1
        new_head = again.last
        wait_for(lambda: int(val.rpc("eth_blockNumber"), 16) >= new_head and
                 val.rpc("eth_getBlockByNumber", hex(new_head), False)["hash"] ==
                 seq.rpc("eth_getBlockByNumber", hex(new_head), False)["hash"], 120,
                 "the validator to derive the rebuilt chain")
        for k in range(new_head + 1):
            a = seq.rpc("eth_getBlockByNumber", hex(k), False)
            b = val.rpc("eth_getBlockByNumber", hex(k), False)
            assert (a["hash"], a["stateRoot"]) == (b["hash"], b["stateRoot"]), k
        assert int(val.rpc("eth_getBalance", SINK, hex(new_head)), 16) == sum(100 + i for i in range(5))
        for node in (seq, val):
            assert "L1 reorg" in node.log.read_text()
    finally:
        seq.stop()
        val.stop()

