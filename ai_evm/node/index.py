"""The node's own per-block index, written in the same database commit as the block.

For every canonical block the sequencer stores one JSON record under ``aievm:block:<number>``:
the block's JSON-RPC header object (with its RLP ``size``), the JSON-RPC objects of its
transactions and receipts (sender, contract address, gas used, effective gas price and logs with
their block-wide indexes already resolved) and the inference records of the block with their
root. Lookups by transaction hash go through py-evm's own hash -> (block, index) table. Serving a
receipt, a block or a log query therefore never re-executes or re-recovers a signature.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import rlp
from eth._utils.address import generate_contract_address
from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI

from ai_evm.evm.deposit import DEPOSIT_TX_TYPE, DepositTransaction, as_deposit

from .encoding import address_or_none, data, quantity

BLOCK_KEY_PREFIX = b"aievm:block:"
META_KEY = b"aievm:meta"
ZERO_HASH = "0x" + "00" * 32


def block_key(number: int) -> bytes:
    """Database key of block ``number``'s record."""
    return BLOCK_KEY_PREFIX + number.to_bytes(8, "big")


def header_json(header: BlockHeaderAPI, size: int) -> dict[str, Any]:
    """The JSON-RPC block object without ``transactions`` (geth field names)."""
    out: dict[str, Any] = {
        "number": quantity(header.block_number),
        "hash": data(header.hash),
        "parentHash": data(header.parent_hash),
        "nonce": data(header.nonce.rjust(8, b"\0")),
        "mixHash": data(header.mix_hash.rjust(32, b"\0")),
        "sha3Uncles": data(header.uncles_hash),
        "logsBloom": data(header.bloom.to_bytes(256, "big")),
        "transactionsRoot": data(header.transaction_root),
        "stateRoot": data(header.state_root),
        "receiptsRoot": data(header.receipt_root),
        "miner": data(header.coinbase),
        "difficulty": quantity(header.difficulty),
        "totalDifficulty": quantity(header.difficulty),
        "extraData": data(header.extra_data),
        "size": quantity(size),
        "gasLimit": quantity(header.gas_limit),
        "gasUsed": quantity(header.gas_used),
        "timestamp": quantity(header.timestamp),
        "uncles": [],
    }
    for attr, key, enc in (
        ("base_fee_per_gas", "baseFeePerGas", quantity),
        ("withdrawals_root", "withdrawalsRoot", data),
        ("blob_gas_used", "blobGasUsed", quantity),
        ("excess_blob_gas", "excessBlobGas", quantity),
        ("parent_beacon_block_root", "parentBeaconBlockRoot", data),
        ("requests_hash", "requestsHash", data),
    ):
        value = getattr(header, attr, None)
        if value is not None:
            out[key] = enc(value)
    if "withdrawalsRoot" in out:
        out["withdrawals"] = []
    return out


def tx_type(tx: SignedTransactionAPI) -> int:
    """EIP-2718 type (0 for legacy)."""
    return int(getattr(tx, "type_id", None) or 0)


def effective_gas_price(tx: SignedTransactionAPI, base_fee: int) -> int:
    """What the sender pays per gas in a block with ``base_fee``."""
    if tx_type(tx) == 0 or tx_type(tx) == 1:
        return int(tx.gas_price)
    return min(int(tx.max_fee_per_gas), base_fee + int(tx.max_priority_fee_per_gas))


def tx_json(tx: SignedTransactionAPI, header: BlockHeaderAPI | None, index: int | None,
            deposit_nonce: int = 0) -> dict[str, Any]:
    """The JSON-RPC transaction object (``header``/``index`` None while pending); ``deposit_nonce``:
    a deposit's sender nonce when it executed (a deposit has no nonce field of its own)."""
    kind = tx_type(tx)
    deposit = as_deposit(tx)
    if deposit is not None:
        return deposit_json(tx, deposit, header, index, deposit_nonce)
    out: dict[str, Any] = {
        "hash": data(tx.hash),
        "type": quantity(kind),
        "nonce": quantity(tx.nonce),
        "blockHash": data(header.hash) if header is not None else None,
        "blockNumber": quantity(header.block_number) if header is not None else None,
        "transactionIndex": quantity(index) if index is not None else None,
        "from": data(tx.sender),
        "to": address_or_none(tx.to),
        "value": quantity(tx.value),
        "gas": quantity(tx.gas),
        "input": data(tx.data),
        "r": quantity(tx.r),
        "s": quantity(tx.s),
    }
    if kind == 0:
        out["gasPrice"] = quantity(tx.gas_price)
        out["v"] = quantity(tx.v)  # type: ignore[attr-defined]  # legacy transactions have v
        chain_id = tx.chain_id
        if chain_id is not None:
            out["chainId"] = quantity(chain_id)
        return out
    out["chainId"] = quantity(int(tx.chain_id or 0))
    out["accessList"] = [
        {"address": data(addr), "storageKeys": [data(k.to_bytes(32, "big")) for k in keys]}
        for addr, keys in tx.access_list
    ]
    out["v"] = quantity(tx.y_parity)
    out["yParity"] = quantity(tx.y_parity)
    if kind == 1:
        out["gasPrice"] = quantity(tx.gas_price)
    else:
        out["maxFeePerGas"] = quantity(tx.max_fee_per_gas)
        out["maxPriorityFeePerGas"] = quantity(tx.max_priority_fee_per_gas)
        base_fee = getattr(header, "base_fee_per_gas", None) if header is not None else None
        price = effective_gas_price(tx, base_fee) if base_fee is not None else tx.max_fee_per_gas
        out["gasPrice"] = quantity(price)
    if kind == 4:
        out["authorizationList"] = [
            {"chainId": quantity(a.chain_id), "address": data(a.address), "nonce": quantity(a.nonce),
             "yParity": quantity(a.y_parity), "r": quantity(a.r), "s": quantity(a.s)}
            for a in tx.authorization_list
        ]  # fmt: skip
    return out


