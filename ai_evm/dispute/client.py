"""A web3.py client of the dispute contracts on L1 (``DisputeGameFactory``, ``InferenceDisputeGame``).

:class:`L1` holds the JSON-RPC connection and (optionally) the signing key; :meth:`L1.send` checks a
transaction with ``eth_estimateGas`` first, so a move the contract would reject is reported by its
custom-error name (``InvalidClaim``, ``NotYourTurn``, ...) and nothing is sent. :func:`read_game`
reads everything a player needs from a game in one pass (phase, bisection, whose turn, clocks,
bonds); agents call it at every poll and keep no game state of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_typing import ChecksumAddress
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, Web3Exception

from ai_evm.contracts import ContractArtifactError, artifact, available
from fraud_vm.errors import ERROR_CLASSES
from fraud_vm.game import Outcome, Phase, Role

__all__ = ["DisputeError", "GameState", "L1", "TxReverted", "decode_revert", "read_game"]

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")

#: Contracts whose ABIs name the errors a dispute transaction can revert with.
ERROR_SOURCES = ("InferenceDisputeGame", "DisputeGameFactory", "BundlePhaseLink", "FraudVMStepVerifier", "VMProgram",
                 "OracleStepVerifier")


class DisputeError(Exception):
    """An external input or an L1 answer the agent cannot use (the CLI prints it and exits with 2)."""


class TxReverted(DisputeError):
    """A call or transaction the contract rejected; ``error`` is the custom error's name."""

    def __init__(self, what: str, error: str, message: str) -> None:
        super().__init__(f"{what} reverted with {error}: {message}" if message else f"{what} reverted with {error}")
        self.error = error


@cache
def _error_table() -> dict[bytes, tuple[str, list[str], str]]:
    """Selector -> (name, argument types, description) of every custom error the dispute ABIs declare."""
    docs = {c.__name__: (c.__doc__ or "").strip().splitlines()[0].rstrip(".") for c in ERROR_CLASSES}
    table: dict[bytes, tuple[str, list[str], str]] = {}
    for name in ERROR_SOURCES:
        if name not in available():
            continue
        for e in artifact(name).abi:
            if e.get("type") != "error":
                continue
            types = [str(p["type"]) for p in e["inputs"]]
            sel = keccak(f"{e['name']}({','.join(types)})".encode())[:4]
            table[sel] = (str(e["name"]), types, docs.get(str(e["name"]), ""))
    # Solidity's built-in Error(string) and Panic(uint256)
    table[keccak(b"Error(string)")[:4]] = ("Error", ["string"], "")
    table[keccak(b"Panic(uint256)")[:4]] = ("Panic", ["uint256"], "")
    return table


def decode_revert(data: bytes) -> tuple[str, str]:
    """The custom error's name and a description of revert data (``("unknown", hex)`` if unknown)."""
    if len(data) < 4:
        return "empty revert", "no revert data (out of gas, or a call to an account without code)"
    entry = _error_table().get(bytes(data[:4]))
    if entry is None:
        return "unknown", "0x" + data.hex()
    name, types, doc = entry
    try:
        args = abi_decode(types, bytes(data[4:])) if types else ()
    except Exception:  # noqa: BLE001 - malformed arguments: show the name only
        args = ()
    detail = ", ".join(str(a) for a in args)
    return name, f"{doc} ({detail})" if doc and detail else doc or detail


def _revert_data(exc: Exception) -> bytes | None:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, bytes):
        return data
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def check_address(value: str, what: str) -> ChecksumAddress:
    """The checksummed form of a 0x-prefixed 20-byte address; DisputeError otherwise."""
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise DisputeError(f"{what} {value!r} is not an address (0x followed by 40 hex digits)")
    return to_checksum_address(value)


