// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AILib} from "./AILib.sol";

/// @title AIContract
/// @notice The seed's example contract: runs any model on any input and logs the result.
/// @dev Keeps the public Axonum names (`inference`, `Inference`, snake_case arguments) so dApps
///      written for it work unchanged against the AI EVM.
contract AIContract {
    /// @notice One inference was run.
    /// @param model_address The model address.
    /// @param input_data The input tensors' bytes.
    /// @param output_size The requested output size in bytes.
    /// @param output The output tensors' bytes.
    event Inference(bytes32 model_address, bytes input_data, uint256 output_size, bytes output);

    /// @notice Runs `model_address` on `input_data` and emits `Inference` with the output.
    /// @dev Reverts with `AILib.InferenceFailed` or `AILib.OutputSizeMismatch` on failure.
    /// @param model_address The model address.
    /// @param input_data The input tensors' bytes.
    /// @param output_size The expected output size in bytes.
    function inference(bytes32 model_address, bytes memory input_data, uint256 output_size) public {
        bytes memory output = AILib.inference(model_address, input_data, output_size);
        emit Inference(model_address, input_data, output_size, output);
    }
}
