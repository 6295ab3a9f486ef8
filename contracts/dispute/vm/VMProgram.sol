// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IVMProgram } from "./IVMProgram.sol";
import { Instr, Region } from "./VMTypes.sol";
import { isBlockedOp } from "./VMProgramFamily.sol";

/// @title VMProgram
/// @notice A node's fraud-VM program derived from its context: the mirror of `fraud_vm.stepper`
///         (`make_plan`, `num_steps`, `instr_at`). One contract holding every family would exceed
///         EIP-170, so this router forwards the call unchanged to the family of the context's op
///         code (`VMProgramBlocked`: linear, matmul, conv, pools, reduce, argmax;
///         `VMProgramStream`: softmax, layernorm and the elementwise ops) and returns or reverts
///         with exactly its answer. Both families decode the context with the same `LibContext`,
///         so a context whose op cannot be read is rejected identically wherever it goes.
contract VMProgram is IVMProgram {
    /// @notice The blocked family.
    IVMProgram public immutable BLOCKED;
    /// @notice The streamed families.
    IVMProgram public immutable STREAM;

    /// @param _blocked The deployed `VMProgramBlocked`.
    /// @param _stream The deployed `VMProgramStream`.
    constructor(IVMProgram _blocked, IVMProgram _stream) {
        BLOCKED = _blocked;
        STREAM = _stream;
    }

    /// @inheritdoc IVMProgram
    function program(bytes calldata _context, uint256)
        external
        view
        returns (uint256 numSteps_, Region[] memory regions_, Instr memory instr_)
    {
        // SAFETY: the named returns are never set: `_forward` returns or reverts with the family's data.
        (numSteps_, regions_, instr_);
        _forward(familyOf(_context));
    }

    /// @notice The program length (`num_steps`), from the context's family.
    /// @param _context The encoded node context.
    /// @return numSteps_ The program length.
    function numSteps(bytes calldata _context) external view returns (uint256 numSteps_) {
        // SAFETY: the named return is never set: `_forward` returns or reverts with the family's data.
        numSteps_;
        _forward(familyOf(_context));
    }

    /// @notice The family contract for `_context`: the op code is the first node word (word 4)
    ///         when the context has one (`m >= 1`); a context without it goes to `BLOCKED`, which
    ///         rejects it as `STREAM` would.
    /// @param _context The encoded node context.
    /// @return family_ The family contract.
    function familyOf(bytes calldata _context) public view returns (address family_) {
        family_ = familyFor(_context, address(BLOCKED), address(STREAM));
    }

    /// @notice Forward this call's calldata to `_family` and return or revert with its return data.
    function _forward(address _family) private view {
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := staticcall(gas(), _family, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }
}

/// @notice The family contract for `_context` (`VMProgram.familyOf`, shared with the step verifier,
///         which calls the family directly): the op code is the first node word (word 4) when the
///         context has one (`m >= 1`); a context without it goes to `_blocked`, which rejects it as
///         `_stream` would.
/// @param _context The encoded node context.
/// @param _blocked The blocked family.
/// @param _stream The streamed families.
/// @return family_ `_blocked` or `_stream`.
function familyFor(bytes calldata _context, address _blocked, address _stream) pure returns (address family_) {
    uint256 op = 0;
    if (_context.length >= 5 * 32) {
        int256 m;
        assembly ("memory-safe") {
            m := calldataload(add(_context.offset, 96))
            op := calldataload(add(_context.offset, 128))
        }
        if (m < 1) op = 0;
    }
    family_ = op == 0 || isBlockedOp(op) ? _blocked : _stream;
}
