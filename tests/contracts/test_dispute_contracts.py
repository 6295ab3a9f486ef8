"""The Solidity dispute game's libraries and contracts, checked from Python.

- ``LibMerkle`` against ``opml.merkle`` (roots, paths, sparse trees, multiproofs, rejections).
- ``LibPosition`` against ``fraud_vm.position`` (differential, shared random seeds): the compiled
  library (through ``LibPositionHarness``) runs in py-evm and must return the same value for every
  function on valid positions, and revert with ``PositionError`` exactly where Python raises.
- ``Errors.sol`` declares every error of ``fraud_vm.errors.ERROR_CLASSES`` under the same name, in
  the same order (``same verdict, same error``).
- ``BundlePhaseLink`` against ``opml.commitment`` and ``fraud_vm.game.node_context`` on the example
  bundles (graph header, node context hash, constants' and zero output region's roots, rejections).
- Every dispute contract deploys within the EIP-170 limit (24,576 bytes of runtime code).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import to_checksum_address

from ai_evm.contracts import CONTRACTS_DIR, artifact
from fraud_vm import errors as vm_errors
from fraud_vm import game, trace
from fraud_vm import position as P
from opml import commitment as C
from opml import merkle as M
from opml.bundle import load_bundle

ROOT = CONTRACTS_DIR.parent
EIP170_LIMIT = 24_576
DISPUTE_CONTRACTS = ["InferenceDisputeGame", "DisputeGameFactory", "BundlePhaseLink", "LibPositionHarness",
                     "LibMerkleHarness"]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def lib(prague: Any) -> Any:
    return prague.deploy("LibPositionHarness")


def random_position(rng: random.Random, max_bits: int = 128) -> int:
    """A position with a random bit length (so every depth is likely), occasionally extreme."""
    bits = rng.randint(1, max_bits)
    return (1 << (bits - 1)) | rng.getrandbits(bits - 1) if bits > 1 else 1


def python_result(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or the string "revert" where Python raises PositionError."""
    try:
        return fn(*args)
    except P.PositionError:
        return "revert"


def solidity_result(lib: Any, name: str, *args: Any) -> Any:
    result = lib.call(name, *args)
    if result.ok:
        return result.values[0]
    assert result.error is not None and result.error[0] == "PositionError", (name, args, result)
    return "revert"


CASES: list[tuple[str, Callable[..., Any], Callable[[random.Random], tuple[Any, ...]]]] = [
    ("depth", P.depth, lambda r: (random_position(r),)),
    ("indexAtDepth", P.index_at_depth, lambda r: (random_position(r),)),
    ("left", P.left, lambda r: (random_position(r),)),
    ("right", P.right, lambda r: (random_position(r),)),
    ("parent", P.parent, lambda r: (random_position(r),)),
    ("rightIndex", P.right_index, lambda r: (random_position(r), r.randint(0, 127))),
    ("traceIndex", P.trace_index, lambda r: (random_position(r), r.randint(0, 127))),
    ("traceAncestor", P.trace_ancestor, lambda r: (random_position(r),)),
    ("traceAncestorBounded", P.trace_ancestor_bounded, lambda r: (random_position(r), r.randint(0, 127))),
    ("move", P.move, lambda r: (random_position(r), r.random() < 0.5)),
    ("wrap", P.wrap, lambda r: (r.randint(0, 255), r.getrandbits(r.randint(0, 128)))),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("name", "py", "gen"), CASES, ids=[c[0] for c in CASES])
def test_lib_position_matches_python(lib: Any, seed: int, name: str, py: Callable[..., Any],
                                     gen: Callable[[random.Random], tuple[Any, ...]]) -> None:
    rng = random.Random(f"lib-position-{name}-{seed}")
    for _ in range(40):
        args = gen(rng)
        expected = python_result(py, *args)
        assert solidity_result(lib, name, *args) == expected, (name, args)
    if name == "wrap":
        return
    # edge cases: the root, the deepest positions, the all-ones position
    for p in (1, 2, 3, (1 << 127), (1 << 128) - 1, (1 << 127) - 1):
        args = (p, *gen(rng)[1:])
        assert solidity_result(lib, name, *args) == python_result(py, *args), (name, args)


def test_lib_position_rejects_zero(lib: Any) -> None:
    for name in ("depth", "indexAtDepth", "left", "right", "parent", "traceAncestor"):
        assert solidity_result(lib, name, 0) == "revert", name
    assert solidity_result(lib, "move", 0, True) == "revert"


