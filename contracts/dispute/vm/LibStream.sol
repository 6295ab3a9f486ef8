// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import { UnsupportedOp } from "../lib/Errors.sol";
import { LibContext } from "./LibContext.sol";
import { LibIndexing, Source } from "./LibIndexing.sol";
import {
    DT_INT8,
    DT_UINT8,
    Instr,
    K_ADD,
    K_CAST,
    K_COPY,
    K_DEQUANT,
    K_FLIP,
    K_GATHER,
    K_LN_DEN,
    K_LN_OUT,
    K_LN_SUM,
    K_LN_VAR,
    K_LUT,
    K_MUL,
    K_QUANT,
    K_SM_MAX,
    K_SM_OUT,
    K_SM_SUM,
    K_WHERE,
    NodeContext,
    TensorInfo,
    WIDTH
} from "./VMTypes.sol";

/// @dev Op codes of the streaming ops (`opml.ops`, committed in node descriptors).
uint256 constant OP_QUANTIZE = 1;
uint256 constant OP_DEQUANTIZE = 2;
uint256 constant OP_ADD = 6;
uint256 constant OP_MUL = 7;
uint256 constant OP_LUT = 8;
uint256 constant OP_SOFTMAX = 9;
uint256 constant OP_LAYERNORM = 10;
uint256 constant OP_RESHAPE = 14;
uint256 constant OP_TRANSPOSE = 15;
uint256 constant OP_CONCAT = 16;
uint256 constant OP_SLICE = 17;
uint256 constant OP_GATHER = 18;
uint256 constant OP_CAST = 20;
uint256 constant OP_FLIP_SIGN_BIT = 21;
uint256 constant OP_WHERE = 22;

/// @notice One step per output word (`fraud_vm.plans.ElementwisePlan`).
/// @custom:field kind The instruction kind of every step.
/// @custom:field size The output's element count.
/// @custom:field perWord Output elements per word (`WIDTH div itemsize(out)`).
/// @custom:field sources The operand sources `a`, `b`, `c` (one to three).
/// @custom:field imm The immediates of every step.
/// @custom:field steps `ceilDiv(size, perWord)`.
struct ElementwisePlan {
    uint8 kind;
    uint256 size;
    uint256 perWord;
    Source[] sources;
    int256[] imm;
    uint256 steps;
}

/// @notice softmax / layernorm rows (`fraud_vm.plans.RowsPlan`).
/// @custom:field layernorm Whether the op is layernorm (else softmax).
/// @custom:field kept The `(size, stride)` of the dims other than the row axis, in order.
/// @custom:field cols The row axis's size `C` (> 0).
/// @custom:field stride The row axis's stride.
/// @custom:field params softmax: `(zp, lo, hi)`; layernorm: `(eps, F, m, s, zp, qmin, qmax)`.
/// @custom:field chunks `nc = ceilDiv(C, WIDTH)`.
/// @custom:field perRow `3·nc + layernorm`.
/// @custom:field steps `∏ kept sizes · perRow`.
struct RowsPlan {
    bool layernorm;
    uint256[2][] kept;
    uint256 cols;
    uint256 stride;
    int256[] params;
    uint256 chunks;
    uint256 perRow;
    uint256 steps;
}

