"""web3.py against a node process: deploy AIContract, run an inference transaction, read its event.

Also covers the standard read methods a dapp uses (blocks, receipts, logs, filters, fees, calls
that fail inside the inference precompile) and the ``aievm_*`` methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eth_account import Account
from nodeproc import ROOT, NodeProcess, RpcFailure
from web3 import Web3
from web3.exceptions import ContractCustomError, Web3RPCError

from ai_evm.contracts import artifact

X = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
Y = np.load(ROOT / "models" / "digits_mlp" / "test_y.npy")
OUTPUT_SIZE = 40


@pytest.fixture(scope="module")
def w3(node: NodeProcess) -> Web3:
    return Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 120}))


@pytest.fixture(scope="module")
def ai_contract(w3: Web3) -> Any:
    art = artifact("AIContract")
    factory = w3.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
    tx_hash = factory.constructor().transact({"from": w3.eth.accounts[0]})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt.status == 1
    assert w3.eth.get_code(receipt.contractAddress) == art.deployed_bytecode
    return w3.eth.contract(address=receipt.contractAddress, abi=list(art.abi))


def _image(i: int) -> bytes:
    return X[i : i + 1].astype("<f4").tobytes()


def test_inference_transaction_and_event(w3: Web3, node: NodeProcess, ai_contract: Any) -> None:
    model = bytes.fromhex(node.model[2:])  # type: ignore[attr-defined]
    start = w3.eth.block_number
    tx_hash = ai_contract.functions.inference(model, _image(0), OUTPUT_SIZE).transact({"from": w3.eth.accounts[1]})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt.status == 1 and receipt.blockNumber == start + 1
    logs = w3.eth.get_logs({"fromBlock": start + 1, "toBlock": "latest", "address": ai_contract.address,
                            "topics": [ai_contract.events.Inference().topic]})
    assert len(logs) == 1 and logs[0]["transactionHash"] == tx_hash
    event = ai_contract.events.Inference().process_log(logs[0])
    assert event.args.model_address == model and event.args.input_data == _image(0)
    probs = np.frombuffer(event.args.output, "<f4")
    assert probs.shape == (10,) and int(probs.argmax()) == int(Y[0])
    records = node.rpc("aievm_getInferences", tx_hash.to_0x_hex())
    assert len(records) == 1 and records[0]["model"] == node.model  # type: ignore[attr-defined]
    assert records[0]["txHash"] == tx_hash.to_0x_hex() and records[0]["callIndex"] == 0
    block = node.rpc("aievm_getBlockInferences", hex(receipt.blockNumber))
    assert block["records"] == records and block["inferenceRoot"] != "0x" + "00" * 32


def test_failed_inference_call_names_the_reason(w3: Web3, node: NodeProcess, ai_contract: Any) -> None:
    unknown = b"\x01" * 32
    with pytest.raises(ContractCustomError):
        ai_contract.functions.inference(unknown, _image(0), OUTPUT_SIZE).call()
    data = ai_contract.encode_abi("inference", [unknown, _image(0), OUTPUT_SIZE])
    with pytest.raises(RpcFailure) as info:
        node.rpc("eth_call", {"to": ai_contract.address, "data": data}, "latest")
    assert info.value.error["code"] == 3
    assert "inference failed" in info.value.error["message"] and "0x" + "01" * 32 in info.value.error["message"]
    assert info.value.error["data"].startswith("0x")
    model = bytes.fromhex(node.model[2:])  # type: ignore[attr-defined]
    with pytest.raises(RpcFailure) as info:  # wrong output size: the precompile's reason reaches the client
        node.rpc("eth_estimateGas", {"to": ai_contract.address,
                                     "data": ai_contract.encode_abi("inference", [model, _image(0), 7])})
    assert info.value.error["code"] == 3 and "outputSize" in info.value.error["message"]


def test_digits_classifier_call_and_transaction(w3: Web3, node: NodeProcess) -> None:
    art = artifact("DigitsClassifier")
    factory = w3.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
    model = bytes.fromhex(node.model[2:])  # type: ignore[attr-defined]
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(model).transact({"from": w3.eth.accounts[2]}))
    clf = w3.eth.contract(address=receipt.contractAddress, abi=list(art.abi))
    image = bytes(int(round(v * 16)) for v in X[3])
    predicted = clf.functions.predict(image).call()
    gas = clf.functions.classify(image).estimate_gas({"from": w3.eth.accounts[2]})
    tx = clf.functions.classify(image).transact({"from": w3.eth.accounts[2], "gas": gas})
    rec = w3.eth.wait_for_transaction_receipt(tx)
    assert rec.status == 1 and rec.gasUsed <= gas
    assert clf.functions.lastPrediction().call() == predicted
    (event,) = clf.events.Classified().process_receipt(rec)
    assert event.args.digit == predicted and event.args.caller == w3.eth.accounts[2]


def test_raw_transactions_of_every_type(w3: Web3, node: NodeProcess) -> None:
    key = Account.from_key("0x" + "11" * 32)
    funder = w3.eth.accounts[3]
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": funder, "to": key.address, "value": 10**18}))
    nonce = w3.eth.get_transaction_count(key.address, "pending")
    gas_price = w3.eth.gas_price
    txs = [
        {"to": funder, "value": 1, "gas": 21000, "gasPrice": gas_price, "nonce": nonce, "chainId": 31337},
        {"to": funder, "value": 2, "gas": 30000, "gasPrice": gas_price, "nonce": nonce + 1, "chainId": 31337,
         "accessList": [{"address": funder, "storageKeys": ["0x" + "00" * 32]}], "type": 1},
        {"to": funder, "value": 3, "gas": 21000, "maxFeePerGas": 2 * gas_price, "maxPriorityFeePerGas": 10**9,
         "nonce": nonce + 2, "chainId": 31337, "type": 2},
    ]
    for i, fields in enumerate(txs):
        signed = key.sign_transaction(fields)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt.status == 1 and receipt["type"] == i
        tx = w3.eth.get_transaction(tx_hash)
        assert tx["from"] == key.address and tx["value"] == i + 1 and tx["nonce"] == nonce + i
        block = w3.eth.get_block(receipt.blockNumber, full_transactions=True)
        assert block.transactions[receipt.transactionIndex]["hash"] == tx_hash
    # replaying a mined transaction, a wrong chain id and an underfunded sender are refused
    with pytest.raises(Web3RPCError, match="already known|nonce too low"):
        w3.eth.send_raw_transaction(key.sign_transaction(txs[0]).raw_transaction)
    with pytest.raises(Web3RPCError, match="invalid chain id"):
        w3.eth.send_raw_transaction(key.sign_transaction({**txs[0], "nonce": nonce + 3, "chainId": 1}).raw_transaction)
    with pytest.raises(Web3RPCError, match="insufficient funds"):
        poor = key.sign_transaction({**txs[0], "nonce": nonce + 3, "value": 10**19})
        w3.eth.send_raw_transaction(poor.raw_transaction)


def test_blocks_filters_and_fees(w3: Web3, node: NodeProcess, ai_contract: Any) -> None:
    log_filter = node.rpc("eth_newFilter", {"address": ai_contract.address})
    block_filter = node.rpc("eth_newBlockFilter")
    model = bytes.fromhex(node.model[2:])  # type: ignore[attr-defined]
    tx_hash = ai_contract.functions.inference(model, _image(1), OUTPUT_SIZE).transact({"from": w3.eth.accounts[4]})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    changes = node.rpc("eth_getFilterChanges", log_filter)
    assert [c["transactionHash"] for c in changes] == [tx_hash.to_0x_hex()]
    assert node.rpc("eth_getFilterChanges", log_filter) == []
    assert receipt.blockHash.to_0x_hex() in node.rpc("eth_getFilterChanges", block_filter)
    assert [x["transactionHash"] for x in node.rpc("eth_getFilterLogs", log_filter)][-1] == tx_hash.to_0x_hex()
    pending_filter = node.rpc("eth_newPendingTransactionFilter")
    assert node.rpc("eth_getFilterChanges", pending_filter) == []
    block_hex = hex(receipt.blockNumber)
    assert node.rpc("eth_getTransactionByBlockNumberAndIndex", block_hex, "0x0")["hash"] == tx_hash.to_0x_hex()
    assert node.rpc("eth_getTransactionByBlockNumberAndIndex", block_hex, "0x1") is None
    assert node.rpc("eth_getBlockReceipts", block_hex)[0]["transactionHash"] == tx_hash.to_0x_hex()
    assert node.rpc("eth_getBlockByNumber", hex(receipt.blockNumber + 10**6), False) is None
    assert node.rpc("eth_uninstallFilter", log_filter) is True
    with pytest.raises(RpcFailure, match="filter not found"):
        node.rpc("eth_getFilterChanges", log_filter)
    by_hash = w3.eth.get_block(receipt.blockHash)
    by_number = w3.eth.get_block(receipt.blockNumber)
    assert by_hash == by_number and by_hash.transactions == [tx_hash]
    assert node.rpc("eth_getBlockTransactionCountByHash", receipt.blockHash.to_0x_hex()) == "0x1"
    logs = node.rpc("eth_getLogs", {"blockHash": receipt.blockHash.to_0x_hex(), "topics": [[None]]})
    assert logs[0]["logIndex"] == "0x0"
    assert node.rpc("eth_getLogs", {"fromBlock": "0x0", "address": w3.eth.accounts[0]}) == []
    history = w3.eth.fee_history(4, "latest", [10, 90])
    assert len(history["baseFeePerGas"]) == len(history["gasUsedRatio"]) + 1 and len(history["reward"][0]) == 2
    assert w3.eth.max_priority_fee > 0 and w3.eth.gas_price > 0
    assert w3.eth.estimate_gas({"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": 5}) == 21000
    assert node.rpc("eth_getBalance", w3.eth.accounts[5], "earliest") == hex(10_000 * 10**18)
    assert w3.eth.chain_id == 31337 and node.rpc("net_version") == "31337"
    info = node.rpc("aievm_getModel", node.model)  # type: ignore[attr-defined]
    assert info["address"] == node.model and info["inputs"][0]["dtype"] == "float32"  # type: ignore[attr-defined]
    with pytest.raises(RpcFailure, match="not available"):
        node.rpc("aievm_getModel", "0x" + "02" * 32)


def test_call_with_state_override_and_block_tags(w3: Web3, node: NodeProcess) -> None:
    who = "0x" + "ab" * 20
    # PUSH1 42 PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN: returns 42
    code = "0x602a60005260206000f3"
    out = node.rpc("eth_call", {"to": who, "data": "0x"}, "latest", {who: {"code": code}})
    assert int(out, 16) == 42
    assert node.rpc("eth_call", {"to": who, "data": "0x"}, "latest") == "0x"
    assert node.rpc("eth_getCode", who, "latest") == "0x"  # the override left nothing behind
    head = w3.eth.get_block("latest")
    assert node.rpc("eth_call", {"to": who}, {"blockHash": head.hash.to_0x_hex()}) == "0x"
    with pytest.raises(RpcFailure, match="header not found"):
        node.rpc("eth_getBalance", who, hex(head.number + 1000))


def test_dev_account_signing(w3: Web3, node: NodeProcess) -> None:
    from eth_account.messages import encode_defunct

    account = w3.eth.accounts[6]
    signature = node.rpc("personal_sign", "0x68656c6c6f", account)
    assert Account.recover_message(encode_defunct(b"hello"), signature=signature) == account
    assert node.rpc("eth_sign", account, "0x68656c6c6f") == signature
    typed = {
        "types": {"EIP712Domain": [{"name": "name", "type": "string"}], "Mail": [{"name": "body", "type": "string"}]},
        "primaryType": "Mail", "domain": {"name": "demo"}, "message": {"body": "hi"},
    }  # fmt: skip
    signed = node.rpc("eth_signTypedData_v4", account, typed)
    from eth_account.messages import encode_typed_data

    assert Account.recover_message(encode_typed_data(full_message=typed), signature=signed) == account
    with pytest.raises(RpcFailure, match="unknown account"):
        node.rpc("personal_sign", "0x00", "0x" + "12" * 20)
    assert node.rpc("eth_createAccessList", {"from": account, "to": account})["gasUsed"] == "0x5208"
