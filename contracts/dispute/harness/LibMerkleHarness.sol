// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { LibMerkle } from "../lib/LibMerkle.sol";

/// @title LibMerkleHarness
/// @notice Exposes `LibMerkle` as external functions, for the differential test against
///         `opml/merkle.py` (`tests/contracts/test_dispute_contracts.py`). Not deployed on L1.
contract LibMerkleHarness {
    /// @notice `LibMerkle.zeroHash`.
    function zeroHash(uint256 _height) external pure returns (bytes32) {
        return LibMerkle.zeroHash(_height);
    }

    /// @notice `LibMerkle.treeDepth`.
    function treeDepth(uint256 _leaves) external pure returns (uint256) {
        return LibMerkle.treeDepth(_leaves);
    }

    /// @notice `LibMerkle.rootFromProof`.
    function rootFromProof(bytes32 _leaf, uint256 _index, bytes32[] calldata _proof) external pure returns (bytes32) {
        return LibMerkle.rootFromProof(_leaf, _index, _proof);
    }

    /// @notice `LibMerkle.merkleRoot`.
    function merkleRoot(bytes32[] memory _leaves, uint256 _depth) external pure returns (bytes32) {
        return LibMerkle.merkleRoot(_leaves, _depth);
    }

    /// @notice `LibMerkle.sparseRoot`.
    function sparseRoot(uint256[] memory _indices, bytes32[] memory _leaves, uint256 _depth)
        external
        pure
        returns (bytes32)
    {
        return LibMerkle.sparseRoot(_indices, _leaves, _depth);
    }

    /// @notice `LibMerkle.multiroot`.
    function multiroot(
        uint256[] memory _indices,
        bytes32[] memory _leaves,
        uint256 _depth,
        bytes32[] calldata _siblings,
        uint256 _pos
    )
        external
        pure
        returns (bytes32 root_, uint256 nextPos_)
    {
        (root_, nextPos_) = LibMerkle.multiroot(_indices, _leaves, _depth, _siblings, _pos);
    }
}