/// @title LibStream
/// @notice The elementwise and rows programs of the program derivation: the mirror of
///         `fraud_vm.stepper.plan_elementwise` / `plan_rows` (every `UnsupportedOp` check) and of
///         `ElementwisePlan.instr` / `RowsPlan.instr` (`elementwiseInstr`, `rowsInstr`), as
///         docs/fraud_vm.md "Programs" gives them. The caller (`VMProgram`) has decoded the context
///         (`LibContext`: dims < 2^32, sizes < 2^64, attributes and zero points within int64, scale
///         bits < 2^32) and handled `make_plan`'s cases first (an empty output is one NOP; at least
///         one input).
library LibStream {
    // -----------------------------------------------------------------------------------------
    // shared checks (`fraud_vm.stepper` helpers)

    /// @notice The int8 / uint8 range of `_t` (`_qrange`); `UnsupportedOp` for another dtype.
    function qrange(TensorInfo memory _t) internal pure returns (int256 lo_, int256 hi_) {
        if (_t.dtype == DT_INT8) return (-128, 127);
        if (_t.dtype == DT_UINT8) return (0, 255);
        // INVARIANT: the op's output is int8 or uint8.
        revert UnsupportedOp();
    }

    /// @notice Attribute `_k` (schema order) of the node (`Node.attr`).
    function attr(NodeContext memory _ctx, uint256 _k) internal pure returns (int256[] memory v_) {
        // INVARIANT: the decoder gave the schema's attribute count; a shorter list is unsupported.
        if (_k >= _ctx.attrs.length) revert UnsupportedOp();
        v_ = _ctx.attrs[_k];
    }

    /// @notice The first value of attribute `_k` (`Node.iattr`); `UnsupportedOp` if it has none
    ///         (Python's IndexError, which `make_plan` reports as UnsupportedOp).
    function iattr(NodeContext memory _ctx, uint256 _k) internal pure returns (int256 v_) {
        int256[] memory v = attr(_ctx, _k);
        // INVARIANT: the attribute has a value.
        if (v.length == 0) revert UnsupportedOp();
        v_ = v[0];
    }

    /// @notice Whether two shapes are equal (length and every dim).
    function sameShape(uint256[] memory _a, uint256[] memory _b) internal pure returns (bool) {
        if (_a.length != _b.length) return false;
        for (uint256 d = 0; d < _a.length; ++d) {
            if (_a[d] != _b[d]) return false;
        }
        return true;
    }

    /// @notice `_check_shape`: the output's shape must be `_shape`, else `UnsupportedOp`.
    function checkShape(NodeContext memory _ctx, uint256[] memory _shape) internal pure {
        // INVARIANT: the declared output shape is the one the inputs give.
        if (!sameShape(_ctx.tensors[_ctx.nInputs].shape, _shape)) revert UnsupportedOp();
    }

    /// @notice `_axis`: `_axis mod rank(_t)` (floor modulo); `UnsupportedOp` for a 0-d tensor.
    function axisOf(TensorInfo memory _t, int256 _axis) internal pure returns (uint256 axis_) {
        // INVARIANT: an axis op needs a tensor of rank >= 1.
        if (_t.shape.length == 0) revert UnsupportedOp();
        int256 nd = int256(_t.shape.length);
        axis_ = uint256(((_axis % nd) + nd) % nd);
    }

    /// @notice `_shape[:_from] + _mid + _shape[_to:]` (`_from <= _to <= rank`).
    function splice(uint256[] memory _shape, uint256 _from, uint256[] memory _mid, uint256 _to)
        internal
        pure
        returns (uint256[] memory out_)
    {
        out_ = new uint256[](_from + _mid.length + _shape.length - _to);
        uint256 k = 0;
        for (uint256 d = 0; d < _from; ++d) {
            out_[k++] = _shape[d];
        }
        for (uint256 d = 0; d < _mid.length; ++d) {
            out_[k++] = _mid[d];
        }
        for (uint256 d = _to; d < _shape.length; ++d) {
            out_[k++] = _shape[d];
        }
    }

    // -----------------------------------------------------------------------------------------
    // elementwise

    /// @notice The elementwise plan of a node (`plan_elementwise`): broadcasting add / mul / where,
    ///         gather, concat, transpose, slice, and the same-size ops reshape, lut, quantize,
    ///         dequantize, cast, flip_sign_bit. Reverts `UnsupportedOp` where Python raises it.
    function planElementwise(NodeContext memory _ctx) internal pure returns (ElementwisePlan memory plan_) {
        uint256 op = _ctx.op;
        uint256 nIn = _ctx.nInputs;
        // INVARIANT: at least one input (`make_plan`), and the schema's arity for add/mul/where/gather.
        if (nIn == 0) revert UnsupportedOp();
        if ((op == OP_ADD || op == OP_MUL || op == OP_GATHER) && nIn != 2) revert UnsupportedOp();
        if (op == OP_WHERE && nIn != 3) revert UnsupportedOp();
        TensorInfo memory x = _ctx.tensors[0];
        TensorInfo memory out = _ctx.tensors[nIn];
        plan_.size = out.size;
        plan_.perWord = WIDTH / LibContext.itemsize(out.dtype);
        plan_.steps = LibIndexing.ceilDiv(out.size, plan_.perWord);
        if (op == OP_ADD || op == OP_MUL || op == OP_WHERE) {
            broadcastPlan(_ctx, plan_);
        } else if (op == OP_GATHER) {
            gatherPlan(_ctx, plan_);
        } else if (op == OP_CONCAT) {
            concatPlan(_ctx, plan_);
        } else if (op == OP_TRANSPOSE) {
            transposePlan(_ctx, plan_);
        } else if (op == OP_SLICE) {
            slicePlan(_ctx, plan_);
        } else {
            // INVARIANT: the same-size ops keep the element count; all but reshape keep the shape.
            if (x.size != out.size) revert UnsupportedOp();
            if (op != OP_RESHAPE) checkShape(_ctx, x.shape);
            plan_.sources = new Source[](1);
            plan_.sources[0] = LibIndexing.newIdentitySource(0);
            sameSizePlan(_ctx, plan_);
        }
    }

    /// @notice add / mul / where: every input broadcast to the output (`IdentitySource` where its
    ///         shape is the output's), with the op's immediates.
    function broadcastPlan(NodeContext memory _ctx, ElementwisePlan memory _plan) internal pure {
        uint256 nIn = _ctx.nInputs;
        uint256[] memory shape = _ctx.tensors[nIn].shape;
        uint256[][] memory shapes = new uint256[][](nIn);
        for (uint256 i = 0; i < nIn; ++i) {
            shapes[i] = _ctx.tensors[i].shape;
        }
        checkShape(_ctx, LibIndexing.broadcastShape(shapes));
        _plan.sources = new Source[](nIn);
        for (uint256 i = 0; i < nIn; ++i) {
            _plan.sources[i] = sameShape(shapes[i], shape)
                ? LibIndexing.newIdentitySource(i)
                : LibIndexing.newBroadcastSource(i, shape, shapes[i]);
        }
        TensorInfo memory x = _ctx.tensors[0];
        uint256 op = _ctx.op;
        if (op == OP_ADD) {
            _plan.kind = K_ADD;
            _plan.imm = new int256[](8);
            _plan.imm[0] = x.zeroPoint;
            _plan.imm[1] = _ctx.tensors[1].zeroPoint;
            _plan.imm[2] = iattr(_ctx, 0); // a_mult
            _plan.imm[3] = iattr(_ctx, 1); // b_mult
            _plan.imm[4] = iattr(_ctx, 2); // shift
            _plan.imm[5] = _ctx.tensors[nIn].zeroPoint;
            _plan.imm[6] = iattr(_ctx, 3); // qmin
            _plan.imm[7] = iattr(_ctx, 4); // qmax
        } else if (op == OP_MUL) {
            _plan.kind = K_MUL;
            _plan.imm = new int256[](7);
            _plan.imm[0] = x.zeroPoint;
            _plan.imm[1] = _ctx.tensors[1].zeroPoint;
            _plan.imm[2] = iattr(_ctx, 0); // mult
            _plan.imm[3] = iattr(_ctx, 1); // shift
            _plan.imm[4] = _ctx.tensors[nIn].zeroPoint;
            _plan.imm[5] = iattr(_ctx, 2); // qmin
            _plan.imm[6] = iattr(_ctx, 3); // qmax
        } else {
            _plan.kind = K_WHERE;
            _plan.imm = new int256[](1);
            _plan.imm[0] = int256(uint256(x.dtype));
        }
    }

    /// @notice gather along `axis mod rank`: index operand `a`, data base `b`, imm `(n, post)`.
    function gatherPlan(NodeContext memory _ctx, ElementwisePlan memory _plan) internal pure {
        TensorInfo memory x = _ctx.tensors[0];
        TensorInfo memory indices = _ctx.tensors[1];
        uint256 axis = axisOf(x, iattr(_ctx, 0));
        uint256 n = x.shape[axis];
        uint256 post = 1;
        for (uint256 d = axis + 1; d < x.shape.length; ++d) {
            post *= x.shape[d];
        }
        checkShape(_ctx, splice(x.shape, axis, indices.shape, axis + 1));
        _plan.kind = K_GATHER;
        _plan.sources = new Source[](2);
        _plan.sources[0] = LibIndexing.newGatherIndexSource(post, indices.size);
        _plan.sources[1] = LibIndexing.newGatherDataSource(post, indices.size, n);
        _plan.imm = new int256[](2);
        _plan.imm[0] = int256(n);
        _plan.imm[1] = int256(post);
    }

    /// @notice concat along `axis` (in `[-rank, rank)`): inputs of one rank, equal outside the axis.
    function concatPlan(NodeContext memory _ctx, ElementwisePlan memory _plan) internal pure {
        uint256 nIn = _ctx.nInputs;
        uint256[] memory xs = _ctx.tensors[0].shape;
        uint256 nd = xs.length;
        int256 a = iattr(_ctx, 0);
        // INVARIANT: rank >= 1 and -rank <= axis < rank.
        if (nd == 0 || a < -int256(nd) || a >= int256(nd)) revert UnsupportedOp();
        uint256 axis = uint256((a + int256(nd)) % int256(nd));
        uint256[][] memory shapes = new uint256[][](nIn);
        uint256 total = 0;
        for (uint256 i = 0; i < nIn; ++i) {
            uint256[] memory s = _ctx.tensors[i].shape;
            // INVARIANT: every input has the first's rank.
            if (s.length != nd) revert UnsupportedOp();
            shapes[i] = s;
        }
        for (uint256 i = 0; i < nIn; ++i) {
            for (uint256 d = 0; d < nd; ++d) {
                // INVARIANT: the inputs agree outside the concatenation axis.
                if (d != axis && shapes[i][d] != xs[d]) revert UnsupportedOp();
            }
            // SAFETY: at most 4096 dims below 2^32 each.
            total += shapes[i][axis];
        }
        uint256[] memory mid = new uint256[](1);
        mid[0] = total;
        checkShape(_ctx, splice(xs, axis, mid, axis + 1));
        _plan.kind = K_COPY;
        _plan.sources = new Source[](1);
        _plan.sources[0] = LibIndexing.newConcatSource(_ctx.tensors[nIn].shape, axis, shapes);
    }

    /// @notice transpose by `perm`: a permutation of the rank's axes (negatives `mod rank`).
    function transposePlan(NodeContext memory _ctx, ElementwisePlan memory _plan) internal pure {
        uint256[] memory xs = _ctx.tensors[0].shape;
        int256[] memory p = attr(_ctx, 0);
        uint256 nd = xs.length;
        // INVARIANT: one entry per axis.
        if (p.length != nd) revert UnsupportedOp();
        uint256[] memory perm = new uint256[](nd);
        uint256[] memory shape = new uint256[](nd);
        bool[] memory seen = new bool[](nd);
        for (uint256 j = 0; j < nd; ++j) {
            // INVARIANT: each entry in [-rank, rank), and no axis twice.
            if (p[j] < -int256(nd) || p[j] >= int256(nd)) revert UnsupportedOp();
            uint256 q = uint256((p[j] + int256(nd)) % int256(nd));
            if (seen[q]) revert UnsupportedOp();
            seen[q] = true;
            perm[j] = q;
            shape[j] = xs[q];
        }
        checkShape(_ctx, shape);
        _plan.kind = K_COPY;
        _plan.sources = new Source[](1);
        _plan.sources[0] = LibIndexing.newTransposeSource(_ctx.tensors[_ctx.nInputs].shape, perm, xs);
    }

    /// @notice slice of the leading dims by `(starts, ends, steps)`, Python's `slice.indices`
    ///         clamping (a negative end with a negative step runs to the front).
    function slicePlan(NodeContext memory _ctx, ElementwisePlan memory _plan) internal pure {
        uint256[] memory xs = _ctx.tensors[0].shape;
        int256[] memory starts = attr(_ctx, 0);
        int256[] memory ends = attr(_ctx, 1);
        int256[] memory steps = attr(_ctx, 2);
        uint256 ns = starts.length;
        // INVARIANT: one length <= rank for the three lists.
        if (ends.length != ns || steps.length != ns || ns > xs.length) revert UnsupportedOp();
        int256[] memory first = new int256[](ns);
        uint256[] memory shape = new uint256[](xs.length);
        for (uint256 d = 0; d < xs.length; ++d) {
            shape[d] = xs[d];
        }
        for (uint256 d = 0; d < ns; ++d) {
            // INVARIANT: no zero step.
            if (steps[d] == 0) revert UnsupportedOp();
            (first[d], shape[d]) = sliceIndices(starts[d], ends[d], steps[d], xs[d]);
        }
        checkShape(_ctx, shape);
        _plan.kind = K_COPY;
        _plan.sources = new Source[](1);
        _plan.sources[0] = LibIndexing.newSliceSource(_ctx.tensors[_ctx.nInputs].shape, first, steps, xs);
    }

    /// @notice `range(*slice(start, end if end >= 0 or step > 0 else None, step).indices(len))`:
    ///         its start and length (CPython's `PySlice_GetIndicesEx` clamping). All int64 / < 2^32
    ///         inputs, computed in int256.
    function sliceIndices(int256 _start, int256 _end, int256 _step, uint256 _len)
        internal
        pure
        returns (int256 start_, uint256 length_)
    {
        int256 len = int256(_len);
        bool neg = _step < 0;
        int256 lower = neg ? int256(-1) : int256(0);
        int256 upper = neg ? len - 1 : len;
        start_ = clampIndex(_start, len, lower, upper);
        int256 stop = (_end < 0 && neg) ? lower : clampIndex(_end, len, lower, upper);
        if (!neg && start_ < stop) length_ = uint256((stop - start_ - 1) / _step + 1);
        if (neg && start_ > stop) length_ = uint256((start_ - stop - 1) / -_step + 1);
    }

    /// @notice One slice bound clamped as `slice.indices` does: negatives count from the end,
    ///         then into `[_lower, _upper]`.
    function clampIndex(int256 _i, int256 _len, int256 _lower, int256 _upper) internal pure returns (int256 i_) {
        if (_i < 0) {
            i_ = _i + _len;
            if (i_ < _lower) i_ = _lower;
        } else {
            i_ = _i > _upper ? _upper : _i;
        }
    }

    /// @notice The same-size ops' kind and immediates (`IdentitySource(0)` already set).
    function sameSizePlan(NodeContext memory _ctx, ElementwisePlan memory _plan) internal pure {
        uint256 op = _ctx.op;
        TensorInfo memory x = _ctx.tensors[0];
        TensorInfo memory out = _ctx.tensors[_ctx.nInputs];
        if (op == OP_RESHAPE) {
            _plan.kind = K_COPY;
        } else if (op == OP_LUT) {
            _plan.kind = K_LUT;
            _plan.imm = new int256[](2);
            _plan.imm[0] = 1;
            _plan.imm[1] = x.dtype == DT_INT8 ? int256(128) : int256(0);
        } else if (op == OP_QUANTIZE) {
            // INVARIANT: the output scale is a positive finite float32 (bits in (0, +inf)).
            if (out.scaleBits == 0 || out.scaleBits >= 0x7f800000) revert UnsupportedOp();
            (int256 lo, int256 hi) = qrange(out);
            _plan.kind = K_QUANT;
            _plan.imm = new int256[](4);
            _plan.imm[0] = int256(out.scaleBits);
            _plan.imm[1] = out.zeroPoint;
            _plan.imm[2] = lo;
            _plan.imm[3] = hi;
        } else if (op == OP_DEQUANTIZE) {
            // INVARIANT: the input scale is a finite float32 (exponent not all ones).
            if (x.scaleBits & 0x7fffffff >= 0x7f800000) revert UnsupportedOp();
            _plan.kind = K_DEQUANT;
            _plan.imm = new int256[](2);
            _plan.imm[0] = x.zeroPoint;
            _plan.imm[1] = int256(x.scaleBits);
        } else if (op == OP_CAST) {
            _plan.kind = K_CAST;
            _plan.imm = new int256[](2);
            _plan.imm[0] = int256(uint256(x.dtype));
            _plan.imm[1] = int256(uint256(out.dtype));
        } else if (op == OP_FLIP_SIGN_BIT) {
            _plan.kind = K_FLIP;
        } else {
            // INVARIANT: every other op has its own plan (`op has no VM lowering`).
            revert UnsupportedOp();
        }
    }

    /// @notice The instruction at `_pc` (`ElementwisePlan.instr`): lanes = the output elements
    ///         `o` of word `_pc`, operand `k` at `sources[k].at(o)`. A NOP with empty lists for
    ///         `_pc >= steps`.
    function elementwiseInstr(ElementwisePlan memory _plan, uint256 _pc) internal pure returns (Instr memory instr_) {
        if (_pc >= _plan.steps) return instr_;
        uint256 first = _pc * _plan.perWord;
        uint256 end = first + _plan.perWord;
        if (end > _plan.size) end = _plan.size;
        uint256 lanes = end - first;
        instr_.kind = _plan.kind;
        instr_.out = new uint256[](lanes);
        for (uint256 l = 0; l < lanes; ++l) {
            instr_.out[l] = first + l;
        }
        uint256 ns = _plan.sources.length;
        if (ns > 0) instr_.a = LibIndexing.sourceRun(_plan.sources[0], first, lanes);
        if (ns > 1) instr_.b = LibIndexing.sourceRun(_plan.sources[1], first, lanes);
        if (ns > 2) instr_.c = LibIndexing.sourceRun(_plan.sources[2], first, lanes);
        instr_.imm = _plan.imm;
    }

    // -----------------------------------------------------------------------------------------
    // rows

    /// @notice The rows plan of softmax (along `axis mod rank`) / layernorm (along the last axis)
    ///         (`plan_rows`). Reverts `UnsupportedOp` where Python raises it.
    function planRows(NodeContext memory _ctx) internal pure returns (RowsPlan memory plan_) {
        // INVARIANT: at least one input (`make_plan`).
        if (_ctx.nInputs == 0) revert UnsupportedOp();
        TensorInfo memory x = _ctx.tensors[0];
        TensorInfo memory out = _ctx.tensors[_ctx.nInputs];
        checkShape(_ctx, x.shape);
        uint256 axis;
        if (_ctx.op == OP_SOFTMAX) {
            axis = axisOf(x, iattr(_ctx, 0));
            (int256 lo, int256 hi) = qrange(out);
            plan_.params = new int256[](3);
            plan_.params[0] = out.zeroPoint;
            plan_.params[1] = lo;
            plan_.params[2] = hi;
        } else if (_ctx.op == OP_LAYERNORM) {
            axis = axisOf(x, -1);
            plan_.layernorm = true;
            plan_.params = new int256[](7);
            plan_.params[0] = iattr(_ctx, 0); // eps
            plan_.params[1] = iattr(_ctx, 1); // frac_bits
            plan_.params[2] = iattr(_ctx, 2); // mult
            plan_.params[3] = iattr(_ctx, 3); // shift
            plan_.params[4] = out.zeroPoint;
            plan_.params[5] = iattr(_ctx, 4); // qmin
            plan_.params[6] = iattr(_ctx, 5); // qmax
        } else {
            // INVARIANT: only softmax and layernorm are rows programs.
            revert UnsupportedOp();
        }
        // INVARIANT: the row axis is not empty.
        if (x.shape[axis] == 0) revert UnsupportedOp();
        uint256[] memory st = LibIndexing.strides(x.shape);
        uint256 nd = x.shape.length;
        plan_.kept = new uint256[2][](nd - 1);
        uint256 rows = 1;
        for (uint256 d = 0; d < nd; ++d) {
            if (d == axis) continue;
            plan_.kept[d < axis ? d : d - 1] = [x.shape[d], st[d]];
            rows *= x.shape[d];
        }
        plan_.cols = x.shape[axis];
        plan_.stride = st[axis];
        plan_.chunks = LibIndexing.ceilDiv(plan_.cols, WIDTH);
        plan_.perRow = 3 * plan_.chunks + (plan_.layernorm ? 1 : 0);
        plan_.steps = rows * plan_.perRow;
    }

    /// @notice The instruction at `_pc` (`RowsPlan.instr`): row `r`, passes of WIDTH-column chunks
    ///         (softmax SM_MAX, SM_SUM, SM_OUT; layernorm LN_SUM, LN_VAR, LN_DEN, LN_OUT). A NOP
    ///         with empty lists for `_pc >= steps`.
    function rowsInstr(RowsPlan memory _plan, uint256 _pc) internal pure returns (Instr memory instr_) {
        if (_pc >= _plan.steps) return instr_;
        uint256 nc = _plan.chunks;
        bool ln = _plan.layernorm;
        uint256 r = _pc / _plan.perRow;
        uint256 t = _pc % _plan.perRow;
        if (ln && t == 2 * nc) {
            instr_.kind = K_LN_DEN;
            instr_.imm = new int256[](2);
            instr_.imm[0] = int256(_plan.cols);
            instr_.imm[1] = _plan.params[0];
            return instr_;
        }
        uint256 p;
        uint256 c;
        if (t < 2 * nc) {
            (p, c) = (t / nc, t % nc);
        } else {
            (p, c) = (2, t - 2 * nc - (ln ? 1 : 0));
        }
        uint256 j0 = c * WIDTH;
        uint256 j1 = j0 + WIDTH;
        if (j1 > _plan.cols) j1 = _plan.cols;
        uint256 base = LibIndexing.ravelDims(r, _plan.kept);
        uint256[] memory idx = new uint256[](j1 - j0);
        for (uint256 j = j0; j < j1; ++j) {
            idx[j - j0] = base + j * _plan.stride;
        }
        // region 0: operand (0, e) packs to e itself
        instr_.a = idx;
        int256 last = c == nc - 1 ? int256(1) : int256(0);
        if (!ln) {
            if (p == 0) {
                instr_.kind = K_SM_MAX;
                instr_.imm = new int256[](1);
                instr_.imm[0] = c == 0 ? int256(1) : int256(0);
            } else if (p == 1) {
                instr_.kind = K_SM_SUM;
                instr_.imm = new int256[](1);
                instr_.imm[0] = 1;
            } else {
                instr_.kind = K_SM_OUT;
                instr_.out = idx;
                instr_.imm = new int256[](5);
                instr_.imm[0] = 1;
                instr_.imm[1] = _plan.params[0];
                instr_.imm[2] = _plan.params[1];
                instr_.imm[3] = _plan.params[2];
                instr_.imm[4] = last;
            }
            return instr_;
        }
        if (p == 0) {
            instr_.kind = K_LN_SUM;
        } else if (p == 1) {
            instr_.kind = K_LN_VAR;
            instr_.imm = new int256[](1);
            instr_.imm[0] = int256(_plan.cols);
        } else {
            instr_.kind = K_LN_OUT;
            instr_.out = idx;
            instr_.b = new uint256[](j1 - j0);
            instr_.c = new uint256[](j1 - j0);
            for (uint256 j = j0; j < j1; ++j) {
                instr_.b[j - j0] = (uint256(1) << 128) | j;
                instr_.c[j - j0] = (uint256(2) << 128) | j;
            }
            instr_.imm = new int256[](8);
            instr_.imm[0] = int256(_plan.cols);
            for (uint256 k = 1; k < 7; ++k) {
                instr_.imm[k] = _plan.params[k];
            }
            instr_.imm[7] = last;
        }
    }
}
