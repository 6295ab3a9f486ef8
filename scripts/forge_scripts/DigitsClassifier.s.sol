// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { AITest } from "../../contracts/test/AITest.sol";
import { DigitsClassifier } from "../../contracts/examples/DigitsClassifier.sol";

/// @notice The script cheatcodes used here.
interface ScriptVm {
    function envBytes32(string calldata name) external view returns (bytes32);
    function envBytes(string calldata name) external view returns (bytes memory);
    function startBroadcast() external;
    function stopBroadcast() external;
}

/// @title DigitsClassifierScript
/// @notice Deploys `DigitsClassifier` for the model `AI_EVM_MODEL` on an AI EVM node and classifies
///         the 64-pixel image `AI_EVM_IMAGE` in a transaction (docs/foundry.md):
///
///         forge script scripts/forge_scripts/DigitsClassifier.s.sol:DigitsClassifierScript \
///             --rpc-url $RPC --private-key $KEY --broadcast --skip-simulation
///
///         Foundry's EVM has no inference precompile, so the script first etches `AITest`'s mock at
///         0xa1 and records the node's own output for this input (`eth_call` to 0xa1 through
///         `vm.rpc`); the local run then predicts what the node will. `--skip-simulation` is needed:
///         forge's second, on-chain simulation runs on a fresh fork without the mock. The node
///         estimates each transaction's gas (`eth_estimateGas` with the real inference).
contract DigitsClassifierScript is AITest {
    ScriptVm internal constant VM = ScriptVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @notice The classifier deployed by the last run.
    DigitsClassifier public classifier;
    /// @notice The digit the local run predicted (from the recorded output).
    uint256 public digit;

    function run() external {
        bytes32 model = VM.envBytes32("AI_EVM_MODEL");
        bytes memory image = VM.envBytes("AI_EVM_IMAGE");
        installAIMock(); // local only: never broadcast
        VM.startBroadcast();
        classifier = new DigitsClassifier(model);
        VM.stopBroadcast();
        recordInference(model, classifier.encodeImage(image), classifier.OUTPUT_SIZE());
        VM.startBroadcast();
        digit = classifier.classify(image);
        VM.stopBroadcast();
    }
}
