"""The anvil twin of the tracing tests (test_tracing.py): an in-process node and an anvil with
``--steps-tracing`` fed the same signed transactions, the contracts they run (a plain one, nested
CALL/STATICCALL/DELEGATECALL with a reverting callee, a forwarder to 0xa1), and the comparisons of
their struct logs."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asm import creation
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from nodeproc import DIGITS_BUNDLE

from ai_evm.node.chain import NodeConfig, Sequencer
from ai_evm.node.methods import EthApi
from ai_evm.node.vm import make_resolver
from ai_evm.rollup.anvil import Anvil
from opml.store import LocalStore

KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # dev account 0 (anvil's too)
SENDER = Account.from_key(KEY).address
PRECOMPILE = b"\0" * 19 + b"\xa1"
INLINE = b"\0" * 19 + b"\xa0"
TRACE_METHODS = ("debug_traceTransaction", "debug_traceCall", "debug_traceBlockByNumber", "debug_traceBlockByHash")


# -- hand-assembled contracts ------------------------------------------------------------------
def push20(address: bytes) -> bytes:
    return b"\x73" + address


#: x = calldata[0]; mem[0] = x; h = keccak(mem[0:32]); sstore(1, h); mem[32] = sload(1);
#: x ** 3 (EXP); LOG0(mem[0:64]); RETURN mem[0:64]
PLAIN = bytes.fromhex("600035" "80600052" "60206000" "20" "600155" "600154" "602052" "600381" "0a" "50"
                      "60406000a0" "60406000f3")
#: Error(string) "nope"
NOPE = bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + (4).to_bytes(32, "big") + b"nope".ljust(32, b"\0")
#: no calldata: return uint256 42; else revert with Error("nope")
REVERTER = bytes.fromhex("36600e57" "602a600052" "60206000f3" "5b" "6064601b600039" "60646000fd") + NOPE
#: a contract that forwards its calldata to 0xa1 and returns what it answers
FORWARDER = bytes.fromhex("366000600037" "600060003660006000" "60a1" "5af150" "3d600060003e" "3d6000f3")


def middle(reverter: bytes) -> bytes:
    """CALL reverter with one byte (it reverts), STATICCALL it (42), DELEGATECALL it; return mem[0:32]."""
    return (bytes.fromhex("60006000600160006000") + push20(reverter) + bytes.fromhex("5af150")
            + bytes.fromhex("6020600060006000") + push20(reverter) + bytes.fromhex("5afa50")
            + bytes.fromhex("6000600060006000") + push20(reverter) + bytes.fromhex("5af450")
            + bytes.fromhex("60206000f3"))  # fmt: skip


def top(callee: bytes) -> bytes:
    """CALL callee passing on CALLVALUE; STOP."""
    return bytes.fromhex("6000600060006000" "34") + push20(callee) + bytes.fromhex("5af150" "00")


def created(nonce: int) -> bytes:
    """Address of the contract dev account 0 creates with ``nonce``."""
    import rlp

    return keccak(rlp.encode([bytes.fromhex(SENDER[2:]), nonce]))[12:]


# -- the two chains --------------------------------------------------------------------------------
def rpc(url: str, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return answer["result"]


class Twins:
    """An in-process node and anvil, fed the same signed transactions."""

    def __init__(self, datadir: Path, anvil_url: str) -> None:
        store = LocalStore(datadir.parent / "models")
        self.model = store.put(DIGITS_BUNDLE.read_bytes())
        self.seq = Sequencer(NodeConfig(datadir, sync=False), make_resolver(store))
        self.api = EthApi(self.seq)
        self.anvil = anvil_url
        self.nonce = 0

    def sign(self, **tx: Any) -> str:
        fields = {"value": 0, "gas": 300_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
                  "nonce": self.nonce, "chainId": 31337, "type": 2, "data": b"", **tx}  # fmt: skip
        if "to" in fields:
            fields["to"] = to_checksum_address(fields["to"])
        self.nonce += 1
        return "0x" + bytes(Account.sign_transaction(fields, KEY).raw_transaction).hex()

    def send(self, anvil: bool = True, **tx: Any) -> str:
        """Send one transaction to both chains (mined at once); its hash. ``anvil`` False: anvil
        gets a plain transfer with the same nonce instead (anvil has no 0xa1), so nonces and
        contract addresses stay the same on both."""
        raw = self.sign(**tx)
        h = self.api.eth_sendRawTransaction(raw)
        if anvil:
            assert rpc(self.anvil, "eth_sendRawTransaction", raw) == h
            self.mined_on_anvil(h)
        else:
            self.nonce -= 1
            self.mined_on_anvil(rpc(self.anvil, "eth_sendRawTransaction", self.sign(to=SENDER, gas=21_000)))
        return str(h)

    def mined_on_anvil(self, h: str) -> None:
        """Wait for anvil's automine (its send may answer before the block is there)."""
        deadline = time.monotonic() + 30
        while rpc(self.anvil, "eth_getTransactionReceipt", h) is None:
            assert time.monotonic() < deadline, f"anvil did not mine {h}"
            time.sleep(0.02)

    def deploy(self, runtime: bytes) -> bytes:
        address = created(self.nonce)
        self.send(data=creation(runtime))
        assert self.api.eth_getCode("0x" + address.hex()) == "0x" + runtime.hex()
        return address


def twins_on_anvil(base: Path) -> Iterator[Twins]:
    """Start anvil (``--steps-tracing``) and the node under ``base``, deploy the contracts on both."""
    with Anvil(base / "anvil.log", extra_args=("--steps-tracing",)) as url:
        t = Twins(base / "node", url)
        t.plain = t.deploy(PLAIN)  # type: ignore[attr-defined]
        t.reverter = t.deploy(REVERTER)  # type: ignore[attr-defined]
        t.middle = t.deploy(middle(t.reverter))  # type: ignore[attr-defined]
        t.top = t.deploy(top(t.middle))  # type: ignore[attr-defined]
        t.forwarder = t.deploy(FORWARDER)  # type: ignore[attr-defined]
        yield t
        t.seq.close()


def both(t: Twins, h: str, config: dict[str, Any] | None = None) -> tuple[Any, Any]:
    args = [h] if config is None else [h, config]
    return t.api.debug_traceTransaction(*args), rpc(t.anvil, "debug_traceTransaction", *args)


def _strip(words: Any) -> Any:
    if isinstance(words, list):
        return [w.removeprefix("0x") for w in words]
    return {k.removeprefix("0x"): v.removeprefix("0x") for k, v in words.items()}


def assert_struct_logs_equal(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert (ours["gas"], ours["failed"], ours["returnValue"]) == \
        (theirs["gas"], theirs["failed"], theirs["returnValue"])  # fmt: skip
    assert len(ours["structLogs"]) == len(theirs["structLogs"]) > 0
    for i, (a, b) in enumerate(zip(ours["structLogs"], theirs["structLogs"], strict=True)):
        for key in ("pc", "op", "gas", "gasCost", "depth", "stack"):
            assert a.get(key) == b.get(key), (i, key, a, b)
        if a["depth"] == 1:  # anvil's refund is the frame's (revm), geth's the transaction's; 0 left out
            assert a.get("refund", 0) == b.get("refund", 0), (i, a, b)
        for key in ("memory", "storage"):  # geth writes them without 0x, anvil with
            assert (key in a) == (key in b), (i, key, a, b)
            if key in a:
                assert _strip(a[key]) == _strip(b[key]), (i, key, a, b)
