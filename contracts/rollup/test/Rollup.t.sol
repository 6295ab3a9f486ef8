// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Test } from "../../dispute/test/lib/Test.sol";
import { MockPhaseLink } from "../../dispute/test/mocks/Mocks.sol";
import { BatchInbox } from "../BatchInbox.sol";
import { ModelRegistry } from "../ModelRegistry.sol";
import { OutputOracle } from "../OutputOracle.sol";
import "../RollupErrors.sol";

/// @notice Pays out to itself by re-entering `withdraw` from its receive hook.
contract ReentrantWithdrawer {
    OutputOracle internal immutable oracle;
    uint256 public entries;

    constructor(OutputOracle _oracle) {
        oracle = _oracle;
    }

    function go() external {
        oracle.withdraw();
    }

    receive() external payable {
        entries++;
        if (entries == 1) {
            try oracle.withdraw() { } catch { }
        }
    }
}

/// @title RollupTest
/// @notice The rollup's L1 contracts: inbox access, model registration, outputs with bonds,
///         finalization in order, disputes that block finalization and deletions that cascade.
contract RollupTest is Test {
    bytes32 internal constant MODEL = keccak256("model");
    address internal constant PROPOSER = address(0xA11CE);
    address internal constant CHALLENGER = address(0xB0B);
    address internal constant AUTHORITY = address(0xD15);
    uint256 internal constant BOND = 1 ether;
    uint64 internal constant WINDOW = 1 days;

    OutputOracle internal oracle;
    ModelRegistry internal registry;

    function setUp() public {
        vm.warp(1_000_000);
        oracle = new OutputOracle(PROPOSER, BOND, WINDOW);
        oracle.setDisputeAuthority(AUTHORITY);
        registry = new ModelRegistry(new MockPhaseLink(MODEL), 0.01 ether);
        vm.deal(PROPOSER, 100 ether);
        vm.deal(CHALLENGER, 100 ether);
    }

    function _propose(uint64 _l2Block) internal returns (uint256) {
        vm.prank(PROPOSER);
        return oracle.propose{ value: BOND }(_l2Block, uint64(block.timestamp), bytes32(uint256(_l2Block)),
            keccak256(abi.encode("state", _l2Block)), "");
    }

    // ---- inbox ----

    function test_inboxAcceptsOnlyTheBatcher() public {
        BatchInbox inbox = new BatchInbox(address(this));
        (bool ok,) = address(inbox).call(hex"00deadbeef");
        assertTrue(ok, "batcher posts");
        vm.prank(CHALLENGER);
        (ok,) = address(inbox).call(hex"00deadbeef");
        assertTrue(!ok, "anyone else reverts");
    }

    // ---- model registry ----

    function test_registerModelOnceWithFeeAndProof() public {
        vm.roll(42);
        registry.register{ value: 0.01 ether }(MODEL, "ok", "http://127.0.0.1:9/models");
        assertTrue(registry.isRegistered(MODEL, 42), "usable from its block");
        assertTrue(!registry.isRegistered(MODEL, 41), "not before");
        assertEq(registry.graphOf(MODEL).nTensors, 8, "graph stored");
        assertEq(registry.modelCount(), 1, "listed");
        vm.expectRevert(ModelAlreadyRegistered.selector);
        registry.register{ value: 0.01 ether }(MODEL, "ok", "http://x");
    }

    function test_registerRejections() public {
        vm.expectRevert(IncorrectValue.selector);
        registry.register{ value: 0 }(MODEL, "ok", "http://x");
        vm.expectRevert(InvalidModelUri.selector);
        registry.register{ value: 0.01 ether }(MODEL, "ok", "");
        vm.expectRevert();
        registry.register{ value: 0.01 ether }(MODEL, "bad", "http://x");
        vm.expectRevert(ModelNotRegistered.selector);
        registry.graphOf(MODEL);
        assertTrue(!registry.isRegistered(MODEL, type(uint256).max), "nothing registered");
    }

    // ---- outputs ----

    function test_proposeRules() public {
        vm.expectRevert(NotProposer.selector);
        vm.prank(CHALLENGER);
        oracle.propose{ value: BOND }(1, 0, 0, 0, "");
        vm.startPrank(PROPOSER);
        vm.expectRevert(IncorrectValue.selector);
        oracle.propose{ value: BOND - 1 }(1, 0, 0, 0, "");
        vm.expectRevert(OutputNotAfterLast.selector);
        oracle.propose{ value: BOND }(0, 0, 0, 0, "");
        vm.expectRevert(OutputFromTheFuture.selector);
        oracle.propose{ value: BOND }(1, uint64(block.timestamp + 1), 0, 0, "");
        oracle.propose{ value: BOND }(5, 0, 0, 0, "");
        vm.expectRevert(OutputNotAfterLast.selector);
        oracle.propose{ value: BOND }(5, 0, 0, 0, "");
        vm.stopPrank();
    }

    function test_finalizeInOrderAfterTheWindowAndWithdrawBonds() public {
        _propose(10);
        vm.warp(block.timestamp + 100);
        _propose(20);
        vm.expectRevert(OutputNotFinalizable.selector);
        oracle.finalize(0);
        vm.warp(block.timestamp + WINDOW - 100);
        oracle.finalize(0);
        assertTrue(oracle.isFinal(0) && !oracle.isFinal(1), "first final only");
        vm.expectRevert(OutputNotFinalizable.selector);
        oracle.finalize(1);
        vm.warp(block.timestamp + 100);
        oracle.finalize(1);
        assertEq(oracle.credit(PROPOSER), 2 * BOND, "bonds back");
        uint256 before = PROPOSER.balance;
        vm.prank(PROPOSER);
        oracle.withdraw();
        assertEq(PROPOSER.balance, before + 2 * BOND, "paid");
        vm.expectRevert(NothingToWithdraw.selector);
        vm.prank(PROPOSER);
        oracle.withdraw();
    }

    function test_runningDisputeBlocksFinalization() public {
        _propose(10);
        vm.prank(AUTHORITY);
        oracle.openDispute(0, 0);
        vm.warp(block.timestamp + WINDOW + 1);
        vm.expectRevert(OutputNotFinalizable.selector);
        oracle.finalize(0);
        vm.prank(AUTHORITY);
        oracle.closeDispute(0, 0, false, CHALLENGER);
        oracle.finalize(0);
        assertEq(oracle.credit(CHALLENGER), 0, "nothing for a failed challenge");
    }

    function test_lostDisputeDeletesThatOutputAndLaterOnesAndOpensProposing() public {
        _propose(10);
        _propose(20);
        _propose(30);
        vm.prank(AUTHORITY);
        oracle.openDispute(1, 1);
        vm.prank(AUTHORITY);
        oracle.openDispute(2, 2);
        vm.prank(AUTHORITY);
        oracle.closeDispute(1, 1, true, CHALLENGER);
        assertEq(oracle.outputCount(), 1, "outputs 1 and 2 deleted");
        assertEq(oracle.credit(CHALLENGER), 2 * BOND, "their bonds to the challenger");
        assertTrue(oracle.permissionless(), "proposing is open");
        // anyone bonded proposes now; indices are reused with new nonces
        vm.prank(CHALLENGER);
        uint256 i = oracle.propose{ value: BOND }(20, uint64(block.timestamp), 0, 0, "");
        assertEq(i, 1, "index reused");
        assertEq(oracle.output(1).nonce, 3, "new nonce");
        // the stale dispute on the deleted output 2 closes as a no-op
        vm.prank(AUTHORITY);
        oracle.closeDispute(2, 2, true, CHALLENGER);
        assertEq(oracle.outputCount(), 2, "unchanged");
        // and a stale nonce cannot open a dispute on the new output 1
        vm.expectRevert(UnknownOutput.selector);
        vm.prank(AUTHORITY);
        oracle.openDispute(1, 1);
    }

    function test_disputeRules() public {
        _propose(10);
        vm.expectRevert(NotDisputeAuthority.selector);
        oracle.openDispute(0, 0);
        vm.expectRevert(NotDisputeAuthority.selector);
        oracle.closeDispute(0, 0, true, CHALLENGER);
        vm.expectRevert(NotDisputeAuthority.selector);
        oracle.setDisputeAuthority(CHALLENGER);
        vm.warp(block.timestamp + WINDOW);
        vm.expectRevert(ChallengeWindowOver.selector);
        vm.prank(AUTHORITY);
        oracle.openDispute(0, 0);
        oracle.finalize(0);
        vm.expectRevert(OutputAlreadyFinal.selector);
        vm.prank(AUTHORITY);
        oracle.openDispute(0, 0);
    }

    function test_withdrawIsSafeAgainstReentrancy() public {
        ReentrantWithdrawer r = new ReentrantWithdrawer(oracle);
        _propose(10);
        vm.prank(AUTHORITY);
        oracle.openDispute(0, 0);
        vm.prank(AUTHORITY);
        oracle.closeDispute(0, 0, true, address(r));
        r.go();
        assertEq(address(r).balance, BOND, "paid once");
        assertEq(r.entries(), 1, "one receive");
        assertEq(oracle.credit(address(r)), 0, "credit cleared");
    }

    function test_recordsProveAgainstTheInferenceRoot() public {
        bytes memory recA = abi.encodePacked(keccak256("model"), keccak256("in"), keccak256("out"), bytes32(0),
            uint256(0), uint256(1000));
        bytes memory recB = abi.encodePacked(keccak256("model"), keccak256("in2"), keccak256("out2"), bytes32(0),
            uint256(1), uint256(1000));
        vm.prank(PROPOSER);
        oracle.propose{ value: BOND }(1, 0, 0, 0, bytes.concat(recA, recB));
        bytes32 a = keccak256(recA);
        bytes32[] memory path = new bytes32[](1);
        path[0] = keccak256(recB);
        assertEq(oracle.output(0).inferenceRoot, keccak256(abi.encodePacked(a, path[0])), "root computed on chain");
        assertTrue(oracle.hasRecord(0, a, 0, path), "record 0");
        assertTrue(!oracle.hasRecord(0, a, 1, path), "not at index 1");
        bytes32 z = keccak256(abi.encodePacked(bytes32(0), bytes32(0)));
        assertEq(oracle.inferenceRootOf(""), z, "no record: depth 1, as tree_depth(0)");
        vm.expectRevert(InvalidRecords.selector);
        oracle.inferenceRootOf(new bytes(191));
    }
}
