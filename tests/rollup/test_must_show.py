"""Issue 13's "must show" on real components (one anvil for the module):

- kill -9 of the validator's deriving node mid-run: restarted on its datadir it reaches the
  sequencer's head with the same block hashes; kill -9 of the batcher: a new one resumes from L1;
  kill -9 of the sequencer: restarted on its datadir and port, it keeps its chain and goes on;
- an inference on a model not registered on L1 fails the same way on the sequencer and on the
  deriving validator (receipt status, state root); registered later, the model works in blocks whose
  L1 origin is at or after the registration;
- a registered model whose hub is down stalls the deriving node with a clear log line, and it
  resumes when the hub (an ``aievm model serve`` process) comes back on the same port;
- the agents (``aievm proposer``/``aievm validator`` processes): the proposer killed (-9) between
  proposing a lie and defending it, restarted, still defends it from its state file; a validator
  started after the lie was posted catches it; killed after challenging and restarted, it does not
  challenge again and plays the game to the end: the output is deleted, the validator is paid.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.dispute.client import L1
from ai_evm.dispute.deploy import Web3Deployer
from ai_evm.dispute.encode import graph_proof
from ai_evm.rollup.anvil import Anvil, free_port
from ai_evm.rollup.batcher import Batcher
from ai_evm.rollup.config import RollupDeployment
from ai_evm.rollup.deploy import RollupParams, deploy_rollup
from ai_evm.rollup.devnet import DEV_KEYS
from ai_evm.rollup.node import STALL_REPEAT_S
from opml.bundle import Bundle, load_bundle
from opml.commitment import prove_header
from opml.store import LocalStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai_evm" / "node"))
from nodeproc import NodeProcess, add_models, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "models" / "digits_mlp" / "model.bundle"
KEYS = list(DEV_KEYS)  # anvil's dev keys: deployer, batcher, proposer, validator
DEPLOYER, BATCHER, PROPOSER, VALIDATOR = (Account.from_key(k) for k in KEYS)
SINK = "0x000000000000000000000000000000000000dEaD"
CLI = [sys.executable, "-u", "-c", "from ai_evm.cli import main; main()"]


@pytest.fixture(scope="module")
def l1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Anvil(Path(tmp_path_factory.mktemp("must-show-l1")) / "anvil.log", block_time=1) as url:
        yield url



def l2_send(node: NodeProcess, w3: Web3, tx: dict[str, Any]) -> Any:
    acct = Account.from_key(KEYS[0])
    tx = {"chainId": 31337, "nonce": int(node.rpc("eth_getTransactionCount", acct.address, "pending"), 16),
          "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "value": 0, **tx}
    h = node.rpc("eth_sendRawTransaction", "0x" + bytes(acct.sign_transaction(tx).raw_transaction).hex())
    return w3.eth.wait_for_transaction_receipt(h, timeout=120)


def head(node: NodeProcess) -> int:
    return int(node.rpc("eth_blockNumber"), 16)


def same_chain(seq: NodeProcess, val: NodeProcess) -> None:
    n = head(seq)
    assert head(val) == n
    for k in range(n + 1):
        a = seq.rpc("eth_getBlockByNumber", hex(k), False)
        b = val.rpc("eth_getBlockByNumber", hex(k), False)
        assert (a["hash"], a["stateRoot"]) == (b["hash"], b["stateRoot"]), k


def register(l1: str, d: Any, bundle: Bundle, uri: str) -> int:
    """Register ``bundle`` on L1 with fetch URI ``uri``; returns the registration's L1 block."""
    w3 = Web3(Web3.HTTPProvider(l1))
    registry = w3.eth.contract(address=Web3.to_checksum_address(d.registry), abi=list(artifact("ModelRegistry").abi))
    fn = registry.functions.register(bundle.address, graph_proof(prove_header(bundle)), uri)
    receipt = L1(l1, KEYS[0]).send(fn, int(registry.functions.REGISTRATION_FEE().call()), "register")
    return int(receipt["blockNumber"])


def origin_reaches(seq: NodeProcess, l1_block: int) -> None:
    """Empty L2 blocks until the sequencer's L1 origin is at or after ``l1_block``."""
    for _ in range(300):
        blk = seq.rpc("eth_getBlockByNumber", "latest", False)
        if blk["extraData"] != "0x" and int(blk["extraData"], 16) >= l1_block:  # genesis names no origin
            return
        seq.rpc("evm_mine")
        time.sleep(0.1)
    raise AssertionError(f"the sequencer's L1 origin did not reach L1 block {l1_block}")


def image(i: int) -> bytes:
    x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
    return bytes(int(round(float(v) * 16)) for v in x[i])