def test_errors_sol_mirrors_fraud_vm_errors() -> None:
    text = (CONTRACTS_DIR / "dispute" / "lib" / "Errors.sol").read_text()
    declared = re.findall(r"^error (\w+)\(\);", text, re.M)
    mirrored = [n for n in declared if n in vm_errors.ERROR_NAMES]
    assert mirrored == list(vm_errors.ERROR_NAMES), "Errors.sol must declare fraud_vm.errors.ERROR_NAMES in order"
    assert len(set(declared)) == len(declared)
    # the game's ABI carries the referee's errors it raises
    game_errors = artifact("InferenceDisputeGame").error_names()
    for name in ("GameOver", "NotYourTurn", "ClockExpired", "ClockNotExpired", "ParentNotLast", "CannotDefendRoot",
                 "WrongMoveKind", "IncorrectBond", "InvalidClaim", "PreTensorsMismatch", "InputCountMismatch",
                 "InvalidTableProof", "OutputsContradictClaim", "FinalStateMismatch", "NoCredit"):
        assert name in game_errors, name
    # ... and the factory the claim registry's
    registry_errors = artifact("DisputeGameFactory").error_names()
    for name in ("UnknownClaim", "ChallengeWindowClosed", "ClaimAlreadyRejected", "ClaimAlreadyFinal",
                 "DuplicateChallenge", "ChallengeWindowOpen", "GamesInProgress", "NoCredit", "IncorrectBond"):
        assert name in registry_errors, name


@pytest.mark.parametrize("name", DISPUTE_CONTRACTS)
def test_dispute_contracts_fit_eip170(name: str) -> None:
    size = len(artifact(name).deployed_bytecode)
    assert 0 < size <= EIP170_LIMIT, f"{name}: {size} bytes of runtime code"


def test_dispute_contracts_deploy_on_prague(prague: Any) -> None:
    # the implementation deploys with any verifier / link addresses (they are only called in games)
    one = "0x" + "11" * 20
    game = prague.deploy("InferenceDisputeGame", one, one, 3 * 24 * 3600, 3 * 3600, 10**18, 11, 10)
    assert game.value("bond", 2) == 121 * 10**16
    assert game.value("CLOCK") == 3 * 24 * 3600
    factory = prague.deploy("DisputeGameFactory", game.address, 7 * 24 * 3600)
    assert factory.value("CHALLENGE_WINDOW") == 7 * 24 * 3600
    assert factory.value("claimCount") == 0
    unknown = factory.call("finalize", 0)
    assert unknown.error is not None and unknown.error[0] == "UnknownClaim"
    assert to_checksum_address(factory.value("IMPLEMENTATION")) == to_checksum_address(game.address)


# ------------------------------------------------------------------------------------------------
# LibMerkle against opml.merkle


@pytest.fixture(scope="module")
def merkle(prague: Any) -> Any:
    return prague.deploy("LibMerkleHarness")


def random_tree(rng: random.Random) -> tuple[list[bytes], int]:
    n = rng.randint(1, 40)
    depth = M.tree_depth(n) + rng.choice([0, 0, 1])
    return [rng.randbytes(32) for _ in range(n)], depth


@pytest.mark.parametrize("seed", SEEDS)
def test_lib_merkle_matches_opml_merkle(merkle: Any, seed: int) -> None:
    rng = random.Random(f"lib-merkle-{seed}")
    for h in (0, 1, 5, 17):
        assert merkle.value("zeroHash", h) == M.ZERO_HASHES[h]
    # (n = 0 left out: opml.merkle.tree_depth(0) returns 1 although its docstring says 0, which
    # LibMerkle follows; no tree of the game has zero leaves)
    for n in (1, 2, 3, 4, 5, 1000, 1025):
        assert merkle.value("treeDepth", n) == M.tree_depth(n)
    for _ in range(12):
        leaves, depth = random_tree(rng)
        root = M.merkle_root(leaves, depth)
        assert merkle.value("merkleRoot", leaves, depth) == root
        i = rng.randrange(len(leaves))
        proof = M.merkle_proof(leaves, i, depth)
        assert merkle.value("rootFromProof", leaves[i], i, proof) == root
        # a sparse tree: zero except at some leaves
        idx = sorted(rng.sample(range(1 << depth), rng.randint(1, min(6, 1 << depth))))
        vals = [rng.randbytes(32) for _ in idx]
        full = [M.ZERO_WORD] * (1 << depth)
        for j, v in zip(idx, vals, strict=True):
            full[j] = v
        assert merkle.value("sparseRoot", idx, vals, depth) == M.merkle_root(full, depth)
        # a multiproof of random known leaves, read after some unrelated hashes (pos > 0)
        known = sorted(rng.sample(range(len(leaves)), rng.randint(1, len(leaves))))
        tree = M.LevelTree.from_leaves(leaves, depth)
        sib = tree.multiproof(known)
        prefix = [rng.randbytes(32) for _ in range(rng.randint(0, 2))]
        want = M.multiroot({k: leaves[k] for k in known}, depth, prefix + sib, len(prefix))
        got = merkle.call("multiroot", known, [leaves[k] for k in known], depth, prefix + sib, len(prefix))
        assert got.ok and got.values == want
        if sib:  # one hash short: both sides reject
            with pytest.raises(M.MerkleError):
                M.multiroot({k: leaves[k] for k in known}, depth, sib[:-1], 0)
            short = merkle.call("multiroot", known, [leaves[k] for k in known], depth, sib[:-1], 0)
            assert short.error is not None and short.error[0] == "SiblingsExhausted"


