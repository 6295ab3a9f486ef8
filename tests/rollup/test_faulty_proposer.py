"""The rollup's fraud proof end to end: a proposer posts an output with a wrong inference record,
the validator (from its own chain derived from L1) challenges the record, the proposer defends it
with its claim, the inference dispute game on L1 rejects the claim, and the output is deleted with
its bond paid to the validator. Real components: anvil with the contracts (real step verifier),
sequencer and validator node processes with the digits model, the batcher, both agents."""

from __future__ import annotations

import shutil
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
from ai_evm.node.chain import origin_of  # noqa: F401  (documentation: blocks name their origin)
from ai_evm.rollup.agents import Proposer, Validator
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.batcher import Batcher
from ai_evm.rollup.config import RollupDeployment
from ai_evm.rollup.deploy import RollupParams, deploy_rollup
from ai_evm.rollup.devnet import DEV_KEYS
from opml.bundle import load_bundle
from opml.commitment import prove_header

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai_evm" / "node"))
from nodeproc import NodeProcess, add_models  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "models" / "digits_mlp" / "model.bundle"
KEYS = list(DEV_KEYS)  # anvil's dev keys: deployer, batcher, proposer, validator
DEPLOYER, BATCHER, PROPOSER, VALIDATOR = (Account.from_key(k) for k in KEYS)
L2_DEV_KEY = DEV_KEYS[0]  # prefunded on L2 too


@pytest.fixture(scope="module")
def l1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Anvil(Path(tmp_path_factory.mktemp("faulty-l1")) / "anvil.log") as url:
        yield url


