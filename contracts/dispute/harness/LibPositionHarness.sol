// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { LibPosition, Position } from "../lib/LibPosition.sol";

/// @title LibPositionHarness
/// @notice Exposes `LibPosition` as external functions, for the differential test against
///         `fraud_vm/position.py` (`tests/contracts/test_lib_position.py`). Not deployed on L1.
contract LibPositionHarness {
    /// @notice `LibPosition.wrap`.
    function wrap(uint8 _depth, uint128 _indexAtDepth) external pure returns (uint128) {
        return Position.unwrap(LibPosition.wrap(_depth, _indexAtDepth));
    }

    /// @notice `LibPosition.depth`.
    function depth(uint128 _position) external pure returns (uint8) {
        return LibPosition.depth(Position.wrap(_position));
    }

    /// @notice `LibPosition.indexAtDepth`.
    function indexAtDepth(uint128 _position) external pure returns (uint128) {
        return LibPosition.indexAtDepth(Position.wrap(_position));
    }

    /// @notice `LibPosition.left`.
    function left(uint128 _position) external pure returns (uint128) {
        return Position.unwrap(LibPosition.left(Position.wrap(_position)));
    }

    /// @notice `LibPosition.right`.
    function right(uint128 _position) external pure returns (uint128) {
        return Position.unwrap(LibPosition.right(Position.wrap(_position)));
    }

    /// @notice `LibPosition.parent`.
    function parent(uint128 _position) external pure returns (uint128) {
        return Position.unwrap(LibPosition.parent(Position.wrap(_position)));
    }

    /// @notice `LibPosition.rightIndex`.
    function rightIndex(uint128 _position, uint8 _maxDepth) external pure returns (uint128) {
        return Position.unwrap(LibPosition.rightIndex(Position.wrap(_position), _maxDepth));
    }

    /// @notice `LibPosition.traceIndex`.
    function traceIndex(uint128 _position, uint8 _maxDepth) external pure returns (uint128) {
        return LibPosition.traceIndex(Position.wrap(_position), _maxDepth);
    }

    /// @notice `LibPosition.traceAncestor`.
    function traceAncestor(uint128 _position) external pure returns (uint128) {
        return Position.unwrap(LibPosition.traceAncestor(Position.wrap(_position)));
    }

    /// @notice `LibPosition.traceAncestorBounded`.
    function traceAncestorBounded(uint128 _position, uint8 _upperBoundExclusive) external pure returns (uint128) {
        return Position.unwrap(LibPosition.traceAncestorBounded(Position.wrap(_position), _upperBoundExclusive));
    }

    /// @notice `LibPosition.move`.
    function move(uint128 _position, bool _isAttack) external pure returns (uint128) {
        return Position.unwrap(LibPosition.move(Position.wrap(_position), _isAttack));
    }
}
