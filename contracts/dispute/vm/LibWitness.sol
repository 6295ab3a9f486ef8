// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { MalformedWitness } from "../lib/Errors.sol";

/// @title LibWitness
/// @notice The step witness calldata (`fraud_vm.vm.StepWitness.decode`, docs/fraud_vm.md
///         "Witness calldata"): a 6-byte header `uint16 nContext ‖ uint16 nWords ‖ uint16 nSiblings`
///         (big-endian, read with one `calldataload`), the 800-byte pre-state, `32·nContext` bytes of
///         context, `nWords` pairs `uint256 region << 64 | index ‖ bytes32 value`, then `nSiblings`
///         hashes. The parts are returned as calldata slices: nothing is copied.
library LibWitness {
    /// @dev Bytes of the header (`fraud_vm.vm.HEADER_BYTES`).
    uint256 internal constant HEADER_BYTES = 6;
    /// @dev Bytes of an encoded state (`fraud_vm.state.STATE_BYTES`).
    uint256 internal constant STATE_BYTES = 800;
    /// @dev A word address is `region << 64 | index` (`fraud_vm.vm.INDEX_BITS`).
    uint256 internal constant INDEX_BITS = 64;

    /// @notice Split witness calldata into its parts (`StepWitness.decode`).
    /// @dev Reverts `MalformedWitness` unless the length is exactly
    ///      `806 + 32·nContext + 64·nWords + 32·nSiblings` with `nContext >= 1`.
    /// @param _witness The witness calldata.
    /// @return preState_ The 800-byte encoded pre-state.
    /// @return context_ The node context (`32·nContext` bytes).
    /// @return words_ The memory words, 64 bytes each (`wordAt` reads one).
    /// @return siblings_ The multiproof hashes.
    function decode(bytes calldata _witness)
        internal
        pure
        returns (bytes calldata preState_, bytes calldata context_, bytes calldata words_, bytes32[] calldata siblings_)
    {
        // INVARIANT: the header and the state are present before any count is trusted.
        if (_witness.length < HEADER_BYTES + STATE_BYTES) revert MalformedWitness();
        uint256 head;
        assembly ("memory-safe") {
            head := shr(208, calldataload(_witness.offset))
        }
        // INVARIANT: the context has at least its address word.
        if (head >> 32 == 0) revert MalformedWitness();
        // INVARIANT: the length is exactly the one the header announces (no trailing or missing byte).
        if (_witness.length != _encodedLength(head)) revert MalformedWitness();
        // SAFETY: every part lies inside the witness, whose length was just checked.
        assembly ("memory-safe") {
            let o := add(_witness.offset, HEADER_BYTES)
            preState_.offset := o
            preState_.length := STATE_BYTES
            o := add(o, STATE_BYTES)
            context_.offset := o
            context_.length := shl(5, shr(32, head))
            o := add(o, context_.length)
            words_.offset := o
            words_.length := shl(6, and(shr(16, head), 0xffff))
            siblings_.offset := add(o, words_.length)
            siblings_.length := and(head, 0xffff)
        }
    }

    /// @notice The witness length a header announces: `806 + 32·nContext + 64·nWords + 32·nSiblings`.
    /// @param _head The header's 48 bits `nContext << 32 | nWords << 16 | nSiblings`.
    /// @return len_ The length.
    function _encodedLength(uint256 _head) private pure returns (uint256 len_) {
        len_ = HEADER_BYTES + STATE_BYTES + 32 * (_head >> 32) + 64 * ((_head >> 16) & 0xffff) + 32 * (_head & 0xffff);
    }

    /// @notice The number of memory words in a `words_` slice of `decode`.
    /// @param _words The words slice.
    /// @return n_ Its word count.
    function wordCount(bytes calldata _words) internal pure returns (uint256 n_) {
        n_ = _words.length >> 6;
    }

    /// @notice Memory word `_k` of a `words_` slice of `decode` (`_k < wordCount`, unchecked).
    /// @param _words The words slice.
    /// @param _k The word's position in the witness.
    /// @return addr_ Its address `region << 64 | index`.
    /// @return value_ Its value before the step.
    function wordAt(bytes calldata _words, uint256 _k) internal pure returns (uint256 addr_, bytes32 value_) {
        assembly ("memory-safe") {
            let p := add(_words.offset, shl(6, _k))
            addr_ := calldataload(p)
            value_ := calldataload(add(p, 32))
        }
    }
}
