// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { IProgramLength } from "../interfaces/IProgramLength.sol";
import { IStepVerifier } from "../interfaces/IStepVerifier.sol";
import {
    ContextHashMismatch,
    MemoryRootMismatch,
    PreStateHashMismatch,
    StateHalted,
    StepOutOfRange,
    TooManyWords,
    UnusedSiblings,
    UnusedWord,
    WordOutOfRange,
    WordsNotSorted
} from "../lib/Errors.sol";
import { IVMProgram } from "./IVMProgram.sol";
import { LibExecFloat } from "./LibExecFloat.sol";
import { LibExecInt } from "./LibExecInt.sol";
import { LibMultiproof, MultiproofTrace } from "./LibMultiproof.sol";
import { LibVMState, VMState } from "./LibVMState.sol";
import { LibWitness } from "./LibWitness.sol";
import { VMProgram, familyFor } from "./VMProgram.sol";
import { Instr, K_CAST, K_DEQUANT, K_FIN_MOVE, K_FIN_REQ, K_QUANT, MAX_WITNESS_WORDS, Region, Regs, StepMemory } from "./VMTypes.sol";

/// @notice The program contract answered with an encoding that does not fit its own return data
///         (never for `VMProgram`; guards the verifier's in-place decoding of the answer). Declared
///         here, not in `Errors.sol`: no Python check corresponds to it.
error MalformedProgramAnswer();

