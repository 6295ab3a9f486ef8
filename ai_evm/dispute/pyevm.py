"""The compiled contracts in an in-process py-evm Prague chain: deploy, transact, call, read errors.

A small L1 stand-in for tests and benchmarks that must not start processes: py-evm's
``MiningChain`` configured with ``PragueVM`` (EIP-170 code size limit, EIP-7623 calldata floor),
a few funded accounts, one transaction per block mined by ``mine_all`` at a timestamp the caller
chooses (the dispute game's clocks read ``block.timestamp``). Reverts are decoded into the custom
error's name from the ABIs of every compiled contract (``ai_evm.contracts``), so a test compares
them with ``fraud_vm.errors`` names directly. ``ai_evm.dispute.pyevm_game`` plays whole dispute
games on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from eth.abc import ComputationAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.vm.forks import PragueVM
from eth.vm.message import Message
from eth_abi import decode, encode
from eth_keys import keys
from eth_typing import Address
from eth_utils import keccak

from ai_evm.contracts import Artifact, artifact, available

__all__ = ["CallResult", "ChainError", "Contract", "PragueChain", "TxResult", "abi_type", "error_name",
           "selector"]

CHAIN_ID = 31337
GAS_PRICE = 10**9
#: The gas limit of each transaction (and, with room to spare, of each block).
TX_GAS = 30_000_000
BLOCK_GAS = 60_000_000
GENESIS_TIMESTAMP = 1_700_000_000


class ChainError(Exception):
    """A request the in-process chain cannot serve (unknown function, bad timestamp, failed deployment)."""


def abi_type(param: dict[str, Any]) -> str:
    """The canonical ABI type string of one ABI parameter (tuples expanded)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def selector(e: dict[str, Any]) -> bytes:
    """The 4-byte selector of a function or error ABI entry."""
    sig = f"{e['name']}({','.join(abi_type(p) for p in e['inputs'])})"
    return keccak(sig.encode())[:4]


@cache
def _errors() -> dict[bytes, str]:
    """Selector -> name of every custom error declared by a compiled contract, and Error/Panic."""
    table = {keccak(b"Error(string)")[:4]: "Error", keccak(b"Panic(uint256)")[:4]: "Panic"}
    for name in available():
        for e in artifact(name).abi:
            if e.get("type") == "error":
                table[selector(e)] = str(e["name"])
    return table


def error_name(output: bytes) -> str:
    """The custom error's name of revert data: ``"empty revert"`` without data, ``"unknown"`` if no ABI
    declares its selector."""
    if len(output) < 4:
        return "empty revert"
    return _errors().get(bytes(output[:4]), "unknown")


def _entry(art: Artifact, name: str) -> dict[str, Any]:
    found = [e for e in art.abi if e.get("type") == "function" and e.get("name") == name]
    if len(found) != 1:
        raise ChainError(f"{art.name} has {len(found)} functions named {name!r}")
    return found[0]


@dataclass(frozen=True)
class CallResult:
    """An ``eth_call``: success, return data, execution gas of the call frame, decoded values or error."""

    ok: bool
    output: bytes
    gas_used: int
    values: tuple[Any, ...]
    error: str | None


@dataclass(frozen=True)
class TxResult:
    """A mined transaction: status, the receipt's gas (intrinsic, calldata or its EIP-7623 floor, and
    execution), the calldata size, the decoded return values or the revert's error name, the block time."""

    ok: bool
    gas_used: int
    calldata_bytes: int
    values: tuple[Any, ...]
    error: str | None
    timestamp: int


class Contract:
    """A deployed contract: ``call`` (no transaction), ``transact`` (mined), ``encode``."""

    def __init__(self, chain: PragueChain, art: Artifact, address: bytes) -> None:
        self.chain, self.artifact, self.address = chain, art, address

    @property
    def name(self) -> str:
        return self.artifact.name

    def encode(self, fn: str, *args: Any) -> bytes:
        """Calldata of ``fn(*args)``."""
        e = _entry(self.artifact, fn)
        return selector(e) + encode([abi_type(p) for p in e["inputs"]], list(args))

    def _values(self, fn: str, out: bytes) -> tuple[Any, ...]:
        return tuple(decode([abi_type(p) for p in _entry(self.artifact, fn)["outputs"]], out))

    def call(self, fn: str, *args: Any, sender: int = 0, gas: int = TX_GAS) -> CallResult:
        """Run ``fn(*args)`` from account ``sender`` on a throw-away copy of the head state."""
        comp = self.chain.message(self.address, self.encode(fn, *args), sender, gas)
        out = bytes(comp.output)
        if comp.is_success:
            return CallResult(True, out, comp.get_gas_used(), self._values(fn, out), None)
        return CallResult(False, out, comp.get_gas_used(), (), error_name(out))

    def value(self, fn: str, *args: Any) -> Any:
        """The single return value of a successful call; ChainError naming the error otherwise."""
        r = self.call(fn, *args)
        if not r.ok:
            raise ChainError(f"{self.name}.{fn} reverted with {r.error}")
        return r.values[0] if len(r.values) == 1 else r.values

    def transact(self, fn: str, *args: Any, sender: int = 0, value: int = 0, timestamp: int | None = None) -> TxResult:
        """Send ``fn(*args)`` from account ``sender`` with ``value`` wei, mined in a block of its own
        at ``timestamp`` (default: one second after the head)."""
        data = self.encode(fn, *args)
        comp, gas, ts = self.chain.send(self.address, data, sender, value, timestamp)
        out = bytes(comp.output)
        if comp.is_success:
            return TxResult(True, gas, len(data), self._values(fn, out), None, ts)
        return TxResult(False, gas, len(data), (), error_name(out), ts)


