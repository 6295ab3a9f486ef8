// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { LibContext } from "../vm/LibContext.sol";
import { ElementwisePlan, LibStream, OP_LAYERNORM, OP_SOFTMAX, RowsPlan } from "../vm/LibStream.sol";
import { Instr, NodeContext } from "../vm/VMTypes.sol";

/// @title StreamHarness
/// @notice Decodes a node context (`LibContext`) and derives its elementwise or rows program
///         (`LibStream`), for the differential test against `fraud_vm.stepper`
///         (`tests/contracts/test_vm_stream.py`). Not deployed on L1.
contract StreamHarness {
    /// @notice `num_steps(ctx)` and `instr_at(ctx, pc)` for each of `_pcs` of an elementwise or rows
    ///         node (`make_plan`'s empty-output NOP included; softmax / layernorm go to
    ///         `planRows`, every other op to `planElementwise`).
    /// @param _context The encoded node context.
    /// @param _pcs The program counters (each below the step count).
    /// @return steps_ The program length.
    /// @return instrs_ The instruction at each of `_pcs`.
    function program(bytes calldata _context, uint256[] calldata _pcs)
        external
        pure
        returns (uint256 steps_, Instr[] memory instrs_)
    {
        NodeContext memory ctx = LibContext.decodeContext(_context);
        instrs_ = new Instr[](_pcs.length);
        if (ctx.tensors[ctx.nInputs].size == 0) return (1, instrs_);
        if (ctx.op == OP_SOFTMAX || ctx.op == OP_LAYERNORM) {
            RowsPlan memory plan = LibStream.planRows(ctx);
            steps_ = plan.steps;
            for (uint256 i = 0; i < _pcs.length; ++i) {
                instrs_[i] = LibStream.rowsInstr(plan, _pcs[i]);
            }
        } else {
            ElementwisePlan memory plan = LibStream.planElementwise(ctx);
            steps_ = plan.steps;
            for (uint256 i = 0; i < _pcs.length; ++i) {
                instrs_[i] = LibStream.elementwiseInstr(plan, _pcs[i]);
            }
        }
    }
}