/// @title FraudVMStepVerifier
/// @notice The fraud VM's one-step verifier: the mirror of `fraud_vm.vm.verify_step`, check by
///         check in the order of docs/fraud_vm.md "verify_step(pre_hash, witness), in order", each
///         failing with the custom error of the same name (`fraud_vm/errors.py` = `Errors.sol`).
///         The instruction at `pc` and the memory regions come from the `IVMProgram` (`VMProgram`,
///         `fraud_vm.stepper`), which reverts `MalformedContext` / `UnsupportedOp` itself; the
///         executors `LibExecInt` / `LibExecFloat` (`fraud_vm.isa.execute`) are inlined.
contract FraudVMStepVerifier is IStepVerifier, IProgramLength {
    /// @notice The program derivation (`fraud_vm.stepper`: `numSteps`, regions, `instrAt`).
    IVMProgram public immutable PROGRAM;
    /// @notice `PROGRAM`'s blocked family (called directly by `step`: one external call, not two).
    address public immutable BLOCKED;
    /// @notice `PROGRAM`'s streamed families (called directly by `step`).
    address public immutable STREAM;

    /// @param _program The deployed `VMProgram` (its families are read from it).
    constructor(VMProgram _program) {
        PROGRAM = _program;
        BLOCKED = address(_program.BLOCKED());
        STREAM = address(_program.STREAM());
    }

    /// @inheritdoc IProgramLength
    function numSteps(bytes calldata _context) external view returns (uint256 numSteps_) {
        numSteps_ = PROGRAM.numSteps(_context);
    }

    /// @inheritdoc IStepVerifier
    function step(bytes32 _preStateHash, bytes calldata _witness) external view returns (bytes32 postStateHash_) {
        // 1. INVARIANT: the witness is exactly its canonical calldata encoding (MalformedWitness).
        (bytes calldata preState, bytes calldata context, bytes calldata words, bytes32[] calldata siblings) =
            LibWitness.decode(_witness);
        // 2. SAFETY: everything below is derived from the witness only after its hash chain is checked.
        if (keccak256(preState) != _preStateHash) revert PreStateHashMismatch();
        VMState memory state = LibVMState.decodeHead(preState);
        // 3. INVARIANT: the context is the one the state commits to; the program derives from it.
        if (keccak256(context) != state.contextHash) revert ContextHashMismatch();
        (uint256 n, Region[] memory regions, Instr memory instr) = _callProgram(context, state.step);
        // 4. INVARIANT: only a running state inside its program takes a step.
        _checkRunnable(state, n);
        // the lanes are decoded (and re-encoded) only for the kinds that touch them; a block
        // finisher (FIN_*) reads only its `out.length` lanes and leaves every lane zero
        uint256 lanes = _laneUse(instr);
        if (lanes == 1) LibVMState.decodeLanes(preState, state.regs);
        else if (lanes == 2) LibVMState.decodeLanesPrefix(preState, state.regs, instr.out.length);
        _run(state, n, regions, instr, words, siblings);
        if (lanes == 1) postStateHash_ = LibVMState.stateHash(state);
        else if (lanes == 2) postStateHash_ = LibVMState.stateHashZeroLanes(state);
        else postStateHash_ = LibVMState.stateHashSameLanes(state, preState);
    }

    /// @notice How a step of `_instr` uses the lanes: 0 not at all (the kinds outside 1..8), 2
    ///         a block finisher (FIN_REQ, FIN_DIV, FIN_MOVE: reads lanes `[0, out.length)`, then
    ///         `resetLanes` clears all of them), 1 the accumulating kinds (every lane decoded and
    ///         re-encoded).
    function _laneUse(Instr memory _instr) private pure returns (uint256) {
        uint8 k = _instr.kind;
        if (!LibVMState.usesLanes(k)) return 0;
        return k >= K_FIN_REQ && k <= K_FIN_MOVE ? 2 : 1;
    }

    /// @notice Steps 5-8 of `verify_step` for a runnable state: prove the words, execute, check
    ///         every word was touched, then the post-state (in `_state`; the caller hashes it).
    function _run(
        VMState memory _state,
        uint256 _n,
        Region[] memory _regions,
        Instr memory _instr,
        bytes calldata _words,
        bytes32[] calldata _siblings
    )
        private
        pure
    {
        // 5.-6. INVARIANT: the words are a sorted set of in-range addresses proven against the memory root.
        (StepMemory memory mem, MultiproofTrace memory trace) =
            _provenMemory(_state.memoryRoot, _regions, _words, _siblings);
        bytes32[] memory before = _copy(mem.values);
        // 7. execute, then every provided word must have been touched.
        execute(_instr, _state.regs, mem);
        _checkAllTouched(mem);
        // 8. the post-state: the root with the written words and the same siblings.
        if (mem.written) {
            _state.memoryRoot = LibMultiproof.rootAfterWrites(_regions, mem.addrs, before, mem.values, _siblings, trace);
        }
        _state.step += 1;
        _state.status = _state.step == _n ? LibVMState.HALTED : LibVMState.RUNNING;
    }

    /// @notice Execute one instruction (`fraud_vm.isa.execute`): the float kinds (QUANT, DEQUANT,
    ///         CAST) through `LibExecFloat.execFloat`, every other kind through `LibExecInt.execInt`.
    /// @param _instr The instruction.
    /// @param _regs The registers (updated in place).
    /// @param _mem The step's memory (words updated in place).
    function execute(Instr memory _instr, Regs memory _regs, StepMemory memory _mem) internal pure {
        uint8 k = _instr.kind;
        if (k == K_QUANT || k == K_DEQUANT || k == K_CAST) LibExecFloat.execFloat(_instr, _regs, _mem);
        else LibExecInt.execInt(_instr, _regs, _mem);
    }

    /// @notice `PROGRAM.program(_context, _pc)` (asked of the context's family directly, as the
    ///         router would forward it), its revert data passed on unchanged. The ABI
    ///         encoding of the answer is the memory layout of `(Region[], Instr)` with relative offsets
    ///         where memory holds pointers, so the return data is copied once and its offsets are
    ///         turned into pointers in place (instead of the ABI decoder's copy of every array); the
    ///         program is a fixed contract of this verifier, whose encoding is trusted to be
    ///         canonical, and every offset is still checked to lie inside the return data.
    /// @return n_ The program length.
    /// @return regions_ The memory regions.
    /// @return instr_ The instruction at `_pc`.
    function _callProgram(bytes calldata _context, uint256 _pc)
        private
        view
        returns (uint256 n_, Region[] memory regions_, Instr memory instr_)
    {
        // the router's choice of family (`VMProgram.familyOf`), without the router's forwarding call
        address target = familyFor(_context, BLOCKED, STREAM);
        bytes4 sel = IVMProgram.program.selector;
        bool bad;
        // SAFETY: the call data is built in free memory and the return data copied there; every
        // relocated offset is below the return data size; the free memory pointer then moves past it.
        assembly ("memory-safe") {
            // Whether the array at `arr` (length word, then words) ends past `size` bytes after `m`.
            function _arrayPastEnd(arr, m, size) -> past {
                let len := mload(arr)
                past := or(gt(len, size), gt(add(add(sub(arr, m), 0x20), shl(5, len)), size))
            }
            let m := mload(0x40)
            mstore(m, sel)
            mstore(add(m, 0x04), 0x40)
            mstore(add(m, 0x24), _pc)
            mstore(add(m, 0x44), _context.length)
            calldatacopy(add(m, 0x64), _context.offset, _context.length)
            let inLen := add(0x64, _context.length)
            if iszero(staticcall(gas(), target, m, inLen, 0, 0)) {
                returndatacopy(m, 0, returndatasize())
                revert(m, returndatasize())
            }
            let size := returndatasize()
            returndatacopy(m, 0, size)
            mstore(0x40, add(m, and(add(size, 31), not(31))))
            bad := lt(size, 0x60)
            n_ := mload(m)
            let ro := mload(add(m, 0x20))
            let io := mload(add(m, 0x40))
            bad := or(bad, or(iszero(lt(ro, size)), gt(add(io, 0xc0), size)))
            regions_ := add(m, ro)
            instr_ := add(m, io)
            // Region[]: n offsets (relative to the first) to (header offset, 5 value words)
            let nr := mload(regions_)
            let heads := add(regions_, 0x20)
            bad := or(bad, gt(add(add(ro, 0x20), shl(5, nr)), size))
            for { let k := 0 } and(lt(k, nr), iszero(bad)) { k := add(k, 1) } {
                let slot := add(heads, shl(5, k))
                let r := add(heads, mload(slot))
                bad := or(bad, gt(add(sub(r, m), 0xc0), size))
                mstore(slot, r)
                if iszero(bad) {
                    let h := add(r, mload(r))
                    bad := or(bad, gt(add(sub(h, m), 0x20), size))
                    if iszero(bad) { bad := _arrayPastEnd(h, m, size) }
                    mstore(r, h)
                }
            }
            // Instr: kind, then offsets (relative to the struct) of out, a, b, c, imm
            for { let k := 1 } lt(k, 6) { k := add(k, 1) } {
                let slot := add(instr_, shl(5, k))
                let arr := add(instr_, mload(slot))
                bad := or(bad, gt(add(sub(arr, m), 0x20), size))
                if iszero(bad) { bad := _arrayPastEnd(arr, m, size) }
                mstore(slot, arr)
            }
        }
        // INVARIANT: the answer is a well-formed encoding (the program is trusted; this only keeps
        // a broken one from being read out of bounds).
        if (bad) revert MalformedProgramAnswer();
    }

    /// @notice `_check_runnable`: `StateHalted` unless RUNNING, `StepOutOfRange` unless `step < n`.
    function _checkRunnable(VMState memory _state, uint256 _n) private pure {
        // INVARIANT: a halted VM takes no further step.
        if (_state.status != LibVMState.RUNNING) revert StateHalted();
        // INVARIANT: the step lies inside the program.
        if (_state.step >= _n) revert StepOutOfRange();
    }

    /// @notice Steps 5 and 6 of `verify_step`: the witness's words checked (`TooManyWords`,
    ///         `WordsNotSorted`, `WordOutOfRange`, walking them in order) and proven against
    ///         `_root` (`SiblingsExhausted`, `MemoryRootMismatch`, `UnusedSiblings`).
    /// @return mem_ The step's memory over those words, none touched yet.
    /// @return trace_ The multiproof's trace (for the post-root; empty without words).
    function _provenMemory(
        bytes32 _root,
        Region[] memory _regions,
        bytes calldata _words,
        bytes32[] calldata _siblings
    )
        private
        pure
        returns (StepMemory memory mem_, MultiproofTrace memory trace_)
    {
        uint256 n = LibWitness.wordCount(_words);
        // INVARIANT: a step touches a bounded number of words.
        if (n > MAX_WITNESS_WORDS) revert TooManyWords();
        mem_.regions = _regions;
        mem_.addrs = new uint256[](n);
        mem_.values = new bytes32[](n);
        mem_.touched = new bool[](n);
        mem_.hint = new uint256[](_regions.length);
        for (uint256 k = 0; k < n; ++k) {
            (uint256 a, bytes32 v) = LibWitness.wordAt(_words, k);
            // INVARIANT: strictly ascending addresses (no repeated word).
            if (k > 0 && a <= mem_.addrs[k - 1]) revert WordsNotSorted();
            uint256 r = a >> 64;
            // INVARIANT: the word lies inside a region of this node's memory.
            if (r >= _regions.length || (a & LibMultiproof.INDEX_MASK) >= _regions[r].nWords) revert WordOutOfRange();
            // a region's hint starts at its first word (a lookup speed-up only)
            if (k == 0 || r != mem_.addrs[k - 1] >> 64) mem_.hint[r] = k;
            mem_.addrs[k] = a;
            mem_.values[k] = v;
        }
        bytes32 root = _root;
        uint256 used = 0;
        if (n > 0) (root, used, trace_) = LibMultiproof.proveWords(_regions, mem_.addrs, mem_.values, _siblings, 0);
        // SAFETY: the words are the pre-state's memory (the proof's root is the state's).
        if (root != _root) revert MemoryRootMismatch();
        // INVARIANT: the proof carries no hash it does not use.
        if (used != _siblings.length) revert UnusedSiblings();
    }

    /// @notice A copy of the words' values before the step.
    function _copy(bytes32[] memory _a) private pure returns (bytes32[] memory b_) {
        b_ = new bytes32[](_a.length);
        for (uint256 j = 0; j < _a.length; ++j) {
            b_[j] = _a[j];
        }
    }

    /// @notice `UnusedWord` unless the step read or wrote every word of the witness.
    function _checkAllTouched(StepMemory memory _mem) private pure {
        uint256 n = _mem.touched.length;
        for (uint256 k = 0; k < n; ++k) {
            // INVARIANT: the witness carries only words the step touches.
            if (!_mem.touched[k]) revert UnusedWord();
        }
    }
}
