// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IProgramLength
/// @notice The number of instructions of a node's VM program, a pure function of its context
///         (`fraud_vm.stepper.num_steps`; implemented by the step verifier, which derives the
///         instruction at any `pc` from the same context).
interface IProgramLength {
    /// @notice The program length (>= 1) of the node whose context is `_context`.
    /// @dev Reverts with `MalformedContext` / `UnsupportedOp` as `fraud_vm.stepper` raises.
    /// @param _context The encoded node context (`fraud_vm.context.NodeContext.encode`).
    /// @return numSteps_ The program length.
    function numSteps(bytes calldata _context) external view returns (uint256 numSteps_);
}
