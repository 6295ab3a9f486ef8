// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { ArithmeticOverflow, MalformedState } from "../lib/Errors.sol";
import { LANES, N_SCALARS, Regs } from "./VMTypes.sol";

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
        for (uint256 i = 0; i < N_SCALARS; ++i) {
            r.s[i] = int256(_load(o, 4 + i));
        }
        for (uint256 w = 0; w < LANES / 4; ++w) {
            uint256 accWord = _load(o, 8 + w);
            uint256 auxWord = _load(o, 16 + w);
            for (uint256 i = 0; i < 4; ++i) {
                uint256 sh = 192 - 64 * i;
                r.acc[4 * w + i] = int256(int64(uint64(accWord >> sh)));
                r.aux[4 * w + i] = int256(int64(uint64(auxWord >> sh)));
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
        _store(data_, 0, uint256(_s.contextHash));
        _store(data_, 1, uint256(_s.memoryRoot));
        _store(data_, 2, _s.step);
        _store(data_, 3, _s.status);
        for (uint256 i = 0; i < N_SCALARS; ++i) {
            _store(data_, 4 + i, uint256(r.s[i]));
        }
        for (uint256 w = 0; w < LANES / 4; ++w) {
            uint256 accWord;
            uint256 auxWord;
            for (uint256 i = 0; i < 4; ++i) {
                uint256 sh = 192 - 64 * i;
                accWord |= _lane(r.acc[4 * w + i]) << sh;
                auxWord |= _lane(r.aux[4 * w + i]) << sh;
            }
            _store(data_, 8 + w, accWord);
            _store(data_, 16 + w, auxWord);
        }
    }

    /// @notice `keccak256(encodeState(_s))` (`VMState.hash`).
    /// @param _s The state.
    /// @return hash_ The state hash.
    function stateHash(VMState memory _s) internal pure returns (bytes32 hash_) {
        hash_ = keccak256(encodeState(_s));
    }

    /// @notice The 64-bit two's complement pattern of an int64 lane (`_lanes_bytes`).
    function _lane(int256 _v) private pure returns (uint256 bits_) {
        // INVARIANT: a lane value outside int64 never reaches a state.
        if (_v < type(int64).min || _v > type(int64).max) revert ArithmeticOverflow();
        bits_ = uint256(uint64(int64(_v)));
    }

    /// @notice Calldata word `_i` of an encoding starting at calldata offset `_o`.
    function _load(uint256 _o, uint256 _i) private pure returns (uint256 w_) {
        assembly ("memory-safe") {
            w_ := calldataload(add(_o, shl(5, _i)))
        }
    }

    /// @notice Store word `_i` of a 800-byte memory buffer.
    function _store(bytes memory _data, uint256 _i, uint256 _w) private pure {
        assembly ("memory-safe") {
            mstore(add(add(_data, 32), shl(5, _i)), _w)
        }
    }
}
