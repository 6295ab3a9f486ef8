// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { UnsupportedOp } from "../lib/Errors.sol";
import { GemmPlan, LibBlocked, ReducePlan } from "./LibBlocked.sol";
import { LibWindow, WindowPlan } from "./LibWindow.sol";
import {
    Instr, NodeContext, OP_ARGMAX, OP_AVGPOOL, OP_CONV, OP_LINEAR, OP_MATMUL, OP_MAXPOOL, OP_REDUCE
} from "./VMTypes.sol";
import { VMProgramFamily } from "./VMProgramFamily.sol";

/// @title VMProgramBlocked
/// @notice The blocked program family (`plan_gemm`, `plan_window`, `plan_reduce`, `plan_argmax`):
///         linear, matmul, conv, maxpool, avgpool, reduce, argmax. Any other op with a non-empty
///         output is `UnsupportedOp` here (the `VMProgram` router never sends one).
contract VMProgramBlocked is VMProgramFamily {
    /// @inheritdoc VMProgramFamily
    function planAt(NodeContext memory _ctx, uint256 _pc, bool _wantInstr)
        internal
        pure
        override
        returns (uint256 steps_, Instr memory instr_)
    {
        uint256 op = _ctx.op;
        if (op == OP_LINEAR || op == OP_MATMUL) {
            GemmPlan memory p = LibBlocked.planGemm(_ctx);
            steps_ = LibBlocked.gemmSteps(p);
            if (_wantInstr && _pc < steps_) instr_ = LibBlocked.gemmInstr(p, _pc);
        } else if (op == OP_CONV || op == OP_MAXPOOL || op == OP_AVGPOOL) {
            WindowPlan memory p = LibWindow.planWindow(_ctx);
            steps_ = LibWindow.windowSteps(p);
            if (_wantInstr && _pc < steps_) instr_ = LibWindow.windowInstr(p, _pc);
        } else if (op == OP_REDUCE || op == OP_ARGMAX) {
            ReducePlan memory p = op == OP_REDUCE ? LibBlocked.planReduce(_ctx) : LibBlocked.planArgmax(_ctx);
            steps_ = LibBlocked.reduceSteps(p);
            if (_wantInstr && _pc < steps_) instr_ = LibBlocked.reduceInstr(p, _pc);
        } else {
            // INVARIANT: only the blocked family's ops have a plan here.
            revert UnsupportedOp();
        }
    }
}
