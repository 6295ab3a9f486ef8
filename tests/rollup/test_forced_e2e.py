"""A silent batcher cannot keep a deposit off L2 (``docs/rollup.md`` "Forced blocks"), on real components.

anvil as L1 (a block a second) with a rollup whose sequencing window is 8 L1 blocks, the sequencer
and a deriving validator as node processes, the batcher in process. The batcher posts one transfer,
then stops; a deposit is made on L1 and the sequencer sends another transfer (with interval mining,
the sequencer is then killed -9, and restarted once the deposit is forced in). With no batch, the
validator derives forced blocks once the window expires, the deposit first in its epoch's block
(the recipient's balance changes on the validator). The sequencer replaces its unposted blocks by
the same forced blocks and sends its transfer again; the batcher restarts, counts the blocks L1
already forced as posted, and posts the rest; in the end the validator's chain is the sequencer's, block for
block, with the deposit and both transfers, and an output over the forced blocks proposed from the
validator's chain is correct for a validator agent reading the sequencer.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.dispute.client import L1
from ai_evm.dispute.deploy import Web3Deployer
from ai_evm.rollup.agents import Proposer, Validator
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.batcher import Batcher
from ai_evm.rollup.deploy import RollupParams, deploy_rollup
from ai_evm.rollup.devnet import DEV_KEYS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai_evm" / "node"))
from nodeproc import NodeProcess, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

DEPLOYER, BATCHER, PROPOSER, USER = (Account.from_key(k) for k in DEV_KEYS[:4])
RECIPIENT = Account.from_key("0x" + "43" * 32).address  # no L2 balance before the deposit
SINK = "0x000000000000000000000000000000000000bEEF"
SEQ_WINDOW = 8
ETH = 10**18


@pytest.fixture()
def l1(tmp_path: Path) -> Iterator[str]:
    with Anvil(tmp_path / "anvil.log", block_time=1) as url:
        yield url


def send(node: NodeProcess, nonce: int) -> str:
    tx = {"to": SINK, "value": 100 + nonce, "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
          "nonce": nonce, "chainId": 31337, "type": 2}
    return str(node.rpc("eth_sendRawTransaction",
                        "0x" + bytes(Account.sign_transaction(tx, DEV_KEYS[0]).raw_transaction).hex()))


def block(node: NodeProcess, number: int | str) -> dict[str, object]:
    return dict(node.rpc("eth_getBlockByNumber", number if isinstance(number, str) else hex(number), False) or {})


@pytest.mark.parametrize(("mining", "killed"), [((), False), (("--block-time", "0.5"), True)],
                         ids=["automine", "block-time-sequencer-killed"])
def test_a_deposit_reaches_l2_while_the_batcher_is_silent(l1: str, tmp_path: Path, mining: tuple[str, ...],
                                                          killed: bool) -> None:
    w3 = Web3(Web3.HTTPProvider(l1))
    d = deploy_rollup(Web3Deployer(w3, DEPLOYER.address, DEPLOYER.key), BATCHER.address, PROPOSER.address,
                      RollupParams())
    d = replace(d, derivation={**d.derivation, "seq_window": SEQ_WINDOW})
    assert d.portal is not None
    rollup = tmp_path / "rollup.json"
    d.save(rollup)
    (tmp_path / "seq").mkdir()
    (tmp_path / "val").mkdir()
    seq = NodeProcess(tmp_path / "seq", args=("--rollup", str(rollup), "--l1", l1, "--no-fsync", *mining)).start()
    val = None
    try:
        val = NodeProcess(tmp_path / "val",
                          args=("--rollup", str(rollup), "--l1", l1, "--derive", "--no-fsync")).start()
        batcher = Batcher(w3, Web3(Web3.HTTPProvider(seq.url)), d, BATCHER.key)
        first = send(seq, 0)
        wait_for(lambda: seq.rpc("eth_getTransactionReceipt", first), 30, "the sequencer to mine the first transfer")

        def first_derived() -> bool:  # posted again if a slow start let its window expire (forced blocks)
            batcher.step()
            return bool(val.rpc("eth_getTransactionReceipt", first))

        wait_for(first_derived, 60, "the validator to derive the first batch")
        posted_through = batcher.posted_through

        # the batcher is silent from here on: a deposit on L1, a transfer on the sequencer
        portal = w3.eth.contract(address=Web3.to_checksum_address(d.portal), abi=list(artifact("Portal").abi))
        tx = portal.functions.depositTransaction(RECIPIENT, ETH, 21_000, b"").build_transaction(
            {"from": USER.address, "value": ETH, "gas": 300_000, "chainId": d.l1_chain_id,  # type: ignore[arg-type]
             "nonce": w3.eth.get_transaction_count(USER.address)})
        receipt = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(USER.sign_transaction(tx).raw_transaction), timeout=30)
        assert receipt["status"] == 1
        deposited_at = int(receipt["blockNumber"])
        second = send(seq, 1)
        t0 = time.monotonic()
        if killed:  # kill -9 once the transfer is in a block (interval mining: within 0.5 s)
            wait_for(lambda: seq.rpc("eth_getTransactionReceipt", second), 30, "the sequencer to mine the transfer")
            seq.kill()
        wait_for(lambda: int(val.rpc("eth_getBalance", RECIPIENT, "latest"), 16) == ETH, 60,
                 "the validator to force the deposit in")
        forced_after = time.monotonic() - t0
        assert int(w3.eth.block_number) >= deposited_at + SEQ_WINDOW  # not before the window expired
        # the deposit's block: its epoch is the deposit's L1 block, deposits only
        head = int(val.rpc("eth_blockNumber"), 16)
        with_deposit = next(block(val, n) for n in range(head, 0, -1)
                            if int(str(block(val, n)["extraData"]), 16) == deposited_at)
        txs = list(with_deposit["transactions"])  # type: ignore[call-overload]
        assert len(txs) == 1 and val.rpc("eth_getTransactionByHash", txs[0])["type"] == "0x7e"
        assert val.rpc("eth_getTransactionReceipt", second) is None  # never posted: not on the derived chain

        if killed:  # restarted on its datadir and port: it reads L1 again and meets the forced blocks
            seq = NodeProcess(tmp_path / "seq", port=seq.port, args=seq.args).start()
        # the sequencer replaces its blocks by the forced ones (the same hashes)
        n = int(str(with_deposit["number"]), 16)
        wait_for(lambda: block(seq, n).get("hash") == with_deposit["hash"], 30,
                 "the sequencer to build the forced blocks")
        assert int(seq.rpc("eth_getBalance", RECIPIENT, "latest"), 16) == ETH

        # the batcher restarts: from L1 it counts the forced blocks as posted, and the validator ends on the
        # sequencer's chain, both transfers in it
        batcher = Batcher(w3, Web3(Web3.HTTPProvider(seq.url)), d, BATCHER.key)
        assert batcher.posted_through >= n > posted_through
        def synced() -> bool:
            batcher.step()
            r = val.rpc("eth_getTransactionReceipt", second)
            if r is None:
                return False
            number = int(r["blockNumber"], 16)
            return block(seq, number).get("hash") == block(val, number).get("hash") == r["blockHash"]

        wait_for(synced, 60, "the sequencer's second transfer on the validator's chain")
        top = int(val.rpc("eth_blockNumber"), 16)
        assert [block(seq, i)["hash"] for i in range(top + 1)] == [block(val, i)["hash"] for i in range(top + 1)]
        assert seq.rpc("eth_getTransactionReceipt", second)["status"] == "0x1"
        assert int(val.rpc("eth_getBalance", RECIPIENT, "latest"), 16) == ETH

        print(f"deposit forced in {forced_after:.1f} s after the transfer; chains equal through L2 block {top}")
        if mining:
            return  # interval mining runs L2 time ahead of L1's (a second per block): the oracle would wait
        # an output over the forced blocks (at the synced head), proposed from the validator's chain, is
        # correct for a validator agent reading the sequencer's
        said: list[str] = []
        proposer = Proposer(L1(l1, DEV_KEYS[2]), val.rpc, replace(d, output_interval=top), lambda m: None,  # type: ignore[arg-type,return-value]
                            tmp_path / "proposer.json", out=said.append)

        def proposed() -> bool:
            proposer.propose_due()
            return bool(said)

        wait_for(proposed, 30, "the proposer to propose an output")
        assert said[0].startswith(f"proposed output 0 at L2 block {top}: 0 inference records")
        checker = Validator(L1(l1, DEV_KEYS[3]), seq.rpc, d, lambda m: None,  # type: ignore[arg-type,return-value]
                            out=said.append)
        checker.check_outputs()
        assert said[1:] == [f"output 0 at L2 block {top}: correct"]
    finally:
        if val is not None:
            val.stop()
        seq.stop()
