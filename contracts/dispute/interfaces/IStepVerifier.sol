// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IStepVerifier
/// @notice The one-step verifier of the fraud VM (`fraud_vm.vm.verify_step`): executes a single
///         instruction from the agreed pre-state hash and a witness (`docs/fraud_vm.md` "Witness").
interface IStepVerifier {
    /// @notice Execute one VM step.
    /// @dev Reverts with the error of `fraud_vm/errors.py` of the same name (`InvalidWitness`,
    ///      `InvalidStep`, ...) when the witness does not verify.
    /// @param _preStateHash The agreed pre-state's hash.
    /// @param _witness The encoded step witness (pre-state, context, words, siblings).
    /// @return postStateHash_ The post-state's hash.
    function step(bytes32 _preStateHash, bytes calldata _witness) external view returns (bytes32 postStateHash_);
}
