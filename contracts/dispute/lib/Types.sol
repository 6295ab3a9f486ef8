// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Position } from "./LibPosition.sol";

/// @notice The two players (`fraud_vm.game.Role`).
enum Role {
    Claimant,
    Challenger
}

/// @notice The state of a game (`fraud_vm.game.Outcome`).
enum Outcome {
    InProgress,
    ClaimantWins,
    ChallengerWins
}

/// @notice Which trace the bisection is over (`fraud_vm.game.Phase`; `None` before the claim).
enum Phase {
    None,
    Nodes,
    Steps,
    Resolved
}

/// @notice A claim: model `modelAddress` on inputs with roots `inputRoots` gives outputs with
///         roots `outputRoots` (`docs/dispute_game.md` §1, `fraud_vm.phase1.Claim`).
/// @custom:field modelAddress The bundle's model address `A`.
/// @custom:field batch The batch size (1..65536); it fixes every tensor's concrete shape.
/// @custom:field inputRoots `commit_tensor` of each graph input, in declared order.
/// @custom:field outputRoots `commit_tensor` of each graph output, in declared order.
/// @custom:field finalState The claimant's phase-1 state after the last node, `state_n`.
/// @custom:field finalTensorsRoot The tensor table of `state_n`.
/// @custom:field outputProofs Each output's path in that table (bottom first).
struct Claim {
    bytes32 modelAddress;
    uint256 batch;
    bytes32[] inputRoots;
    bytes32[] outputRoots;
    bytes32 finalState;
    bytes32 finalTensorsRoot;
    bytes32[][] outputProofs;
}

/// @notice What the game needs of a model's graph, proven against its address by the
///         `IPhaseLink` (graph header words of `docs/bundle.md`).
/// @custom:field nTensors `T`, the number of tensors (the tensor table's leaves).
/// @custom:field nNodes `n`, the number of graph nodes.
/// @custom:field inputIds The graph inputs' tensor ids, in declared order.
/// @custom:field outputIds The graph outputs' tensor ids, in declared order.
struct Graph {
    uint256 nTensors;
    uint256 nNodes;
    uint256[] inputIds;
    uint256[] outputIds;
}

/// @notice What the phase link derives for node `k` from descriptors proven against the model
///         address (`docs/dispute_game.md` §4 `OpenSteps`, `docs/fraud_vm.md` "Phase links").
/// @custom:field contextHash `keccak256` of the node context.
/// @custom:field numSteps The number of instructions of the node's program (>= 1).
/// @custom:field inputIds The node inputs' tensor ids, in input order (a tensor used twice
///               appears twice).
/// @custom:field constRoots Per input: `commit_tensor` of the constant (from its proven
///               descriptor and data root), or zero for an activation.
/// @custom:field outputIds The node outputs' tensor ids, in order.
/// @custom:field outputZeroRoot The root of the all-zero output region (`H(header ‖ Z[depth])`).
struct NodeLink {
    bytes32 contextHash;
    uint256 numSteps;
    uint256[] inputIds;
    bytes32[] constRoots;
    uint256[] outputIds;
    bytes32 outputZeroRoot;
}

/// @notice The calldata of an `OpenSteps` move besides `(parent, isAttack)`.
/// @custom:field preTensorsRoot The agreed state `state_k`'s tensor table.
/// @custom:field inputRoots Roots of node `k`'s non-constant inputs, in input order.
/// @custom:field inputProofs Their paths in `preTensorsRoot`.
/// @custom:field outputRoots Node `k`'s outputs as the mover computes them.
/// @custom:field outputProofs Each output's path in the table as updated so far (its leaf zero).
/// @custom:field finalState The mover's encoded HALTED VM state at the end of node `k`.
/// @custom:field finalProof The output region's path in that state's region tree.
/// @custom:field link Node and tensor descriptors with their proofs, for `IPhaseLink.openNode`.
struct OpenStepsData {
    bytes32 preTensorsRoot;
    bytes32[] inputRoots;
    bytes32[][] inputProofs;
    bytes32[] outputRoots;
    bytes32[][] outputProofs;
    bytes finalState;
    bytes32[] finalProof;
    bytes link;
}

/// @notice The referee's record of one phase: the agreed state at `lo`, the disputed one at `hi`
///         (`fraud_vm.game.Bisection`).
/// @custom:field loHash The agreed state at the low end of the disputed interval.
/// @custom:field hiHash The disputed state at its high end.
/// @custom:field lastHash The last claim's state.
/// @custom:field length `N`, the number of transitions of the phase's trace.
/// @custom:field last The last claim's position.
/// @custom:field maxDepth `D = ceil(log2 N)`.
/// @custom:field hiOwner Who claimed `hiHash`.
/// @custom:field lastOwner Who posted the last claim.
struct Bisection {
    bytes32 loHash;
    bytes32 hiHash;
    bytes32 lastHash;
    uint64 length;
    Position last;
    uint8 maxDepth;
    Role hiOwner;
    Role lastOwner;
}
