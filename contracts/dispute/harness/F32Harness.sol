// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { LibExecFloat } from "../vm/LibExecFloat.sol";
import { F32Parts, LibF32 } from "../vm/LibF32.sol";
import { LibVMMemory } from "../vm/LibVMMemory.sol";
import { Instr, Regs, StepMemory } from "../vm/VMTypes.sol";

/// @title F32Harness
/// @notice Exposes `LibF32` and `LibExecFloat` as external functions, for the differential test
///         against `fraud_vm/f32.py` and `fraud_vm/isa.py` (`tests/contracts/test_vm_f32.py`).
///         `multi` runs many calls in one transaction frame (each one's success and return or
///         revert data), so a test checks thousands of cases in a few py-evm calls. Not deployed
///         on L1.
contract F32Harness {
    /// @notice Run each of `_calls` (call data of this contract's functions) as a static call to
    ///         this contract.
    /// @param _calls The call data, one entry per call.
    /// @return ok_ Whether each call succeeded.
    /// @return ret_ Each call's return data, or its revert data.
    function multi(bytes[] calldata _calls) external view returns (bool[] memory ok_, bytes[] memory ret_) {
        ok_ = new bool[](_calls.length);
        ret_ = new bytes[](_calls.length);
        for (uint256 i = 0; i < _calls.length; ++i) {
            (ok_[i], ret_[i]) = address(this).staticcall(_calls[i]);
        }
    }

    /// @notice `LibF32.f32Parts`, flattened.
    function f32Parts(int256 _bits) external pure returns (uint8 cls_, int256 sign_, uint256 m_, int256 e_) {
        F32Parts memory p = LibF32.f32Parts(_bits);
        (cls_, sign_, m_, e_) = (p.cls, p.sign, p.m, p.e);
    }

    /// @notice `LibF32.roundRatioEven`.
    function roundRatioEven(uint256 _p, uint256 _q) external pure returns (uint256) {
        return LibF32.roundRatioEven(_p, _q);
    }

    /// @notice `LibF32.bitLength`.
    function bitLength(uint256 _x) external pure returns (uint256) {
        return LibF32.bitLength(_x);
    }

    /// @notice `LibF32.floorLog2Ratio`.
    function floorLog2Ratio(uint256 _p, uint256 _d) external pure returns (int256) {
        return LibF32.floorLog2Ratio(_p, _d);
    }

    /// @notice `LibF32.f32Rint`.
    function f32Rint(int256 _sign, uint256 _m, int256 _e) external pure returns (int256) {
        return LibF32.f32Rint(_sign, _m, _e);
    }

    /// @notice `LibF32.f32Trunc`.
    function f32Trunc(int256 _sign, uint256 _m, int256 _e) external pure returns (int256) {
        return LibF32.f32Trunc(_sign, _m, _e);
    }

    /// @notice `LibF32.f32RoundScaled`.
    function f32RoundScaled(bool _negative, uint256 _p, uint256 _d, int256 _e2, bool _negativeZero)
        external
        pure
        returns (uint256)
    {
        return LibF32.f32RoundScaled(_negative, _p, _d, _e2, _negativeZero);
    }

    /// @notice `LibF32.f32FromInt`.
    function f32FromInt(int256 _v) external pure returns (uint256) {
        return LibF32.f32FromInt(_v);
    }

    /// @notice `LibF32.f32DivParts` of the finite float32s with bits `_x` and `_y`.
    function f32DivParts(int256 _x, int256 _y, bool _negativeZero) external pure returns (uint256) {
        return LibF32.f32DivParts(LibF32.f32Parts(_x), LibF32.f32Parts(_y), _negativeZero);
    }

    /// @notice `LibF32.f32MulParts` of the finite float32s with bits `_x` and `_y`.
    function f32MulParts(int256 _x, int256 _y) external pure returns (uint256) {
        return LibF32.f32MulParts(LibF32.f32Parts(_x), LibF32.f32Parts(_y));
    }

    /// @notice `LibExecFloat.quantizeValue`.
    function quantizeValue(int256 _bits, int256 _scaleBits, int256 _zp, int256 _lo, int256 _hi)
        external
        pure
        returns (int256)
    {
        return LibExecFloat.quantizeValue(_bits, _scaleBits, _zp, _lo, _hi);
    }

    /// @notice `LibExecFloat.dequantizeValue`.
    function dequantizeValue(int256 _v, int256 _zp, int256 _scaleBits) external pure returns (int256) {
        return LibExecFloat.dequantizeValue(_v, _zp, _scaleBits);
    }

    /// @notice `LibExecFloat.castValue` with the dtype codes checked first (`isa._dtype`).
    function castValue(int256 _v, int256 _src, int256 _dst) external pure returns (int256) {
        return LibExecFloat.castValue(_v, LibExecFloat.checkDType(_src), LibExecFloat.checkDType(_dst));
    }

    /// @notice `LibExecFloat.orderKey`.
    function orderKey(int256 _v, uint8 _dt) external pure returns (int256) {
        return LibExecFloat.orderKey(_v, _dt);
    }

    /// @notice `LibExecFloat.execFloat` on the given memory; returns the words afterwards, which were
    ///         touched, whether any was written, and the gas the execution alone used.
    function execFloat(Instr memory _ins, Regs memory _regs, StepMemory memory _m)
        external
        view
        returns (bytes32[] memory values_, bool[] memory touched_, bool written_, uint256 gas_)
    {
        uint256 before = gasleft();
        LibExecFloat.execFloat(_ins, _regs, _m);
        gas_ = before - gasleft();
        (values_, touched_, written_) = (_m.values, _m.touched, _m.written);
    }

    /// @notice The gas of the memory traffic alone of a QUANT/DEQUANT/CAST step: per lane, read
    ///         `A_l` and write 0 to output element `out[l]` (`LibVMMemory`), no arithmetic. The
    ///         difference to `execFloat`'s gas is the float arithmetic's share.
    function memoryTraffic(Instr memory _ins, StepMemory memory _m) external view returns (uint256 gas_) {
        uint256 before = gasleft();
        uint256 r = _m.regions.length - 1;
        for (uint256 lane = 0; lane < _ins.out.length; ++lane) {
            LibVMMemory.readOp(_m, _ins.a[lane]);
            LibVMMemory.write(_m, r, _ins.out[lane], 0);
        }
        gas_ = before - gasleft();
    }
}
