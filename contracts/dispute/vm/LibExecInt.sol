// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {
    ArithmeticOverflow,
    ElementOutOfRange,
    GatherIndexOutOfRange,
    InvalidDType,
    InvalidShift,
    NegativeSquareRoot,
    NonPositiveDivisor,
    NotAnIntegerKind,
    TableIndexOutOfRange,
    ValueOutOfRange
} from "../lib/Errors.sol";
import { LibChecked } from "./LibChecked.sol";
import { LibVMMemory } from "./LibVMMemory.sol";
import {
    DT_BOOL,
    DT_FLOAT32,
    DT_INT16,
    DT_INT32,
    DT_INT64,
    DT_INT8,
    DT_UINT8,
    ELEMENT_MASK,
    Instr,
    K_ACC_ARG,
    K_ACC_MAX,
    K_ACC_SQ,
    K_ACC_SUM,
    K_ADD,
    K_COPY,
    K_FIN_DIV,
    K_FIN_MOVE,
    K_FIN_REQ,
    K_FLIP,
    K_GATHER,
    K_LN_DEN,
    K_LN_OUT,
    K_LN_SUM,
    K_LN_VAR,
    K_LUT,
    K_MAC,
    K_MUL,
    K_NOP,
    K_SM_MAX,
    K_SM_OUT,
    K_SM_SUM,
    K_WHERE,
    LANES,
    N_SCALARS,
    PAD,
    Region,
    Regs,
    StepMemory
} from "./VMTypes.sol";

