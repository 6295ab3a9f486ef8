// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { ArithmeticOverflow, MalformedState } from "../lib/Errors.sol";
import { Regs } from "./VMTypes.sol";

/// @notice One state of a node's run (`fraud_vm.state.VMState`).
/// @custom:field contextHash keccak256 of the node context.
/// @custom:field memoryRoot The root of the region tree.
/// @custom:field step Instructions executed so far (the `pc` of the next one), < 2^64.
/// @custom:field status 0 RUNNING, 1 HALTED.
/// @custom:field regs The scalar registers and the int64 `acc` / `aux` lanes.
struct VMState {
    bytes32 contextHash;
    bytes32 memoryRoot;
    uint256 step;
    uint256 status;
    Regs regs;
}

/// @title LibVMState
/// @notice The 800-byte state encoding (`fraud_vm.state`, docs/fraud_vm.md "State"): 25 words:
///         context hash, memory root, step, status, `s0..s3` (int256), `acc[0..31]` and
///         `aux[0..31]` (int64 lanes, four per word, lane `4w+i` in bytes `[8i, 8i+8)`, big-endian
///         two's complement), a zero reserved word. `stateHash = keccak256(encoding)`.
library LibVMState {
    /// @dev Bytes of an encoded state (`fraud_vm.state.STATE_BYTES`).
    uint256 internal constant STATE_BYTES = 800;
    /// @dev `status` of a state that can take a step.
    uint256 internal constant RUNNING = 0;
    /// @dev `status` after the program's last instruction.
    uint256 internal constant HALTED = 1;

    /// @notice Decode a state encoding (`decode_state`).
    /// @dev Reverts `MalformedState` for a length other than 800, a status other than 0/1, a step
    ///      `>= 2^64` or a nonzero reserved word.
    /// @param _data The encoding.
    /// @return s_ The state.
    function decodeState(bytes calldata _data) internal pure returns (VMState memory s_) {
        s_ = decodeHead(_data);
        decodeLanes(_data, s_.regs);
    }

    /// @notice `decodeState` without the lanes: every check, the head words and the scalars;
    ///         `acc` / `aux` stay zero in memory (`decodeLanes` fills them). A step whose
    ///         instruction never reads or writes the lanes (`usesLanes` false) needs no more, and
    ///         hashes its post-state with `stateHashSameLanes`.
    /// @param _data The encoding.
    /// @return s_ The state (lanes zero).
    function decodeHead(bytes calldata _data) internal pure returns (VMState memory s_) {
        // INVARIANT: a state is exactly 25 words.
        if (_data.length != STATE_BYTES) revert MalformedState();
        uint256 o;
        assembly ("memory-safe") {
            o := _data.offset
        }
        uint256 step_ = _load(o, 2);
        uint256 status_ = _load(o, 3);
        // INVARIANT: canonical encoding: status 0/1, step < 2^64, reserved word zero.
        if (status_ > 1 || step_ >> 64 != 0 || _load(o, 24) != 0) revert MalformedState();
        s_.contextHash = bytes32(_load(o, 0));
        s_.memoryRoot = bytes32(_load(o, 1));
        s_.step = step_;
        s_.status = status_;
        Regs memory r = s_.regs;
        // SAFETY: `Regs` in memory is three pointers to its arrays of 4, 32 and 32 words (allocated
        // with the struct); the scalars are words 4..7.
        assembly ("memory-safe") {
            let sp := mload(r)
            mstore(sp, calldataload(add(o, 0x80)))
            mstore(add(sp, 0x20), calldataload(add(o, 0xa0)))
            mstore(add(sp, 0x40), calldataload(add(o, 0xc0)))
            mstore(add(sp, 0x60), calldataload(add(o, 0xe0)))
        }
    }

    /// @notice The `acc` / `aux` lanes of an encoding (length checked by `decodeHead`) into `_r`:
    ///         each lane is the low 8 bytes of its shifted word, sign-extended.
    /// @param _data The encoding.
    /// @param _r The registers to fill.
    function decodeLanes(bytes calldata _data, Regs memory _r) internal pure {
        // SAFETY: `Regs` in memory is three pointers to its arrays of 4, 32 and 32 words; words
        // 8..23 of the 800 calldata bytes are read.
        assembly ("memory-safe") {
            let o := _data.offset
            let accp := mload(add(_r, 0x20))
            let auxp := mload(add(_r, 0x40))
            for { let w := 0 } lt(w, 8) { w := add(w, 1) } {
                let accWord := calldataload(add(o, shl(5, add(8, w))))
                let auxWord := calldataload(add(o, shl(5, add(16, w))))
                let at := add(accp, shl(7, w))
                mstore(at, signextend(7, shr(192, accWord)))
                mstore(add(at, 0x20), signextend(7, shr(128, accWord)))
                mstore(add(at, 0x40), signextend(7, shr(64, accWord)))
                mstore(add(at, 0x60), signextend(7, accWord))
                at := add(auxp, shl(7, w))
                mstore(at, signextend(7, shr(192, auxWord)))
                mstore(add(at, 0x20), signextend(7, shr(128, auxWord)))
                mstore(add(at, 0x40), signextend(7, shr(64, auxWord)))
                mstore(add(at, 0x60), signextend(7, auxWord))
            }
        }
    }

    /// @notice Whether instructions of kind `_kind` read or write the `acc` / `aux` lanes (the
    ///         blocked family's MAC, ACC_*, FIN_*: codes 1..8); the others touch only the scalars
    ///         and memory.
    /// @param _kind An instruction kind code.
    /// @return True for kinds 1..8.
    function usesLanes(uint8 _kind) internal pure returns (bool) {
        return _kind >= 1 && _kind <= 8;
    }

    /// @notice `stateHash(_s)` for a state whose lanes are those of the encoding `_pre` (a step
    ///         that did not touch them): the head and scalars from `_s`, words 8..23 copied from
    ///         `_pre`, a zero reserved word. Equal to `stateHash` with the lanes decoded, whose
    ///         int64 check cannot fail on lanes read from an encoding.
    /// @param _s The state (its lanes are ignored).
    /// @param _pre The pre-state encoding (800 bytes, checked by `decodeHead`).
    /// @return hash_ The state hash.
    function stateHashSameLanes(VMState memory _s, bytes calldata _pre) internal pure returns (bytes32 hash_) {
        // INVARIANT: the step fits the encoding's uint64 range.
        if (_s.step >> 64 != 0) revert MalformedState();
        Regs memory r = _s.regs;
        // SAFETY: 800 bytes are written at the free memory pointer (scratch: the pointer does not
        // move, nothing is allocated before the hash is taken).
        assembly ("memory-safe") {
            let d := mload(0x40)
            mcopy(d, _s, 0x80)
            mcopy(add(d, 0x80), mload(r), 0x80)
            calldatacopy(add(d, 0x100), add(_pre.offset, 0x100), 0x200)
            mstore(add(d, 0x300), 0)
            hash_ := keccak256(d, STATE_BYTES)
        }
    }

    /// @notice `stateHash(_s)` for a state whose lanes are all zero (after a block finisher,
    ///         FIN_*, which clears them): the head and scalars from `_s`, zero lane words, a zero
    ///         reserved word. Equal to `stateHash` with every lane zero.
    /// @param _s The state (its lanes are ignored).
    /// @return hash_ The state hash.
    function stateHashZeroLanes(VMState memory _s) internal pure returns (bytes32 hash_) {
        // INVARIANT: the step fits the encoding's uint64 range.
        if (_s.step >> 64 != 0) revert MalformedState();
        Regs memory r = _s.regs;
        // SAFETY: 800 bytes are written at the free memory pointer (scratch, as in
        // `stateHashSameLanes`); zeros are copied from past the calldata's end (EIP-211).
        assembly ("memory-safe") {
            let d := mload(0x40)
            mcopy(d, _s, 0x80)
            mcopy(add(d, 0x80), mload(r), 0x80)
            calldatacopy(add(d, 0x100), calldatasize(), 0x220)
            hash_ := keccak256(d, STATE_BYTES)
        }
    }

    /// @notice The first `_n` lanes of `acc` and `aux` (rounded up to whole words of four, at
    ///         most 32) of an encoding (length checked by `decodeHead`) into `_r`, as `decodeLanes`
    ///         does for all 32; the others stay as they are.
    /// @param _data The encoding.
    /// @param _r The registers to fill.
    /// @param _n The lanes needed.
    function decodeLanesPrefix(bytes calldata _data, Regs memory _r, uint256 _n) internal pure {
        // SAFETY: as `decodeLanes`, over words 8..8+nw and 16..16+nw (nw <= 8).
        assembly ("memory-safe") {
            let o := _data.offset
            let accp := mload(add(_r, 0x20))
            let auxp := mload(add(_r, 0x40))
            let nw := shr(2, add(_n, 3))
            if gt(nw, 8) { nw := 8 }
            for { let w := 0 } lt(w, nw) { w := add(w, 1) } {
                let accWord := calldataload(add(o, shl(5, add(8, w))))
                let auxWord := calldataload(add(o, shl(5, add(16, w))))
                let at := add(accp, shl(7, w))
                mstore(at, signextend(7, shr(192, accWord)))
                mstore(add(at, 0x20), signextend(7, shr(128, accWord)))
                mstore(add(at, 0x40), signextend(7, shr(64, accWord)))
                mstore(add(at, 0x60), signextend(7, accWord))
                at := add(auxp, shl(7, w))
                mstore(at, signextend(7, shr(192, auxWord)))
                mstore(add(at, 0x20), signextend(7, shr(128, auxWord)))
                mstore(add(at, 0x40), signextend(7, shr(64, auxWord)))
                mstore(add(at, 0x60), signextend(7, auxWord))
            }
        }
    }

    /// @notice Encode a state (`encode_state`).
    /// @dev Reverts `ArithmeticOverflow` for a lane outside int64 and `MalformedState` for a step
    ///      `>= 2^64` (as Python's `encode_state`; the verifier's post-state never has either).
    /// @param _s The state.
    /// @return data_ The 800-byte encoding.
    function encodeState(VMState memory _s) internal pure returns (bytes memory data_) {
        // INVARIANT: the step fits the encoding's uint64 range.
        if (_s.step >> 64 != 0) revert MalformedState();
        data_ = new bytes(STATE_BYTES);
        Regs memory r = _s.regs;
        bool overflow;
        // SAFETY: writes stay inside the 800 bytes of `data_`; `Regs` is three array pointers (see
        // `decodeState`). A lane fits int64 iff sign-extending its low 8 bytes gives it back.
        assembly ("memory-safe") {
            let d := add(data_, 0x20)
            mcopy(d, _s, 0x80)
            mcopy(add(d, 0x80), mload(r), 0x80)
            let accp := mload(add(r, 0x20))
            let auxp := mload(add(r, 0x40))
            let mask := 0xffffffffffffffff
            for { let w := 0 } lt(w, 8) { w := add(w, 1) } {
                let at := shl(7, w)
                let a0 := mload(add(accp, at))
                let a1 := mload(add(accp, add(at, 0x20)))
                let a2 := mload(add(accp, add(at, 0x40)))
                let a3 := mload(add(accp, add(at, 0x60)))
                let x0 := mload(add(auxp, at))
                let x1 := mload(add(auxp, add(at, 0x20)))
                let x2 := mload(add(auxp, add(at, 0x40)))
                let x3 := mload(add(auxp, add(at, 0x60)))
                // a lane fits int64 iff sign-extending its low 8 bytes gives it back
                overflow := or(
                    overflow,
                    or(
                        or(
                            or(iszero(eq(signextend(7, a0), a0)), iszero(eq(signextend(7, a1), a1))),
                            or(iszero(eq(signextend(7, a2), a2)), iszero(eq(signextend(7, a3), a3)))
                        ),
                        or(
                            or(iszero(eq(signextend(7, x0), x0)), iszero(eq(signextend(7, x1), x1))),
                            or(iszero(eq(signextend(7, x2), x2)), iszero(eq(signextend(7, x3), x3)))
                        )
                    )
                )
                mstore(
                    add(d, shl(5, add(8, w))),
                    or(or(shl(192, and(a0, mask)), shl(128, and(a1, mask))), or(shl(64, and(a2, mask)), and(a3, mask)))
                )
                mstore(
                    add(d, shl(5, add(16, w))),
                    or(or(shl(192, and(x0, mask)), shl(128, and(x1, mask))), or(shl(64, and(x2, mask)), and(x3, mask)))
                )
            }
        }
        // INVARIANT: a lane value outside int64 never reaches a state.
        if (overflow) revert ArithmeticOverflow();
    }

    /// @notice `keccak256(encodeState(_s))` (`VMState.hash`).
    /// @param _s The state.
    /// @return hash_ The state hash.
    function stateHash(VMState memory _s) internal pure returns (bytes32 hash_) {
        hash_ = keccak256(encodeState(_s));
    }

    /// @notice Calldata word `_i` of an encoding starting at calldata offset `_o`.
    function _load(uint256 _o, uint256 _i) private pure returns (uint256 w_) {
        assembly ("memory-safe") {
            w_ := calldataload(add(_o, shl(5, _i)))
        }
    }
}
