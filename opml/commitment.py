"""The model address: a keccak256 binary Merkle root over a bundle.

Layout (``docs/bundle.md`` has the byte-level spec)::

    address      = H( H(meta_hash || nodes_root) || H(tensors_root || 0^32) )
    meta_hash    = keccak256(meta section bytes)
    nodes_root   = merkle_root([keccak256(node descriptor words) for each node])
    tensors_root = merkle_root([keccak256(tensor descriptor words || data_root) for each tensor])
    data_root    = merkle_root(32-byte words of the tensor's data, zero-padded)

so one 32-byte word of any constant tensor is proven by: its path to ``data_root``, the tensor's
descriptor, the tensor leaf's path to ``tensors_root``, and the two top siblings. :func:`prove` /
:func:`verify` (and ``prove_node`` / ``verify_node``) make and check such proofs;
:func:`compute_address` is the fast path the model store verifies downloads with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .bundle import Bundle, meta_bytes, node_descriptor_words, tensor_descriptor_words, words_bytes
from .errors import OpmlError
from .merkle import (
    WORD,
    ZERO_WORD,
    bytes_root,
    fast_bytes_root,
    keccak,
    merkle_root,
    root_from_proof,
    tree_depth,
    tree_levels,
    tree_path,
)


def tensor_data_root(data: bytes | None) -> bytes:
    """Merkle root of a tensor's data words (zero for activations and empty tensors)."""
    return bytes_root(data) if data else ZERO_WORD


def tensor_leaf(desc_words: list[int], data_root: bytes) -> bytes:
    return keccak(words_bytes(desc_words) + data_root)


def node_leaf(desc_words: list[int]) -> bytes:
    return keccak(words_bytes(desc_words))


def tensor_leaves(b: Bundle) -> list[bytes]:
    return [tensor_leaf(tensor_descriptor_words(t), tensor_data_root(t.data)) for t in b.tensors]


def node_leaves(b: Bundle) -> list[bytes]:
    return [node_leaf(node_descriptor_words(n)) for n in b.nodes]


def address_from_parts(meta_hash: bytes, nodes_root: bytes, tensors_root: bytes) -> bytes:
    return keccak(keccak(meta_hash + nodes_root) + keccak(tensors_root + ZERO_WORD))


def bundle_address(b: Bundle) -> bytes:
    """The 32-byte model address of a bundle."""
    return address_from_parts(
        keccak(meta_bytes(b)), merkle_root(node_leaves(b)), merkle_root(tensor_leaves(b))
    )


def compute_address(b: Bundle) -> bytes:
    """The model address of ``b`` (same value as :func:`bundle_address`, faster on big tensors).

    The result is also stored as ``b.address`` so later reads of that property are free.
    """
    leaves = [tensor_leaf(tensor_descriptor_words(t), fast_bytes_root(t.data or b"")) for t in b.tensors]
    # the leaf lists are short: use the reference merkle_root (it also defines the empty tree)
    address = address_from_parts(keccak(meta_bytes(b)), merkle_root(node_leaves(b)), merkle_root(leaves))
    b.__dict__["address"] = address  # primes the functools.cached_property of the frozen Bundle
    return address


# ---------------------------------------------------------------------------------------------
# Proofs (``docs/bundle.md`` "Merkle proofs" is the normative description)


class ProofError(ValueError):
    """A proof request is out of range, or a serialized proof is malformed."""


