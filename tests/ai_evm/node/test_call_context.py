"""The block context of ``eth_call`` (and of ``eth_estimateGas``, ``eth_createAccessList`` and
``debug_traceCall``, which run the same way: ``ai_evm/node/execution.py`` ``run_call``), next to anvil.

One contract returns ``NUMBER``, ``TIMESTAMP``, ``BASEFEE``, ``GASLIMIT`` and ``BLOCKHASH(NUMBER - 1)``;
it is deployed on a node process and on anvil, and called at ``latest`` and at an older block, with
and without a gas price. As geth and anvil, the node runs a call at block N in block N's own
context (it used to run it in a block N + 1 with BASEFEE 0). Without a gas price, BASEFEE is 0 as
in geth (``NoBaseFee`` with a zero gas price); anvil gives the header's base fee there, the one
difference, checked as such. With a gas price the call pays as in geth: a price below the base
fee and a sender who cannot afford ``gas * price + value`` are errors with geth's messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asm import creation
from nodeproc import NodeProcess, RpcFailure
from web3 import Web3

from ai_evm.rollup.anvil import ANVIL, Anvil

#: NUMBER, TIMESTAMP, BASEFEE, GASLIMIT, BLOCKHASH(NUMBER - 1) as five words
PROBE = bytes.fromhex("435f5242602052486040524560605243600190034060805260a05ff3")
POOR = "0x000000000000000000000000000000000000dEaD"


@pytest.fixture(scope="module")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not ANVIL.exists():
        pytest.skip("node_modules/.bin/anvil is not installed (npm install)")
    anvil = Anvil(tmp_path_factory.mktemp("anvil") / "anvil.log")
    anvil.start()
    try:
        yield anvil.url
    finally:
        anvil.stop()


def _deploy(url: str) -> tuple[Web3, str]:
    """The probe on the chain at ``url``, then one more block (so ``latest - 1`` is not genesis)."""
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
    tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": creation(PROBE)})
    address = w3.eth.wait_for_transaction_receipt(tx).contractAddress
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": w3.eth.accounts[1], "to": POOR, "value": 0}))
    assert address is not None
    return w3, address


def _probe(w3: Web3, address: str, block: Any, **fields: Any) -> dict[str, int | bytes]:
    out = w3.eth.call({"from": w3.eth.accounts[0], "to": address, **fields}, block)  # type: ignore[typeddict-item]
    words = [out[i : i + 32] for i in range(0, 160, 32)]
    names = ("number", "timestamp", "basefee", "gaslimit")
    return {**{n: int.from_bytes(w, "big") for n, w in zip(names, words[:4], strict=True)}, "parent": bytes(words[4])}


def _header_view(w3: Web3, number: int, basefee: bool) -> dict[str, int | bytes]:
    block = w3.eth.get_block(number)
    return {"number": number, "timestamp": block["timestamp"], "basefee": block["baseFeePerGas"] if basefee else 0,
            "gaslimit": block["gasLimit"], "parent": bytes(block["parentHash"])}  # fmt: skip


def test_a_call_runs_in_the_blocks_own_context(node: NodeProcess, anvil_url: str) -> None:
    for url, fee_less_basefee in ((node.url, False), (anvil_url, True)):  # geth: 0; anvil: the header's
        w3, address = _deploy(url)
        head = w3.eth.block_number
        for block in (head, head - 1):
            at = _probe(w3, address, block)
            assert at == _header_view(w3, block, basefee=fee_less_basefee), (url, block)
            priced = _probe(w3, address, block, gasPrice=2 * w3.eth.get_block(block)["baseFeePerGas"])
            assert priced == _header_view(w3, block, basefee=True), (url, block)
        assert _probe(w3, address, "latest") == _probe(w3, address, head)


def test_a_paying_call_is_checked_as_geth_checks_it(node: NodeProcess) -> None:
    w3, address = _deploy(node.url)
    basefee = w3.eth.get_block("latest")["baseFeePerGas"]
    assert basefee > 1
    funds = "insufficient funds for gas * price + value"
    cases = [({"from": w3.eth.accounts[0], "gasPrice": hex(1)}, "max fee per gas less than block base fee",
              ("eth_call", "eth_estimateGas", "eth_createAccessList")),
             ({"from": POOR, "gasPrice": hex(basefee)}, funds, ("eth_call",)),
             ({"from": POOR, "value": hex(1)}, funds, ("eth_call",))]  # fmt: skip
    for fields, message, methods in cases:
        for method in methods:
            with pytest.raises(RpcFailure) as info:
                node.rpc(method, {"to": address, **fields}, "latest")
            assert info.value.error["code"] == -32000 and message in info.value.error["message"], (method, fields)
    # no gas price: no fee checks, whoever the sender (geth's NoBaseFee)
    assert len(bytes.fromhex(node.rpc("eth_call", {"from": POOR, "to": address}, "latest")[2:])) == 160
    # a paying call is charged: an account holding the price of 50,000 gas can call with that gas, not more
    price = 2 * basefee
    holder = Web3.to_checksum_address("0x00000000000000000000000000000000000c0ffe")
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": holder,
                                                                 "value": 50_000 * price}))  # fmt: skip
    paying = {"from": holder, "to": address, "gasPrice": hex(price)}
    assert len(node.rpc("eth_call", {**paying, "gas": hex(50_000)}, "latest")) == 2 + 320
    with pytest.raises(RpcFailure, match="insufficient funds for gas"):
        node.rpc("eth_call", {**paying, "gas": hex(50_001)}, "latest")


def test_the_probe_is_what_it_says() -> None:
    """The runtime above, opcode by opcode (so the words it returns are named right)."""
    ops = ["NUMBER", "PUSH0", "MSTORE", "TIMESTAMP", "PUSH1 20", "MSTORE", "BASEFEE", "PUSH1 40", "MSTORE",
           "GASLIMIT", "PUSH1 60", "MSTORE", "NUMBER", "PUSH1 01", "SWAP1", "SUB", "BLOCKHASH", "PUSH1 80",
           "MSTORE", "PUSH1 a0", "PUSH0", "RETURN"]  # fmt: skip
    table = {0x43: "NUMBER", 0x5F: "PUSH0", 0x52: "MSTORE", 0x42: "TIMESTAMP", 0x48: "BASEFEE", 0x45: "GASLIMIT",
             0x90: "SWAP1", 0x03: "SUB", 0x40: "BLOCKHASH", 0xF3: "RETURN"}  # fmt: skip
    got, i = [], 0
    while i < len(PROBE):
        if PROBE[i] == 0x60:
            got.append(f"PUSH1 {PROBE[i + 1]:02x}")
            i += 2
        else:
            got.append(table[PROBE[i]])
            i += 1
    assert got == ops
