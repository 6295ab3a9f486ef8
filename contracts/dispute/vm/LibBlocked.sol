// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { UnsupportedOp } from "../lib/Errors.sol";
import { LibIndexing } from "./LibIndexing.sol";
import {
    DT_INT32,
    DT_INT64,
    DT_INT8,
    DT_UINT8,
    Instr,
    K_ACC_ARG,
    K_ACC_MAX,
    K_ACC_SQ,
    K_ACC_SUM,
    K_FIN_DIV,
    K_FIN_MOVE,
    K_FIN_REQ,
    K_MAC,
    NodeContext,
    OP_LINEAR,
    OP_MATMUL,
    PAD,
    TensorInfo,
    WIDTH
} from "./VMTypes.sol";

/// @notice FIN_REQ operands (`fraud_vm.plans.FinReq`): per input 2, 3, 4 (bias, multiplier,
///         shift) `-1` absent (PAD), `0` one element (index 0), `1` one element per column.
/// @custom:field perCol The three modes.
/// @custom:field imm `(zp_out, lo, hi, raw, m, s)`.
struct FinReq {
    int8[3] perCol;
    int256[] imm;
}

/// @notice linear / matmul (`fraud_vm.plans.GemmPlan`).
struct GemmPlan {
    uint256 m;
    uint256 k;
    uint256 n;
    uint256[] batch;
    uint256[] aBatch;
    uint256[] bBatch;
    int256 za;
    int256 zb;
    FinReq fin;
}


/// @notice reduce / argmax (`fraud_vm.plans.ReducePlan`): dims are `[size, stride]` pairs.
struct ReducePlan {
    uint8 kind;
    uint256[2][] kept;
    uint256[2][] reduced;
    int256 za;
    int256 last;
    uint8 finKind;
    int256[] finImm;
}

