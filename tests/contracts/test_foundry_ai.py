"""Foundry with AI contracts (docs/foundry.md): ``forge test`` with ``AITest``'s mock inference
precompile (answers set by the test, or recorded from a node through ``vm.rpc``), and
``forge script --broadcast --skip-simulation`` deploying and calling ``DigitsClassifier`` on a node.

The node is an ``aievm node`` process (tests/ai_evm/node/nodeproc.py) with ``digits_mlp`` in its
store; "the node's answer" is what its own EVM computes: ``predict`` on a classifier it runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from ai_evm.contracts import artifact
from ai_evm.rollup.predeploys import MULTICALL3, PREDEPLOYS

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "ai_evm" / "node"))

from nodeproc import DIGITS_BUNDLE, NodeProcess, digits_node  # noqa: E402

#: The native forge binary of npm @foundry-rs/forge when present: the npm wrapper (node_modules/.bin/forge)
#: exits 0 even when forge fails (it does not pass the binary's exit status on).
NATIVE_FORGE = ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"
FORGE = NATIVE_FORGE if NATIVE_FORGE.exists() else ROOT / "node_modules" / ".bin" / "forge"
SHIM = ROOT / "scripts" / "solc_shim.mjs"
SCRIPT = "scripts/forge_scripts/DigitsClassifier.s.sol:DigitsClassifierScript"
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # dev account 0
DEV0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
X = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
#: pytest-xdist worker ("main" without xdist): forge runs of one worker never overlap, so each
#: worker gets its own output, cache and broadcast directories (forge does not lock them).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
#: The examples' own forge project: sources, tests, scripts, outputs apart from the other suites.
FOUNDRY_ENV = {
    "FOUNDRY_SRC": "contracts/examples",
    "FOUNDRY_TEST": "contracts/examples/test",
    "FOUNDRY_SCRIPT": "scripts/forge_scripts",
    "FOUNDRY_OUT": f"build/forge/examples-{WORKER}-out",
    "FOUNDRY_CACHE_PATH": f"build/forge/examples-{WORKER}-cache",
    "FOUNDRY_BROADCAST": f"build/forge/examples-{WORKER}-broadcast",
}

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not FORGE.exists(), reason="node and node_modules/.bin/forge are required"
)


def forge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FORGE), *args, "--offline", "--use", str(SHIM), "--color", "never"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, **FOUNDRY_ENV, **(env or {})},
    )  # fmt: skip


def image(i: int) -> bytes:
    return bytes(int(round(v * 16)) for v in X[i])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = digits_node(tmp_path_factory.mktemp("foundry-node") / "data")
    yield proc
    proc.stop()


def wait_receipt(node: NodeProcess, tx_hash: str) -> dict[str, object]:
    for _ in range(600):
        receipt = node.rpc("eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            return dict(receipt)
        time.sleep(0.05)
    raise AssertionError(f"no receipt for {tx_hash}")


def node_predict(node: NodeProcess, classifier: str, img: bytes) -> int:
    data = "0x" + (keccak(text="predict(bytes)")[:4] + abi_encode(["bytes"], [img])).hex()
    return int(node.rpc("eth_call", {"to": classifier, "data": data}, "latest"), 16)


@pytest.fixture(scope="module")
def node_classifier(node: NodeProcess) -> str:
    """A DigitsClassifier deployed on the node by the node's own dev account (not by forge)."""
    model = bytes.fromhex(node.model[2:])  # type: ignore[attr-defined]
    code = artifact("DigitsClassifier").bytecode + abi_encode(["bytes32"], [model])
    tx = node.rpc("eth_sendTransaction", {"from": DEV0, "data": "0x" + code.hex(), "gas": hex(3_000_000)})
    receipt = wait_receipt(node, tx)
    assert receipt["status"] == "0x1"
    return str(receipt["contractAddress"])


def test_forge_test_with_mocked_inference() -> None:
    """The mock suite: outputs set by the test, failures, size mismatch, 0xa0, owner-only answers."""
    out = forge("test", "--no-match-contract", "NodeTest")
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "[FAIL" not in text, text[-6000:]
    assert re.search(r"(\d+) tests passed, 0 failed", text) and int(re.findall(r"(\d+) tests passed", text)[-1]) >= 10


def test_forge_test_records_the_nodes_output(node: NodeProcess, node_classifier: str) -> None:
    """``recordInference`` asks the node (eth_call to 0xa1 through vm.rpc); the contract run by forge
    then predicts what the node's own EVM predicts, both deployed in forge's EVM and on a fork of the
    node (the node's own classifier); a wrong expectation fails the forge tests."""
    img = image(5)
    digit = node_predict(node, node_classifier, img)
    env = {"AI_EVM_RPC": node.url, "AI_EVM_MODEL": node.model, "AI_EVM_IMAGE": "0x" + img.hex(),  # type: ignore[attr-defined]
           "AI_EVM_CLASSIFIER": node_classifier, "AI_EVM_BUNDLE": "0x" + DIGITS_BUNDLE.read_bytes().hex()}  # fmt: skip
    ok = forge("test", "--match-contract", "NodeTest", env={**env, "AI_EVM_DIGIT": str(digit)})
    passed = ok.returncode == 0 and "[FAIL" not in ok.stdout and "3 tests passed, 0 failed" in ok.stdout
    assert passed, (ok.stdout + ok.stderr)[-6000:]
    wrong = forge("test", "--match-contract", "NodeTest", env={**env, "AI_EVM_DIGIT": str((digit + 1) % 10)})
    assert wrong.returncode != 0 or FORGE != NATIVE_FORGE
    assert "[FAIL: assertEq failed: digit agrees with the node" in wrong.stdout, wrong.stdout[-4000:]
    assert "[FAIL: assertEq failed: forked predict agrees with the node" in wrong.stdout, wrong.stdout[-4000:]
    assert "[FAIL: assertEq failed: inline digit agrees with the node" in wrong.stdout, wrong.stdout[-4000:]


