// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Test } from "../../dispute/test/lib/Test.sol";
import { AILib } from "../../AILib.sol";
import { AIMockRegistry, AIPrecompileMock, AITest } from "../../test/AITest.sol";
import { DigitsClassifier } from "../DigitsClassifier.sol";

/// @notice The environment cheatcodes the node-backed suite reads.
interface EnvVm {
    function envString(string calldata name) external view returns (string memory);
    function envBytes32(string calldata name) external view returns (bytes32);
    function envBytes(string calldata name) external view returns (bytes memory);
    function envUint(string calldata name) external view returns (uint256);
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;
    function envAddress(string calldata name) external view returns (address);
    function createSelectFork(string calldata urlOrAlias) external returns (uint256);
}

/// @notice Ten float32 scores (40 bytes, little-endian) that are 0 except `_best`, which is 1.0.
function oneHotScores(uint256 _best) pure returns (bytes memory scores_) {
    scores_ = new bytes(40);
    scores_[4 * _best + 2] = 0x80; // 1.0f = 0x3f800000, little-endian 00 00 80 3f
    scores_[4 * _best + 3] = 0x3f;
}

/// @notice An image whose pixels are `(i * _seed) % 17`.
function testImage(uint256 _seed) pure returns (bytes memory image_) {
    image_ = new bytes(64);
    for (uint256 i = 0; i < 64; ++i) {
        image_[i] = bytes1(uint8((i * _seed) % 17));
    }
}

/// @title DigitsClassifierMockTest
/// @notice `DigitsClassifier` under `forge test` with the inference precompile mocked by `AITest`.
contract DigitsClassifierMockTest is Test, AITest {
    bytes32 internal constant MODEL = keccak256("digits_mlp");
    DigitsClassifier internal classifier;

    event Classified(address indexed caller, uint256 digit);

    function setUp() public {
        installAIMock();
        classifier = new DigitsClassifier(MODEL);
    }

    function test_classifyUsesTheMockedOutput() public {
        bytes memory image = testImage(5);
        mockInference(MODEL, classifier.encodeImage(image), oneHotScores(7));
        EnvVm(address(vm)).expectEmit(true, false, false, true);
        emit Classified(address(this), 7);
        assertEq(classifier.classify(image), 7, "digit");
        assertEq(classifier.lastPrediction(), 7, "recorded");
        assertEq(classifier.lastCaller(), address(this), "caller");
    }

    function test_eachInputHasItsOwnAnswer() public {
        for (uint256 d = 0; d < 10; ++d) {
            mockInference(MODEL, classifier.encodeImage(testImage(d + 1)), oneHotScores(d));
        }
        for (uint256 d = 0; d < 10; ++d) {
            assertEq(classifier.predict(testImage(d + 1)), d, "digit");
        }
    }

    function test_unmockedInputFailsAsAnUnavailableModel() public {
        vm.expectRevert(abi.encodeWithSelector(AILib.InferenceFailed.selector, MODEL));
        classifier.predict(testImage(3));
    }

    function test_mockedFailure() public {
        bytes memory image = testImage(4);
        mockInferenceFailure(MODEL, classifier.encodeImage(image));
        vm.expectRevert(abi.encodeWithSelector(AILib.InferenceFailed.selector, MODEL));
        classifier.classify(image);
    }

    function test_wrongOutputSizeFailsAsOnTheChain() public {
        bytes memory image = testImage(6);
        mockInference(MODEL, classifier.encodeImage(image), new bytes(36));
        vm.expectRevert(abi.encodeWithSelector(AILib.InferenceFailed.selector, MODEL));
        classifier.predict(image);
    }

    function test_otherModelIsNotAnswered() public {
        bytes memory image = testImage(2);
        mockInference(keccak256("other"), classifier.encodeImage(image), oneHotScores(1));
        vm.expectRevert(abi.encodeWithSelector(AILib.InferenceFailed.selector, MODEL));
        classifier.predict(image);
    }

    function test_rawPrecompileLayout() public {
        bytes memory input = hex"0102";
        mockInference(MODEL, input, hex"aabbcc");
        (bool ok, bytes memory ret) = address(0xa1).staticcall(abi.encodePacked(MODEL, uint256(3), input));
        assertTrue(ok, "call");
        assertEq(keccak256(ret), keccak256(abi.encodePacked(uint256(3), hex"aabbcc")), "return");
        (ok,) = address(0xa1).staticcall(hex"00");
        assertTrue(!ok, "malformed call fails");
    }

    function test_inlinePrecompile() public {
        bytes memory bundle = hex"deadbeef";
        bytes memory input = hex"0a0b";
        mockInferenceInline(bundle, input, oneHotScores(4));
        bytes memory out = AILib.inferenceInline(bundle, input, 40);
        assertEq(AILib.argmaxFloat32(out), 4, "inline digit");
    }

    function test_onlyTheOwnerSetsAnswers() public {
        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(AIMockRegistry.NotOwner.selector, address(0xBAD)));
        aiMockRegistry.setAnswer(bytes32(0), false, "");
    }

    function test_installIsIdempotent() public {
        bytes memory image = testImage(5);
        mockInference(MODEL, classifier.encodeImage(image), oneHotScores(8));
        installAIMock();
        assertEq(classifier.predict(image), 8, "answers kept");
    }
}

