"""viem (``viem_session.mjs``, run once per module with node) against a node process with
``--dev-methods``: deploy, call, send, watchContractEvent over HTTP and WebSocket, trace, proof,
snapshot/revert and multicall, each checked here against the node's own answers.

The HTTP watch is the case of the old filter bug. viem's ``watchContractEvent`` over HTTP installs
``eth_newFilter`` *without* ``fromBlock`` (so the filter's start is ``latest``) and batches whatever
``eth_getFilterChanges`` returns once per ``pollingInterval``. The script sends WATCHED transactions,
one block each (automine), within one polling interval. The node used to answer a poll of such a
filter with the logs of the newest block only (``logs.py``: ``lo = max(head, start)``), so viem's
``onLogs`` got the last of those blocks and silently lost the others:
:func:`test_watch_contract_event_over_http_gets_every_block` fails on that code (its check that one
batch spans several blocks makes sure the case was exercised, not passed by polling each block).
"""

from __future__ import annotations

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

from ai_evm.contracts import artifact_path

SCRIPT = Path(__file__).resolve().parent / "viem_session.mjs"
X = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
Y = np.load(ROOT / "models" / "digits_mlp" / "test_y.npy")
IMAGES = 6  # images of distinct labels; the script watches IMAGES - 2 transactions sent at once
POLLING_MS = 2000

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "viem").is_dir(),
    reason="node or the npm package viem is not installed (npm install)",
)


def _picked() -> list[int]:
    """Indexes of the first test images of IMAGES distinct labels."""
    picked: list[int] = []
    for i, label in enumerate(Y):
        if all(Y[j] != label for j in picked):
            picked.append(i)
        if len(picked) == IMAGES:
            break
    return picked


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with --dev-methods (viem's test client) and the digits model in its store."""
    proc = digits_node(tmp_path_factory.mktemp("viem") / "data", ("--dev-methods",))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def session(dev: NodeProcess) -> dict[str, Any]:
    images = ["0x" + bytes(int(round(v * 16)) for v in X[i]).hex() for i in _picked()]  # DigitsClassifier's 0..16
    cmd = ["node", str(SCRIPT), dev.url, dev.url.replace("http://", "ws://"), str(artifact_path("DigitsClassifier")),
           dev.model, json.dumps(images), str(POLLING_MS)]  # type: ignore[attr-defined]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def _digit(dev: NodeProcess, tx: str) -> int:
    """The digit of a transaction's inference, from the node's record of it (argmax of the output)."""
    (record,) = dev.rpc("aievm_getInferences", tx)
    return int(np.frombuffer(bytes.fromhex(record["output"][2:]), "<f4").argmax())


def test_deploy_call_and_send(session: dict[str, Any], dev: NodeProcess) -> None:
    assert session["chainId"] == 31337
    deploy = session["deploy"]
    assert deploy["status"] == "success"
    code = dev.rpc("eth_getCode", deploy["address"], "latest")
    assert len(code) > 2
    # eth_call (readContract) ran the inference: one distinct digit per image, as the labels
    assert [int(d) for d in session["predict"]] == [int(Y[i]) for i in _picked()]
    send = session["send"]
    receipt = dev.rpc("eth_getTransactionReceipt", send["hash"])
    assert send["status"] == "success" and receipt["status"] == "0x1"
    assert int(receipt["gasUsed"], 16) == int(send["gasUsed"]) and int(receipt["blockNumber"], 16) == send["block"]
    assert _digit(dev, send["hash"]) == int(send["lastPrediction"]) == int(session["predict"][0])


def _expected_events(session: dict[str, Any], dev: NodeProcess) -> list[dict[str, Any]]:
    watch = session["watch"]
    out = []
    for tx in watch["markers"] + watch["watched"]:
        receipt = dev.rpc("eth_getTransactionReceipt", tx)
        out.append({"tx": tx, "block": int(receipt["blockNumber"], 16), "digit": str(_digit(dev, tx))})
    return out


def _got(batches: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"tx": e["tx"], "block": e["block"], "digit": e["digit"]} for batch in batches for e in batch]


def test_watch_contract_event_over_http_gets_every_block(session: dict[str, Any], dev: NodeProcess) -> None:
    """Every Classified event once, in order, though several blocks fell within one poll (the
    module docstring says how this failed on the old filter code)."""
    watch = session["watch"]
    assert watch["errors"] == []
    assert watch["calls"]["eth_newFilter"] == 1 and watch["calls"]["eth_uninstallFilter"] == 1
    assert _got(watch["http"]) == _expected_events(session, dev)
    assert len(set(watch["watchedBlocks"])) == IMAGES - 2  # one block per watched transaction
    # the case was exercised: one poll answered for several blocks at once
    assert max(len(batch) for batch in watch["http"]) >= 2, watch["http"]


