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
        v_ = _access(_m, _r, _e, 0, false);
    }

    /// @notice One element access of `StepAccess`, in one pass over the memory layout of
    ///         `StepMemory` (regions, addrs, values, touched, written, hint) and `Region` (header,
    ///         dtype, itemsize, nbytes, ...): `elementOffset`'s checks, `wordIndex`'s lookup (the
    ///         word marked touched), then the read of the element (`_write` false: its value) or
    ///         its write with `_v` (`_write` true: returns 0, `written` set). Reverts
    ///         `ElementOutOfRange` / `WordNotInWitness` exactly where those two do (selectors
    ///         written out, checked by the tests: `ElementOutOfRange()` 0x5e8c93e2,
    ///         `WordNotInWitness()` 0x2a963c0f). The word is looked up first
    ///         at the region's hint and the position after it (consecutive lanes touch consecutive
    ///         elements), then by binary search; the hint moves to the word found. One function
    ///         for both directions: a single call per access, no tuple of locations handed back.
    function _access(StepMemory memory _m, uint256 _r, uint256 _e, int256 _v, bool _write)
        private
        pure
        returns (int256 v_)
    {
        // SAFETY: every array is read below its length (regions: `_r` checked; addrs: positions
        // compared with the length first, the search stays in [0, length); hint: `_r` checked
        // against its length); `touched[i]`, `hint[_r]` and `values[i]` are written only for a
        // found `i` (< length) and a checked `_r`. Word byte 0 is the most significant; element
        // byte k is word byte `o + k` (little-endian), so element bytes are reversed both ways.
        assembly ("memory-safe") {
            let size := 0
            let dt := 0
            {
                let regions := mload(_m)
                // INVARIANT: the region exists and the element lies inside it (`StepAccess.read`).
                if iszero(lt(_r, mload(regions))) {
                    mstore(0, shl(224, 0x5e8c93e2)) // ElementOutOfRange()
                    revert(0, 4)
                }
                let reg := mload(add(regions, shl(5, add(_r, 1))))
                size := mload(add(reg, 0x40))
                dt := mload(add(reg, 0x20))
                if iszero(lt(_e, div(mload(add(reg, 0x60)), size))) {
                    mstore(0, shl(224, 0x5e8c93e2)) // ElementOutOfRange()
                    revert(0, 4)
                }
            }
            let off := mul(_e, size)
            let i := 0
            {
                let key := or(shl(64, _r), shr(5, off))
                let addrs := mload(add(_m, 0x20))
                let n := mload(addrs)
                i := n
                let hslot := 0
                let hint := mload(add(_m, 0xa0))
                if lt(_r, mload(hint)) {
                    hslot := add(hint, shl(5, add(_r, 1)))
                    let h := mload(hslot)
                    if lt(h, n) {
                        let a := mload(add(addrs, shl(5, add(h, 1))))
                        switch eq(a, key)
                        case 1 { i := h }
                        default {
                            if and(lt(a, key), lt(add(h, 1), n)) {
                                if eq(mload(add(addrs, shl(5, add(h, 2)))), key) { i := add(h, 1) }
                            }
                        }
                    }
                }
                if eq(i, n) {
                    let lo := 0
                    let hi := n
                    for { } lt(lo, hi) { } {
                        let mid := shr(1, add(lo, hi))
                        let a := mload(add(addrs, shl(5, add(mid, 1))))
                        if eq(a, key) {
                            i := mid
                            break
                        }
                        switch lt(a, key)
                        case 1 { lo := add(mid, 1) }
                        default { hi := mid }
                    }
                }
                // INVARIANT: the step only touches words the witness carries (and proved).
                if eq(i, n) {
                    mstore(0, shl(224, 0x2a963c0f)) // WordNotInWitness()
                    revert(0, 4)
                }
                if hslot { mstore(hslot, i) }
            }
            i := shl(5, add(i, 1))
            mstore(add(mload(add(_m, 0x60)), i), 1)
            let slot := add(mload(add(_m, 0x40)), i)
            let o := and(off, 31)
            switch _write
            case 0 {
                let w := mload(slot)
                let u := byte(o, w)
                if gt(size, 1) {
                    u := or(u, shl(8, byte(add(o, 1), w)))
                    if gt(size, 2) {
                        u := or(u, or(shl(16, byte(add(o, 2), w)), shl(24, byte(add(o, 3), w))))
                        if gt(size, 4) {
                            u := or(
                                u,
                                or(
                                    or(shl(32, byte(add(o, 4), w)), shl(40, byte(add(o, 5), w))),
                                    or(shl(48, byte(add(o, 6), w)), shl(56, byte(add(o, 7), w)))
                                )
                            )
                        }
                    }
                }
                v_ := u
                // int8 1, int16 3, int32 4, int64 5 (`DT_*`) are signed
                if or(eq(dt, DT_INT8), lt(sub(dt, DT_INT16), 3)) { v_ := signextend(sub(size, 1), u) }
            }
            default {
                // the low `size` bytes of `_v` (two's complement), least significant first
                let rev := and(_v, 0xff)
                for { let k := 1 } lt(k, size) { k := add(k, 1) } {
                    rev := or(shl(8, rev), and(shr(shl(3, k), _v), 0xff))
                }
                let sh := shl(3, sub(32, add(o, size)))
                let mask := shl(sh, sub(shl(shl(3, size), 1), 1))
                mstore(slot, or(and(mload(slot), not(mask)), shl(sh, rev)))
                mstore(add(_m, 0x80), 1)
            }
        }
    }

    /// @notice Read a packed operand (`read(region, element)`); the caller handles `PAD`.
    function readOp(StepMemory memory _m, uint256 _op) internal pure returns (int256 v_) {
        v_ = read(_m, _op >> 128, _op & ELEMENT_MASK);
    }

    /// @notice Set element `_e` of region `_r` to `_v` (`StepAccess.write`); `_v` must already fit
    ///         the region's dtype (callers check `ValueOutOfRange` first).
    function write(StepMemory memory _m, uint256 _r, uint256 _e, int256 _v) internal pure {
        _access(_m, _r, _e, _v, true);
    }
}
