// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {
    RLPEmptyInput,
    RLPNotCanonical,
    RLPOutOfBounds,
    RLPTooManyItems,
    RLPTrailingBytes,
    RLPUnexpectedType
} from "../BridgeErrors.sol";

/// @notice One RLP item in memory: its whole encoding (header and payload) is the `length` bytes at `ptr`.
struct RLPItem {
    uint256 length;
    uint256 ptr;
}

/// @title LibRLP
/// @notice A reader of RLP items in memory (the Ethereum yellow paper's appendix B), strict: every
///         header and payload is checked to lie inside its input or enclosing list before a byte of it
///         is used (`RLPOutOfBounds`), encodings must be canonical (`RLPNotCanonical`: a single byte
///         below 0x80 in a one-byte string, a long form for a payload under 56 bytes, a length with
///         leading zeros), and a top-level item must fill its input exactly (`RLPTrailingBytes`).
library LibRLP {
    /// @notice Most items `readList` accepts (a trie branch has 17).
    uint256 internal constant MAX_LIST_ITEMS = 32;

    /// @notice The item that `_in` encodes; reverts unless `_in` is exactly one well-formed item.
    function toItem(bytes memory _in) internal pure returns (RLPItem memory item_) {
        if (_in.length == 0) revert RLPEmptyInput();
        uint256 ptr;
        assembly ("memory-safe") {
            ptr := add(_in, 32)
        }
        item_ = RLPItem({ length: _in.length, ptr: ptr });
        (uint256 offset, uint256 len,) = decodeHeader(item_);
        // INVARIANT: one item, nothing after it.
        if (offset + len != _in.length) revert RLPTrailingBytes();
    }

    /// @notice Whether `_item` is a list.
    function isList(RLPItem memory _item) internal pure returns (bool isList_) {
        (,, isList_) = decodeHeader(_item);
    }

    /// @notice The items of the list `_item` (at most `MAX_LIST_ITEMS`), each bounded by the list.
    function readList(RLPItem memory _item) internal pure returns (RLPItem[] memory items_) {
        (uint256 offset, uint256 len, bool list) = decodeHeader(_item);
        if (!list) revert RLPUnexpectedType();
        items_ = new RLPItem[](MAX_LIST_ITEMS);
        uint256 count = 0;
        uint256 pos = offset;
        uint256 end = offset + len;
        while (pos < end) {
            // INVARIANT: a bounded number of items (a branch node has 17).
            if (count == MAX_LIST_ITEMS) revert RLPTooManyItems();
            // SAFETY: the sub-item's header and payload are decoded within the list's remaining bytes.
            RLPItem memory rest = RLPItem({ length: end - pos, ptr: _item.ptr + pos });
            (uint256 subOffset, uint256 subLen,) = decodeHeader(rest);
            items_[count] = RLPItem({ length: subOffset + subLen, ptr: rest.ptr });
            count++;
            pos += subOffset + subLen;
        }
        assembly ("memory-safe") {
            mstore(items_, count)
        }
    }

    /// @notice The payload of the string `_item`.
    function readBytes(RLPItem memory _item) internal pure returns (bytes memory out_) {
        (uint256 offset, uint256 len, bool list) = decodeHeader(_item);
        if (list) revert RLPUnexpectedType();
        out_ = _copy(_item.ptr + offset, len);
    }

    /// @notice The whole encoding of `_item` (header and payload).
    function readRawBytes(RLPItem memory _item) internal pure returns (bytes memory out_) {
        out_ = _copy(_item.ptr, _item.length);
    }

    /// @notice The string `_item` as a big-endian unsigned integer of at most 32 bytes, no leading zero.
    function readUint(RLPItem memory _item) internal pure returns (uint256 value_) {
        (uint256 offset, uint256 len, bool list) = decodeHeader(_item);
        if (list) revert RLPUnexpectedType();
        if (len > 32) revert RLPUnexpectedType();
        if (len == 0) return 0;
        uint256 ptr = _item.ptr + offset;
        uint256 first;
        assembly ("memory-safe") {
            first := byte(0, mload(ptr))
            value_ := shr(mul(8, sub(32, len)), mload(ptr))
        }
        // INVARIANT: integers are minimal (no leading zero byte).
        if (first == 0) revert RLPNotCanonical();
    }

    /// @notice The string `_item` as exactly 32 bytes.
    function readBytes32(RLPItem memory _item) internal pure returns (bytes32 value_) {
        (uint256 offset, uint256 len, bool list) = decodeHeader(_item);
        if (list || len != 32) revert RLPUnexpectedType();
        uint256 ptr = _item.ptr + offset;
        assembly ("memory-safe") {
            value_ := mload(ptr)
        }
    }

    /// @notice The header of `_item`: where its payload starts (from `ptr`), how long it is and whether
    ///         it is a list. Reverts unless header and payload fit in `_item.length` bytes.
    function decodeHeader(RLPItem memory _item)
        internal
        pure
        returns (uint256 offset_, uint256 length_, bool isList_)
    {
        // SAFETY: every byte read below is at an index checked against `_item.length` first.
        if (_item.length == 0) revert RLPEmptyInput();
        uint256 ptr = _item.ptr;
        uint256 prefix = _byteAt(ptr);
        if (prefix < 0x80) return (0, 1, false);
        if (prefix < 0xb8) {
            length_ = prefix - 0x80;
            if (_item.length < 1 + length_) revert RLPOutOfBounds();
            // INVARIANT: a single byte below 0x80 encodes as itself.
            if (length_ == 1 && _byteAt(ptr + 1) < 0x80) revert RLPNotCanonical();
            return (1, length_, false);
        }
        if (prefix < 0xc0) {
            (offset_, length_) = _longLength(_item, prefix - 0xb7);
            return (offset_, length_, false);
        }
        if (prefix < 0xf8) {
            length_ = prefix - 0xc0;
            if (_item.length < 1 + length_) revert RLPOutOfBounds();
            return (1, length_, true);
        }
        (offset_, length_) = _longLength(_item, prefix - 0xf7);
        return (offset_, length_, true);
    }

    /// @dev A long-form header: `_lenOfLen` big-endian length bytes after the prefix.
    function _longLength(RLPItem memory _item, uint256 _lenOfLen)
        private
        pure
        returns (uint256 offset_, uint256 length_)
    {
        if (_item.length < 1 + _lenOfLen) revert RLPOutOfBounds();
        // INVARIANT: no leading zero in the length.
        if (_byteAt(_item.ptr + 1) == 0) revert RLPNotCanonical();
        for (uint256 i = 0; i < _lenOfLen; i++) {
            length_ = (length_ << 8) | _byteAt(_item.ptr + 1 + i);
        }
        // INVARIANT: the long form only for payloads of 56 bytes or more.
        if (length_ < 56) revert RLPNotCanonical();
        offset_ = 1 + _lenOfLen;
        // SAFETY: `_lenOfLen` <= 8, so `length_` < 2^64 and the sum cannot overflow.
        if (_item.length < offset_ + length_) revert RLPOutOfBounds();
    }

    /// @dev The byte at memory address `_ptr`.
    function _byteAt(uint256 _ptr) private pure returns (uint256 b_) {
        assembly ("memory-safe") {
            b_ := byte(0, mload(_ptr))
        }
    }

    /// @dev A new `bytes` holding the `_len` bytes at memory address `_src`.
    function _copy(uint256 _src, uint256 _len) private pure returns (bytes memory out_) {
        out_ = new bytes(_len);
        uint256 dst;
        assembly ("memory-safe") {
            dst := add(out_, 32)
            mcopy(dst, _src, _len)
        }
    }
}
