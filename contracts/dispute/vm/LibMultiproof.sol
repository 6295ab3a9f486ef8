// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { SiblingsExhausted } from "../lib/Errors.sol";
import { LibMerkle } from "../lib/LibMerkle.sol";
import { Region } from "./VMTypes.sol";

/// @notice What `proveWords` learned about a multiproof, so that `rootAfterWrites` recomputes only
///         the regions whose words changed.
/// @custom:field regionIdx The touched regions, ascending.
/// @custom:field regionRoots Their roots from the words before the step.
/// @custom:field wordEnd Per touched region: one past its last word in the address list.
/// @custom:field sibStart Per touched region: the position of its first data-tree sibling.
/// @custom:field regionSibStart The position of the first region-tree sibling.
struct MultiproofTrace {
    uint256[] regionIdx;
    bytes32[] regionRoots;
    uint256[] wordEnd;
    uint256[] sibStart;
    uint256 regionSibStart;
}

/// @title LibMultiproof
/// @notice The memory root from a step's touched words and one multiproof
///         (`fraud_vm.memory.roots_from_words`, docs/fraud_vm.md "Multiproof order"): for each
///         touched region in ascending order its data root from its words and the next siblings
///         (`LibMerkle.multiroot`'s walk over the region's data tree of depth `Region.depth`), its region
///         root `keccak256(header words ‖ data_root)` (`fraud_vm.tensors.region_root`), then the
///         memory root from those region roots and the remaining siblings (region tree of depth
///         `treeDepth(regions)`).
library LibMultiproof {
    /// @dev A word address is `region << 64 | index`.
    uint256 internal constant INDEX_MASK = (uint256(1) << 64) - 1;

    /// @notice The memory root implied by the words and `_siblings[_pos:]` (`roots_from_words`).
    /// @dev The caller has checked the addresses (strictly ascending, each region and index in
    ///      range: `verify_step` steps 5). Reverts `SiblingsExhausted` when the siblings run out.
    ///      The arrays are read, never written.
    /// @param _regions The node's memory regions.
    /// @param _addrs The words' addresses `region << 64 | index`, strictly ascending, nonempty.
    /// @param _values The words' values, in the same order.
    /// @param _siblings The multiproof hashes.
    /// @param _pos The first sibling to consume.
    /// @return root_ The memory root.
    /// @return pos_ The first sibling not consumed.
    function rootsFromWords(
        Region[] memory _regions,
        uint256[] memory _addrs,
        bytes32[] memory _values,
        bytes32[] calldata _siblings,
        uint256 _pos
    )
        internal
        pure
        returns (bytes32 root_, uint256 pos_)
    {
        (root_, pos_,) = proveWords(_regions, _addrs, _values, _siblings, _pos);
    }

    /// @notice `rootsFromWords`, also returning the trace `rootAfterWrites` needs.
    /// @param _regions The node's memory regions.
    /// @param _addrs The words' addresses, strictly ascending, nonempty, in range.
    /// @param _values The words' values before the step.
    /// @param _siblings The multiproof hashes.
    /// @param _pos The first sibling to consume.
    /// @return root_ The memory root.
    /// @return pos_ The first sibling not consumed.
    /// @return trace_ The touched regions, their roots and where their siblings start.
    function proveWords(
        Region[] memory _regions,
        uint256[] memory _addrs,
        bytes32[] memory _values,
        bytes32[] calldata _siblings,
        uint256 _pos
    )
        internal
        pure
        returns (bytes32 root_, uint256 pos_, MultiproofTrace memory trace_)
    {
        (trace_, pos_) = _regionRoots(_regions, _addrs, _values, _siblings, _pos);
        trace_.regionSibStart = pos_;
        (root_, pos_) = _regionTreeRoot(
            trace_.regionIdx, trace_.regionRoots, LibMerkle.treeDepth(_regions.length), _siblings, pos_
        );
    }

    /// @notice Copy the region tree's leaves (`_ri`, `_roots`: `nr` of them) to the first `nr`
    ///         slots of the scratch arrays (at least `nr` long); returns `nr`.
    function _leaves(uint256[] memory _idx, bytes32[] memory _val, uint256[] memory _ri, bytes32[] memory _roots)
        private
        pure
        returns (uint256 nr_)
    {
        // SAFETY: copies `nr_` words into arrays of at least that length (the caller's).
        assembly ("memory-safe") {
            nr_ := mload(_ri)
            mcopy(add(_idx, 0x20), add(_ri, 0x20), shl(5, nr_))
            mcopy(add(_val, 0x20), add(_roots, 0x20), shl(5, nr_))
        }
    }

    /// @notice The touched regions (ascending), their roots and where their words and siblings
    ///         end and start, consuming the data-tree siblings.
    function _regionRoots(
        Region[] memory _regions,
        uint256[] memory _addrs,
        bytes32[] memory _values,
        bytes32[] calldata _siblings,
        uint256 _pos
    )
        private
        pure
        returns (MultiproofTrace memory t_, uint256 pos_)
    {
        uint256 n = _addrs.length;
        t_.regionIdx = new uint256[](n);
        t_.regionRoots = new bytes32[](n);
        t_.wordEnd = new uint256[](n);
        t_.sibStart = new uint256[](n);
        uint256 nr = 0;
        pos_ = _pos;
        uint256 start = 0;
        while (start < n) {
            (uint256 r, uint256 end) = _run(_addrs, start);
            t_.regionIdx[nr] = r;
            t_.wordEnd[nr] = end;
            t_.sibStart[nr] = pos_;
            (t_.regionRoots[nr], pos_) = _regionRoot(_regions[r], _addrs, _values, start, end, _siblings, pos_);
            ++nr;
            start = end;
        }
        uint256[] memory a = t_.regionIdx;
        bytes32[] memory b = t_.regionRoots;
        uint256[] memory c = t_.wordEnd;
        uint256[] memory d = t_.sibStart;
        // SAFETY: shortens the arrays to the touched regions (nr <= n, their allocated length).
        assembly ("memory-safe") {
            mstore(a, nr)
            mstore(b, nr)
            mstore(c, nr)
            mstore(d, nr)
        }
    }

    /// @notice One touched region's root from its run `[_start, _end)` of the words and the next
    ///         data-tree siblings.
    function _regionRoot(
        Region memory _region,
        uint256[] memory _addrs,
        bytes32[] memory _values,
        uint256 _start,
        uint256 _end,
        bytes32[] calldata _siblings,
        uint256 _pos
    )
        private
        pure
        returns (bytes32 root_, uint256 pos_)
    {
        (uint256[] memory idx, bytes32[] memory val) = _words(_addrs, _values, _start, _end);
        bytes32 dataRoot;
        (dataRoot, pos_) = _multiroot(idx, val, _region.depth, _siblings, _pos);
        root_ = regionRoot(_region.header, dataRoot);
    }

    /// @notice The memory root after the step changed some word values (`verify_step` step 8:
    ///         `roots_from_words` over the written words with the same siblings). A region none of
    ///         whose words changed keeps its root from `_trace` (the same words and siblings give
    ///         the same root); the others are recomputed from their siblings in `_trace`.
    /// @param _regions The node's memory regions.
    /// @param _addrs The words' addresses (as given to `proveWords`).
    /// @param _before The words' values before the step.
    /// @param _after The words' values after the step.
    /// @param _siblings The multiproof hashes.
    /// @param _trace `proveWords`'s trace of the same words.
    /// @return root_ The memory root after the step.
    function rootAfterWrites(
        Region[] memory _regions,
        uint256[] memory _addrs,
        bytes32[] memory _before,
        bytes32[] memory _after,
        bytes32[] calldata _siblings,
        MultiproofTrace memory _trace
    )
        internal
        pure
        returns (bytes32 root_)
    {
        uint256 nr = _trace.regionIdx.length;
        bytes32[] memory roots = new bytes32[](nr);
        uint256 start = 0;
        for (uint256 k = 0; k < nr; ++k) {
            uint256 end = _trace.wordEnd[k];
            roots[k] = _changed(_before, _after, start, end)
                ? _reroot(_regions, _addrs, _after, start, k, _siblings, _trace)
                : _trace.regionRoots[k];
            start = end;
        }
        (root_,) =
            _regionTreeRoot(_trace.regionIdx, roots, LibMerkle.treeDepth(_regions.length), _siblings, _trace.regionSibStart);
    }

    /// @notice The memory root from the touched regions `_ri` and their roots `_roots` (copied:
    ///         the walk overwrites its arrays) and the region-tree siblings from `_pos`; returns
    ///         the first sibling not consumed too.
    function _regionTreeRoot(
        uint256[] memory _ri,
        bytes32[] memory _roots,
        uint256 _depth,
        bytes32[] calldata _siblings,
        uint256 _pos
    )
        private
        pure
        returns (bytes32 root_, uint256 pos_)
    {
        uint256 nr = _ri.length;
        uint256[] memory idx = new uint256[](nr);
        bytes32[] memory val = new bytes32[](nr);
        _leaves(idx, val, _ri, _roots);
        (root_, pos_) = _multiroot(idx, val, _depth, _siblings, _pos);
    }

    /// @notice The root of touched region `_k` of `_trace` (words `[_start, wordEnd[_k])`) from
    ///         the words' values `_after`, with its siblings from `_trace`.
    function _reroot(
        Region[] memory _regions,
        uint256[] memory _addrs,
        bytes32[] memory _after,
        uint256 _start,
        uint256 _k,
        bytes32[] calldata _siblings,
        MultiproofTrace memory _trace
    )
        private
        pure
        returns (bytes32 root_)
    {
        (root_,) = _regionRoot(
            _regions[_trace.regionIdx[_k]], _addrs, _after, _start, _trace.wordEnd[_k], _siblings, _trace.sibStart[_k]
        );
    }

    /// @notice A region's root from its header words and data root (`fraud_vm.tensors.region_root`).
    /// @param _header The header words `[dtype, ndim, dim_0, ..]`.
    /// @param _dataRoot The data tree's root.
    /// @return root_ `keccak256(header ‖ data_root)`.
    function regionRoot(uint256[] memory _header, bytes32 _dataRoot) internal pure returns (bytes32 root_) {
        // SAFETY: the preimage is assembled in free memory (not allocated: nothing else is
        // written before the hash is taken).
        assembly ("memory-safe") {
            let p := mload(0x40)
            let len := shl(5, mload(_header))
            mcopy(p, add(_header, 0x20), len)
            mstore(add(p, len), _dataRoot)
            root_ := keccak256(p, add(len, 0x20))
        }
    }

    /// @notice The region of word `_start` and one past the last word of its run.
    function _run(uint256[] memory _addrs, uint256 _start) private pure returns (uint256 r_, uint256 end_) {
        // SAFETY: reads `_addrs[_start .. length)` only (`_start < length`).
        assembly ("memory-safe") {
            let n := mload(_addrs)
            let p := add(_addrs, 0x20)
            r_ := shr(64, mload(add(p, shl(5, _start))))
            end_ := add(_start, 1)
            for { } and(lt(end_, n), eq(shr(64, mload(add(p, shl(5, end_)))), r_)) { } { end_ := add(end_, 1) }
        }
    }

    /// @notice Fresh arrays of the run `[_start, _end)` of the words: `idx_[k] = _addrs[_start + k]
    ///         & INDEX_MASK` (the low 64 bits), `val_[k] = _values[_start + k]` (the walk's scratch).
    function _words(uint256[] memory _addrs, bytes32[] memory _values, uint256 _start, uint256 _end)
        private
        pure
        returns (uint256[] memory idx_, bytes32[] memory val_)
    {
        uint256 len = _end - _start;
        idx_ = new uint256[](len);
        val_ = new bytes32[](len);
        // SAFETY: `_end` is at most the length of both source arrays (the caller's runs); `len`
        // words are written into arrays of that length.
        assembly ("memory-safe") {
            mcopy(add(val_, 0x20), add(_values, shl(5, add(_start, 1))), shl(5, len))
            let src := add(_addrs, shl(5, add(_start, 1)))
            for { let k := 0 } lt(k, len) { k := add(k, 1) } {
                let o := shl(5, k)
                mstore(add(idx_, add(o, 0x20)), and(mload(add(src, o)), 0xffffffffffffffff))
            }
        }
    }

    /// @notice Whether any of `_a[_start:_end]` differs from `_b[_start:_end]`.
    function _changed(bytes32[] memory _a, bytes32[] memory _b, uint256 _start, uint256 _end)
        private
        pure
        returns (bool changed_)
    {
        // SAFETY: reads `[_start, _end)` of both arrays (`_end` at most both lengths).
        assembly ("memory-safe") {
            for { let k := _start } lt(k, _end) { k := add(k, 1) } {
                let o := shl(5, add(k, 1))
                if iszero(eq(mload(add(_a, o)), mload(add(_b, o)))) {
                    changed_ := 1
                    break
                }
            }
        }
    }

    /// @notice `LibMerkle.multiroot` over the known nodes `_idx` / `_val` (overwritten), without
    ///         its argument checks (the caller's words are checked: nonempty, strictly ascending,
    ///         inside the tree) and in assembly: per height, the known nodes in ascending order; a
    ///         node whose parent was already produced is skipped; its sibling is the next known
    ///         node or the next proof hash; `SiblingsExhausted` when they run out.
    function _multiroot(
        uint256[] memory _idx,
        bytes32[] memory _val,
        uint256 _depth,
        bytes32[] calldata _siblings,
        uint256 _pos
    )
        private
        pure
        returns (bytes32 root_, uint256 pos_)
    {
        uint256 base;
        uint256 ip;
        uint256 vp;
        // SAFETY: pointer arithmetic only.
        assembly ("memory-safe") {
            base := _siblings.offset
            ip := add(_idx, 0x20)
            vp := add(_val, 0x20)
        }
        uint256 p = _walk(ip, vp, _idx.length, _depth, base + 32 * _pos, base + 32 * _siblings.length);
        // INVARIANT: the proof has a hash for every sibling the words cannot produce.
        if (p == 0) revert SiblingsExhausted();
        pos_ = (p - base) >> 5;
        // SAFETY: `vp` is the first known node's slot, where the walk leaves the root.
        assembly ("memory-safe") {
            root_ := mload(vp)
        }
    }

    /// @notice The level walk of `_multiroot` over `_n` known nodes at memory `_ip` (indices) and
    ///         `_vp` (values) and siblings at calldata positions `[_p, _end)`; returns the next
    ///         sibling's position, 0 if they ran out. The root ends in the first value slot.
    function _walk(uint256 _ip, uint256 _vp, uint256 _n, uint256 _depth, uint256 _p, uint256 _end)
        private
        pure
        returns (uint256 p_)
    {
        // SAFETY: reads and writes stay inside the `_n` slots at `_ip` / `_vp` (writes at `w <= r`,
        // the walk's invariant); siblings are read only below `_end`; scratch space 0x00-0x3f
        // holds the pair being hashed.
        assembly ("memory-safe") {
            let ip := _ip
            let vp := _vp
            let n := _n
            p_ := _p
            for { let h := 0 } lt(h, _depth) { h := add(h, 1) } {
                let w := 0
                for { let r := 0 } lt(r, n) { r := add(r, 1) } {
                    let i := mload(add(ip, shl(5, r)))
                    // a node whose parent was already produced (its left sibling's) is skipped
                    if or(iszero(w), iszero(eq(mload(add(ip, shl(5, sub(w, 1)))), shr(1, i)))) {
                        let sib := 0
                        switch and(lt(add(r, 1), n), eq(mload(add(ip, shl(5, add(r, 1)))), xor(i, 1)))
                        case 1 { sib := mload(add(vp, shl(5, add(r, 1)))) }
                        default {
                            switch lt(p_, _end)
                            case 1 {
                                sib := calldataload(p_)
                                p_ := add(p_, 0x20)
                            }
                            default {
                                // out of siblings: stop both loops and report 0
                                p_ := 0
                                h := _depth
                                r := n
                            }
                        }
                        switch and(i, 1)
                        case 0 {
                            mstore(0x00, mload(add(vp, shl(5, r))))
                            mstore(0x20, sib)
                        }
                        default {
                            mstore(0x00, sib)
                            mstore(0x20, mload(add(vp, shl(5, r))))
                        }
                        mstore(add(vp, shl(5, w)), keccak256(0x00, 0x40))
                        mstore(add(ip, shl(5, w)), shr(1, i))
                        w := add(w, 1)
                    }
                }
                n := w
            }
        }
    }
}
