// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { InvalidProofLength, SiblingsExhausted, WordOutOfRange, WordsNotSorted } from "./Errors.sol";

/// @title LibMerkle
/// @notice Binary keccak256 Merkle trees over 32-byte words, as `opml/merkle.py` builds them:
///         leaves are the words themselves, an inner node is `keccak256(left ‖ right)`, a tree
///         over `n` words has depth `ceil(log2 n)` and is padded on the right with zero words
///         (the zero subtree of height `h` hashes to `zeroHash(h)`). Names mirror the Python
///         module in camelCase: `treeDepth`, `rootFromProof`, `multiroot`; `sparseRoot` is the
///         root of a tree that is zero except at the given leaves.
library LibMerkle {
    /// @notice The root of an all-zero tree of height `_height` (`ZERO_HASHES[_height]`).
    /// @param _height The subtree height (0: the zero word).
    /// @return zero_ Its root.
    function zeroHash(uint256 _height) internal pure returns (bytes32 zero_) {
        for (uint256 h = 0; h < _height; h++) {
            zero_ = _hashPair(zero_, zero_);
        }
    }

    /// @notice Depth of the tree holding `_leaves` leaves: `ceil(log2 _leaves)`, 0 for 0 or 1 leaf.
    /// @param _leaves The number of leaves.
    /// @return depth_ The depth.
    function treeDepth(uint256 _leaves) internal pure returns (uint256 depth_) {
        if (_leaves <= 1) return 0;
        uint256 x = _leaves - 1;
        while (x != 0) {
            depth_++;
            x >>= 1;
        }
    }

    /// @notice The root from a leaf, its index and its bottom-first sibling path (`fold`).
    /// @dev Reverts with `InvalidProofLength` when the index has more bits than the path has
    ///      levels (Python: `ValueError`), so a leaf cannot pose at an index outside the tree.
    /// @param _leaf The leaf word.
    /// @param _index The leaf's index.
    /// @param _proof Siblings from the leaf's level up (`_proof[0]` is the leaf's sibling).
    /// @return root_ The root.
    function rootFromProof(bytes32 _leaf, uint256 _index, bytes32[] calldata _proof)
        internal
        pure
        returns (bytes32 root_)
    {
        root_ = _leaf;
        uint256 n = _proof.length;
        for (uint256 i = 0; i < n; i++) {
            root_ = _index & 1 == 1 ? _hashPair(_proof[i], root_) : _hashPair(root_, _proof[i]);
            _index >>= 1;
        }
        // SAFETY: an index beyond 2^len(path) would let a leaf pose at a second index.
        if (_index != 0) revert InvalidProofLength();
    }

    /// @notice `rootFromProof` with the path in memory.
    /// @param _leaf The leaf word.
    /// @param _index The leaf's index.
    /// @param _proof Siblings from the leaf's level up.
    /// @return root_ The root.
    function rootFromMemoryProof(bytes32 _leaf, uint256 _index, bytes32[] memory _proof)
        internal
        pure
        returns (bytes32 root_)
    {
        root_ = _leaf;
        uint256 n = _proof.length;
        for (uint256 i = 0; i < n; i++) {
            root_ = _index & 1 == 1 ? _hashPair(_proof[i], root_) : _hashPair(root_, _proof[i]);
            _index >>= 1;
        }
        if (_index != 0) revert InvalidProofLength();
    }

    /// @notice The root from known leaves and `_siblings[_pos:]` consumed in multiproof order
    ///         (`docs/fraud_vm.md` "Multiproof order": per height, the known nodes in ascending
    ///         index order; a node whose parent was already produced is skipped; otherwise its
    ///         sibling is the next known node or the next proof hash).
    /// @dev The arrays `_indices`/`_leaves` are used as scratch space and overwritten. Reverts
    ///      `WordOutOfRange` (an index outside the tree, or no index), `WordsNotSorted` (indices not
    ///      strictly ascending), `SiblingsExhausted` (too few hashes), as `fraud_vm.memory.multiroot`;
    ///      unused hashes are the caller's check (`UnusedSiblings`).
    /// @param _indices The known leaf indices, strictly ascending, each below `2^_depth`.
    /// @param _leaves The known leaves, in the same order.
    /// @param _depth The tree's depth.
    /// @param _siblings The proof hashes.
    /// @param _pos Where this tree's hashes start in `_siblings`.
    /// @return root_ The root.
    /// @return nextPos_ The index of the first sibling not consumed.
    function multiroot(
        uint256[] memory _indices,
        bytes32[] memory _leaves,
        uint256 _depth,
        bytes32[] calldata _siblings,
        uint256 _pos
    )
        internal
        pure
        returns (bytes32 root_, uint256 nextPos_)
    {
        (root_, nextPos_) = _fold(_indices, _leaves, _depth, _siblings, _pos, false);
    }

    /// @notice The root of a tree of depth `_depth` that is zero except at `_indices`.
    /// @dev The arrays are used as scratch space and overwritten.
    /// @param _indices The nonzero leaves' indices, strictly ascending, each below `2^_depth`.
    /// @param _leaves Their values, in the same order.
    /// @param _depth The tree's depth.
    /// @return root_ The root.
    function sparseRoot(uint256[] memory _indices, bytes32[] memory _leaves, uint256 _depth)
        internal
        pure
        returns (bytes32 root_)
    {
        if (_indices.length == 0) return zeroHash(_depth);
        bytes32[] calldata none = _emptyCalldata();
        (root_,) = _fold(_indices, _leaves, _depth, none, 0, true);
    }

    /// @notice The root of the zero-padded tree of depth `_depth` over `_leaves` (`merkle_root`).
    /// @dev `_leaves` is overwritten. Reverts with `InvalidProofLength` if they do not fit.
    /// @param _leaves The leaves (at most `2^_depth`).
    /// @param _depth The tree's depth.
    /// @return root_ The root.
    function merkleRoot(bytes32[] memory _leaves, uint256 _depth) internal pure returns (bytes32 root_) {
        uint256 n = _leaves.length;
        if (_depth >= 256 || n > (uint256(1) << _depth)) revert InvalidProofLength();
        if (n == 0) return zeroHash(_depth);
        bytes32 z;
        for (uint256 h = 0; h < _depth; h++) {
            uint256 m = (n + 1) >> 1;
            for (uint256 i = 0; i < m; i++) {
                bytes32 l = _leaves[2 * i];
                bytes32 r = 2 * i + 1 < n ? _leaves[2 * i + 1] : z;
                _leaves[i] = _hashPair(l, r);
            }
            n = m;
            z = _hashPair(z, z);
        }
        root_ = _leaves[0];
    }

    /// @notice `keccak256(_a ‖ _b)` without allocating memory.
    /// @param _a The left word.
    /// @param _b The right word.
    /// @return hash_ The hash.
    function hashPair(bytes32 _a, bytes32 _b) internal pure returns (bytes32 hash_) {
        hash_ = _hashPair(_a, _b);
    }

    function _hashPair(bytes32 _a, bytes32 _b) private pure returns (bytes32 hash_) {
        assembly ("memory-safe") {
            mstore(0x00, _a)
            mstore(0x20, _b)
            hash_ := keccak256(0x00, 0x40)
        }
    }

    /// @notice The level walk shared by `multiroot` (siblings from the proof) and `sparseRoot`
    ///         (siblings are zero subtrees).
    function _fold(
        uint256[] memory _idx,
        bytes32[] memory _val,
        uint256 _depth,
        bytes32[] calldata _siblings,
        uint256 _pos,
        bool _zeroSiblings
    )
        private
        pure
        returns (bytes32 root_, uint256 pos_)
    {
        uint256 n = _idx.length;
        // SAFETY: known leaves are nonempty, strictly ascending and inside the tree, so a leaf
        // cannot pose as an inner node or appear twice.
        if (n == 0 || n != _val.length || _depth >= 256 || _idx[n - 1] >> _depth != 0) revert WordOutOfRange();
        for (uint256 r = 1; r < n; r++) {
            if (_idx[r] <= _idx[r - 1]) revert WordsNotSorted();
        }
        // zero-sibling mode is marked by a position no proof can reach
        pos_ = _zeroSiblings ? type(uint256).max : _pos;
        bytes32 z;
        for (uint256 h = 0; h < _depth; h++) {
            (n, pos_) = _level(_idx, _val, n, _siblings, pos_, z);
            z = _hashPair(z, z);
        }
        root_ = _val[0];
        if (_zeroSiblings) pos_ = _pos;
    }

    /// @notice One level of `_fold`: combine the `_n` known nodes into their parents (in place);
    ///         `_pos == type(uint256).max` takes the zero subtree `_z` for every missing sibling.
    function _level(
        uint256[] memory _idx,
        bytes32[] memory _val,
        uint256 _n,
        bytes32[] calldata _siblings,
        uint256 _pos,
        bytes32 _z
    )
        private
        pure
        returns (uint256 w_, uint256 pos_)
    {
        pos_ = _pos;
        for (uint256 r = 0; r < _n; r++) {
            uint256 i = _idx[r];
            if (w_ > 0 && _idx[w_ - 1] == i >> 1) continue;
            bytes32 sib = _z;
            if (r + 1 < _n && _idx[r + 1] == i ^ 1) {
                sib = _val[r + 1];
            } else if (pos_ != type(uint256).max) {
                if (pos_ >= _siblings.length) revert SiblingsExhausted();
                sib = _siblings[pos_];
                pos_++;
            }
            _val[w_] = i & 1 == 0 ? _hashPair(_val[r], sib) : _hashPair(sib, _val[r]);
            _idx[w_] = i >> 1;
            w_++;
        }
    }

    /// @notice An empty `bytes32[] calldata` (for `sparseRoot`, which reads no siblings).
    function _emptyCalldata() private pure returns (bytes32[] calldata empty_) {
        assembly {
            empty_.offset := 0
            empty_.length := 0
        }
    }
}
