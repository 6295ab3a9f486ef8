"""Deposits on real components: anvil as L1 with the rollup (and its Portal) deployed, the sequencer node
following it, the batcher, and a validator node deriving the chain from L1 alone.

Three deposits in one L1 block (two transfers and a call of the L2ToL1MessagePasser predeploy with value)
and one more made with ``aievm bridge deposit`` in a later block: the sequencer puts each L1 block's
deposits first in the first L2 block on it, in event order; the balances arrive; the validator derives
the same block hashes and shows the same deposits; web3.py and ethers v6 read them; a raw 0x7E send is
refused.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_hash.auto import keccak
from eth_typing import BlockNumber
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.dispute.client import L1
from ai_evm.dispute.deploy import Web3Deployer
from ai_evm.evm.deposit import deposit_source_hash, new_deposit
from ai_evm.node.chain import NodeConfig, Sequencer, origin_of
from ai_evm.node.methods import EthApi
from ai_evm.node.rpc import Dispatcher
from ai_evm.node.vm import make_resolver
from ai_evm.rollup import codec
from ai_evm.rollup.agents import Proposer, Validator
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.deploy import RollupParams, deploy_rollup
from ai_evm.rollup.deposits import DepositNonceGap
from ai_evm.rollup.devnet import DEV_KEYS
from ai_evm.rollup.node import Derivation, L1Follower, attach_sequencer
from ai_evm.rollup.predeploys import L2_TO_L1_MESSAGE_PASSER
from ai_evm.rollup.sequencing import batch_of_block

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai_evm" / "node"))
from nodeproc import RpcFailure, rollup_pair  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

ROOT = Path(__file__).resolve().parents[2]
DEPLOYER = Account.from_key(DEV_KEYS[0])
BATCHER = Account.from_key(DEV_KEYS[1])
PROPOSER = Account.from_key(DEV_KEYS[2])
USER = Account.from_key(DEV_KEYS[3])
RECIPIENT = Account.from_key("0x" + "42" * 32).address  # no L2 balance before the deposits
BOB = "0x000000000000000000000000000000000000b0b0"
ETH = 10**18
PASSER = Web3.to_checksum_address(L2_TO_L1_MESSAGE_PASSER)


@pytest.fixture(scope="module")
def l1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Anvil(Path(tmp_path_factory.mktemp("bridge-l1")) / "anvil.log", block_time=1) as url:
        yield url


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def l2_hash(portal: str, event: Any) -> str:
    a = event["args"]
    tx = new_deposit(deposit_source_hash(bytes.fromhex(portal[2:]), a["nonce"]), bytes.fromhex(a["from"][2:]),
                     bytes.fromhex(a["to"][2:]), a["mint"], a["value"], a["gasLimit"], a["data"])
    return "0x" + bytes(tx.hash).hex()


def test_deposit_round_trip(l1: str, tmp_path: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(l1))
    d, rollup, seq, val = rollup_pair(l1, tmp_path)
    assert d.portal is not None
    try:
        portal = w3.eth.contract(address=Web3.to_checksum_address(d.portal), abi=list(artifact("Portal").abi))
        call = keccak(b"initiateWithdrawal(address,uint256,bytes)")[:4] + \
            abi_encode(["address", "uint256", "bytes"], [BOB, 100_000, b"hi"])
        deposits = [(RECIPIENT, ETH, ETH, 21_000, b""),  # (to, mint, value, gas, data)
                    (RECIPIENT, 2 * ETH, ETH // 2, 21_000, b""),
                    (PASSER, ETH // 4, ETH // 4, 200_000, call)]
        # three deposits in one L1 block: L1 mining paused while they are sent
        w3.provider.make_request("evm_setIntervalMining", [0])  # type: ignore[arg-type]
        w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
        nonce = w3.eth.get_transaction_count(USER.address, "pending")
        sent = []
        for i, (to, mint, value, gas, data) in enumerate(deposits):
            tx = portal.functions.depositTransaction(to, value, gas, data).build_transaction(
                {"from": USER.address, "value": mint, "nonce": nonce + i, "gas": 300_000, "chainId": d.l1_chain_id})
            sent.append(w3.eth.send_raw_transaction(USER.sign_transaction(tx).raw_transaction))
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
        receipts = [w3.eth.wait_for_transaction_receipt(h, timeout=30) for h in sent]
        assert len({r["blockNumber"] for r in receipts}) == 1 and all(r["status"] == 1 for r in receipts)
        events = [portal.events.TransactionDeposited().process_receipt(r)[0] for r in receipts]
        assert [e["args"]["nonce"] for e in events] == [0, 1, 2]
        hashes = [l2_hash(d.portal, e) for e in events]

        # a fourth deposit, with the CLI, which follows it onto L2
        cli = subprocess.run(
            [sys.executable, "-c", "from ai_evm.cli import main; main()", "bridge", "deposit",
             "--l1", l1, "--rollup", str(rollup), "--to", RECIPIENT, "--value", "3eth", "--key", DEV_KEYS[3],
             "--l2", seq.url, "--timeout", "120"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert "deposit 3, its L2 transaction is" in cli.stdout and "L2: included in block" in cli.stdout
        hashes.append(cli.stdout.split("its L2 transaction is ")[1].split()[0])
        refused = subprocess.run(
            [sys.executable, "-c", "from ai_evm.cli import main; main()", "bridge", "deposit", "--l1", l1, "--rollup",
             str(rollup), "--to", RECIPIENT, "--value", "1", "--gas-limit", "20000", "--key", DEV_KEYS[3]],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and "error: L1 deposit not sent" in refused.stderr, refused.stderr

        got = [wait_for(lambda h=h: seq.rpc("eth_getTransactionReceipt", h), 60, f"deposit {h} on L2")
               for h in hashes]
        assert [r["status"] for r in got] == ["0x1"] * 4 and [r["type"] for r in got] == ["0x7e"] * 4
        first = got[0]["blockNumber"]
        # one L1 block's deposits: first in one L2 block, in event order; the later one in a later block
        assert [(r["blockNumber"], r["transactionIndex"]) for r in got[:3]] == [(first, "0x0"), (first, "0x1"),
                                                                                 (first, "0x2")]
        assert int(got[3]["blockNumber"], 16) > int(first, 16) and got[3]["transactionIndex"] == "0x0"
        assert len(got[2]["logs"]) == 1  # MessagePassed
        assert int(seq.rpc("eth_getBalance", RECIPIENT, "latest"), 16) == ETH + ETH // 2 + 3 * ETH
        assert int(seq.rpc("eth_getBalance", PASSER, "latest"), 16) == ETH // 4
        assert int(seq.rpc("eth_getStorageAt", PASSER, "0x1", "latest"), 16) == 1  # messageNonce

        tx0 = seq.rpc("eth_getTransactionByHash", hashes[0])
        assert (tx0["type"], tx0["from"], tx0["to"], tx0["mint"], tx0["value"]) == \
            ("0x7e", USER.address.lower(), RECIPIENT.lower(), hex(ETH), hex(ETH))
        assert tx0["sourceHash"] == "0x" + deposit_source_hash(bytes.fromhex(d.portal[2:]), 0).hex()
        raw = seq.rpc("debug_getRawTransaction", hashes[0])
        assert raw.startswith("0x7e") and "0x" + keccak(bytes.fromhex(raw[2:])).hex() == hashes[0]
        with pytest.raises(RpcFailure, match="only by derivation"):
            seq.rpc("eth_sendRawTransaction", raw)  # a replay through the pool

        # web3.py and ethers v6 read them
        l2 = Web3(Web3.HTTPProvider(seq.url))
        wtx = l2.eth.get_transaction(hashes[2])  # type: ignore[arg-type]
        assert (wtx["type"], wtx["from"], wtx["to"], wtx["value"]) == (0x7E, USER.address, PASSER, ETH // 4)
        assert l2.eth.get_transaction_receipt(hashes[2])["status"] == 1  # type: ignore[arg-type]
        assert l2.eth.get_block(int(first, 16), full_transactions=True)["transactions"][0]["hash"].hex() == \
            hashes[0][2:]
        if (ROOT / "node_modules" / "ethers").is_dir():
            out = subprocess.run(["node", str(Path(__file__).parent / "ethers_deposit.mjs"), seq.url, hashes[2]],
                                 capture_output=True, text=True, timeout=120, cwd=ROOT)
            assert out.returncode == 0, out.stderr
            e = json.loads(out.stdout.strip().splitlines()[-1])
            assert (e["type"], e["from"], e["to"], e["value"], e["status"], e["receiptType"], e["inBlock"]) == \
                (126, USER.address, PASSER, str(ETH // 4), 1, 126, True)

        # the batcher posts the blocks (without the deposits); the validator derives the same chain from L1
        head = int(seq.rpc("eth_blockNumber"), 16)
        post = subprocess.run([sys.executable, "-c", "from ai_evm.cli import main; main()", "batcher", "--rollup",
                               str(rollup), "--l1", l1, "--l2", seq.url, "--key", "0x" + BATCHER.key.hex(), "--once"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert post.returncode == 0, post.stdout + post.stderr
        wait_for(lambda: int(val.rpc("eth_blockNumber"), 16) >= head, 120, "the validator to derive every block")
        # the sequencer's safe head passes the deposit blocks (its batches leave the deposits out)
        wait_for(lambda: int(seq.rpc("eth_getBlockByNumber", "safe", False)["number"], 16) >= head, 60,
                 "the sequencer's safe head")
        for n in range(head + 1):
            a = seq.rpc("eth_getBlockByNumber", hex(n), False)
            b = val.rpc("eth_getBlockByNumber", hex(n), False)
            assert (a["hash"], a["stateRoot"], a["transactions"]) == (b["hash"], b["stateRoot"], b["transactions"]), n
        assert val.rpc("eth_getTransactionByHash", hashes[0]) == tx0
        assert int(val.rpc("eth_getBalance", RECIPIENT, "latest"), 16) == ETH + ETH // 2 + 3 * ETH

        # a follower that starts after the first deposits sees nonce 3 first: a named error, the block is not taken
        late = replace(d, genesis_l1_number=int(receipts[0]["blockNumber"]) + 1)
        follower = L1Follower(w3, late)
        with pytest.raises(DepositNonceGap, match="has nonce 3, expected 0"):
            follower.poll_once()
        cli_block = int(cli.stdout.split("mined in block ")[1].split(":")[0])
        assert follower.deposit_nonce == 0 and follower.next == cli_block and follower.block(cli_block) is None
    finally:
        w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
        seq.stop()
        val.stop()


def in_process_rpc(seq: Sequencer) -> Callable[..., Any]:
    """``rpc(method, *params)`` on an in-process node (what the agents take)."""
    dispatcher = Dispatcher(EthApi(seq))
    return lambda method, *params: dispatcher.call(method, list(params))


def test_a_sequencer_that_skips_a_deposit_is_reported(l1: str, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The sequencer leaves a deposit out of the block that must carry it and batches that block; the
    validator's node derives the block with the deposit (another hash and state root), and the validator
    agent reports the proposer's output of the sequencer's block as wrong."""
    w3 = Web3(Web3.HTTPProvider(l1))
    d = deploy_rollup(Web3Deployer(w3, DEPLOYER.address, DEPLOYER.key), BATCHER.address, PROPOSER.address,
                      RollupParams(output_interval=1))
    assert d.portal is not None
    portal = w3.eth.contract(address=Web3.to_checksum_address(d.portal), abi=list(artifact("Portal").abi))
    tx = portal.functions.depositTransaction(RECIPIENT, ETH, 21_000, b"").build_transaction(
        {"from": USER.address, "value": ETH, "nonce": w3.eth.get_transaction_count(USER.address, "pending"),
         "gas": 300_000, "chainId": d.l1_chain_id})
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(USER.sign_transaction(tx).raw_transaction), timeout=30)
    deposit_block = int(receipt["blockNumber"])
    wait_for(lambda: w3.eth.block_number > deposit_block, 30, "L1 to move on")

    # the cheating sequencer: follows L1 but puts no deposit in its blocks
    cheat = Sequencer(NodeConfig(tmp_path / "cheat", sync=False), make_resolver(None))
    follower = L1Follower(w3, d)
    attach_sequencer(cheat, follower)
    cheat.deposits_for, cheat.deposits_pending = (lambda parent, origin: []), None
    follower.poll_once()
    while (o := origin_of(cheat.head())) is None or o.number < deposit_block:
        assert cheat.mine_pending(allow_empty=True), "the sequencer could not mine"
    k = int(cheat.head().block_number)  # the block that had to carry the deposit
    batches = [batch_of_block(cheat.chain.get_canonical_block_by_number(BlockNumber(n))) for n in range(1, k + 1)]
    frames = codec.split_frames(codec.new_channel_id(), codec.encode_channel(batches), 100_000)
    post = {"to": Web3.to_checksum_address(d.inbox), "data": codec.encode_batcher_data(frames), "value": 0,
            "gas": 1_000_000, "chainId": d.l1_chain_id, "nonce": w3.eth.get_transaction_count(BATCHER.address),
            "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(BATCHER.sign_transaction(post).raw_transaction))

    # the validator's node derives from L1 alone, with the deposits
    honest = Sequencer(NodeConfig(tmp_path / "val", sync=False), make_resolver(None))
    honest.derives_from_l1 = True
    derivation = Derivation(honest, L1Follower(w3, d))
    wait_for(lambda: derivation.follower.poll_once(full=True) >= 0 and derivation.safe.number == k, 30,
             "the validator's node to derive the batched blocks")
    for n in range(k):
        a, b = (s.chain.get_canonical_block_header_by_number(BlockNumber(n)) for s in (cheat, honest))
        assert (a.hash, a.state_root) == (b.hash, b.state_root), n
    a, b = (s.chain.get_canonical_block_header_by_number(BlockNumber(k)) for s in (cheat, honest))
    assert a.hash != b.hash and a.state_root != b.state_root
    assert honest.head_state().get_balance(bytes.fromhex(RECIPIENT[2:])) == ETH
    assert cheat.head_state().get_balance(bytes.fromhex(RECIPIENT[2:])) == 0
    # one more sequencer block, batched: it names the sequencer's block k as parent, which L1 does not define
    cheat.mine_pending(allow_empty=True)
    more = [batch_of_block(cheat.chain.get_canonical_block_by_number(BlockNumber(k + 1)))]
    frames = codec.split_frames(codec.new_channel_id(), codec.encode_channel(more), 100_000)
    post = {**post, "data": codec.encode_batcher_data(frames), "nonce": w3.eth.get_transaction_count(BATCHER.address)}
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(BATCHER.sign_transaction(post).raw_transaction))
    with caplog.at_level(logging.WARNING, logger="ai_evm.rollup.node"):
        wait_for(lambda: derivation.follower.poll_once(full=True) >= 0 and "do not extend the derived L2 block" in
                 caplog.text, 30, "the validator's node to report the fork")
    assert f"do not extend the derived L2 block {k}" in caplog.text and derivation.safe.number == k

    # the proposer posts the sequencer's outputs (one per block); the validator checks them
    said: list[str] = []
    proposer = Proposer(L1(l1, DEV_KEYS[2]), in_process_rpc(cheat), d, lambda m: None,  # type: ignore[arg-type,return-value]
                        tmp_path / "proposer.json", out=said.append)
    oracle = w3.eth.contract(address=Web3.to_checksum_address(d.oracle), abi=list(artifact("OutputOracle").abi))
    wait_for(lambda: proposer.propose_due() or int(oracle.functions.outputCount().call()) == k, 60,
             "the proposer to post an output per block")
    validator = Validator(L1(l1, DEV_KEYS[3]), in_process_rpc(honest), d, lambda m: None,  # type: ignore[arg-type,return-value]
                          out=said.append)
    validator.check_outputs()
    verdicts = [s for s in said if s.startswith(("output ", "!!! output "))]
    assert verdicts[:k - 1] == [f"output {i} at L2 block {i + 1}: correct" for i in range(k - 1)]
    assert verdicts[k - 1].startswith(f"!!! output {k - 1} at L2 block {k} has a WRONG STATE ROOT")
    cheat.close()
    honest.close()
