// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { UnsupportedOp } from "../lib/Errors.sol";
import { FinReq, LibBlocked } from "./LibBlocked.sol";
import { LibIndexing } from "./LibIndexing.sol";
import {
    DT_INT32,
    DT_INT8,
    DT_UINT8,
    Instr,
    K_ACC_MAX,
    K_ACC_SUM,
    K_FIN_DIV,
    K_FIN_MOVE,
    K_MAC,
    NodeContext,
    OP_AVGPOOL,
    OP_CONV,
    OP_MAXPOOL,
    PAD,
    TensorInfo,
    WIDTH
} from "./VMTypes.sol";

/// @notice conv / maxpool / avgpool (`fraud_vm.plans.WindowPlan`); `[0]` is y (rows), `[1]` x.
/// @custom:field finIsReq conv: the FIN step is `finReq` (column = oc); pools: `finKind`/`finImm`.
struct WindowPlan {
    uint8 kind;
    uint256[4] xShape;
    uint256 m;
    uint256 cg;
    uint256 ocg;
    uint256[2] kernel;
    uint256[2] strides;
    uint256[2] dil;
    int256[2] pads;
    uint256[2] outHw;
    int256 za;
    int256 padValue;
    bool finIsReq;
    FinReq finReq;
    uint8 finKind;
    int256[] finImm;
}

