"""The model address: a keccak256 binary Merkle root over a bundle.

Layout (``docs/bundle.md`` has the byte-level spec)::

    address      = H( H(meta_hash || nodes_root) || H(tensors_root || 0^32) )
    meta_hash    = keccak256(meta section bytes)
    nodes_root   = merkle_root([keccak256(node descriptor words) for each node])
    tensors_root = merkle_root([keccak256(tensor descriptor words || data_root) for each tensor])
    data_root    = merkle_root(32-byte words of the tensor's data, zero-padded)

so one 32-byte word of any constant tensor is proven by: its path to ``data_root``, the tensor's
descriptor, the tensor leaf's path to ``tensors_root``, and the two top siblings.
"""

from __future__ import annotations

from .bundle import Bundle, meta_bytes, node_descriptor_words, tensor_descriptor_words, words_bytes
from .merkle import ZERO_WORD, bytes_root, keccak, merkle_root


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
