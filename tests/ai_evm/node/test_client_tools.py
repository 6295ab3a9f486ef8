"""Trace, proof and snapshot/revert through the clients that test_ethers.py, test_web3.py and
test_cast.py drive for deploy/call/send: ethers v6 ``provider.send`` (``ethers_tools.mjs``, over
HTTP and over ``WebSocketProvider``), web3.py ``make_request``, ``AsyncWeb3`` over WebSocket and
``cast proof``, on a node with ``--dev-methods``. Each answer is checked against the node's own
records (the inference record of the traced transaction) or an independent check (test_proofs'
Merkle-Patricia verifier against the header's stateRoot).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rlp
from nodeproc import ROOT, NodeProcess, digits_node
from test_proofs import verify
from web3 import AsyncWeb3, Web3, WebSocketProvider

from ai_evm.contracts import artifact_path

SCRIPT = Path(__file__).resolve().parent / "ethers_tools.mjs"
CAST = ROOT / "node_modules" / ".bin" / "cast"
X = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
Y = np.load(ROOT / "models" / "digits_mlp" / "test_y.npy")

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "ethers").is_dir() or not CAST.exists(),
    reason="node and the npm packages ethers and @foundry-rs/cast are required (npm install)",
)


def image(i: int) -> str:
    return "0x" + bytes(int(round(v * 16)) for v in X[i]).hex()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with --dev-methods and the digits model in its store."""
    proc = digits_node(tmp_path_factory.mktemp("tools") / "data", ("--dev-methods",))
    yield proc
    proc.stop()


SECOND = next(i for i in range(1, len(Y)) if Y[i] != Y[0])  # a different digit, so the revert shows


@pytest.fixture(scope="module", params=["http", "ws"])
def session(dev: NodeProcess, request: pytest.FixtureRequest) -> dict[str, Any]:
    """ethers_tools.mjs over JsonRpcProvider (http) or WebSocketProvider (ws)."""
    url = dev.url if request.param == "http" else dev.url.replace("http://", "ws://")
    cmd = ["node", str(SCRIPT), url, str(artifact_path("DigitsClassifier")), dev.model, image(0), image(SECOND)]  # type: ignore[attr-defined]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["transport"] == {"http": "JsonRpcProvider", "ws": "WebSocketProvider"}[request.param]
    return out


def _inference_frame(trace: dict[str, Any]) -> dict[str, Any]:
    (inner,) = trace["calls"]
    assert inner["to"] == "0x" + "00" * 19 + "a1"
    return dict(inner["inference"])


def _check_record(dev: NodeProcess, tx: str, frame: dict[str, Any]) -> None:
    (record,) = dev.rpc("aievm_getInferences", tx)
    assert frame == {"precompile": "0xa1", "model": record["model"], "input": record["input"],
                     "output": record["output"], "gas": hex(record["gas"]), "callIndex": 0}  # fmt: skip
    assert record["model"] == dev.model  # type: ignore[attr-defined]
    assert int(np.frombuffer(bytes.fromhex(record["output"][2:]), "<f4").argmax()) == int(Y[0])


def test_ethers_trace(session: dict[str, Any], dev: NodeProcess) -> None:
    assert session["status"] == 1
    _check_record(dev, session["txHash"], _inference_frame(session["trace"]))


def test_web3_trace(session: dict[str, Any], dev: NodeProcess) -> None:
    w3 = Web3(Web3.HTTPProvider(dev.url, request_kwargs={"timeout": 60}))
    resp = w3.provider.make_request("debug_traceTransaction", [session["txHash"], {"tracer": "callTracer"}])  # type: ignore[arg-type]
    assert "error" not in resp
    assert resp["result"] == session["trace"]
    _check_record(dev, session["txHash"], _inference_frame(resp["result"]))
    struct = w3.provider.make_request("debug_traceTransaction", [session["txHash"], {}])  # type: ignore[arg-type]
    assert struct["result"]["failed"] is False and struct["result"]["structLogs"]


def _verify_proof(proof: dict[str, Any], state_root: str) -> list[int]:
    """The proven values of the proof's slots (and the account fields against the proof's own claims)."""
    account = verify(bytes.fromhex(state_root[2:]), bytes.fromhex(proof["address"][2:]),
                     [bytes.fromhex(n[2:]) for n in proof["accountProof"]])  # fmt: skip
    assert account is not None
    _, _, storage_root, code_hash = rlp.decode(account)
    assert "0x" + storage_root.hex() == proof["storageHash"] and "0x" + code_hash.hex() == proof["codeHash"]
    values = []
    for item in proof["storageProof"]:
        key = int(item["key"], 16).to_bytes(32, "big")
        value = verify(storage_root, key, [bytes.fromhex(n[2:]) for n in item["proof"]])
        values.append(0 if value is None else int.from_bytes(rlp.decode(value), "big"))
        assert values[-1] == int(item["value"], 16)
    return values


