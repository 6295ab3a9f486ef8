"""The test methods (``--dev-methods``) as web3.py and cast call them, and the node's exposure flags.

Snapshot/revert must leave the database, the block and transaction indexes and the inference
records consistent: a reverted transaction is not found afterwards (also after a restart), its
block number is reused by the next block, filters report the new blocks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets
from asm import PING_ABI, ping_code
from nodeproc import ROOT, NodeProcess, RpcFailure, digits_node
from web3 import Web3

from ai_evm.contracts import artifact

CAST = ROOT / "node_modules" / ".bin" / "cast"
X = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with --dev-methods and the digits model in its store."""
    proc = digits_node(tmp_path_factory.mktemp("dev") / "data", ("--dev-methods",))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def w3(dev: NodeProcess) -> Web3:
    return Web3(Web3.HTTPProvider(dev.url, request_kwargs={"timeout": 120}))


def call(w3: Web3, method: str, *params: Any) -> Any:
    """A raw request through web3.py's provider (how web3.py users reach non-standard methods)."""
    resp = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    if "error" in resp:
        raise RpcFailure(dict(resp["error"]))
    return resp["result"]


def _send(w3: Web3, tx: dict[str, Any]) -> Any:
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": w3.eth.accounts[0], **tx}))
    assert receipt.status == 1
    return receipt


def test_snapshot_revert_forgets_blocks_transactions_logs_and_inferences(w3: Web3, dev: NodeProcess) -> None:
    ping = w3.eth.contract(address=_send(w3, {"data": ping_code()}).contractAddress, abi=PING_ABI)
    ai = artifact("AIContract")
    ai_address = _send(w3, {"data": ai.bytecode}).contractAddress
    contract = w3.eth.contract(address=ai_address, abi=list(ai.abi))
    alice = w3.eth.accounts[7]
    base, balance = w3.eth.block_number, w3.eth.get_balance(alice)
    log_filter = w3.eth.filter({"address": ping.address})

    snap = call(w3, "evm_snapshot")
    transfer = _send(w3, {"to": alice, "value": 12345})
    pinged = _send(w3, {"to": ping.address, "data": (7).to_bytes(32, "big")})
    model = bytes.fromhex(dev.model[2:])  # type: ignore[attr-defined]
    inferred = w3.eth.wait_for_transaction_receipt(contract.functions.inference(
        model, X[:1].astype("<f4").tobytes(), 40).transact({"from": w3.eth.accounts[0]}))  # fmt: skip
    assert inferred.status == 1 and len(call(w3, "aievm_getInferences", inferred.transactionHash.to_0x_hex())) == 1
    assert w3.eth.block_number == base + 3 and w3.eth.get_balance(alice) == balance + 12345

    assert call(w3, "evm_revert", snap) is True
    assert w3.eth.block_number == base and w3.eth.get_balance(alice) == balance
    for receipt in (transfer, pinged, inferred):
        h = receipt.transactionHash.to_0x_hex()
        assert call(w3, "eth_getTransactionReceipt", h) is None and call(w3, "eth_getTransactionByHash", h) is None
    assert call(w3, "aievm_getInferences", inferred.transactionHash.to_0x_hex()) is None
    assert call(w3, "eth_getBlockByNumber", hex(base + 1), False) is None
    assert call(w3, "eth_getBlockByHash", transfer.blockHash.to_0x_hex(), False) is None
    assert call(w3, "eth_getLogs", {"fromBlock": hex(base), "address": ping.address}) == []
    assert call(w3, "evm_revert", snap) is False  # used up, as anvil

    # the next blocks take the freed numbers; the filter reports them (and not the reverted log)
    again = _send(w3, {"to": ping.address, "data": (8).to_bytes(32, "big")})
    assert again.blockNumber == base + 1 and again.blockHash != transfer.blockHash
    assert [int.from_bytes(e["data"], "big") for e in log_filter.get_new_entries()] == [8]
    block = call(w3, "aievm_getBlockInferences", hex(base + 1))
    assert block["records"] == [] and w3.eth.get_block(base + 1).hash == again.blockHash

    # everything above is on disk: a restart sees the same chain
    dev.stop()
    dev.start()
    assert w3.eth.block_number == base + 1 and w3.eth.get_block(base + 1).hash == again.blockHash
    assert call(w3, "eth_getTransactionReceipt", pinged.transactionHash.to_0x_hex()) is None
    assert call(w3, "eth_getTransactionReceipt", again.transactionHash.to_0x_hex())["blockNumber"] == hex(base + 1)
    _send(w3, {"to": alice, "value": 1})  # and it mines on


