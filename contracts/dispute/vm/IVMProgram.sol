// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IProgramLength } from "../interfaces/IProgramLength.sol";
import { Instr, Region } from "./VMTypes.sol";

/// @title IVMProgram
/// @notice A node's fraud-VM program derived from its context (`fraud_vm.stepper`): the program
///         length, the memory regions and the instruction at any `pc`. There is no program
///         commitment: the context (whose hash every state carries) determines all of it.
interface IVMProgram is IProgramLength {
    /// @notice Decode `_context`, derive its program and the instruction at `_pc`.
    /// @dev Reverts `MalformedContext` / `UnsupportedOp` as `decode_context` + `num_steps` raise.
    ///      For `_pc >= numSteps_` `instr_` is a NOP with empty lists (the caller checks
    ///      `StepOutOfRange` itself, in the order of `verify_step`).
    /// @param _context The encoded node context (address word, then int256 words).
    /// @param _pc The program counter (the state's `step`).
    /// @return numSteps_ The program length (>= 1).
    /// @return regions_ The node's memory regions (inputs in order, then the output).
    /// @return instr_ The instruction at `_pc`.
    function program(bytes calldata _context, uint256 _pc)
        external
        view
        returns (uint256 numSteps_, Region[] memory regions_, Instr memory instr_);
}
