"""Fixtures for the contract tests: a plain Prague chain (no AI precompiles) and ABI helpers.

The chain is py-evm's ``MiningChain`` configured with ``PragueVM``; contracts are deployed with
signed transactions mined by ``mine_all`` and called like ``eth_call`` (a message frame on a
throw-away copy of the head state). Calls return a :class:`CallResult` whose ``error`` decodes a
custom Solidity error by its selector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from eth.abc import ComputationAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.vm.forks import PragueVM
from eth.vm.message import Message
from eth_abi import decode, encode
from eth_keys import keys
from eth_utils import keccak

from ai_evm.contracts import Artifact, artifact
from ai_evm.dispute.pyevm import abi_type, selector

CHAIN_ID = 31337
KEY = keys.PrivateKey(keccak(b"ai-evm contract tests"))


def entry(art: Artifact, kind: str, name: str) -> dict[str, Any]:
    """The unique ABI entry of ``kind`` (function/event/error) called ``name``."""
    found = [e for e in art.abi if e.get("type") == kind and e.get("name") == name]
    assert len(found) == 1, f"{art.name} has {len(found)} {kind}s named {name}"
    return found[0]


@dataclass(frozen=True)
class CallResult:
    """The outcome of one call: success flag, return data, gas used, decoded values or error."""

    ok: bool
    output: bytes
    gas_used: int
    values: tuple[Any, ...]
    error: tuple[str, tuple[Any, ...]] | None


class Contract:
    """A deployed contract with its artifact: ``call(fn, *args)`` encodes, runs and decodes."""

    def __init__(self, chain: PragueChain, art: Artifact, address: bytes) -> None:
        self.chain = chain
        self.artifact = art
        self.address = address
        self._errors = {selector(e): e for e in art.abi if e.get("type") == "error"}

    def encode(self, fn: str, *args: Any) -> bytes:
        """Call data for ``fn(*args)``."""
        e = entry(self.artifact, "function", fn)
        return selector(e) + encode([abi_type(p) for p in e["inputs"]], list(args))

    def call(self, fn: str, *args: Any, gas: int = 30_000_000) -> CallResult:
        """Run ``fn(*args)`` against the head state and decode the result or the custom error."""
        e = entry(self.artifact, "function", fn)
        comp = self.chain.call(self.address, self.encode(fn, *args), gas)
        out = bytes(comp.output)
        gas_used = comp.get_gas_used()
        if comp.is_success:
            values = tuple(decode([abi_type(p) for p in e["outputs"]], out))
            return CallResult(True, out, gas_used, values, None)
        error = None
        if len(out) >= 4 and out[:4] in self._errors:
            err = self._errors[out[:4]]
            error = (str(err["name"]), tuple(decode([abi_type(p) for p in err["inputs"]], out[4:])))
        return CallResult(False, out, gas_used, (), error)

    def value(self, fn: str, *args: Any) -> Any:
        """The single return value of a successful ``fn(*args)``; fails the test otherwise."""
        result = self.call(fn, *args)
        assert result.ok, f"{fn} reverted: {result.error or result.output.hex()}"
        return result.values[0]


class PragueChain:
    """An in-memory py-evm Prague chain with one funded key."""

    def __init__(self) -> None:
        chain_class = MiningChain.configure(
            __name__="ContractTestChain", vm_configuration=((0, PragueVM),), chain_id=CHAIN_ID
        )
        self.sender = KEY.public_key.to_canonical_address()
        genesis = {"difficulty": 0, "gas_limit": 60_000_000, "timestamp": 1_700_000_000, "extra_data": b""}
        state = {self.sender: {"balance": 10**30, "nonce": 0, "code": b"", "storage": {}}}
        self.chain = chain_class.from_genesis(AtomicDB(), genesis, state)
        self.nonce = 0

    def deploy(self, name: str, *args: Any) -> Contract:
        """Deploy the artifact ``name`` with constructor ``args`` in a transaction mined by ``mine_all``."""
        art = artifact(name)
        ctor = [e for e in art.abi if e.get("type") == "constructor"]
        types = [abi_type(p) for p in ctor[0]["inputs"]] if ctor else []
        data = art.bytecode + encode(types, list(args))
        vm = self.chain.get_vm()
        tx = vm.create_unsigned_transaction(
            nonce=self.nonce, gas_price=10**9, gas=10_000_000, to=b"", value=0, data=data
        ).as_signed_transaction(KEY, chain_id=CHAIN_ID)
        self.nonce += 1
        _, receipts, computations = self.chain.mine_all([tx], timestamp=self.chain.header.timestamp + 1)
        comp = computations[0]
        assert comp.is_success, f"deploying {name} failed: {comp.error}"
        return Contract(self, art, bytes(comp.msg.storage_address))

    def call(self, to: bytes, data: bytes, gas: int) -> ComputationAPI:
        """One message frame from the funded key on a throw-away copy of the head state."""
        vm = self.chain.get_vm(self.chain.get_canonical_head())
        with vm.in_costless_state() as state:
            message = Message(gas=gas, to=to, sender=self.sender, value=0, data=data, code=state.get_code(to))
            context = state.get_transaction_context_class()(gas_price=0, origin=self.sender)
            return state.computation_class.apply_computation(state, message, context)


@pytest.fixture(scope="session")
def prague() -> PragueChain:
    """One Prague chain per test session (xdist worker)."""
    return PragueChain()


@pytest.fixture(scope="session")
def harness(prague: PragueChain) -> Contract:
    """The deployed AILibHarness."""
    return prague.deploy("AILibHarness")