/// @notice The window program family of `fraud_vm.stepper` (conv, maxpool, avgpool over
///         `[B, C, H, W]`; docs/fraud_vm.md "Programs", "Blocked"), on the shared helpers and the
///         FIN_REQ operands of `LibBlocked`.
library LibWindow {
    // ---------------------------------------------------------------------------------------
    // windows: conv, maxpool, avgpool

    /// @notice `plan_window`: conv (weights `[M, C/group, KH, KW]`), maxpool, avgpool over `[B, C, H, W]`.
    function planWindow(NodeContext memory _ctx) internal pure returns (WindowPlan memory p_) {
        TensorInfo memory x = _ctx.tensors[0];
        // INVARIANT: the input is [B, C, H, W].
        if (x.shape.length != 4) revert UnsupportedOp();
        uint256 op = _ctx.op;
        int256[] memory dil;
        int256[] memory pads;
        int256[] memory str;
        int256 kh;
        int256 kw;
        if (op == OP_CONV) {
            uint256[] memory ws = _ctx.tensors[1].shape;
            // INVARIANT: conv weights are [M, C/group, KH, KW].
            if (ws.length != 4) revert UnsupportedOp();
            (p_.m, p_.cg, kh, kw) = (ws[0], ws[1], int256(ws[2]), int256(ws[3]));
            int256 group = LibBlocked.iattr(_ctx, 3);
            // INVARIANT: group > 0 divides M and C = Cg · group.
            if (group <= 0 || p_.m % uint256(group) != 0 || x.shape[1] != p_.cg * uint256(group)) {
                revert UnsupportedOp();
            }
            p_.ocg = p_.m / uint256(group);
            dil = LibBlocked.pair(_ctx, 2, 2);
            pads = LibBlocked.pair(_ctx, 0, 4);
            str = LibBlocked.pair(_ctx, 1, 2);
        } else {
            int256[] memory kernel = LibBlocked.pair(_ctx, 0, 2);
            (kh, kw) = (kernel[0], kernel[1]);
            (p_.m, p_.cg, p_.ocg) = (x.shape[1], 1, 1);
            if (op == OP_MAXPOOL) {
                dil = LibBlocked.pair(_ctx, 3, 2);
            } else {
                dil = new int256[](2);
                (dil[0], dil[1]) = (1, 1);
            }
            pads = LibBlocked.pair(_ctx, 2, 4);
            str = LibBlocked.pair(_ctx, 1, 2);
        }
        // INVARIANT: kernel, strides and dilations are positive.
        if (kh < 1 || kw < 1 || str[0] < 1 || str[1] < 1 || dil[0] < 1 || dil[1] < 1) revert UnsupportedOp();
        p_.kernel = [uint256(kh), uint256(kw)];
        p_.strides = [uint256(str[0]), uint256(str[1])];
        p_.dil = [uint256(dil[0]), uint256(dil[1])];
        p_.pads = [pads[0], pads[1]];
        _windowOut(_ctx, p_, x, pads);
        p_.xShape = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        p_.za = x.zeroPoint;
        _windowFin(_ctx, p_, x);
    }

    /// @notice `OH`, `OW` (floor division, as Python's `//`) checked against the output shape.
    function _windowOut(NodeContext memory _ctx, WindowPlan memory _p, TensorInfo memory _x, int256[] memory _pads)
        private
        pure
    {
        int256 oh = LibBlocked.floorDiv(
            int256(_x.shape[2]) + _pads[0] + _pads[2] - (int256(_p.kernel[0]) - 1) * int256(_p.dil[0]) - 1,
            int256(_p.strides[0])
        ) + 1;
        int256 ow = LibBlocked.floorDiv(
            int256(_x.shape[3]) + _pads[1] + _pads[3] - (int256(_p.kernel[1]) - 1) * int256(_p.dil[1]) - 1,
            int256(_p.strides[1])
        ) + 1;
        uint256[] memory out = _ctx.tensors[_ctx.nInputs].shape;
        // INVARIANT: the output is [B, M, OH, OW] (`_check_shape`).
        if (
            out.length != 4 || out[0] != _x.shape[0] || out[1] != _p.m || oh < 0 || out[2] != uint256(oh) || ow < 0
                || out[3] != uint256(ow)
        ) revert UnsupportedOp();
        _p.outHw = [uint256(oh), uint256(ow)];
    }

    /// @notice The reduction kind and FIN step of a window plan (conv: MAC + FIN_REQ; maxpool:
    ///         ACC_MAX + FIN_MOVE; avgpool: ACC_SUM + FIN_DIV).
    function _windowFin(NodeContext memory _ctx, WindowPlan memory _p, TensorInfo memory _x) private pure {
        uint256 op = _ctx.op;
        TensorInfo memory out = _ctx.tensors[_ctx.nInputs];
        if (op == OP_CONV) {
            _p.kind = K_MAC;
            _p.finIsReq = true;
            _p.finReq = LibBlocked.planFinReq(_ctx, out.dtype == DT_INT32, 4, 5, 0, 0);
            return;
        }
        if (op == OP_MAXPOOL) {
            _p.kind = K_ACC_MAX;
            (_p.padValue,) = LibBlocked.qrange(_x);
            _p.finKind = K_FIN_MOVE;
            _p.finImm = new int256[](1);
            return;
        }
        (int256 lo, int256 hi) = LibBlocked.qrange(out);
        _p.kind = K_ACC_SUM;
        _p.finKind = K_FIN_DIV;
        int256[] memory imm = new int256[](8);
        imm[0] = LibBlocked.iattr(_ctx, 4);
        imm[1] = LibBlocked.iattr(_ctx, 5);
        imm[2] = out.zeroPoint;
        imm[3] = lo;
        imm[4] = hi;
        imm[5] = LibBlocked.iattr(_ctx, 3) == 0 ? int256(1) : int256(0);
        imm[6] = int256(_p.kernel[0] * _p.kernel[1]);
        _p.finImm = imm;
    }

    /// @notice `WindowPlan.lanes`: `max(1, WIDTH div sw)`.
    function windowLanes(WindowPlan memory _p) internal pure returns (uint256 lanes_) {
        lanes_ = WIDTH / _p.strides[1];
        if (lanes_ == 0) lanes_ = 1;
    }

    /// @notice `WindowPlan.steps`: `B · M · OH · ceil(OW / Lb) · (T + 1)`, `T = Cg · KH · KW`.
    function windowSteps(WindowPlan memory _p) internal pure returns (uint256 steps_) {
        uint256 tt = _p.cg * _p.kernel[0] * _p.kernel[1];
        steps_ = _p.xShape[0] * _p.m * _p.outHw[0] * LibIndexing.ceilDiv(_p.outHw[1], windowLanes(_p)) * (tt + 1);
    }

    /// @notice `WindowPlan.instr` for `_pc < windowSteps`: block `(bn, oc, oy, xb)`, lanes along
    ///         `ox`; `t = (ic, ky, kx)`; a tap outside the input is PAD.
    function windowInstr(WindowPlan memory _p, uint256 _pc) internal pure returns (Instr memory i_) {
        uint256 tt = _p.cg * _p.kernel[0] * _p.kernel[1];
        uint256 t = _pc % (tt + 1);
        uint256[5] memory bk = _windowBlock(_p, _pc / (tt + 1));
        uint256 nl = bk[4];
        if (t == tt) return _windowFinInstr(_p, bk);
        i_.a = _windowTaps(_p, t, bk);
        i_.kind = _p.kind;
        if (_p.kind == K_MAC) {
            i_.b = LibBlocked.seq(LibBlocked.operand(1, bk[1] * tt + t), 0, nl);
            i_.imm = new int256[](2);
            i_.imm[0] = _p.za;
        } else if (_p.kind == K_ACC_MAX) {
            i_.imm = new int256[](2);
            i_.imm[0] = t == 0 ? int256(1) : int256(0);
            i_.imm[1] = _p.padValue;
        } else {
            i_.imm = new int256[](1);
            i_.imm[0] = _p.za;
        }
    }

    /// @notice Block `_blk` of a window program as `[bn, oc, oy, x0, lanes]` (`(bn, oc, oy, xb)`
    ///         from `_blk` outermost first; lanes `ox = x0 .. x0 + lanes - 1`).
    function _windowBlock(WindowPlan memory _p, uint256 _blk) private pure returns (uint256[5] memory bk_) {
        uint256 lb = windowLanes(_p);
        uint256 ow = _p.outHw[1];
        uint256 nxb = LibIndexing.ceilDiv(ow, lb);
        uint256 x0 = (_blk % nxb) * lb;
        uint256 rest = _blk / nxb;
        bk_[2] = rest % _p.outHw[0];
        rest /= _p.outHw[0];
        bk_[1] = rest % _p.m;
        bk_[0] = rest / _p.m;
        bk_[3] = x0;
        bk_[4] = (x0 + lb < ow ? x0 + lb : ow) - x0;
    }

    /// @notice The FIN step of window block `_bk`: FIN_REQ with column `oc` (conv) or the pool's
    ///         FIN instruction, over outputs `((bn·M + oc)·OH + oy)·OW + ox`.
    function _windowFinInstr(WindowPlan memory _p, uint256[5] memory _bk) private pure returns (Instr memory i_) {
        uint256 base = ((_bk[0] * _p.m + _bk[1]) * _p.outHw[0] + _bk[2]) * _p.outHw[1] + _bk[3];
        uint256[] memory outs = LibBlocked.seq(base, 1, _bk[4]);
        if (_p.finIsReq) return LibBlocked.finReq(_p.finReq, outs, _bk[1], 0);
        i_.kind = _p.finKind;
        i_.out = outs;
        i_.imm = _p.finImm;
    }

    /// @notice The input operands of reduction step `_t` of a window block: `(0, ((bn·C + ch)·H +
    ///         iy)·W + ix)` inside the input, PAD outside.
    function _windowTaps(WindowPlan memory _p, uint256 _t, uint256[5] memory _bk)
        private
        pure
        returns (uint256[] memory a_)
    {
        uint256 khw = _p.kernel[0] * _p.kernel[1];
        uint256 kx = (_t % khw) % _p.kernel[1];
        uint256 h = _p.xShape[2];
        uint256 w = _p.xShape[3];
        int256 iy = int256(_bk[2] * _p.strides[0] + ((_t % khw) / _p.kernel[1]) * _p.dil[0]) - _p.pads[0];
        bool rowIn = iy >= 0 && uint256(iy) < h;
        uint256 base = 0;
        if (rowIn) {
            uint256 ch = (_bk[1] / _p.ocg) * _p.cg + _t / khw;
            base = ((_bk[0] * _p.xShape[1] + ch) * h + uint256(iy)) * w;
        }
        uint256 nl = _bk[4];
        a_ = LibBlocked.seq(PAD, 0, nl);
        if (!rowIn) return a_;
        int256 ix0 = int256(_bk[3] * _p.strides[1] + kx * _p.dil[1]) - _p.pads[1];
        uint256 sw = _p.strides[1];
        // SAFETY: |ix| < 2^130 (ox < 2^32, sw, kx, dx, pl within int64), so the signed steps
        // cannot wrap; `l < nl` keeps the stores inside `a_`. Region 0: the packed operand is the
        // element itself.
        assembly ("memory-safe") {
            let p := add(a_, 0x20)
            let ix := ix0
            for { let l := 0 } lt(l, nl) { l := add(l, 1) } {
                if and(sgt(ix, not(0)), slt(ix, w)) { mstore(add(p, shl(5, l)), add(base, ix)) }
                ix := add(ix, sw)
            }
        }
    }
}