def test_forge_script_broadcast_lands_on_the_node(node: NodeProcess, node_classifier: str) -> None:
    """``forge script --broadcast --skip-simulation``: the deployment and the classify transaction
    land on the node, succeed, and the on-chain digit equals the node's own prediction."""
    img = image(7)
    env = {"AI_EVM_MODEL": node.model, "AI_EVM_IMAGE": "0x" + img.hex()}  # type: ignore[attr-defined]
    out = forge("script", SCRIPT, "--rpc-url", node.url, "--private-key", KEY, "--broadcast", "--skip-simulation",
                env=env)  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "ONCHAIN EXECUTION COMPLETE & SUCCESSFUL" in text, text[-6000:]
    chain_id = int(node.rpc("eth_chainId"), 16)
    run = json.loads((ROOT / FOUNDRY_ENV["FOUNDRY_BROADCAST"] / "DigitsClassifier.s.sol" / str(chain_id)
                      / "run-latest.json").read_text())  # fmt: skip
    create, call = run["transactions"]
    assert create["transactionType"] == "CREATE" and call["function"] == "classify(bytes)"
    receipts = [wait_receipt(node, tx["hash"]) for tx in (create, call)]
    assert [r["status"] for r in receipts] == ["0x1", "0x1"]
    classifier = str(receipts[0]["contractAddress"])
    assert classifier.lower() == create["contractAddress"].lower()
    expected = node_predict(node, node_classifier, img)
    (log,) = receipts[1]["logs"]  # type: ignore[misc]
    assert int(log["data"], 16) == expected  # the Classified event of the transaction forge sent
    last = node.rpc("eth_call", {"to": classifier, "data": "0x" + keccak(text="lastPrediction()")[:4].hex()}, "latest")
    assert abi_decode(["uint256"], bytes.fromhex(last[2:]))[0] == expected


def test_forge_script_without_skip_simulation_fails_on_0xa1(node: NodeProcess) -> None:
    """Without ``--skip-simulation`` forge re-runs the transactions on a fork without the mock, where
    0xa1 is empty code: AILib reverts with OutputSizeMismatch(40, 0) and nothing is sent."""
    img = image(8)
    env = {"AI_EVM_MODEL": node.model, "AI_EVM_IMAGE": "0x" + img.hex()}  # type: ignore[attr-defined]
    nonce = node.rpc("eth_getTransactionCount", DEV0, "latest")
    out = forge("script", SCRIPT, "--rpc-url", node.url, "--private-key", KEY, "--broadcast", env=env)
    text = out.stdout + out.stderr
    assert "Simulated execution failed" in text and "OutputSizeMismatch(40, 0)" in text, text[-4000:]
    assert out.returncode != 0 or FORGE != NATIVE_FORGE
    assert node.rpc("eth_getTransactionCount", DEV0, "latest") == nonce


def test_recipe_against_aievm_devnet(tmp_path: Path) -> None:
    """docs/foundry.md's recipe as written, on ``aievm devnet --l2-only`` (values from devnet.json):
    forge test on a fork of the devnet and forge script --broadcast agree with the devnet's own
    DigitsClassifier, and Multicall3 is in the devnet's genesis."""
    datadir = tmp_path / "devnet"
    cmd = [sys.executable, "-c", "from ai_evm.cli import main; main()", "devnet", "--l2-only", "--datadir",
           str(datadir), "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                ready = json.loads((datadir / "node.json").read_text())
                if ready["pid"] == proc.pid:
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "devnet did not start"
            time.sleep(0.1)
        info = json.loads((datadir / "devnet.json").read_text())
        node = NodeProcess(datadir)
        node.url = info["rpcUrl"]
        assert node.rpc("eth_getCode", "0x" + MULTICALL3.hex(), "0x0") == "0x" + PREDEPLOYS[MULTICALL3].hex()
        img = image(11)
        classifier = info["contracts"]["DigitsClassifier"]
        digit = node_predict(node, classifier, img)
        env = {
            "AI_EVM_RPC": info["rpcUrl"],
            "AI_EVM_MODEL": info["models"]["digits_mlp"],
            "AI_EVM_IMAGE": "0x" + img.hex(),
            "AI_EVM_CLASSIFIER": classifier,
            "AI_EVM_DIGIT": str(digit),
            "AI_EVM_BUNDLE": "0x" + DIGITS_BUNDLE.read_bytes().hex(),
        }
        tested = forge("test", "--match-contract", "NodeTest", env=env)
        assert "[FAIL" not in tested.stdout and "3 tests passed, 0 failed" in tested.stdout, tested.stdout[-4000:]
        key = info["accounts"][0]["privateKey"]
        out = forge("script", SCRIPT, "--rpc-url", info["rpcUrl"], "--private-key", key, "--broadcast",
                    "--skip-simulation", env=env)  # fmt: skip
        assert "ONCHAIN EXECUTION COMPLETE & SUCCESSFUL" in out.stdout, (out.stdout + out.stderr)[-4000:]
        run = json.loads((ROOT / FOUNDRY_ENV["FOUNDRY_BROADCAST"] / "DigitsClassifier.s.sol"
                          / str(info["chainId"]) / "run-latest.json").read_text())  # fmt: skip
        receipt = wait_receipt(node, run["transactions"][1]["hash"])
        assert receipt["status"] == "0x1" and int(receipt["logs"][0]["data"], 16) == digit  # type: ignore[index]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
