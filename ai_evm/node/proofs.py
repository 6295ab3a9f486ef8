"""``eth_getProof`` (EIP-1186): Merkle-Patricia proofs of an account and its storage at a block.

A mixin of :class:`ai_evm.node.methods.EthApi`: it uses the API's sequencer (``self.seq``) and
block resolution (``self._header``: numbers, hashes, EIP-1898 objects and the tags, ``safe`` and
``finalized`` included as the other state methods resolve them).

The proofs are read from the node's database along the path of the secure-trie key:
``keccak(address)`` in the state trie whose root is the block header's ``stateRoot`` (the root
the proposer posts in an output, :mod:`ai_evm.rollup.outputs`), then ``keccak(slot)`` in the
account's storage trie whose root is its ``storageHash``. As geth does, a proof lists the
RLP-encoded nodes that are referenced by hash, root first; a node shorter than 32 bytes is
embedded in its parent and not listed again. A path that ends before the key (an empty branch
slot, a leaf or extension with another path) proves that the account or slot is absent: an absent
account is answered with nonce 0, balance 0, the empty code hash and the empty storage root, an
absent slot with value 0. An empty trie has an empty proof.
"""

from __future__ import annotations

from typing import Any

import rlp
from eth_utils import keccak

from .encoding import data, parse_address, parse_storage_slot, quantity
from .errors import InvalidParams, LimitExceeded, ServerError

#: Most storage keys one ``eth_getProof`` proves.
MAX_PROOF_KEYS = 1024
#: keccak256(rlp(b"")): the root of an empty trie (an account without storage).
EMPTY_TRIE_ROOT = keccak(rlp.encode(b""))
#: keccak256(b""): the code hash of an account without code.
EMPTY_CODE_HASH = keccak(b"")


class MissingTrieNode(ServerError):
    """A trie node on the proof's path is not in the database (the state was not kept)."""


def nibbles(key: bytes) -> list[int]:
    """``key`` as its sequence of 4-bit nibbles, high nibble first."""
    return [n for byte in key for n in (byte >> 4, byte & 0x0F)]


def decode_path(encoded: bytes) -> tuple[list[int], bool]:
    """A leaf's or extension's hex-prefix encoded path: (its nibbles, whether it is a leaf)."""
    flag = encoded[0] >> 4
    path = nibbles(encoded)[1 if flag & 1 else 2:]
    return path, bool(flag & 2)


def trie_proof(db: Any, root: bytes, key: bytes) -> tuple[list[bytes], bytes | None]:
    """The proof of ``key`` (already hashed: a secure-trie key) in the trie ``root`` of ``db``.

    Returns the RLP nodes referenced by hash along the key's path, root first, and the value
    stored at ``key`` (None where the proof shows there is none)."""
    if root == EMPTY_TRIE_ROOT:
        return [], None
    proof: list[bytes] = []
    node = _load(db, root, proof)
    path = nibbles(key)
    while True:
        if len(node) == 17:  # branch: follow the next nibble (a secure key never ends at a branch)
            if not path:
                return proof, node[16] or None
            child, path = node[path[0]], path[1:]
        elif len(node) == 2:
            segment, leaf = decode_path(node[0])
            if leaf:
                return proof, (node[1] if segment == path else None)
            if path[:len(segment)] != segment:
                return proof, None
            child, path = node[1], path[len(segment):]
        else:
            raise ServerError(f"malformed trie node with {len(node)} items under root {data(root)}")
        if isinstance(child, list):  # embedded (< 32 bytes): part of its parent's RLP
            node = child
        elif child == b"":
            return proof, None
        else:
            node = _load(db, child, proof)


def _load(db: Any, ref: bytes, proof: list[bytes]) -> Any:
    try:
        encoded = bytes(db[ref])
    except KeyError:
        raise MissingTrieNode(f"missing trie node {data(ref)} (state not available)") from None
    proof.append(encoded)
    return rlp.decode(encoded)


def parse_storage_keys(value: Any) -> list[int]:
    """``eth_getProof``'s storage keys: a list of at most :data:`MAX_PROOF_KEYS` slots."""
    if not isinstance(value, list):
        raise InvalidParams(f"invalid storageKeys: expected an array of storage slots, got {type(value).__name__}")
    if len(value) > MAX_PROOF_KEYS:
        raise LimitExceeded(f"eth_getProof: {len(value)} storage keys requested, at most {MAX_PROOF_KEYS}")
    return [parse_storage_slot(k, f"storageKeys[{i}]") for i, k in enumerate(value)]


class ProofsApi:
    """``eth_getProof``."""

    seq: Any

    def _header(self, block: Any, name: str = "block", source: Any = None) -> Any:
        raise NotImplementedError

    def eth_getProof(self, address: Any, storage_keys: Any, block: Any = "latest") -> dict[str, Any]:
        """The account at ``address`` and the given storage slots at a block, with their
        Merkle-Patricia proofs against the block's state root (EIP-1186; module docstring)."""
        addr, slots = parse_address(address), parse_storage_keys(storage_keys)
        with self.seq.lock:
            header = self._header(block)
            db = self.seq.chain.chaindb.db
            account_proof, account = trie_proof(db, bytes(header.state_root), keccak(addr))
            nonce, balance, storage_root, code_hash = (
                (0, 0, EMPTY_TRIE_ROOT, EMPTY_CODE_HASH) if account is None else _account(account))
            storage = []
            for slot in slots:
                key = slot.to_bytes(32, "big")
                proof, value = trie_proof(db, storage_root, keccak(key))
                word = 0 if value is None else int.from_bytes(rlp.decode(value), "big")
                storage.append({"key": data(key), "value": quantity(word), "proof": [data(n) for n in proof]})
        return {
            "address": data(addr),
            "accountProof": [data(n) for n in account_proof],
            "balance": quantity(balance),
            "codeHash": data(code_hash),
            "nonce": quantity(nonce),
            "storageHash": data(storage_root),
            "storageProof": storage,
        }


def _account(encoded: bytes) -> tuple[int, int, bytes, bytes]:
    nonce, balance, storage_root, code_hash = rlp.decode(encoded)
    return (int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"), bytes(storage_root),
            bytes(code_hash))  # fmt: skip


__all__ = ["EMPTY_CODE_HASH", "EMPTY_TRIE_ROOT", "MAX_PROOF_KEYS", "MissingTrieNode", "ProofsApi",
           "decode_path", "nibbles", "parse_storage_keys", "trie_proof"]
