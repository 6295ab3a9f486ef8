// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { GameTest } from "./lib/GameTest.sol";
import { Position } from "../lib/LibPosition.sol";
import { Bisection, Claim, OpenStepsData, Phase, Role } from "../lib/Types.sol";
import "../lib/Errors.sol";

/// @title InferenceDisputeGameAttacksTest
/// @notice Moves and claims the rules must reject: out of turn, an older parent, defending the root,
///         the wrong move kind, every `OpenSteps` rejection, forged step witnesses, invalid claims and a
///         second initialization.
contract InferenceDisputeGameAttacksTest is GameTest {
    function test_moveOutOfTurn_reverts() public {
        Bisection memory b = _started();
        uint256 value = game.bond(1);
        vm.prank(claimantAddr);
        vm.expectRevert(NotYourTurn.selector);
        game.bisect{ value: value }(b.last, true, bytes32("x"));
        _move();
        vm.deal(address(0xBAD), 10 ether);
        b = game.bisection();
        value = game.bond(2);
        vm.prank(address(0xBAD));
        vm.expectRevert(NotYourTurn.selector);
        game.bisect{ value: value }(b.last, true, bytes32("x"));
        vm.prank(challengerAddr);
        vm.expectRevert(NotYourTurn.selector);
        game.bisect{ value: value }(b.last, true, bytes32("x"));
    }

    function test_answeringAnOlderClaim_reverts() public {
        Bisection memory b0 = _started();
        _move();
        _move();
        uint256 value = game.bond(3);
        vm.prank(challengerAddr);
        vm.expectRevert(ParentNotLast.selector);
        game.bisect{ value: value }(b0.last.move(true), true, bytes32("x"));
    }

    function test_defendingTheRoot_reverts() public {
        Bisection memory b = _started();
        uint256 value = game.bond(1);
        vm.prank(challengerAddr);
        vm.expectRevert(CannotDefendRoot.selector);
        game.bisect{ value: value }(b.last, false, bytes32("x"));
    }

    function test_wrongMoveKind_reverts() public {
        Bisection memory b = _started();
        uint256 value = game.bond(1);
        OpenStepsData memory d = _openData(views[1], 0);
        vm.prank(challengerAddr);
        vm.expectRevert(WrongMoveKind.selector);
        game.openSteps{ value: value }(b.last, true, d);
        vm.prank(challengerAddr);
        vm.expectRevert(WrongMoveKind.selector);
        game.step{ value: value }(b.last, true, "witness");
        _move();
        _move();
        _move(); // the last phase-1 claim sits at the maximum depth
        b = game.bisection();
        value = game.bond(4);
        vm.prank(claimantAddr);
        vm.expectRevert(WrongMoveKind.selector);
        game.bisect{ value: value }(b.last, true, bytes32("x"));
        vm.prank(claimantAddr);
        vm.expectRevert(WrongMoveKind.selector);
        game.step{ value: value }(b.last, true, "witness");
    }

    /// @notice Plays to the phase-1 leaf; returns the mover's role and honest opening data.
    function _atOpen() internal returns (Role r_, Position parent_, bool attack_, OpenStepsData memory d_) {
        _started();
        while (game.bisection().last.depth() < game.bisection().maxDepth) _move();
        r_ = game.mover();
        Bisection memory b = game.bisection();
        View memory v = views[uint256(r_)];
        attack_ = b.lastHash != _own(v, b.last);
        parent_ = b.last;
        Position interval = attack_ ? b.last : Position.wrap(Position.unwrap(b.last) | 1);
        openNode = interval.indexAtDepth();
        d_ = _openData(v, openNode);
    }

    function _expectOpenReverts(bytes4 _err, Role _r, Position _p, bool _a, OpenStepsData memory _d) internal {
        uint256 value = game.bond(game.moves() + 1); // (computed before the prank)
        vm.prank(addrOf[uint256(_r)]);
        vm.expectRevert(_err);
        game.openSteps{ value: value }(_p, _a, _d);
    }

    function test_openSteps_rejections() public {
        (Role r, Position p, bool a, OpenStepsData memory d) = _atOpen();
        OpenStepsData memory bad = _atOpenCopy(d);
        bad.link = "bad";
        _expectOpenReverts(InvalidDescriptorProof.selector, r, p, a, bad);
        bad = _atOpenCopy(d);
        bad.preTensorsRoot = keccak256("other table");
        _expectOpenReverts(PreTensorsMismatch.selector, r, p, a, bad);
        bad = _atOpenCopy(d);
        bad.inputRoots = new bytes32[](0);
        _expectOpenReverts(InputCountMismatch.selector, r, p, a, bad);
        bad = _atOpenCopy(d);
        bad.inputRoots[0] = keccak256("not agreed");
        _expectOpenReverts(InvalidTableProof.selector, r, p, a, bad);
        bad = _atOpenCopy(d);
        bad.outputProofs[0] = d.inputProofs[0]; // the path of a leaf that is not zero / elsewhere
        _expectOpenReverts(InvalidTableProof.selector, r, p, a, bad);
        bad = _atOpenCopy(d);
        // the other player's output: it gives the disputed state iff the mover's own does not
        assertEq(openNode, 3, "the game reached the lying node");
        bad.outputRoots[0] = _root(views[1 - uint256(r)], openNode + 1);
        _expectOpenReverts(OutputsContradictClaim.selector, r, p, a, bad);
        bad = _atOpenCopy(d);
        bad.finalState = new bytes(800);
        _expectOpenReverts(FinalStateMismatch.selector, r, p, a, bad);
        bad = _atOpenCopy(d);
        bad.finalProof[1] = bytes32(0);
        _expectOpenReverts(FinalStateMismatch.selector, r, p, a, bad);
        // the honest data is accepted
        uint256 value = game.bond(game.moves() + 1);
        vm.prank(addrOf[uint256(r)]);
        game.openSteps{ value: value }(p, a, d);
        assertEq(uint256(game.phase()), uint256(Phase.Steps), "phase 2 open");
    }

    function _atOpenCopy(OpenStepsData memory _d) internal pure returns (OpenStepsData memory c_) {
        c_ = abi.decode(abi.encode(_d), (OpenStepsData));
    }

    function test_invalidStepWitness_reverts() public {
        _started();
        while (game.phase() != Phase.Steps || game.bisection().last.depth() < game.bisection().maxDepth) _move();
        Bisection memory b = game.bisection();
        bool attack = b.lastHash != _own(views[uint256(game.mover())], b.last);
        uint256 value = game.bond(game.moves() + 1);
        address who = addrOf[uint256(game.mover())];
        bytes memory forged = _witness(game.nodeIndex(), 1);
        bytes memory otherNode = _witness(game.nodeIndex() + 1, 0);
        vm.prank(who);
        vm.expectRevert(PreStateHashMismatch.selector);
        game.step{ value: value }(b.last, attack, forged);
        vm.prank(who);
        vm.expectRevert(ContextHashMismatch.selector);
        game.step{ value: value }(b.last, attack, otherNode);
        vm.prank(who);
        vm.expectRevert(MalformedMove.selector);
        game.step{ value: value }(b.last, attack, hex"0002");
    }

    function test_invalidClaims_revert() public {
        Claim memory c = _claim(View(false, 0, 0));
        c.batch = 0;
        _expectCreateReverts(InvalidClaim.selector, c, "graph proof");
        c = _claim(View(false, 0, 0));
        c.batch = 65537;
        _expectCreateReverts(InvalidClaim.selector, c, "graph proof");
        c = _claim(View(false, 0, 0));
        c.finalState = keccak256("other");
        _expectCreateReverts(InvalidClaim.selector, c, "graph proof");
        c = _claim(View(false, 0, 0));
        c.outputRoots[0] = keccak256("other");
        _expectCreateReverts(InvalidClaim.selector, c, "graph proof");
        c = _claim(View(false, 0, 0));
        c.inputRoots = new bytes32[](2);
        _expectCreateReverts(InvalidClaim.selector, c, "graph proof");
        _expectCreateReverts(InvalidDescriptorProof.selector, _claim(View(false, 0, 0)), "bad");
        c = _claim(View(false, 0, 0));
        c.modelAddress = keccak256("unregistered");
        _expectCreateReverts(InvalidDescriptorProof.selector, c, "graph proof");
    }

    function _expectCreateReverts(bytes4 _err, Claim memory _c, bytes memory _proof) internal {
        vm.prank(claimantAddr);
        vm.expectRevert(_err);
        factory.propose{ value: CLAIM_BOND }(_c, _proof);
    }

    function test_initializeTwice_reverts() public {
        game = _create(View(false, 0, 0));
        Claim memory c = _claim(View(false, 0, 0));
        vm.expectRevert(AlreadyInitialized.selector);
        game.initialize(c, "graph proof", claimantAddr, address(this), false);
        vm.expectRevert(AlreadyInitialized.selector);
        impl.initialize{ value: CLAIM_BOND }(c, "graph proof", claimantAddr, address(this), true);
    }
}
