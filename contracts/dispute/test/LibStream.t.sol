// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Test } from "./lib/Test.sol";
import { LibIndexing, Source } from "../vm/LibIndexing.sol";
import { LibStream } from "../vm/LibStream.sol";

/// @title LibStreamTest
/// @notice `LibStream.sliceIndices` on known values of Python's `slice.indices` (the differential
///         test against `fraud_vm.stepper` is `tests/contracts/test_vm_stream.py`), and the fuzzed
///         identity `sourceRun(s, first, count)[l] == sourceAt(s, first + l)` for broadcast,
///         transpose, slice and concat sources built from the fuzz input.
contract LibStreamTest is Test {
    /// @notice `range(*slice(start, end if end >= 0 or step > 0 else None, step).indices(len))`
    ///         as (start, length), values from CPython.
    function testSliceIndicesKnownValues() public pure {
        // (start, end, step, len) -> (range.start, len(range))
        int256[6][12] memory cases = [
            [int256(0), 3, 1, 5, 0, 3],
            [int256(-1), -9, -2, 5, 4, 3], // negative end + negative step: to the front
            [int256(100), -100, -3, 5, 4, 2],
            [int256(-3), 100, 1, 7, 4, 3],
            [int256(-9), 9, 1, 5, 0, 5],
            [int256(-2), -50, -3, 40, 38, 13],
            [int256(2), 1, 1, 5, 2, 0], // empty
            [int256(-100), 2, -1, 5, -1, 0], // start clamped to -1: empty
            [int256(4), 0, -1, 5, 4, 4],
            [int256(3), 3, 2, 3, 3, 0],
            [int256(0), type(int64).max, type(int64).max, 9, 0, 1],
            [int256(type(int64).min), type(int64).min, type(int64).min, 9, -1, 0]
        ];
        for (uint256 i = 0; i < cases.length; ++i) {
            int256[6] memory c = cases[i];
            (int256 start, uint256 length) = LibStream.sliceIndices(c[0], c[1], c[2], uint256(c[3]));
            assertEq(uint256(start + 1), uint256(c[4] + 1), "start");
            assertEq(length, uint256(c[5]), "length");
        }
    }

    /// @notice A shape of rank 1..4 with dims 1..4 from `_seed`.
    function shapeOf(uint256 _seed) internal pure returns (uint256[] memory s_) {
        s_ = new uint256[](1 + (_seed % 4));
        for (uint256 d = 0; d < s_.length; ++d) {
            s_[d] = 1 + ((_seed >> (8 * (d + 1))) % 4);
        }
    }

    /// @notice `sourceRun` equals `sourceAt` lane by lane.
    function checkRun(Source memory _s, uint256 _size, uint256 _seed) internal pure {
        uint256 first = (_seed >> 100) % _size;
        uint256 count = ((_seed >> 140) % 40) % (_size - first + 1);
        uint256[] memory run = LibIndexing.sourceRun(_s, first, count);
        assertEq(run.length, count, "run length");
        for (uint256 l = 0; l < count; ++l) {
            assertEq(run[l], LibIndexing.sourceAt(_s, first + l), "lane");
        }
    }

    /// @notice The element count of `_shape`.
    function prod(uint256[] memory _shape) internal pure returns (uint256 p_) {
        p_ = 1;
        for (uint256 d = 0; d < _shape.length; ++d) {
            p_ *= _shape[d];
        }
    }

    /// @notice Broadcast: the input keeps a suffix of the output's dims, some set to 1.
    function testFuzzBroadcastRun(uint256 _seed) public pure {
        uint256[] memory out = shapeOf(_seed);
        uint256 drop = (_seed >> 60) % (out.length + 1);
        uint256[] memory shape = new uint256[](out.length - drop);
        for (uint256 d = 0; d < shape.length; ++d) {
            shape[d] = ((_seed >> (70 + d)) & 1) == 1 ? 1 : out[drop + d];
        }
        checkRun(LibIndexing.newBroadcastSource(2, out, shape), prod(out), _seed);
    }

    /// @notice Transpose by a rotation of the axes.
    function testFuzzTransposeRun(uint256 _seed) public pure {
        uint256[] memory x = shapeOf(_seed);
        uint256 nd = x.length;
        uint256 rot = (_seed >> 60) % nd;
        uint256[] memory perm = new uint256[](nd);
        uint256[] memory out = new uint256[](nd);
        for (uint256 j = 0; j < nd; ++j) {
            perm[j] = (j + rot) % nd;
            out[j] = x[perm[j]];
        }
        checkRun(LibIndexing.newTransposeSource(out, perm, x), prod(x), _seed);
    }

    /// @notice Slice of the leading dims with steps in {-2, -1, 1, 2} and Python's clamping.
    function testFuzzSliceRun(uint256 _seed) public pure {
        uint256[] memory x = shapeOf(_seed);
        uint256 ns = (_seed >> 60) % (x.length + 1);
        int256[] memory starts = new int256[](ns);
        int256[] memory steps = new int256[](ns);
        uint256[] memory out = new uint256[](x.length);
        for (uint256 d = 0; d < x.length; ++d) {
            out[d] = x[d];
        }
        for (uint256 d = 0; d < ns; ++d) {
            int256 step = int256((_seed >> (64 + 2 * d)) % 2 + 1);
            if ((_seed >> (80 + d)) & 1 == 1) step = -step;
            int256 s = int256((_seed >> (90 + 4 * d)) % 9) - 4;
            int256 e = int256((_seed >> (200 + 4 * d)) % 9) - 4;
            (starts[d], out[d]) = LibStream.sliceIndices(s, e, step, x[d]);
            steps[d] = step;
        }
        uint256 size = prod(out);
        if (size == 0) return; // an empty output has no lanes
        checkRun(LibIndexing.newSliceSource(out, starts, steps, x), size, _seed);
    }

    /// @notice Concat of 1..4 inputs (some empty along the axis).
    function testFuzzConcatRun(uint256 _seed) public pure {
        uint256[] memory x = shapeOf(_seed);
        uint256 axis = (_seed >> 60) % x.length;
        uint256 k = 1 + (_seed >> 64) % 4;
        uint256[][] memory shapes = new uint256[][](k);
        uint256[] memory out = new uint256[](x.length);
        for (uint256 d = 0; d < x.length; ++d) {
            out[d] = d == axis ? 0 : x[d];
        }
        for (uint256 i = 0; i < k; ++i) {
            shapes[i] = new uint256[](x.length);
            for (uint256 d = 0; d < x.length; ++d) {
                shapes[i][d] = d == axis ? (_seed >> (70 + 2 * i)) % 4 : x[d];
            }
            out[axis] += shapes[i][axis];
        }
        uint256 size = prod(out);
        if (size == 0) return; // an empty output has no lanes
        checkRun(LibIndexing.newConcatSource(out, axis, shapes), size, _seed);
    }
}
