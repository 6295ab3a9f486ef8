"""Binary keccak256 Merkle trees over 32-byte words.

Leaves are the raw 32-byte words themselves; an inner node is ``keccak256(left || right)``. A tree
over ``n`` words has depth ``ceil(log2(n))`` (depth 0 for one word) and is padded on the right with
zero words. The root of an empty tree is 32 zero bytes. The depth of every tree in the project is
fixed by committed data (a tensor's byte length, a node count), so a leaf can never be mistaken for an
inner node. This is the layout a Solidity verifier checks with one ``keccak256`` per level.
"""

from __future__ import annotations

from collections.abc import Sequence

import sha3

WORD = 32
ZERO_WORD = bytes(WORD)


def keccak(data: bytes) -> bytes:
    """keccak256 of ``data`` (the Ethereum hash, not NIST SHA3-256)."""
    return sha3.keccak_256(data).digest()


def _zero_hashes(depth: int) -> list[bytes]:
    out = [ZERO_WORD]
    for _ in range(depth):
        out.append(keccak(out[-1] + out[-1]))
    return out


ZERO_HASHES = _zero_hashes(64)


def tree_depth(n_leaves: int) -> int:
    """Depth of the tree that holds ``n_leaves`` leaves (0 for 0 or 1 leaf)."""
    return max(0, (n_leaves - 1).bit_length())


def split_words(data: bytes) -> list[bytes]:
    """Split ``data`` into 32-byte words, zero-padding the last one."""
    if len(data) % WORD:
        data = data + bytes(WORD - len(data) % WORD)
    return [data[i : i + WORD] for i in range(0, len(data), WORD)]


def _next_level(level: list[bytes], zero: bytes) -> list[bytes]:
    if len(level) % 2:
        level = level + [zero]
    h = sha3.keccak_256
    return [h(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]


def merkle_root(leaves: Sequence[bytes], depth: int | None = None) -> bytes:
    """Root of the tree over ``leaves`` (32 bytes each), padded with zero words to ``2**depth``."""
    d = tree_depth(len(leaves)) if depth is None else depth
    if len(leaves) > (1 << d):
        raise ValueError(f"{len(leaves)} leaves do not fit a tree of depth {d}")
    if not leaves:
        return ZERO_HASHES[d]
    level = list(leaves)
    for i in range(d):
        level = _next_level(level, ZERO_HASHES[i])
    return level[0]


def bytes_root(data: bytes) -> bytes:
    """Root of the word tree over ``data`` (zero-padded to whole words)."""
    if not data:
        return ZERO_WORD
    return merkle_root(split_words(data))


def merkle_proof(leaves: Sequence[bytes], index: int, depth: int | None = None) -> list[bytes]:
    """Sibling hashes from leaf ``index`` up to the root, bottom first."""
    d = tree_depth(len(leaves)) if depth is None else depth
    if not 0 <= index < (1 << d) or index >= max(len(leaves), 1):
        raise IndexError(f"leaf {index} out of range for {len(leaves)} leaves")
    proof = []
    level = list(leaves) or [ZERO_WORD]
    i = index
    for lvl in range(d):
        sib = i ^ 1
        proof.append(level[sib] if sib < len(level) else ZERO_HASHES[lvl])
        level = _next_level(level, ZERO_HASHES[lvl])
        i >>= 1
    return proof


def root_from_proof(leaf: bytes, index: int, proof: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf, its index and its bottom-first sibling path."""
    node = leaf
    for sib in proof:
        node = keccak(sib + node) if index & 1 else keccak(node + sib)
        index >>= 1
    if index:
        raise ValueError("index has more bits than the proof has levels")
    return node
