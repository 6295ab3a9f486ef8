// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title AxonumStyleCaller
/// @notice Calls the 0xa1 precompile exactly the way contracts written for the public Axonum
///         AILib do (byte-by-byte merge of model ‖ bytes32(outputSize) ‖ input, the output
///         buffer as the return area, a bare revert on failure), to prove such contracts run
///         unchanged on the AI EVM. Test fixture: use AILib in new code.
contract AxonumStyleCaller {
    /// @notice The last output, for tests that read it back.
    bytes public lastOutput;

    /// @notice Runs the model and returns its output, Axonum style.
    /// @param model_address The model address.
    /// @param input_data The input tensors' bytes.
    /// @param output_size The output size in bytes.
    /// @return The output bytes (their length word is the one the precompile returned).
    function infer(bytes32 model_address, bytes memory input_data, uint256 output_size)
        public
        view
        returns (bytes memory)
    {
        bytes memory callData = mergeInput(model_address, input_data, output_size);
        uint256 callLength = callData.length;
        bytes memory output = new bytes(output_size);
        uint256 returnLength = 32 + output_size;
        assembly {
            // The precompile writes its length word over the array's length slot.
            let ok := staticcall(gas(), 0xa1, add(callData, 0x20), callLength, output, returnLength)
            if iszero(ok) { revert(0, 0) }
        }
        return output;
    }

    /// @notice `infer`, then stores the output.
    /// @param model_address The model address.
    /// @param input_data The input tensors' bytes.
    /// @param output_size The output size in bytes.
    function inferAndStore(bytes32 model_address, bytes memory input_data, uint256 output_size) public {
        lastOutput = infer(model_address, input_data, output_size);
    }

    /// @notice model ‖ bytes32(outputSize) ‖ input, one byte at a time (as the Axonum library does).
    /// @param model_address The model address.
    /// @param input_data The input bytes.
    /// @param output_size The output size.
    /// @return merged The precompile call data.
    function mergeInput(bytes32 model_address, bytes memory input_data, uint256 output_size)
        public
        pure
        returns (bytes memory merged)
    {
        bytes32 sizeWord = bytes32(output_size);
        merged = new bytes(64 + input_data.length);
        uint256 k = 0;
        for (uint256 i = 0; i < 32; i++) {
            merged[k++] = model_address[i];
        }
        for (uint256 i = 0; i < 32; i++) {
            merged[k++] = sizeWord[i];
        }
        for (uint256 i = 0; i < input_data.length; i++) {
            merged[k++] = input_data[i];
        }
    }
}
