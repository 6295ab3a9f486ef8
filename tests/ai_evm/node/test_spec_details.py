"""Spec details: a real ``eth_createAccessList`` and ``blockTimestamp`` on transaction objects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from asm import caller_code, reader_code
from eth_account import Account
from nodeproc import NodeProcess, RpcFailure
from web3 import Web3

from ai_evm.node.accounts import dev_accounts


@pytest.fixture(scope="module")
def w3(node: NodeProcess) -> Web3:
    return Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 120}))


def _deploy(w3: Web3, code: bytes) -> str:
    tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": code})
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt.status == 1
    return str(receipt.contractAddress)


def _contracts(w3: Web3) -> tuple[str, str, str]:
    """A calls B (reads slots 1-3, writes 4) and C (reads 5 and 6, writes 7); returns (A, B, C)."""
    b = _deploy(w3, reader_code([1, 2, 3], 4))
    c = _deploy(w3, reader_code([5, 6], 7))
    a = _deploy(w3, caller_code([bytes.fromhex(b[2:]), bytes.fromhex(c[2:])]))
    return a, b, c


def _key(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def test_create_access_list_of_a_call_touching_two_contracts(w3: Web3, node: NodeProcess) -> None:
    sender = w3.eth.accounts[3]
    a, b, c = _contracts(w3)
    result = node.rpc("eth_createAccessList", {"from": sender, "to": a})
    expected = sorted([{"address": b.lower(), "storageKeys": [_key(1), _key(2), _key(3), _key(4)]},
                       {"address": c.lower(), "storageKeys": [_key(5), _key(6), _key(7)]}],
                      key=lambda e: e["address"])  # fmt: skip
    assert result["accessList"] == expected and "error" not in result  # neither A, the sender nor 0x0
    # the same calls on a fresh copy of the contracts, without and with the list: the list saves gas
    plain = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": sender, "to": a}))
    a2, b2, c2 = _contracts(w3)
    listed = node.rpc("eth_createAccessList", {"from": sender, "to": a2})
    key = dev_accounts()[3].private_key  # signed here: a raw transaction with the list
    tx: dict[str, Any] = {"to": a2, "accessList": listed["accessList"], "gas": 200_000, "chainId": w3.eth.chain_id,
                          "nonce": w3.eth.get_transaction_count(sender), "maxFeePerGas": 10**10,
                          "maxPriorityFeePerGas": 10**9}  # fmt: skip
    raw = Account.sign_transaction(tx, key).raw_transaction
    with_list = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
    assert plain.status == with_list.status == 1
    assert with_list.gasUsed < plain.gasUsed, (with_list.gasUsed, plain.gasUsed)
    assert int(listed["gasUsed"], 16) == with_list.gasUsed  # what the transaction then really used
    sent = w3.eth.get_transaction(with_list.transactionHash)
    assert [e["address"].lower() for e in sent["accessList"]] == sorted([b2.lower(), c2.lower()])
    # eth_sendTransaction (the node signs) passes the list on too
    a3, b3, c3 = _contracts(w3)
    listed = node.rpc("eth_createAccessList", {"from": sender, "to": a3})
    by_node = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(
        {"from": sender, "to": a3, "gas": 200_000, "accessList": listed["accessList"]}))  # type: ignore[typeddict-item]
    assert by_node.status == 1 and by_node.gasUsed == with_list.gasUsed
    sent = w3.eth.get_transaction(by_node.transactionHash)
    assert [e["address"].lower() for e in sent["accessList"]] == sorted([b3.lower(), c3.lower()])


def test_create_access_list_reports_a_failing_call(w3: Web3, node: NodeProcess) -> None:
    reverter = _deploy(w3, bytes([0x60, 5, 0x80, 0x60, 11, 0x60, 0, 0x39, 0x60, 0, 0xF3,
                                  0x60, 0, 0x60, 0, 0xFD]) + b"\x00")  # fmt: skip  (runtime: REVERT(0, 0))
    result = node.rpc("eth_createAccessList", {"to": reverter})
    assert result["accessList"] == [] and "execution reverted" in result["error"]
    with pytest.raises(RpcFailure) as info:
        node.rpc("eth_createAccessList", {"to": reverter, "accessList": [{"address": "0x12"}]})
    assert info.value.error["code"] == -32602


def test_transaction_objects_carry_block_timestamp(w3: Web3, node: NodeProcess) -> None:
    tx_hash = w3.eth.send_transaction({"from": w3.eth.accounts[4], "to": w3.eth.accounts[5], "value": 1})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    block = node.rpc("eth_getBlockByNumber", hex(receipt.blockNumber), True)
    by_hash = node.rpc("eth_getTransactionByHash", tx_hash.to_0x_hex())
    by_index = node.rpc("eth_getTransactionByBlockNumberAndIndex", hex(receipt.blockNumber), "0x0")
    assert by_hash["blockTimestamp"] == by_index["blockTimestamp"] == block["timestamp"]
    assert block["transactions"][0]["blockTimestamp"] == block["timestamp"]


def test_txpool_methods_and_uncles(tmp_path: Path) -> None:
    """txpool_status/content/inspect on a node whose pool holds transactions (a long --block-time)."""
    datadir = tmp_path / "pool"
    datadir.mkdir()
    node = NodeProcess(datadir, args=("--block-time", "600")).start()
    try:
        pw3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
        sender, to = pw3.eth.accounts[1], pw3.eth.accounts[2]
        hashes = [pw3.eth.send_transaction({"from": sender, "to": to, "value": 7 + i}) for i in range(2)]
        assert dict(pw3.geth.txpool.status()) == {"pending": "0x2", "queued": "0x0"}  # geth: hex quantities
        content = pw3.geth.txpool.content()
        assert list(content["pending"]) == [sender] and content["queued"] == {}
        assert [tx["hash"] for tx in content["pending"][sender].values()] == [h.to_0x_hex() for h in hashes]
        assert list(content["pending"][sender]) == ["0", "1"]
        summary = node.rpc("txpool_inspect")["pending"][sender]["1"]
        assert re.fullmatch(rf"{to}: 8 wei \+ \d+ gas × \d+ wei", summary), summary
        node.rpc("evm_mine")
        assert node.rpc("txpool_status") == {"pending": "0x0", "queued": "0x0"}
        block = node.rpc("eth_getBlockByNumber", "latest", False)
        assert block["transactions"] == [h.to_0x_hex() for h in hashes]
        assert node.rpc("eth_getUncleByBlockNumberAndIndex", "latest", "0x0") is None
        assert node.rpc("eth_getUncleByBlockHashAndIndex", block["hash"], "0x0") is None
        raw = node.rpc("eth_getRawTransactionByHash", hashes[0].to_0x_hex())
        assert raw == node.rpc("debug_getRawTransaction", hashes[0].to_0x_hex()) and raw.startswith("0x02")
    finally:
        node.stop()