@dataclass(frozen=True)
class WordProof:
    """Proof that ``word`` is 32-byte word ``word_index`` of constant tensor ``tensor_index``.

    ``data_path`` leads from the word to ``data_root``; ``tensor_desc`` (with ``data_root``) gives
    the tensor leaf; ``tensor_path`` leads from it to the tensors root; ``meta_hash`` and
    ``nodes_root`` complete the address. (Tensor names are committed only inside ``meta_hash``;
    a proof is about a tensor *index*.)
    """

    tensor_index: int
    word_index: int
    word: bytes
    data_path: tuple[bytes, ...]
    data_root: bytes
    tensor_desc: tuple[int, ...]
    tensor_path: tuple[bytes, ...]
    meta_hash: bytes
    nodes_root: bytes

    KIND = "tensor_word"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: bytes as 0x-hex, descriptor words as 32-byte two's-complement hex."""
        return _to_json(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> WordProof:
        """Inverse of :meth:`to_json`; raises :class:`ProofError` on malformed input."""
        return _from_json(cls, obj)


@dataclass(frozen=True)
class NodeProof:
    """Proof that ``node_words`` is the descriptor of graph node ``node_index``."""

    node_index: int
    node_words: tuple[int, ...]
    node_path: tuple[bytes, ...]
    meta_hash: bytes
    tensors_root: bytes

    KIND = "node"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (see :meth:`WordProof.to_json`)."""
        return _to_json(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> NodeProof:
        """Inverse of :meth:`to_json`; raises :class:`ProofError` on malformed input."""
        return _from_json(cls, obj)


def proof_from_json(obj: dict[str, Any]) -> WordProof | NodeProof:
    """Parse either kind of proof from its JSON dict (dispatching on ``kind``)."""
    if not isinstance(obj, dict):
        raise ProofError("a proof must be a JSON object")
    return NodeProof.from_json(obj) if obj.get("kind") == "node" else WordProof.from_json(obj)


def _hx(b: bytes) -> str:
    return "0x" + b.hex()


def _unhx(s: str, size: int | None = None) -> bytes:
    if not isinstance(s, str) or not s.startswith("0x"):
        raise ProofError(f"expected a 0x-prefixed hex string, got {str(s)[:20]!r}")
    b = bytes.fromhex(s[2:])
    if size is not None and len(b) != size:
        raise ProofError(f"expected {size} bytes, got {len(b)}")
    return b


def _words_hex(words: tuple[int, ...]) -> list[str]:
    raw = words_bytes(list(words))
    return [_hx(raw[i : i + WORD]) for i in range(0, len(raw), WORD)]


def _words_unhex(items: list[str]) -> tuple[int, ...]:
    vals = [int.from_bytes(_unhx(s, WORD), "big") for s in items]
    return tuple(v - (1 << 256) if v >> 255 else v for v in vals)


# field type (as annotated) -> (encode, decode)
_CODECS: dict[str, tuple[Any, Any]] = {
    "int": (int, lambda v: v if type(v) is int else _bad(f"expected an integer, got {v!r}")),
    "bytes": (_hx, lambda v: _unhx(v, WORD)),
    "tuple[bytes, ...]": (lambda p: [_hx(x) for x in p], lambda v: tuple(_unhx(x, WORD) for x in v)),
    "tuple[int, ...]": (_words_hex, _words_unhex),
}


def _bad(msg: str) -> Any:
    raise ProofError(msg)


def _to_json(proof: WordProof | NodeProof | TensorProof) -> dict[str, Any]:
    encoded = {f.name: _CODECS[str(f.type)][0](getattr(proof, f.name)) for f in fields(proof)}
    return {"kind": proof.KIND, **encoded}


def _from_json(cls: Any, obj: dict[str, Any]) -> Any:
    if not isinstance(obj, dict) or obj.get("kind", cls.KIND) != cls.KIND:
        raise ProofError(f"not a {cls.KIND} proof")
    try:
        return cls(**{f.name: _CODECS[str(f.type)][1](obj[f.name]) for f in fields(cls)})
    except ProofError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ProofError(f"malformed {cls.KIND} proof: {e!r}") from None


class BundleTree:
    """The whole Merkle tree of a bundle, kept in memory so that many proofs are cheap.

    Building it hashes every data word once (like computing the address) and keeps every level
    of every tensor's data tree: about the bundle's size again in memory.
    """

    def __init__(self, b: Bundle) -> None:
        self.bundle = b
        self.meta_hash = keccak(meta_bytes(b))
        self.data_levels = [tree_levels(t.data) if t.data else [ZERO_WORD] for t in b.tensors]
        self.tensor_descs = [tuple(tensor_descriptor_words(t)) for t in b.tensors]
        roots = [lv[-1] for lv in self.data_levels]
        leaves = [tensor_leaf(list(d), r) for d, r in zip(self.tensor_descs, roots, strict=True)]
        self.tensor_levels = tree_levels(b"".join(leaves))
        self.node_words = [tuple(node_descriptor_words(n)) for n in b.nodes]
        node_leaves_ = [node_leaf(list(w)) for w in self.node_words]
        self.node_levels = tree_levels(b"".join(node_leaves_))
        self.tensors_root, self.nodes_root = merkle_root(leaves), merkle_root(node_leaves_)
        self.address = address_from_parts(self.meta_hash, self.nodes_root, self.tensors_root)

    def tensor_index(self, tensor: int | str) -> int:
        """Resolve a tensor index or name (first tensor of that name)."""
        if isinstance(tensor, str):
            names = [t.name for t in self.bundle.tensors]
            if tensor not in names:
                raise ProofError(f"no tensor named {tensor!r}")
            return names.index(tensor)
        if not 0 <= tensor < len(self.bundle.tensors):
            raise ProofError(f"tensor index {tensor} out of range (bundle has {len(self.bundle.tensors)})")
        return tensor

    def prove(self, tensor: int | str, word_index: int) -> WordProof:
        """Proof of one 32-byte data word of a constant tensor (by index or name)."""
        i = self.tensor_index(tensor)
        t = self.bundle.tensors[i]
        n_words = -(-len(t.data or b"") // WORD)
        if not 0 <= word_index < n_words:
            raise ProofError(f"word {word_index} out of range: tensor {t.name!r} has {n_words} data words")
        levels = self.data_levels[i]
        word = levels[0][word_index * WORD : (word_index + 1) * WORD]
        data_path, tensor_path = tuple(tree_path(levels, word_index)), tuple(tree_path(self.tensor_levels, i))
        desc, meta_hash, nodes_root = self.tensor_descs[i], self.meta_hash, self.nodes_root
        return WordProof(i, word_index, word, data_path, levels[-1], desc, tensor_path, meta_hash, nodes_root)

    def prove_node(self, j: int) -> NodeProof:
        """Proof of graph node ``j``'s descriptor words."""
        if not 0 <= j < len(self.node_words):
            raise ProofError(f"node index {j} out of range (bundle has {len(self.node_words)} nodes)")
        path = tuple(tree_path(self.node_levels, j))
        return NodeProof(j, self.node_words[j], path, self.meta_hash, self.tensors_root)


_last_tree: BundleTree | None = None


def bundle_tree(b: Bundle) -> BundleTree:
    """The :class:`BundleTree` of ``b``, reusing the last one built for the same object."""
    global _last_tree
    if _last_tree is None or _last_tree.bundle is not b:
        _last_tree = BundleTree(b)
    return _last_tree


def prove(b: Bundle, tensor: int | str, word_index: int) -> WordProof:
    """Proof that data word ``word_index`` of ``tensor`` (index or name) is committed by ``b``'s address."""
    return bundle_tree(b).prove(tensor, word_index)


def prove_node(b: Bundle, j: int) -> NodeProof:
    """Proof that node ``j``'s descriptor words are committed by ``b``'s address."""
    return bundle_tree(b).prove_node(j)


def tensor_desc_ok(desc: tuple[int, ...]) -> bool:
    """Structure check of tensor descriptor words: ``dtype ndim dims[ndim] is_const scale zp nbytes``."""
    return len(desc) >= 6 and 0 <= desc[1] <= 8 and len(desc) == desc[1] + 6 and desc[-1] >= 0


def node_words_ok(words: tuple[int, ...]) -> bool:
    """Structure check of node descriptor words: ``op, n_in, in[], n_out, out[], n_attr, (len, v[])*``."""
    pos = 1
    for _ in range(2):  # inputs, outputs
        if pos >= len(words) or not 0 <= words[pos] <= 64:
            return False
        pos += words[pos] + 1
    if pos >= len(words) or not 0 <= words[pos] <= 64:
        return False
    n_attrs, pos = words[pos], pos + 1
    for _ in range(n_attrs):
        if pos >= len(words) or not 0 <= words[pos] <= 64:
            return False
        pos += words[pos] + 1
    return pos == len(words)


def verify(address: bytes, tensor: int, word_index: int, word: bytes, proof: WordProof) -> bool:
    """Check a :class:`WordProof` of word ``word_index`` of tensor index ``tensor`` by hashing only.

    This is exactly what the Solidity verifier does (``docs/bundle.md``). Never raises.
    """
    try:
        return _verify(address, tensor, word_index, word, proof)
    except (OpmlError, ValueError, TypeError, IndexError, OverflowError):
        return False


def _verify(address: bytes, tensor: int, word_index: int, word: bytes, proof: WordProof) -> bool:
    if len(word) != WORD or word != proof.word or word_index != proof.word_index:
        return False
    desc = proof.tensor_desc
    if not tensor_desc_ok(desc) or desc[desc[1] + 2] != 1:  # a well-formed constant descriptor
        return False
    n_words = -(-desc[-1] // WORD)
    # INVARIANT: the data tree's depth is fixed by the committed byte length, so a word can never
    # be confused with an inner node of the data tree.
    if not 0 <= word_index < n_words or len(proof.data_path) != tree_depth(n_words):
        return False
    data_root = root_from_proof(word, word_index, proof.data_path)
    if data_root != proof.data_root:
        return False
    # INVARIANT: a tensor leaf hashes >= 7 words, an inner node exactly 2, so the tensors-tree
    # depth cannot be faked: the index must just fit the path.
    if tensor != proof.tensor_index or tensor < 0 or tensor >> len(proof.tensor_path):
        return False
    leaf = tensor_leaf(list(desc), data_root)
    tensors_root = root_from_proof(leaf, proof.tensor_index, proof.tensor_path)
    return address_from_parts(proof.meta_hash, proof.nodes_root, tensors_root) == address


def verify_node(address: bytes, j: int, node_words: tuple[int, ...], proof: NodeProof) -> bool:
    """Check a :class:`NodeProof` by hashing only. Never raises on a bad proof."""
    try:
        words = tuple(node_words)
        if j != proof.node_index or words != tuple(proof.node_words) or not node_words_ok(words):
            return False
        if j < 0 or j >> len(proof.node_path):
            return False
        nodes_root = root_from_proof(node_leaf(list(words)), j, proof.node_path)
        return address_from_parts(proof.meta_hash, nodes_root, proof.tensors_root) == address
    except (OpmlError, ValueError, TypeError, IndexError, OverflowError):
        return False


# ---------------------------------------------------------------------------------------------
# Descriptor and header proofs: what a dispute-game referee (or an L1 contract) needs to rebuild a
# node's context from the model address alone (``docs/bundle.md`` "Merkle proofs").


@dataclass(frozen=True)
class TensorProof:
    """Proof that ``tensor_desc`` (with ``data_root``) is tensor ``tensor_index``'s leaf.

    Like :class:`WordProof` without the word: it works for activations too (their ``data_root`` is
    the zero word), and for a constant it proves the ``data_root`` its commitment is made from.
    """

    tensor_index: int
    tensor_desc: tuple[int, ...]
    data_root: bytes
    tensor_path: tuple[bytes, ...]
    meta_hash: bytes
    nodes_root: bytes

    KIND = "tensor"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (see :meth:`WordProof.to_json`)."""
        return _to_json(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TensorProof:
        """Inverse of :meth:`to_json`; raises :class:`ProofError` on malformed input."""
        return _from_json(cls, obj)


@dataclass(frozen=True)
class GraphHeader:
    """The graph facts of the meta section: tensor and node counts, graph inputs and outputs (ids)."""

    version: int
    n_tensors: int
    n_nodes: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class HeaderProof:
    """Proof of a bundle's meta section: its bytes (``keccak`` of them is ``meta_hash``) and the roots.

    ``meta`` is the whole committed meta section: the meta words ``[version, n_tensors, n_nodes,
    n_inputs, inputs.., n_outputs, outputs..]`` (int256 each), then the names and metadata blobs,
    which the verifier hashes but does not read.
    """

    meta: bytes
    nodes_root: bytes
    tensors_root: bytes


def tree_prove_tensor(tree: BundleTree, tensor: int | str) -> TensorProof:
    """:func:`prove_tensor` from an already built :class:`BundleTree`."""
    i = tree.tensor_index(tensor)
    path = tuple(tree_path(tree.tensor_levels, i))
    return TensorProof(i, tree.tensor_descs[i], tree.data_levels[i][-1], path, tree.meta_hash, tree.nodes_root)


def prove_tensor(b: Bundle, tensor: int | str) -> TensorProof:
    """Proof that tensor ``tensor``'s descriptor and data root are committed by ``b``'s address."""
    return tree_prove_tensor(bundle_tree(b), tensor)


def prove_header(b: Bundle) -> HeaderProof:
    """Proof of ``b``'s meta section (graph counts, inputs, outputs) against its address."""
    tree = bundle_tree(b)
    return HeaderProof(meta_bytes(b), tree.nodes_root, tree.tensors_root)


def verify_tensor(address: bytes, t: int, proof: TensorProof) -> bool:
    """Check a :class:`TensorProof` of tensor index ``t`` by hashing only. Never raises.

    Steps: the descriptor is well formed (:func:`tensor_desc_ok`); ``t == tensor_index`` and
    ``t < 2**len(tensor_path)``; ``fold(H(desc || data_root), t, tensor_path)`` with ``meta_hash`` and
    ``nodes_root`` gives ``address``. (The path length cannot be faked: see :func:`verify`.)
    """
    try:
        desc = tuple(proof.tensor_desc)
        if t != proof.tensor_index or t < 0 or t >> len(proof.tensor_path) or not tensor_desc_ok(desc):
            return False
        if len(proof.data_root) != WORD:
            return False
        tensors_root = root_from_proof(tensor_leaf(list(desc), proof.data_root), t, proof.tensor_path)
        return address_from_parts(proof.meta_hash, proof.nodes_root, tensors_root) == address
    except (OpmlError, ValueError, TypeError, IndexError, OverflowError):
        return False


def parse_header(meta: bytes) -> GraphHeader:
    """The graph facts at the start of a meta section; raises :class:`ProofError` if malformed.

    Each id must name a tensor (``0 <= id < n_tensors``); the bytes after the words are not read.
    """
    def word(i: int) -> int:
        if len(meta) < (i + 1) * WORD:
            raise ProofError("meta section too short for its words")
        return int.from_bytes(meta[i * WORD : (i + 1) * WORD], "big", signed=True)

    version, n_tensors, n_nodes, n_in = word(0), word(1), word(2), word(3)
    if not 0 < n_tensors < 1 << 32 or not 0 <= n_nodes < 1 << 32 or not 0 <= n_in <= n_tensors:
        raise ProofError("meta section counts out of range")
    inputs = tuple(word(4 + j) for j in range(n_in))
    n_out = word(4 + n_in)
    if not 0 <= n_out <= n_tensors:
        raise ProofError("meta section output count out of range")
    outputs = tuple(word(5 + n_in + j) for j in range(n_out))
    if any(not 0 <= t < n_tensors for t in (*inputs, *outputs)):
        raise ProofError("meta section names a tensor id out of range")
    return GraphHeader(version, n_tensors, n_nodes, inputs, outputs)


def verify_header(address: bytes, proof: HeaderProof) -> GraphHeader | None:
    """The :class:`GraphHeader` proven by ``proof`` against ``address``, or None. Never raises.

    Check: ``H(H(keccak(meta) || nodes_root) || H(tensors_root || 0^32)) == address``, then the meta
    words parse (:func:`parse_header`).
    """
    try:
        if len(proof.nodes_root) != WORD or len(proof.tensors_root) != WORD:
            return None
        if address_from_parts(keccak(bytes(proof.meta)), proof.nodes_root, proof.tensors_root) != address:
            return None
        return parse_header(bytes(proof.meta))
    except (ProofError, OpmlError, ValueError, TypeError, IndexError, OverflowError):
        return None
