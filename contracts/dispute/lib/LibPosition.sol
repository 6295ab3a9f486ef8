// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { PositionError } from "./Errors.sol";

/// @notice A position in a bisection game tree: the generalized index `2^depth + indexAtDepth`
///         of a node of a complete binary tree (the root is 1; 0 is never a position).
type Position is uint128;

using LibPosition for Position global;

/// @title LibPosition
/// @notice Position arithmetic of the dispute game, mirrored function by function by
///         `fraud_vm/position.py` (same names in snake_case, same semantics, same rejections).
/// @dev In a game of maximum depth `D` the leaves are the transitions of a trace: leaf `i` goes
///      from state `i` to state `i + 1`, and a claim at a position commits to the state after its
///      `traceIndex`, the rightmost leaf below it. Functions that would leave the tree (the parent
///      of the root, a right index above the position's depth, a move past 128 bits) revert with
///      `PositionError`, where the Python mirror raises `PositionError`.
library LibPosition {
    /// @notice The deepest tree whose positions and moves still fit 128 bits.
    uint8 internal constant MAX_POSITION_BITS = 128;

    /// @notice Maximum depth of a game tree (`MAX_POSITION_BITS - 2`).
    uint8 internal constant MAX_DEPTH = 126;

    /// @notice The generalized index `2^_depth + _indexAtDepth`.
    /// @param _depth The depth (0 ..= MAX_DEPTH).
    /// @param _indexAtDepth The index among the nodes of that depth, from the left.
    /// @return position_ The position.
    function wrap(uint8 _depth, uint128 _indexAtDepth) internal pure returns (Position position_) {
        // SAFETY: the index must exist at that depth, and the depth must fit the tree.
        if (_depth > MAX_DEPTH || uint256(_indexAtDepth) >> _depth != 0) revert PositionError();
        position_ = Position.wrap(uint128((uint256(1) << _depth) | _indexAtDepth));
    }

    /// @notice The depth of a position: the index of its most significant bit.
    /// @param _position A position (nonzero).
    /// @return depth_ Its depth (the root has depth 0).
    function depth(Position _position) internal pure returns (uint8 depth_) {
        uint256 p = Position.unwrap(_position);
        if (p == 0) revert PositionError();
        depth_ = _msb(p);
    }

    /// @notice The index of a position among the nodes of its depth, counted from the left.
    /// @param _position A position.
    /// @return index_ Its index at its depth.
    function indexAtDepth(Position _position) internal pure returns (uint128 index_) {
        index_ = uint128(uint256(Position.unwrap(_position)) ^ (uint256(1) << depth(_position)));
    }

    /// @notice The left child (`2p`).
    /// @param _position A position.
    /// @return left_ Its left child.
    function left(Position _position) internal pure returns (Position left_) {
        left_ = _shiftIn(_position, 0);
    }

    /// @notice The right child (`2p + 1`).
    /// @param _position A position.
    /// @return right_ Its right child.
    function right(Position _position) internal pure returns (Position right_) {
        right_ = _shiftIn(_position, 1);
    }

    /// @notice The parent (`p / 2`); the root has none.
    /// @param _position A position other than the root.
    /// @return parent_ Its parent.
    function parent(Position _position) internal pure returns (Position parent_) {
        if (Position.unwrap(_position) <= 1) revert PositionError();
        parent_ = Position.wrap(Position.unwrap(_position) >> 1);
    }

    /// @notice The rightmost descendant of a position at depth `_maxDepth`.
    /// @param _position A position at depth at most `_maxDepth`.
    /// @param _maxDepth The depth of the leaves (0 ..= MAX_DEPTH).
    /// @return rightIndex_ The position of that leaf.
    function rightIndex(Position _position, uint8 _maxDepth) internal pure returns (Position rightIndex_) {
        uint8 d = depth(_position);
        if (_maxDepth > MAX_DEPTH || d > _maxDepth) revert PositionError();
        uint256 remaining = _maxDepth - d;
        rightIndex_ = Position.wrap(
            uint128((uint256(Position.unwrap(_position)) << remaining) | ((uint256(1) << remaining) - 1))
        );
    }

    /// @notice The trace (leaf) index the claim at a position commits to: that of its rightmost leaf.
    /// @param _position A position at depth at most `_maxDepth`.
    /// @param _maxDepth The depth of the leaves.
    /// @return traceIndex_ The leaf index.
    function traceIndex(Position _position, uint8 _maxDepth) internal pure returns (uint128 traceIndex_) {
        traceIndex_ = indexAtDepth(rightIndex(_position, _maxDepth));
    }

    /// @notice The highest ancestor of a position (itself included) committing to the same trace
    ///         index: the position with its trailing one bits shifted out (1 if it is all ones).
    /// @param _position A position.
    /// @return ancestor_ That ancestor.
    function traceAncestor(Position _position) internal pure returns (Position ancestor_) {
        uint256 p = Position.unwrap(_position);
        if (p == 0) revert PositionError();
        uint256 lowestUnset = ~p & (p + 1);
        uint256 a = p >> _msb(lowestUnset);
        ancestor_ = Position.wrap(uint128(a == 0 ? 1 : a));
    }

    /// @notice `traceAncestor`, but never above depth `_upperBoundExclusive` (exclusive): the
    ///         ancestor search stops at a phase boundary.
    /// @param _position A position deeper than `_upperBoundExclusive`.
    /// @param _upperBoundExclusive The depth the ancestor must lie below.
    /// @return ancestor_ That ancestor.
    function traceAncestorBounded(Position _position, uint8 _upperBoundExclusive)
        internal
        pure
        returns (Position ancestor_)
    {
        if (_upperBoundExclusive > MAX_DEPTH || depth(_position) <= _upperBoundExclusive) {
            revert PositionError();
        }
        ancestor_ = traceAncestor(_position);
        if (depth(ancestor_) <= _upperBoundExclusive) ancestor_ = rightIndex(ancestor_, _upperBoundExclusive + 1);
    }

    /// @notice The position of a claim answering the claim at `_position`: an attack goes to the
    ///         left child (the midpoint of the claim's range), a defense to the left child of its
    ///         right sibling (`(p | !isAttack) << 1`).
    /// @param _position The answered claim's position.
    /// @param _isAttack Whether the move disputes that claim.
    /// @return move_ The new claim's position.
    function move(Position _position, bool _isAttack) internal pure returns (Position move_) {
        uint256 p = Position.unwrap(_position);
        if (p == 0) revert PositionError();
        move_ = _shiftIn(Position.wrap(uint128(p | (_isAttack ? 0 : 1))), 0);
    }

    /// @notice `(p << 1) | _bit`, reverting when it leaves 128 bits.
    function _shiftIn(Position _position, uint256 _bit) private pure returns (Position shifted_) {
        uint256 p = Position.unwrap(_position);
        if (p == 0) revert PositionError();
        uint256 s = (p << 1) | _bit;
        if (s >> MAX_POSITION_BITS != 0) revert PositionError();
        shifted_ = Position.wrap(uint128(s));
    }

    /// @notice Index of the most significant set bit of a nonzero value (binary search).
    function _msb(uint256 _x) private pure returns (uint8 r_) {
        unchecked {
            if (_x >> 128 != 0) { _x >>= 128; r_ += 128; }
            if (_x >> 64 != 0) { _x >>= 64; r_ += 64; }
            if (_x >> 32 != 0) { _x >>= 32; r_ += 32; }
            if (_x >> 16 != 0) { _x >>= 16; r_ += 16; }
            if (_x >> 8 != 0) { _x >>= 8; r_ += 8; }
            if (_x >> 4 != 0) { _x >>= 4; r_ += 4; }
            if (_x >> 2 != 0) { _x >>= 2; r_ += 2; }
            if (_x >> 1 != 0) { r_ += 1; }
        }
    }
}