def l2_send(node: NodeProcess, w3: Web3, tx: dict[str, Any]) -> Any:
    acct = Account.from_key(L2_DEV_KEY)
    tx = {"chainId": 31337, "nonce": int(node.rpc("eth_getTransactionCount", acct.address, "pending"), 16),
          "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "value": 0, **tx}
    h = node.rpc("eth_sendRawTransaction", "0x" + bytes(acct.sign_transaction(tx).raw_transaction).hex())
    return w3.eth.wait_for_transaction_receipt(h, timeout=120)


WINDOW = 3600


@pytest.mark.parametrize("faulty", [True, False], ids=["faulty-proposer", "honest-run"])
def test_outputs_are_checked_and_finalize(l1: str, tmp_path: Path, faulty: bool) -> None:
    """faulty: the lie is caught and deleted, then the corrected output finalizes; honest: nothing is
    challenged and every output finalizes after the window, with the proposer's bonds returned."""
    w3 = Web3(Web3.HTTPProvider(l1))
    d = deploy_rollup(Web3Deployer(w3, DEPLOYER.address, DEPLOYER.key), BATCHER.address, PROPOSER.address,
                      RollupParams(challenge_window=WINDOW, output_interval=3))
    rollup = tmp_path / "rollup.json"
    d.save(rollup)
    bundle = load_bundle(DIGITS.read_bytes())
    registry = w3.eth.contract(address=Web3.to_checksum_address(d.registry), abi=list(artifact("ModelRegistry").abi))
    reg = registry.functions.register(bundle.address, graph_proof(prove_header(bundle)), "file://models")
    L1(l1, KEYS[0]).send(reg, RollupParams().registration_fee, "register")
    reg_block = int(w3.eth.block_number)

    nodes = []
    for name, extra in (("seq", ()), ("val", ("--derive",))):
        datadir = tmp_path / name
        datadir.mkdir()
        add_models(datadir, [DIGITS])
        nodes.append(NodeProcess(datadir, args=("--rollup", str(rollup), "--l1", l1, "--no-fsync", *extra)).start())
    seq, val = nodes
    try:
        l2 = Web3(Web3.HTTPProvider(seq.url))
        # empty blocks until the sequencer's L1 origin reaches the registration (one L1 block per L2 block)
        for _ in range(200):
            head = seq.rpc("eth_getBlockByNumber", "latest", False)
            if len(bytes.fromhex(head["extraData"][2:])) == 8 and int(head["extraData"], 16) >= reg_block:
                break
            seq.rpc("evm_mine")
            time.sleep(0.05)
        art = artifact("DigitsClassifier")
        ctor = l2.eth.contract(abi=list(art.abi), bytecode=art.bytecode).constructor(bundle.address)
        created = l2_send(seq, l2, {"data": ctor.data_in_transaction, "gas": 3_000_000})
        clf = l2.eth.contract(address=created["contractAddress"], abi=list(art.abi))
        x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
        for i in range(4):
            image = bytes(int(round(float(v) * 16)) for v in x[i])
            r = l2_send(seq, l2, {"to": clf.address, "data": clf.encode_abi("classify", [image]), "gas": 2_000_000})
            assert r["status"] == 1
            assert seq.rpc("aievm_getInferences", "0x" + bytes(r["transactionHash"]).hex())  # a record

        batcher = Batcher(w3, l2, RollupDeployment.load(rollup), bytes.fromhex(KEYS[1][2:]))
        assert batcher.step() is not None
        l2_head = int(seq.rpc("eth_blockNumber"), 16)
        deadline = time.monotonic() + 120
        while int(val.rpc("eth_blockNumber"), 16) < l2_head:
            assert time.monotonic() < deadline, "the validator did not derive the chain"
            time.sleep(0.2)

        bundles = {bundle.address: bundle}.__getitem__
        log: list[str] = []
        proposer = Proposer(L1(l1, KEYS[2]), val.rpc, d, bundles, tmp_path / "proposer.json",
                            faulty_rate=1.0 if faulty else 0.0, faulty_max=1, out=lambda s: log.append("P " + s))
        validator = Validator(L1(l1, KEYS[3]), val.rpc, d, bundles, out=lambda s: log.append("V " + s))
        oracle = w3.eth.contract(address=Web3.to_checksum_address(d.oracle), abi=list(artifact("OutputOracle").abi))
        balance0 = w3.eth.get_balance(VALIDATOR.address)
        deleted = []
        covered = l2_head - l2_head % d.output_interval  # the last output the derived chain allows
        for _ in range(120):
            proposer.tick()
            validator.tick()
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # L1 time moves on
            deleted = oracle.events.OutputsDeleted().get_logs(from_block=0)
            count = oracle.functions.outputCount().call()
            last = oracle.functions.output(count - 1).call()[3] if count else 0
            settled = not faulty or (deleted and oracle.functions.credit(VALIDATOR.address).call() == 0
                                     and validator.settled)
            if settled and last >= covered:
                break
        text = "\n".join(log)
        if faulty:
            assert deleted, text[-6000:]
            assert deleted[0]["args"]["challenger"] == VALIDATOR.address
            assert oracle.functions.permissionless().call()
            assert "FAULTY" in text and "challenged" in text and "defended with claim" in text
            assert w3.eth.get_balance(VALIDATOR.address) > balance0, text[-3000:]  # bonds won exceed gas spent
        else:
            assert not deleted and "FAULTY" not in text and "challenged" not in text, text[-3000:]
            assert text.count(": correct") >= covered // d.output_interval
        # after the window every live output (the corrected ones included) finalizes, bonds back
        w3.provider.make_request("evm_increaseTime", [WINDOW + 1])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        proposer.tick()
        count = oracle.functions.outputCount().call()
        assert count >= covered // d.output_interval
        assert oracle.functions.finalizedCount().call() == count, "\n".join(log)[-3000:]
        assert oracle.functions.credit(PROPOSER.address).call() == 0  # withdrawn
        for i in range(count):  # what is final is what the validator's own chain says
            o = oracle.functions.output(i).call()
            mine = val.rpc("eth_getBlockByNumber", hex(o[3]), False)
            assert "0x" + bytes(o[0]).hex() == mine["stateRoot"] and "0x" + bytes(o[2]).hex() == mine["hash"]
    finally:
        seq.stop()
        val.stop()
