// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { UnsupportedOp } from "../lib/Errors.sol";
import { ElementwisePlan, LibStream, OP_LAYERNORM, OP_SOFTMAX, RowsPlan } from "./LibStream.sol";
import { Instr, NodeContext } from "./VMTypes.sol";
import { VMProgramFamily, isBlockedOp } from "./VMProgramFamily.sol";

/// @title VMProgramStream
/// @notice The streamed program families (`plan_rows`: softmax, layernorm; `plan_elementwise`:
///         every other op). A blocked-family op with a non-empty output is `UnsupportedOp` here
///         (the `VMProgram` router never sends one).
contract VMProgramStream is VMProgramFamily {
    /// @inheritdoc VMProgramFamily
    function planAt(NodeContext memory _ctx, uint256 _pc, bool _wantInstr)
        internal
        pure
        override
        returns (uint256 steps_, Instr memory instr_)
    {
        uint256 op = _ctx.op;
        // INVARIANT: only the streamed families' ops have a plan here.
        if (isBlockedOp(op)) revert UnsupportedOp();
        if (op == OP_SOFTMAX || op == OP_LAYERNORM) {
            RowsPlan memory p = LibStream.planRows(_ctx);
            steps_ = p.steps;
            if (_wantInstr && _pc < steps_) instr_ = LibStream.rowsInstr(p, _pc);
        } else {
            ElementwisePlan memory p = LibStream.planElementwise(_ctx);
            steps_ = p.steps;
            if (_wantInstr && _pc < steps_) instr_ = LibStream.elementwiseInstr(p, _pc);
        }
    }
}
