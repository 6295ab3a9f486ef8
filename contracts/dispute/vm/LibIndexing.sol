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
///         one struct for the seven source classes, tagged by `kind`; each kind uses only the
///         fields its Python class has (the others stay zero / empty).
/// @custom:field kind The source class (`SRC_*`).
/// @custom:field region IdentitySource / BroadcastSource: the input region read.
/// @custom:field out BroadcastSource / ConcatSource / TransposeSource / SliceSource: the output shape.
/// @custom:field shape BroadcastSource / TransposeSource / SliceSource: the input's shape.
/// @custom:field axis ConcatSource: the concatenation axis (already `mod rank`).
/// @custom:field shapes ConcatSource: the inputs' shapes, in order.
/// @custom:field perm TransposeSource: the permutation (already `mod rank`).
/// @custom:field starts SliceSource: the clamped start per sliced dim (`slice.indices`).
/// @custom:field steps SliceSource: the step per sliced dim (nonzero, int64).
/// @custom:field post GatherIndexSource / GatherDataSource: elements after the gather axis.
/// @custom:field p GatherIndexSource / GatherDataSource: the index count.
/// @custom:field n GatherDataSource: the data's size along the gather axis.
struct Source {
    uint8 kind;
    uint256 region;
    uint256[] out;
    uint256[] shape;
    uint256 axis;
    uint256[][] shapes;
    uint256[] perm;
    int256[] starts;
    int256[] steps;
    uint256 post;
    uint256 p;
    uint256 n;
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
    function broadcastSource(uint256[] memory _coords, uint256[] memory _shape)
        internal
        pure
        returns (uint256 index_)
    {
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

    /// @notice `BroadcastSource(region, out, shape)`: an add / mul / where operand.
    function newBroadcastSource(uint256 _region, uint256[] memory _out, uint256[] memory _shape)
        internal
        pure
        returns (Source memory s_)
    {
        s_.kind = SRC_BROADCAST;
        s_.region = _region;
        s_.out = _out;
        s_.shape = _shape;
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

    /// @notice `ConcatSource(out, axis, shapes)`: concat along `_axis`.
    function newConcatSource(uint256[] memory _out, uint256 _axis, uint256[][] memory _shapes)
        internal
        pure
        returns (Source memory s_)
    {
        s_.kind = SRC_CONCAT;
        s_.out = _out;
        s_.axis = _axis;
        s_.shapes = _shapes;
    }

    /// @notice `TransposeSource(out, perm, shape)`: transpose by `_perm`.
    function newTransposeSource(uint256[] memory _out, uint256[] memory _perm, uint256[] memory _shape)
        internal
        pure
        returns (Source memory s_)
    {
        s_.kind = SRC_TRANSPOSE;
        s_.out = _out;
        s_.perm = _perm;
        s_.shape = _shape;
    }

    /// @notice `SliceSource(out, starts, steps, shape)`: slice of the leading dims.
    function newSliceSource(uint256[] memory _out, int256[] memory _starts, int256[] memory _steps, uint256[] memory _shape)
        internal
        pure
        returns (Source memory s_)
    {
        s_.kind = SRC_SLICE;
        s_.out = _out;
        s_.starts = _starts;
        s_.steps = _steps;
        s_.shape = _shape;
    }

    /// @notice The operand output element `_o` reads (`Source.at`), packed `region << 128 | element`.
    function sourceAt(Source memory _s, uint256 _o) internal pure returns (uint256 op_) {
        uint8 kind = _s.kind;
        if (kind == SRC_IDENTITY) return (_s.region << 128) | _o;
        if (kind == SRC_BROADCAST) return (_s.region << 128) | broadcastSource(unravel(_o, _s.out), _s.shape);
        if (kind == SRC_GATHER_INDEX) return (uint256(1) << 128) | ((_o / _s.post) % _s.p);
        if (kind == SRC_GATHER_DATA) return _o / (_s.post * _s.p) * _s.n * _s.post + _o % _s.post;
        if (kind == SRC_CONCAT) return concatAt(_s, _o);
        if (kind == SRC_TRANSPOSE) return transposeAt(_s, _o);
        return sliceAt(_s, _o);
    }

    /// @notice `ConcatSource.at`: the input whose range along the axis holds the coordinate.
    function concatAt(Source memory _s, uint256 _o) internal pure returns (uint256 op_) {
        uint256[] memory coords = unravel(_o, _s.out);
        uint256 c = coords[_s.axis];
        for (uint256 i = 0; i < _s.shapes.length; ++i) {
            uint256[] memory shape = _s.shapes[i];
            if (c < shape[_s.axis]) {
                coords[_s.axis] = c;
                return (i << 128) | ravel(coords, shape);
            }
            c -= shape[_s.axis];
        }
        // INVARIANT: unreachable, `planElementwise` checked the shapes (Python raises the same).
        revert UnsupportedOp();
    }

    /// @notice `TransposeSource.at`: input coordinate `perm[j]` is output coordinate `j`.
    function transposeAt(Source memory _s, uint256 _o) internal pure returns (uint256 op_) {
        uint256[] memory coords = unravel(_o, _s.out);
        uint256[] memory src = new uint256[](_s.shape.length);
        for (uint256 j = 0; j < _s.perm.length; ++j) {
            src[_s.perm[j]] = coords[j];
        }
        op_ = ravel(src, _s.shape);
    }

    /// @notice `SliceSource.at`: input coordinate `start_d + c_d·step_d` on the sliced dims, `c_d`
    ///         on the others.
    function sliceAt(Source memory _s, uint256 _o) internal pure returns (uint256 op_) {
        uint256[] memory coords = unravel(_o, _s.out);
        for (uint256 d = 0; d < _s.starts.length; ++d) {
            // SAFETY: |start| <= 2^32, c < 2^32, |step| < 2^63: far inside int256; the result is a
            // member of the (non-empty) clamped range, so in [0, dim) and the cast is exact.
            coords[d] = uint256(_s.starts[d] + int256(coords[d]) * _s.steps[d]);
        }
        op_ = ravel(coords, _s.shape);
    }
}
