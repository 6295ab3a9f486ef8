"""Multicall3 at 0xcA11bde05977b3631167028862bE2a173976CA11 on the L2 genesis (ai_evm/rollup/predeploys.py),
used as viem's and ethers' multicall use it: ``aggregate3`` in one ``eth_call`` (here batching
DigitsClassifier predictions, each running the inference precompile), through web3.py and ethers v6.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.rollup.predeploys import MULTICALL3, PREDEPLOYS

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "ai_evm" / "node"))

from nodeproc import NodeProcess, digits_node  # noqa: E402

ADDRESS = Web3.to_checksum_address("0x" + MULTICALL3.hex())
X = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = digits_node(tmp_path_factory.mktemp("multicall-node") / "data")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def w3(node: NodeProcess) -> Web3:
    return Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 120}))


@pytest.fixture(scope="module")
def classifier(w3: Web3, node: NodeProcess) -> Any:
    art = artifact("DigitsClassifier")
    factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    tx = factory.constructor(bytes.fromhex(node.model[2:])).transact({"from": w3.eth.accounts[0]})  # type: ignore[attr-defined]
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    assert receipt["status"] == 1
    return w3.eth.contract(address=receipt["contractAddress"], abi=art.abi)


def image(i: int) -> bytes:
    return bytes(int(round(v * 16)) for v in X[i])


def test_multicall3_is_in_the_genesis(w3: Web3) -> None:
    code = w3.eth.get_code(ADDRESS, block_identifier=0)
    assert bytes(code) == PREDEPLOYS[MULTICALL3] == artifact("Multicall3").deployed_bytecode != b""
    assert len(code) <= 24_576
    assert w3.eth.get_transaction_count(ADDRESS, block_identifier=0) == 1


def test_aggregate3_batches_inference_calls(w3: Web3, classifier: Any) -> None:
    """One eth_call: eight predictions (each a 0xa1 inference), a failing call allowed to fail, a
    balance and the block number; each result equals the single call's."""
    mc = w3.eth.contract(address=ADDRESS, abi=artifact("Multicall3").abi)
    images = [image(i) for i in range(8)]
    calls = [(classifier.address, False, classifier.encode_abi("predict", [img])) for img in images]
    calls.append((classifier.address, True, classifier.encode_abi("predict", [b"\x01"])))  # wrong length: reverts
    calls.append((ADDRESS, False, mc.encode_abi("getEthBalance", [w3.eth.accounts[1]])))
    results = mc.functions.aggregate3(calls).call()
    singles = [classifier.functions.predict(img).call() for img in images]
    assert [int.from_bytes(r[1], "big") for r in results[:8]] == singles
    assert all(r[0] for r in results[:8])
    failed = results[8]
    assert failed[0] is False and failed[1][:4] == Web3.keccak(text="InvalidImageLength(uint256)")[:4]
    assert int.from_bytes(results[9][1], "big") == w3.eth.get_balance(w3.eth.accounts[1])
    bn, bh, tried = mc.functions.tryBlockAndAggregate(False, [(c[0], c[2]) for c in calls[:2]]).call()
    assert bn == w3.eth.block_number and bh == b"\x00" * 32  # the head's own context; blockhash(number) = 0
    assert [int.from_bytes(r[1], "big") for r in tried] == singles[:2]


def test_aggregate_reverts_and_views(w3: Web3, classifier: Any) -> None:
    mc = w3.eth.contract(address=ADDRESS, abi=artifact("Multicall3").abi)
    bad = [(classifier.address, classifier.encode_abi("predict", [b""]))]
    with pytest.raises(Exception, match="Multicall3: call failed"):
        mc.functions.aggregate(bad).call()
    assert mc.functions.getChainId().call() == w3.eth.chain_id
    head = w3.eth.get_block("latest")
    at = head["number"]
    # eth_call runs in block `at`'s own context, as geth and anvil (test_call_context.py)
    assert mc.functions.getBlockNumber().call(block_identifier=at) == at
    assert mc.functions.getLastBlockHash().call(block_identifier=at) == bytes(head["parentHash"])
    assert mc.functions.getBlockHash(at).call(block_identifier=at) == b"\x00" * 32  # not its own hash
    assert mc.functions.getCurrentBlockGasLimit().call(block_identifier=at) == head["gasLimit"]
    # BASEFEE is 0 in a call without a gas price (geth's rule)
    assert mc.functions.getBasefee().call(block_identifier=at) == 0


def test_aggregate3value_transaction(w3: Web3) -> None:
    """A transaction through Multicall3 paying two accounts; a wrong total reverts."""
    mc = w3.eth.contract(address=ADDRESS, abi=artifact("Multicall3").abi)
    a, b = w3.eth.accounts[3], w3.eth.accounts[4]
    before = [w3.eth.get_balance(a), w3.eth.get_balance(b)]
    calls = [(a, False, 5, b""), (b, False, 7, b"")]
    tx = mc.functions.aggregate3Value(calls).transact({"from": w3.eth.accounts[2], "value": 12})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    assert [w3.eth.get_balance(a), w3.eth.get_balance(b)] == [before[0] + 5, before[1] + 7]
    with pytest.raises(Exception, match="Multicall3: value mismatch"):
        mc.functions.aggregate3Value(calls).call({"from": w3.eth.accounts[2], "value": 13})


@pytest.mark.skipif(shutil.which("node") is None, reason="node is required for ethers")
def test_ethers_aggregate3(node: NodeProcess, classifier: Any) -> None:
    """ethers v6: a Contract on the Multicall3 ABI at the usual address, aggregate3 staticCall."""
    img = image(3)
    script = """
import { JsonRpcProvider, Contract, Interface } from 'ethers'
const [url, addr, abi, target, clfAbi, img] = JSON.parse(process.argv[1])
const provider = new JsonRpcProvider(url, undefined, { staticNetwork: true })
const mc = new Contract(addr, abi, provider)
const clf = new Interface(clfAbi)
const res = await mc.aggregate3.staticCall([[target, false, clf.encodeFunctionData('predict', [img])]])
console.log(JSON.stringify(res.map((r) => [r[0], r[1]])))
"""
    args = json.dumps([node.url, ADDRESS, artifact("Multicall3").abi, classifier.address,
                       artifact("DigitsClassifier").abi, "0x" + img.hex()])  # fmt: skip
    out = subprocess.run(["node", "--input-type=module", "-e", script, args], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    ((ok, data),) = json.loads(out.stdout)
    assert ok is True and int(data, 16) == classifier.functions.predict(img).call()
