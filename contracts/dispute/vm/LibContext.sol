// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { MalformedContext } from "../lib/Errors.sol";
import { DT_BOOL, DT_FLOAT32, DT_INT16, DT_INT32, DT_INT64, NodeContext, Region, TensorInfo } from "./VMTypes.sol";

/// @title LibContext
/// @notice Node context decoding: the mirror of `fraud_vm/context.py` (`decode_context`,
///         `parse_node_words`, `_info`, `check_arity`, `NodeContext.regions`). A context is
///         `address ‖ int256 words [node_index, batch, m, node_words.., t, (len_j, desc_j..)..]`
///         (docs/fraud_vm.md "Node context"). Every structural fault is `MalformedContext`; the
///         Python decoder accepts exactly the canonical encodings, which a strict parse (every count
///         non-negative and covered by the words, nothing left over) accepts too. The bounds
///         (batch in [1, 2^16], dims < 2^32, sizes < 2^64, attribute values and zero points within
///         int64, scale bits < 2^32) keep every later index computation far inside 256 bits.
library LibContext {
    /// @dev Most words a context may have, the address word included (`MAX_CONTEXT_WORDS`).
    uint256 internal constant MAX_CONTEXT_WORDS = 4096;
    /// @dev Largest batch (`MAX_BATCH`).
    uint256 internal constant MAX_BATCH = 1 << 16;
    /// @dev Every dimension is below this (`MAX_DIM`).
    uint256 internal constant MAX_DIM = 1 << 32;
    /// @dev Every tensor's element count is below this (`MAX_SIZE`).
    uint256 internal constant MAX_SIZE = 1 << 64;
    /// @dev A scale is float32 bits (`SCALE_BITS_LIMIT`).
    int256 internal constant SCALE_BITS_LIMIT = 1 << 32;
    /// @dev Highest op code (`opml.ops`: codes 1..22).
    uint256 internal constant MAX_OP = 22;
    /// @dev Attribute count per op code 1..22 (`opml.ops._SCHEMAS`, `len(schema.attrs)`), one byte each.
    bytes internal constant ATTR_COUNTS = hex"00000206040504000106040605000101030103000000";

    /// @notice Word `_k` of `_data` as int256 (word 0 is the address; `_k` < word count).
    /// @param _data The context bytes.
    /// @param _k The word index.
    /// @return w_ The word, two's complement.
    function word(bytes calldata _data, uint256 _k) internal pure returns (int256 w_) {
        assembly ("memory-safe") {
            w_ := calldataload(add(_data.offset, shl(5, _k)))
        }
    }

    /// @notice Decode a node context (`decode_context` with the node words parsed by
    ///         `parseNodeWords`, `check_arity` and every tensor's `_info`, all of which Python
    ///         raises as `MalformedContext` before it derives any program).
    /// @param _data The context bytes (`NodeContext.encode`).
    /// @return ctx_ The decoded context.
    function decodeContext(bytes calldata _data) internal pure returns (NodeContext memory ctx_) {
        // SAFETY: word counts are below 4097 (the length check comes first), `m` and `t`
        // are checked non-negative before use and each position is compared with `n` before the
        // subtraction that follows it: nothing here wraps.
        unchecked {
            uint256 len = _data.length;
            // INVARIANT: whole words, at least one, at most MAX_CONTEXT_WORDS.
            if (len % 32 != 0 || len == 0 || len > 32 * MAX_CONTEXT_WORDS) revert MalformedContext();
            uint256 n = len / 32;
            // INVARIANT: address, node index, batch and m are present.
            if (n < 4) revert MalformedContext();
            int256 m = word(_data, 3);
            // INVARIANT: the m node words and the tensor count t are inside the context.
            if (m < 0 || uint256(m) + 5 > n) revert MalformedContext();
            uint256 pos = 4 + uint256(m);
            int256 t = word(_data, pos);
            // INVARIANT: t >= 0; each descriptor takes at least 7 words, so t < n bounds the loop.
            if (t < 0 || uint256(t) > n) revert MalformedContext();
            uint256[] memory starts = new uint256[](uint256(t));
            uint256[] memory lens = new uint256[](uint256(t));
            for (uint256 j = 0; j < uint256(t); ++j) {
                // INVARIANT: the length word is present, at least 6 and its words are inside the context.
                if (pos + 2 > n) revert MalformedContext();
                int256 ln = word(_data, pos + 1);
                if (ln < 6 || uint256(ln) > n - pos - 2) revert MalformedContext();
                starts[j] = pos + 2;
                lens[j] = uint256(ln);
                pos += 1 + uint256(ln);
            }
            // INVARIANT: nothing follows the last descriptor (canonical encoding).
            if (pos + 1 != n) revert MalformedContext();
            int256 batch = word(_data, 2);
            // INVARIANT: 1 <= batch <= 2^16.
            if (batch < 1 || uint256(batch) > MAX_BATCH) revert MalformedContext();
            ctx_.modelAddress = bytes32(uint256(word(_data, 0)));
            ctx_.nodeIndex = uint256(word(_data, 1));
            ctx_.batch = uint256(batch);
            (ctx_.op, ctx_.nInputs, ctx_.attrs) = parseNodeWords(_data, 4, 4 + uint256(m));
            // INVARIANT: one descriptor per node input plus the output (`check_arity`).
            if (uint256(t) != ctx_.nInputs + 1) revert MalformedContext();
            ctx_.tensors = new TensorInfo[](uint256(t));
            for (uint256 j = 0; j < uint256(t); ++j) {
                ctx_.tensors[j] = info(_data, starts[j], lens[j], uint256(batch));
            }
        }
    }

    /// @notice Parse the node words `[op, n_in, in.., n_out, out.., n_attrs, (len, vals..)..]`
    ///         held in words `[_from, _to)` (`parse_node_words`).
    /// @param _data The context bytes.
    /// @param _from The first node word's index.
    /// @param _to One past the last node word's index.
    /// @return op_ The op code (1..22).
    /// @return nInputs_ The input count.
    /// @return attrs_ The attributes in schema order.
    function parseNodeWords(bytes calldata _data, uint256 _from, uint256 _to)
        internal
        pure
        returns (uint256 op_, uint256 nInputs_, int256[][] memory attrs_)
    {
        // SAFETY: `_to <= n < 4097`; `op >= 1` before `op_ - 1`, `_to >= _from + 2`
        // before `_to - _from`, `pos < _to` before `_to - pos - 1`: nothing here wraps.
        unchecked {
            // INVARIANT: the op code and the input count are present; the op code is known.
            if (_to < _from + 2) revert MalformedContext();
            int256 op = word(_data, _from);
            if (op < 1 || uint256(op) > MAX_OP) revert MalformedContext();
            op_ = uint256(op);
            int256 nIn = word(_data, _from + 1);
            // INVARIANT: the inputs, n_out (= 1), its output and n_attrs are inside the node words.
            if (nIn < 0 || uint256(nIn) + 5 > _to - _from) revert MalformedContext();
            nInputs_ = uint256(nIn);
            uint256 pos = _from + 2 + nInputs_;
            if (word(_data, pos) != 1) revert MalformedContext();
            pos += 2;
            uint256 nAttrs = uint8(ATTR_COUNTS[op_ - 1]);
            // INVARIANT: as many attributes as the op's schema names.
            if (word(_data, pos) != int256(nAttrs)) revert MalformedContext();
            attrs_ = new int256[][](nAttrs);
            for (uint256 a = 0; a < nAttrs; ++a) {
                pos += 1;
                // INVARIANT: the length word is present, non-negative, and its values are inside.
                if (pos >= _to) revert MalformedContext();
                int256 ln = word(_data, pos);
                if (ln < 0 || uint256(ln) > _to - pos - 1) revert MalformedContext();
                attrs_[a] = attrValues(_data, pos + 1, uint256(ln));
                pos += uint256(ln);
            }
            // INVARIANT: nothing follows the last attribute.
            if (pos + 1 != _to) revert MalformedContext();
        }
    }

    /// @notice The `_n` values of one attribute starting at word `_start`, each within int64.
    /// @param _data The context bytes.
    /// @param _start The first value's word index.
    /// @param _n The value count (inside the node words).
    /// @return vals_ The values.
    function attrValues(bytes calldata _data, uint256 _start, uint256 _n) internal pure returns (int256[] memory vals_) {
        // SAFETY: word positions are below the context's word count (< 2^13: the caller
        // checked `_start + _n` against it); no other arithmetic.
        unchecked {
            vals_ = new int256[](_n);
            for (uint256 i = 0; i < _n; ++i) {
                int256 v = word(_data, _start + i);
                // INVARIANT: every attribute value lies within int64.
                if (v < type(int64).min || v > type(int64).max) revert MalformedContext();
                vals_[i] = v;
            }
        }
    }

    /// @notice A tensor descriptor `[dtype, ndim, dims.., is_const, scale_bits, zero_point, nbytes]`
    ///         at `_batch` (`_info`): a leading `-k` is `k · batch`.
    /// @param _data The context bytes.
    /// @param _start The descriptor's first word index.
    /// @param _len The descriptor's word count (>= 6).
    /// @param _batch The batch (1..2^16).
    /// @return t_ The tensor info.
    function info(bytes calldata _data, uint256 _start, uint256 _len, uint256 _batch)
        internal
        pure
        returns (TensorInfo memory t_)
    {
        // SAFETY: positions are below the context's word count (< 2^13); `_len >= 6`
        // (the caller's check); dims < 2^32, at most 8 of them, and `k · batch < 2^48`: nothing
        // here wraps (the checks below bound every value before it is used).
        unchecked {
            int256 nd = word(_data, _start + 1);
            // INVARIANT: ndim = len - 6 and ndim <= 8.
            if (nd != int256(_len - 6) || nd > 8) revert MalformedContext();
            int256 dtype = word(_data, _start);
            // INVARIANT: a known dtype code (1..7).
            if (dtype < 1 || dtype > int256(uint256(DT_BOOL))) revert MalformedContext();
            t_.dtype = uint8(uint256(dtype));
            uint256 ndim = uint256(nd);
            t_.shape = new uint256[](ndim);
            uint256 size = 1;
            for (uint256 i = 0; i < ndim; ++i) {
                int256 d = word(_data, _start + 2 + i);
                if (i == 0 && d < 0) {
                    // SAFETY: -2^32 < d checked before negating, so k · batch < 2^48.
                    if (d <= -int256(MAX_DIM)) revert MalformedContext();
                    d = -d * int256(_batch);
                }
                // INVARIANT: 0 <= dim < 2^32 (batch applied).
                if (d < 0 || uint256(d) >= MAX_DIM) revert MalformedContext();
                t_.shape[i] = uint256(d);
                // SAFETY: at most 8 factors below 2^32 each: below 2^256.
                size *= uint256(d);
            }
            // INVARIANT: fewer than 2^64 elements.
            if (size >= MAX_SIZE) revert MalformedContext();
            t_.size = size;
            int256 scaleBits = word(_data, _start + 3 + ndim);
            int256 zp = word(_data, _start + 4 + ndim);
            // INVARIANT: the zero point lies within int64, the scale is float32 bits.
            if (zp < type(int64).min || zp > type(int64).max || scaleBits < 0 || scaleBits >= SCALE_BITS_LIMIT) {
                revert MalformedContext();
            }
            t_.zeroPoint = zp;
            t_.scaleBits = uint256(scaleBits);
            t_.isConst = word(_data, _start + 2 + ndim) == 1;
        }
    }

    /// @notice Bytes per element of a dtype code (`DType.itemsize`).
    /// @param _dtype A dtype code (1..7).
    /// @return size_ 1, 2, 4 or 8.
    function itemsize(uint8 _dtype) internal pure returns (uint256 size_) {
        if (_dtype == DT_INT16) return 2;
        if (_dtype == DT_INT32 || _dtype == DT_FLOAT32) return 4;
        if (_dtype == DT_INT64) return 8;
        return 1;
    }

    /// @notice Depth of the tree holding `_n` leaves (`opml.merkle.tree_depth`:
    ///         `max(0, bit_length(n - 1))`, so 1 for 0 leaves and 0 for 1 leaf).
    /// @param _n The leaf count.
    /// @return depth_ The depth.
    function treeDepth(uint256 _n) internal pure returns (uint256 depth_) {
        if (_n == 0) return 1;
        uint256 x = _n - 1;
        while (x != 0) {
            ++depth_;
            x >>= 1;
        }
    }

    /// @notice The memory regions of a context (`NodeContext.regions`): inputs in order, then the
    ///         output; header `[dtype, ndim, dims..]` (`fraud_vm.tensors.tensor_header`).
    /// @param _ctx The decoded context.
    /// @return regions_ One region per tensor.
    function regions(NodeContext memory _ctx) internal pure returns (Region[] memory regions_) {
        TensorInfo[] memory ts = _ctx.tensors;
        // SAFETY: builds the array in free memory and moves the free memory pointer past it: the
        // pointer slots, then per region its header array (`nd + 2` words) and its six-word
        // `Region` (header pointer, dtype, itemsize, nbytes, nWords, depth). `TensorInfo` in
        // memory is (dtype, shape pointer, size, ..). At most 9 header words per region;
        // `size < 2^64` (`info`), times an item size of at most 8, plus 31: nothing wraps.
        assembly ("memory-safe") {
            let nt := mload(ts)
            regions_ := mload(0x40)
            mstore(regions_, nt)
            let p := add(regions_, shl(5, add(nt, 1)))
            for { let r := 0 } lt(r, nt) { r := add(r, 1) } {
                let t := mload(add(ts, shl(5, add(r, 1))))
                let dt := mload(t)
                let shape := mload(add(t, 0x20))
                let nd := mload(shape)
                let h := p
                mstore(h, add(nd, 2))
                mstore(add(h, 0x20), dt)
                mstore(add(h, 0x40), nd)
                mcopy(add(h, 0x60), add(shape, 0x20), shl(5, nd))
                let reg := add(h, shl(5, add(nd, 3)))
                p := add(reg, 0xc0)
                mstore(add(regions_, shl(5, add(r, 1))), reg)
                // `itemsize`: int16 2, int32 and float32 4, int64 8, the others 1
                let size := 1
                switch dt
                case 3 { size := 2 }
                case 4 { size := 4 }
                case 5 { size := 8 }
                case 6 { size := 4 }
                let nbytes := mul(mload(add(t, 0x40)), size)
                let nw := shr(5, add(nbytes, 31))
                // `treeDepth(nw)`: 1 for no word, else the bit length of `nw - 1`
                let depth := 1
                if nw {
                    depth := 0
                    for { let x := sub(nw, 1) } x { x := shr(1, x) } { depth := add(depth, 1) }
                }
                mstore(reg, h)
                mstore(add(reg, 0x20), dt)
                mstore(add(reg, 0x40), size)
                mstore(add(reg, 0x60), nbytes)
                mstore(add(reg, 0x80), nw)
                mstore(add(reg, 0xa0), depth)
            }
            mstore(0x40, p)
        }
    }
}
