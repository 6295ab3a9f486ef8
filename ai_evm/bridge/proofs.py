"""EIP-1186 account and storage proofs (``eth_getProof``): built from a state database, checked
independently of the L1 verifier.

A proof lists the trie nodes on a key's path, root first, each RLP-encoded. :func:`account_proof`
builds them with py-trie's ``HexaryTrie.get_proof`` (which also lists the nodes of fewer than 32 bytes
that are embedded in their parent; the Solidity verifier ``LibMPT`` accepts proofs with or without
them). :func:`verify_account_proof` checks a proof with py-trie's ``get_from_proof``, never with the
code that built it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from eth_utils import keccak, to_canonical_address, to_checksum_address
from trie import HexaryTrie
from trie.exceptions import BadTrieProof

#: ``keccak256(rlp(""))``: the root of an empty trie.
EMPTY_TRIE_ROOT = keccak(rlp.encode(b""))
#: ``keccak256("")``: the code hash of an account without code.
EMPTY_CODE_HASH = keccak(b"")


class ProofError(ValueError):
    """A proof that does not verify, or an ``eth_getProof`` response that is malformed."""


@dataclass(frozen=True)
class StorageProof:
    """One storage slot's proof: the slot (32 bytes), its value and the storage-trie nodes."""

    key: bytes
    value: int
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class AccountProof:
    """An ``eth_getProof`` result: the account's fields, its state-trie proof and slot proofs."""

    address: str
    nonce: int
    balance: int
    storage_hash: bytes
    code_hash: bytes
    account_proof: tuple[bytes, ...]
    storage_proof: tuple[StorageProof, ...]

    def to_json(self) -> dict[str, Any]:
        """The EIP-1186 JSON-RPC form (hex quantities and data)."""
        return {
            "address": self.address, "nonce": hex(self.nonce), "balance": hex(self.balance),
            "storageHash": "0x" + self.storage_hash.hex(), "codeHash": "0x" + self.code_hash.hex(),
            "accountProof": ["0x" + n.hex() for n in self.account_proof],
            "storageProof": [{"key": "0x" + s.key.hex(), "value": hex(s.value),
                              "proof": ["0x" + n.hex() for n in s.proof]} for s in self.storage_proof],
        }

    @classmethod
    def from_json(cls, raw: Any) -> AccountProof:
        """Parse an EIP-1186 ``eth_getProof`` result; :class:`ProofError` names what is malformed."""
        try:
            storage = tuple(
                StorageProof(_word(s["key"]), _quantity(s["value"]), tuple(_data(n) for n in s["proof"]))
                for s in raw["storageProof"]
            )
            return cls(to_checksum_address(raw["address"]), _quantity(raw["nonce"]), _quantity(raw["balance"]),
                       _word(raw["storageHash"]), _word(raw["codeHash"]),
                       tuple(_data(n) for n in raw["accountProof"]), storage)
        except (KeyError, TypeError) as e:
            raise ProofError(f"malformed eth_getProof result: missing or bad field {e}") from None
        except ValueError as e:
            if isinstance(e, ProofError):
                raise
            raise ProofError(f"malformed eth_getProof result: {e}") from None


def _data(v: Any) -> bytes:
    if not isinstance(v, str) or not v.startswith("0x"):
        raise ProofError(f"expected 0x-prefixed hex data, got {v!r}")
    return bytes.fromhex(v[2:])


def _word(v: Any) -> bytes:
    b = _data(v)
    if len(b) > 32:
        raise ProofError(f"expected at most 32 bytes, got {len(b)}")
    return b.rjust(32, b"\0")


def _quantity(v: Any) -> int:
    if not isinstance(v, str) or not v.startswith("0x"):
        raise ProofError(f"expected a 0x-prefixed hex quantity, got {v!r}")
    return int(v, 16)


def _nodes(trie: HexaryTrie, key: bytes) -> tuple[bytes, ...]:
    return tuple(rlp.encode(node) for node in trie.get_proof(key))


def account_proof(db: Mapping[bytes, bytes], state_root: bytes, address: str | bytes,
                  slots: Sequence[bytes | int] = ()) -> AccountProof:
    """The EIP-1186 proof of ``address`` and its storage ``slots`` in the state with root ``state_root``,
    from ``db`` (node hash -> node, as py-evm's state database). An absent account proves absence
    (zero fields, empty storage and code hashes); an absent slot proves value 0."""
    addr = to_canonical_address(address)
    state = HexaryTrie(db, state_root)
    key = keccak(addr)
    encoded = state.get(key)
    if encoded:
        nonce, balance, storage_hash, code_hash = rlp.decode(encoded)
        fields = (int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"), bytes(storage_hash), bytes(code_hash))
    else:
        fields = (0, 0, EMPTY_TRIE_ROOT, EMPTY_CODE_HASH)
    storage = HexaryTrie(db, fields[2])
    proofs = []
    for slot in slots:
        slot_key = slot.to_bytes(32, "big") if isinstance(slot, int) else bytes(slot).rjust(32, b"\0")
        raw = storage.get(keccak(slot_key)) if fields[2] != EMPTY_TRIE_ROOT else b""
        value = int.from_bytes(rlp.decode(raw), "big") if raw else 0
        nodes = _nodes(storage, keccak(slot_key)) if fields[2] != EMPTY_TRIE_ROOT else ()
        proofs.append(StorageProof(slot_key, value, nodes))
    return AccountProof(to_checksum_address(addr), *fields, _nodes(state, key), tuple(proofs))


def prove_key(root: bytes, key: bytes, proof: Sequence[bytes]) -> bytes:
    """The value of ``key`` in the trie with root ``root`` as ``proof`` shows it (``b""`` if absent), by
    py-trie's proof check; :class:`ProofError` if the proof is not one of that trie."""
    if root == EMPTY_TRIE_ROOT and not proof:
        return b""
    try:
        return bytes(HexaryTrie.get_from_proof(root, key, [rlp.decode(n) for n in proof]))
    except (BadTrieProof, rlp.exceptions.DecodingError, KeyError, IndexError, TypeError, ValueError) as e:
        raise ProofError(f"proof of key 0x{key.hex()} does not verify against root 0x{root.hex()}: {e}") from None


def verify_account_proof(state_root: bytes, p: AccountProof) -> None:
    """Check every part of ``p`` against ``state_root`` (raises :class:`ProofError` naming the first
    mismatch): the account's fields (or its absence) and every slot's value (or absence)."""
    encoded = prove_key(state_root, keccak(to_canonical_address(p.address)), p.account_proof)
    if encoded:
        expected = rlp.encode([p.nonce, p.balance, p.storage_hash, p.code_hash])
        if encoded != expected:
            raise ProofError(f"account {p.address}: the proven account is not the one claimed")
    elif (p.nonce, p.balance, p.storage_hash, p.code_hash) != (0, 0, EMPTY_TRIE_ROOT, EMPTY_CODE_HASH):
        raise ProofError(f"account {p.address} is absent but its claimed fields are not empty")
    for s in p.storage_proof:
        raw = prove_key(p.storage_hash, keccak(s.key), s.proof)
        value = int.from_bytes(rlp.decode(raw), "big") if raw else 0
        if value != s.value:
            raise ProofError(f"account {p.address} slot 0x{s.key.hex()}: proven {value}, claimed {s.value}")


__all__ = ["EMPTY_CODE_HASH", "EMPTY_TRIE_ROOT", "AccountProof", "ProofError", "StorageProof", "account_proof",
           "prove_key", "verify_account_proof"]