def _expected(session: dict[str, Any]) -> list[int]:
    """DigitsClassifier's slot 0 is lastPrediction, slot 1 lastCaller (``model`` is immutable)."""
    return [int(session["before"]["lastPrediction"]), int(session["sender"], 16)]


def test_ethers_proof(session: dict[str, Any], dev: NodeProcess) -> None:
    block = dev.rpc("eth_getBlockByNumber", session["proofBlock"], False)
    assert block["stateRoot"] == session["stateRoot"]
    assert _verify_proof(session["proof"], session["stateRoot"]) == _expected(session)
    assert int(session["before"]["lastPrediction"]) == int(Y[0])


def test_cast_proof(session: dict[str, Any], dev: NodeProcess) -> None:
    block = dev.rpc("eth_getBlockByNumber", session["proofBlock"], False)
    out = subprocess.run([str(CAST), "proof", session["address"], "0", "1", "--block", str(int(block["number"], 16)),
                          "--rpc-url", dev.url], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    proof = json.loads(out.stdout)
    assert _verify_proof(proof, block["stateRoot"]) == _expected(session)
    assert proof["accountProof"] == session["proof"]["accountProof"]


def test_ethers_snapshot_revert(session: dict[str, Any], dev: NodeProcess) -> None:
    before, during, after = session["before"], session["during"], session["after"]
    assert session["reverted"] is True
    assert during["block"] == before["block"] + 2 and during["lastPrediction"] != before["lastPrediction"]
    assert after == {"block": before["block"], "lastPrediction": before["lastPrediction"], "secondTx": None}
    assert dev.rpc("eth_getTransactionByHash", session["secondHash"]) is None


def test_async_web3_over_websocket(dev: NodeProcess) -> None:
    """AsyncWeb3(WebSocketProvider): deploy, call, send, trace, proof and snapshot/revert over ws."""
    art = json.loads(artifact_path("DigitsClassifier").read_text())

    async def session() -> dict[str, Any]:
        async with AsyncWeb3(WebSocketProvider(dev.url.replace("http://", "ws://"))) as aw3:
            sender = (await aw3.eth.accounts)[4]
            factory = aw3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
            deploy = await factory.constructor(bytes.fromhex(dev.model[2:])).transact({"from": sender})  # type: ignore[attr-defined]
            address = (await aw3.eth.wait_for_transaction_receipt(deploy))["contractAddress"]
            clf = aw3.eth.contract(address=address, abi=art["abi"])
            out: dict[str, Any] = {"address": address, "predict": await clf.functions.predict(image(0)).call()}
            tx = await clf.functions.classify(image(0)).transact({"from": sender})
            out["receipt"] = await aw3.eth.wait_for_transaction_receipt(tx)
            traced = await aw3.provider.make_request("debug_traceTransaction", [tx, {"tracer": "callTracer"}])  # type: ignore[arg-type]
            out["trace"] = traced["result"]
            head = await aw3.eth.get_block("latest")
            out["stateRoot"] = "0x" + bytes(head["stateRoot"]).hex()
            # AsyncEth has no get_proof: the raw request, as for the trace
            proof = await aw3.provider.make_request("eth_getProof", [address, ["0x0", "0x1"], hex(head["number"])])  # type: ignore[arg-type]
            out["proof"] = proof["result"]
            snap = (await aw3.provider.make_request("evm_snapshot", []))["result"]  # type: ignore[arg-type]
            other = await clf.functions.classify(image(SECOND)).transact({"from": sender})
            await aw3.eth.wait_for_transaction_receipt(other)
            out["during"] = await clf.functions.lastPrediction().call()
            out["reverted"] = (await aw3.provider.make_request("evm_revert", [snap]))["result"]  # type: ignore[arg-type]
            out["after"] = await clf.functions.lastPrediction().call()
            out["head"], out["headAfter"] = head["number"], await aw3.eth.block_number
            out["other"] = "0x" + bytes(other).hex()
            return out

    out = asyncio.run(asyncio.wait_for(session(), 180))
    assert out["receipt"]["status"] == 1 and out["predict"] == int(Y[0])
    _check_record(dev, "0x" + bytes(out["receipt"]["transactionHash"]).hex(), _inference_frame(out["trace"]))
    sender = dev.rpc("eth_accounts")[4]
    assert _verify_proof(out["proof"], out["stateRoot"]) == [int(Y[0]), int(sender, 16)]
    assert out["during"] == int(Y[SECOND]) and out["reverted"] is True and out["after"] == int(Y[0])
    assert out["headAfter"] == out["head"] and dev.rpc("eth_getTransactionByHash", out["other"]) is None