/// @title LibBlocked
/// @notice The blocked program families of `fraud_vm.stepper` / `fraud_vm.plans`, function by
///         function (docs/fraud_vm.md "Programs", "Blocked"): `pc = blk·(T+1) + t`, `t < T` a
///         reduction step, `t == T` the FIN step. Plans are read once from the decoded context
///         (`planGemm`, `planWindow`, `planReduce`, `planArgmax`: every shape and attribute check,
///         `UnsupportedOp` where Python raises it, including an attribute with too few values);
///         `<plan>Instr(plan, pc)` is the closed form for `pc < <plan>Steps(plan)`. Shapes are
///         < 2^32 per dim and < 2^64 per tensor, attribute values int64 (`LibContext`), so every
///         product below stays far inside 256 bits.
library LibBlocked {
    // ---------------------------------------------------------------------------------------
    // helpers

    /// @notice `node.iattr`: the first value of attribute `_i` (schema index); `UnsupportedOp` if
    ///         it has none (Python's IndexError, named by `make_plan`).
    function iattr(NodeContext memory _ctx, uint256 _i) internal pure returns (int256 v_) {
        // INVARIANT: the attribute has a value.
        if (_ctx.attrs[_i].length == 0) revert UnsupportedOp();
        v_ = _ctx.attrs[_i][0];
    }

    /// @notice `_pair`: attribute `_i` must have exactly `_n` values.
    function pair(NodeContext memory _ctx, uint256 _i, uint256 _n) internal pure returns (int256[] memory v_) {
        v_ = _ctx.attrs[_i];
        // INVARIANT: exactly `_n` values.
        if (v_.length != _n) revert UnsupportedOp();
    }

    /// @notice `_qrange`: the int8 / uint8 range of `_t`'s dtype; `UnsupportedOp` for another dtype.
    function qrange(TensorInfo memory _t) internal pure returns (int256 lo_, int256 hi_) {
        if (_t.dtype == DT_INT8) return (-128, 127);
        if (_t.dtype == DT_UINT8) return (0, 255);
        // INVARIANT: the tensor is int8 or uint8.
        revert UnsupportedOp();
    }

    /// @notice `QRANGE.get(dtype, (0, 0))`.
    function qrangeOrZero(TensorInfo memory _t) internal pure returns (int256 lo_, int256 hi_) {
        if (_t.dtype == DT_INT8) return (-128, 127);
        if (_t.dtype == DT_UINT8) return (0, 255);
    }

    /// @notice `_check_shape`: the output's shape must equal `_shape`.
    function checkShape(NodeContext memory _ctx, uint256[] memory _shape) internal pure {
        uint256[] memory out = _ctx.tensors[_ctx.tensors.length - 1].shape;
        // INVARIANT: same rank and dims as the output.
        if (out.length != _shape.length) revert UnsupportedOp();
        for (uint256 d = 0; d < out.length; ++d) {
            if (out[d] != _shape[d]) revert UnsupportedOp();
        }
    }

    /// @notice `math.prod`.
    function prod(uint256[] memory _shape, uint256 _from, uint256 _to) internal pure returns (uint256 p_) {
        p_ = 1;
        for (uint256 d = _from; d < _to; ++d) {
            p_ *= _shape[d];
        }
    }

    /// @notice `shape[_from:_to]` (copy).
    function sub(uint256[] memory _shape, uint256 _from, uint256 _to) internal pure returns (uint256[] memory s_) {
        s_ = new uint256[](_to - _from);
        for (uint256 d = _from; d < _to; ++d) {
            s_[d - _from] = _shape[d];
        }
    }

    /// @notice `_a` followed by `_x`, `_y` (a shape built for `checkShape`).
    function append2(uint256[] memory _a, uint256 _x, uint256 _y) internal pure returns (uint256[] memory s_) {
        s_ = new uint256[](_a.length + 2);
        for (uint256 d = 0; d < _a.length; ++d) {
            s_[d] = _a[d];
        }
        s_[_a.length] = _x;
        s_[_a.length + 1] = _y;
    }

    /// @notice Python's `a % n` (floor modulo) for `n > 0`.
    function floorMod(int256 _a, uint256 _n) internal pure returns (uint256 r_) {
        int256 r = _a % int256(_n);
        r_ = uint256(r < 0 ? r + int256(_n) : r);
    }

    /// @notice Python's `a // b` (floor division) for `b > 0`.
    function floorDiv(int256 _a, int256 _b) internal pure returns (int256 q_) {
        q_ = _a / _b;
        if (_a % _b != 0 && _a < 0) --q_;
    }

    /// @notice `_split_dims(shape, axes)`: `[size, stride]` of the dims not in `_isAxis`, and of
    ///         those in it, each in order (`_isAxis` is a bit mask over dims).
    function splitDims(uint256[] memory _shape, uint256 _isAxis)
        internal
        pure
        returns (uint256[2][] memory kept_, uint256[2][] memory reduced_)
    {
        uint256 nd = _shape.length;
        uint256[] memory st = LibIndexing.strides(_shape);
        uint256 nr = 0;
        for (uint256 d = 0; d < nd; ++d) {
            if ((_isAxis >> d) & 1 == 1) ++nr;
        }
        kept_ = new uint256[2][](nd - nr);
        reduced_ = new uint256[2][](nr);
        uint256 ik = 0;
        uint256 ir = 0;
        for (uint256 d = 0; d < nd; ++d) {
            if ((_isAxis >> d) & 1 == 1) reduced_[ir++] = [_shape[d], st[d]];
            else kept_[ik++] = [_shape[d], st[d]];
        }
    }

    /// @notice `∏ size` over `[size, stride]` dims.
    function dimsSize(uint256[2][] memory _dims) internal pure returns (uint256 p_) {
        p_ = 1;
        for (uint256 d = 0; d < _dims.length; ++d) {
            p_ *= _dims[d][0];
        }
    }

    /// @notice Packed operand `(region, element)`.
    function operand(uint256 _region, uint256 _element) internal pure returns (uint256 op_) {
        op_ = (_region << 128) | _element;
    }

    /// @notice The lane list `[_base + l·_step for l < _n]` (an arithmetic sequence: output
    ///         indices, columns, operands of one region; `_step = 0` repeats `_base`, e.g. PAD).
    /// @dev Filled in assembly: the checked, bounds-checked Solidity loop cost ~3x as much gas.
    ///      SAFETY: `_n <= WIDTH` lanes and every value is below 2^256 (elements < 2^128 + 32·2^64).
    function seq(uint256 _base, uint256 _step, uint256 _n) internal pure returns (uint256[] memory a_) {
        assembly ("memory-safe") {
            a_ := mload(0x40)
            mstore(a_, _n)
            let p := add(a_, 0x20)
            let end := add(p, shl(5, _n))
            mstore(0x40, end)
            let v := _base
            for { } lt(p, end) { p := add(p, 0x20) } {
                mstore(p, v)
                v := add(v, _step)
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // FIN_REQ

    /// @notice `_fin_req`: inputs 2..4 absent / single / per column (matmul: never a bias), imm
    ///         `(zp_out, lo, hi, raw, m, s)` with `lo, hi` from attributes `_qmin`, `_qmax` unless raw.
    function planFinReq(NodeContext memory _ctx, bool _raw, uint256 _qmin, uint256 _qmax, int256 _m, int256 _s)
        internal
        pure
        returns (FinReq memory f_)
    {
        uint256 nIn = _ctx.nInputs;
        int256 lo = 0;
        int256 hi = 0;
        if (!_raw) {
            lo = iattr(_ctx, _qmin);
            hi = iattr(_ctx, _qmax);
        }
        for (uint256 k = 2; k < 5; ++k) {
            f_.perCol[k - 2] = k >= nIn ? int8(-1) : (_ctx.tensors[k].size > 1 ? int8(1) : int8(0));
        }
        if (_ctx.op == OP_MATMUL) f_.perCol[0] = -1;
        f_.imm = new int256[](6);
        f_.imm[0] = _ctx.tensors[nIn].zeroPoint;
        f_.imm[1] = lo;
        f_.imm[2] = hi;
        f_.imm[3] = _raw ? int256(1) : int256(0);
        f_.imm[4] = _m;
        f_.imm[5] = _s;
    }

    /// @notice `FinReq.instr(outs, cols)` with `cols = [_col0 + l·_colStep]` (GEMM: the block's
    ///         columns, step 1; conv: the output channel, step 0): per lane `(k, col)` or `(k, 0)`
    ///         for inputs `k = 2, 3, 4`, PAD if absent.
    function finReq(FinReq memory _f, uint256[] memory _outs, uint256 _col0, uint256 _colStep)
        internal
        pure
        returns (Instr memory i_)
    {
        uint256 nl = _outs.length;
        uint256[][3] memory ops;
        for (uint256 q = 0; q < 3; ++q) {
            int8 mode = _f.perCol[q];
            if (mode < 0) ops[q] = seq(PAD, 0, nl);
            else if (mode == 0) ops[q] = seq(operand(q + 2, 0), 0, nl);
            else ops[q] = seq(operand(q + 2, _col0), _colStep, nl);
        }
        i_.kind = K_FIN_REQ;
        i_.out = _outs;
        i_.a = ops[0];
        i_.b = ops[1];
        i_.c = ops[2];
        i_.imm = _f.imm;
    }

    // ---------------------------------------------------------------------------------------
    // GEMM: linear, matmul

    /// @notice `plan_gemm`: linear `x[.., K] · W[K, N]` (bias, mult, shift = inputs 2..4) and
    ///         broadcast-batched matmul `A[..a, M, K] · B[..b, K, N]`.
    function planGemm(NodeContext memory _ctx) internal pure returns (GemmPlan memory p_) {
        TensorInfo memory a = _ctx.tensors[0];
        TensorInfo memory b = _ctx.tensors[1];
        bool raw = _ctx.tensors[_ctx.nInputs].dtype == DT_INT32;
        uint256 na = a.shape.length;
        if (_ctx.op == OP_LINEAR) {
            // INVARIANT: weights [K, N] with K the input's last dimension.
            if (b.shape.length != 2 || na == 0 || a.shape[na - 1] != b.shape[0]) revert UnsupportedOp();
            p_.k = b.shape[0];
            p_.n = b.shape[1];
            uint256 rows = prod(a.shape, 0, na - 1);
            uint256[] memory want = sub(a.shape, 0, na);
            want[na - 1] = p_.n;
            checkShape(_ctx, want);
            // INVARIANT: an int8 output needs the mult and shift inputs.
            if (!raw && _ctx.nInputs < 5) revert UnsupportedOp();
            p_.m = 1;
            p_.batch = new uint256[](1);
            p_.batch[0] = rows;
            p_.aBatch = p_.batch;
            p_.za = a.zeroPoint;
            p_.fin = planFinReq(_ctx, raw, 0, 1, 0, 0);
            return p_;
        }
        uint256 nb = b.shape.length;
        // INVARIANT: both at least 2-D with matching K.
        if (na < 2 || nb < 2 || a.shape[na - 1] != b.shape[nb - 2]) revert UnsupportedOp();
        p_.m = a.shape[na - 2];
        p_.k = a.shape[na - 1];
        p_.n = b.shape[nb - 1];
        p_.aBatch = sub(a.shape, 0, na - 2);
        p_.bBatch = sub(b.shape, 0, nb - 2);
        uint256[][] memory pairs = new uint256[][](2);
        pairs[0] = p_.aBatch;
        pairs[1] = p_.bBatch;
        p_.batch = LibIndexing.broadcastShape(pairs);
        checkShape(_ctx, append2(p_.batch, p_.m, p_.n));
        p_.za = a.zeroPoint;
        p_.zb = b.zeroPoint;
        int256 mult = iattr(_ctx, 0);
        int256 shift = iattr(_ctx, 1);
        p_.fin = planFinReq(_ctx, raw, 2, 3, mult, shift);
    }

    /// @notice `GemmPlan.steps`: `∏batch · M · ceil(N / WIDTH) · (K + 1)`.
    function gemmSteps(GemmPlan memory _p) internal pure returns (uint256 steps_) {
        steps_ = prod(_p.batch, 0, _p.batch.length) * _p.m * LibIndexing.ceilDiv(_p.n, WIDTH) * (_p.k + 1);
    }

    /// @notice `GemmPlan.instr` for `_pc < gemmSteps`: MAC over K, then FIN_REQ of output row `r`.
    function gemmInstr(GemmPlan memory _p, uint256 _pc) internal pure returns (Instr memory i_) {
        uint256 k = _p.k;
        uint256 n = _p.n;
        uint256 blk = _pc / (k + 1);
        uint256 t = _pc % (k + 1);
        uint256 nbk = LibIndexing.ceilDiv(n, WIDTH);
        uint256 r = blk / nbk;
        uint256 c0 = (blk % nbk) * WIDTH;
        uint256 c1 = c0 + WIDTH < n ? c0 + WIDTH : n;
        uint256 nl = c1 - c0;
        if (t == k) return finReq(_p.fin, seq(r * n + c0, 1, nl), c0, 1);
        i_ = _gemmMac(_p, r, t, c0, nl);
    }

    /// @notice The MAC step `t` of GEMM block row `_r`, lanes `_c0 .. _c0 + _nl - 1`.
    function _gemmMac(GemmPlan memory _p, uint256 _r, uint256 _t, uint256 _c0, uint256 _nl)
        private
        pure
        returns (Instr memory i_)
    {
        uint256 k = _p.k;
        uint256[] memory bc = LibIndexing.unravel(_r / _p.m, _p.batch);
        uint256 aOff = LibIndexing.broadcastSource(bc, _p.aBatch) * _p.m * k;
        uint256 bBase = LibIndexing.broadcastSource(bc, _p.bBatch) * k * _p.n + _t * _p.n + _c0;
        i_.kind = K_MAC;
        i_.a = seq(operand(0, aOff + (_r % _p.m) * k + _t), 0, _nl);
        i_.b = seq(operand(1, bBase), 1, _nl);
        i_.imm = new int256[](2);
        i_.imm[0] = _p.za;
        i_.imm[1] = _p.zb;
    }

    // ---------------------------------------------------------------------------------------
    // reductions: reduce, argmax

    /// @notice `[(0, offset(r, kept) + _ot) for r in _r0 .. _r0 + _n - 1]`: `offset(_r0)` by
    ///         `ravelDims`, then the kept coordinates advance like an odometer (the lanes are
    ///         consecutive rows), so each lane costs O(1) amortized instead of O(rank) divisions.
    function _rowOperands(uint256[2][] memory _kept, uint256 _r0, uint256 _ot, uint256 _n)
        private
        pure
        returns (uint256[] memory a_)
    {
        uint256 nk = _kept.length;
        uint256[] memory sizes = new uint256[](nk);
        uint256[] memory steps = new uint256[](nk);
        uint256[] memory coords = new uint256[](nk);
        uint256 rest = _r0;
        for (uint256 d = nk; d > 0; --d) {
            (sizes[d - 1], steps[d - 1]) = (_kept[d - 1][0], _kept[d - 1][1]);
            coords[d - 1] = rest % sizes[d - 1];
            rest /= sizes[d - 1];
        }
        uint256 off = LibIndexing.ravelDims(_r0, _kept) + _ot;
        a_ = new uint256[](_n);
        // SAFETY: indices stay inside the arrays (l < _n, d < nk); `off` stays below 2^66 (a
        // carried dim subtracts exactly the `size · step` its coordinate had added), so the
        // unchecked arithmetic cannot wrap. Region 0: the packed operand is the element itself.
        assembly ("memory-safe") {
            let pa := add(a_, 0x20)
            for { let l := 0 } lt(l, _n) { l := add(l, 1) } {
                mstore(add(pa, shl(5, l)), off)
                for { let d := nk } gt(d, 0) { } {
                    d := sub(d, 1)
                    let o := shl(5, add(d, 1))
                    let st := mload(add(steps, o))
                    let c := add(mload(add(coords, o)), 1)
                    off := add(off, st)
                    let sz := mload(add(sizes, o))
                    if lt(c, sz) {
                        mstore(add(coords, o), c)
                        break
                    }
                    off := sub(off, mul(sz, st))
                    mstore(add(coords, o), 0)
                }
            }
        }
    }

    /// @notice `plan_reduce`: rows = the kept dims, the reduction over the reduced dims (`axes`
    ///         mod rank); mode 0 sum, 1 mean, 2 L2 (ACC_SQ), 3 max.
    function planReduce(NodeContext memory _ctx) internal pure returns (ReducePlan memory p_) {
        TensorInfo memory x = _ctx.tensors[0];
        TensorInfo memory out = _ctx.tensors[_ctx.nInputs];
        uint256 nd = x.shape.length;
        uint256 mask = 0;
        if (nd != 0) {
            int256[] memory axes = _ctx.attrs[1];
            for (uint256 i = 0; i < axes.length; ++i) {
                mask |= uint256(1) << floorMod(axes[i], nd);
            }
        }
        (p_.kept, p_.reduced) = splitDims(x.shape, mask);
        // INVARIANT: the output has one element per row.
        if (out.size != dimsSize(p_.kept)) revert UnsupportedOp();
        int256 mode = iattr(_ctx, 0);
        p_.za = x.zeroPoint;
        if (mode == 3) {
            p_.kind = K_ACC_MAX;
            p_.finKind = K_FIN_MOVE;
            p_.finImm = new int256[](1);
            return p_;
        }
        // INVARIANT: a known mode.
        if (mode < 0 || mode > 2) revert UnsupportedOp();
        (int256 lo, int256 hi) = qrangeOrZero(out);
        p_.kind = mode == 2 ? K_ACC_SQ : K_ACC_SUM;
        p_.finKind = K_FIN_DIV;
        int256[] memory imm = new int256[](8);
        imm[0] = iattr(_ctx, 3);
        imm[1] = iattr(_ctx, 4);
        imm[2] = out.zeroPoint;
        imm[3] = lo;
        imm[4] = hi;
        imm[6] = mode == 1 ? int256(dimsSize(p_.reduced)) : int256(1);
        imm[7] = mode == 2 ? int256(1) : int256(0);
        p_.finImm = imm;
    }

    /// @notice `plan_argmax`: rows = the other dims, ACC_ARG over `axis`, FIN_MOVE from `aux`.
    function planArgmax(NodeContext memory _ctx) internal pure returns (ReducePlan memory p_) {
        TensorInfo memory x = _ctx.tensors[0];
        TensorInfo memory out = _ctx.tensors[_ctx.nInputs];
        int256 axisAttr = iattr(_ctx, 0);
        uint256 nd = x.shape.length;
        // INVARIANT: not a 0-d tensor (`_axis`).
        if (nd == 0) revert UnsupportedOp();
        uint256 axis = floorMod(axisAttr, nd);
        (p_.kept, p_.reduced) = splitDims(x.shape, uint256(1) << axis);
        // INVARIANT: int64 output with one element per row, over a non-empty axis.
        if (out.size != dimsSize(p_.kept) || out.dtype != DT_INT64 || x.shape[axis] == 0) revert UnsupportedOp();
        p_.kind = K_ACC_ARG;
        p_.last = iattr(_ctx, 2);
        p_.finKind = K_FIN_MOVE;
        p_.finImm = new int256[](1);
        p_.finImm[0] = 1;
    }

    /// @notice `ReducePlan.steps`: `ceil(rows / WIDTH) · (T + 1)`.
    function reduceSteps(ReducePlan memory _p) internal pure returns (uint256 steps_) {
        steps_ = LibIndexing.ceilDiv(dimsSize(_p.kept), WIDTH) * (dimsSize(_p.reduced) + 1);
    }

    /// @notice `ReducePlan.instr` for `_pc < reduceSteps`: block of WIDTH rows; step `t` reads
    ///         `x[offset(r, kept) + offset(t, reduced)]`; the FIN step writes the rows.
    function reduceInstr(ReducePlan memory _p, uint256 _pc) internal pure returns (Instr memory i_) {
        uint256 tt = dimsSize(_p.reduced);
        uint256 nRows = dimsSize(_p.kept);
        uint256 r0 = (_pc / (tt + 1)) * WIDTH;
        uint256 t = _pc % (tt + 1);
        uint256 r1 = r0 + WIDTH < nRows ? r0 + WIDTH : nRows;
        uint256 nl = r1 - r0;
        i_.kind = _p.kind;
        if (t == tt) {
            i_.kind = _p.finKind;
            i_.out = seq(r0, 1, nl);
            i_.imm = _p.finImm;
            return i_;
        }
        i_.a = _rowOperands(_p.kept, r0, LibIndexing.ravelDims(t, _p.reduced), nl);
        if (_p.kind == K_ACC_MAX) {
            i_.imm = new int256[](2);
            i_.imm[0] = t == 0 ? int256(1) : int256(0);
        } else if (_p.kind == K_ACC_ARG) {
            i_.imm = new int256[](2);
            i_.imm[0] = int256(t);
            i_.imm[1] = _p.last;
        } else {
            i_.imm = new int256[](1);
            i_.imm[0] = _p.za;
        }
    }
}
