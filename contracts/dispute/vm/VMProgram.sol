// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { UnsupportedOp } from "../lib/Errors.sol";
import { IVMProgram } from "./IVMProgram.sol";
import { GemmPlan, LibBlocked, ReducePlan, WindowPlan } from "./LibBlocked.sol";
import { LibContext } from "./LibContext.sol";
import { Instr, K_NOP, NodeContext, Region } from "./VMTypes.sol";

/// @title VMProgram
/// @notice A node's fraud-VM program derived from its context: the mirror of `fraud_vm.stepper`
///         (`make_plan`, `num_steps`, `instr_at`). The context is decoded (`LibContext`), the op's
///         plan read (`LibBlocked`: linear/matmul, conv/pools, reduce/argmax; `LibStream`:
///         softmax/layernorm and the elementwise ops), and the instruction at `pc` computed in
///         closed form. Stateless; reverts `MalformedContext` / `UnsupportedOp` exactly where
///         `decode_context` + `num_steps` raise them.
contract VMProgram is IVMProgram {
    // op codes (`opml.ops`) of the blocked families
    uint256 internal constant OP_LINEAR = 3;
    uint256 internal constant OP_CONV = 4;
    uint256 internal constant OP_MATMUL = 5;
    uint256 internal constant OP_MAXPOOL = 11;
    uint256 internal constant OP_AVGPOOL = 12;
    uint256 internal constant OP_REDUCE = 13;
    uint256 internal constant OP_ARGMAX = 19;

    /// @inheritdoc IVMProgram
    function program(bytes calldata _context, uint256 _pc)
        external
        pure
        returns (uint256 numSteps_, Region[] memory regions_, Instr memory instr_)
    {
        NodeContext memory ctx = LibContext.decodeContext(_context);
        regions_ = LibContext.regions(ctx);
        (numSteps_, instr_) = instrAt(ctx, _pc, true);
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
        if (op == OP_LINEAR || op == OP_MATMUL) {
            GemmPlan memory p = LibBlocked.planGemm(_ctx);
            steps = LibBlocked.gemmSteps(p);
            if (_wantInstr && _pc < steps) instr_ = LibBlocked.gemmInstr(p, _pc);
        } else if (op == OP_CONV || op == OP_MAXPOOL || op == OP_AVGPOOL) {
            WindowPlan memory p = LibBlocked.planWindow(_ctx);
            steps = LibBlocked.windowSteps(p);
            if (_wantInstr && _pc < steps) instr_ = LibBlocked.windowInstr(p, _pc);
        } else if (op == OP_REDUCE || op == OP_ARGMAX) {
            ReducePlan memory p = op == OP_REDUCE ? LibBlocked.planReduce(_ctx) : LibBlocked.planArgmax(_ctx);
            steps = LibBlocked.reduceSteps(p);
            if (_wantInstr && _pc < steps) instr_ = LibBlocked.reduceInstr(p, _pc);
        } else {
            // SAFETY: the streamed families (rows, elementwise) land with LibStream.
            revert UnsupportedOp();
        }
        numSteps_ = steps == 0 ? 1 : steps;
    }
}
