"""Persistence: kill -9 the node at a random moment while it mines, restart, nothing returned is lost.

Four client threads send 200 pre-signed transfers (50 per dev account: three threads one request
each, one thread JSON-RPC batches of 10, so blocks hold one to a dozen transactions); the node is
SIGKILLed at a random moment. After a restart every
transaction whose receipt a client saw is still there in the same block, every block a client saw
has the same hash and state root, the state agrees with the mined transactions, and the node
serves (and mines) again. A graceful stop and restart keeps the head unchanged too.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from nodeproc import NodeProcess

from ai_evm.node.accounts import dev_accounts

TX_PER_SENDER = 50
SENDERS = 4
SINK = "0x000000000000000000000000000000000000dEaD"
VALUE = 1000


def _sign_all() -> list[list[str]]:
    out = []
    for acct in dev_accounts()[:SENDERS]:
        out.append([
            "0x" + Account.sign_transaction(
                {"to": SINK, "value": VALUE, "gas": 21000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
                 "nonce": n, "chainId": 31337, "type": 2}, acct.private_key).raw_transaction.hex()
            for n in range(TX_PER_SENDER)
        ])  # fmt: skip
    return out


def _sender(node: NodeProcess, raws: list[str], seen: dict[str, dict[str, Any]], lock: threading.Lock) -> None:
    for raw in raws:
        try:
            tx_hash = node.rpc("eth_sendRawTransaction", raw)
            receipt = node.rpc("eth_getTransactionReceipt", tx_hash)
            block = node.rpc("eth_getBlockByNumber", receipt["blockNumber"], False)
        except Exception:
            return  # the node was killed
        with lock:
            seen[tx_hash] = {"receipt": receipt, "block": block}


def _batch_sender(node: NodeProcess, raws: list[str], seen: dict[str, dict[str, Any]], lock: threading.Lock) -> None:
    for i in range(0, len(raws), 10):
        sends = [{"jsonrpc": "2.0", "id": j, "method": "eth_sendRawTransaction", "params": [r]}
                 for j, r in enumerate(raws[i:i + 10])]  # fmt: skip
        try:
            hashes = [r["result"] for r in node.post(sends)]
            receipts = [r["result"] for r in node.post(
                [{"jsonrpc": "2.0", "id": j, "method": "eth_getTransactionReceipt", "params": [h]}
                 for j, h in enumerate(hashes)])]  # fmt: skip
            blocks = {r["blockNumber"]: node.rpc("eth_getBlockByNumber", r["blockNumber"], False) for r in receipts}
        except Exception:
            return  # the node was killed
        with lock:
            for h, r in zip(hashes, receipts, strict=True):
                seen[h] = {"receipt": r, "block": blocks[r["blockNumber"]]}


def test_kill_at_random_moment_and_restart(tmp_path: Path) -> None:
    rng = random.Random()
    datadir = tmp_path / "data"
    node = NodeProcess(datadir).start()
    signed = _sign_all()
    seen: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    threads = [threading.Thread(target=_batch_sender if i == 0 else _sender, args=(node, raws, seen, lock))
               for i, raws in enumerate(signed)]  # fmt: skip
    for t in threads:
        t.start()
    # kill somewhere between a few transactions in and (about) the end of the run
    while len(seen) < 5:
        time.sleep(0.01)
    delay = rng.uniform(0.0, 4.0)
    time.sleep(delay)
    node.kill()
    for t in threads:
        t.join()
    context = f"killed after {delay:.2f}s with {len(seen)} receipts seen"
    print(context)
    assert seen, context

    node = NodeProcess(datadir).start()
    try:
        head = int(node.rpc("eth_blockNumber"), 16)
        for tx_hash, before in seen.items():
            receipt = node.rpc("eth_getTransactionReceipt", tx_hash)
            assert receipt == before["receipt"], context
            block = node.rpc("eth_getBlockByNumber", before["block"]["number"], False)
            assert block["hash"] == before["block"]["hash"] and block["stateRoot"] == before["block"]["stateRoot"]
            assert int(block["number"], 16) <= head
        # the state agrees with what the chain says was mined
        mined = sum(int(node.rpc("eth_getBlockTransactionCountByNumber", hex(n)), 16) for n in range(1, head + 1))
        assert mined >= len(seen), context
        assert int(node.rpc("eth_getBalance", SINK, "latest"), 16) == mined * VALUE, context
        nonces = [int(node.rpc("eth_getTransactionCount", a.address, "latest"), 16) for a in dev_accounts()[:SENDERS]]
        assert sum(nonces) == mined, context
        # it serves and mines again: each sender continues from its nonce
        for acct, nonce in zip(dev_accounts()[:SENDERS], nonces, strict=True):
            if nonce < TX_PER_SENDER:
                tx_hash = node.rpc("eth_sendRawTransaction", signed[dev_accounts().index(acct)][nonce])
                assert node.rpc("eth_getTransactionReceipt", tx_hash)["status"] == "0x1"
        head_block = node.rpc("eth_getBlockByNumber", "latest", False)
    finally:
        assert node.stop() == 0  # graceful shutdown exits 0
    node = NodeProcess(datadir).start()
    try:
        assert node.rpc("eth_getBlockByNumber", "latest", False) == head_block
    finally:
        node.stop()
