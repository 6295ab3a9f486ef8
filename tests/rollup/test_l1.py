"""Derivation from a real L1: the batcher's calldata and blob posts to BatchInbox on anvil, read by
L1Reader and derived back into the same batches; posts by others and reverted posts are ignored."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.rollup import blobs, codec
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.codec import Batch
from ai_evm.rollup.derive import Deriver, RollupConfig, SafeHead
from ai_evm.rollup.devnet import DEV_KEYS
from ai_evm.rollup.l1 import L1Reader

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

# anvil's first two well-known dev keys
BATCHER = Account.from_key(DEV_KEYS[0])
STRANGER = Account.from_key(DEV_KEYS[1])


@pytest.fixture(scope="module")
def w3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web3]:
    with Anvil(Path(tmp_path_factory.mktemp("l1")) / "anvil.log") as url:
        yield Web3(Web3.HTTPProvider(url))


def send(w3: Web3, acct: Any, tx: dict[str, Any], blob_list: list[bytes] | None = None) -> Any:
    tx = {"chainId": w3.eth.chain_id, "nonce": w3.eth.get_transaction_count(acct.address), "value": 0,
          "gas": 3_000_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, **tx}
    if blob_list:
        tx.update(type=3, maxFeePerBlobGas=10**10)
        signed = acct.sign_transaction(tx, blobs=blob_list)
    else:
        signed = acct.sign_transaction(tx)
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))


def test_posts_on_anvil_derive_back_into_the_batches(w3: Web3) -> None:
    ctor_arg = bytes(12) + bytes.fromhex(BATCHER.address[2:])
    inbox = send(w3, BATCHER, {"data": artifact("BatchInbox").bytecode + ctor_arg})
    inbox_addr = inbox["contractAddress"]
    origin = w3.eth.get_block("latest")
    batches, parent = [], b"\x00" * 32
    for i in range(4):
        batches.append(Batch(parent, origin["number"], bytes(origin["hash"]), origin["timestamp"] + 1 + i,
                             (bytes([2, i]) * 40,)))
        parent = bytes([0xB0 + i]) * 32
    frames = codec.split_frames(b"k" * 16, codec.encode_channel(batches[:2]), 30)
    r1 = send(w3, BATCHER, {"to": inbox_addr, "data": codec.encode_batcher_data(frames[:1])})
    bad = send(w3, STRANGER, {"to": inbox_addr, "data": codec.encode_batcher_data(frames[1:])})
    assert bad["status"] == 0  # only the batcher's posts succeed
    r2 = send(w3, BATCHER, {"to": inbox_addr, "data": codec.encode_batcher_data(frames[1:])})
    blob_data = codec.encode_batcher_data(codec.split_frames(b"m" * 16, codec.encode_channel(batches[2:]), 10**5))
    r3 = send(w3, BATCHER, {"to": inbox_addr, "data": b""}, blobs.encode_blobs(blob_data))
    assert r1["status"] == r2["status"] == r3["status"] == 1 and r3["blobGasUsed"] == blobs.BLOB_BYTES

    reader = L1Reader(w3, inbox_addr, BATCHER.address)
    genesis = SafeHead(b"\x00" * 32, 0, origin["timestamp"], origin["number"])
    history = [reader.block(n) for n in range(origin["number"] + 1)]
    d = Deriver(RollupConfig(), genesis, history)
    derived = []
    for n in range(origin["number"] + 1, reader.head() + 1):
        block = reader.block(n)
        if n == bad["blockNumber"]:
            assert block.batcher_data == ()  # the stranger's (reverted) post is not read
        d.add_l1_block(block)
        for b in d.batches():
            derived.append(b)
            d.advance(bytes([0xB0 + len(derived) - 1]) * 32)
    assert derived == batches
    assert d.dropped == []
