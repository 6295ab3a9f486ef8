// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { OutputOracle } from "../../rollup/OutputOracle.sol";
import { UnknownOutput } from "../../rollup/RollupErrors.sol";
import "../BridgeErrors.sol";
import { L2ToL1MessagePasser } from "../L2ToL1MessagePasser.sol";
import { Portal } from "../Portal.sol";
import { BridgeTest, VmBridge } from "./BridgeTest.t.sol";
import { BridgeVectors as V } from "./BridgeVectors.t.sol";

/// @notice Deposits from a contract (its L2 `from` is aliased).
contract DepositingContract {
    function deposit(Portal _portal, address _to) external payable {
        _portal.depositTransaction{ value: msg.value }(_to, 0, 50_000, hex"");
    }
}

/// @notice A withdrawal target that records the call, or reverts, or re-enters the Portal.
contract Target {
    Portal internal portal;
    uint256 public calls;
    address public seenL2Sender;
    bool public shouldRevert;
    bool public reenter;
    bytes public reentryError;
    Portal.Withdrawal internal again;

    constructor(Portal _portal) {
        portal = _portal;
    }

    function setRevert(bool _r) external {
        shouldRevert = _r;
    }

    function setReenter(Portal.Withdrawal calldata _w) external {
        reenter = true;
        again = _w;
    }

    /// @dev Plain ETH (no calldata) is accepted silently; withdrawals with data reach `fallback`.
    receive() external payable { }

    fallback() external payable {
        if (shouldRevert) revert("no");
        calls++;
        seenL2Sender = portal.l2Sender();
        if (reenter) {
            try portal.finalizeWithdrawal(again) { }
            catch (bytes memory err) {
                reentryError = err;
            }
        }
    }
}

