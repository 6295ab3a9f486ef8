// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Test } from "./lib/Test.sol";
import { LibPosition, Position } from "../lib/LibPosition.sol";
import { PositionError } from "../lib/Errors.sol";

/// @notice Calls LibPosition externally so reverts can be expected.
contract PositionCaller {
    function parent(uint128 _p) external pure returns (uint128) {
        return Position.unwrap(LibPosition.parent(Position.wrap(_p)));
    }

    function move(uint128 _p, bool _a) external pure returns (uint128) {
        return Position.unwrap(LibPosition.move(Position.wrap(_p), _a));
    }

    function rightIndex(uint128 _p, uint8 _d) external pure returns (uint128) {
        return Position.unwrap(LibPosition.rightIndex(Position.wrap(_p), _d));
    }

    function depth(uint128 _p) external pure returns (uint8) {
        return LibPosition.depth(Position.wrap(_p));
    }

    function bounded(uint128 _p, uint8 _b) external pure returns (uint128) {
        return Position.unwrap(LibPosition.traceAncestorBounded(Position.wrap(_p), _b));
    }
}

/// @title LibPositionTest
/// @notice Known values (the examples of `fraud_vm.position`'s tests) and fuzzed identities.
contract LibPositionTest is Test {
    PositionCaller internal c;

    function setUp() public {
        c = new PositionCaller();
    }

    function p(uint128 _v) internal pure returns (Position) {
        return Position.wrap(_v);
    }

    function u(Position _p) internal pure returns (uint256) {
        return Position.unwrap(_p);
    }

    function test_knownValues() public pure {
        assertEq(p(1).depth(), 0, "depth(1)");
        assertEq(p(2).depth(), 1, "depth(2)");
        assertEq(p(7).depth(), 2, "depth(7)");
        assertEq(p(8).depth(), 3, "depth(8)");
        assertEq(p(13).indexAtDepth(), 5, "index(13)");
        assertEq(u(LibPosition.wrap(3, 5)), 13, "wrap(3,5)");
        assertEq(u(p(5).left()), 10, "left(5)");
        assertEq(u(p(5).right()), 11, "right(5)");
        assertEq(u(p(5).parent()), 2, "parent(5)");
        // depth-3 tree: position 2 covers leaves 0..3, its right index is 11 (leaf 3)
        assertEq(u(p(2).rightIndex(3)), 11, "rightIndex(2,3)");
        assertEq(p(2).traceIndex(3), 3, "traceIndex(2,3)");
        assertEq(p(1).traceIndex(3), 7, "traceIndex(1,3)");
        assertEq(p(12).traceIndex(3), 4, "traceIndex(12,3)");
        // trailing ones shifted out: 11 = 0b1011 -> 0b10 = 2; all ones -> 1
        assertEq(u(p(11).traceAncestor()), 2, "traceAncestor(11)");
        assertEq(u(p(10).traceAncestor()), 10, "traceAncestor(10)");
        assertEq(u(p(7).traceAncestor()), 1, "traceAncestor(7)");
        assertEq(u(p(11).traceAncestorBounded(1)), 5, "traceAncestorBounded(11,1)");
        assertEq(u(p(1).move(true)), 2, "attack root");
        assertEq(u(p(2).move(false)), 6, "defend 2");
        assertEq(u(p(6).move(true)), 12, "attack 6");
        // the largest depth a game tree may have
        assertEq(u(LibPosition.wrap(126, 0).move(false)), (uint256(1) << 127) + 2, "move at MAX_DEPTH");
    }

    function test_outOfRange_reverts() public {
        vm.expectRevert(PositionError.selector);
        c.parent(1);
        vm.expectRevert(PositionError.selector);
        c.depth(0);
        vm.expectRevert(PositionError.selector);
        c.move(uint128(1) << 127, true);
        vm.expectRevert(PositionError.selector);
        c.rightIndex(8, 2);
        vm.expectRevert(PositionError.selector);
        c.bounded(5, 2);
    }

    /// @notice The children's parent is the position; their depths are one more.
    function testFuzz_childrenAndParent(uint128 _p) public pure {
        _p = uint128(bound(_p, 1, (uint256(1) << 127) - 1));
        Position q = p(_p);
        assertEq(u(q.left().parent()), _p, "parent(left)");
        assertEq(u(q.right().parent()), _p, "parent(right)");
        assertEq(q.left().depth(), q.depth() + 1, "depth(left)");
        assertEq(q.right().indexAtDepth(), 2 * uint256(q.indexAtDepth()) + 1, "index(right)");
    }

    /// @notice wrap and (depth, indexAtDepth) are inverse.
    function testFuzz_wrapRoundTrip(uint8 _d, uint128 _i) public pure {
        _d = uint8(bound(_d, 0, 126));
        _i = uint128(bound(_i, 0, (uint256(1) << _d) - 1));
        Position q = LibPosition.wrap(_d, _i);
        assertEq(q.depth(), _d, "depth");
        assertEq(q.indexAtDepth(), _i, "index");
    }

    /// @notice Bisection invariants: an attack's claim commits to the midpoint of the attacked
    ///         claim's range (strictly left of it), a defense's to the midpoint between the
    ///         defended claim and the claim above it (strictly right of it); both one level down.
    function testFuzz_moveBisects(uint8 _max, uint128 _i, uint8 _d) public pure {
        _max = uint8(bound(_max, 1, 126));
        _d = uint8(bound(_d, 0, _max - 1)); // a claim above the leaves
        _i = uint128(bound(_i, 0, (uint256(1) << _d) - 1));
        Position q = LibPosition.wrap(_d, _i);
        uint256 t = q.traceIndex(_max);
        uint256 half = uint256(1) << (_max - _d - 1);
        Position a = q.move(true);
        assertEq(a.depth(), _d + 1, "attack depth");
        assertEq(a.traceIndex(_max), t - half, "attack midpoint");
        // claims in a game sit at left children (every move posts at `<< 1`), and only those are defended
        if (u(q) != 1 && u(q) & 1 == 0) {
            Position f = q.move(false);
            assertEq(f.depth(), _d + 1, "defend depth");
            assertEq(f.traceIndex(_max), t + half, "defend midpoint");
        }
        // the trace ancestor commits to the same leaf and has no trailing one bit (or is the root)
        Position anc = q.traceAncestor();
        assertEq(anc.traceIndex(_max), t, "ancestor leaf");
        assertTrue(u(anc) == 1 || u(anc) & 1 == 0, "ancestor is a left child");
    }

    /// @notice A full bisection always ends on a leaf at the maximum depth after `max` moves, and
    ///         the leaf's range shrinks to one transition.
    function testFuzz_bisectionReachesALeaf(uint8 _max, uint256 _choices) public pure {
        _max = uint8(bound(_max, 1, 64));
        Position q = p(1);
        uint256 lo = 0; // states lo..hi bracket the disputed transition(s)
        uint256 hi = uint256(1) << _max;
        Position interval = q;
        for (uint8 m = 0; m < _max; m++) {
            bool attack = u(q) == 1 || (_choices >> m) & 1 == 1;
            // the claim at q commits to state traceIndex(q)+1
            uint256 claimState = q.traceIndex(_max) + 1;
            if (attack) hi = claimState;
            else lo = claimState;
            interval = attack ? q : p(uint128(u(q) | 1));
            q = q.move(attack);
        }
        bool last = u(q) == 1 || (_choices >> _max) & 1 == 1;
        uint256 s = q.traceIndex(_max) + 1;
        if (last) hi = s;
        else lo = s;
        interval = last ? q : p(uint128(u(q) | 1));
        assertEq(q.depth(), _max, "leaf depth");
        assertEq(hi - lo, 1, "one transition left");
        assertEq(interval.indexAtDepth(), lo, "leaf index is the agreed state's index");
    }
}