def test_lib_merkle_rejections(merkle: Any) -> None:
    w = [bytes([i]) * 32 for i in range(4)]
    bad_index = merkle.call("rootFromProof", w[0], 4, [w[1], w[2]])  # index beyond 2**len(path)
    assert bad_index.error is not None and bad_index.error[0] == "InvalidProofLength"
    unsorted = merkle.call("multiroot", [2, 1], w[:2], 2, [], 0)
    assert unsorted.error is not None and unsorted.error[0] == "WordsNotSorted"
    outside = merkle.call("multiroot", [4], w[:1], 2, [w[1], w[2]], 0)
    assert outside.error is not None and outside.error[0] == "WordOutOfRange"
    too_many = merkle.call("merkleRoot", w * 2, 2)
    assert too_many.error is not None and too_many.error[0] == "InvalidProofLength"


# ------------------------------------------------------------------------------------------------
# BundlePhaseLink against opml.commitment / fraud_vm.game.node_context, on the example bundles

NODE_PROOF_T = "(int256[],bytes32[],bytes32,bytes32)"
TENSOR_PROOFS_T = "(int256[],bytes32,bytes32[])[]"


@pytest.fixture(scope="module")
def phase_link(prague: Any) -> Any:
    length = prague.deploy("ConstantProgramLength", 7)
    return prague.deploy("BundlePhaseLink", length.address)


def node_link_proof(b: Any, k: int, tamper: str = "") -> bytes:
    """``openNode``'s proof bytes for node ``k`` (optionally tampered: "node", "tensor", "count")."""
    np_ = C.prove_node(b, k)
    ids = [*b.nodes[k].inputs, *b.nodes[k].outputs]
    tps = [C.prove_tensor(b, t) for t in ids]
    words = list(np_.node_words)
    tensors = [(list(tp.tensor_desc), tp.data_root, list(tp.tensor_path)) for tp in tps]
    if tamper == "node":
        words[0] += 1
    elif tamper == "tensor":
        tensors[0][0][-2] += 1  # the zero point
    elif tamper == "count":
        tensors = tensors[:-1]
    return encode([NODE_PROOF_T, TENSOR_PROOFS_T], [(words, list(np_.node_path), np_.meta_hash, np_.tensors_root),
                                                   tensors])


@pytest.mark.parametrize("model", ["digits_mlp", "digits_cnn"])
def test_bundle_phase_link_matches_python(phase_link: Any, model: str) -> None:
    b = load_bundle(ROOT / "models" / model / "model.bundle")
    hp = C.prove_header(b)
    header = C.verify_header(b.address, hp)
    assert header is not None
    proof = encode(["bytes", "bytes32", "bytes32"], [hp.meta, hp.nodes_root, hp.tensors_root])
    g = phase_link.value("graph", b.address, proof)
    assert (g[0], g[1], list(g[2]), list(g[3])) == (header.n_tensors, header.n_nodes, list(header.inputs),
                                                    list(header.outputs))
    bad = phase_link.call("graph", bytes(32), proof)
    assert bad.error is not None and bad.error[0] == "InvalidDescriptorProof"
    for batch in (1, 3):
        for k in range(len(b.nodes)):
            ids = [*b.nodes[k].inputs, *b.nodes[k].outputs]
            ctx, const_roots = game.node_context(b.address, k, batch, C.prove_node(b, k),
                                                 [C.prove_tensor(b, t) for t in ids])
            link = phase_link.value("openNode", b.address, k, batch, node_link_proof(b, k))
            context_hash, num_steps, input_ids, consts, output_ids, zero_root = link
            assert context_hash == ctx.hash, (model, k)
            assert num_steps == 7
            assert list(input_ids) == list(b.nodes[k].inputs) and list(output_ids) == list(b.nodes[k].outputs)
            assert list(consts) == [r or bytes(32) for r in const_roots[: len(input_ids)]], (model, k)
            assert zero_root == trace.zero_region_root(ctx, len(input_ids)), (model, k)
    for tamper, error in (("node", "InvalidDescriptorProof"), ("tensor", "InvalidDescriptorProof"),
                          ("count", "InputCountMismatch")):
        r = phase_link.call("openNode", b.address, 0, 1, node_link_proof(b, 0, tamper))
        assert r.error is not None and r.error[0] == error, tamper
    wrong_node = phase_link.call("openNode", b.address, 1, 1, node_link_proof(b, 0))
    assert wrong_node.error is not None and wrong_node.error[0] == "InvalidDescriptorProof"
