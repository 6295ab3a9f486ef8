// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { GameTest } from "./lib/GameTest.sol";
import { DisputeGameFactory } from "../DisputeGameFactory.sol";
import { InferenceDisputeGame } from "../InferenceDisputeGame.sol";
import { Position } from "../lib/LibPosition.sol";
import { Bisection, Claim, Outcome } from "../lib/Types.sol";
import "../lib/Errors.sol";

/// @notice A challenger contract whose `receive` re-enters `claimCredit` (or refuses the payment).
contract ReentrantReceiver {
    InferenceDisputeGame public game;
    bool public refuse;
    uint256 public received;
    uint256 public reentries;
    bool public reentrySucceeded;

    function setGame(InferenceDisputeGame _game) external {
        game = _game;
    }

    function setRefuse(bool _refuse) external {
        refuse = _refuse;
    }

    function challenge(DisputeGameFactory _f, uint256 _id, Claim calldata _c) external {
        game = InferenceDisputeGame(_f.challenge(_id, _c, "graph proof"));
    }

    function bisect(Position _parent, bool _isAttack, bytes32 _claim) external payable {
        game.bisect{ value: msg.value }(_parent, _isAttack, _claim);
    }

    receive() external payable {
        if (refuse) revert("no thanks");
        received += msg.value;
        reentries++;
        (bool ok,) = address(game).call(abi.encodeCall(InferenceDisputeGame.claimCredit, (address(this))));
        if (ok) reentrySucceeded = true;
    }
}

