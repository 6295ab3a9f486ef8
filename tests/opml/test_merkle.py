"""The one Merkle module (``opml.merkle``): level trees, updates, paths and multiproofs agree with
the one-shot reference functions, and bad proofs give ``MerkleError``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opml import merkle as M

words = st.binary(min_size=32, max_size=32)


@settings(max_examples=60, deadline=None)
@given(st.lists(words, min_size=1, max_size=37), st.data())
def test_level_tree_updates_paths_and_multiproofs(leaves: list[bytes], data: st.DataObject) -> None:
    depth = M.tree_depth(len(leaves)) + data.draw(st.integers(0, 2))
    tree = M.LevelTree.from_leaves(leaves, depth)
    assert tree.root == M.merkle_root(leaves, depth) and tree.depth == depth
    ref = list(leaves)
    for _ in range(data.draw(st.integers(1, 4))):
        i, leaf = data.draw(st.integers(0, len(leaves) - 1)), data.draw(words)
        assert tree.root_with(i, leaf) == M.merkle_root([*ref[:i], leaf, *ref[i + 1 :]], depth)
        ref[i] = leaf
        tree.update(i, leaf)
        assert tree.root == M.merkle_root(ref, depth)
        assert tree.path(i) == M.merkle_proof(ref, i, depth)
        assert M.root_from_proof(leaf, i, tree.path(i)) == tree.root
    idx = sorted(data.draw(st.sets(st.integers(0, len(leaves) - 1), min_size=1)))
    sibs = tree.multiproof(idx)
    assert M.multiroot({i: ref[i] for i in idx}, depth, sibs) == (tree.root, len(sibs))
    # several writes, one rehash of the union of their paths
    new = {i: M.keccak(bytes([i])) for i in idx}
    tree.update_many(new)
    for i, v in new.items():
        ref[i] = v
    assert tree.root == M.merkle_root(ref, depth)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=700), st.data())
def test_data_trees_and_prefix_roots(data: bytes, draw: st.DataObject) -> None:
    tree = M.LevelTree.from_data(data, mutable=False)
    assert tree.root == M.bytes_root(data) == M.fast_bytes_root(data)
    n = draw.draw(st.integers(0, len(data)))
    padded = data[:n] + bytes(len(data) - n)
    assert tree.prefix_root(n) == M.bytes_root(padded)
    with pytest.raises(M.MerkleError, match="read-only"):
        tree.update(0, bytes(32))


def test_bad_proofs_and_indices() -> None:
    leaves = [bytes([i]) * 32 for i in range(5)]
    tree = M.LevelTree.from_leaves(leaves)
    with pytest.raises(M.MerkleError, match="more bits"):
        M.root_from_proof(leaves[0], 8, tree.path(0))
    with pytest.raises(M.MerkleError, match="too few"):
        M.multiroot({0: leaves[0], 3: leaves[3]}, 3, tree.multiproof([0, 3])[:-1])
    with pytest.raises(M.MerkleError, match="out of the tree"):
        M.multiroot({8: leaves[0]}, 3, [])
    with pytest.raises(M.MerkleError, match="out of range"):
        tree.path(5)
    with pytest.raises(M.MerkleError, match="do not fit"):
        M.LevelTree.from_leaves(leaves, 2)
    with pytest.raises(M.MerkleError, match="32 bytes"):
        tree.update(1, b"short")
    # the copy is independent
    other = tree.copy()
    other.update(0, b"\xff" * 32)
    assert tree.root == M.merkle_root(leaves) != other.root