class PragueChain:
    """An in-memory py-evm Prague chain with ``accounts`` funded keys (account 0 deploys)."""

    def __init__(self, accounts: int = 4, balance: int = 10**24) -> None:
        chain_class = MiningChain.configure(__name__="DisputeTestChain", vm_configuration=((0, PragueVM),),
                                            chain_id=CHAIN_ID)
        self.keys = [keys.PrivateKey(keccak(f"ai-evm py-evm account {i}".encode())) for i in range(accounts)]
        self.accounts = [Address(k.public_key.to_canonical_address()) for k in self.keys]
        genesis: Any = {"difficulty": 0, "gas_limit": BLOCK_GAS, "timestamp": GENESIS_TIMESTAMP, "extra_data": b""}
        state: Any = {a: {"balance": balance, "nonce": 0, "code": b"", "storage": {}} for a in self.accounts}
        self.chain = cast(MiningChain, chain_class.from_genesis(AtomicDB(), genesis, state))
        self.nonces = [0] * accounts

    @property
    def timestamp(self) -> int:
        """The head block's timestamp."""
        return int(self.chain.get_canonical_head().timestamp)

    def balance(self, address: bytes) -> int:
        """The balance of ``address`` at the head."""
        return int(self.chain.get_vm().state.get_balance(Address(address)))

    def code_size(self, address: bytes) -> int:
        """Bytes of runtime code at ``address``."""
        return len(self.chain.get_vm().state.get_code(Address(address)))

    def at(self, name: str, address: bytes) -> Contract:
        """The contract ``name`` (its artifact's ABI) at ``address``."""
        return Contract(self, artifact(name), bytes(address))

    def deploy(self, name: str, *args: Any, sender: int = 0) -> Contract:
        """Deploy the artifact ``name`` with constructor ``args``; ChainError if the creation fails."""
        art = artifact(name)
        ctor = [e for e in art.abi if e.get("type") == "constructor"]
        types = [abi_type(p) for p in ctor[0]["inputs"]] if ctor else []
        comp, _, _ = self.send(b"", art.bytecode + encode(types, list(args)), sender, 0, None)
        if not comp.is_success:
            raise ChainError(f"deploying {name} failed: {comp.error!r} ({error_name(bytes(comp.output))})")
        return Contract(self, art, bytes(comp.msg.storage_address))

    def send(self, to: bytes, data: bytes, sender: int, value: int,
             timestamp: int | None) -> tuple[ComputationAPI, int, int]:
        """Sign, mine (alone in a block at ``timestamp``) and return (computation, receipt gas, time)."""
        ts = self.timestamp + 1 if timestamp is None else int(timestamp)
        if ts <= self.timestamp:
            raise ChainError(f"block time {ts} is not after the head's {self.timestamp}")
        vm = self.chain.get_vm()
        tx = vm.create_unsigned_transaction(nonce=self.nonces[sender], gas_price=GAS_PRICE, gas=TX_GAS, to=Address(to),
                                            value=value, data=data).as_signed_transaction(self.keys[sender],
                                                                                          chain_id=CHAIN_ID)
        self.nonces[sender] += 1
        # the block is executed with the pending header's timestamp (mine_all applies its keyword
        # arguments only when sealing): set it first, so that block.timestamp is ``ts``; the gas limit
        # stays the parent's (py-evm would otherwise let it drift down with every near-empty block)
        head = self.chain.get_canonical_head()
        self.chain.header = self.chain.create_header_from_parent(head, timestamp=ts, gas_limit=head.gas_limit)
        _, receipts, computations = self.chain.mine_all([tx], timestamp=ts)
        return computations[0], int(receipts[0].gas_used), ts

    def message(self, to: bytes, data: bytes, sender: int, gas: int) -> ComputationAPI:
        """One message frame from account ``sender`` on a throw-away copy of the head state (``eth_call``)."""
        vm = self.chain.get_vm(self.chain.get_canonical_head())
        origin = self.accounts[sender]
        with vm.in_costless_state() as state:
            msg = Message(gas=gas, to=Address(to), sender=origin, value=0, data=data, code=state.get_code(Address(to)))
            context = state.get_transaction_context_class()(gas_price=0, origin=origin)
            return state.computation_class.apply_computation(state, msg, context)


def runtime_sizes(names: Sequence[str]) -> dict[str, int]:
    """Bytes of deployed runtime code of each compiled contract (what EIP-170 limits to 24,576)."""
    return {n: len(artifact(n).deployed_bytecode) for n in names}