def deposit_json(tx: SignedTransactionAPI, deposit: DepositTransaction, header: BlockHeaderAPI | None,
                 index: int | None, nonce: int = 0) -> dict[str, Any]:
    """A deposit (type 0x7e) as op-geth shows it: ``sourceHash``, ``mint``, ``nonce`` the sender's nonce
    it executed with (its receipt's ``depositNonce``), no fee fields but a zero ``gasPrice``, zero
    ``v``/``r``/``s`` (it is not signed), ``isSystemTx`` false."""
    return {
        "hash": data(tx.hash),
        "type": quantity(DEPOSIT_TX_TYPE),
        "sourceHash": data(deposit.source_hash),
        "nonce": quantity(nonce),
        "blockHash": data(header.hash) if header is not None else None,
        "blockNumber": quantity(header.block_number) if header is not None else None,
        "transactionIndex": quantity(index) if index is not None else None,
        "from": data(deposit.from_address),
        "to": address_or_none(deposit.to),
        "mint": quantity(deposit.mint),
        "value": quantity(deposit.value),
        "gas": quantity(deposit.gas),
        "gasPrice": quantity(0),
        "input": data(deposit.data),
        "isSystemTx": False,
        "v": quantity(0),
        "r": quantity(0),
        "s": quantity(0),
    }


def receipt_json(
    tx: SignedTransactionAPI, receipt: ReceiptAPI, header: BlockHeaderAPI, index: int,
    gas_used: int, first_log_index: int,
) -> dict[str, Any]:  # fmt: skip
    """The JSON-RPC receipt object of transaction ``index`` of a mined block."""
    block_hash, block_number, tx_hash = data(header.hash), quantity(header.block_number), data(tx.hash)
    logs = [
        {
            "address": data(log.address),
            "topics": [data(t.to_bytes(32, "big")) for t in log.topics],
            "data": data(log.data),
            "blockNumber": block_number,
            "blockHash": block_hash,
            "blockTimestamp": quantity(header.timestamp),
            "transactionHash": tx_hash,
            "transactionIndex": quantity(index),
            "logIndex": quantity(first_log_index + i),
            "removed": False,
        }
        for i, log in enumerate(receipt.logs)
    ]
    contract = generate_contract_address(tx.sender, tx.nonce) if not tx.to else None
    base_fee = getattr(header, "base_fee_per_gas", 0) or 0
    return {
        "transactionHash": tx_hash,
        "transactionIndex": quantity(index),
        "blockHash": block_hash,
        "blockNumber": block_number,
        "from": data(tx.sender),
        "to": address_or_none(tx.to),
        "cumulativeGasUsed": quantity(receipt.gas_used),
        "gasUsed": quantity(gas_used),
        "effectiveGasPrice": quantity(effective_gas_price(tx, base_fee)),
        "contractAddress": address_or_none(contract),
        "logs": logs,
        "logsBloom": data(receipt.bloom.to_bytes(256, "big")),
        "status": quantity(1 if receipt.state_root == b"\x01" else 0),
        "type": quantity(tx_type(tx)),
    }


def block_record(
    block: BlockAPI, receipts: Sequence[ReceiptAPI], inferences: Sequence[dict[str, Any]],
    inference_root: bytes, deposit_nonces: Sequence[int] = (),
) -> dict[str, Any]:  # fmt: skip
    """The record stored for a mined block (see the module docstring); ``deposit_nonces``: the sender
    nonce each of the block's deposits (its first transactions, in order) executed with."""
    header = block.header
    txs = block.transactions
    head = header_json(header, len(rlp.encode(block)))
    head["transactions"] = [data(tx.hash) for tx in txs]
    tx_objs, receipt_objs = [], []
    previous, log_index = 0, 0
    for i, (tx, receipt) in enumerate(zip(txs, receipts, strict=True)):
        nonce = deposit_nonces[i] if i < len(deposit_nonces) else 0
        tx_objs.append(tx_json(tx, header, i, nonce))
        receipt_objs.append(receipt_json(tx, receipt, header, i, receipt.gas_used - previous, log_index))
        if i < len(deposit_nonces):
            receipt_objs[-1]["depositNonce"] = quantity(nonce)
        previous = receipt.gas_used
        log_index += len(receipt.logs)
    return {
        "block": head,
        "txs": tx_objs,
        "receipts": receipt_objs,
        "inferences": list(inferences),
        "inferenceRoot": data(inference_root),
    }


def encode_record(record: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a record."""
    return json.dumps(record, separators=(",", ":")).encode()


def decode_record(raw: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_record`."""
    out: dict[str, Any] = json.loads(raw)
    return out