/// @title InferenceDisputeGameClocksTest
/// @notice Clocks, bonds and credit: moves after the clock, timeouts, the clock extension, bond amounts,
///         resolving and claiming twice, re-entrant and refusing receivers, the claim window and finality.
contract InferenceDisputeGameClocksTest is GameTest {
    function test_moveAfterClock_reverts() public {
        Bisection memory b = _started();
        vm.warp(game.deadline() + 1);
        uint256 value = game.bond(1);
        vm.prank(challengerAddr);
        vm.expectRevert(ClockExpired.selector);
        game.bisect{ value: value }(b.last, true, bytes32("x"));
        // ... and the timeout goes to the other player
        game.claimTimeout();
        assertEq(uint256(game.outcome()), uint256(Outcome.ClaimantWins), "claimant wins by clock");
        assertEq(game.credit(claimantAddr), 0, "a registry game's pot holds move bonds only");
        assertEq(uint256(factory.claimRecord(claimId).status), 0, "the claim stays pending");
    }

    function test_timeoutBeforeDeadline_reverts() public {
        _started();
        vm.warp(game.deadline() - 1);
        vm.expectRevert(ClockNotExpired.selector);
        game.claimTimeout();
    }

    function test_clockExtension() public {
        Bisection memory b = _started();
        // the challenger answers with one hour left on its clock
        vm.warp(block.timestamp + CLOCK - 1 hours);
        _move();
        assertEq(game.clockUsed(1), CLOCK - 1 hours, "challenger's clock charged");
        // the claimant answers at once: the responder (challenger) is topped up to the extension
        _move();
        assertEq(game.clockUsed(1), CLOCK - EXT, "topped up");
        assertEq(game.deadline(), block.timestamp + EXT, "the challenger has the extension");
        b = game.bisection();
        assertTrue(Position.unwrap(b.last) > 1, "game moved on");
    }

    function test_wrongBond_reverts() public {
        Bisection memory b = _started();
        uint256 value = game.bond(1);
        assertEq(value, 1.1 ether, "bond(1) = 1.1 x bond(0)");
        assertEq(game.bond(2), 1.21 ether, "bond(2)");
        vm.startPrank(challengerAddr);
        vm.expectRevert(IncorrectBond.selector);
        game.bisect{ value: value - 1 }(b.last, true, bytes32("x"));
        vm.expectRevert(IncorrectBond.selector);
        game.bisect{ value: value + 1 }(b.last, true, bytes32("x"));
        vm.stopPrank();
        Claim memory c = _claim(View(false, 0, 0));
        vm.prank(claimantAddr);
        vm.expectRevert(IncorrectBond.selector);
        factory.propose{ value: CLAIM_BOND - 1 }(c, "graph proof");
    }

    function test_resolvingTwiceAndCreditTwice_revert() public {
        _fullGame(true, 1, 2);
        vm.expectRevert(GameOver.selector);
        game.claimTimeout();
        Bisection memory b = game.bisection();
        uint256 value = game.bond(9);
        vm.prank(claimantAddr);
        vm.expectRevert(GameOver.selector);
        game.step{ value: value }(b.last, true, "witness");
        vm.expectRevert(NoCredit.selector);
        game.claimCredit(challengerAddr);
        vm.expectRevert(NoCredit.selector);
        game.claimCredit(claimantAddr);
    }

    function test_reentrantReceiverIsPaidOnce() public {
        ReentrantReceiver r = new ReentrantReceiver();
        vm.deal(address(r), 10 ether);
        claimId = _propose(View(true, 3, 3));
        r.challenge(factory, claimId, _claim(View(true, 3, 3)));
        game = r.game();
        Bisection memory b = game.bisection();
        r.bisect{ value: game.bond(1) }(b.last, true, _p1State(View(false, 0, 0), b.last.move(true).traceIndex(3) + 1));
        assertEq(game.challenger(), address(r), "the contract is the challenger");
        // the claimant never answers: the challenger wins by clock
        vm.warp(game.deadline() + 1);
        game.claimTimeout();
        uint256 total = game.bond(1);
        assertEq(game.credit(address(r)), total, "credit");
        assertEq(factory.credit(address(r)), CLAIM_BOND, "claim bond credited by the registry");
        r.setRefuse(true);
        vm.expectRevert(BondTransferFailed.selector);
        game.claimCredit(address(r));
        assertEq(game.credit(address(r)), total, "a refused payment keeps the credit");
        r.setRefuse(false);
        // other money in the game (as if it held another creditor's funds) must stay there
        vm.deal(address(game), total + 5 ether);
        game.claimCredit(address(r));
        assertEq(r.received(), total, "paid once");
        assertEq(r.reentries(), 1, "one receive");
        assertTrue(!r.reentrySucceeded(), "re-entering claimCredit failed");
        assertEq(address(game).balance, 5 ether, "only the credit left the game");
    }

    function test_registry_windowAndFinality() public {
        View memory honest = View(false, 0, 0);
        Claim memory c = _claim(honest);
        vm.expectRevert(UnknownClaim.selector);
        factory.finalize(0);
        game = _create(honest);
        vm.expectRevert(ChallengeWindowOpen.selector);
        factory.finalize(claimId);
        vm.warp(factory.windowEnd(claimId));
        vm.prank(address(0xC4A3));
        vm.expectRevert(ChallengeWindowClosed.selector);
        factory.challenge(claimId, c, "graph proof");
        // the game is still running (its challenger's clock ran out, but nobody said so yet): the
        // claim cannot become final
        vm.expectRevert(GamesInProgress.selector);
        factory.finalize(claimId);
        game.claimTimeout();
        assertEq(uint256(game.outcome()), uint256(Outcome.ClaimantWins), "claimant won");
        factory.finalize(claimId);
        vm.expectRevert(ClaimAlreadyFinal.selector);
        factory.finalize(claimId);
        assertEq(factory.credit(claimantAddr), CLAIM_BOND, "claim bond back");
        vm.expectRevert(UnknownClaim.selector);
        factory.onGameResolved(true);
        factory.claimCredit(claimantAddr);
        vm.expectRevert(NoCredit.selector);
        factory.claimCredit(claimantAddr);
        // the same (true) content may be proposed again: a new claim
        assertEq(_propose(honest), claimId + 1, "a new id");
        assertEq(factory.claimCount(), 2, "two claims");
    }
}
