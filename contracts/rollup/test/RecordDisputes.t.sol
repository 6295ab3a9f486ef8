// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Test } from "../../dispute/test/lib/Test.sol";
import { MockPhaseLink } from "../../dispute/test/mocks/Mocks.sol";
import { BundlePhaseLink } from "../../dispute/BundlePhaseLink.sol";
import { DisputeGameFactory } from "../../dispute/DisputeGameFactory.sol";
import { InferenceDisputeGame } from "../../dispute/InferenceDisputeGame.sol";
import { IPhaseLink } from "../../dispute/interfaces/IPhaseLink.sol";
import { IStepVerifier } from "../../dispute/interfaces/IStepVerifier.sol";
import { LibMerkle } from "../../dispute/lib/LibMerkle.sol";
import { Claim } from "../../dispute/lib/Types.sol";
import { InferenceRecordDisputes } from "../InferenceRecordDisputes.sol";
import { ModelRegistry } from "../ModelRegistry.sol";
import { OutputOracle } from "../OutputOracle.sol";
import "../RollupErrors.sol";

/// @title RecordDisputesTest
/// @notice Record challenges on a synthetic model (8 tensors, input tensor 0 = int8 [-1, 4] (dynamic
///         batch), output tensor 5 = int32 [-1, 2]): the claim fixed by the record's bytes, the
///         undefended path (output deleted, bonds to the challenger) and every rejection.
contract RecordDisputesTest is Test {
    address internal constant PROPOSER = address(0xA11CE);
    address internal constant CHALLENGER = address(0xB0B);
    uint256 internal constant BOND = 1 ether;
    uint256 internal constant CBOND = 0.5 ether;

    bytes32 internal model;
    bytes32 internal tensorsRoot;
    bytes32[] internal leaves;
    OutputOracle internal oracle;
    InferenceRecordDisputes internal disputes;

    function _desc(int256 _dtype, int256 _d0, int256 _d1) internal pure returns (int256[] memory d_) {
        d_ = new int256[](8);
        (d_[0], d_[1], d_[2], d_[3]) = (_dtype, 2, _d0, _d1);
    }

    function setUp() public {
        vm.warp(1_000_000);
        leaves = new bytes32[](8);
        for (uint256 i = 0; i < 8; i++) leaves[i] = keccak256(abi.encode("tensor", i));
        leaves[0] = keccak256(abi.encodePacked(_desc(1, -1, 4), bytes32(0)));
        leaves[5] = keccak256(abi.encodePacked(_desc(4, -1, 2), bytes32(0)));
        bytes32[] memory copy = leaves;
        tensorsRoot = LibMerkle.merkleRoot(copy, 3);
        model = keccak256(
            abi.encodePacked(
                keccak256(abi.encodePacked(keccak256("meta"), keccak256("nodes"))),
                keccak256(abi.encodePacked(tensorsRoot, bytes32(0)))
            )
        );
        MockPhaseLink link = new MockPhaseLink(model);
        ModelRegistry registry = new ModelRegistry(link, 0);
        registry.register(model, "ok", "http://127.0.0.1/m");
        InferenceDisputeGame impl = new InferenceDisputeGame(IStepVerifier(address(1)), link, 3600, 600, 1 ether, 11, 10);
        DisputeGameFactory factory = new DisputeGameFactory(impl, 7 days);
        oracle = new OutputOracle(PROPOSER, BOND, 7 days);
        disputes = new InferenceRecordDisputes(oracle, registry, factory, CBOND, 1 days);
        oracle.setDisputeAuthority(address(disputes));
        vm.deal(PROPOSER, 10 ether);
        vm.deal(CHALLENGER, 10 ether);
    }

    function _path(uint256 _index) internal view returns (bytes32[] memory p_) {
        p_ = new bytes32[](3);
        bytes32[] memory level = leaves;
        for (uint256 h = 0; h < 3; h++) {
            p_[h] = level[_index ^ 1];
            bytes32[] memory up = new bytes32[](level.length / 2);
            for (uint256 i = 0; i < up.length; i++) up[i] = keccak256(abi.encodePacked(level[2 * i], level[2 * i + 1]));
            level = up;
            _index >>= 1;
        }
    }

    function _io() internal view returns (InferenceRecordDisputes.IOProof memory io_) {
        io_.metaHash = keccak256("meta");
        io_.nodesRoot = keccak256("nodes");
        io_.tensorsRoot = tensorsRoot;
        io_.inputs = new BundlePhaseLink.TensorProofData[](1);
        io_.inputs[0] = BundlePhaseLink.TensorProofData(_desc(1, -1, 4), bytes32(0), _path(0));
        io_.outputs = new BundlePhaseLink.TensorProofData[](1);
        io_.outputs[0] = BundlePhaseLink.TensorProofData(_desc(4, -1, 2), bytes32(0), _path(5));
    }

    function _otherRecord() internal pure returns (bytes memory) {
        return abi.encodePacked(keccak256("m"), keccak256("i"), keccak256("o"), bytes32(0), uint256(0), uint256(1));
    }

    function _record(bytes memory _in, bytes memory _out)
        internal
        view
        returns (InferenceRecordDisputes.RecordProof memory rp_, bytes memory rec_)
    {
        rp_.record = InferenceRecordDisputes.Record(model, keccak256("tx"), 0, 12345);
        rp_.outputHash = keccak256(_out);
        rec_ = abi.encodePacked(model, keccak256(_in), keccak256(_out), keccak256("tx"), uint256(0), uint256(12345));
        rp_.index = 1;
        rp_.path = new bytes32[](1);
        rp_.path[0] = keccak256(_otherRecord());
    }

    function _proposeWith(bytes memory _rec) internal {
        vm.prank(PROPOSER);
        oracle.propose{ value: BOND }(10, uint64(block.timestamp), 0, 0, bytes.concat(_otherRecord(), _rec));
        vm.prank(PROPOSER);
        oracle.propose{ value: BOND }(20, uint64(block.timestamp), 0, 0, "");
    }

    function test_rootsAreFixedByTheBytes() public view {
        bytes memory input = new bytes(12); // batch 3: 3 x 4 int8
        bytes memory output = new bytes(24); // 3 x 2 int32
        input[0] = 0x05;
        (uint256 batch, bytes32[] memory ins, bytes32[] memory outs) = disputes.rootsOf(model, input, output, _io());
        assertEq(batch, 3, "batch from the input length");
        bytes32 w = bytes32(bytes1(0x05));
        assertEq(ins[0], keccak256(abi.encodePacked(int256(1), int256(2), int256(3), int256(4), w)), "input root");
        assertEq(outs[0], keccak256(abi.encodePacked(int256(4), int256(2), int256(3), int256(2), bytes32(0))), "output");
    }

    function test_undefendedChallengeDeletesTheOutputAndLaterOnes() public {
        bytes memory input = new bytes(8);
        bytes memory output = new bytes(16);
        (InferenceRecordDisputes.RecordProof memory rp, bytes memory leaf) = _record(input, output);
        _proposeWith(leaf);
        vm.prank(CHALLENGER);
        uint256 id = disputes.challenge{ value: CBOND }(0, rp, input, _io());
        vm.expectRevert(NotResolvable.selector);
        disputes.resolve(id);
        Claim memory none;
        vm.expectRevert(InvalidDefence.selector); // not the record's output bytes
        disputes.defend(id, new bytes(17), _io(), 0, none, "");
        vm.warp(block.timestamp + 1 days + 1);
        vm.expectRevert(InvalidDefence.selector); // too late
        disputes.defend(id, output, _io(), 0, none, "");
        disputes.resolve(id);
        assertEq(oracle.outputCount(), 0, "both outputs deleted");
        assertEq(oracle.credit(CHALLENGER), 2 * BOND, "output bonds");
        assertEq(disputes.credit(CHALLENGER), CBOND, "challenge bond back");
        vm.expectRevert(ChallengeNotOpen.selector);
        disputes.resolve(id);
    }

    function test_challengeRejections() public {
        bytes memory input = new bytes(8);
        bytes memory output = new bytes(16);
        (InferenceRecordDisputes.RecordProof memory rp, bytes memory leaf) = _record(input, output);
        _proposeWith(leaf);
        vm.startPrank(CHALLENGER);
        vm.expectRevert(IncorrectValue.selector);
        disputes.challenge{ value: 0 }(0, rp, input, _io());
        vm.expectRevert(InvalidRecordProof.selector);
        disputes.challenge{ value: CBOND }(0, rp, new bytes(12), _io()); // other input bytes
        vm.expectRevert(InvalidRecordProof.selector);
        disputes.challenge{ value: CBOND }(1, rp, input, _io()); // another output
        InferenceRecordDisputes.IOProof memory io = _io();
        io.inputs[0].desc[3] = 5;
        vm.expectRevert(InvalidTensorProof.selector);
        disputes.challenge{ value: CBOND }(0, rp, input, io);
        vm.expectRevert(UnknownOutput.selector);
        disputes.challenge{ value: CBOND }(9, rp, input, _io());
        vm.stopPrank();
        vm.warp(block.timestamp + 7 days);
        vm.expectRevert(ChallengeWindowOver.selector);
        vm.prank(CHALLENGER);
        disputes.challenge{ value: CBOND }(0, rp, input, _io());
    }

    function test_bytesThatDoNotSplitIntoTheTensorsAreRejected() public {
        InferenceRecordDisputes.IOProof memory io = _io();
        vm.expectRevert(InvalidInferenceBytes.selector);
        disputes.rootsOf(model, new bytes(7), new bytes(8), io); // 7 is not k * 4
        vm.expectRevert(InvalidInferenceBytes.selector);
        disputes.rootsOf(model, new bytes(8), new bytes(9), io); // batch 2 needs 16 output bytes
        vm.expectRevert(InvalidInferenceBytes.selector);
        disputes.rootsOf(model, new bytes(0), new bytes(0), io);
    }
}
