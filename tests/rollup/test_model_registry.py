"""The model registry on anvil (real BundlePhaseLink header proofs) and the L2's view of it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.devnet import DEV_KEYS
from ai_evm.rollup.registry import RegistryView
from opml.bundle import load_bundle
from opml.commitment import prove_header

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

ROOT = Path(__file__).resolve().parents[2]
OWNER = Account.from_key(DEV_KEYS[0])
FEE = 10**16


@pytest.fixture(scope="module")
def w3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web3]:
    with Anvil(Path(tmp_path_factory.mktemp("registry")) / "anvil.log") as url:
        yield Web3(Web3.HTTPProvider(url))


def send(w3: Web3, tx: dict[str, Any]) -> Any:
    tx = {"chainId": w3.eth.chain_id, "nonce": w3.eth.get_transaction_count(OWNER.address), "gas": 8_000_000,
          "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "value": 0, **tx}
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(OWNER.sign_transaction(tx).raw_transaction))


def deploy(w3: Web3, name: str, types: list[str], args: list[Any]) -> str:
    r = send(w3, {"data": artifact(name).bytecode + abi_encode(types, args)})
    assert r["status"] == 1, name
    return str(r["contractAddress"])


def test_registrations_follow_l1_and_gate_by_origin(w3: Web3) -> None:
    program = deploy(w3, "ConstantProgramLength", ["uint256"], [1])  # graph proofs do not read it
    link = deploy(w3, "BundlePhaseLink", ["address"], [program])
    registry = deploy(w3, "ModelRegistry", ["address", "uint256"], [link, FEE])
    contract = w3.eth.contract(address=Web3.to_checksum_address(registry), abi=list(artifact("ModelRegistry").abi))
    seen: list[tuple[bytes, str]] = []
    view = RegistryView(w3, registry, on_registered=lambda m, uri: seen.append((m, uri)))
    for n in range(w3.eth.block_number + 1):
        view.note_l1_block(n, bytes(w3.eth.get_block(n)["hash"]))
    before = bytes(w3.eth.get_block("latest")["hash"])

    b = load_bundle((ROOT / "models" / "digits_mlp" / "model.bundle").read_bytes())
    hp = prove_header(b)
    proof = abi_encode(["bytes", "bytes32", "bytes32"], [hp.meta, hp.nodes_root, hp.tensors_root])
    bad = abi_encode(["bytes", "bytes32", "bytes32"], [hp.meta, hp.tensors_root, hp.nodes_root])
    call = contract.functions.register(b.address, bad, "http://127.0.0.1:1/models")
    assert send(w3, {"to": registry, "value": FEE, "data": call._encode_transaction_data()})["status"] == 0
    call = contract.functions.register(b.address, proof, "http://127.0.0.1:1/models")
    r = send(w3, {"to": registry, "value": FEE, "data": call._encode_transaction_data()})
    assert r["status"] == 1
    after = bytes(w3.eth.get_block(r["blockNumber"])["hash"])
    view.note_l1_block(r["blockNumber"], after)

    assert view.sync() == 1 and view.sync() == 0
    assert seen == [(b.address, "http://127.0.0.1:1/models")]
    assert view.is_registered(b.address, after)
    assert not view.is_registered(b.address, before)  # an L2 block on an earlier origin cannot use it
    assert not view.is_registered(b"\x01" * 32, after)
    assert not view.is_registered(b.address, b"\x09" * 32)  # an origin this node never read
    graph = contract.functions.graphOf(b.address).call()
    assert graph[0] == len(b.tensors) and graph[1] == len(b.nodes)
