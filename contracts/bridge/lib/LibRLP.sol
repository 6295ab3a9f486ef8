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
        uint256 maxItems = MAX_LIST_ITEMS;
        assembly ("memory-safe") {
            // Room for MAX_LIST_ITEMS pointers, left unset: only the first `count`, set below, are exposed.
            items_ := mload(0x40)
            mstore(items_, maxItems)
            mstore(0x40, add(items_, mul(32, add(maxItems, 1))))
        }
        uint256 count = 0;
        uint256 ptr = _item.ptr + offset;
        uint256 end = ptr + len;
        while (ptr < end) {
            // INVARIANT: a bounded number of items (a branch node has 17).
            if (count == MAX_LIST_ITEMS) revert RLPTooManyItems();
            // SAFETY: the sub-item's header and payload are decoded within the list's remaining bytes.
            (uint256 subOffset, uint256 subLen,) = _header(ptr, end - ptr);
            unchecked {
                // SAFETY: `_header` checked subOffset + subLen <= end - ptr.
                items_[count] = RLPItem({ length: subOffset + subLen, ptr: ptr });
                count++;
                ptr += subOffset + subLen;
            }
        }
        assembly ("memory-safe") {
            mstore(items_, count)
        }
    }

    /// @notice One pass over the list `_item` that checks every item's bounds (as `readList`) and keeps
    ///         only items 0, 1 and `_index` (a trie node needs no more): its item count and those items
    ///         (zero-length where the list is shorter).
    function readListAt(RLPItem memory _item, uint256 _index)
        internal
        pure
        returns (uint256 count_, RLPItem memory first_, RLPItem memory second_, RLPItem memory at_)
    {
        (uint256 offset, uint256 len, bool list) = decodeHeader(_item);
        if (!list) revert RLPUnexpectedType();
        uint256 ptr = _item.ptr + offset;
        uint256 end = ptr + len;
        while (ptr < end) {
            // INVARIANT: a bounded number of items (a branch node has 17).
            if (count_ == MAX_LIST_ITEMS) revert RLPTooManyItems();
            // SAFETY: the sub-item's header and payload are decoded within the list's remaining bytes.
            (uint256 subOffset, uint256 subLen,) = _header(ptr, end - ptr);
            unchecked {
                // SAFETY: `_header` checked subOffset + subLen <= end - ptr.
                uint256 size = subOffset + subLen;
                if (count_ == 0) first_ = RLPItem({ length: size, ptr: ptr });
                else if (count_ == 1) second_ = RLPItem({ length: size, ptr: ptr });
                if (count_ == _index) at_ = RLPItem({ length: size, ptr: ptr });
                count_++;
                ptr += size;
            }
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
        return _header(_item.ptr, _item.length);
    }

    /// @dev The header of the item at memory address `_ptr` that may span at most `_max` bytes.
    function _header(uint256 _ptr, uint256 _max) private pure returns (uint256 offset_, uint256 length_, bool isList_) {
        // SAFETY: every byte read below is at an index checked against `_max` first.
        if (_max == 0) revert RLPEmptyInput();
        uint256 prefix = _byteAt(_ptr);
        if (prefix < 0x80) return (0, 1, false);
        if (prefix < 0xb8) {
            length_ = prefix - 0x80;
            if (_max < 1 + length_) revert RLPOutOfBounds();
            // INVARIANT: a single byte below 0x80 encodes as itself.
            if (length_ == 1 && _byteAt(_ptr + 1) < 0x80) revert RLPNotCanonical();
            return (1, length_, false);
        }
        if (prefix < 0xc0) {
            (offset_, length_) = _longLength(_ptr, _max, prefix - 0xb7);
            return (offset_, length_, false);
        }
        if (prefix < 0xf8) {
            length_ = prefix - 0xc0;
            if (_max < 1 + length_) revert RLPOutOfBounds();
            return (1, length_, true);
        }
        (offset_, length_) = _longLength(_ptr, _max, prefix - 0xf7);
        return (offset_, length_, true);
    }

    /// @dev A long-form header: `_lenOfLen` (1..8) big-endian length bytes after the prefix.
    function _longLength(uint256 _ptr, uint256 _max, uint256 _lenOfLen)
        private
        pure
        returns (uint256 offset_, uint256 length_)
    {
        if (_max < 1 + _lenOfLen) revert RLPOutOfBounds();
        // INVARIANT: no leading zero in the length.
        if (_byteAt(_ptr + 1) == 0) revert RLPNotCanonical();
        assembly ("memory-safe") {
            // The `_lenOfLen` bytes after the prefix, big-endian (checked in bounds above).
            length_ := shr(mul(8, sub(32, _lenOfLen)), mload(add(_ptr, 1)))
        }
        // INVARIANT: the long form only for payloads of 56 bytes or more.
        if (length_ < 56) revert RLPNotCanonical();
        offset_ = 1 + _lenOfLen;
        // SAFETY: `_lenOfLen` <= 8, so `length_` < 2^64 and the sum cannot overflow.
        if (_max < offset_ + length_) revert RLPOutOfBounds();
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