/// @title PortalTest
/// @notice Deposits (limits, event, aliasing, per-block gas, ETH locked) and withdrawals proven
///         against a real `OutputOracle` output whose state root is the py-trie state of
///         `BridgeVectors` (prove, finalize after the window, deleted outputs, double finalize,
///         forged proofs, failed calls, re-entrancy, too little gas).
contract PortalTest is BridgeTest {
    address internal constant PROPOSER = address(0xA11CE0);
    address internal constant AUTHORITY = address(0xD15);
    uint256 internal constant BOND = 1 ether;
    uint64 internal constant WINDOW = 1 days;
    bytes32 internal constant DEPOSITED_TOPIC =
        keccak256("TransactionDeposited(uint256,address,address,uint256,uint256,uint64,bytes)");

    OutputOracle internal oracle;
    Portal internal portal;

    function setUp() public {
        vm.warp(1_000_000);
        oracle = new OutputOracle(PROPOSER, BOND, WINDOW);
        oracle.setDisputeAuthority(AUTHORITY);
        portal = new Portal(oracle);
        vm.deal(PROPOSER, 100 ether);
        vm.deal(address(this), 100 ether);
    }

    ////////////////////////////////////////////////////////////////
    //                         Deposits                           //
    ////////////////////////////////////////////////////////////////

    function test_deposit_emitsAndLocksEth() public {
        address user = address(0x5EED);
        vm.deal(user, 10 ether);
        vmb.recordLogs();
        vmb.prank(user, user);
        portal.depositTransaction{ value: 3 ether }(address(0xCAFE), 1 ether, 100_000, hex"abcd");
        VmBridge.Log[] memory logs = vmb.getRecordedLogs();
        assertEq(logs.length, 1, "one event");
        assertEq(logs[0].topics[0], DEPOSITED_TOPIC, "TransactionDeposited");
        assertEq(uint256(logs[0].topics[1]), 0, "nonce 0");
        assertEq(address(uint160(uint256(logs[0].topics[2]))), user, "from = the EOA");
        assertEq(address(uint160(uint256(logs[0].topics[3]))), address(0xCAFE), "to");
        (uint256 mint, uint256 value, uint64 gasLimit, bytes memory data) =
            abi.decode(logs[0].data, (uint256, uint256, uint64, bytes));
        assertEq(mint, 3 ether, "mint = msg.value");
        assertEq(value, 1 ether, "value");
        assertEq(gasLimit, 100_000, "gas limit");
        assertEq(data, hex"abcd", "data");
        assertEq(address(portal).balance, 3 ether, "ETH locked in the Portal");
        assertEq(portal.depositCount(), 1, "count");
    }

    function test_deposit_nonceCountsUp_andReceiveDeposits() public {
        vmb.recordLogs();
        portal.depositTransaction(address(1), 0, 21_000, hex"");
        (bool ok,) = address(portal).call{ value: 1 ether }("");
        assertTrue(ok, "receive deposits");
        VmBridge.Log[] memory logs = vmb.getRecordedLogs();
        assertEq(uint256(logs[1].topics[1]), 1, "second nonce");
        assertEq(portal.depositCount(), 2, "count");
    }

    function test_deposit_fromContractIsAliased() public {
        DepositingContract c = new DepositingContract();
        vm.deal(address(0x5EED), 1 ether);
        vmb.recordLogs();
        vmb.prank(address(0x5EED), address(0x5EED));
        c.deposit{ value: 1 }(portal, address(7));
        VmBridge.Log[] memory logs = vmb.getRecordedLogs();
        address expected;
        unchecked {
            expected = address(uint160(address(c)) + uint160(0x1111000000000000000000000000000000001111));
        }
        assertEq(address(uint160(uint256(logs[0].topics[2]))), expected, "aliased from");
    }

    function testFuzz_alias(address _sender, address _origin) public view {
        address got = portal.depositSender(_sender, _origin);
        if (_sender == _origin) assertEq(got, _sender, "EOA unaliased");
        else {
            unchecked {
                assertEq(got, address(uint160(_sender) + portal.ALIAS_OFFSET()), "aliased (wraps mod 2^160)");
            }
        }
    }

    function testFuzz_deposit_gasLimitBounds(uint64 _gas) public {
        if (_gas < 21_000) vm.expectRevert(GasLimitTooLow.selector);
        else if (_gas > 2_000_000) vm.expectRevert(GasLimitTooHigh.selector);
        portal.depositTransaction(address(1), 0, _gas, hex"");
    }

    function testFuzz_deposit_dataBound(uint256 _len) public {
        _len = bound(_len, 32_700, 33_000);
        if (_len > 32_768) vm.expectRevert(DepositDataTooLarge.selector);
        portal.depositTransaction(address(1), 0, 21_000, new bytes(_len));
    }

    function test_deposit_perBlockGasCap() public {
        vm.roll(100);
        for (uint256 i = 0; i < 4; i++) {
            portal.depositTransaction(address(1), 0, 2_000_000, hex"");
        }
        vm.expectRevert(BlockDepositGasExceeded.selector);
        portal.depositTransaction(address(1), 0, 21_000, hex"");
        vm.roll(101); // a new L1 block starts from zero
        portal.depositTransaction(address(1), 0, 2_000_000, hex"");
        assertEq(portal.depositBlockGas(), 2_000_000, "counted for block 101");
    }

    function testFuzz_deposit_perBlockGasNeverExceeded(uint64[8] memory _gas) public {
        uint256 total = 0;
        for (uint256 i = 0; i < _gas.length; i++) {
            uint64 g = uint64(bound(_gas[i], 21_000, 2_000_000));
            if (total + g > 8_000_000) {
                vm.expectRevert(BlockDepositGasExceeded.selector);
                portal.depositTransaction(address(1), 0, g, hex"");
            } else {
                portal.depositTransaction(address(1), 0, g, hex"");
                total += g;
            }
            assertEq(portal.depositBlockGas(), total, "tracked");
        }
    }

    ////////////////////////////////////////////////////////////////
    //                        Withdrawals                         //
    ////////////////////////////////////////////////////////////////

    function _w() internal pure returns (Portal.Withdrawal memory) {
        return Portal.Withdrawal(V.W_NONCE, V.W_SENDER, V.W_TARGET, V.W_VALUE, V.W_GAS_LIMIT, V.W_DATA);
    }

    function _propose(bytes32 _stateRoot) internal returns (uint256 index_) {
        uint64 n = uint64(oracle.outputCount() + 1) * 10;
        vm.prank(PROPOSER);
        index_ = oracle.propose{ value: BOND }(n, uint64(block.timestamp), keccak256(abi.encode(n)), _stateRoot, "");
    }

    function _prove(Portal.Withdrawal memory _wd, uint256 _index) internal {
        portal.proveWithdrawal(_wd, _index, V.accountProof(), V.storageProof());
    }

    function _fund() internal {
        portal.depositTransaction{ value: 5 ether }(address(1), 0, 21_000, hex"");
    }

    function test_withdrawalHash_matchesTheMessagePasser() public {
        L2ToL1MessagePasser passer = new L2ToL1MessagePasser();
        vm.deal(V.W_SENDER, 2 ether);
        vm.prank(V.W_SENDER);
        passer.initiateWithdrawal{ value: V.W_VALUE }(V.W_TARGET, V.W_GAS_LIMIT, V.W_DATA);
        bytes32 h = portal.hashWithdrawal(_w());
        assertTrue(passer.sentMessages(h), "recorded under the Portal's hash");
        assertEq(passer.messageNonce(), 1, "nonce counts up");
        assertEq(portal.storageSlot(h), keccak256(abi.encode(h, uint256(0))), "slot");
    }

    function test_withdrawal_roundTrip() public {
        _fund();
        uint256 index = _propose(V.STATE_ROOT);
        _prove(_w(), index);
        vm.expectRevert(OutputNotFinal.selector);
        portal.finalizeWithdrawal(_w());
        vm.warp(block.timestamp + WINDOW);
        oracle.finalize(index);
        uint256 before = V.W_TARGET.balance;
        portal.finalizeWithdrawal(_w());
        assertEq(V.W_TARGET.balance - before, V.W_VALUE, "value released");
        assertEq(address(portal).balance, 5 ether - V.W_VALUE, "from the locked ETH");
        assertTrue(portal.finalizedWithdrawals(portal.hashWithdrawal(_w())), "finalized");
        vm.expectRevert(AlreadyFinalized.selector);
        portal.finalizeWithdrawal(_w());
        vm.expectRevert(AlreadyFinalized.selector);
        _prove(_w(), index);
    }

    function test_finalize_unproven() public {
        vm.expectRevert(NotProven.selector);
        portal.finalizeWithdrawal(_w());
    }

    function test_prove_unknownOutput() public {
        vm.expectRevert(UnknownOutput.selector);
        _prove(_w(), 0);
    }

    function test_prove_twiceAgainstALiveOutput() public {
        uint256 index = _propose(V.STATE_ROOT);
        _prove(_w(), index);
        vm.expectRevert(AlreadyProven.selector);
        _prove(_w(), index);
    }

    function test_prove_unrecordedWithdrawal_fails() public {
        uint256 index = _propose(V.STATE_ROOT);
        Portal.Withdrawal memory forged = _w();
        forged.nonce = V.UNRECORDED_NONCE;
        // Its slot's honest proof says absent (0).
        vm.expectRevert(WithdrawalNotInStorage.selector);
        portal.proveWithdrawal(forged, index, V.accountProof(), V.unrecordedStorageProof());
        // The recorded withdrawal's storage proof does not prove another slot.
        vm.expectRevert();
        portal.proveWithdrawal(forged, index, V.accountProof(), V.storageProof());
    }

    function test_prove_changedField_fails() public {
        uint256 index = _propose(V.STATE_ROOT);
        Portal.Withdrawal memory forged = _w();
        forged.value = V.W_VALUE + 1; // another hash, another slot
        vm.expectRevert();
        portal.proveWithdrawal(forged, index, V.accountProof(), V.storageProof());
    }

    function testFuzz_prove_forgedStorageProof_fails(uint256 _node, uint256 _at, uint8 _mask) public {
        uint256 index = _propose(V.STATE_ROOT);
        bytes[] memory p = V.storageProof();
        _node = bound(_node, 0, p.length - 1);
        _at = bound(_at, 0, p[_node].length - 1);
        p = tamper(p, _node, _at, uint8(bound(_mask, 1, 255)));
        vm.expectRevert(MPTInvalidNodeHash.selector);
        portal.proveWithdrawal(_w(), index, V.accountProof(), p);
    }

    function test_prove_outputWithAnotherStateRoot_fails() public {
        uint256 index = _propose(keccak256("another state"));
        vm.expectRevert(MPTInvalidNodeHash.selector);
        _prove(_w(), index);
    }

    function test_prove_targetPortal_fails() public {
        uint256 index = _propose(V.STATE_ROOT);
        Portal.Withdrawal memory wd = _w();
        wd.target = address(portal);
        vm.expectRevert(BadTarget.selector);
        _prove(wd, index);
    }

    function test_deletedOutput_mustProveAgain() public {
        _fund();
        uint256 index = _propose(V.STATE_ROOT);
        _prove(_w(), index);
        // A dispute proves the output wrong: it (and every later output) is deleted.
        (,,,,,, uint64 nonce,,,) = _outputFields(index);
        vm.prank(AUTHORITY);
        oracle.openDispute(index, nonce);
        vm.prank(AUTHORITY);
        oracle.closeDispute(index, nonce, true, address(this));
        vm.warp(block.timestamp + WINDOW);
        vm.expectRevert(ProvenOutputDeleted.selector);
        portal.finalizeWithdrawal(_w());
        // A new output takes the same index: the old proof is still not valid for it.
        uint256 again = _propose(V.STATE_ROOT);
        assertEq(again, index, "index reused");
        vm.warp(block.timestamp + WINDOW);
        oracle.finalize(again);
        vm.expectRevert(ProvenOutputDeleted.selector);
        portal.finalizeWithdrawal(_w());
        // Proving again against the live output works.
        _prove(_w(), again);
        portal.finalizeWithdrawal(_w());
        assertTrue(portal.finalizedWithdrawals(portal.hashWithdrawal(_w())), "finalized after re-proving");
    }

    function test_failedCall_isFinalizedAnyway() public {
        _fund();
        Target t = new Target(portal);
        t.setRevert(true);
        vmb.etch(V.W_TARGET, address(t).code);
        // The etched copy has its own (empty) storage: make it revert through its slot.
        vmb.store(V.W_TARGET, bytes32(uint256(3)), bytes32(uint256(1)));
        uint256 index = _propose(V.STATE_ROOT);
        _prove(_w(), index);
        vm.warp(block.timestamp + WINDOW);
        oracle.finalize(index);
        portal.finalizeWithdrawal(_w());
        assertTrue(portal.finalizedWithdrawals(portal.hashWithdrawal(_w())), "finalized");
        assertEq(address(portal).balance, 5 ether, "the ETH stays in the Portal");
        vm.expectRevert(AlreadyFinalized.selector);
        portal.finalizeWithdrawal(_w());
    }

    function test_call_seesL2Sender_andCannotReenter() public {
        _fund();
        Target t = new Target(portal);
        vmb.etch(V.W_TARGET, address(t).code);
        vmb.store(V.W_TARGET, bytes32(uint256(0)), bytes32(uint256(uint160(address(portal)))));
        uint256 index = _propose(V.STATE_ROOT);
        _prove(_w(), index);
        vm.warp(block.timestamp + WINDOW);
        oracle.finalize(index);
        Target(payable(V.W_TARGET)).setReenter(_w());
        assertEq(portal.l2Sender(), portal.DEFAULT_L2_SENDER(), "default outside a call");
        portal.finalizeWithdrawal(_w());
        assertEq(Target(payable(V.W_TARGET)).seenL2Sender(), V.W_SENDER, "l2Sender during the call");
        assertEq(Target(payable(V.W_TARGET)).calls(), 1, "called once");
        assertEq(bytes4(Target(payable(V.W_TARGET)).reentryError()), Reentrant.selector, "re-entry refused");
        assertEq(portal.l2Sender(), portal.DEFAULT_L2_SENDER(), "reset after the call");
    }

    function test_finalize_tooLittleGas_reverts() public {
        _fund();
        uint256 index = _propose(V.STATE_ROOT);
        _prove(_w(), index);
        vm.warp(block.timestamp + WINDOW);
        oracle.finalize(index);
        vm.expectRevert(InsufficientGas.selector);
        portal.finalizeWithdrawal{ gas: 120_000 }(_w());
        assertTrue(!portal.finalizedWithdrawals(portal.hashWithdrawal(_w())), "not finalized");
    }

    function test_finalize_portalWithoutEth_waits() public {
        uint256 index = _propose(V.STATE_ROOT);
        _prove(_w(), index);
        vm.warp(block.timestamp + WINDOW);
        oracle.finalize(index);
        vm.expectRevert(PortalBalanceTooLow.selector);
        portal.finalizeWithdrawal(_w());
        _fund();
        portal.finalizeWithdrawal(_w());
    }

    function _outputFields(uint256 _index)
        internal
        view
        returns (bytes32, bytes32, bytes32, uint64, uint64, uint64, uint64, address, uint32, uint256)
    {
        OutputOracle.Output memory o = oracle.output(_index);
        return (o.stateRoot, o.inferenceRoot, o.l2BlockHash, o.l2BlockNumber, o.l2Timestamp, o.proposedAt,
            o.nonce, o.proposer, o.openDisputes, o.bond);
    }
}
