// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { LibIndexing, Source } from "../vm/LibIndexing.sol";

/// @title LibIndexingHarness
/// @notice Exposes `LibIndexing` as external functions, for the differential test against
///         `fraud_vm/indexing.py` (`tests/contracts/test_vm_stream.py`). Not deployed on L1.
contract LibIndexingHarness {
    /// @notice `LibIndexing.ceilDiv`.
    function ceilDiv(uint256 _a, uint256 _b) external pure returns (uint256) {
        return LibIndexing.ceilDiv(_a, _b);
    }

    /// @notice `LibIndexing.unravel`.
    function unravel(uint256 _index, uint256[] memory _shape) external pure returns (uint256[] memory) {
        return LibIndexing.unravel(_index, _shape);
    }

    /// @notice `LibIndexing.ravel`.
    function ravel(uint256[] memory _coords, uint256[] memory _shape) external pure returns (uint256) {
        return LibIndexing.ravel(_coords, _shape);
    }

    /// @notice `LibIndexing.strides`.
    function strides(uint256[] memory _shape) external pure returns (uint256[] memory) {
        return LibIndexing.strides(_shape);
    }

    /// @notice `LibIndexing.ravelDims`.
    function ravelDims(uint256 _i, uint256[2][] memory _dims) external pure returns (uint256) {
        return LibIndexing.ravelDims(_i, _dims);
    }

    /// @notice `LibIndexing.broadcastShape`.
    function broadcastShape(uint256[][] memory _shapes) external pure returns (uint256[] memory) {
        return LibIndexing.broadcastShape(_shapes);
    }

    /// @notice `LibIndexing.broadcastSource`.
    function broadcastSource(uint256[] memory _coords, uint256[] memory _shape) external pure returns (uint256) {
        return LibIndexing.broadcastSource(_coords, _shape);
    }

    /// @notice `sourceAt(newIdentitySource(_region), o)` for each `o` of `_os`, and their `sourceRun`.
    function identityAt(uint256 _region, uint256[] memory _os, uint256 _first, uint256 _count)
        external
        pure
        returns (uint256[] memory, uint256[] memory)
    {
        return atEach(LibIndexing.newIdentitySource(_region), _os, _first, _count);
    }

    /// @notice `sourceAt(newBroadcastSource(..), o)` for each `o` of `_os`, and their `sourceRun`.
    function broadcastAt(
        uint256 _region,
        uint256[] memory _out,
        uint256[] memory _shape,
        uint256[] memory _os,
        uint256 _first,
        uint256 _count
    ) external pure returns (uint256[] memory, uint256[] memory) {
        return atEach(LibIndexing.newBroadcastSource(_region, _out, _shape), _os, _first, _count);
    }

    /// @notice `sourceAt(newGatherIndexSource(..), o)` for each `o` of `_os`, and their `sourceRun`.
    function gatherIndexAt(uint256 _post, uint256 _p, uint256[] memory _os, uint256 _first, uint256 _count)
        external
        pure
        returns (uint256[] memory, uint256[] memory)
    {
        return atEach(LibIndexing.newGatherIndexSource(_post, _p), _os, _first, _count);
    }

    /// @notice `sourceAt(newGatherDataSource(..), o)` for each `o` of `_os`, and their `sourceRun`.
    function gatherDataAt(uint256 _post, uint256 _p, uint256 _n, uint256[] memory _os, uint256 _first, uint256 _count)
        external
        pure
        returns (uint256[] memory, uint256[] memory)
    {
        return atEach(LibIndexing.newGatherDataSource(_post, _p, _n), _os, _first, _count);
    }

    /// @notice `sourceAt(newConcatSource(..), o)` for each `o` of `_os`, and their `sourceRun`.
    function concatAt(
        uint256[] memory _out,
        uint256 _axis,
        uint256[][] memory _shapes,
        uint256[] memory _os,
        uint256 _first,
        uint256 _count
    ) external pure returns (uint256[] memory, uint256[] memory) {
        return atEach(LibIndexing.newConcatSource(_out, _axis, _shapes), _os, _first, _count);
    }

    /// @notice `sourceAt(newTransposeSource(..), o)` for each `o` of `_os`, and their `sourceRun`.
    function transposeAt(
        uint256[] memory _out,
        uint256[] memory _perm,
        uint256[] memory _shape,
        uint256[] memory _os,
        uint256 _first,
        uint256 _count
    ) external pure returns (uint256[] memory, uint256[] memory) {
        return atEach(LibIndexing.newTransposeSource(_out, _perm, _shape), _os, _first, _count);
    }

    /// @notice `sourceAt(newSliceSource(..), o)` for each `o` of `_os`, and their `sourceRun`.
    function sliceAt(
        uint256[] memory _out,
        int256[] memory _starts,
        int256[] memory _steps,
        uint256[] memory _shape,
        uint256[] memory _os,
        uint256 _first,
        uint256 _count
    ) external pure returns (uint256[] memory, uint256[] memory) {
        return atEach(LibIndexing.newSliceSource(_out, _starts, _steps, _shape), _os, _first, _count);
    }

    /// @notice `LibIndexing.sourceAt(_s, o)` for each `o` of `_os`, and
    ///         `LibIndexing.sourceRun(_s, _first, _count)`.
    function atEach(Source memory _s, uint256[] memory _os, uint256 _first, uint256 _count)
        internal
        pure
        returns (uint256[] memory ops_, uint256[] memory run_)
    {
        ops_ = new uint256[](_os.length);
        for (uint256 i = 0; i < _os.length; ++i) {
            ops_[i] = LibIndexing.sourceAt(_s, _os[i]);
        }
        run_ = LibIndexing.sourceRun(_s, _first, _count);
    }
}
