// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { ElementOutOfRange, WordNotInWitness } from "../lib/Errors.sol";
import { DT_INT8, DT_INT16, DT_INT32, DT_INT64, ELEMENT_MASK, PAD, Region, StepMemory } from "./VMTypes.sol";

/// @title LibVMMemory
/// @notice Element reads and writes of one step over the witness's proven words: the mirror of
///         `fraud_vm.memory.StepAccess` (`read`, `write`) with the errors `verify_step` names
///         (`ElementOutOfRange` for an element outside its region, `WordNotInWitness` for a word the
///         witness lacks). Element `e` of a region with item size `s` lies in word `e*s / 32` at
///         byte `e*s mod 32`, little-endian; signed dtypes sign-extend (docs/fraud_vm.md
///         "Tensor commitment and memory regions").
library LibVMMemory {
    /// @notice Pack an operand `(region, element)` (`region`, `element` < 2^128).
    function operand(uint256 _region, uint256 _element) internal pure returns (uint256 op_) {
        op_ = (_region << 128) | _element;
    }

    /// @notice The region of a packed operand (not `PAD`).
    function regionOf(uint256 _op) internal pure returns (uint256 region_) {
        region_ = _op >> 128;
    }

    /// @notice The element of a packed operand (not `PAD`).
    function elementOf(uint256 _op) internal pure returns (uint256 element_) {
        element_ = _op & ELEMENT_MASK;
    }

    /// @notice Whether an operand is `PAD`.
    function isPad(uint256 _op) internal pure returns (bool) {
        return _op == PAD;
    }

    /// @notice Index of word `(region, index)` among the witness's words (binary search over the
    ///         sorted addresses); marks it touched. Reverts `WordNotInWitness` if absent.
    function wordIndex(StepMemory memory _m, uint256 _region, uint256 _word) internal pure returns (uint256 i_) {
        uint256 key = (_region << 64) | _word;
        uint256 lo = 0;
        uint256 hi = _m.addrs.length;
        while (lo < hi) {
            uint256 mid = (lo + hi) >> 1;
            uint256 a = _m.addrs[mid];
            if (a == key) {
                _m.touched[mid] = true;
                return mid;
            }
            if (a < key) lo = mid + 1;
            else hi = mid;
        }
        revert WordNotInWitness();
    }

    /// @notice Byte offset of element `_e` of region `_r`; reverts `ElementOutOfRange` outside it.
    function elementOffset(StepMemory memory _m, uint256 _r, uint256 _e) internal pure returns (uint256 off_) {
        // INVARIANT: the region exists and the element lies inside it (`StepAccess.read`'s checks).
        if (_r >= _m.regions.length) revert ElementOutOfRange();
        Region memory reg = _m.regions[_r];
        if (_e >= reg.nbytes / reg.itemsize) revert ElementOutOfRange();
        off_ = _e * reg.itemsize;
    }

    /// @notice Element `_e` of region `_r` (`StepAccess.read`): signed for int8/16/32/64, unsigned
    ///         for uint8/bool, raw bits for float32.
    function read(StepMemory memory _m, uint256 _r, uint256 _e) internal pure returns (int256 v_) {
        uint256 off = elementOffset(_m, _r, _e);
        Region memory reg = _m.regions[_r];
        uint256 w = uint256(_m.values[wordIndex(_m, _r, off >> 5)]);
        uint256 o = off & 31;
        uint256 size = reg.itemsize;
        uint256 u = 0;
        for (uint256 k = 0; k < size; ++k) {
            // byte o+k of the word (byte 0 is the most significant), little-endian in the element
            u |= ((w >> (8 * (31 - o - k))) & 0xff) << (8 * k);
        }
        uint8 dt = reg.dtype;
        if ((dt == DT_INT8 || dt == DT_INT16 || dt == DT_INT32 || dt == DT_INT64) && u >> (8 * size - 1) == 1) {
            v_ = int256(u) - int256(uint256(1) << (8 * size));
        } else {
            v_ = int256(u);
        }
    }

    /// @notice Read a packed operand (`read(region, element)`); the caller handles `PAD`.
    function readOp(StepMemory memory _m, uint256 _op) internal pure returns (int256 v_) {
        v_ = read(_m, _op >> 128, _op & ELEMENT_MASK);
    }

    /// @notice Set element `_e` of region `_r` to `_v` (`StepAccess.write`); `_v` must already fit
    ///         the region's dtype (callers check `ValueOutOfRange` first).
    function write(StepMemory memory _m, uint256 _r, uint256 _e, int256 _v) internal pure {
        uint256 off = elementOffset(_m, _r, _e);
        uint256 size = _m.regions[_r].itemsize;
        uint256 i = wordIndex(_m, _r, off >> 5);
        uint256 w = uint256(_m.values[i]);
        uint256 o = off & 31;
        uint256 u = uint256(_v); // two's complement: the low `size` bytes are the element's
        for (uint256 k = 0; k < size; ++k) {
            uint256 sh = 8 * (31 - o - k);
            w = (w & ~(uint256(0xff) << sh)) | (((u >> (8 * k)) & 0xff) << sh);
        }
        _m.values[i] = bytes32(w);
        _m.written = true;
    }
}
