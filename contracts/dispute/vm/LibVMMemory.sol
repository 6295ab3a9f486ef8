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
        uint256[] memory addrs = _m.addrs;
        bool found;
        // SAFETY: reads `addrs[lo..hi)` only, `hi <= addrs.length`.
        assembly ("memory-safe") {
            let key := or(shl(64, _region), _word)
            let base := add(addrs, 0x20)
            let lo := 0
            let hi := mload(addrs)
            for { } lt(lo, hi) { } {
                let mid := shr(1, add(lo, hi))
                let a := mload(add(base, shl(5, mid)))
                if eq(a, key) {
                    found := 1
                    i_ := mid
                    break
                }
                switch lt(a, key)
                case 1 { lo := add(mid, 1) }
                default { hi := mid }
            }
        }
        // INVARIANT: the step only touches words the witness carries (and proved).
        if (!found) revert WordNotInWitness();
        _m.touched[i_] = true;
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
        (uint256 i, uint256 off, uint256 size, uint256 dt) = _locate(_m, _r, _e);
        uint256 w = uint256(_m.values[i]);
        bool signed = dt == DT_INT8 || dt == DT_INT16 || dt == DT_INT32 || dt == DT_INT64;
        // SAFETY: pure stack arithmetic. Word byte 0 is the most significant; element byte k is
        // word byte `o + k` (little-endian), so the element's bytes are reversed into `u`.
        assembly ("memory-safe") {
            let o := and(off, 31)
            let x := shr(shl(3, sub(32, add(o, size))), w)
            let u := 0
            for { let k := 0 } lt(k, size) { k := add(k, 1) } {
                u := or(shl(8, u), and(x, 0xff))
                x := shr(8, x)
            }
            v_ := u
            if signed { v_ := signextend(sub(size, 1), u) }
        }
    }

    /// @notice `elementOffset` then `wordIndex` in one pass over the memory layout of `StepMemory`
    ///         (regions, addrs, values, touched, written) and `Region` (header, dtype, itemsize,
    ///         nbytes, ...): the witness position of the element's word (marked touched), the
    ///         element's byte offset, item size and dtype. Reverts `ElementOutOfRange` /
    ///         `WordNotInWitness` exactly where those two do.
    function _locate(StepMemory memory _m, uint256 _r, uint256 _e)
        private
        pure
        returns (uint256 i_, uint256 off_, uint256 size_, uint256 dtype_)
    {
        uint256 err;
        // SAFETY: every array is read below its length (regions: `_r` checked; addrs: the search
        // stays in [0, length)); `touched[i_]` is written only for a found `i_ < length`.
        assembly ("memory-safe") {
            let regions := mload(_m)
            switch lt(_r, mload(regions))
            case 0 { err := 1 }
            default {
                let reg := mload(add(add(regions, 0x20), shl(5, _r)))
                size_ := mload(add(reg, 0x40))
                dtype_ := mload(add(reg, 0x20))
                switch lt(_e, div(mload(add(reg, 0x60)), size_))
                case 0 { err := 1 }
                default {
                    off_ := mul(_e, size_)
                    let key := or(shl(64, _r), shr(5, off_))
                    let addrs := mload(add(_m, 0x20))
                    let base := add(addrs, 0x20)
                    let lo := 0
                    let hi := mload(addrs)
                    err := 2
                    for { } lt(lo, hi) { } {
                        let mid := shr(1, add(lo, hi))
                        let a := mload(add(base, shl(5, mid)))
                        if eq(a, key) {
                            err := 0
                            i_ := mid
                            break
                        }
                        switch lt(a, key)
                        case 1 { lo := add(mid, 1) }
                        default { hi := mid }
                    }
                    if iszero(err) { mstore(add(add(mload(add(_m, 0x60)), 0x20), shl(5, i_)), 1) }
                }
            }
        }
        // INVARIANT: the region exists and the element lies inside it (`StepAccess.read`'s checks).
        if (err == 1) revert ElementOutOfRange();
        // INVARIANT: the step only touches words the witness carries (and proved).
        if (err == 2) revert WordNotInWitness();
    }

    /// @notice Read a packed operand (`read(region, element)`); the caller handles `PAD`.
    function readOp(StepMemory memory _m, uint256 _op) internal pure returns (int256 v_) {
        v_ = read(_m, _op >> 128, _op & ELEMENT_MASK);
    }

    /// @notice Set element `_e` of region `_r` to `_v` (`StepAccess.write`); `_v` must already fit
    ///         the region's dtype (callers check `ValueOutOfRange` first).
    function write(StepMemory memory _m, uint256 _r, uint256 _e, int256 _v) internal pure {
        (uint256 i, uint256 off, uint256 size,) = _locate(_m, _r, _e);
        uint256 w = uint256(_m.values[i]);
        // SAFETY: pure stack arithmetic: the low `size` bytes of `_v` (two's complement) replace word
        // bytes `o .. o + size - 1`, least significant first (little-endian).
        assembly ("memory-safe") {
            let o := and(off, 31)
            let u := _v
            for { let k := 0 } lt(k, size) { k := add(k, 1) } {
                let sh := shl(3, sub(31, add(o, k)))
                w := or(and(w, not(shl(sh, 0xff))), shl(sh, and(u, 0xff)))
                u := shr(8, u)
            }
        }
        _m.values[i] = bytes32(w);
        _m.written = true;
    }
}
