"""JSON-RPC over WebSocket on the node's port: every method, eth_subscribe/eth_unsubscribe.

Clients: web3.py ``AsyncWeb3(WebSocketProvider)``, ethers v6 ``WebSocketProvider`` (``ethers_ws.mjs``)
and 50 raw ``websockets`` subscribers at once, each of which must get every block and every log of a
stream of blocks, once and in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from asm import PING_ABI, PING_TOPIC, ping_code
from nodeproc import ROOT, NodeProcess
from web3 import AsyncWeb3, Web3, WebSocketProvider

WS_SCRIPT = Path(__file__).resolve().parent / "ethers_ws.mjs"
SUBSCRIBERS = 50
BLOCKS = 20


@pytest.fixture(scope="module")
def w3(node: NodeProcess) -> Web3:
    return Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 120}))


@pytest.fixture(scope="module")
def ping(w3: Web3) -> Any:
    tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": ping_code()})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    return w3.eth.contract(address=receipt.contractAddress, abi=PING_ABI)


def ws_url(node: NodeProcess) -> str:
    return node.url.replace("http://", "ws://")


def _pings(w3: Web3, ping: Any, values: list[int]) -> list[int]:
    blocks = []
    for v in values:
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[1], "to": ping.address, "data": v.to_bytes(32, "big")})
        blocks.append(w3.eth.wait_for_transaction_receipt(tx).blockNumber)
    return blocks


def test_async_web3_over_websocket(node: NodeProcess, w3: Web3, ping: Any) -> None:
    async def session() -> dict[str, Any]:
        async with AsyncWeb3(WebSocketProvider(ws_url(node))) as aw3:
            out: dict[str, Any] = {"chainId": await aw3.eth.chain_id, "accounts": await aw3.eth.accounts}
            heads = await aw3.eth.subscribe("newHeads")
            logs = await aw3.eth.subscribe("logs", {"address": ping.address, "topics": ["0x" + PING_TOPIC.hex()]})
            pending = await aw3.eth.subscribe("newPendingTransactions")
            tx = await aw3.eth.send_transaction({"from": out["accounts"][3], "to": ping.address,
                                                 "data": (5).to_bytes(32, "big")})  # fmt: skip
            receipt = await aw3.eth.wait_for_transaction_receipt(tx)
            got: dict[str, list[Any]] = {heads: [], logs: [], pending: []}
            async for message in aw3.socket.process_subscriptions():
                got[message["subscription"]].append(message["result"])
                if got[heads] and got[logs] and got[pending]:
                    break
            out.update(receipt=receipt, heads=got[heads], logs=got[logs], pending=got[pending], tx=tx)
            out["unsubscribed"] = await aw3.eth.unsubscribe(heads)
            out["again"] = (await aw3.provider.make_request("eth_unsubscribe", [heads]))["result"]  # type: ignore[arg-type]
            return out

    out = asyncio.run(asyncio.wait_for(session(), 120))
    assert out["chainId"] == 31337 and len(out["accounts"]) == 10
    receipt = out["receipt"]
    assert receipt.status == 1
    assert out["heads"][0]["number"] == receipt.blockNumber and out["heads"][0]["hash"] == receipt.blockHash
    (log,) = out["logs"]
    assert log["transactionHash"] == out["tx"] and int.from_bytes(log["data"], "big") == 5
    assert out["pending"] == [out["tx"]]
    assert out["unsubscribed"] is True and out["again"] is False


def test_fifty_subscribers_get_every_block_and_log(node: NodeProcess, w3: Web3, ping: Any) -> None:
    url = ws_url(node)

    async def subscriber(ready: asyncio.Event, counter: list[int]) -> tuple[list[int], list[int]]:
        async with websockets.connect(url, max_queue=None) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
            heads_id = json.loads(await ws.recv())["result"]
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "eth_subscribe",
                                      "params": ["logs", {"address": ping.address}]}))  # fmt: skip
            logs_id = json.loads(await ws.recv())["result"]
            assert re.fullmatch(r"0x[1-9a-f][0-9a-f]*", heads_id) and re.fullmatch(r"0x[1-9a-f][0-9a-f]*", logs_id)
            counter[0] += 1
            if counter[0] == SUBSCRIBERS:
                ready.set()
            heads: list[int] = []
            values: list[int] = []
            while len(heads) < BLOCKS or len(values) < BLOCKS:
                message = json.loads(await ws.recv())
                sub, result = message["params"]["subscription"], message["params"]["result"]
                if sub == heads_id:
                    heads.append(int(result["number"], 16))
                else:
                    assert sub == logs_id
                    values.append(int(result["data"], 16))
            return heads, values

    async def run() -> tuple[list[int], list[tuple[list[int], list[int]]]]:
        ready, counter = asyncio.Event(), [0]
        tasks = [asyncio.create_task(subscriber(ready, counter)) for _ in range(SUBSCRIBERS)]
        await asyncio.wait_for(ready.wait(), 60)
        blocks = await asyncio.to_thread(_pings, w3, ping, list(range(1000, 1000 + BLOCKS)))
        return blocks, await asyncio.wait_for(asyncio.gather(*tasks), 120)

    blocks, results = asyncio.run(run())
    assert len(results) == SUBSCRIBERS
    for heads, values in results:
        assert heads == blocks  # every block once, in order
        assert values == list(range(1000, 1000 + BLOCKS))  # every log once, in order


def test_subscription_errors(node: NodeProcess) -> None:
    async def session() -> list[Any]:
        async with websockets.connect(ws_url(node)) as ws:
            out = []
            for params in (["newBlocks"], ["logs", {"blockHash": "0x" + "00" * 32}], ["logs", {"address": "0x12"}]):
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": params}))
                out.append(json.loads(await ws.recv()))
            await ws.send("{not json")
            out.append(json.loads(await ws.recv()))
            return out

    *bad, parse = asyncio.run(asyncio.wait_for(session(), 60))
    assert all(r["error"]["code"] == -32602 for r in bad)
    assert parse["error"]["code"] == -32700
    with pytest.raises(Exception, match="notifications not supported: eth_subscribe needs a WebSocket"):
        node.rpc("eth_subscribe", "newHeads")  # HTTP has no notifications (geth's message, and where to go)


@pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "node_modules" / "ethers").is_dir(),
                    reason="node or the npm package ethers is not installed (npm install)")  # fmt: skip
def test_ethers_websocket_provider(node: NodeProcess, w3: Web3, ping: Any) -> None:
    proc = subprocess.Popen(["node", str(WS_SCRIPT), ws_url(node), ping.address, "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line) == {"ready": True}, proc.stderr.read() if proc.stderr else line
        blocks = _pings(w3, ping, [41, 42, 43, 44])
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["chainId"] == "31337" and result["status"] == 1
    assert [e["n"] for e in result["events"]] == ["41", "42", "43", "44"]
    assert [e["block"] for e in result["events"]] == blocks


def test_a_client_that_does_not_read_is_closed() -> None:
    """More than MAX_QUEUED_MESSAGES waiting: unsubscribed and closed with 1008, nothing held."""
    from ai_evm.node import pubsub

    class StuckSocket:
        closed: tuple[int, str] | None = None

        async def send_text(self, text: str) -> None:
            await asyncio.Event().wait()  # the client never reads

        async def close(self, code: int, reason: str) -> None:
            self.closed = (code, reason)

    async def run() -> tuple[pubsub.Connection, pubsub.BlockFeed, StuckSocket]:
        sock = StuckSocket()
        feed = pubsub.BlockFeed(seq=None)
        feed._last = 0  # as if polling had started (no chain in this test)
        conn = pubsub.Connection(sock, None, feed, None)  # type: ignore[arg-type]
        conn._writer_task = asyncio.create_task(conn._writer())
        conn._register(pubsub.Subscription("0x01", "newHeads", None, conn))
        assert "0x01" in feed.subscriptions
        for i in range(pubsub.MAX_QUEUED_MESSAGES + 2):
            conn.notify("0x01", {"number": hex(i)})
        await asyncio.sleep(0.05)
        return conn, feed, sock

    conn, feed, sock = asyncio.run(run())
    assert conn.overflowed and feed.subscriptions == {} and conn.subscriptions == set()
    assert sock.closed is not None and sock.closed[0] == 1008
    assert conn.outbox.qsize() <= pubsub.MAX_QUEUED_MESSAGES


CAST = ROOT / "node_modules" / ".bin" / "cast"


@pytest.mark.skipif(not CAST.exists() or shutil.which("node") is None,
                    reason="npm install has not put cast in node_modules")  # fmt: skip
def test_cast_logs_subscribe(node: NodeProcess, w3: Web3, ping: Any) -> None:
    """``cast logs --subscribe`` over ws: once its first log arrives, it gets every later one.

    cast prints nothing until a log comes, so pings are sent until it has printed four; the values
    it printed must then be consecutive (the first pings may predate its subscription)."""
    command = [str(CAST), "logs", "--subscribe", "--address", ping.address, "--json", "--rpc-url", ws_url(node)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(iter(lambda: proc.stdout.read(1), "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline, value = time.monotonic() + 90, 5000
        while time.monotonic() < deadline and len(re.findall(r'"data":"(0x[0-9a-f]+)"', "".join(printed))) < 4:
            value += 1
            _pings(w3, ping, [value])
            time.sleep(0.3)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the npm wrapper and the cast binary it started
        proc.wait(timeout=30)
    values = [int(v, 16) for v in re.findall(r'"data":"(0x[0-9a-f]+)"', "".join(printed))]
    assert len(values) >= 4, (proc.stderr.read() if proc.stderr else "", "".join(printed)[:500])
    assert values == list(range(values[0], values[0] + len(values)))
