"""ethers.js v6 (a small node script, ``ethers_session.mjs``) against a node process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nodeproc import ROOT, NodeProcess

from ai_evm.contracts import artifact_path

SCRIPT = Path(__file__).resolve().parent / "ethers_session.mjs"
X = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
Y = np.load(ROOT / "models" / "digits_mlp" / "test_y.npy")

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "ethers").is_dir(),
    reason="node or the npm package ethers is not installed (npm install)",
)


def test_ethers_deploy_inference_and_logs(node: NodeProcess) -> None:
    x = X[2:3].astype("<f4").tobytes()
    result = subprocess.run(
        ["node", str(SCRIPT), node.url, str(artifact_path("AIContract")), node.model, "0x" + x.hex()],  # type: ignore[attr-defined]
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["chainId"] == "31337" and out["status"] == 1 and out["logCount"] == 1
    assert out["queryFilterCount"] == 1 and out["eventModel"] == node.model  # type: ignore[attr-defined]
    probs = np.frombuffer(bytes.fromhex(out["eventOutput"][2:]), "<f4")
    assert int(probs.argmax()) == int(Y[2])
    receipt = node.rpc("eth_getTransactionReceipt", out["txHash"])
    assert receipt["status"] == "0x1" and int(receipt["gasUsed"], 16) == int(out["gasUsed"])
    assert out["signerStatus"] == 1 and out["signerFrom"].lower() == node.rpc("eth_accounts")[0]
    failure = out["failure"]
    assert failure is not None and failure["code"] == "CALL_EXCEPTION"
    # ethers decodes AILib's custom error InferenceFailed(bytes32 model) from the revert data
    assert failure["revert"] == "InferenceFailed" and failure["args"] == ["0x" + "01" * 32]
    assert failure["data"] == "0x6e17ab70" + "01" * 32
