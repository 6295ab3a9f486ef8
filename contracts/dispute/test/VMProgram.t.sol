// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { Test } from "./lib/Test.sol";
import { MalformedContext, UnsupportedOp } from "../lib/Errors.sol";
import { IVMProgram } from "../vm/IVMProgram.sol";
import { VMProgram } from "../vm/VMProgram.sol";
import { VMProgramBlocked } from "../vm/VMProgramBlocked.sol";
import { VMProgramStream } from "../vm/VMProgramStream.sol";
import { Instr, K_FIN_REQ, K_MAC, K_NOP, Region } from "../vm/VMTypes.sol";

/// @title VMProgramTest
/// @notice Hand cases of the program derivation through the `VMProgram` router: a linear node's
///         MAC and FIN_REQ steps, its regions and length, the empty-output NOP, a pc past the end,
///         and rejections (`MalformedContext`, `UnsupportedOp`) passed through the router unchanged.
///         The differential test against `fraud_vm.stepper` is tests/contracts/test_vm_program.py.
contract VMProgramTest is Test {
    IVMProgram internal prog;

    function setUp() public {
        prog = new VMProgram(new VMProgramBlocked(), new VMProgramStream());
    }

    /// @notice `address ‖ int256 words` of a context.
    function encode(int256[] memory _w) internal pure returns (bytes memory out_) {
        out_ = abi.encodePacked(bytes32(uint256(0xabc)));
        for (uint256 i = 0; i < _w.length; ++i) {
            out_ = abi.encodePacked(out_, _w[i]);
        }
    }

    /// @notice linear x[2, 4] int8 (zp 3) · W[4, 3] + bias[3] int32, mult[1], shift[1] -> y[2, 3]
    ///         int8 (zp -5), qmin/qmax -128/127; `_batch`, `_outRows` (2 matches) and `_qmax` vary.
    function linear(int256 _batch, int256 _outRows, int256 _qmax) internal pure returns (bytes memory) {
        int256[69] memory w = [
            int256(0), _batch,
            // node words: op 3, 5 inputs (0..4), 1 output (5), 2 attributes (qmin, qmax)
            int256(14), 3, 5, 0, 1, 2, 3, 4, 1, 5, 2, 1, -128, 1, _qmax,
            // 6 descriptors [dtype, ndim, dims.., is_const, scale_bits, zp, nbytes]
            6,
            8, 1, 2, 2, 4, 0, 0, 3, 0,
            8, 1, 2, 4, 3, 1, 0, 0, 12,
            7, 4, 1, 3, 1, 0, 0, 12,
            7, 4, 1, 1, 1, 0, 0, 4,
            7, 4, 1, 1, 1, 0, 0, 4,
            8, 1, 2, _outRows, 3, 0, 0, -5, 0
        ];
        int256[] memory words = new int256[](69);
        for (uint256 i = 0; i < 69; ++i) {
            words[i] = w[i];
        }
        return encode(words);
    }

    function test_linearProgram() public view {
        bytes memory ctx = linear(1, 2, 127);
        // 2 rows · 1 column block · (K + 1) = 10
        assertEq(IVMProgram(address(prog)).numSteps(ctx), 10, "numSteps");
        (uint256 n, Region[] memory regions, Instr memory mac) = prog.program(ctx, 5 + 2);
        assertEq(n, 10, "program length");
        assertEq(regions.length, 6, "regions");
        assertEq(regions[0].nbytes, 8, "x bytes");
        assertEq(regions[0].nWords, 1, "x words");
        assertEq(regions[0].depth, 0, "one word: depth 0");
        assertEq(regions[2].itemsize, 4, "bias int32");
        assertEq(regions[5].header.length, 4, "y header [dtype, 2, 2, 3]");
        assertEq(regions[5].header[3], 3, "y columns");
        // row 1, t = 2: a = x[1·4 + 2] on every lane, b = W[2·3 + c]
        assertEq(mac.kind, K_MAC, "MAC");
        assertEq(mac.a.length, 3, "three lanes");
        assertEq(mac.a[1], 6, "a lane 1 = (0, 6)");
        assertEq(mac.b[2], (uint256(1) << 128) | 8, "b lane 2 = (1, 8)");
        assertTrue(mac.imm.length == 2 && mac.imm[0] == 3 && mac.imm[1] == 0, "imm (zp_x, 0)");
        (, , Instr memory fin) = prog.program(ctx, 9);
        assertEq(fin.kind, K_FIN_REQ, "FIN_REQ");
        assertEq(fin.out[0], 3, "row 1 outputs 3..5");
        assertEq(fin.a[2], (uint256(2) << 128) | 2, "bias per column");
        assertEq(fin.b[2], uint256(3) << 128, "mult: one element");
        assertEq(fin.c[0], uint256(4) << 128, "shift: one element");
        assertTrue(fin.imm.length == 6 && fin.imm[0] == -5 && fin.imm[1] == -128 && fin.imm[2] == 127, "imm");
        (, , Instr memory past) = prog.program(ctx, 10);
        assertTrue(past.kind == K_NOP && past.a.length == 0 && past.out.length == 0, "NOP past the end");
    }

    function test_emptyOutputIsOneNop() public view {
        (uint256 n, , Instr memory i) = prog.program(linear(1, 0, 127), 0);
        assertEq(n, 1, "one step");
        assertEq(i.kind, K_NOP, "NOP");
    }

    function test_batchOutOfRange() public {
        bytes memory ctx = linear(0, 2, 127);
        vm.expectRevert(MalformedContext.selector);
        prog.program(ctx, 0);
        ctx = linear(65537, 2, 127);
        vm.expectRevert(MalformedContext.selector);
        prog.program(ctx, 0);
    }

    function test_attributeOutsideInt64() public {
        bytes memory ctx = linear(1, 2, int256(1) << 63);
        vm.expectRevert(MalformedContext.selector);
        prog.program(ctx, 0);
    }

    function test_shapeMismatchIsUnsupported() public {
        bytes memory ctx = linear(1, 3, 127);
        vm.expectRevert(UnsupportedOp.selector);
        prog.program(ctx, 0);
    }

    function test_truncatedContext() public {
        bytes memory ctx = linear(1, 2, 127);
        bytes memory cut = new bytes(ctx.length - 32);
        for (uint256 i = 0; i < cut.length; ++i) {
            cut[i] = ctx[i];
        }
        vm.expectRevert(MalformedContext.selector);
        prog.program(cut, 0);
    }
}
