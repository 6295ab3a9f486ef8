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

    /// @notice `LibIndexing.sourceAt` for each element of `_os` (one call for many elements).
    function sourceAt(Source memory _s, uint256[] memory _os) external pure returns (uint256[] memory ops_) {
        ops_ = new uint256[](_os.length);
        for (uint256 i = 0; i < _os.length; ++i) {
            ops_[i] = LibIndexing.sourceAt(_s, _os[i]);
        }
    }
}
