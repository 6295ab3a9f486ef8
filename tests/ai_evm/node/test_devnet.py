"""``aievm devnet --l2-only``: example models in the store, example contracts deployed and working."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from nodeproc import ROOT, NodeProcess
from web3 import Web3

from ai_evm.contracts import artifact


def _wait_ready(datadir: Path, proc: subprocess.Popen[bytes]) -> NodeProcess:
    """Until this process writes DATADIR/node.json (it listens); a handle on it."""
    deadline = time.monotonic() + 90
    while True:
        try:
            ready = json.loads((datadir / "node.json").read_text())
            if ready["pid"] == proc.pid:
                node = NodeProcess(datadir, int(ready["url"].rsplit(":", 1)[1]))
                node.proc = proc
                assert json.loads((datadir / "devnet.json").read_text())["rpcUrl"] == ready["url"]
                return node
        except (OSError, ValueError, KeyError):
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "devnet did not start"
        time.sleep(0.1)


def test_devnet_deploys_examples_and_restarts(tmp_path: Path) -> None:
    datadir = tmp_path / "devnet"
    cmd = [sys.executable, "-c", "from ai_evm.cli import main; main()", "devnet", "--l2-only", "--datadir",
           str(datadir), "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        node = _wait_ready(datadir, proc)
        info = json.loads((datadir / "devnet.json").read_text())
        assert set(info["models"]) == {p.parent.name for p in (ROOT / "models").glob("*/model.bundle")}
        w3 = Web3(Web3.HTTPProvider(node.url))
        for name in ("AIContract", "DigitsClassifier"):  # (the classifier's immutable model fills a slot)
            code = w3.eth.get_code(Web3.to_checksum_address(info["contracts"][name]))
            expected = artifact(name).deployed_bytecode
            assert len(code) == len(expected) and code[:32] == expected[:32]
        clf = w3.eth.contract(address=Web3.to_checksum_address(info["contracts"]["DigitsClassifier"]),
                              abi=list(artifact("DigitsClassifier").abi))  # fmt: skip
        assert "0x" + clf.functions.model().call().hex() == info["models"]["digits_mlp"]
        x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
        assert 0 <= clf.functions.predict(bytes(int(round(float(v) * 16)) for v in x[0])).call() <= 9
        assert node.rpc("aievm_getModel", info["models"]["encoder"])["address"] == info["models"]["encoder"]
        # the devnet serves anvil's test methods: a snapshot, a funded account, a revert
        snap = node.rpc("evm_snapshot")
        lucky = "0x" + "42" * 20
        node.rpc("anvil_setBalance", lucky, hex(10**18))
        assert node.rpc("eth_getBalance", lucky, "latest") == hex(10**18)
        assert node.rpc("evm_revert", snap) is True
        assert node.rpc("eth_getBalance", lucky, "latest") == "0x0"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, out
    for needle in ("Listening on", "DigitsClassifier", info["contracts"]["AIContract"], info["models"]["digits_mlp"]):
        assert needle in out
    # a restart reuses the chain and the recorded contracts (no second deployment)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        node = _wait_ready(datadir, proc)
        head = node.rpc("eth_blockNumber")
        assert head == "0x1" and json.loads((datadir / "devnet.json").read_text())["contracts"] == info["contracts"]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
