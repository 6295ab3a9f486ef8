// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { UnsupportedOp } from "../lib/Errors.sol";

/// @dev Source kinds (`fraud_vm.indexing`'s Source classes; a tag of the `Source` struct, not
///      part of the protocol).
uint8 constant SRC_IDENTITY = 0;
uint8 constant SRC_BROADCAST = 1;
uint8 constant SRC_GATHER_INDEX = 2;
uint8 constant SRC_GATHER_DATA = 3;
uint8 constant SRC_CONCAT = 4;
uint8 constant SRC_TRANSPOSE = 5;
uint8 constant SRC_SLICE = 6;

/// @notice What output element `o` of an elementwise program reads (`fraud_vm.indexing.Source`):
///         one struct for the seven source classes, tagged by `kind`. The constructors
///         (`new<Class>`) take the Python class's fields and precompute what `at(o)` needs, so that
///         `sourceAt` allocates nothing per lane: a broadcast, transpose or slice source is affine
///         in the output coordinates, `element = base + Σ_d unravel(o, out)_d · coefs_d` (the
///         `ravel` of the Python `at` expanded); a concat source keeps the inputs' sizes along the
///         axis.
/// @custom:field kind The source class (`SRC_*`).
/// @custom:field region Identity / Broadcast: the input region read.
/// @custom:field sizes Broadcast / Transpose / Slice: the output shape.
/// @custom:field coefs Broadcast / Transpose / Slice: the input element step per output coordinate.
/// @custom:field base Slice: the input element of the output's first element.
/// @custom:field post Gather*: elements after the gather axis; Concat: elements after the axis.
/// @custom:field p Gather*: the index count.
/// @custom:field n GatherData: the data's size along the axis; Concat: the output's.
/// @custom:field lens Concat: the inputs' sizes along the axis, in order.
struct Source {
    uint8 kind;
    uint256 region;
    uint256[] sizes;
    int256[] coefs;
    int256 base;
    uint256 post;
    uint256 p;
    uint256 n;
    uint256[] lens;
}

