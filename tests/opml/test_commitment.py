"""Model address fast paths and Merkle proofs (``opml.commitment``)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opml import commitment as C
from opml.bundle import decode_bundle
from opml.merkle import bytes_root, merkle_proof, merkle_root
from opml.store.testing import example_bundle

# sizes chosen to hit 1 word, exact words, partial last words, odd levels, 2^k and 2^k + 1 words
BUNDLE = decode_bundle(example_bundle([1, 31, 32, 33, 95, 96, 97, 1000, 4096, 4097, 0]).encoded)
ADDRESS = C.bundle_address(BUNDLE)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_fast_root_matches_reference(data: bytes) -> None:
    assert C.fast_bytes_root(data) == bytes_root(data)
    assert C.tree_levels(data)[-1] == bytes_root(data)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=40), st.data())
def test_tree_levels_and_paths_match_reference(leaves: list[bytes], data: st.DataObject) -> None:
    levels = C.tree_levels(b"".join(leaves))
    if leaves:  # (merkle_root([]) is keccak(0^64), tree_levels(b"") the zero word: never mixed)
        assert levels[-1] == merkle_root(leaves)
        i = data.draw(st.integers(0, len(leaves) - 1))
        assert C.tree_path(levels, i) == merkle_proof(leaves, i)


def test_compute_address_matches_bundle_address() -> None:
    for seed, sizes in enumerate([[1], [64, 64], [5000, 3, 0, 77]]):
        b = example_bundle(sizes, seed=seed)
        fresh = decode_bundle(b.encoded)
        assert C.compute_address(fresh) == C.bundle_address(b) == fresh.address


def test_compute_address_of_a_bundle_without_nodes() -> None:
    from opml.bundle import Bundle, DType, TensorSpec

    b = Bundle((TensorSpec("x", DType.INT8, (4,)), TensorSpec("w", DType.INT8, (3,), data=b"abc")), (), (0,), (0,))
    fresh = decode_bundle(b.encoded)
    assert C.compute_address(fresh) == C.bundle_address(b)
    assert C.BundleTree(fresh).address == C.bundle_address(b)
    p = C.prove(fresh, "w", 0)
    assert C.verify(fresh.address, 1, 0, p.word, p)
    with pytest.raises(C.ProofError):
        C.prove_node(fresh, 0)


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_every_word_of_every_tensor_proves_and_a_flipped_word_fails() -> None:
    count = 0
    for i, t in enumerate(BUNDLE.tensors):
        for w in range(-(-len(t.data or b"") // 32)):
            p = C.prove(BUNDLE, i, w)
            assert p.word == (t.data or b"")[w * 32 : w * 32 + 32].ljust(32, b"\0")
            assert C.verify(ADDRESS, i, w, p.word, p)
            bit = (w * 37 + i) % 256
            assert not C.verify(ADDRESS, i, w, _flip(p.word, bit), p)
            count += 1
    assert count == sum(-(-len(t.data or b"") // 32) for t in BUNDLE.tensors) > 300


def _variants(proof: C.WordProof) -> list[C.WordProof]:
    """The proof with each bit of each hashed field flipped, one at a time."""
    out = []
    for field in ("word", "data_root", "meta_hash", "nodes_root"):
        value = getattr(proof, field)
        out += [_replace(proof, **{field: _flip(value, b)}) for b in range(256)]
    for field in ("data_path", "tensor_path"):
        path = getattr(proof, field)
        for k, sib in enumerate(path):
            for b in range(0, 256, 3):
                out.append(_replace(proof, **{field: path[:k] + (_flip(sib, b),) + path[k + 1 :]}))
    for k in range(len(proof.tensor_desc)):
        for delta in (1, -1, 1 << 40):
            desc = list(proof.tensor_desc)
            desc[k] += delta
            out.append(_replace(proof, tensor_desc=tuple(desc)))
    return out


def _replace(proof: C.WordProof, **kw: object) -> C.WordProof:
    from dataclasses import replace

    return replace(proof, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("tensor,word", [(1, 0), (10, 0), (10, 31), (11, 127), (12, 128), (8, 2)])
def test_any_flipped_bit_of_a_proof_fails(tensor: int, word: int) -> None:
    p = C.prove(BUNDLE, tensor, word)
    assert C.verify(ADDRESS, tensor, word, p.word, p)
    for bad in _variants(p):
        assert not C.verify(ADDRESS, tensor, word, bad.word, bad), bad
    assert not C.verify(_flip(ADDRESS, 5), tensor, word, p.word, p)
    assert not C.verify(ADDRESS, tensor + 1, word, p.word, p)
    assert not C.verify(ADDRESS, tensor, word + 1, p.word, p)


def test_shortened_or_lengthened_paths_fail() -> None:
    p = C.prove(BUNDLE, 10, 5)
    z = bytes(32)
    for dp in (p.data_path[:-1], p.data_path + (z,)):
        assert not C.verify(ADDRESS, 10, 5, p.word, _replace(p, data_path=dp))
    for tp in (p.tensor_path[:-1], p.tensor_path + (z,)):
        assert not C.verify(ADDRESS, 10, 5, p.word, _replace(p, tensor_path=tp))


def test_word_proof_json_round_trip() -> None:
    p = C.prove(BUNDLE, "w8", 3)
    obj = json.loads(json.dumps(p.to_json()))
    assert obj["kind"] == "tensor_word" and all(len(w) == 66 for w in obj["tensor_desc"])
    assert C.WordProof.from_json(obj) == p == C.proof_from_json(obj)
    assert C.verify(ADDRESS, p.tensor_index, 3, p.word, C.WordProof.from_json(obj))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("word"),
        lambda o: o.update(word="0x1234"),
        lambda o: o.update(word="abc"),
        lambda o: o.update(tensor_index="3"),
        lambda o: o.update(tensor_index=True),
        lambda o: o.update(data_path="0x00"),
        lambda o: o.update(tensor_desc=[1, 2]),
        lambda o: o.update(kind="node"),
    ],
)
def test_malformed_json_proof_is_a_proof_error(mutate) -> None:  # type: ignore[no-untyped-def]
    obj = C.prove(BUNDLE, 10, 0).to_json()
    mutate(obj)
    with pytest.raises(C.ProofError):
        C.WordProof.from_json(obj)


def test_node_proofs() -> None:
    b = example_bundle([100])
    address = C.bundle_address(b)
    p = C.prove_node(b, 0)
    assert C.verify_node(address, 0, p.node_words, p)
    assert C.NodeProof.from_json(json.loads(json.dumps(p.to_json()))) == p
    assert C.proof_from_json(p.to_json()) == p
    words = list(p.node_words)
    for k in range(len(words)):
        bad = tuple(words[:k] + [words[k] + 1] + words[k + 1 :])
        assert not C.verify_node(address, 0, bad, _replace(p, node_words=bad))  # type: ignore[arg-type]
    for b_ in range(256):
        assert not C.verify_node(address, 0, p.node_words, _replace(p, meta_hash=_flip(p.meta_hash, b_)))
    assert not C.verify_node(address, 1, p.node_words, p)
    with pytest.raises(C.ProofError):
        C.prove_node(b, 1)


def test_out_of_range_requests() -> None:
    with pytest.raises(C.ProofError):
        C.prove(BUNDLE, 0, 0)  # an activation has no data words
    with pytest.raises(C.ProofError):
        C.prove(BUNDLE, 3, 1)  # 1-byte tensor has one word
    with pytest.raises(C.ProofError):
        C.prove(BUNDLE, "nope", 0)
    with pytest.raises(C.ProofError):
        C.prove(BUNDLE, 99, 0)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_verify_never_raises_on_garbage(data: st.DataObject) -> None:
    p = C.prove(BUNDLE, 10, 1)
    b32 = st.binary(min_size=0, max_size=40)
    junk = _replace(
        p,
        word=data.draw(b32),
        data_path=tuple(data.draw(st.lists(b32, max_size=8))),
        tensor_desc=tuple(data.draw(st.lists(st.integers(-(1 << 300), 1 << 300), max_size=12))),
        tensor_path=tuple(data.draw(st.lists(b32, max_size=8))),
    )
    w = data.draw(st.integers(-5, 1 << 70))
    assert C.verify(ADDRESS, data.draw(st.integers(-5, 1 << 70)), w, junk.word, junk) in (False, True)
    node_words = tuple(data.draw(st.lists(st.integers(-(1 << 300), 1 << 300), max_size=10)))
    n = C.prove_node(BUNDLE, 0)
    assert not C.verify_node(ADDRESS, 0, node_words, _replace(n, node_words=node_words))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "encoder"])
def test_proofs_for_every_word_and_node_of_the_committed_example_bundles(name: str) -> None:
    from pathlib import Path

    from opml.bundle import load_bundle

    path = Path(__file__).resolve().parents[2] / "models" / name / "model.bundle"
    if not path.exists():
        pytest.skip(f"{path} not built")
    b = load_bundle(path)
    tree = C.BundleTree(b)
    assert tree.address == C.bundle_address(b)
    for i, t in enumerate(b.tensors):
        for w in range(-(-len(t.data or b"") // 32)):
            p = tree.prove(i, w)
            assert C.verify(tree.address, i, w, p.word, p)
            assert not C.verify(tree.address, i, w, _flip(p.word, (i * 31 + w) % 256), p)
    for j in range(len(b.nodes)):
        p = tree.prove_node(j)
        assert C.verify_node(tree.address, j, p.node_words, p)
        bad = (p.node_words[0] + 1,) + p.node_words[1:]
        assert not C.verify_node(tree.address, j, bad, _replace(p, node_words=bad))  # type: ignore[arg-type]


def test_tensor_and_header_proofs() -> None:
    """Descriptor proofs work for activations and constants; header proofs give the graph facts."""
    b = BUNDLE
    for t in range(len(b.tensors)):
        p = C.prove_tensor(b, t)
        assert C.verify_tensor(ADDRESS, t, p)
        assert p.data_root == C.tensor_data_root(b.tensors[t].data)
        assert C.TensorProof.from_json(json.loads(json.dumps(p.to_json()))) == p
        assert not C.verify_tensor(ADDRESS, t ^ 1, p)
        assert not C.verify_tensor(bytes(32), t, p)
        bad_desc = (*p.tensor_desc[:-1], p.tensor_desc[-1] + 1)
        assert not C.verify_tensor(ADDRESS, t, C.TensorProof(t, bad_desc, *[getattr(p, f) for f in (
            "data_root", "tensor_path", "meta_hash", "nodes_root")]))
    h = C.verify_header(ADDRESS, C.prove_header(b))
    assert h is not None and (h.n_tensors, h.n_nodes) == (len(b.tensors), len(b.nodes))
    assert (h.inputs, h.outputs) == (tuple(b.inputs), tuple(b.outputs))
    hp = C.prove_header(b)
    assert C.verify_header(bytes(32), hp) is None
    assert C.verify_header(ADDRESS, C.HeaderProof(hp.meta + b"x", hp.nodes_root, hp.tensors_root)) is None
    with pytest.raises(C.ProofError):
        C.parse_header(hp.meta[:64])