def test_watch_contract_event_over_websocket(session: dict[str, Any], dev: NodeProcess) -> None:
    """viem's webSocket transport subscribes (eth_subscribe "logs"): every event once, in order."""
    assert _got(session["watch"]["ws"]) == _expected_events(session, dev)


def test_trace_transaction_shows_the_inference(session: dict[str, Any], dev: NodeProcess) -> None:
    """debug_traceTransaction through viem's client.request: the callTracer frame of the 0xa1 call
    holds the model, input, output and gas of the node's inference record."""
    trace = session["trace"]
    (record,) = dev.rpc("aievm_getInferences", trace["hash"])
    top = trace["callTracer"]
    assert top == dev.rpc("debug_traceTransaction", trace["hash"], {"tracer": "callTracer"})
    assert top["to"] == session["deploy"]["address"] and "error" not in top
    (inner,) = top["calls"]
    assert inner["to"] == "0x" + "00" * 19 + "a1" and int(inner["gasUsed"], 16) == record["gas"]
    assert inner["inference"] == {"precompile": "0xa1", "model": record["model"], "input": record["input"],
                                  "output": record["output"], "gas": hex(record["gas"]), "callIndex": 0}  # fmt: skip
    assert record["model"] == dev.model  # type: ignore[attr-defined]
    assert trace["structLogCount"] > 0


def test_get_proof_verifies_against_the_state_root(session: dict[str, Any], dev: NodeProcess) -> None:
    """viem's getProof answer, verified by test_proofs' independent Merkle-Patricia verifier against
    the block's stateRoot, and each slot's value against eth_getStorageAt."""
    got = session["proof"]
    proof = got["proof"]
    block = dev.rpc("eth_getBlockByNumber", hex(got["block"]), False)
    assert block["stateRoot"] == got["stateRoot"]
    account = verify(bytes.fromhex(got["stateRoot"][2:]), bytes.fromhex(proof["address"][2:]),
                     [bytes.fromhex(n[2:]) for n in proof["accountProof"]])  # fmt: skip
    assert account is not None
    nonce, balance, storage_root, code_hash = rlp.decode(account)
    assert storage_root.hex() == proof["storageHash"][2:] and code_hash.hex() == proof["codeHash"][2:]
    assert int.from_bytes(nonce, "big") == proof["nonce"] == 1
    assert int(proof["balance"]) == int.from_bytes(balance, "big")
    assert [int(s["value"]) for s in proof["storageProof"]] == [int(w, 16) for w in got["storage"]]
    assert any(int(w, 16) for w in got["storage"])  # something is proven present, not only absence
    for item in proof["storageProof"]:
        value = verify(storage_root, bytes.fromhex(item["key"][2:]), [bytes.fromhex(n[2:]) for n in item["proof"]])
        assert (0 if value is None else int.from_bytes(rlp.decode(value), "big")) == int(item["value"])


def test_snapshot_revert_with_the_anvil_test_client(session: dict[str, Any], dev: NodeProcess) -> None:
    """testClient (mode 'anvil'): evm_snapshot, anvil_mine, a classify transaction, anvil_setBalance,
    evm_revert: blocks, storage, balance and the transaction are gone."""
    snap = session["snapshot"]
    before, during, after = snap["before"], snap["during"], snap["after"]
    assert int(during["block"]) >= int(before["block"]) + 4  # 3 mined + the transaction
    assert during["lastPrediction"] != before["lastPrediction"] and int(during["deadBalance"]) == 10**18
    assert after == {"block": before["block"], "lastPrediction": before["lastPrediction"], "deadBalance": "0",
                     "changedTx": "TransactionReceiptNotFoundError"}  # fmt: skip
    assert dev.rpc("eth_getTransactionByHash", snap["changedHash"]) is None


def test_multicall_through_the_multicall3_predeploy(session: dict[str, Any]) -> None:
    """client.multicall (aggregate3 at 0xcA11...CA11, from the chain's contracts): the predictions
    equal the single calls, a failing call fails alone with its decoded error, and a balance."""
    results = session["multicall"]["results"]
    assert [r["result"] for r in results[:IMAGES]] == session["predict"]
    assert all(r["status"] == "success" for r in results[:IMAGES])
    failed = results[IMAGES]
    assert failed["status"] == "failure" and failed["errorName"] == "InvalidImageLength"
    assert results[IMAGES + 1] == {"status": "success", "result": session["multicall"]["balance"]}
