"""Filters as the clients' own watch APIs use them, with several blocks mined between two polls.

``eth_getFilterChanges`` must return the logs (or block hashes) of every block since the last poll,
as geth does. The node used to answer only the newest block's logs for a filter without
``fromBlock`` (``logs.py``: ``lo = max(head, start)``), so web3.py's ``get_new_entries``, contract
event filters and ethers' ``contract.on`` silently lost events; each test below fails on that code.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asm import PING_ABI, PING_TOPIC, ping_code
from nodeproc import ROOT, NodeProcess, RpcFailure
from web3 import Web3

WATCH = Path(__file__).resolve().parent / "ethers_watch.mjs"
BLOCKS = 4


@pytest.fixture(scope="module")
def w3(node: NodeProcess) -> Web3:
    return Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 120}))


@pytest.fixture(scope="module")
def ping(w3: Web3) -> Any:
    tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": ping_code()})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=PING_ABI)


def _pings(w3: Web3, ping: Any, values: list[int]) -> list[int]:
    """One transaction (so one block: automine) per value; returns their block numbers."""
    blocks = []
    for v in values:
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[2], "to": ping.address, "data": v.to_bytes(32, "big")})
        blocks.append(w3.eth.wait_for_transaction_receipt(tx).blockNumber)
    assert len(set(blocks)) == len(values)
    return blocks


def test_web3_filter_get_new_entries_returns_every_block(w3: Web3, ping: Any) -> None:
    log_filter = w3.eth.filter({"address": ping.address})
    block_filter = w3.eth.filter("latest")
    blocks = _pings(w3, ping, [1, 2, 3, 4])
    entries = log_filter.get_new_entries()
    assert [e["blockNumber"] for e in entries] == blocks
    assert [int.from_bytes(e["data"], "big") for e in entries] == [1, 2, 3, 4]
    assert all(e["topics"] == [PING_TOPIC] for e in entries)
    assert log_filter.get_new_entries() == []  # nothing twice
    assert [w3.eth.get_block(h).number for h in block_filter.get_new_entries()] == blocks
    more = _pings(w3, ping, [5, 6])
    assert [e["blockNumber"] for e in log_filter.get_new_entries()] == more
    assert w3.eth.uninstall_filter(log_filter.filter_id) and w3.eth.uninstall_filter(block_filter.filter_id)


def test_web3_contract_event_filter(w3: Web3, ping: Any) -> None:
    event_filter = ping.events.Ping.create_filter(from_block="latest")
    _pings(w3, ping, [10, 11, 12])
    assert [e.args.n for e in event_filter.get_new_entries()] == [10, 11, 12]
    _pings(w3, ping, [13])
    assert [e.args.n for e in event_filter.get_new_entries()] == [13]


def test_web3_pending_transaction_filter(w3: Web3, ping: Any) -> None:
    """Each transaction that entered the pool since the last poll, once (under automine it is
    pending only while its send runs: it is reported with its block)."""
    pending = w3.eth.filter("pending")
    hashes = [w3.eth.send_transaction({"from": w3.eth.accounts[5], "to": ping.address, "data": bytes(32)})
              for _ in range(3)]  # fmt: skip
    assert pending.get_new_entries() == hashes
    assert pending.get_new_entries() == []


def test_filter_ids_are_quantities(node: NodeProcess) -> None:
    """geth's ids: hex without leading zeros (a QUANTITY), so clients that parse them as numbers agree."""
    ids = [node.rpc("eth_newBlockFilter") for _ in range(64)]
    assert all(re.fullmatch(r"0x[1-9a-f][0-9a-f]*", fid) for fid in ids), ids
    assert all(node.rpc("eth_uninstallFilter", fid) for fid in ids)


def test_filter_block_bounds(w3: Web3, ping: Any, node: NodeProcess) -> None:
    """Numeric fromBlock/toBlock bound what the changes report; tags do not."""
    head = w3.eth.block_number
    bounded = node.rpc("eth_newFilter", {"address": ping.address, "fromBlock": hex(head + 2), "toBlock": hex(head + 3)})
    tagged = node.rpc("eth_newFilter", {"address": ping.address, "fromBlock": "earliest", "toBlock": "latest"})
    blocks = _pings(w3, ping, [20, 21, 22, 23])
    assert blocks == [head + 1, head + 2, head + 3, head + 4]
    assert [int(x["blockNumber"], 16) for x in node.rpc("eth_getFilterChanges", bounded)] == [head + 2, head + 3]
    assert [int(x["blockNumber"], 16) for x in node.rpc("eth_getFilterChanges", tagged)] == blocks
    assert node.rpc("eth_getFilterChanges", bounded) == []
    with pytest.raises(RpcFailure) as info:
        node.rpc("eth_newFilter", {"fromBlock": "soon"})
    assert info.value.error["code"] == -32602


def test_get_logs_range_errors(w3: Web3, ping: Any, node: NodeProcess) -> None:
    """A reversed range or a range past the head is -32602, as the execution-apis tests want."""
    head = w3.eth.block_number
    for query, message in (({"fromBlock": hex(head), "toBlock": hex(head - 1)}, "invalid block range params"),
                           ({"fromBlock": "0x1", "toBlock": hex(head + 1)}, "beyond current head"),
                           ({"fromBlock": hex(head + 5)}, "beyond current head")):  # fmt: skip
        with pytest.raises(RpcFailure) as info:
            node.rpc("eth_getLogs", query)
        assert info.value.error["code"] == -32602 and message in info.value.error["message"]
    assert node.rpc("eth_getLogs", {"fromBlock": hex(head), "toBlock": hex(head)}) is not None


@pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "node_modules" / "ethers").is_dir(),
                    reason="node or the npm package ethers is not installed (npm install)")  # fmt: skip
def test_ethers_contract_on_gets_every_event(w3: Web3, ping: Any, node: NodeProcess) -> None:
    """ethers polls the filter once per new-block notification: blocks mined within one polling
    interval reach it in one eth_getFilterChanges, which must hold all their events."""
    proc = subprocess.Popen(["node", str(WATCH), node.url, ping.address, str(BLOCKS), "3000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        blocks = _pings(w3, ping, list(range(100, 100 + BLOCKS)))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert [e["n"] for e in result["events"]] == [str(n) for n in range(100, 100 + BLOCKS)]
    assert [e["block"] for e in result["events"]] == blocks
    assert result["polls"] < 2 * BLOCKS  # it did poll across several blocks at once
