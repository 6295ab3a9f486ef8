// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { LibChecked } from "../vm/LibChecked.sol";
import { LibExecInt } from "../vm/LibExecInt.sol";
import { Instr, Regs, StepMemory } from "../vm/VMTypes.sol";

/// @title ExecHarness
/// @notice Exposes `LibExecInt` for the differential test against `fraud_vm.isa`
///         (`tests/contracts/test_vm_exec_int.py`): `exec` runs one instruction, `helpers` runs
///         the checked integer helpers over many argument lists in one call. Not deployed on L1.
contract ExecHarness {
    /// @notice Execute one integer instruction; returns the registers and the witness memory after it.
    function exec(Instr memory _ins, Regs memory _regs, StepMemory memory _m)
        external
        pure
        returns (Regs memory regs_, StepMemory memory m_)
    {
        LibExecInt.execInt(_ins, _regs, _m);
        regs_ = _regs;
        m_ = _m;
    }

    /// @notice The gas `LibExecInt.execInt` alone uses on these inputs (decoding excluded).
    function execGas(Instr memory _ins, Regs memory _regs, StepMemory memory _m) external view returns (uint256 gas_) {
        gas_ = gasleft();
        LibExecInt.execInt(_ins, _regs, _m);
        gas_ -= gasleft();
    }

    /// @notice Helper `_fn` of `LibExecInt` on `_args`: 0 add, 1 sub, 2 mul, 3 floorDiv, 4 i64,
    ///         5 shl, 6 roundShift, 7 roundDiv, 8 requant, 9 isqrt, 10 orderKey, 11 clamp, 12 castBool.
    function helper(uint8 _fn, int256[] calldata _args) external pure returns (int256) {
        if (_fn == 0) return LibChecked.add(_args[0], _args[1]);
        if (_fn == 1) return LibChecked.sub(_args[0], _args[1]);
        if (_fn == 2) return LibChecked.mul(_args[0], _args[1]);
        if (_fn == 3) return LibChecked.floorDiv(_args[0], _args[1]);
        if (_fn == 4) return LibChecked.i64(_args[0]);
        if (_fn == 5) return LibChecked.shl(_args[0], _args[1]);
        if (_fn == 6) return LibChecked.roundShift(_args[0], _args[1]);
        if (_fn == 7) return LibChecked.roundDiv(_args[0], _args[1]);
        if (_fn == 8) return LibChecked.requant(_args[0], _args[1], _args[2], _args[3], _args[4], _args[5]);
        if (_fn == 9) return LibChecked.isqrt(_args[0]);
        if (_fn == 10) return LibExecInt.orderKey(_args[0], uint8(uint256(_args[1])));
        if (_fn == 11) return LibChecked.clamp(_args[0], _args[1], _args[2]);
        return LibExecInt.castBool(_args[0], _args[1]) ? int256(1) : int256(0);
    }

    /// @notice `helper(_fn, args)` for each argument list; `errors_[i]` is the revert data's
    ///         first 4 bytes (zero when it returned `values_[i]`).
    function helpers(uint8 _fn, int256[][] calldata _args)
        external
        view
        returns (int256[] memory values_, bytes4[] memory errors_)
    {
        values_ = new int256[](_args.length);
        errors_ = new bytes4[](_args.length);
        for (uint256 i = 0; i < _args.length; ++i) {
            try this.helper(_fn, _args[i]) returns (int256 v) {
                values_[i] = v;
            } catch (bytes memory reason) {
                errors_[i] = reason.length >= 4 ? bytes4(reason) : bytes4(0xffffffff);
            }
        }
    }
}
