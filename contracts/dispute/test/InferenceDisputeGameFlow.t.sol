// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { GameTest } from "./lib/GameTest.sol";
import { InferenceDisputeGame } from "../InferenceDisputeGame.sol";
import { Bisection, Claim, Outcome, Phase } from "../lib/Types.sol";
import { ClaimAlreadyRejected, DuplicateChallenge, InvalidClaim, NotYourTurn } from "../lib/Errors.sol";
import { DisputeGameFactory } from "../DisputeGameFactory.sol";

/// @title InferenceDisputeGameFlowTest
/// @notice Full games between an honest player and a liar (both roles, fuzzed divergence points), the
///         derived phase-2 start, several challengers on one claim, contract sizes and gas per move kind.
contract InferenceDisputeGameFlowTest is GameTest {
    function test_honestChallengerWins() public {
        _fullGame(true, 3, 3);
    }

    function test_honestClaimantWins() public {
        _fullGame(false, 3, 3);
    }

    /// @notice Bisection invariant: wherever the liar's trace first goes wrong (node, step), in
    ///         either role, the game pins exactly that node and step and the honest player wins.
    function testFuzz_honestPlayerWins(bool _claimantLies, uint256 _lieNode, uint256 _lieStep) public {
        _fullGame(_claimantLies, bound(_lieNode, 0, N - 1), bound(_lieStep, 1, N));
    }

    /// @notice The phase-2 start state is the one derived from the agreed table and the proven
    ///         context, whatever the opener's own trace says.
    function test_phaseTwoStartIsDerived() public {
        game = _create(View(true, 2, 1));
        views[1] = View(false, 0, 0);
        while (game.phase() == Phase.Nodes) _move();
        Bisection memory b = game.bisection();
        assertEq(b.loHash, _vmState(View(false, 0, 0), 2, 0), "derived start");
        assertEq(b.hiHash, keccak256(_openData(views[uint256(b.hiOwner)], 2).finalState), "root claim");
        assertEq(game.contextHash(), link.contextHash(2), "context hash stored");
    }

    function test_registry_severalChallengers() public {
        View memory liar = View(true, 2, 4);
        Claim memory c = _claim(liar);
        address second = address(0xC4A2);
        vm.deal(second, 100 ether);
        game = _create(liar);
        // one game per challenge, one seat per account
        InferenceDisputeGame g2 = _challenge(claimId, second, liar);
        vm.prank(challengerAddr);
        vm.expectRevert(DuplicateChallenge.selector);
        factory.challenge(claimId, c, "graph proof");
        Claim memory other = _claim(View(false, 0, 0));
        vm.prank(address(0xC4A3));
        vm.expectRevert(InvalidClaim.selector);
        factory.challenge(claimId, other, "graph proof");
        address[] memory gs = factory.gamesOf(claimId);
        assertEq(gs.length, 2, "two games on the claim");
        assertEq(gs[1], address(g2), "indexed in order");
        assertEq(factory.claimOf(address(g2)), claimId, "claim of a game");
        assertEq(g2.challenger(), second, "its own challenger");
        // the designated challenger's seat is its own
        Bisection memory b = g2.bisection();
        uint256 value = g2.bond(1);
        vm.prank(challengerAddr);
        vm.expectRevert(NotYourTurn.selector);
        g2.bisect{ value: value }(b.last, true, bytes32("x"));
        // game 1 is won by the honest challenger: the claim is rejected at once
        views[1] = View(false, 0, 0);
        _playOut();
        DisputeGameFactory.ClaimRecord memory rec = factory.claimRecord(claimId);
        assertEq(uint256(rec.status), 1, "rejected");
        assertEq(rec.rejectedBy, address(game), "by game 1");
        assertEq(factory.credit(challengerAddr), CLAIM_BOND, "the first winner takes the claim bond");
        assertEq(uint256(g2.outcome()), uint256(Outcome.InProgress), "game 2 goes on");
        vm.prank(address(0xC4A3));
        vm.expectRevert(ClaimAlreadyRejected.selector);
        factory.challenge(claimId, c, "graph proof");
        vm.expectRevert(ClaimAlreadyRejected.selector);
        factory.finalize(claimId);
        // game 2 ends too (by clock): the claim bond is not paid twice
        vm.warp(g2.deadline() + 1);
        g2.claimTimeout();
        assertEq(factory.credit(second), 0, "no second claim bond");
        assertEq(address(factory).balance, CLAIM_BOND, "one claim bond held");
    }

    function test_contractsFitEip170() public view {
        assertTrue(address(impl).code.length <= 24576, "InferenceDisputeGame within 24,576 bytes");
        assertTrue(address(factory).code.length <= 24576, "DisputeGameFactory within 24,576 bytes");
    }

    /// @notice Gas of each move kind in a full game (printed with `forge test -vv`).
    function test_gasPerMoveKind() public {
        views[1] = View(false, 0, 0);
        Claim memory c = _claim(View(true, 3, 3));
        views[0] = View(true, 3, 3);
        vm.prank(claimantAddr);
        uint256 g0 = gasleft();
        claimId = factory.propose{ value: CLAIM_BOND }(c, "graph proof");
        emit log_named_uint("propose (claim checks, record)", g0 - gasleft());
        vm.prank(challengerAddr);
        g0 = gasleft();
        game = InferenceDisputeGame(factory.challenge(claimId, c, "graph proof"));
        emit log_named_uint("challenge (clone + initialize)", g0 - gasleft());
        uint256 maxBisect1;
        uint256 maxBisect2;
        while (game.outcome() == Outcome.InProgress) {
            vm.warp(block.timestamp + 1 hours);
            bool leaf = game.bisection().last.depth() == game.bisection().maxDepth;
            Phase ph = game.phase();
            uint256 used = _move();
            if (!leaf && ph == Phase.Nodes && used > maxBisect1) maxBisect1 = used;
            if (!leaf && ph == Phase.Steps && used > maxBisect2) maxBisect2 = used;
            if (leaf && ph == Phase.Nodes) emit log_named_uint("openSteps (mock phase link)", used);
            if (leaf && ph == Phase.Steps) emit log_named_uint("step (mock verifier)", used);
        }
        emit log_named_uint("bisect, phase 1 (max)", maxBisect1);
        emit log_named_uint("bisect, phase 2 (max)", maxBisect2);
        g0 = gasleft();
        game.claimCredit(challengerAddr);
        emit log_named_uint("claimCredit", g0 - gasleft());
        InferenceDisputeGame g2 = _create(View(false, 0, 0));
        vm.warp(block.timestamp + CLOCK + 1);
        g0 = gasleft();
        g2.claimTimeout();
        emit log_named_uint("claimTimeout", g0 - gasleft());
    }
}