class Proc:
    """One ``aievm`` subprocess logging to a file, stopped by its PID."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("ab") as f:
            self.proc = subprocess.Popen([*CLI, *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()


def test_restarts_unregistered_model_and_hub_down(l1: str, tmp_path: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(l1))
    d = deploy_rollup(Web3Deployer(w3, DEPLOYER.address, DEPLOYER.key), BATCHER.address, PROPOSER.address,
                      RollupParams())
    rollup = tmp_path / "rollup.json"
    d.save(rollup)
    bundle = load_bundle(DIGITS.read_bytes())
    LocalStore(tmp_path / "hub").put(DIGITS.read_bytes())
    hub_port = free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"  # not serving yet

    (tmp_path / "seq").mkdir()
    (tmp_path / "val").mkdir()
    add_models(tmp_path / "seq", [DIGITS])  # the sequencer has the model; the validator only the (down) hub
    seq = NodeProcess(tmp_path / "seq", args=("--rollup", str(rollup), "--l1", l1, "--no-fsync")).start()
    val_args = ("--rollup", str(rollup), "--l1", l1, "--derive", "--model-store", hub_url, "--no-fsync")
    val = NodeProcess(tmp_path / "val", args=val_args).start()
    batcher_args = ("batcher", "--rollup", str(rollup), "--l1", l1, "--l2", seq.url, "--key", KEYS[1], "--poll", "1")
    procs: list[Proc] = []
    try:
        l2 = Web3(Web3.HTTPProvider(seq.url))
        art = artifact("DigitsClassifier")
        created = l2_send(seq, l2, {"data": l2.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
                                    .constructor(bundle.address).data_in_transaction, "gas": 3_000_000})
        clf = l2.eth.contract(address=created["contractAddress"], abi=list(art.abi))
        # 1. the model is not registered: the call fails on the sequencer (its own copy does not matter)
        bad = l2_send(seq, l2, {"to": clf.address, "data": clf.encode_abi("classify", [image(0)]), "gas": 2_000_000})
        assert bad["status"] == 0
        bad_hash = "0x" + bytes(bad["transactionHash"]).hex()

        procs.append(Proc(tmp_path / "batcher-1.log", *batcher_args))
        wait_for(lambda: head(val) == head(seq), 120, "the validator to derive the chain")
        same_chain(seq, val)  # same state root after the failed inference
        assert val.rpc("eth_getTransactionReceipt", bad_hash)["status"] == "0x0"  # fails identically

        # 2. kill -9 the deriving node and the batcher mid-run; new blocks meanwhile; restart both
        for i in range(3):
            l2_send(seq, l2, {"to": SINK, "value": 1 + i, "gas": 21_000})
        time.sleep(1.5)  # the batcher posts them, the validator derives them
        val.kill()
        procs[0].kill9()
        for i in range(2):
            l2_send(seq, l2, {"to": SINK, "value": 10 + i, "gas": 21_000})
        procs.append(Proc(tmp_path / "batcher-2.log", *batcher_args))
        val = NodeProcess(tmp_path / "val", args=val_args).start()
        wait_for(lambda: head(val) == head(seq), 120, "the restarted validator to reach the sequencer's head")
        same_chain(seq, val)
        # ... and the sequencer itself: restarted on its datadir and port, it keeps its chain and goes on
        before = seq.rpc("eth_getBlockByNumber", "latest", False)
        seq.kill()
        seq = NodeProcess(tmp_path / "seq", port=seq.port, args=seq.args).start()
        assert seq.rpc("eth_getBlockByNumber", hex(int(before["number"], 16)), False)["hash"] == before["hash"]
        l2_send(seq, l2, {"to": SINK, "value": 20, "gas": 21_000})
        wait_for(lambda: head(val) == head(seq), 120, "the validator to derive the restarted sequencer's blocks")
        same_chain(seq, val)

        # 3. register the model (its hub is down): usable from blocks whose L1 origin is at or after it
        reg_block = register(l1, d, bundle, hub_url)
        origin_reaches(seq, reg_block)
        good = l2_send(seq, l2, {"to": clf.address, "data": clf.encode_abi("classify", [image(1)]), "gas": 2_000_000})
        assert good["status"] == 1
        target = head(seq)
        # 4. the validator cannot fetch it: derivation stalls, says so, and does not skip the block
        wait_for(lambda: "derivation stalled" in val.log.read_text(), 60, "the stall message")
        assert head(val) < int(good["blockNumber"])
        assert "retrying" in val.log.read_text().split("derivation stalled", 1)[1].splitlines()[0]
        procs.append(Proc(tmp_path / "hub.log", "model", "serve", "--store", str(tmp_path / "hub"),
                          "--port", str(hub_port)))
        stalled_at = time.monotonic()
        wait_for(lambda: head(val) >= target, 150, "the validator to resume once the hub is back")
        text = val.log.read_text()  # said once (again only every STALL_REPEAT_S), not on every retry
        assert "derivation resumed" in text, text[-3000:]
        assert text.count("derivation stalled") <= 2 + (time.monotonic() - stalled_at) / STALL_REPEAT_S, text[-3000:]
        wait_for(lambda: head(val) == head(seq), 60, "the validator to reach the sequencer's head")
        same_chain(seq, val)
        good_hash = "0x" + bytes(good["transactionHash"]).hex()
        assert val.rpc("eth_getTransactionReceipt", good_hash)["status"] == "0x1"
    finally:
        for p in procs:
            p.stop()
        seq.stop()
        val.stop()


def test_restarted_agents_and_a_late_validator_still_delete_the_lie(l1: str, tmp_path: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(l1))
    d = deploy_rollup(Web3Deployer(w3, DEPLOYER.address, DEPLOYER.key), BATCHER.address, PROPOSER.address,
                      RollupParams(challenge_window=24 * 3600, output_interval=3))
    rollup = tmp_path / "rollup.json"
    d.save(rollup)
    bundle = load_bundle(DIGITS.read_bytes())
    reg_block = register(l1, d, bundle, "file://models")
    nodes = []
    for name, extra in (("seq", ()), ("val", ("--derive",))):
        (tmp_path / name).mkdir()
        add_models(tmp_path / name, [DIGITS])
        nodes.append(NodeProcess(tmp_path / name, args=("--rollup", str(rollup), "--l1", l1, "--no-fsync",
                                                         *extra)).start())
    seq, val = nodes
    procs: list[Proc] = []
    try:
        l2 = Web3(Web3.HTTPProvider(seq.url))
        origin_reaches(seq, reg_block)
        art = artifact("DigitsClassifier")
        created = l2_send(seq, l2, {"data": l2.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
                                    .constructor(bundle.address).data_in_transaction, "gas": 3_000_000})
        clf = l2.eth.contract(address=created["contractAddress"], abi=list(art.abi))
        for i in range(3):
            r = l2_send(seq, l2, {"to": clf.address, "data": clf.encode_abi("classify", [image(i)]), "gas": 2_000_000})
            assert r["status"] == 1
        assert Batcher(w3, l2, RollupDeployment.load(rollup), bytes.fromhex(KEYS[1][2:])).step() is not None
        wait_for(lambda: head(val) >= head(seq), 120, "the validator node to derive the chain")

        oracle = L1(l1, KEYS[0]).contract("OutputOracle", d.oracle)
        disputes = L1(l1, KEYS[0]).contract("InferenceRecordDisputes", d.disputes)
        agent = ("--rollup", str(rollup), "--l1", l1, "--l2", val.url, "--poll", "0.5")
        for name in ("proposer", "validator"):
            add_models(tmp_path / name, [DIGITS])
        prop = ("proposer", *agent, "--key", KEYS[2], "--datadir", str(tmp_path / "proposer"),
                "--faulty-inference", "1", "--faulty-max", "1")
        vali = ("validator", *agent, "--key", KEYS[3], "--datadir", str(tmp_path / "validator"))
        balance0 = w3.eth.get_balance(VALIDATOR.address)

        def logs() -> str:
            return "\n".join(f.read_text() for f in sorted(tmp_path.glob("*-agent-*.log")))

        procs.append(Proc(tmp_path / "proposer-agent-1.log", *prop))  # the lie is posted while no validator runs
        wait_for(lambda: int(oracle.functions.outputCount().call()) >= 1, 120, "the proposer's output")
        procs[-1].kill9()  # between proposing and defending: only its state file is left
        assert json.loads((tmp_path / "proposer" / "proposer.json").read_text())["lies"], logs()
        procs.append(Proc(tmp_path / "validator-agent-1.log", *vali))  # started late, within the window
        wait_for(lambda: int(disputes.functions.challengeCount().call()) >= 1, 120, "the validator's challenge")
        procs[-1].kill9()  # after challenging
        procs.append(Proc(tmp_path / "proposer-agent-2.log", *prop))
        procs.append(Proc(tmp_path / "validator-agent-2.log", *vali))

        def won() -> bool:
            return bool(oracle.events.OutputsDeleted().get_logs(from_block=0)) and \
                int(oracle.functions.credit(VALIDATOR.address).call()) == 0 and \
                w3.eth.get_balance(VALIDATOR.address) > balance0  # bonds won exceed the gas spent

        try:
            wait_for(won, 240, "the lie's output to be deleted and the validator paid")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{logs()[-4000:]}") from None
        deleted = oracle.events.OutputsDeleted().get_logs(from_block=0)
        assert deleted[0]["args"]["challenger"] == VALIDATOR.address
        text = logs()
        assert int(disputes.functions.challengeCount().call()) == 1, text[-3000:]  # restarted: no second challenge
        assert int(oracle.functions.finalizedCount().call()) == 0  # caught before the output finalized
        assert "FAULTY" in text and "defended with claim" in text and "already challenged" in text, text[-3000:]
    finally:
        for p in procs:
            p.stop()
        seq.stop()
        val.stop()
