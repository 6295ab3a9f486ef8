"""Binary keccak256 Merkle trees over 32-byte words: the project's one Merkle module.

Leaves are the raw 32-byte words themselves; an inner node is ``keccak256(left || right)``. A tree
over ``n`` words has depth ``ceil(log2(n))`` (depth 0 for one word) and is padded on the right with
zero words, so the node at height ``h`` of a padding subtree is ``ZERO_HASHES[h]``. The depth of every
tree in the project is fixed by committed data (a tensor's byte length, a node count, a region
count), so a leaf can never be mistaken for an inner node. This is the layout a Solidity verifier
checks with one ``keccak256`` per level; ``LibMerkle.sol`` mirrors the functions below with the same
names in camelCase (``rootFromProof``, ``multiroot``, ...).

Three ways to use a tree:

- **one-shot** functions over a list of leaves: :func:`merkle_root`, :func:`merkle_proof`,
  :func:`bytes_root`, and the check :func:`root_from_proof`;
- **multiproofs** (several leaves proved by one list of siblings): :func:`multiproof` builds one from
  any tree, :func:`multiroot` recomputes the root from the proved leaves (what a verifier runs);
- a **level tree** (:class:`LevelTree`, built by :func:`tree_levels`): every level kept in memory as
  one ``bytes``/``bytearray`` of concatenated nodes, so that paths, multiproofs, leaf updates (one
  hash per level) and "what would the root be if" questions are cheap.

Hashing uses ``safe-pysha3``'s ``sha3.keccak_256`` (the Ethereum keccak, not NIST SHA3-256) directly.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence

import sha3

WORD = 32
ZERO_WORD = bytes(WORD)

_KECCAK = sha3.keccak_256
_DIGEST = sha3.keccak_256.digest


class MerkleError(ValueError):
    """A leaf index, proof or tree that does not fit (the message says which)."""


def keccak(data: bytes) -> bytes:
    """keccak256 of ``data`` (the Ethereum hash, not NIST SHA3-256)."""
    return _KECCAK(data).digest()


def _zero_hashes(depth: int) -> list[bytes]:
    out = [ZERO_WORD]
    for _ in range(depth):
        out.append(keccak(out[-1] + out[-1]))
    return out


ZERO_HASHES = _zero_hashes(64)
"""``ZERO_HASHES[h]``: the root of an all-zero subtree of height ``h``."""


def tree_depth(n_leaves: int) -> int:
    """Depth of the tree that holds ``n_leaves`` leaves (0 for 1 leaf; 1 for 0 leaves, as ever)."""
    return max(0, (n_leaves - 1).bit_length())


def split_words(data: bytes) -> list[bytes]:
    """Split ``data`` into 32-byte words, zero-padding the last one."""
    if len(data) % WORD:
        data = data + bytes(WORD - len(data) % WORD)
    return [data[i : i + WORD] for i in range(0, len(data), WORD)]


def hash_pairs(level: bytes | bytearray) -> bytes:
    """keccak256 of each 64-byte pair of ``level`` (a multiple of 64 bytes long), concatenated.

    C-level iteration (``struct.iter_unpack`` -> ``keccak_256`` -> ``digest``): about 1.4x faster
    than a Python loop over the pairs.
    """
    return b"".join(map(_DIGEST, itertools.starmap(_KECCAK, struct.iter_unpack("64s", level))))


def _next_level(level: list[bytes], zero: bytes) -> list[bytes]:
    if len(level) % 2:
        level = level + [zero]
    h = _KECCAK
    return [h(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]


def merkle_root(leaves: Sequence[bytes], depth: int | None = None) -> bytes:
    """Root of the tree over ``leaves`` (32 bytes each), padded with zero words to ``2**depth``."""
    d = tree_depth(len(leaves)) if depth is None else depth
    if len(leaves) > (1 << d):
        raise MerkleError(f"{len(leaves)} leaves do not fit a tree of depth {d}")
    if not leaves:
        return ZERO_HASHES[d]
    level = list(leaves)
    for i in range(d):
        level = _next_level(level, ZERO_HASHES[i])
    return level[0]


def bytes_root(data: bytes) -> bytes:
    """Root of the word tree over ``data`` (zero-padded to whole words); the zero word if empty."""
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
    """Recompute the root from a leaf, its index and its bottom-first sibling path.

    Raises :class:`MerkleError` when ``index`` does not fit the path (``index >= 2**len(proof)``).
    """
    node = leaf
    for sib in proof:
        node = keccak(sib + node) if index & 1 else keccak(node + sib)
        index >>= 1
    if index:
        raise MerkleError("index has more bits than the proof has levels")
    return node


# ------------------------------------------------------------------------------------------------
# Multiproofs


def multiproof(node: Callable[[int, int], bytes], indices: Sequence[int], depth: int) -> list[bytes]:
    """Siblings proving the leaves ``indices`` (sorted, unique) of a tree of ``depth``.

    ``node(h, i)`` reads node ``i`` at height ``h`` of the tree. Order: level by level from the
    bottom, left to right, only the siblings that cannot be computed from the proved leaves; this is
    the order :func:`multiroot` consumes them in.
    """
    cur = list(indices)
    out: list[bytes] = []
    for h in range(depth):
        known = set(cur)
        nxt: list[int] = []
        for i in cur:
            if nxt and nxt[-1] == i >> 1:
                continue
            if i ^ 1 not in known:
                out.append(node(h, i ^ 1))
            nxt.append(i >> 1)
        cur = nxt
    return out


def multiroot(leaves: Mapping[int, bytes], depth: int, siblings: Sequence[bytes], pos: int = 0) -> tuple[bytes, int]:
    """Root of a tree of ``depth`` from known ``leaves`` (index -> word) and ``siblings[pos:]``.

    Siblings are consumed in :func:`multiproof` order. Returns ``(root, next_pos)``, so several
    trees' multiproofs can be read from one list. Raises :class:`MerkleError` if there are no
    leaves, a leaf index is outside ``0 .. 2**depth - 1``, or the siblings run out.
    """
    cur = dict(sorted(leaves.items()))
    if not cur or max(cur) >= 1 << depth or min(cur) < 0:
        raise MerkleError("proved leaf index out of the tree")
    for _ in range(depth):
        nxt: dict[int, bytes] = {}
        for i, v in cur.items():
            p = i >> 1
            if p in nxt:
                continue
            sib = cur.get(i ^ 1)
            if sib is None:
                if pos >= len(siblings):
                    raise MerkleError("multiproof has too few sibling hashes")
                sib = siblings[pos]
                pos += 1
            nxt[p] = keccak(v + sib) if i % 2 == 0 else keccak(sib + v)
        cur = nxt
    return cur[0], pos


# ------------------------------------------------------------------------------------------------
# Level trees


def tree_levels(data: bytes, *, keep: bool = True) -> list[bytes]:
    """Every level of the word tree over ``data``, leaves (zero-padded words) first, root last.

    Level ``k`` holds the tree's non-padding nodes at height ``k`` concatenated; a node past its end
    is ``ZERO_HASHES[k]``. For 32-byte leaves this is the tree of :func:`merkle_root`; for raw data it
    is the tree of :func:`bytes_root`. Empty data gives ``[ZERO_WORD]``. With ``keep=False`` only the
    root is returned (``[root]``), saving memory.
    """
    if not data:
        return [ZERO_WORD]
    level = bytes(data) + bytes(-len(data) % WORD)
    levels = [level]
    for height in range(tree_depth(len(level) // WORD)):
        if (len(level) // WORD) % 2:
            level += ZERO_HASHES[height]
        level = hash_pairs(level)
        levels.append(level)
        if not keep:
            del levels[0]
    return levels


def fast_bytes_root(data: bytes) -> bytes:
    """Same value as :func:`bytes_root`, computed level by level with :func:`hash_pairs` (faster)."""
    return tree_levels(data, keep=False)[-1]


def tree_path(levels: Sequence[bytes | bytearray], index: int) -> list[bytes]:
    """Bottom-first sibling path of leaf ``index`` in a tree given by :func:`tree_levels`."""
    if not 0 <= index < max(len(levels[0]) // WORD, 1):
        raise IndexError(f"leaf {index} out of range for {len(levels[0]) // WORD} leaves")
    path = []
    for height, level in enumerate(levels[:-1]):
        off = (index ^ 1) * WORD
        path.append(bytes(level[off : off + WORD]) if off < len(level) else ZERO_HASHES[height])
        index >>= 1
    return path


class LevelTree:
    """A Merkle tree kept level by level (the :func:`tree_levels` layout), with updates.

    ``levels[h]`` is the concatenation of the non-padding nodes at height ``h`` (``levels[0]`` the
    leaves, ``levels[-1]`` the 32-byte root); a node past the end of its level is ``ZERO_HASHES[h]``.
    A tree wraps its ``levels`` list without copying it, so several owners (a memory and its copies)
    may share read-only levels (``bytes``); levels that are ``bytearray`` can be updated in place.
    The number of leaves is fixed: updates change leaf values, never the tree's shape.
    """

    __slots__ = ("levels",)

    def __init__(self, levels: Sequence[bytes | bytearray]) -> None:
        """Wrap ``levels`` (a :func:`tree_levels` list, or one with ``bytearray`` levels); no copy."""
        if not levels or len(levels[-1]) != WORD:
            raise MerkleError("levels must end in a single 32-byte root")
        self.levels = levels

    @classmethod
    def from_data(cls, data: bytes, *, mutable: bool = True) -> LevelTree:
        """The word tree over ``data`` (zero-padded to whole words), as :func:`bytes_root` hashes it."""
        levels = tree_levels(data)
        return cls([bytearray(lv) for lv in levels] if mutable else levels)

    @classmethod
    def from_leaves(cls, leaves: Sequence[bytes], depth: int | None = None, *, mutable: bool = True) -> LevelTree:
        """The tree over ``leaves`` padded to ``2**depth`` (as :func:`merkle_root` hashes it)."""
        d = tree_depth(len(leaves)) if depth is None else depth
        if len(leaves) > (1 << d):
            raise MerkleError(f"{len(leaves)} leaves do not fit a tree of depth {d}")
        if leaves and set(map(len, leaves)) != {WORD}:
            raise MerkleError("leaves are 32 bytes each")
        levels: list[bytes] = tree_levels(b"".join(leaves)) if leaves else [ZERO_WORD]
        for h in range(len(levels) - 1, d):  # a tree deeper than its leaves need: keep hashing up
            top = levels[-1]
            levels.append(hash_pairs(top + ZERO_HASHES[h]))
        return cls([bytearray(lv) for lv in levels] if mutable else levels)

    # ------------------------------------------------------------------------------ reading

    @property
    def depth(self) -> int:
        return len(self.levels) - 1

    @property
    def n_leaves(self) -> int:
        """Number of stored (non-padding) leaves."""
        return len(self.levels[0]) // WORD

    @property
    def root(self) -> bytes:
        return bytes(self.levels[-1])

    def node(self, h: int, i: int) -> bytes:
        """Node ``i`` at height ``h`` (``ZERO_HASHES[h]`` past the stored nodes)."""
        lv = self.levels[h]
        off = i * WORD
        return bytes(lv[off : off + WORD]) if 0 <= off < len(lv) else ZERO_HASHES[h]

    def leaf(self, i: int) -> bytes:
        """Leaf ``i`` (one of the stored leaves)."""
        self._check_leaf(i)
        return bytes(self.levels[0][i * WORD : (i + 1) * WORD])

    def path(self, i: int) -> list[bytes]:
        """Bottom-first sibling path of leaf ``i`` (what :func:`root_from_proof` takes)."""
        self._check_leaf(i)
        return tree_path(self.levels, i)

    def multiproof(self, indices: Sequence[int]) -> list[bytes]:
        """:func:`multiproof` siblings of the leaves ``indices`` (sorted, unique)."""
        for i in indices:
            self._check_leaf(i)
        return multiproof(self.node, indices, self.depth)

    def root_with(self, i: int, leaf: bytes) -> bytes:
        """The root the tree would have with leaf ``i`` set to ``leaf`` (the tree is unchanged)."""
        return root_from_proof(leaf, i, self.path(i))

    def prefix_root(self, nbytes: int) -> bytes:
        """The root of the same-shaped tree over this tree's first ``nbytes`` leaf bytes, then zeros.

        One hash per level: left of the boundary word the nodes are this tree's, right of it they
        are zero subtrees (a partially written region, a table filled up to some index).
        """
        lv0 = self.levels[0]
        if nbytes >= len(lv0):
            return self.root
        if nbytes < 0:
            raise MerkleError(f"prefix of {nbytes} bytes")
        full, part = divmod(nbytes, WORD)
        node = bytes(lv0[full * WORD : full * WORD + part]) + bytes(WORD - part)
        i = full
        for h in range(self.depth):
            if i % 2:
                node = keccak(bytes(self.levels[h][(i - 1) * WORD : i * WORD]) + node)
            else:
                node = keccak(node + ZERO_HASHES[h])
            i >>= 1
        return node

    # ------------------------------------------------------------------------------ updating

    def write(self, i: int, leaf: bytes) -> None:
        """Set leaf ``i`` without rehashing (call :meth:`rehash` with the written indices)."""
        self._check_leaf(i)
        lv = self.levels[0]
        if not isinstance(lv, bytearray):
            raise MerkleError("this tree's levels are read-only")
        if len(leaf) != WORD:
            raise MerkleError("a leaf is 32 bytes")
        lv[i * WORD : (i + 1) * WORD] = leaf

    def rehash(self, indices: Iterable[int]) -> None:
        """Recompute the ancestors of the leaves ``indices`` (after :meth:`write`), level by level."""
        cur = set(indices)
        levels = self.levels
        for h in range(self.depth):
            nxt = {i >> 1 for i in cur}
            up = levels[h + 1]
            if not isinstance(up, bytearray):
                raise MerkleError("this tree's levels are read-only")
            for p in nxt:
                up[p * WORD : (p + 1) * WORD] = keccak(self.node(h, 2 * p) + self.node(h, 2 * p + 1))
            cur = nxt

    def update(self, i: int, leaf: bytes) -> None:
        """Set leaf ``i`` and rehash its path (one keccak per level)."""
        self.write(i, leaf)
        levels, node = self.levels, bytes(leaf)
        for h in range(len(levels) - 1):
            lv, up = levels[h], levels[h + 1]
            if not isinstance(up, bytearray):
                raise MerkleError("this tree's levels are read-only")
            off = (i ^ 1) * WORD
            sib = lv[off : off + WORD] if off < len(lv) else ZERO_HASHES[h]
            node = _KECCAK(node + sib).digest() if i % 2 == 0 else _KECCAK(sib + node).digest()
            i >>= 1
            up[i * WORD : (i + 1) * WORD] = node

    def update_many(self, leaves: Mapping[int, bytes]) -> None:
        """Set several leaves and rehash the union of their paths (each inner node once)."""
        for i, leaf in leaves.items():
            self.write(i, leaf)
        self.rehash(leaves)

    def copy(self) -> LevelTree:
        """An independent, mutable copy."""
        return LevelTree([bytearray(lv) for lv in self.levels])

    def _check_leaf(self, i: int) -> None:
        if not 0 <= i < max(self.n_leaves, 1):
            raise MerkleError(f"leaf {i} out of range for {self.n_leaves} leaves")