/// @title DigitsClassifierNodeTest
/// @notice The same contract with the output recorded from a running AI EVM node
///         (`AI_EVM_RPC`, `AI_EVM_MODEL`, `AI_EVM_IMAGE`, `AI_EVM_CLASSIFIER`): the prediction must
///         equal `AI_EVM_DIGIT`, the node's own answer. Run by tests/contracts/test_foundry_ai.py.
contract DigitsClassifierNodeTest is Test, AITest {
    EnvVm internal constant ENV = EnvVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    function test_recordedOutputMatchesTheNode() public {
        installAIMock();
        bytes32 model = ENV.envBytes32("AI_EVM_MODEL");
        bytes memory image = ENV.envBytes("AI_EVM_IMAGE");
        DigitsClassifier classifier = new DigitsClassifier(model);
        bytes memory output = recordInference(ENV.envString("AI_EVM_RPC"), model, classifier.encodeImage(image), 40);
        assertEq(output.length, 40, "output size");
        assertEq(classifier.classify(image), ENV.envUint("AI_EVM_DIGIT"), "digit agrees with the node");
    }

    /// @notice The 0xa0 layout: the bundle passed inline (`AI_EVM_BUNDLE`) gives the node's output by
    ///         address, and `AILib.inferenceInline` on the mock returns it.
    function test_inlineRecordedMatchesByAddress() public {
        installAIMock();
        bytes32 model = ENV.envBytes32("AI_EVM_MODEL");
        bytes memory bundle = ENV.envBytes("AI_EVM_BUNDLE");
        DigitsClassifier classifier = new DigitsClassifier(model);
        bytes memory input = classifier.encodeImage(ENV.envBytes("AI_EVM_IMAGE"));
        string memory rpc = ENV.envString("AI_EVM_RPC");
        bytes memory byAddress = recordInference(rpc, model, input, 40);
        bytes memory inlined = recordInferenceInline(rpc, bundle, input);
        assertEq(keccak256(inlined), keccak256(byAddress), "0xa0 and 0xa1 outputs");
        assertEq(keccak256(AILib.inferenceInline(bundle, input, 40)), keccak256(byAddress), "mocked 0xa0");
        assertEq(AILib.argmaxFloat32(inlined), ENV.envUint("AI_EVM_DIGIT"), "inline digit agrees with the node");
    }

    /// @notice On a fork of the node: the classifier the node's account deployed
    ///         (`AI_EVM_CLASSIFIER`), its model read from its own storage, the mock installed on the
    ///         fork and the output recorded from it (`vm.rpc` against the active fork).
    function test_forkOfTheNode() public {
        ENV.createSelectFork(ENV.envString("AI_EVM_RPC"));
        installAIMock();
        DigitsClassifier classifier = DigitsClassifier(ENV.envAddress("AI_EVM_CLASSIFIER"));
        bytes memory image = ENV.envBytes("AI_EVM_IMAGE");
        recordInference(classifier.model(), classifier.encodeImage(image), classifier.OUTPUT_SIZE());
        uint256 digit = ENV.envUint("AI_EVM_DIGIT");
        assertEq(classifier.predict(image), digit, "forked predict agrees with the node");
        assertEq(classifier.classify(image), digit, "forked classify");
        assertEq(classifier.lastPrediction(), digit, "forked state");
    }
}
