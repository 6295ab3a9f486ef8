// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {
    MPTInvalidChildRef,
    MPTInvalidNode,
    MPTInvalidNodeHash,
    MPTInvalidPath,
    MPTProofTooLong,
    MPTProofTooShort
} from "../BridgeErrors.sol";
import { LibRLP, RLPItem } from "./LibRLP.sol";

/// @title LibMPT
/// @notice Merkle-Patricia trie proof verification (the yellow paper's appendix D; EIP-1186 proofs):
///         `get(key, proof, root)` walks the key's nibble path from the root node through branch (17
///         items), extension and leaf (2 items, hex-prefix path) nodes and returns whether the key is
///         in the trie and its value. A proof lists the nodes on the path, root first; a child node
///         whose encoding is shorter than 32 bytes is embedded in its parent and may be listed
///         (py-trie's `get_proof`) or not (geth's `eth_getProof`). A proof of **absence** ends at an
///         empty branch slot, a leaf with another path or an extension that diverges from the key.
///         Every malformed proof reverts with a named error; nothing is read outside a node.
library LibMPT {
    /// @notice The root of the empty trie, `keccak256(rlp(""))`.
    bytes32 internal constant EMPTY_TRIE_ROOT = 0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421;

    /// @notice Walk state: the key's nibbles, how many are consumed, the next proof element, the value.
    struct Walk {
        bytes path;
        uint256 pathPos;
        uint256 next;
        bytes value;
    }

    /// @dev `_step` outcomes: go on to the child, the key is present (`Walk.value`), the key is absent.
    uint256 private constant CONTINUE = 0;
    uint256 private constant PRESENT = 1;
    uint256 private constant ABSENT = 2;

    /// @notice Look `_key` up in the trie with root `_root` using `_proof` (its path's nodes, root first).
    /// @return exists_ Whether the key is in the trie.
    /// @return value_ Its value (empty when absent).
    function get(bytes memory _key, bytes[] memory _proof, bytes32 _root)
        internal
        pure
        returns (bool exists_, bytes memory value_)
    {
        if (_proof.length == 0) {
            // INVARIANT: only the empty trie has an empty proof.
            if (_root == EMPTY_TRIE_ROOT) return (false, value_);
            revert MPTProofTooShort();
        }
        // INVARIANT: the first node is the root.
        if (keccak256(_proof[0]) != _root) revert MPTInvalidNodeHash();
        Walk memory w = Walk({ path: toNibbles(_key), pathPos: 0, next: 1, value: value_ });
        if (_root == EMPTY_TRIE_ROOT) return _done(w, _proof, false, value_);
        RLPItem memory node = LibRLP.toItem(_proof[0]);
        while (true) {
            (uint256 outcome, RLPItem memory child) = _step(w, node);
            if (outcome == PRESENT) return _done(w, _proof, true, w.value);
            if (outcome == ABSENT) return _done(w, _proof, false, value_);
            node = _follow(w, _proof, child);
        }
    }

    /// @dev One node of the walk: decides the key (present, with `_w.value` set, or absent) or returns
    ///      the child reference to follow (consuming the nibbles it covers).
    function _step(Walk memory _w, RLPItem memory _node) private pure returns (uint256 outcome_, RLPItem memory child_) {
        bool atEnd = _w.pathPos == _w.path.length;
        (uint256 count, RLPItem memory item0, RLPItem memory item1, RLPItem memory itemAt) =
            LibRLP.readListAt(_node, atEnd ? 16 : uint8(_w.path[_w.pathPos]));
        if (count == 17) {
            if (atEnd) {
                _w.value = LibRLP.readBytes(itemAt);
                return (_w.value.length != 0 ? PRESENT : ABSENT, child_);
            }
            _w.pathPos += 1;
            // An empty slot: the key is absent.
            if (_isEmptyString(itemAt)) return (ABSENT, child_);
            return (CONTINUE, itemAt);
        }
        if (count != 2) revert MPTInvalidNode();
        (bool leaf, bytes memory nibbles) = decodePath(LibRLP.readBytes(item0));
        uint256 shared = _sharedPrefix(nibbles, _w.path, _w.pathPos);
        if (leaf) {
            // A leaf with another path: absent.
            if (shared != nibbles.length || _w.pathPos + shared != _w.path.length) return (ABSENT, child_);
            _w.value = LibRLP.readBytes(item1);
            // INVARIANT: a trie never stores an empty value (deleting removes the leaf).
            if (_w.value.length == 0) revert MPTInvalidNode();
            return (PRESENT, child_);
        }
        // An extension the key leaves: absent.
        if (shared != nibbles.length) return (ABSENT, child_);
        _w.pathPos += shared;
        return (CONTINUE, item1);
    }

    /// @notice The hex-prefix path `_hp` of a leaf or extension: whether it is a leaf, and its nibbles.
    function decodePath(bytes memory _hp) internal pure returns (bool leaf_, bytes memory nibbles_) {
        if (_hp.length == 0) revert MPTInvalidPath();
        uint256 first = uint8(_hp[0]);
        uint256 flag = first >> 4;
        // INVARIANT: flags 0/1 extension (even/odd), 2/3 leaf (even/odd); an even path pads with 0.
        if (flag > 3) revert MPTInvalidPath();
        bool odd = flag & 1 == 1;
        if (!odd && first & 0x0f != 0) revert MPTInvalidPath();
        leaf_ = flag >= 2;
        // SAFETY: `_hp.length` >= 1, so the sizes below do not underflow.
        uint256 n = 2 * (_hp.length - 1) + (odd ? 1 : 0);
        // INVARIANT: an extension skips at least one nibble.
        if (!leaf_ && n == 0) revert MPTInvalidPath();
        nibbles_ = new bytes(n);
        assembly ("memory-safe") {
            let dst := add(nibbles_, 32)
            if odd {
                mstore8(dst, and(first, 0x0f))
                dst := add(dst, 1)
            }
            let src := add(_hp, 33)
            let end := add(_hp, add(32, mload(_hp)))
            for { } lt(src, end) { src := add(src, 1) } {
                let b := byte(0, mload(src))
                mstore8(dst, shr(4, b))
                mstore8(add(dst, 1), and(b, 0x0f))
                dst := add(dst, 2)
            }
        }
    }

    /// @notice The nibbles of `_key`, high nibble first.
    function toNibbles(bytes memory _key) internal pure returns (bytes memory nibbles_) {
        nibbles_ = new bytes(_key.length * 2);
        assembly ("memory-safe") {
            let dst := add(nibbles_, 32)
            let src := add(_key, 32)
            let end := add(src, mload(_key))
            for { } lt(src, end) { src := add(src, 1) } {
                let b := byte(0, mload(src))
                mstore8(dst, shr(4, b))
                mstore8(add(dst, 1), and(b, 0x0f))
                dst := add(dst, 2)
            }
        }
    }

    /// @dev The node `_ref` (a branch slot or an extension's child) refers to: a 32-byte hash of the next
    ///      proof element, or a node embedded in the parent (which the proof may list again).
    function _follow(Walk memory _w, bytes[] memory _proof, RLPItem memory _ref)
        private
        pure
        returns (RLPItem memory node_)
    {
        if (LibRLP.isList(_ref)) {
            // INVARIANT: only nodes shorter than 32 bytes are embedded.
            if (_ref.length >= 32) revert MPTInvalidChildRef();
            if (_w.next < _proof.length && keccak256(_proof[_w.next]) == keccak256(LibRLP.readRawBytes(_ref))) {
                _w.next += 1;
            }
            return _ref;
        }
        bytes memory ref = LibRLP.readBytes(_ref);
        if (ref.length != 32) revert MPTInvalidChildRef();
        if (_w.next >= _proof.length) revert MPTProofTooShort();
        bytes memory encoded = _proof[_w.next];
        _w.next += 1;
        // INVARIANT: each node is the preimage of the hash its parent holds.
        if (keccak256(encoded) != bytes32(ref)) revert MPTInvalidNodeHash();
        node_ = LibRLP.toItem(encoded);
    }

    /// @dev The result, once the proof has decided the key: no proof element may be left over.
    function _done(Walk memory _w, bytes[] memory _proof, bool _exists, bytes memory _value)
        private
        pure
        returns (bool, bytes memory)
    {
        if (_w.next != _proof.length) revert MPTProofTooLong();
        return (_exists, _value);
    }

    /// @dev How many nibbles of `_a` equal `_b` from `_bFrom` on.
    function _sharedPrefix(bytes memory _a, bytes memory _b, uint256 _bFrom) private pure returns (uint256 n_) {
        // SAFETY: reads stay below `_a.length` and `_b.length` (`_bFrom` <= `_b.length` by the walk).
        assembly ("memory-safe") {
            let aLen := mload(_a)
            let bLen := mload(_b)
            let a := add(_a, 32)
            let b := add(add(_b, 32), _bFrom)
            for { } and(lt(n_, aLen), lt(add(_bFrom, n_), bLen)) { n_ := add(n_, 1) } {
                if iszero(eq(byte(0, mload(add(a, n_))), byte(0, mload(add(b, n_))))) { break }
            }
        }
    }

    /// @dev Whether `_item` is the empty string (0x80).
    function _isEmptyString(RLPItem memory _item) private pure returns (bool) {
        if (LibRLP.isList(_item)) return false;
        return LibRLP.readBytes(_item).length == 0;
    }
}
