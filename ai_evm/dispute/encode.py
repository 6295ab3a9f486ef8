"""The ``fraud_vm`` claim, graph proof and moves as the dispute contracts' ABI values, and back.

``Claim`` is ``(bytes32 modelAddress, uint256 batch, bytes32[] inputRoots, bytes32[] outputRoots,
bytes32 finalState, bytes32 finalTensorsRoot, bytes32[][] outputProofs)``; the graph proof of
``BundlePhaseLink.graph`` is ``abi.encode(bytes meta, bytes32 nodesRoot, bytes32 tensorsRoot)``; an
``OpenSteps`` move carries ``OpenStepsData`` whose ``link`` is ``BundlePhaseLink.openNode``'s
``abi.encode(NodeProofData, TensorProofData[])``; a ``Step`` carries the witness calldata of
``docs/fraud_vm.md`` (``StepWitness.encode``).
"""

from __future__ import annotations

from typing import Any

from eth_abi import encode as abi_encode

from fraud_vm import phase1 as p1
from fraud_vm.game import Bisect, Move, OpenSteps, Step
from opml.commitment import HeaderProof, NodeProof, TensorProof

__all__ = ["claim_from_abi", "claim_to_abi", "graph_proof", "move_call", "node_link"]

NODE_PROOF_T = "(int256[],bytes32[],bytes32,bytes32)"
TENSOR_PROOFS_T = "(int256[],bytes32,bytes32[])[]"
#: ``OpenStepsData`` of a padding leaf: only ``parent`` and ``isAttack`` are read.
EMPTY_OPEN_STEPS: tuple[Any, ...] = (bytes(32), [], [], [], [], b"", [], b"")


def claim_to_abi(claim: p1.Claim) -> tuple[Any, ...]:
    """The ``Claim`` struct of a ``fraud_vm.phase1.Claim``."""
    return (claim.model_address, claim.batch, list(claim.input_roots), list(claim.output_roots), claim.final_state,
            claim.final_tensors_root, [list(p) for p in claim.output_proofs])


def claim_from_abi(value: Any) -> p1.Claim:
    """A ``fraud_vm.phase1.Claim`` from a decoded ``Claim`` struct (a tuple or web3's dict form)."""
    if isinstance(value, dict):
        value = (value["modelAddress"], value["batch"], value["inputRoots"], value["outputRoots"],
                 value["finalState"], value["finalTensorsRoot"], value["outputProofs"])
    a, batch, ins, outs, final, root, proofs = value
    return p1.Claim(bytes(a), int(batch), tuple(bytes(r) for r in ins), tuple(bytes(r) for r in outs), bytes(final),
                    bytes(root), tuple(tuple(bytes(h) for h in p) for p in proofs))


def graph_proof(proof: HeaderProof) -> bytes:
    """``BundlePhaseLink.graph``'s proof bytes for a graph header proof."""
    return abi_encode(["bytes", "bytes32", "bytes32"], [proof.meta, proof.nodes_root, proof.tensors_root])


def node_link(node_proof: NodeProof, tensor_proofs: tuple[TensorProof, ...]) -> bytes:
    """``BundlePhaseLink.openNode``'s proof bytes: the node descriptor and each tensor's, with paths."""
    tensors = [(list(tp.tensor_desc), tp.data_root, list(tp.tensor_path)) for tp in tensor_proofs]
    return abi_encode([NODE_PROOF_T, TENSOR_PROOFS_T],
                      [(list(node_proof.node_words), list(node_proof.node_path), node_proof.meta_hash,
                        node_proof.tensors_root), tensors])


def open_steps_data(mv: OpenSteps) -> tuple[Any, ...]:
    """The ``OpenStepsData`` struct of an ``OpenSteps`` move."""
    if mv.node_proof is None:
        return EMPTY_OPEN_STEPS
    _, path = mv.final_proof
    return (mv.pre_tensors_root, list(mv.input_roots), [list(p) for p in mv.input_proofs], list(mv.output_roots),
            [list(p) for p in mv.output_proofs], mv.final_state, list(path),
            node_link(mv.node_proof, mv.tensor_proofs))


def move_call(game: Any, mv: Move) -> tuple[str, Any]:
    """The move's kind name and the bound contract function that plays it on ``game``."""
    f = game.functions
    if isinstance(mv, Bisect):
        return "bisect", f.bisect(mv.parent, mv.is_attack, mv.claim)
    if isinstance(mv, OpenSteps):
        return "openSteps", f.openSteps(mv.parent, mv.is_attack, open_steps_data(mv))
    if isinstance(mv, Step):
        witness = b"" if mv.witness is None else mv.witness.encode()
        return "step", f.step(mv.parent, mv.is_attack, witness)
    raise TypeError(f"not a move: {mv!r}")