/// @title LibExecInt
/// @notice The integer instructions of the fraud VM: the mirror of `fraud_vm.isa.execute` for every
///         kind but QUANT, DEQUANT and CAST (`LibExecFloat`). Arithmetic is in the verifier's widths
///         (docs/fraud_vm.md "Arithmetic bounds"): every intermediate a Python formula wraps in
///         `i256` is computed unchecked and tested explicitly, so it reverts `ArithmeticOverflow()`
///         (never a Panic) exactly where Python raises; `acc`/`aux` lanes are int64; shifts and
///         divisors are checked as `shl`, `round_shift` and `round_div` do. A lane reads its
///         operands first (`a`, `b`, `c`), then evaluates; lanes run in order, so the first failing
///         lane decides the error. Writes go to the witness words in place (`LibVMMemory.write`).
library LibExecInt {
    int256 internal constant I32_MIN = LibChecked.I32_MIN;
    int256 internal constant I32_MAX = LibChecked.I32_MAX;
    int256 internal constant I64_MIN = LibChecked.I64_MIN;
    int256 internal constant I64_MAX = LibChecked.I64_MAX;

    // ------------------------------------------------------------------------------------------
    // entry point

    /// @notice Whether `execInt` executes instructions of kind `_kind` (every kind but QUANT,
    ///         DEQUANT and CAST, and no unknown code).
    function isIntKind(uint8 _kind) internal pure returns (bool) {
        return _kind <= K_LN_OUT && _kind != 12 && _kind != 13 && _kind != 15;
    }

    /// @notice Apply one integer instruction (`fraud_vm.isa.execute`): mutates `_regs` and the
    ///         witness words of `_m`. Reverts `NotAnIntegerKind` for QUANT/DEQUANT/CAST or an
    ///         unknown kind (the verifier dispatches those to `LibExecFloat`).
    function execInt(Instr memory _ins, Regs memory _regs, StepMemory memory _m) internal pure {
        uint8 k = _ins.kind;
        if (k == K_NOP) return;
        if (k >= K_MAC && k <= K_ACC_ARG) return lanes(_ins, _regs, _m);
        if (k == K_FIN_REQ) return finReq(_ins, _regs, _m);
        if (k == K_FIN_DIV) return finDiv(_ins, _regs, _m);
        if (k == K_FIN_MOVE) return finMove(_ins, _regs, _m);
        if (k >= K_SM_MAX && k <= K_SM_OUT) return softmax(_ins, _regs, _m);
        if (k >= K_LN_SUM && k <= K_LN_OUT) return layernorm(_ins, _regs, _m);
        // INVARIANT: only the elementwise integer kinds are left; the float kinds are not ours.
        if (!isIntKind(k)) revert NotAnIntegerKind();
        elementwise(_ins, _m);
    }

    // ------------------------------------------------------------------------------------------
    // element helpers (`fraud_vm.isa`: order_key, the dtype ranges, `_store`, `_table`); the
    // checked arithmetic (i256, i64, shl, clamp, round_shift, round_div, requant, isqrt) is `LibChecked`

    /// @notice An integer with the same order as the element value (`fraud_vm.isa.order_key`):
    ///         the value itself, for float32 bits the value order with -0 == +0 and NaN above all.
    function orderKey(int256 _v, uint8 _dtype) internal pure returns (int256) {
        if (_dtype != DT_FLOAT32) return _v;
        int256 mag = _v & 0x7fffffff;
        if (mag > 0x7f800000) return int256(1) << 32;
        return (_v >> 31) != 0 ? -mag : _v;
    }

    /// @notice The element values a region of dtype `_dtype` stores (float32: its raw bits);
    ///         `InvalidDType` for an unknown code.
    function dtypeRange(uint8 _dtype) internal pure returns (int256 lo_, int256 hi_) {
        if (_dtype == DT_INT8) return (-128, 127);
        if (_dtype == DT_UINT8) return (0, 255);
        if (_dtype == DT_INT16) return (type(int16).min, type(int16).max);
        if (_dtype == DT_INT32) return (I32_MIN, I32_MAX);
        if (_dtype == DT_INT64) return (I64_MIN, I64_MAX);
        if (_dtype == DT_FLOAT32) return (0, int256(uint256(type(uint32).max)));
        if (_dtype == DT_BOOL) return (0, 1);
        revert InvalidDType();
    }

    /// @notice `bool(cast_value(_v, _dtype, BOOL))`: float32 bits are true unless +-0, other
    ///         dtypes unless 0; `InvalidDType` for an unknown code.
    function castBool(int256 _v, int256 _dtype) internal pure returns (bool) {
        // INVARIANT: the condition's dtype is a known code.
        if (_dtype < int256(uint256(DT_INT8)) || _dtype > int256(uint256(DT_BOOL))) revert InvalidDType();
        if (_dtype == int256(uint256(DT_FLOAT32))) return (_v & 0x7fffffff) != 0;
        return _v != 0;
    }

    // ------------------------------------------------------------------------------------------
    // memory helpers (`_store`, `_out_range`, `_table`)

    /// @notice `(output region, lowest, highest storable value)` (`fraud_vm.isa._out_range`).
    function outRange(StepMemory memory _m) internal pure returns (uint256 r_, int256 lo_, int256 hi_) {
        r_ = _m.regions.length - 1;
        (lo_, hi_) = dtypeRange(_m.regions[r_].dtype);
    }

    /// @notice Write element `_o` of the output region `_r` after checking that `_v` lies in
    ///         `[_lo, _hi]` (`ValueOutOfRange` otherwise).
    function store(StepMemory memory _m, uint256 _r, int256 _lo, int256 _hi, uint256 _o, int256 _v) internal pure {
        // INVARIANT: a stored value fits the output region's dtype.
        if (_v < _lo || _v > _hi) revert ValueOutOfRange();
        LibVMMemory.write(_m, _r, _o, _v);
    }

    /// @notice Entry `_i` of the lookup-table region `_table` (`fraud_vm.isa._table`):
    ///         `TableIndexOutOfRange` unless `_table` is an input region and `_i` lies in it.
    function table(StepMemory memory _m, int256 _table, int256 _i) internal pure returns (int256) {
        // INVARIANT: tables are input regions (never the output) and the index lies inside.
        if (_table < 0 || uint256(_table) >= _m.regions.length - 1) revert TableIndexOutOfRange();
        Region memory reg = _m.regions[uint256(_table)];
        if (_i < 0 || uint256(_i) >= reg.nbytes / reg.itemsize) revert TableIndexOutOfRange();
        return LibVMMemory.read(_m, uint256(_table), uint256(_i));
    }

    /// @notice Read a packed operand (`PAD` reverts `ElementOutOfRange`, as Python's `read(-1, -1)`).
    function readOp(StepMemory memory _m, uint256 _op) internal pure returns (int256) {
        return LibVMMemory.read(_m, _op >> 128, _op & ELEMENT_MASK);
    }

    /// @notice Every lane's `a` operand, read in order (the row kinds read them all first).
    function readAll(StepMemory memory _m, uint256[] memory _ops) internal pure returns (int256[] memory xs_) {
        xs_ = new int256[](_ops.length);
        for (uint256 l = 0; l < _ops.length; ++l) {
            xs_[l] = readOp(_m, _ops[l]);
        }
    }

    /// @notice Clear `acc` and `aux` (`Regs.reset_lanes`).
    function resetLanes(Regs memory _regs) internal pure {
        // SAFETY: `Regs` in memory is three pointers to its arrays of 4, LANES and LANES words;
        // copying calldata from past its end writes zeros (EIP-211: the missing bytes are zero).
        assembly ("memory-safe") {
            calldatacopy(mload(add(_regs, 0x20)), calldatasize(), shl(5, LANES))
            calldatacopy(mload(add(_regs, 0x40)), calldatasize(), shl(5, LANES))
        }
    }

    /// @notice Clear `s0..s3` (`Regs.reset_scalars`).
    function resetScalars(Regs memory _regs) internal pure {
        for (uint256 i = 0; i < N_SCALARS; ++i) {
            _regs.s[i] = 0;
        }
    }

    // ------------------------------------------------------------------------------------------
    // accumulating lanes (`fraud_vm.isa._lanes`): MAC, ACC_SUM, ACC_SQ, ACC_MAX, ACC_ARG

    /// @notice One accumulation over the lanes of `a`.
    function lanes(Instr memory _ins, Regs memory _regs, StepMemory memory _m) internal pure {
        uint8 k = _ins.kind;
        int256[] memory im = _ins.imm;
        for (uint256 l = 0; l < _ins.a.length; ++l) {
            uint256 op = _ins.a[l];
            if (k == K_MAC) {
                if (op == PAD) continue;
                int256 av = readOp(_m, op);
                int256 bv = readOp(_m, _ins.b[l]);
                int256 p = LibChecked.mul(LibChecked.sub(av, im[0]), LibChecked.sub(bv, im[1]));
                _regs.acc[l] = LibChecked.i64(LibChecked.add(_regs.acc[l], p));
            } else if (k == K_ACC_SUM) {
                if (op == PAD) continue;
                _regs.acc[l] = LibChecked.i64(LibChecked.add(_regs.acc[l], LibChecked.sub(readOp(_m, op), im[0])));
                _regs.aux[l] = LibChecked.i64(LibChecked.add(_regs.aux[l], 1));
            } else if (k == K_ACC_SQ) {
                if (op == PAD) continue;
                int256 x = LibChecked.sub(readOp(_m, op), im[0]);
                _regs.acc[l] = LibChecked.i64(LibChecked.add(_regs.acc[l], LibChecked.mul(x, x)));
            } else if (k == K_ACC_MAX) {
                int256 v = op == PAD ? im[1] : readOp(_m, op);
                _regs.acc[l] = LibChecked.i64(im[0] != 0 ? v : (v > _regs.acc[l] ? v : _regs.acc[l]));
            } else {
                accArg(_regs, _m, l, op, im[0], im[1]);
            }
        }
    }

    /// @notice ACC_ARG on lane `_l`: `k = key(A)`; if `j == 0 or k > acc or (last and k == acc)`:
    ///         `acc = k, aux = j`.
    function accArg(Regs memory _regs, StepMemory memory _m, uint256 _l, uint256 _op, int256 _j, int256 _last)
        internal
        pure
    {
        int256 raw = readOp(_m, _op);
        int256 v = orderKey(raw, _m.regions[_op >> 128].dtype);
        int256 cur = _regs.acc[_l];
        if (_j == 0 || v > cur || (_last != 0 && v == cur)) {
            _regs.aux[_l] = LibChecked.i64(_j);
            _regs.acc[_l] = v;
        }
    }

    // ------------------------------------------------------------------------------------------
    // block finishers (`fraud_vm.isa._fin_*`): write every `out` lane, then clear the lanes

    /// @notice FIN_REQ: `v = acc + (a PAD ? 0 : A)`; `raw ? clamp_int32(v) : LibChecked.requant(v, b PAD ? m : B,
    ///         c PAD ? s : C, zp, qmin, qmax)`. imm: zp, qmin, qmax, raw, mult, shift.
    /// @dev The lanes of a block often read the same `a` / `b` / `c` element (a conv's per-channel
    ///      bias, multiplier and shift): a lane whose operand equals the previous lane's reuses the
    ///      value read then, unless it lies in the output region (which the lanes write). Python
    ///      reads it again and gets the same value (the element was read without error and no
    ///      write reached its region since), so the verdict and the post-state are the same.
    function finReq(Instr memory _ins, Regs memory _regs, StepMemory memory _m) internal pure {
        (uint256 r, int256 lo, int256 hi) = outRange(_m);
        // the previous lane's a, b, c values, then the output region
        int256[4] memory last;
        last[3] = int256(r);
        for (uint256 l = 0; l < _ins.out.length; ++l) {
            int256 v = finReqLane(_ins, _regs, _m, l, last);
            store(_m, r, lo, hi, _ins.out[l], v);
        }
        resetLanes(_regs);
    }

    /// @notice The FIN_REQ value of lane `_l` (`_last`: see `finReq`; updated).
    function finReqLane(Instr memory _ins, Regs memory _regs, StepMemory memory _m, uint256 _l, int256[4] memory _last)
        internal
        pure
        returns (int256)
    {
        int256[] memory im = _ins.imm;
        int256 x = _ins.a[_l] == PAD ? int256(0) : readAgain(_m, _ins.a, _l, _last, 0);
        if (im[3] != 0) return LibChecked.clamp(LibChecked.add(_regs.acc[_l], x), I32_MIN, I32_MAX);
        int256 mult = _ins.b[_l] == PAD ? im[4] : readAgain(_m, _ins.b, _l, _last, 1);
        int256 shift = _ins.c[_l] == PAD ? im[5] : readAgain(_m, _ins.c, _l, _last, 2);
        return LibChecked.requant(LibChecked.add(_regs.acc[_l], x), mult, shift, im[0], im[1], im[2]);
    }

    /// @notice `readOp(_m, _ops[_l])` (not `PAD`), or `_last[_k]` when lane `_l - 1` read the same
    ///         operand outside the output region `_last[3]`; the value is left in `_last[_k]`.
    function readAgain(StepMemory memory _m, uint256[] memory _ops, uint256 _l, int256[4] memory _last, uint256 _k)
        internal
        pure
        returns (int256 v_)
    {
        bool again;
        uint256 op;
        // SAFETY: `_l < _ops.length` (the caller's lane), `_k < 3`.
        assembly ("memory-safe") {
            let p := add(_ops, shl(5, add(_l, 1)))
            op := mload(p)
            // SAFETY: an element of the output region may change between lanes: read every time.
            again := and(iszero(iszero(_l)), and(eq(mload(sub(p, 0x20)), op), iszero(eq(shr(128, op), mload(add(_last, 0x60))))))
            if again { v_ := mload(add(_last, shl(5, _k))) }
        }
        if (again) return v_;
        v_ = readOp(_m, op);
        // SAFETY: `_k < 3`.
        assembly ("memory-safe") {
            mstore(add(_last, shl(5, _k)), v_)
        }
    }

    /// @notice FIN_DIV: `v = sqrt ? LibChecked.isqrt(acc) : acc`, `n = use_aux ? aux : cnt` (> 0),
    ///         `LibChecked.clamp(round_div(v*m, n << s) + zp, lo, hi)`. imm: mult, shift, zp, lo, hi, use_aux, cnt, sqrt.
    function finDiv(Instr memory _ins, Regs memory _regs, StepMemory memory _m) internal pure {
        (uint256 r, int256 lo, int256 hi) = outRange(_m);
        for (uint256 l = 0; l < _ins.out.length; ++l) {
            store(_m, r, lo, hi, _ins.out[l], finDivLane(_ins.imm, _regs, l));
        }
        resetLanes(_regs);
    }

    /// @notice The FIN_DIV value of lane `_l`.
    function finDivLane(int256[] memory _im, Regs memory _regs, uint256 _l) internal pure returns (int256) {
        int256 v = _im[7] != 0 ? LibChecked.isqrt(_regs.acc[_l]) : _regs.acc[_l];
        int256 n = _im[5] != 0 ? _regs.aux[_l] : _im[6];
        // INVARIANT: an average needs a positive count (a window entirely in the padding has none).
        if (n <= 0) revert NonPositiveDivisor();
        int256 num = LibChecked.mul(v, _im[0]);
        return LibChecked.clamp(LibChecked.add(LibChecked.roundDiv(num, LibChecked.shl(n, _im[1])), _im[2]), _im[3], _im[4]);
    }

    /// @notice FIN_MOVE: `out = from_aux ? aux : acc`. imm: from_aux.
    function finMove(Instr memory _ins, Regs memory _regs, StepMemory memory _m) internal pure {
        (uint256 r, int256 lo, int256 hi) = outRange(_m);
        bool fromAux = _ins.imm[0] != 0;
        for (uint256 l = 0; l < _ins.out.length; ++l) {
            store(_m, r, lo, hi, _ins.out[l], fromAux ? _regs.aux[l] : _regs.acc[l]);
        }
        resetLanes(_regs);
    }

    // ------------------------------------------------------------------------------------------
    // elementwise (`fraud_vm.isa._elementwise`): ADD, MUL, LUT, COPY, FLIP, WHERE, GATHER

    /// @notice One elementwise instruction: each `out` lane's value, stored in order.
    function elementwise(Instr memory _ins, StepMemory memory _m) internal pure {
        (uint256 r, int256 lo, int256 hi) = outRange(_m);
        uint8 k = _ins.kind;
        for (uint256 l = 0; l < _ins.out.length; ++l) {
            int256 v;
            if (k == K_ADD) v = addLane(_ins, _m, l);
            else if (k == K_MUL) v = mulLane(_ins, _m, l);
            else if (k == K_LUT) v = table(_m, _ins.imm[0], LibChecked.add(readOp(_m, _ins.a[l]), _ins.imm[1]));
            else if (k == K_COPY) v = readOp(_m, _ins.a[l]);
            else if (k == K_FLIP) v = flipLane(_m, r, _ins.a[l]);
            else if (k == K_WHERE) v = whereLane(_ins, _m, l);
            else v = gatherLane(_ins, _m, l); // K_GATHER
            store(_m, r, lo, hi, _ins.out[l], v);
        }
    }

    /// @notice ADD: `LibChecked.clamp(zp + round_shift((A-za)*am + (B-zb)*bm, s), lo, hi)`.
    ///         imm: za, zb, am, bm, s, zp, lo, hi.
    function addLane(Instr memory _ins, StepMemory memory _m, uint256 _l) internal pure returns (int256) {
        int256[] memory im = _ins.imm;
        int256 av = readOp(_m, _ins.a[_l]);
        int256 bv = readOp(_m, _ins.b[_l]);
        int256 t = LibChecked.add(LibChecked.mul(LibChecked.sub(av, im[0]), im[2]), LibChecked.mul(LibChecked.sub(bv, im[1]), im[3]));
        return LibChecked.clamp(LibChecked.add(im[5], LibChecked.roundShift(t, im[4])), im[6], im[7]);
    }

    /// @notice MUL: `LibChecked.requant((A-za)(B-zb), m, s, zp, lo, hi)`. imm: za, zb, m, s, zp, lo, hi.
    function mulLane(Instr memory _ins, StepMemory memory _m, uint256 _l) internal pure returns (int256) {
        int256[] memory im = _ins.imm;
        int256 av = readOp(_m, _ins.a[_l]);
        int256 bv = readOp(_m, _ins.b[_l]);
        int256 p = LibChecked.mul(LibChecked.sub(av, im[0]), LibChecked.sub(bv, im[1]));
        return LibChecked.requant(p, im[2], im[3], im[4], im[5], im[6]);
    }

    /// @notice FLIP: the low byte of `A` XOR 0x80, signed when the output region is int8.
    function flipLane(StepMemory memory _m, uint256 _outRegion, uint256 _op) internal pure returns (int256) {
        int256 b = (readOp(_m, _op) & 0xff) ^ 0x80;
        return (_m.regions[_outRegion].dtype == DT_INT8 && b >= 128) ? b - 256 : b;
    }

    /// @notice WHERE: `B if bool(A) else C`, `A` cast from the immediate's dtype (`InvalidDType`
    ///         before any read for an unknown code). imm: cond dtype.
    function whereLane(Instr memory _ins, StepMemory memory _m, uint256 _l) internal pure returns (int256) {
        int256 cdt = _ins.imm[0];
        // INVARIANT: the condition's dtype is known before its operands are read.
        if (cdt < int256(uint256(DT_INT8)) || cdt > int256(uint256(DT_BOOL))) revert InvalidDType();
        int256 cond = readOp(_m, _ins.a[_l]);
        int256 x = readOp(_m, _ins.b[_l]);
        int256 y = readOp(_m, _ins.c[_l]);
        return castBool(cond, cdt) ? x : y;
    }

    /// @notice GATHER: `i = A` in `[-n, n)` (`GatherIndexOutOfRange`), `D[base + norm(i)*stride]`
    ///         with `b = (D, base)` (`ElementOutOfRange` outside an input region). imm: n, stride.
    function gatherLane(Instr memory _ins, StepMemory memory _m, uint256 _l) internal pure returns (int256) {
        int256 n = _ins.imm[0];
        int256 i = readOp(_m, _ins.a[_l]);
        // INVARIANT: the index lies in [-n, n) (empty for n <= 0).
        if (n <= 0 || i < -n || i >= n) revert GatherIndexOutOfRange();
        uint256 bop = _ins.b[_l];
        // Python's PAD is (-1, -1): a region no input has, base -1.
        bool pad = bop == PAD;
        int256 base = pad ? int256(-1) : int256(bop & ELEMENT_MASK);
        int256 e = LibChecked.add(base, LibChecked.mul(i < 0 ? i + n : i, _ins.imm[1]));
        // INVARIANT: the gathered element lies inside an input region.
        if (pad || (bop >> 128) >= _m.regions.length - 1) revert ElementOutOfRange();
        Region memory reg = _m.regions[bop >> 128];
        if (e < 0 || uint256(e) >= reg.nbytes / reg.itemsize) revert ElementOutOfRange();
        return LibVMMemory.read(_m, bop >> 128, uint256(e));
    }

    // ------------------------------------------------------------------------------------------
    // rows (`fraud_vm.isa._softmax`, `_layernorm`): every `a` operand is read before any lane

    /// @notice SM_MAX (imm: first), SM_SUM (imm: table), SM_OUT (imm: table, zp, lo, hi, last).
    function softmax(Instr memory _ins, Regs memory _regs, StepMemory memory _m) internal pure {
        int256[] memory xs = readAll(_m, _ins.a);
        uint8 k = _ins.kind;
        if (k == K_SM_MAX) {
            uint256 start = 0;
            if (_ins.imm[0] != 0) {
                // INVARIANT: the first chunk of a row has at least one lane (Python's max([]) fails).
                if (xs.length == 0) revert ElementOutOfRange();
                _regs.s[0] = xs[0];
                start = 1;
            }
            for (uint256 l = start; l < xs.length; ++l) {
                if (xs[l] > _regs.s[0]) _regs.s[0] = xs[l];
            }
        } else if (k == K_SM_SUM) {
            for (uint256 l = 0; l < xs.length; ++l) {
                _regs.s[1] = LibChecked.add(_regs.s[1], table(_m, _ins.imm[0], LibChecked.sub(_regs.s[0], xs[l])));
            }
        } else {
            smOut(_ins, _regs, _m, xs);
        }
    }

    /// @notice SM_OUT: `S = max(s1, 1)`, `out = LibChecked.clamp(floor((512 T[s0 - A] + S) / 2S) + zp, lo, hi)`;
    ///         `last` clears the scalars.
    function smOut(Instr memory _ins, Regs memory _regs, StepMemory memory _m, int256[] memory _xs) internal pure {
        (uint256 r, int256 lo, int256 hi) = outRange(_m);
        for (uint256 l = 0; l < _ins.out.length; ++l) {
            int256 v = smOutLane(_ins.imm, _m, _regs, _xs[l]);
            store(_m, r, lo, hi, _ins.out[l], v);
        }
        if (_ins.imm[4] != 0) resetScalars(_regs);
    }

    /// @notice The SM_OUT value of one lane with input `_x` (row maximum `s0`, sum `s1`).
    function smOutLane(int256[] memory _im, StepMemory memory _m, Regs memory _regs, int256 _x)
        internal
        pure
        returns (int256)
    {
        int256 total = _regs.s[1] > 1 ? _regs.s[1] : int256(1);
        int256 e = table(_m, _im[0], LibChecked.sub(_regs.s[0], _x));
        int256 num = LibChecked.add(LibChecked.mul(512, e), total);
        return LibChecked.clamp(LibChecked.add(LibChecked.floorDiv(num, LibChecked.mul(2, total)), _im[1]), _im[2], _im[3]);
    }

    /// @notice LN_SUM, LN_VAR (imm: n), LN_DEN (imm: n, eps), LN_OUT (imm: n, F, m, s, zp, qmin, qmax, last).
    function layernorm(Instr memory _ins, Regs memory _regs, StepMemory memory _m) internal pure {
        uint8 k = _ins.kind;
        if (k == K_LN_DEN) {
            int256 n = _ins.imm[0];
            // INVARIANT: a row has a positive length.
            if (n <= 0) revert NonPositiveDivisor();
            int256 q = LibChecked.add(LibChecked.shl(LibChecked.floorDiv(_regs.s[1], n), 16), _ins.imm[1]);
            int256 d = LibChecked.isqrt(q);
            _regs.s[2] = d > 1 ? d : int256(1);
            return;
        }
        int256[] memory xs = readAll(_m, _ins.a);
        if (k == K_LN_SUM) {
            for (uint256 l = 0; l < xs.length; ++l) {
                _regs.s[0] = LibChecked.add(_regs.s[0], xs[l]);
            }
        } else if (k == K_LN_VAR) {
            for (uint256 l = 0; l < xs.length; ++l) {
                int256 d = LibChecked.sub(LibChecked.mul(_ins.imm[0], xs[l]), _regs.s[0]);
                _regs.s[1] = LibChecked.add(_regs.s[1], LibChecked.mul(d, d));
            }
        } else {
            lnOut(_ins, _regs, _m, xs);
        }
    }

    /// @notice LN_OUT: every lane's value stored in order; `last` clears the scalars.
    function lnOut(Instr memory _ins, Regs memory _regs, StepMemory memory _m, int256[] memory _xs) internal pure {
        (uint256 r, int256 lo, int256 hi) = outRange(_m);
        for (uint256 l = 0; l < _ins.out.length; ++l) {
            int256 v = lnOutLane(_ins, _regs, _m, l, _xs[l]);
            store(_m, r, lo, hi, _ins.out[l], v);
        }
        if (_ins.imm[7] != 0) resetScalars(_regs);
    }

    /// @notice The LN_OUT value of lane `_l`: `z = round_div((n x - s0) << (F + 8), s2)`,
    ///         `LibChecked.requant(z * gamma + beta, m, s, zp, qmin, qmax)` with `gamma = B`, `beta = C`.
    function lnOutLane(Instr memory _ins, Regs memory _regs, StepMemory memory _m, uint256 _l, int256 _x)
        internal
        pure
        returns (int256)
    {
        int256[] memory im = _ins.imm;
        int256 gamma = readOp(_m, _ins.b[_l]);
        int256 beta = readOp(_m, _ins.c[_l]);
        int256 centered = LibChecked.sub(LibChecked.mul(im[0], _x), _regs.s[0]);
        int256 z = LibChecked.roundDiv(LibChecked.shl(centered, LibChecked.add(im[1], 8)), _regs.s[2]);
        return LibChecked.requant(LibChecked.add(LibChecked.mul(z, gamma), beta), im[2], im[3], im[4], im[5], im[6]);
    }
}