def test_nested_snapshots(w3: Web3) -> None:
    base = w3.eth.block_number
    first = call(w3, "evm_snapshot")
    call(w3, "evm_mine")
    second = call(w3, "evm_snapshot")
    call(w3, "anvil_mine", "0x3")
    assert w3.eth.block_number == base + 4
    assert call(w3, "evm_revert", second) is True and w3.eth.block_number == base + 1
    assert call(w3, "evm_revert", first) is True and w3.eth.block_number == base
    assert call(w3, "evm_revert", "0x99") is False
    third = call(w3, "anvil_snapshot")  # anvil's and hardhat's names for the same methods
    call(w3, "hardhat_mine", "0x2")
    assert call(w3, "anvil_revert", third) is True and w3.eth.block_number == base


def test_subscribers_follow_a_revert(dev: NodeProcess, w3: Web3) -> None:
    """After evm_revert and as many new blocks (one batch, usually between two polls of the feed), a
    newHeads subscriber gets the new blocks at the reused numbers (even when they are identical to
    the reverted ones: same parent and timestamp)."""

    async def run() -> tuple[int, list[tuple[int, str]], list[tuple[int, str]]]:
        async with websockets.connect(dev.url.replace("http://", "ws://")) as ws:

            async def heads(count: int) -> list[tuple[int, str]]:
                out = []
                for _ in range(count):
                    head = json.loads(await asyncio.wait_for(ws.recv(), 30))["params"]["result"]
                    out.append((int(head["number"], 16), head["hash"]))
                return out

            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
            json.loads(await ws.recv())
            base = await asyncio.to_thread(lambda: w3.eth.block_number)
            snap = call(w3, "evm_snapshot")
            await asyncio.to_thread(call, w3, "anvil_mine", "0x3")
            before = await heads(3)
            batch = [{"jsonrpc": "2.0", "id": 1, "method": "evm_revert", "params": [snap]}]
            batch += [{"jsonrpc": "2.0", "id": 2 + i, "method": "evm_mine", "params": []} for i in range(3)]
            await asyncio.to_thread(dev.post, batch)
            return base, before, await heads(3)

    base, before, after = asyncio.run(run())
    assert [n for n, _ in before] == [n for n, _ in after] == [base + 1, base + 2, base + 3]
    assert [h for _, h in after] == [w3.eth.get_block(base + i).hash.to_0x_hex() for i in (1, 2, 3)]


def test_time_travel_and_mining(w3: Web3) -> None:
    before = int(time.time())
    offset = int(call(w3, "evm_increaseTime", 3600), 16)
    assert offset >= 3600
    call(w3, "evm_mine")
    assert w3.eth.get_block("latest").timestamp >= before + 3600  # blocks are at (wall clock + offset)
    target = w3.eth.get_block("latest").timestamp + 10_000
    call(w3, "evm_setNextBlockTimestamp", hex(target))
    tx = _send(w3, {"to": w3.eth.accounts[8], "value": 1})
    assert w3.eth.get_block(tx.blockNumber).timestamp == target  # exactly, and the send's block has it
    n = w3.eth.block_number
    call(w3, "evm_mine", {"timestamp": hex(target + 500), "blocks": "0x3"})
    blocks = [w3.eth.get_block(n + i) for i in (1, 2, 3)]
    assert w3.eth.block_number == n + 3 and blocks[0].timestamp == target + 500
    assert blocks[0].timestamp < blocks[1].timestamp < blocks[2].timestamp
    call(w3, "anvil_mine", "0x4", "0x3c")
    stamps = [w3.eth.get_block(n + 3 + i).timestamp for i in range(5)]
    assert all(b - a >= 60 for a, b in zip(stamps[1:], stamps[2:], strict=False))
    with pytest.raises(RpcFailure) as info:
        call(w3, "evm_setNextBlockTimestamp", hex(w3.eth.get_block("latest").timestamp))
    assert info.value.error["code"] == -32602 and "not after the head" in info.value.error["message"]