/// @title LibIndexing
/// @notice N-d index arithmetic of the program derivation: the mirror of `fraud_vm/indexing.py`
///         function by function (C-order ravel/unravel, numpy broadcasting, the sources of the
///         elementwise programs, docs/fraud_vm.md "Programs"). Each function costs O(rank) (a
///         concat source O(rank + inputs)). Shapes are the context's concrete dims (each < 2^32,
///         sizes < 2^64, `fraud_vm.context`), so no product below overflows; operands are packed
///         `region << 128 | element` (`VMTypes.sol`).
library LibIndexing {
    /// @notice `ceil(_a / _b)` for `_b > 0` (`ceil_div`).
    function ceilDiv(uint256 _a, uint256 _b) internal pure returns (uint256 q_) {
        q_ = _a == 0 ? 0 : (_a - 1) / _b + 1;
    }

    /// @notice C-order coordinates of flat `_index` in `_shape` (`unravel`; every dim > 0).
    function unravel(uint256 _index, uint256[] memory _shape) internal pure returns (uint256[] memory coords_) {
        uint256 nd = _shape.length;
        coords_ = new uint256[](nd);
        for (uint256 d = nd; d > 0; --d) {
            uint256 size = _shape[d - 1];
            coords_[d - 1] = _index % size;
            _index /= size;
        }
    }

    /// @notice C-order flat index of `_coords` in `_shape` (`ravel`; equal lengths).
    function ravel(uint256[] memory _coords, uint256[] memory _shape) internal pure returns (uint256 index_) {
        for (uint256 d = 0; d < _shape.length; ++d) {
            index_ = index_ * _shape[d] + _coords[d];
        }
    }

    /// @notice C-order element strides of `_shape` (`strides`).
    function strides(uint256[] memory _shape) internal pure returns (uint256[] memory out_) {
        uint256 nd = _shape.length;
        out_ = new uint256[](nd);
        uint256 s = 1;
        for (uint256 d = nd; d > 0; --d) {
            out_[d - 1] = s;
            s *= _shape[d - 1];
        }
    }

    /// @notice `offset(_i, _dims)` (`ravel_dims`): unravel `_i` over the dims' sizes (`_dims[d][0]`,
    ///         outermost first) and dot the coordinates with their strides (`_dims[d][1]`).
    function ravelDims(uint256 _i, uint256[2][] memory _dims) internal pure returns (uint256 off_) {
        for (uint256 d = _dims.length; d > 0; --d) {
            uint256 size = _dims[d - 1][0];
            off_ += (_i % size) * _dims[d - 1][1];
            _i /= size;
        }
    }

    /// @notice numpy's broadcast of `_shapes` (`broadcast_shape`): right-aligned, per dim the sizes
    ///         other than 1 must agree (that size, else 1). Reverts `UnsupportedOp` if they do not.
    function broadcastShape(uint256[][] memory _shapes) internal pure returns (uint256[] memory out_) {
        uint256 nd = 0;
        for (uint256 k = 0; k < _shapes.length; ++k) {
            if (_shapes[k].length > nd) nd = _shapes[k].length;
        }
        out_ = new uint256[](nd);
        for (uint256 d = 0; d < nd; ++d) {
            uint256 size = 1;
            for (uint256 k = 0; k < _shapes.length; ++k) {
                uint256 len = _shapes[k].length;
                // SAFETY: a shape shorter than `nd` has no dim here (right-aligned).
                if (d + len < nd) continue;
                uint256 s = _shapes[k][d + len - nd];
                if (s == 1) continue;
                // INVARIANT: all sizes other than 1 along a dim agree.
                if (size != 1 && size != s) revert UnsupportedOp();
                size = s;
            }
            out_[d] = size;
        }
    }

    /// @notice Flat index in `_shape` read by the broadcast output element at `_coords`
    ///         (`broadcast_source`): `_shape` right-aligned to the coordinates (no longer than
    ///         them), a dim of size 1 reads coordinate 0.
    function broadcastSource(uint256[] memory _coords, uint256[] memory _shape) internal pure returns (uint256 index_) {
        uint256 skip = _coords.length - _shape.length;
        for (uint256 d = 0; d < _shape.length; ++d) {
            uint256 size = _shape[d];
            index_ = index_ * size + (size == 1 ? 0 : _coords[skip + d]);
        }
    }

    // -----------------------------------------------------------------------------------------
    // sources: output element -> packed operand (region << 128 | element)

    /// @notice `IdentitySource(region)`: same-shape elementwise ops and reshape.
    function newIdentitySource(uint256 _region) internal pure returns (Source memory s_) {
        s_.kind = SRC_IDENTITY;
        s_.region = _region;
    }

    /// @notice `BroadcastSource(region, out, shape)`: an add / mul / where operand; `at(o)` =
    ///         `broadcast_source(unravel(o, out), shape)`, i.e. coefficient = the C-order stride of
    ///         `shape` (right-aligned, no longer than `out`) on its dims of size > 1, else 0.
    function newBroadcastSource(uint256 _region, uint256[] memory _out, uint256[] memory _shape)
        internal
        pure
        returns (Source memory s_)
    {
        s_.kind = SRC_BROADCAST;
        s_.region = _region;
        s_.sizes = _out;
        uint256 nd = _out.length;
        s_.coefs = new int256[](nd);
        uint256 skip = nd - _shape.length;
        uint256 stride = 1;
        for (uint256 d = _shape.length; d > 0; --d) {
            uint256 size = _shape[d - 1];
            // SAFETY: strides are partial products of a size < 2^64.
            if (size != 1) s_.coefs[skip + d - 1] = int256(stride);
            stride *= size;
        }
    }

    /// @notice `GatherIndexSource(post, p)`: gather's index operand.
    function newGatherIndexSource(uint256 _post, uint256 _p) internal pure returns (Source memory s_) {
        s_.kind = SRC_GATHER_INDEX;
        s_.post = _post;
        s_.p = _p;
    }

    /// @notice `GatherDataSource(post, p, n)`: gather's data base.
    function newGatherDataSource(uint256 _post, uint256 _p, uint256 _n) internal pure returns (Source memory s_) {
        s_.kind = SRC_GATHER_DATA;
        s_.post = _post;
        s_.p = _p;
        s_.n = _n;
    }

    /// @notice `ConcatSource(out, axis, shapes)`: concat along `_axis` (`_out[_axis]` = the sum of
    ///         the inputs' sizes along it; the inputs equal `_out` elsewhere).
    function newConcatSource(uint256[] memory _out, uint256 _axis, uint256[][] memory _shapes)
        internal
        pure
        returns (Source memory s_)
    {
        s_.kind = SRC_CONCAT;
        s_.post = 1;
        for (uint256 d = _axis + 1; d < _out.length; ++d) {
            s_.post *= _out[d];
        }
        s_.n = _out[_axis];
        s_.lens = new uint256[](_shapes.length);
        for (uint256 i = 0; i < _shapes.length; ++i) {
            s_.lens[i] = _shapes[i][_axis];
        }
    }

    /// @notice `TransposeSource(out, perm, shape)`: input coordinate `perm[j]` is output
    ///         coordinate `j`, so coefficient `j` = the input's stride of dim `perm[j]`.
    function newTransposeSource(uint256[] memory _out, uint256[] memory _perm, uint256[] memory _shape)
        internal
        pure
        returns (Source memory s_)
    {
        s_.kind = SRC_TRANSPOSE;
        s_.sizes = _out;
        uint256[] memory st = strides(_shape);
        s_.coefs = new int256[](_perm.length);
        for (uint256 j = 0; j < _perm.length; ++j) {
            s_.coefs[j] = int256(st[_perm[j]]);
        }
    }

    /// @notice `SliceSource(out, starts, steps, shape)`: input coordinate `start_d + c_d·step_d` on
    ///         the sliced (leading) dims, `c_d` on the others: `base = Σ start_d·stride_d`,
    ///         coefficient `d` = `step_d·stride_d` (`stride_d` on the others).
    function newSliceSource(
        uint256[] memory _out,
        int256[] memory _starts,
        int256[] memory _steps,
        uint256[] memory _shape
    ) internal pure returns (Source memory s_) {
        s_.kind = SRC_SLICE;
        s_.sizes = _out;
        uint256[] memory st = strides(_shape);
        s_.coefs = new int256[](_shape.length);
        for (uint256 d = 0; d < _shape.length; ++d) {
            // SAFETY: |start| <= 2^32, |step| <= 2^63 and strides < 2^64: far inside int256.
            if (d < _starts.length) {
                s_.base += _starts[d] * int256(st[d]);
                s_.coefs[d] = _steps[d] * int256(st[d]);
            } else {
                s_.coefs[d] = int256(st[d]);
            }
        }
    }

    /// @notice The operand output element `_o` reads (`Source.at`), packed `region << 128 | element`.
    function sourceAt(Source memory _s, uint256 _o) internal pure returns (uint256 op_) {
        uint8 kind = _s.kind;
        if (kind == SRC_IDENTITY) return (_s.region << 128) | _o;
        if (kind == SRC_GATHER_INDEX) return (uint256(1) << 128) | ((_o / _s.post) % _s.p);
        if (kind == SRC_GATHER_DATA) return _o / (_s.post * _s.p) * _s.n * _s.post + _o % _s.post;
        if (kind == SRC_CONCAT) return concatAt(_s, _o);
        return (_s.region << 128) | affineAt(_s, _o);
    }

    /// @notice The operands of the `_count` consecutive output elements `_first, _first + 1, ..`
    ///         (`[sourceAt(_s, o) for o in range(_first, _first + _count)]`, one instruction's
    ///         lanes). An affine source (broadcast, transpose, slice) unravels `_first` once and then
    ///         steps the coordinates like an odometer (the last dim's coefficient per element, a
    ///         carry rewinds a dim and advances the one before), so a lane costs O(1) amortized
    ///         instead of O(rank); the other kinds evaluate `sourceAt` per lane.
    function sourceRun(Source memory _s, uint256 _first, uint256 _count) internal pure returns (uint256[] memory ops_) {
        ops_ = new uint256[](_count);
        uint8 kind = _s.kind;
        if (_count == 0) return ops_;
        if (kind == SRC_CONCAT) return concatRun(_s, _first, ops_);
        if (kind != SRC_BROADCAST && kind != SRC_TRANSPOSE && kind != SRC_SLICE) {
            for (uint256 l = 0; l < _count; ++l) {
                ops_[l] = sourceAt(_s, _first + l);
            }
            return ops_;
        }
        uint256[] memory sizes = _s.sizes;
        int256[] memory coefs = _s.coefs;
        uint256 nd = sizes.length;
        uint256 tag = _s.region << 128;
        uint256[] memory coords = unravel(_first, sizes);
        int256 e = int256(affineAt(_s, _first));
        // SAFETY: every intermediate `e` is the element of an output index in
        // [_first, _first + _count) or one past it, whose |value| < 2^160 (see `affineAt`); the
        // coordinates stay below their sizes (< 2^32), a carry only after a dim reached its size.
        unchecked {
            for (uint256 l = 0; l < _count; ++l) {
                ops_[l] = tag | uint256(e);
                if (l + 1 == _count || nd == 0) continue;
                uint256 d = nd - 1;
                coords[d] += 1;
                e += coefs[d];
                while (coords[d] == sizes[d] && d > 0) {
                    e -= coefs[d] * int256(sizes[d]);
                    coords[d] = 0;
                    d -= 1;
                    coords[d] += 1;
                    e += coefs[d];
                }
            }
        }
    }

    /// @notice `sourceRun` of a concat source: fills `_ops` with `concatAt(o)` for
    ///         `o = _first, _first + 1, ..`, keeping the current input `i` and where its range
    ///         along the axis starts; consecutive elements move forward along the axis (or wrap
    ///         to its start), so the walk over the inputs is shared by the lanes.
    function concatRun(Source memory _s, uint256 _first, uint256[] memory _ops)
        internal
        pure
        returns (uint256[] memory ops_)
    {
        uint256 post = _s.post;
        uint256 n = _s.n;
        uint256[] memory lens = _s.lens;
        uint256 i = 0;
        uint256 start = 0;
        for (uint256 l = 0; l < _ops.length; ++l) {
            uint256 o = _first + l;
            uint256 c = (o / post) % n;
            if (c < start) (i, start) = (0, 0);
            while (c >= start + lens[i]) {
                start += lens[i];
                ++i;
            }
            _ops[l] = (i << 128) | ((((o / (post * n)) * lens[i] + c - start) * post) + o % post);
        }
        ops_ = _ops;
    }

    /// @notice `base + Σ_d unravel(_o, sizes)_d · coefs_d`: Broadcast / Transpose / Slice `at(o)`'s
    ///         element. For a valid plan it is an element of the input (in `[0, size)`): a slice's
    ///         coordinates are members of the clamped ranges.
    function affineAt(Source memory _s, uint256 _o) internal pure returns (uint256 e_) {
        int256 acc = _s.base;
        uint256[] memory sizes = _s.sizes;
        int256[] memory coefs = _s.coefs;
        uint256 nd = sizes.length;
        // INVARIANT: one coefficient per output dim (the constructors' shapes).
        if (coefs.length != nd) revert UnsupportedOp();
        // SAFETY: coordinate < 2^32 times |coef| < 2^127, at most 8 terms plus |base| < 2^127:
        // inside int256; `d` runs from `nd - 1` down to 0 and indexes both arrays.
        unchecked {
            for (uint256 d = nd; d > 0; --d) {
                uint256 size;
                int256 coef;
                assembly ("memory-safe") {
                    size := mload(add(sizes, shl(5, d)))
                    coef := mload(add(coefs, shl(5, d)))
                }
                acc += int256(_o % size) * coef;
                _o /= size;
            }
        }
        e_ = uint256(acc);
    }

    /// @notice `ConcatSource.at`: the input `i` whose range along the axis holds the coordinate
    ///         `c`, element `ravel(coords, shape_i)` = `(o div (n·post))·len_i·post + (c − start_i)·post
    ///         + o mod post`.
    function concatAt(Source memory _s, uint256 _o) internal pure returns (uint256 op_) {
        uint256 post = _s.post;
        uint256 c = (_o / post) % _s.n;
        uint256 outer = _o / (post * _s.n);
        for (uint256 i = 0; i < _s.lens.length; ++i) {
            uint256 len = _s.lens[i];
            if (c < len) return (i << 128) | (((outer * len + c) * post) + _o % post);
            c -= len;
        }
        // INVARIANT: unreachable, `planElementwise` checked the shapes (Python raises the same).
        revert UnsupportedOp();
    }
}
