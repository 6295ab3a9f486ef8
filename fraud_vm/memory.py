"""VM memory: word-addressed regions committed by one keccak Merkle tree, and multiproofs.

A node's memory has one region per node input (in the node's input order) and one for its output
(last). Region ``r`` holds a tensor's little-endian C-order bytes as 32-byte words; its root is
``keccak(header || data_root)`` (``fraud_vm.tensors``), so an input region's root is the tensor's
phase-1 commitment and a constant's is derivable from the model address. The memory root is the
Merkle root of the region roots (depth ``ceil(log2(n_regions))``).

A step touches a few words; its witness proves them with one **multiproof** per tree: the sibling
hashes that cannot be computed from the touched leaves, level by level from the bottom, left to
right (``opml.merkle.multiproof`` / ``multiroot``). The same siblings give the root after the step's
writes. Every tree here is an ``opml.merkle.LevelTree``: the one Merkle module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from opml import merkle
from opml.bundle import DType
from opml.merkle import WORD, LevelTree, multiproof, tree_depth, tree_levels

from .errors import InvalidStep, InvalidWitness
from .tensors import region_root

Address = tuple[int, int]  # (region, word index)
_SIGNED = (DType.INT8, DType.INT16, DType.INT32, DType.INT64)
ELEM: dict[DType, tuple[int, bool]] = {dt: (dt.itemsize, dt in _SIGNED) for dt in DType}
"""Per dtype: element byte size and whether it is a signed integer (looked up once)."""


@dataclass(frozen=True)
class Region:
    """Static description of one region: header words, dtype and byte size."""

    header: tuple[int, ...]
    dtype: DType
    nbytes: int

    @cached_property
    def n_words(self) -> int:
        return -(-self.nbytes // WORD)

    @cached_property
    def depth(self) -> int:
        return tree_depth(self.n_words)

    @cached_property
    def itemsize(self) -> int:
        return ELEM[self.dtype][0]


def region_depth(n_regions: int) -> int:
    """Depth of the region tree."""
    return tree_depth(n_regions)


def multiroot(leaves: dict[int, bytes], depth: int, siblings: Sequence[bytes], pos: int) -> tuple[bytes, int]:
    """:func:`opml.merkle.multiroot` for a step witness: a proof that does not fit is InvalidWitness."""
    try:
        return merkle.multiroot(leaves, depth, siblings, pos)
    except merkle.MerkleError as e:
        raise InvalidWitness(str(e)) from None


class Memory:
    """Full memory of a node's run (used to interpret and to build witnesses)."""

    def __init__(self, regions: Sequence[Region], data: Sequence[bytes | None],
                 trees: Sequence[Sequence[bytes] | None] | None = None) -> None:
        """``data[r]``: region ``r``'s bytes (None: zeros). ``trees[r]``, when given, is region
        ``r``'s ``tree_levels`` already computed (immutable ``bytes`` levels: a read-only region
        such as a constant, shared between memories); ``data[r]`` is then not read."""
        self.regions = list(regions)
        self.rdepth = region_depth(len(self.regions))
        self.levels: list[list[bytearray] | list[bytes]] = []  # per region: its tree's levels
        for r, (reg, d) in enumerate(zip(self.regions, data, strict=True)):
            tree = trees[r] if trees is not None else None
            if tree is not None:
                if len(tree[0]) != max(-(-reg.nbytes // WORD), 1) * WORD:
                    raise InvalidStep(f"region {r}'s tree has {len(tree[0])} leaf bytes, expected {reg.nbytes}")
                self.levels.append(list(tree))
                continue
            raw = bytes(reg.nbytes) if d is None else bytes(d)
            if len(raw) != reg.nbytes:
                raise InvalidStep(f"region data is {len(raw)} bytes, expected {reg.nbytes}")
            self.levels.append([bytearray(x) for x in tree_levels(raw)])
        self.roots = [region_root(r.header, self.data_root(i)) for i, r in enumerate(self.regions)]
        self._dirty: set[Address] = set()
        self._rlevels: LevelTree | None = None

    def tree(self, r: int) -> LevelTree:
        """Region ``r``'s data tree (a view of ``levels[r]``, no copy)."""
        return LevelTree(self.levels[r])

    def data_root(self, r: int) -> bytes:
        return bytes(self.levels[r][-1][:WORD])

    def region_data(self, r: int) -> bytes:
        """The current bytes of region ``r``."""
        return bytes(self.levels[r][0][: self.regions[r].nbytes])

    def tree_node(self, r: int, h: int, i: int) -> bytes:
        """Node ``i`` at height ``h`` of region ``r``'s data tree."""
        return self.tree(r).node(h, i)

    def region_tree(self) -> LevelTree:
        """The region tree (over the region roots), built once per set of roots (reset by ``commit``)."""
        if self._rlevels is None:
            self._rlevels = LevelTree.from_leaves(self.roots, self.rdepth, mutable=False)
        return self._rlevels

    def region_node(self, h: int, i: int) -> bytes:
        """Node ``i`` at height ``h`` of the region tree."""
        return self.region_tree().node(h, i)

    def root(self) -> bytes:
        """The memory root."""
        return self.region_tree().root

    def read_word(self, r: int, w: int) -> bytes:
        if not 0 <= r < len(self.regions) or not 0 <= w < self.regions[r].n_words:
            raise InvalidStep(f"word {w} of region {r} is out of range")
        return bytes(self.levels[r][0][w * WORD : (w + 1) * WORD])

    def write_word(self, r: int, w: int, value: bytes) -> None:
        self.read_word(r, w)
        if not isinstance(self.levels[r][0], bytearray):
            raise InvalidStep(f"region {r} is read-only in this memory")
        self.tree(r).write(w, value)
        self._dirty.add((r, w))

    def commit(self) -> None:
        """Rehash the paths of the words written since the last commit."""
        by_region: dict[int, set[int]] = {}
        for r, w in self._dirty:
            by_region.setdefault(r, set()).add(w)
        for r, ws in by_region.items():
            self.tree(r).rehash(ws)
            self.roots[r] = region_root(self.regions[r].header, self.data_root(r))
        self._dirty.clear()
        self._rlevels = None

    def prove(self, touched: Sequence[Address]) -> list[bytes]:
        """Multiproof siblings for the touched words: per region (ascending), then the region tree."""
        addrs = sorted(set(touched))
        out: list[bytes] = []
        regions = sorted({r for r, _ in addrs})
        for r in regions:
            out += multiproof(self.tree(r).node, [w for rr, w in addrs if rr == r], self.regions[r].depth)
        out += multiproof(self.region_node, regions, self.rdepth)
        return out


def roots_from_words(
    regions: Sequence[Region], words: dict[Address, bytes], siblings: Sequence[bytes], pos: int = 0
) -> tuple[bytes, int]:
    """Memory root implied by touched words and multiproof siblings (``Memory.prove`` order)."""
    by_region: dict[int, dict[int, bytes]] = {}
    for (r, w), v in sorted(words.items()):
        if not 0 <= r < len(regions) or not 0 <= w < regions[r].n_words or len(v) != WORD:
            raise InvalidWitness(f"witness word {w} of region {r} is out of range or not 32 bytes")
        by_region.setdefault(r, {})[w] = v
    rroots: dict[int, bytes] = {}
    for r, leaves in by_region.items():
        data_root, pos = multiroot(leaves, regions[r].depth, siblings, pos)
        rroots[r] = region_root(regions[r].header, data_root)
    root, pos = multiroot(rroots, region_depth(len(regions)), siblings, pos)
    return root, pos


def decode_elem(word: bytes, offset: int, dtype: DType) -> int:
    """Element at byte ``offset`` of a word: signed/unsigned int, 0/1 for bool, raw bits for float32."""
    size, signed = ELEM[dtype]
    return int.from_bytes(word[offset : offset + size], "little", signed=signed)


def encode_elem(value: int, dtype: DType) -> bytes:
    """Little-endian bytes of an element value (the value must fit the dtype)."""
    size, signed = ELEM[dtype]
    try:
        return value.to_bytes(size, "little", signed=signed)
    except OverflowError:
        raise InvalidStep(f"value {value} does not fit {dtype.name}") from None


class StepAccess:
    """Element-level view of memory for one step; records every word touched.

    ``fetch(r, w)`` supplies a word's value before the step (the full memory, or a witness's proven
    words, which raises InvalidWitness for a word it lacks). Writes stay in ``written``.
    """

    def __init__(self, regions: Sequence[Region], fetch: Callable[[int, int], bytes]) -> None:
        self.regions = regions
        self.fetch = fetch
        self.before: dict[Address, bytes] = {}
        self.written: dict[Address, bytes] = {}
        # per region: element size, byte size, signedness (read once, used for every element)
        self._meta = [(reg.itemsize, reg.nbytes, ELEM[reg.dtype][1]) for reg in regions]

    def _word(self, r: int, w: int) -> bytes:
        a = (r, w)
        word = self.written.get(a) or self.before.get(a)
        if word is None:
            if not 0 <= r < len(self.regions) or not 0 <= w < self.regions[r].n_words:
                raise InvalidStep(f"element address (region {r}, word {w}) is out of range")
            word = self.before[a] = self.fetch(r, w)
        return word

    def read(self, r: int, e: int) -> int:
        """Element ``e`` of region ``r``."""
        if not 0 <= r < len(self._meta):
            raise InvalidStep(f"element {e} of region {r} is out of range")
        size, nbytes, signed = self._meta[r]
        off = e * size
        if not 0 <= off < nbytes:
            raise InvalidStep(f"element {e} of region {r} is out of range")
        o = off % WORD
        return int.from_bytes(self._word(r, off // WORD)[o : o + size], "little", signed=signed)

    def write(self, r: int, e: int, value: int) -> None:
        """Set element ``e`` of region ``r``."""
        reg = self.regions[r]
        if not 0 <= e * reg.itemsize < reg.nbytes:
            raise InvalidStep(f"element {e} of region {r} is out of range")
        off = e * reg.itemsize
        w = off // WORD
        old = self._word(r, w)
        o = off % WORD
        self.written[(r, w)] = old[:o] + encode_elem(value, reg.dtype) + old[o + reg.itemsize :]