def test_state_setters(w3: Web3) -> None:
    who = "0x" + "ab" * 20
    call(w3, "anvil_setBalance", who, hex(10**21))
    assert w3.eth.get_balance(Web3.to_checksum_address(who)) == 10**21
    call(w3, "anvil_setNonce", who, "0x2a")
    assert w3.eth.get_transaction_count(Web3.to_checksum_address(who)) == 42
    runtime = bytes([0x60, 0x2A, 0x60, 0, 0x52, 0x60, 0x20, 0x60, 0, 0xF3])  # return 42
    call(w3, "anvil_setCode", who, "0x" + runtime.hex())
    assert w3.eth.get_code(Web3.to_checksum_address(who)) == runtime
    assert int(w3.eth.call({"to": Web3.to_checksum_address(who)}).hex(), 16) == 42
    assert call(w3, "anvil_setStorageAt", who, "0x5", "0x" + "00" * 31 + "07") is True
    assert w3.eth.get_storage_at(Web3.to_checksum_address(who), 5) == b"\0" * 31 + b"\x07"
    snap = call(w3, "evm_snapshot")
    call(w3, "anvil_setBalance", who, "0x0")
    assert w3.eth.get_balance(Web3.to_checksum_address(who)) == 0
    assert call(w3, "evm_revert", snap) and w3.eth.get_balance(Web3.to_checksum_address(who)) == 10**21
    with pytest.raises(RpcFailure) as info:
        call(w3, "anvil_setBalance", "0x12", "0x1")
    assert info.value.error["code"] == -32602


def test_impersonation(w3: Web3) -> None:
    whale = Web3.to_checksum_address("0x" + "5a" * 20)
    to = Web3.to_checksum_address("0x" + "5b" * 20)
    call(w3, "anvil_setBalance", whale, hex(10**20))
    with pytest.raises(Exception, match="unknown account"):
        w3.eth.send_transaction({"from": whale, "to": to, "value": 10**18})
    call(w3, "anvil_impersonateAccount", whale)
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": whale, "to": to, "value": 10**18}))
    assert receipt.status == 1 and receipt["from"] == whale
    assert w3.eth.get_transaction(receipt.transactionHash)["from"] == whale
    assert w3.eth.get_balance(to) == 10**18 and w3.eth.get_transaction_count(whale) == 1
    assert w3.eth.get_balance(whale) == 10**20 - 10**18 - receipt.gasUsed * receipt.effectiveGasPrice
    call(w3, "anvil_stopImpersonatingAccount", whale)
    with pytest.raises(Exception, match="unknown account"):
        w3.eth.send_transaction({"from": whale, "to": to, "value": 1})


@pytest.mark.skipif(not CAST.exists() or shutil.which("node") is None,
                    reason="npm install has not put cast in node_modules")  # fmt: skip
def test_cast_rpc_snapshot_revert_and_set_balance(w3: Web3, dev: NodeProcess) -> None:
    def cast(*args: str) -> str:
        result = subprocess.run([str(CAST), *args, "--rpc-url", dev.url], capture_output=True, text=True, timeout=180)
        assert "Error" not in result.stderr, result.stderr
        return result.stdout.strip()

    who = "0x" + "cd" * 20
    snap = json.loads(cast("rpc", "evm_snapshot"))
    cast("rpc", "anvil_setBalance", who, hex(5 * 10**18))
    assert cast("balance", who) == str(5 * 10**18)
    number = int(cast("block-number"))
    assert json.loads(cast("rpc", "evm_revert", snap)) is True
    assert cast("balance", who) == "0" and int(cast("block-number")) == number - 1


def test_without_the_flag_the_test_methods_are_refused(tmp_path: Path) -> None:
    datadir = tmp_path / "plain"
    datadir.mkdir()
    node = NodeProcess(datadir, args=("--no-dev-accounts", "--cors", "https://app.example")).start()
    try:
        for method, params in (("evm_snapshot", []), ("anvil_setBalance", ["0x" + "11" * 20, "0x1"]),
                               ("evm_mine", [{"timestamp": "0x1"}]),
                               ("anvil_impersonateAccount", ["0x" + "11" * 20])):  # fmt: skip
            with pytest.raises(RpcFailure) as info:
                node.rpc(method, *params)
            assert info.value.error["code"] == -32601 and "--dev-methods" in info.value.error["message"]
        assert node.rpc("evm_mine") == "0x0" and node.rpc("eth_blockNumber") == "0x1"  # a plain block: always
        # --no-dev-accounts: nothing unlocked
        assert node.rpc("eth_accounts") == []
        with pytest.raises(RpcFailure) as info:
            node.rpc("eth_sendTransaction", {"from": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "value": "0x1"})
        assert "unknown account" in info.value.error["message"]
        # --cors: the allowed origin gets the header, another does not
        assert _preflight(node.url, "https://app.example") == "https://app.example"
        assert _preflight(node.url, "https://evil.example") is None
        # and a web page of another origin cannot reach it over WebSocket either
        assert asyncio.run(_ws_chain_id(node.url, "https://app.example")) == "0x7a69"
        with pytest.raises(websockets.exceptions.InvalidStatus, match="403"):
            asyncio.run(_ws_chain_id(node.url, "https://evil.example"))
        assert asyncio.run(_ws_chain_id(node.url, None)) == "0x7a69"  # not a browser: no Origin
    finally:
        node.stop()


