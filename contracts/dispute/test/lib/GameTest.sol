// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Test } from "./Test.sol";
import { MockPhaseLink, MockStepVerifier } from "../mocks/Mocks.sol";
import { DisputeGameFactory } from "../../DisputeGameFactory.sol";
import { InferenceDisputeGame } from "../../InferenceDisputeGame.sol";
import { LibMerkle } from "../../lib/LibMerkle.sol";
import { LibPosition, Position } from "../../lib/LibPosition.sol";
import { Bisection, Claim, OpenStepsData, Outcome, Phase, Role } from "../../lib/Types.sol";

/// @title GameTest
/// @notice The shared fixture of the dispute game's forge suites: a mock model (`MockPhaseLink`: 5 nodes,
///         5 steps each) and step verifier, the factory and game implementation, two players whose
///         views (honest, or lying from a chosen node and step) drive every move, and full games.
///         The suites: `InferenceDisputeGameFlow.t.sol` (full games, registry, sizes and gas),
///         `InferenceDisputeGameAttacks.t.sol` (moves the rules reject), `InferenceDisputeGameClocks.t.sol`
///         (clocks, bonds and credit).
abstract contract GameTest is Test {
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

    function setUp() public virtual {
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
    //                     The players' data                      //
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
    //                        Game driver                         //
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
    //                         Full games                         //
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

    function _started() internal returns (Bisection memory b_) {
        game = _create(View(true, 3, 3));
        views[1] = View(false, 0, 0);
        b_ = game.bisection();
    }
}
