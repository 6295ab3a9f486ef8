// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { ArithmeticOverflow, InvalidDType, InvalidScale, NanOperand, ValueOutOfRange } from "../lib/Errors.sol";
import { LibChecked } from "./LibChecked.sol";
import { F32_FINITE, F32_NAN, F32_POS_INF, F32Parts, LibF32 } from "./LibF32.sol";
import { LibVMMemory } from "./LibVMMemory.sol";
import {
    DT_BOOL,
    DT_FLOAT32,
    DT_INT16,
    DT_INT32,
    DT_INT64,
    DT_INT8,
    DT_UINT8,
    Instr,
    K_CAST,
    K_DEQUANT,
    K_QUANT,
    Regs,
    StepMemory
} from "./VMTypes.sol";

/// @title LibExecFloat
/// @notice The float32 instructions of the fraud VM, QUANT, DEQUANT and CAST: the mirror of
///         `fraud_vm.isa`'s float32 steps (`quantize_value`, `dequantize_value`, `cast_value`,
///         `order_key`, `_scale`, `_dtype`, `_RANGE` and the `_elementwise` lane loop with its
///         `ValueOutOfRange` store check), with the same checks in the same order and the same
///         error names (docs/fraud_vm.md "Instructions", "Arithmetic bounds"). Arithmetic is on
///         integers only (`LibF32`); an int256 intermediate that overflows reverts
///         `ArithmeticOverflow`, as Python's `i256`.
library LibExecFloat {
    /// @notice The element values a region of dtype `_dt` stores (`isa._RANGE`; float32: its raw
    ///         bits `[0, 2^32)`, bool: 0/1).
    /// @param _dt A dtype code.
    /// @return lo_ The lowest storable value.
    /// @return hi_ The highest storable value.
    function valueRange(uint8 _dt) internal pure returns (int256 lo_, int256 hi_) {
        if (_dt == DT_INT8) return (-128, 127);
        if (_dt == DT_UINT8) return (0, 255);
        if (_dt == DT_INT16) return (-(int256(1) << 15), (int256(1) << 15) - 1);
        if (_dt == DT_INT32) return (-(int256(1) << 31), (int256(1) << 31) - 1);
        if (_dt == DT_INT64) return (-(int256(1) << 63), (int256(1) << 63) - 1);
        if (_dt == DT_FLOAT32) return (0, (int256(1) << 32) - 1);
        if (_dt == DT_BOOL) return (0, 1);
        revert InvalidDType();
    }

    /// @notice The dtype with code `_code` (`isa._dtype`), else `InvalidDType`.
    /// @param _code An immediate naming a dtype.
    /// @return dt_ The dtype code.
    function checkDType(int256 _code) internal pure returns (uint8 dt_) {
        // INVARIANT: the code names a dtype of `opml.bundle.DType` (1..7).
        if (_code < int256(uint256(DT_INT8)) || _code > int256(uint256(DT_BOOL))) revert InvalidDType();
        dt_ = uint8(uint256(_code));
    }

    /// @notice An integer with the same order as the element value `_v` of dtype `_dt`
    ///         (`order_key`): the value itself, for float32 the value order with `-0 == +0` and NaN
    ///         (`2^32`) above everything (`np.argmax`'s order).
    /// @param _v The element value (float32: raw bits).
    /// @param _dt The element's dtype code.
    /// @return k_ The key.
    function orderKey(int256 _v, uint8 _dt) internal pure returns (int256 k_) {
        if (_dt != DT_FLOAT32) return _v;
        int256 mag = _v & 0x7FFFFFFF;
        if (mag > 0x7F800000) return int256(1) << 32;
        k_ = (_v >> 31) != 0 ? -mag : _v;
    }

    /// @notice The scale's decomposition and whether it is valid (`isa._scale` without its
    ///         revert): a finite float32 and, if `_positive`, a positive non-zero one.
    /// @param _scaleBits The scale's bits (an immediate).
    /// @param _positive Whether the scale must be > 0 (quantize).
    /// @return sc_ The scale's decomposition (meaningful only if `ok_`).
    /// @return ok_ Whether the scale is valid.
    function scaleParts(int256 _scaleBits, bool _positive) internal pure returns (F32Parts memory sc_, bool ok_) {
        if (_scaleBits < 0 || _scaleBits >= int256(1) << 32) return (sc_, false);
        sc_ = LibF32.f32Parts(_scaleBits);
        ok_ = sc_.cls == F32_FINITE && !(_positive && (sc_.sign < 0 || sc_.m == 0));
    }

    /// @notice The scale's decomposition (`isa._scale`): `InvalidScale` unless `_scaleBits` is a
    ///         finite float32, and, if `_positive`, a positive non-zero one.
    /// @param _scaleBits The scale's bits (an immediate).
    /// @param _positive Whether the scale must be > 0 (quantize).
    /// @return sc_ The scale's decomposition.
    function scale(int256 _scaleBits, bool _positive) internal pure returns (F32Parts memory sc_) {
        bool ok;
        (sc_, ok) = scaleParts(_scaleBits, _positive);
        // INVARIANT: the scale is a float32 bit pattern, finite (and > 0 when `_positive`).
        if (!ok) revert InvalidScale();
    }

    /// @notice `LibChecked.clamp(rint(float32(x / scale)) + zp, lo, hi)` for float32 bit patterns
    ///         (`quantize_value`).
    /// @param _bits The input element (float32 bits).
    /// @param _scaleBits The scale's bits.
    /// @param _zp The zero point.
    /// @param _lo The lowest output value.
    /// @param _hi The highest output value.
    /// @return q_ The quantized value.
    function quantizeValue(int256 _bits, int256 _scaleBits, int256 _zp, int256 _lo, int256 _hi)
        internal
        pure
        returns (int256 q_)
    {
        (F32Parts memory sc, bool ok) = scaleParts(_scaleBits, true);
        q_ = quantizeScaled(_bits, sc, ok, _zp, _lo, _hi);
    }

    /// @notice `quantizeValue` with the scale already decomposed by `scaleParts` (an instruction's
    ///         lanes share it): the same checks in the same order (the input's NaN check first, then
    ///         the scale's).
    /// @param _bits The input element (float32 bits).
    /// @param _sc The scale's decomposition.
    /// @param _scaleOk Whether the scale is valid (`InvalidScale` otherwise).
    /// @param _zp The zero point.
    /// @param _lo The lowest output value.
    /// @param _hi The highest output value.
    /// @return q_ The quantized value.
    function quantizeScaled(int256 _bits, F32Parts memory _sc, bool _scaleOk, int256 _zp, int256 _lo, int256 _hi)
        internal
        pure
        returns (int256 q_)
    {
        F32Parts memory x = LibF32.f32Parts(_bits);
        // INVARIANT: the input is a number.
        if (x.cls == F32_NAN) revert NanOperand();
        // INVARIANT: the scale is a finite positive float32.
        if (!_scaleOk) revert InvalidScale();
        if (x.cls != F32_FINITE) return x.cls == F32_POS_INF ? _hi : _lo;
        F32Parts memory q = LibF32.f32Parts(int256(LibF32.f32DivParts(x, _sc, false)));
        if (q.cls != F32_FINITE) return q.cls == F32_POS_INF ? _hi : _lo;
        // INVARIANT: rint(q) + zp is an int256.
        q_ = LibChecked.clamp(LibChecked.add(LibF32.f32Rint(q.sign, q.m, q.e), _zp), _lo, _hi);
    }

    /// @notice Bits of `float32(_v - _zp) * float32(scale)` (`dequantize_value`).
    /// @param _v The input element (an integer).
    /// @param _zp The zero point.
    /// @param _scaleBits The scale's bits.
    /// @return bits_ The float32 bits.
    function dequantizeValue(int256 _v, int256 _zp, int256 _scaleBits) internal pure returns (int256 bits_) {
        (F32Parts memory sc, bool ok) = scaleParts(_scaleBits, false);
        bits_ = dequantizeScaled(_v, _zp, sc, ok);
    }

    /// @notice `dequantizeValue` with the scale already decomposed by `scaleParts`: the same checks
    ///         in the same order (the scale's first).
    /// @param _v The input element (an integer).
    /// @param _zp The zero point.
    /// @param _sc The scale's decomposition.
    /// @param _scaleOk Whether the scale is valid (`InvalidScale` otherwise).
    /// @return bits_ The float32 bits.
    function dequantizeScaled(int256 _v, int256 _zp, F32Parts memory _sc, bool _scaleOk)
        internal
        pure
        returns (int256 bits_)
    {
        // INVARIANT: the scale is a finite float32.
        if (!_scaleOk) revert InvalidScale();
        // INVARIANT: v - zp is an int256, and its float32 is finite (|v - zp| < 2^128).
        F32Parts memory a = LibF32.f32Parts(int256(LibF32.f32FromInt(LibChecked.sub(_v, _zp))));
        if (a.cls != F32_FINITE) revert ArithmeticOverflow();
        bits_ = int256(LibF32.f32MulParts(a, _sc));
    }

    /// @notice numpy `astype` as the engine's cast kernel (`cast_value`): float -> int truncates and
    ///         saturates (NaN: `NanOperand`), int -> int wraps (two's complement), -> bool is
    ///         `!= 0`, -> float32 rounds to nearest even.
    /// @param _v The element value (float32: raw bits).
    /// @param _src The source dtype code (valid).
    /// @param _dst The destination dtype code (valid).
    /// @return r_ The cast value.
    function castValue(int256 _v, uint8 _src, uint8 _dst) internal pure returns (int256 r_) {
        if (_src == _dst) return _v;
        if (_dst == DT_BOOL) {
            if (_src == DT_FLOAT32) return (_v & 0x7FFFFFFF) != 0 ? int256(1) : int256(0);
            return _v != 0 ? int256(1) : int256(0);
        }
        (int256 lo, int256 hi) = valueRange(_dst);
        if (_src == DT_FLOAT32) {
            F32Parts memory x = LibF32.f32Parts(_v);
            // INVARIANT: only a number converts to an integer type.
            if (x.cls == F32_NAN) revert NanOperand();
            if (x.cls != F32_FINITE) return x.cls == F32_POS_INF ? hi : lo;
            return LibChecked.clamp(LibF32.f32Trunc(x.sign, x.m, x.e), lo, hi);
        }
        if (_dst == DT_FLOAT32) return int256(LibF32.f32FromInt(_v));
        // SAFETY: wrapping arithmetic is exact here: hi - lo + 1 is a power of two dividing 2^256, so
        // ((v - lo) mod 2^256) & (hi - lo) is Python's (v - lo) & (hi - lo), and + lo lands in [lo, hi].
        unchecked {
            r_ = ((_v - lo) & (hi - lo)) + lo;
        }
    }

    /// @notice Execute one QUANT, DEQUANT or CAST instruction (`isa._elementwise` for these kinds):
    ///         per lane in order, read `A_l`, evaluate, check the value fits the output region's
    ///         dtype (`ValueOutOfRange`) and write output element `out[l]` (the last region).
    /// @dev QUANT `imm = (scale bits, zp, lo, hi)`, DEQUANT `imm = (zp, scale bits)`, CAST
    ///      `imm = (src dtype, dst dtype)` (checked per lane before the read, as Python). The scale
    ///      is decomposed once per instruction; each lane raises `InvalidScale` where Python's
    ///      `_scale` would (QUANT: after the input's NaN check; DEQUANT: after the read). The
    ///      registers are not used by these kinds. Any other kind is a dispatch bug (Panic 0x01).
    /// @param _ins The instruction.
    /// @param _m The step's memory (written in place).
    function execFloat(Instr memory _ins, Regs memory, StepMemory memory _m) internal pure {
        uint8 kind = _ins.kind;
        assert(kind == K_QUANT || kind == K_DEQUANT || kind == K_CAST);
        uint256 r = _m.regions.length - 1;
        (int256 lo, int256 hi) = valueRange(_m.regions[r].dtype);
        uint256 n = _ins.out.length;
        // the lanes share the scale: decomposed once (no lane, no immediates read), its check
        // raised where each lane makes it
        F32Parts memory sc;
        bool scaleOk;
        if (n > 0 && kind == K_QUANT) (sc, scaleOk) = scaleParts(_ins.imm[0], true);
        else if (n > 0 && kind == K_DEQUANT) (sc, scaleOk) = scaleParts(_ins.imm[1], false);
        for (uint256 lane = 0; lane < n; ++lane) {
            int256 v = floatLane(_ins, _m, lane, sc, scaleOk);
            // INVARIANT: the value fits the output region's dtype (`_store`).
            if (v < lo || v > hi) revert ValueOutOfRange();
            LibVMMemory.write(_m, r, _ins.out[lane], v);
        }
    }

    /// @notice One lane of `execFloat`: read `A_l` and evaluate (CAST checks its dtype codes first).
    /// @param _ins The instruction (QUANT, DEQUANT or CAST).
    /// @param _m The step's memory.
    /// @param _lane The lane.
    /// @param _sc The scale's decomposition (QUANT, DEQUANT).
    /// @param _scaleOk Whether the scale is valid.
    /// @return v_ The value to store.
    function floatLane(Instr memory _ins, StepMemory memory _m, uint256 _lane, F32Parts memory _sc, bool _scaleOk)
        private
        pure
        returns (int256 v_)
    {
        int256[] memory im = _ins.imm;
        if (_ins.kind == K_QUANT) {
            v_ = quantizeScaled(LibVMMemory.readOp(_m, _ins.a[_lane]), _sc, _scaleOk, im[1], im[2], im[3]);
        } else if (_ins.kind == K_DEQUANT) {
            v_ = dequantizeScaled(LibVMMemory.readOp(_m, _ins.a[_lane]), im[0], _sc, _scaleOk);
        } else {
            uint8 src = checkDType(im[0]);
            uint8 dst = checkDType(im[1]);
            v_ = castValue(LibVMMemory.readOp(_m, _ins.a[_lane]), src, dst);
        }
    }
}
