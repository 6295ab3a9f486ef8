// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Test } from "./lib/Test.sol";
import { MockPhaseLink, MockStepVerifier } from "./mocks/Mocks.sol";
import { DisputeGameFactory } from "../DisputeGameFactory.sol";
import { InferenceDisputeGame } from "../InferenceDisputeGame.sol";
import { LibMerkle } from "../lib/LibMerkle.sol";
import { LibPosition, Position } from "../lib/LibPosition.sol";
import { Bisection, Claim, OpenStepsData, Outcome, Phase, Role } from "../lib/Types.sol";
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

/// @title InferenceDisputeGameTest
/// @notice Full games between an honest player and a liar (both roles, fuzzed divergence points),
///         the attacks the rules must reject, clocks, bonds, credit, the factory, sizes and gas.
contract InferenceDisputeGameTest is Test {
    bytes32 internal constant MODEL = keccak256("model address");
    uint64 internal constant CLOCK = 3 days;
    uint64 internal constant EXT = 3 hours;
    uint256 internal constant CLAIM_BOND = 1 ether;
    uint64 internal constant WINDOW = 7 days;
    uint256 internal constant N = 5; // nodes; and steps per node
    uint256 internal constant T = 8; // tensors

    MockStepVerifier internal verifier;
    MockPhaseLink internal link;
    InferenceDisputeGame internal impl;
    DisputeGameFactory internal factory;
    InferenceDisputeGame internal game;

    address internal claimantAddr = address(0xC1A1);
    address internal challengerAddr = address(0xC4A1);

    /// @notice A player's view: lies (if at all) from node `lieNode`'s output and, in that node's
    ///         VM run, from step `lieStep` (1..N; N: only the final state differs).
    struct View {
        bool liar;
        uint256 lieNode;
        uint256 lieStep;
    }

    mapping(uint256 => View) internal views; // by Role
    mapping(uint256 => address) internal addrOf; // by Role
    uint256 internal claimId; // the last claim `_create` proposed
    uint256 internal openNode; // the node `_atOpen` reached

    function setUp() public {
        verifier = new MockStepVerifier();
        link = new MockPhaseLink(MODEL);
        impl = new InferenceDisputeGame(verifier, link, CLOCK, EXT, CLAIM_BOND, 11, 10);
        factory = new DisputeGameFactory(impl, WINDOW);
        vm.deal(claimantAddr, 1000 ether);
        vm.deal(challengerAddr, 1000 ether);
        addrOf[0] = claimantAddr;
        addrOf[1] = challengerAddr;
        vm.warp(1_000_000);
        // honest VM transitions of every node
        for (uint256 k = 0; k < N; k++) {
            for (uint256 j = 1; j <= N; j++) {
                verifier.setNext(_vmState(View(false, 0, 0), k, j - 1), _vmState(View(false, 0, 0), k, j));
            }
        }
    }

    ////////////////////////////////////////////////////////////////
    //                      The players' data                     //
    ////////////////////////////////////////////////////////////////

    function _root(View memory _v, uint256 _t) internal pure returns (bytes32) {
        if (_v.liar && _t > _v.lieNode) return keccak256(abi.encode("lie", _t));
        return keccak256(abi.encode("tensor", _t));
    }

    /// @notice Leaves of the tensor table after `_i` nodes.
    function _leaves(View memory _v, uint256 _i) internal pure returns (bytes32[] memory l_) {
        l_ = new bytes32[](T);
        for (uint256 t = 0; t <= _i && t <= N; t++) {
            l_[t] = _root(_v, t);
        }
    }

    function _tableRoot(View memory _v, uint256 _i) internal pure returns (bytes32) {
        return LibMerkle.merkleRoot(_leaves(_v, _i), 3);
    }

    function _path(bytes32[] memory _l, uint256 _idx) internal pure returns (bytes32[] memory p_) {
        uint256 d = LibMerkle.treeDepth(_l.length);
        p_ = new bytes32[](d);
        bytes32[] memory level = _l;
        for (uint256 h = 0; h < d; h++) {
            p_[h] = level[_idx ^ 1];
            bytes32[] memory up = new bytes32[](level.length / 2);
            for (uint256 i = 0; i < up.length; i++) {
                up[i] = LibMerkle.hashPair(level[2 * i], level[2 * i + 1]);
            }
            level = up;
            _idx >>= 1;
        }
    }

    function _p1State(View memory _v, uint256 _i) internal view returns (bytes32) {
        if (_i > N) _i = N;
        return impl.stateHash(MODEL, _i, _tableRoot(_v, _i));
    }

    function _regions(View memory _v, uint256 _k, bool _final) internal pure returns (bytes32[] memory r_) {
        r_ = new bytes32[](4);
        r_[0] = _root(_v, _k);
        r_[1] = keccak256("constant 6");
        r_[2] = _final ? _root(_v, _k + 1) : keccak256("zero output region");
    }

    function _finalEncoding(View memory _v, uint256 _k) internal view returns (bytes memory s_) {
        s_ = new bytes(800);
        bytes32 ctx = link.contextHash(_k);
        bytes32 mem = LibMerkle.merkleRoot(_regions(_v, _k, true), 2);
        assembly {
            mstore(add(s_, 0x20), ctx)
            mstore(add(s_, 0x40), mem)
            mstore(add(s_, 0x60), 5) // step = N
            mstore(add(s_, 0x80), 1) // HALTED
        }
    }

    /// @notice State `_j` of node `_k`'s VM run in a view (padded with the final state).
    function _vmState(View memory _v, uint256 _k, uint256 _j) internal view returns (bytes32 s_) {
        bool lies = _v.liar && _k == _v.lieNode;
        bool afterLie = _v.liar && _k > _v.lieNode; // inputs already false: nothing agrees
        if (_j >= N) return keccak256(_finalEncoding(_v, _k));
        if (afterLie || (lies && _j >= _v.lieStep)) return keccak256(abi.encode("lie vm", _k, _j));
        s_ = impl.initialStateHash(link.contextHash(_k), LibMerkle.merkleRoot(_regions(View(false, 0, 0), _k, false), 2));
        for (uint256 i = 1; i <= _j; i++) {
            s_ = keccak256(abi.encode(s_, _k, i));
        }
    }

    function _claim(View memory _v) internal view returns (Claim memory c_) {
        c_.modelAddress = MODEL;
        c_.batch = 1;
        c_.inputRoots = new bytes32[](1);
        c_.inputRoots[0] = _root(_v, 0);
        c_.outputRoots = new bytes32[](1);
        c_.outputRoots[0] = _root(_v, 5);
        c_.finalTensorsRoot = _tableRoot(_v, N);
        c_.finalState = impl.stateHash(MODEL, N, c_.finalTensorsRoot);
        c_.outputProofs = new bytes32[][](1);
        c_.outputProofs[0] = _path(_leaves(_v, N), 5);
    }

    function _openData(View memory _v, uint256 _k) internal view returns (OpenStepsData memory d_) {
        bytes32[] memory pre = _leaves(_v, _k);
        d_.preTensorsRoot = LibMerkle.merkleRoot(_leaves(_v, _k), 3);
        d_.inputRoots = new bytes32[](1);
        d_.inputRoots[0] = _root(_v, _k);
        d_.inputProofs = new bytes32[][](1);
        d_.inputProofs[0] = _path(pre, _k);
        d_.outputRoots = new bytes32[](1);
        d_.outputRoots[0] = _root(_v, _k + 1);
        d_.outputProofs = new bytes32[][](1);
        d_.outputProofs[0] = _path(pre, _k + 1);
        d_.finalState = _finalEncoding(_v, _k);
        bytes32[] memory fin = _regions(_v, _k, true);
        d_.finalProof = new bytes32[](2);
        d_.finalProof[0] = fin[3];
        d_.finalProof[1] = LibMerkle.hashPair(fin[0], fin[1]);
        d_.link = "node proof";
    }

    /// @notice A step witness in the layout of `docs/fraud_vm.md` (header, pre-state, context;
    ///         no words): the mock verifier reads nothing else. `_words` > 0 makes it a forgery.
    function _witness(uint256 _k, uint16 _words) internal view returns (bytes memory) {
        return abi.encodePacked(uint16(2), _words, uint16(0), new bytes(800), link.context(_k));
    }

    ////////////////////////////////////////////////////////////////
    //                         Game driver                        //
    ////////////////////////////////////////////////////////////////

    /// @notice Propose the claimant's claim and open a game on it for `challengerAddr`.
    function _create(View memory _claimantView) internal returns (InferenceDisputeGame g_) {
        claimId = _propose(_claimantView);
        g_ = _challenge(claimId, challengerAddr, _claimantView);
    }

    function _propose(View memory _claimantView) internal returns (uint256 id_) {
        views[0] = _claimantView;
        Claim memory c = _claim(_claimantView);
        vm.prank(claimantAddr);
        id_ = factory.propose{ value: CLAIM_BOND }(c, "graph proof");
    }

    function _challenge(uint256 _id, address _who, View memory _claimantView) internal returns (InferenceDisputeGame) {
        Claim memory c = _claim(_claimantView);
        vm.prank(_who);
        return InferenceDisputeGame(factory.challenge(_id, c, "graph proof"));
    }

    /// @notice The state a view holds at the claim of position `_p` in the current phase.
    function _own(View memory _v, Position _p) internal view returns (bytes32) {
        Bisection memory b = game.bisection();
        uint256 s = uint256(_p.traceIndex(b.maxDepth)) + 1;
        return game.phase() == Phase.Nodes ? _p1State(_v, s) : _vmState(_v, game.nodeIndex(), s);
    }

    /// @notice One move of the player to move, following its own view (attack what differs).
    function _move() internal returns (uint256 gas_) {
        Role r = game.mover();
        View memory v = views[uint256(r)];
        Bisection memory b = game.bisection();
        bool attack = b.lastHash != _own(v, b.last);
        uint256 value = game.bond(game.moves() + 1);
        address who = addrOf[uint256(r)];
        uint256 before;
        // everything is computed before the prank, which applies to the next call only
        if (b.last.depth() < b.maxDepth) {
            bytes32 claim = _own(v, b.last.move(attack));
            vm.prank(who);
            before = gasleft();
            game.bisect{ value: value }(b.last, attack, claim);
        } else if (game.phase() == Phase.Nodes) {
            Position interval = attack ? b.last : Position.wrap(Position.unwrap(b.last) | 1);
            OpenStepsData memory d = _openData(v, interval.indexAtDepth());
            vm.prank(who);
            before = gasleft();
            game.openSteps{ value: value }(b.last, attack, d);
        } else {
            bytes memory w = _witness(game.nodeIndex(), 0);
            vm.prank(who);
            before = gasleft();
            game.step{ value: value }(b.last, attack, w);
        }
        gas_ = before - gasleft();
    }

    function _playOut() internal {
        for (uint256 i = 0; i < 64 && game.outcome() == Outcome.InProgress; i++) {
            vm.warp(block.timestamp + 1 hours);
            _move();
        }
    }

    function _totalBonds(uint256 _moves) internal view returns (uint256 t_) {
        for (uint256 m = 1; m <= _moves; m++) {
            t_ += game.bond(m);
        }
    }

    ////////////////////////////////////////////////////////////////
    //                        Full games                          //
    ////////////////////////////////////////////////////////////////

    function _fullGame(bool _claimantLies, uint256 _lieNode, uint256 _lieStep) internal {
        View memory liar = View(true, _lieNode, _lieStep);
        View memory honest = View(false, 0, 0);
        game = _create(_claimantLies ? liar : honest);
        views[1] = _claimantLies ? honest : liar;
        _playOut();
        Outcome expected = _claimantLies ? Outcome.ChallengerWins : Outcome.ClaimantWins;
        assertEq(uint256(game.outcome()), uint256(expected), "the honest player wins");
        assertEq(game.nodeIndex(), _lieNode, "phase 1 pins the first wrong node");
        assertEq(game.pinnedStep(), _lieStep - 1, "phase 2 pins the first wrong step");
        // D1 + 1 + D2 + 1 moves: ceil(log2 5) + ceil(log2 5) + 2
        assertEq(game.moves(), 8, "rounds");
        address winner = _claimantLies ? challengerAddr : claimantAddr;
        uint256 total = _totalBonds(8);
        assertEq(game.credit(winner), total, "winner's credit is every move bond");
        assertEq(address(game).balance, total, "the game holds the bonds");
        uint256 before = winner.balance;
        game.claimCredit(winner);
        assertEq(winner.balance - before, total, "paid");
        assertEq(address(game).balance, 0, "nothing left");
        // the claim bond: to the challenger who rejected the claim, or back to the claimant once final
        if (_claimantLies) {
            assertEq(uint256(factory.claimRecord(claimId).status), 1, "rejected");
            assertEq(factory.credit(challengerAddr), CLAIM_BOND, "claim bond to the challenger");
        } else {
            assertEq(uint256(factory.claimRecord(claimId).status), 0, "pending until the window ends");
            vm.warp(factory.windowEnd(claimId));
            factory.finalize(claimId);
            assertEq(factory.credit(claimantAddr), CLAIM_BOND, "claim bond back to the claimant");
        }
        before = winner.balance;
        factory.claimCredit(winner);
        assertEq(winner.balance - before, CLAIM_BOND, "claim bond paid");
        assertEq(address(factory).balance, 0, "factory holds nothing");
    }

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

    ////////////////////////////////////////////////////////////////
    //                          Attacks                           //
    ////////////////////////////////////////////////////////////////

    function _started() internal returns (Bisection memory b_) {
        game = _create(View(true, 3, 3));
        views[1] = View(false, 0, 0);
        b_ = game.bisection();
    }

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

    function test_timeoutBeforeDeadline_reverts() public {
        _started();
        vm.warp(game.deadline() - 1);
        vm.expectRevert(ClockNotExpired.selector);
        game.claimTimeout();
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

    ////////////////////////////////////////////////////////////////
    //                    OpenSteps rejections                    //
    ////////////////////////////////////////////////////////////////

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

    ////////////////////////////////////////////////////////////////
    //                     Claims and factory                     //
    ////////////////////////////////////////////////////////////////

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

    ////////////////////////////////////////////////////////////////
    //                      Sizes and gas                         //
    ////////////////////////////////////////////////////////////////

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
