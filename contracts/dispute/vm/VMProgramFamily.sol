// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { UnsupportedOp } from "../lib/Errors.sol";
import { IVMProgram } from "./IVMProgram.sol";
import { LibContext } from "./LibContext.sol";
import {
    Instr,
    K_NOP,
    NodeContext,
    OP_ARGMAX,
    OP_AVGPOOL,
    OP_CONV,
    OP_LINEAR,
    OP_MATMUL,
    OP_MAXPOOL,
    OP_REDUCE,
    Region
} from "./VMTypes.sol";

/// @title VMProgramFamily
/// @notice The part of `fraud_vm.stepper` every program family shares (`make_plan`'s first
///         checks, `num_steps = max(plan.steps, 1)`, `instr_at`), over the context decoded by
///         `LibContext`; a family contract supplies `planAt` for its ops. Two families
///         (`VMProgramBlocked`, `VMProgramStream`) keep each contract within EIP-170; the
///         `VMProgram` router sends a context to the family of its op. Stateless.
abstract contract VMProgramFamily is IVMProgram {
    /// @inheritdoc IVMProgram
    function program(bytes calldata _context, uint256 _pc)
        external
        pure
        returns (uint256 numSteps_, Region[] memory regions_, Instr memory instr_)
    {
        NodeContext memory ctx = LibContext.decodeContext(_context);
        regions_ = LibContext.regions(ctx);
        (numSteps_, instr_) = instrAt(ctx, _pc, true);
        _returnEncoded(numSteps_, regions_, instr_);
    }

    /// @notice Return `abi.encode(_n, _regions, _instr)` and stop: the same bytes as the ABI
    ///         encoder's, written by copying each array's memory image (length word, then
    ///         elements) with `mcopy` instead of the encoder's element-by-element loops (about
    ///         30,000 gas less per `program` call on a 32-lane instruction).
    /// @param _n The program length.
    /// @param _regions The memory regions (`Region`: header pointer, then five value words).
    /// @param _instr The instruction (`Instr`: kind, then five array pointers).
    function _returnEncoded(uint256 _n, Region[] memory _regions, Instr memory _instr) private pure {
        // SAFETY: writes only at and after the free memory pointer, then returns (nothing after
        // this runs). Offsets follow the ABI head/tail layout: a `Region` tuple is six head words
        // (its header's offset 0xc0, then the five values) and its header; `Instr` is six head
        // words (kind, then its arrays' offsets) and the arrays.
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, _n)
            mstore(add(p, 0x20), 0x60)
            let nr := mload(_regions)
            mstore(add(p, 0x60), nr)
            let heads := add(p, 0x80)
            let t := add(heads, shl(5, nr))
            for { let k := 0 } lt(k, nr) { k := add(k, 1) } {
                let r := mload(add(add(_regions, 0x20), shl(5, k)))
                mstore(add(heads, shl(5, k)), sub(t, heads))
                mstore(t, 0xc0)
                mcopy(add(t, 0x20), add(r, 0x20), 0xa0)
                let h := mload(r)
                let hl := add(shl(5, mload(h)), 0x20)
                mcopy(add(t, 0xc0), h, hl)
                t := add(add(t, 0xc0), hl)
            }
            mstore(add(p, 0x40), sub(t, p))
            let ib := t
            mstore(ib, mload(_instr))
            t := add(ib, 0xc0)
            for { let k := 1 } lt(k, 6) { k := add(k, 1) } {
                let arr := mload(add(_instr, shl(5, k)))
                mstore(add(ib, shl(5, k)), sub(t, ib))
                let l := add(shl(5, mload(arr)), 0x20)
                mcopy(t, arr, l)
                t := add(t, l)
            }
            return(p, sub(t, p))
        }
    }

    /// @notice The program length (`num_steps`: `max(plan.steps, 1)`).
    /// @param _context The encoded node context.
    /// @return numSteps_ The program length.
    function numSteps(bytes calldata _context) external pure returns (uint256 numSteps_) {
        (numSteps_,) = instrAt(LibContext.decodeContext(_context), 0, false);
    }

    /// @notice `make_plan` + `num_steps` + `instr_at`: the program length and, if `_wantInstr`, the
    ///         instruction at `_pc` (a NOP with empty lists for `_pc >= numSteps_`).
    /// @param _ctx The decoded context.
    /// @param _pc The program counter.
    /// @param _wantInstr Whether to derive the instruction.
    /// @return numSteps_ The program length (>= 1).
    /// @return instr_ The instruction at `_pc`.
    function instrAt(NodeContext memory _ctx, uint256 _pc, bool _wantInstr)
        internal
        pure
        returns (uint256 numSteps_, Instr memory instr_)
    {
        instr_.kind = K_NOP;
        // INVARIANT: an empty output is the one-instruction program NOP (`Plan()`).
        if (_ctx.tensors[_ctx.nInputs].size == 0) return (1, instr_);
        uint256 op = _ctx.op;
        // INVARIANT: linear, matmul and conv read two inputs (`_MIN_INPUTS`); every op reads one.
        uint256 minInputs = op == OP_LINEAR || op == OP_MATMUL || op == OP_CONV ? 2 : 1;
        if (_ctx.nInputs < minInputs) revert UnsupportedOp();
        uint256 steps;
        (steps, instr_) = planAt(_ctx, _pc, _wantInstr);
        numSteps_ = steps == 0 ? 1 : steps;
    }

    /// @notice The op's plan (`make_plan`'s rule for it): its step count and, if `_wantInstr` and
    ///         `_pc` is below it, the instruction at `_pc` (else a NOP).
    /// @param _ctx The decoded context (non-empty output, enough inputs).
    /// @param _pc The program counter.
    /// @param _wantInstr Whether to derive the instruction.
    /// @return steps_ `plan.steps`.
    /// @return instr_ The instruction at `_pc`.
    function planAt(NodeContext memory _ctx, uint256 _pc, bool _wantInstr)
        internal
        pure
        virtual
        returns (uint256 steps_, Instr memory instr_);
}

/// @notice Whether op code `_op` is one of the blocked family (linear, conv, matmul, maxpool,
///         avgpool, reduce, argmax), whose plans `LibBlocked` reads.
/// @param _op An op code.
/// @return blocked_ True for the blocked family.
function isBlockedOp(uint256 _op) pure returns (bool blocked_) {
    blocked_ = _op == OP_LINEAR || _op == OP_CONV || _op == OP_MATMUL || _op == OP_MAXPOOL || _op == OP_AVGPOOL
        || _op == OP_REDUCE || _op == OP_ARGMAX;
}