class L1:
    """A JSON-RPC connection to L1 and, when given a key, the account that signs transactions."""

    def __init__(self, url: str, key: str | None = None, *, timeout_s: float = 60.0) -> None:
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout_s}))
        self.timeout_s = timeout_s
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except Exception as e:  # noqa: BLE001 - connection refused, bad URL, not JSON-RPC...
            raise DisputeError(f"cannot reach an Ethereum JSON-RPC endpoint at {url}: {e}") from None
        self.account: Any = None
        if key is not None:
            if not _KEY.match(key.strip()):
                raise DisputeError("--key is not a private key (64 hex digits, optionally 0x-prefixed)")
            self.account = Account.from_key(key.strip())
        #: gas used by the transactions this client sent
        self.gas_used = 0

    @property
    def address(self) -> ChecksumAddress:
        """The signing account's address."""
        if self.account is None:
            raise DisputeError("this command needs --key")
        return to_checksum_address(self.account.address)

    def contract(self, name: str, address: str) -> Any:
        """The contract ``name`` (ABI from its artifact) at ``address``; DisputeError if no code is there."""
        addr = check_address(address, f"{name} address")
        try:
            abi = list(artifact(name).abi)
        except ContractArtifactError as e:
            raise DisputeError(str(e)) from None
        if not self.w3.eth.get_code(addr):
            raise DisputeError(f"there is no contract at {addr} on {self.url} (expected a {name})")
        return self.w3.eth.contract(address=addr, abi=abi)

    def now(self) -> int:
        """The latest block's timestamp (the time the contracts see)."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def call(self, fn: Any, what: str = "", block: int | str = "latest") -> Any:
        """``eth_call`` of a bound contract function at ``block``; TxReverted with the error's name on revert."""
        try:
            return fn.call(block_identifier=block)
        except (ContractCustomError, ContractLogicError) as e:
            raise self._reverted(what or fn.fn_name, e) from None

    def _reverted(self, what: str, exc: Exception) -> TxReverted:
        data = _revert_data(exc)
        if data is None:
            return TxReverted(what, "unknown", str(exc))
        name, message = decode_revert(data)
        return TxReverted(what, name, message)

    def send(self, fn: Any, value: int = 0, what: str = "") -> Any:
        """Sign and send a transaction calling ``fn`` with ``value`` wei; return the receipt.

        The call is checked with ``eth_estimateGas`` first: a revert raises TxReverted (the custom
        error by name) and nothing is sent. A transaction mined with status 0 raises TxReverted too.
        """
        what = what or fn.fn_name
        sender = self.address
        params: dict[str, Any] = {"from": sender, "value": value, "chainId": self.chain_id}
        try:
            gas = int(fn.estimate_gas(params))
        except (ContractCustomError, ContractLogicError) as e:
            raise self._reverted(what, e) from None
        except Web3Exception as e:
            raise DisputeError(f"{what}: {e}") from None
        params.update(gas=gas + gas // 4 + 10_000, nonce=self.w3.eth.get_transaction_count(sender, "pending"))
        tx = fn.build_transaction(params)
        signed = self.account.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout_s, poll_latency=0.05)
        except TimeExhausted:
            raise DisputeError(f"{what}: not mined within {self.timeout_s:.0f} s") from None
        except (Web3Exception, ValueError) as e:
            raise DisputeError(f"{what}: {e}") from None
        self.gas_used += int(receipt["gasUsed"])
        if int(receipt["status"]) != 1:
            raise TxReverted(what, "unknown", f"transaction {tx_hash.hex()} failed")
        return receipt


@dataclass(frozen=True)
class GameState:
    """One read of a game: everything a player decides its move from."""

    address: str
    factory: str
    claimant: str
    challenger: str
    registry_game: bool
    model_address: bytes
    batch: int
    input_hash: bytes
    output_hash: bytes
    root_claim: bytes
    n_nodes: int
    phase: Phase | None  # None only for an uninitialized clone
    outcome: Outcome
    mover: Role
    turn_started: int
    clock_used: tuple[int, int]
    clock: int
    moves: int
    bonds: tuple[int, int]
    next_bond: int
    deadline: int
    max_depth: int
    length: int
    lo_hash: bytes
    hi_hash: bytes
    last: int
    last_hash: bytes
    hi_owner: Role
    last_owner: Role
    node_index: int
    context_hash: bytes
    pinned_step: int

    def role_of(self, account: str) -> Role | None:
        """The role ``account`` plays in this game (None: it is not a party)."""
        if account.lower() == self.claimant.lower():
            return Role.CLAIMANT
        if account.lower() == self.challenger.lower():
            return Role.CHALLENGER
        return None

    def clock_left(self, role: Role, now: int) -> int:
        """Seconds left on ``role``'s clock at time ``now``."""
        used = self.clock_used[role]
        if role == self.mover and self.outcome == Outcome.IN_PROGRESS:
            used += max(0, now - self.turn_started)
        return max(0, self.clock - used)


def read_game(l1: L1, game: Any) -> GameState:
    """Read a game's state: about 25 ``eth_call``s, all at the same (latest) block, so that the
    fields are consistent even while the opponent moves."""
    f = game.functions
    at = int(l1.w3.eth.block_number)

    def get(fn: Any) -> Any:
        return l1.call(fn, block=at)

    try:
        b = get(f.bisection())
    except TxReverted:
        raise DisputeError(f"{game.address} does not answer as an InferenceDisputeGame") from None
    moves = int(get(f.moves()))
    phase = int(get(f.phase()))
    outcome = Outcome(int(get(f.outcome())))
    return GameState(
        address=str(game.address), factory=str(get(f.factory())), claimant=str(get(f.claimant())),
        challenger=str(get(f.challenger())), registry_game=bool(get(f.registryGame())),
        model_address=bytes(get(f.modelAddress())), batch=int(get(f.batch())),
        input_hash=bytes(get(f.inputHash())), output_hash=bytes(get(f.outputHash())),
        root_claim=bytes(get(f.rootClaim())), n_nodes=int(get(f.nNodes())),
        phase=Phase(phase) if phase else None, outcome=outcome, mover=Role(int(get(f.mover()))),
        turn_started=int(get(f.turnStarted())),
        clock_used=(int(get(f.clockUsed(0))), int(get(f.clockUsed(1)))), clock=int(get(f.CLOCK())),
        moves=moves, bonds=(int(get(f.bonds(0))), int(get(f.bonds(1)))),
        next_bond=int(get(f.bond(moves + 1))) if outcome == Outcome.IN_PROGRESS else 0,
        deadline=int(get(f.deadline())),
        lo_hash=bytes(b[0]), hi_hash=bytes(b[1]), last_hash=bytes(b[2]), length=int(b[3]), last=int(b[4]),
        max_depth=int(b[5]), hi_owner=Role(int(b[6])), last_owner=Role(int(b[7])),
        node_index=int(get(f.nodeIndex())), context_hash=bytes(get(f.contextHash())),
        pinned_step=int(get(f.pinnedStep())),
    )
