// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Graph, NodeLink } from "../lib/Types.sol";

/// @title IPhaseLink
/// @notice Facts about a model that the game takes as proven against its model address: the
///         graph header (tensor and node counts, graph inputs and outputs) and, for one node, its
///         context, program length and the constants' and output region's roots.
/// @dev The game checks everything else of a claim and of `OpenSteps` itself (state hashes,
///      tensor-table paths, the post-state, the final VM state) and derives the phase-2 start
///      state from what `openNode` returns. An implementation must never return data it has not
///      verified against `_model` (`docs/bundle.md` "Merkle proofs").
interface IPhaseLink {
    /// @notice The graph header of a registered model.
    /// @dev Reverts if the model is unknown or `_proof` does not verify.
    /// @param _model The model address.
    /// @param _proof Implementation-defined proof of the header words against `_model`.
    /// @return graph_ The graph header.
    function graph(bytes32 _model, bytes calldata _proof) external view returns (Graph memory graph_);

    /// @notice Node `_nodeIndex`'s link data for a run of batch size `_batch`.
    /// @dev Reverts if a descriptor is not proven against `_model`.
    /// @param _model The model address.
    /// @param _nodeIndex The node (below the graph's node count).
    /// @param _batch The claim's batch size.
    /// @param _proof The node and tensor descriptors with their Merkle proofs.
    /// @return link_ The node's link data.
    function openNode(bytes32 _model, uint256 _nodeIndex, uint256 _batch, bytes calldata _proof)
        external
        view
        returns (NodeLink memory link_);
}