async def _ws_chain_id(url: str, origin: str | None) -> Any:
    async with websockets.connect(url.replace("http://", "ws://"), origin=origin) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}))
        return json.loads(await ws.recv())["result"]


def _preflight(url: str, origin: str) -> str | None:
    req = urllib.request.Request(url, method="OPTIONS", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.headers.get("access-control-allow-origin")
    except urllib.error.HTTPError as e:  # starlette answers a disallowed preflight with 400
        return e.headers.get("access-control-allow-origin")


def _aievm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from ai_evm.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip


def test_refuses_public_dev_accounts_and_dev_methods_on_a_rollup(tmp_path: Path) -> None:
    result = _aievm("node", "--datadir", str(tmp_path / "d1"), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 1 and "dev accounts unlocked" in result.stderr
    assert "--allow-public-dev-accounts" in result.stderr and not (tmp_path / "d1" / "node.json").exists()
    rollup = tmp_path / "rollup.json"
    rollup.write_text("{}")
    result = _aievm("node", "--datadir", str(tmp_path / "d2"), "--port", "0", "--dev-methods",
                    "--rollup", str(rollup), "--l1", "http://127.0.0.1:1")  # fmt: skip
    assert result.returncode == 1 and "--dev-methods cannot be used with --rollup" in result.stderr


def test_a_rollup_node_refuses_them_whatever_the_flag() -> None:
    from ai_evm.node.chain import NodeConfig, Sequencer
    from ai_evm.node.methods import EthApi
    from ai_evm.node.vm import make_resolver

    with tempfile.TemporaryDirectory() as d:
        seq = Sequencer(NodeConfig(Path(d), sync=False), make_resolver(None))
        try:
            seq.derives_from_l1 = True
            api = EthApi(seq, dev_methods=True)
            with pytest.raises(Exception, match="refused on a rollup node") as info:
                api.evm_snapshot()
            assert info.value.code == -32601  # type: ignore[attr-defined]
            assert seq.min_timestamp is None  # the dev clock is not installed either
        finally:
            seq.close()


def test_revert_while_the_interval_miner_runs(tmp_path: Path) -> None:
    """--block-time: evm_revert takes the chain lock like the miner; the chain goes on from the snapshot."""
    datadir = tmp_path / "interval"
    datadir.mkdir()
    node = NodeProcess(datadir, args=("--dev-methods", "--block-time", "0.2")).start()
    try:
        iw3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        snap = call(iw3, "evm_snapshot")
        base = iw3.eth.block_number
        tx = iw3.eth.send_transaction({"from": iw3.eth.accounts[1], "to": iw3.eth.accounts[2], "value": 3})
        mined = iw3.eth.wait_for_transaction_receipt(tx, timeout=30)
        deadline = time.monotonic() + 30
        while iw3.eth.block_number < mined.blockNumber + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert call(iw3, "evm_revert", snap) is True
        assert iw3.eth.block_number <= base + 1  # the miner may have added one block since
        assert call(iw3, "eth_getTransactionReceipt", tx.to_0x_hex()) is None
        later = iw3.eth.block_number + 3
        while iw3.eth.block_number < later and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        head = iw3.eth.get_block("latest")
        assert head.number >= later and iw3.eth.get_block(head.number - 1).hash == head.parentHash
        again = iw3.eth.wait_for_transaction_receipt(
            iw3.eth.send_transaction({"from": iw3.eth.accounts[1], "to": iw3.eth.accounts[2], "value": 3}), timeout=30)
        assert again.status == 1 and iw3.eth.get_transaction_count(iw3.eth.accounts[1]) == 1
    finally:
        node.stop()
