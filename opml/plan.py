"""Prepared execution plans for one batch size: every node bound to buffers allocated once, and the runs
of nodes with a native kernel executed by one C call (``opml/native/plan.c``).

The per-node path (``engine._execute``) costs about 10 us of Python per node around each kernel; at
batch 1 that is as much as the kernels of a small encoder. A :class:`BatchPlan` knows every tensor's
concrete shape at its batch size (decoding and ``check_input`` guarantee the declared shapes), so it
preallocates one arena with liveness-based reuse, binds each node whose kernel has a native form to an
op record {op code, buffer addresses, dimensions, constants} and hands whole runs of records to
``opml_plan_run``. Every op kind has a record (GEMMs, convs, lookups, the float boundary, copies, casts,
reductions; ``_LOWERINGS``); a case a record does not take (a dtype, a broadcast, a bound) runs the node's
usual Python kernel between the C runs, with its result copied into its buffer, so every bundle runs.

Exactness: each record calls the same native kernel, with the same constants, that the node's Python
kernel calls (read from the prepared kernel itself, so nothing is packed twice), or one that computes
the same integers or float32 operations (copies, comparisons, ``quantize``'s divide-round-add, exact int64
sums under a checked bound); every path of every kernel is exact, so the bytes equal the per-node path's
at every batch, thread count and instruction set (``tests/opml/test_plan*.py``). Safety: every dimension
in a record is checked here against the buffers it points into; the C loop trusts the records; inputs
reach the arena only through ``engine.check_input``'s validated shapes (or its fast path's equal checks).
The only data-dependent refusals (NaN into ``quantize`` or a float-to-integer ``cast``, a ``gather`` index
out of range) stop the run, and the node's Python kernel then raises its named error.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import native
from .bundle import Bundle, Node, TensorSpec
from .errors import OpmlError
from .native import conv as native_conv
from .native import ops as native_ops
from .ops import REDUCE_MAX, REDUCE_MEAN, REDUCE_SUM
from .parallel import worker_count

RECORD_WORDS = 32  # plan.c's OPML_PLAN_REC
MAX_DIMS = 12  # plan.c's OPML_PLAN_MAX_DIMS
ALIGN = 64
MAX_ARENA_BYTES = 1 << 26  # larger plans (huge batches) keep the per-node path

OP_GEMM, OP_MATMUL, OP_SOFTMAX, OP_LAYERNORM, OP_LUT8, OP_PAIR_LUT8, OP_TRANSPOSE, OP_MAXPOOL, OP_CONV = range(1, 10)
OP_QUANTIZE, OP_DEQUANTIZE, OP_CONCAT, OP_GATHER, OP_CAST, OP_ARGMAX, OP_GCONV, OP_LUT_WIDE, OP_ADD_WIDE = range(10, 19)
OP_PAIR_BCAST, OP_REDUCE, OP_AVGPOOL, OP_WHERE, OP_TRANSPOSE2D, OP_QCONV = 19, 20, 21, 22, 23, 24
SAFE = 1 << 62  # the bound on |sum * mult| + divisor under which reduce and avgpool are exact int64 arithmetic
DATA_ERROR = -2  # plan.c's PLAN_DATA_ERROR: an input the node's Python kernel rejects with a named error

# plan.c's KIND_* element kinds, by numpy dtype
_KIND = {np.dtype(t): k for k, t in enumerate((np.int8, np.uint8, np.int16, np.int32, np.int64, np.float32,
                                                np.bool_))}
_INT_KINDS = frozenset(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_))

_BYTE = (np.dtype(np.int8), np.dtype(np.uint8))
_LIB = native.library()


def _declare() -> bool:
    if _LIB is None:
        return False
    try:
        _LIB.opml_plan_record_words.restype = ctypes.c_int64
        _LIB.opml_plan_run.restype = ctypes.c_int64
        _LIB.opml_plan_run.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p]
    except AttributeError:  # a library built before plan.c
        return False
    return int(_LIB.opml_plan_record_words()) == RECORD_WORDS


_READY = _declare()
_RUN = _LIB.opml_plan_run if _READY and _LIB is not None else None
_THREAD_ARGS: dict[int, ctypes.c_int] = {}


def _threads(n: int) -> ctypes.c_int:
    """``n`` as a ctypes argument (made once per count: a conversion per call costs about 0.4 us)."""
    arg = _THREAD_ARGS.get(n)
    if arg is None:
        arg = _THREAD_ARGS[n] = ctypes.c_int(n)
    return arg


def available() -> bool:
    """Whether the native library with the plan loop is loaded."""
    return _READY


def _closure(fn: object) -> dict[str, object]:
    """The variables a prepared kernel (a closure) captured: its native objects and constants."""
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None) or ()
    out: dict[str, object] = {}
    for name, cell in zip(code.co_freevars if code is not None else (), cells, strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            pass
    return out


# ------------------------------------------------------------------------------------------ lowering


@dataclass
class _Lowered:
    """A node's native form: its record (addresses filled in later) and the scratch buffers it needs."""

    op: int
    # ints, or placeholders: ("buf", input) / ("out", output) / ("at", input, byte offset) / ("scratch", i) /
    # ("arr", array) / ("table", words): an int64 array of more such words, for records of variable length
    words: list[object]
    scratch: list[int] = field(default_factory=list)  # bytes of each scratch buffer
    keep: list[object] = field(default_factory=list)  # objects the record's constants live in


def _buf(i: int) -> tuple[str, int]:
    return ("buf", i)


Shape = tuple[int, ...]


def _lower(node: Node, kernel: object, specs: Sequence[TensorSpec], shapes: dict[int, Shape]) -> _Lowered | None:
    """The record of one node at the plan's shapes, or None when it runs its Python kernel: no native
    form, a case the native kernel does not take, or shapes the kernel would reject (it raises then)."""
    if len(node.outputs) != 1:
        return None
    cv = _closure(kernel)
    cv["_ins"], cv["_out"] = [specs[i] for i in node.inputs], specs[node.outputs[0]]  # (for lowerings by the spec)
    ins = [shapes[i] for i in node.inputs]
    dts = [specs[i].dtype.np for i in node.inputs]
    out_shape, out_dtype = shapes[node.outputs[0]], specs[node.outputs[0]].dtype.np
    lower = _LOWERINGS.get(node.op)
    if lower is None:
        return None
    low = lower(node, cv, ins, dts)
    if low is None:
        return None
    shape, dtype, lowered = low
    if tuple(shape) != out_shape or np.dtype(dtype) != out_dtype:
        return None  # the Python kernel runs and its guard raises ShapeMismatchError
    return lowered


Lowering = tuple[Shape, np.dtype, _Lowered]


def _lower_linear(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    fast = cv.get("fast")
    if not isinstance(fast, native.Gemm) or dts[0] != fast.x_dtype or not ins[0] or ins[0][-1] != fast.w.k:
        return None
    lead = ins[0][:-1]
    return lead + (fast.w.n,), fast.ep.dtype, _Lowered(OP_GEMM, [("arr", fast.cfg), _buf(0), math.prod(lead),
                                                                  ("out", 0)], keep=[fast])


def _lower_matmul(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    fast = cv.get("fast_mm")
    a, b = ins
    if not isinstance(fast, native.MatMul) or (dts[0], dts[1]) != (fast.a_dtype, fast.b_dtype):
        return None
    if len(a) < 2 or len(b) < 2 or a[-1] != b[-2] or a[:-2] != b[:-2] or _LIB is None:
        return None
    if a[-1] > int(_LIB.opml_qgemm_max_k()):
        return None
    m, k, n = a[-2], a[-1], b[-1]
    return a[:-2] + (m, n), fast.out_dtype, _Lowered(OP_MATMUL, [("arr", fast.cfg), _buf(0), _buf(1),
                                                                  math.prod(a[:-2]), m, k, n, ("out", 0)], keep=[fast])


def _lower_softmax(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    fast, axis = cv.get("fast"), cv.get("axis")
    x = ins[0]
    if not isinstance(fast, native_ops.Softmax) or not fast.ok or dts[0] not in _BYTE or not x or _LIB is None:
        return None
    if axis not in (-1, len(x) - 1) or math.prod(x) == 0 or not _LIB.opml_softmax_ok(x[-1], fast.tmax):
        return None
    rec = [_buf(0), int(dts[0] == np.int8), math.prod(x) // x[-1], x[-1], ("arr", fast.table), fast.zp, fast.lo,
           fast.hi, ("out", 0)]
    return x, fast.out_dtype, _Lowered(OP_SOFTMAX, rec, keep=[fast])


# layernorm input kinds and |x| bounds: int16 by its dtype's bound (the Python kernel passes the data's own, which
# may fit where this does not; every path of the kernel is exact, so the bound only decides whether it runs)
_XKIND = {np.dtype(np.int8): (0, 128), np.dtype(np.uint8): (1, 255), np.dtype(np.int16): (2, 32768)}


def _lower_layernorm(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    fast = cv.get("fast")
    x = ins[0]
    if not isinstance(fast, native_ops.LayerNorm) or not fast.ok or dts[0] not in _XKIND or not x:
        return None
    n = x[-1]
    gb = fast._params(n) if math.prod(x) else None
    kind, xmax = _XKIND[dts[0]]
    if gb is None or not fast._fits(n, xmax):
        return None
    rec = [_buf(0), kind, xmax, math.prod(x) // n, n, ("arr", gb[0]), ("arr", gb[1]), fast.eps, fast.frac, fast.g,
           fast.mult, fast.shift, fast.zp, fast.qmin, fast.qmax, ("out", 0)]
    return x, fast.out_dtype, _Lowered(OP_LAYERNORM, rec, keep=[fast, gb])


def _lower_lut(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    table = cv.get("by_byte")
    if (not isinstance(table, np.ndarray) or table.shape != (256,) or not table.flags.c_contiguous
            or dts[0] not in _BYTE):
        return None
    if table.dtype not in _BYTE:  # a wider table (int16/int32/... values): the same gather, any item size
        rec = [("arr", table), _buf(0), ("out", 0), math.prod(ins[0]), table.dtype.itemsize]
        return ins[0], table.dtype, _Lowered(OP_LUT_WIDE, rec, keep=[table])
    return ins[0], table.dtype, _Lowered(OP_LUT8, [("arr", table), _buf(0), ("out", 0), math.prod(ins[0])],
                                          keep=[table])


def _lower_pair(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    table = cv.get("table")
    if (not isinstance(table, np.ndarray) or table.dtype not in _BYTE or table.shape != (65536,)
            or not table.flags.c_contiguous or dts[0] not in _BYTE or dts[1] not in _BYTE):
        return None
    a, b = ins
    if a == b:
        shape, na, nb = a, math.prod(a), math.prod(a)
    else:
        try:
            shape = tuple(np.broadcast_shapes(a, b))
        except ValueError:
            return None
        pa, pb = native_ops._period(a, shape), native_ops._period(b, shape)
        if pa is None or pb is None:
            return _pair_bcast(table, a, b, shape)
        na, nb = pa, pb
    count = math.prod(shape)
    if count and (na < 1 or nb < 1):
        return None
    rec = [("arr", table), _buf(0), na, _buf(1), nb, ("out", 0), count]
    return shape, table.dtype, _Lowered(OP_PAIR_LUT8, rec, keep=[table])


_WIDE_KIND = {np.dtype(np.int8): 0, np.dtype(np.uint8): 1, np.dtype(np.int16): 2}  # pointwise.c's add_wide kinds


def _lower_add(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    """A byte add by its pair table, else the int16 (wide) add under the bounds opml_add_wide checks (the Python
    kernel runs the same native call when they hold, its int64 numpy formula otherwise: the same integers)."""
    if isinstance(cv.get("table"), np.ndarray):
        return _lower_pair(node, cv, ins, dts)
    out = cv["_out"]
    za, zb = cv["_ins"][0].zero_point, cv["_ins"][1].zero_point  # type: ignore[index]
    am, bm, shift = node.iattr("a_mult"), node.iattr("b_mult"), node.iattr("shift")
    qmin, qmax = node.iattr("qmin"), node.iattr("qmax")
    if not isinstance(out, TensorSpec) or out.dtype.np not in _WIDE_KIND or any(d not in _WIDE_KIND for d in dts):
        return None
    zo, info = out.zero_point, np.iinfo(out.dtype.np)
    lim, mlim = 1 << 20, 1 << 40
    if not 1 <= shift <= 62 or max(abs(za), abs(zb), abs(zo)) > lim or max(abs(am), abs(bm)) >= mlim:
        return None
    if not info.min <= qmin <= qmax <= info.max:
        return None
    if (abs(za) + 32768) * abs(am) + (abs(zb) + 32768) * abs(bm) + (1 << (shift - 1)) >= SAFE:
        return None
    a, b = ins
    if a == b:
        shape, na, nb = a, math.prod(a), math.prod(b)
    else:
        try:
            shape = tuple(np.broadcast_shapes(a, b))
        except ValueError:
            return None
        pa, pb = native_ops._period(a, shape), native_ops._period(b, shape)
        if pa is None or pb is None:
            return None
        na, nb = pa, pb
    if math.prod(shape) > 0 and (na < 1 or nb < 1):
        return None
    rec = [_buf(0), _WIDE_KIND[dts[0]], na, _buf(1), _WIDE_KIND[dts[1]], nb, za, zb, am, bm, shift, zo, qmin, qmax,
           ("out", 0), _WIDE_KIND[out.dtype.np], math.prod(shape)]
    return shape, out.dtype.np, _Lowered(OP_ADD_WIDE, rec)


def _pair_bcast(table: np.ndarray, a: Shape, b: Shape, shape: Shape) -> Lowering | None:
    """The pair lookup under general broadcasting: the output split into outer dimensions and the largest
    inner block in which both operands repeat with a period (``_period``), one native lookup per block."""
    nd = len(shape)
    a4, b4 = (1,) * (nd - len(a)) + a, (1,) * (nd - len(b)) + b
    for k in range(nd + 1):
        pa, pb = native_ops._period(a4[k:], shape[k:]), native_ops._period(b4[k:], shape[k:])
        if pa is not None and pb is not None:
            break
    else:
        return None
    if k > MAX_DIMS // 2 or (math.prod(shape) > 0 and (pa < 1 or pb < 1)):
        return None
    sa, sb = _c_strides(a4), _c_strides(b4)
    astr = [0 if a4[d] == 1 else sa[d] for d in range(k)]
    bstr = [0 if b4[d] == 1 else sb[d] for d in range(k)]
    rec = [("arr", table), _buf(0), _buf(1), ("out", 0), math.prod(shape[k:]), pa, pb, k, *shape[:k], *astr, *bstr]
    return shape, table.dtype, _Lowered(OP_PAIR_BCAST, rec, keep=[table])


def _c_strides(shape: Shape) -> list[int]:
    strides, step = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = step
        step *= shape[d]
    return strides


def _lower_transpose(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    perm, x = cv.get("perm"), ins[0]
    if not isinstance(perm, tuple) or sorted(perm) != list(range(len(x))) or not 1 <= len(x) <= MAX_DIMS:
        return None
    st = _c_strides(x)
    shape = tuple(x[p] for p in perm)
    low = _strided_copy(0, shape, [st[p] for p in perm], dts[0].itemsize)
    return None if low is None else (shape, dts[0], low)


def _window_geometry(node: Node, x: Shape) -> tuple[int, ...] | None:
    """kh, kw, sh, sw, dh, dw, top, left, hp, wp, oh, ow of a pooling or conv window over a 4-D input."""
    if len(x) != 4:
        return None
    if node.op == "conv":
        kh = kw = 0  # filled by the caller
    else:
        kh, kw = node.attr("kernel")
    strides = node.attr("strides")
    dil = node.attr("dilations") if "dilations" in node.schema.attrs else (1, 1)
    pads = node.attr("pads")
    if len(strides) != 2 or len(dil) != 2 or len(pads) != 4 or min(strides) < 1 or min(dil) < 1 or min(pads) < 0:
        return None
    hp, wp = x[2] + pads[0] + pads[2], x[3] + pads[1] + pads[3]
    return kh, kw, strides[0], strides[1], dil[0], dil[1], pads[0], pads[1], hp, wp


def _out_hw(hp: int, wp: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int) -> tuple[int, int]:
    return (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1


def _lower_maxpool(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    x = ins[0]
    g = _window_geometry(node, x)
    if g is None or dts[0] not in _BYTE or min(g[:2]) < 1:
        return None
    kh, kw, sh, sw, dh, dw, top, left, hp, wp = g
    oh, ow = _out_hw(hp, wp, kh, kw, sh, sw, dh, dw)
    if oh <= 0 or ow <= 0 or x[2] < 1 or x[3] < 1:
        return None
    rec = [_buf(0), x[0] * x[1], x[2], x[3], kh, kw, sh, sw, dh, dw, top, left, oh, ow, int(dts[0] == np.int8),
           ("out", 0)]
    return (x[0], x[1], oh, ow), dts[0], _Lowered(OP_MAXPOOL, rec)


def _lower_qconv(node: Node, cv: dict[str, object], x: Shape, dts: list[np.dtype], gemm: native.Gemm
                 ) -> Lowering | None:
    """The group-1 conv as kernels.prepare_conv runs it when its GEMM has the NCHW entry (``Gemm.conv_nchw``,
    qconv.c's ``opml_qconv_nchw``: no layout change or im2col in Python)."""
    kh, kw = cv.get("kh"), cv.get("kw")
    if not hasattr(gemm, "conv_nchw") or not hasattr(_LIB, "opml_qconv_nchw") or _LIB is None:
        return None
    if not isinstance(kh, int) or not isinstance(kw, int) or len(x) != 4 or dts[0] != gemm.x_dtype:
        return None
    g = _window_geometry(node, x)
    zp = cv["_ins"][0].zero_point  # type: ignore[index]
    if g is None or kh < 1 or kw < 1 or kh * kw * x[1] != gemm.w.k or gemm.w.k > int(_LIB.opml_qgemm_max_k()):
        return None
    _, _, sh, sw, dh, dw, top, left, hp, wp = g
    oh, ow = _out_hw(hp, wp, kh, kw, sh, sw, dh, dw)
    if oh <= 0 or ow <= 0 or min(x[1:]) < 1 or not -128 <= zp <= 255:
        return None
    rec = [("arr", gemm.cfg), _buf(0), x[0], x[1], x[2], x[3], top, left, hp, wp, zp, kh, kw, sh, sw, dh, dw,
           ("out", 0)]
    return (x[0], gemm.w.n, oh, ow), gemm.ep.dtype, _Lowered(OP_QCONV, rec, keep=[gemm])


def _lower_conv(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    fast, x = cv.get("fast"), ins[0]
    direct = cv.get("direct")
    if isinstance(direct, native_conv.GroupConv) and dts[0] == direct.x_dtype and len(x) == 4 and x[1] == direct.c:
        oh, ow = direct.out_hw(x[2], x[3])  # (kernels.prepare_conv runs the direct conv when these are positive)
        if oh <= 0 or ow <= 0 or x[2] < 1 or x[3] < 1:
            return None
        rec = [("arr", direct.cfg), _buf(0), x[0], x[2], x[3], ("out", 0)]
        return (x[0], direct.m, oh, ow), direct.ep.dtype, _Lowered(OP_GCONV, rec, keep=[direct])
    if not isinstance(fast, list) or len(fast) != 1 or not isinstance(fast[0], native.Gemm):
        return None
    gemm = fast[0]
    qconv = _lower_qconv(node, cv, x, dts, gemm)
    if qconv is not None:
        return qconv
    kh, kw, cg, m = cv.get("kh"), cv.get("kw"), cv.get("cg"), cv.get("m")
    g = _window_geometry(node, x)
    if g is None or dts[0] != gemm.x_dtype or not all(isinstance(v, int) for v in (kh, kw, cg, m)):
        return None
    assert isinstance(kh, int) and isinstance(kw, int) and isinstance(cg, int) and isinstance(m, int)
    _, _, sh, sw, dh, dw, top, left, hp, wp = g
    if x[1] != cg or kh < 1 or kw < 1 or gemm.w.k != kh * kw * cg or gemm.w.n != m:
        return None
    oh, ow = _out_hw(hp, wp, kh, kw, sh, sw, dh, dw)
    if oh <= 0 or ow <= 0:
        return None
    zp = int(cv["x_spec"].zero_point) if hasattr(cv.get("x_spec"), "zero_point") else None  # type: ignore[attr-defined]
    info = np.iinfo(gemm.x_dtype)
    if zp is None or not info.min <= zp <= info.max:
        return None
    b, size = x[0], gemm.ep.dtype.itemsize
    rows = b * oh * ow
    rec = [_buf(0), b, cg, x[2], x[3], top, left, hp, wp, zp & 0xFF, kh, kw, sh, sw, dh, dw, oh, ow,
           ("scratch", 0), ("scratch", 1), ("arr", gemm.cfg), ("scratch", 2), ("out", 0), m, size]
    scratch = [b * hp * wp * cg, rows * kh * kw * cg, rows * m * size]
    return (b, m, oh, ow), gemm.ep.dtype, _Lowered(OP_CONV, rec, scratch, keep=[gemm])


def _f32_bits(v: object) -> int | None:
    if not isinstance(v, np.floating):
        return None
    return int(np.asarray(v, dtype=np.float32).view(np.uint32))


def _lower_quantize(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    """clip(rint(x / scale) + zp) in float32 (kernels.prepare_quantize), from the output's spec."""
    out = cv["_out"]
    if not isinstance(out, TensorSpec) or dts[0] != np.float32 or out.dtype.np not in _BYTE:
        return None
    dt = out.dtype.np
    info = np.iinfo(dt)
    scale, zp = _f32_bits(np.float32(out.scale)), _f32_bits(np.float32(out.zero_point))
    assert scale is not None and zp is not None
    rec = [_buf(0), ("out", 0), math.prod(ins[0]), scale, zp, int(info.min), int(info.max), int(dt == np.int8)]
    return ins[0], dt, _Lowered(OP_QUANTIZE, rec)


def _lower_dequantize(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    """float32(x - zp) * scale (kernels.prepare_dequantize), from the input's spec."""
    src = cv["_ins"][0]  # type: ignore[index]
    if not isinstance(src, TensorSpec) or dts[0] not in _INT_KINDS or dts[0] == np.bool_:
        return None
    zp, scale = src.zero_point, _f32_bits(np.float32(src.scale))
    if abs(zp) >= 1 << 62 or scale is None:
        return None
    rec = [_buf(0), _KIND[dts[0]], ("out", 0), math.prod(ins[0]), zp, scale]
    return ins[0], np.dtype(np.float32), _Lowered(OP_DEQUANTIZE, rec)


def _lower_concat(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    axis = cv.get("axis")
    first = ins[0]
    if not isinstance(axis, int) or not first or not -len(first) <= axis < len(first) or len(set(dts)) != 1:
        return None
    axis %= len(first)
    if any(len(x) != len(first) or x[:axis] != first[:axis] or x[axis + 1 :] != first[axis + 1 :] for x in ins):
        return None
    shape = first[:axis] + (sum(x[axis] for x in ins),) + first[axis + 1 :]
    size = dts[0].itemsize
    table: list[object] = []
    for k, x in enumerate(ins):
        table += [_buf(k), math.prod(x[axis:]) * size]
    return shape, dts[0], _Lowered(OP_CONCAT, [("out", 0), math.prod(first[:axis]), len(ins), ("table", table)])


def _strided_copy(x_off: int, shape: Shape, strides: Sequence[int], size: int) -> _Lowered | None:
    """The record that copies the view of input 0 at element offset ``x_off`` with ``shape`` and element ``strides``
    into the output (C order): dimensions of size 1 dropped and contiguous neighbours merged (a slice or transpose
    with a trailing unit dimension copies whole rows, not one byte per row); a batched matrix transpose of 1-, 2- or
    4-byte items by conv.c's tiled ``opml_transpose_batched``; else plan.c's strided copy."""
    total = math.prod(shape)
    dims = [(n, st) for n, st in zip(shape, strides, strict=True) if n != 1] if total else [(0, 1)]
    merged: list[tuple[int, int]] = []
    for n, st in dims:
        if merged and merged[-1][1] == st * n:  # the previous dimension steps over this one exactly
            merged[-1] = (merged[-1][0] * n, st)
        else:
            merged.append((n, st))
    if not merged:
        merged = [(1, 1)]
    at = ("at", 0, x_off * size if total else 0)
    if size in (1, 2, 4) and 2 <= len(merged) <= 3 and total:
        (a, sa), (b, sb) = merged[-2:]
        lead_ok = len(merged) == 2 or merged[0][1] == a * b
        if sa == 1 and sb == a and lead_ok and min(a, b) > 1:  # y[n, a, b] = x[n, b, a]
            count = merged[0][0] if len(merged) == 3 else 1
            return _Lowered(OP_TRANSPOSE2D, [at, ("out", 0), count, b, a, size])
    if len(merged) > MAX_DIMS:
        return None
    return _Lowered(OP_TRANSPOSE, [at, ("out", 0), size, len(merged), *(n for n, _ in merged),
                                   *(st for _, st in merged)])


def _lower_slice(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    starts, ends, steps = cv.get("starts"), cv.get("ends"), cv.get("steps")
    x = ins[0]
    if not all(isinstance(v, tuple) for v in (starts, ends, steps)) or not x:
        return None
    assert isinstance(starts, tuple) and isinstance(ends, tuple) and isinstance(steps, tuple)
    if not len(starts) == len(ends) == len(steps) or len(starts) > len(x) or 0 in steps:
        return None
    st = _c_strides(x)
    shape, strides, off = list(x), list(st), 0
    for d, (s, e, k) in enumerate(zip(starts, ends, steps, strict=True)):
        r = range(*slice(s, e if e >= 0 or k > 0 else None, k).indices(x[d]))  # (the kernel's slice)
        shape[d], strides[d] = len(r), st[d] * r.step
        off += r.start * st[d]
    low = _strided_copy(off, tuple(shape), strides, dts[0].itemsize)
    return None if low is None else (tuple(shape), dts[0], low)


def _lower_gather(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    axis = cv.get("axis")
    data, idx = ins
    if not isinstance(axis, int) or not -len(data) <= axis < len(data) or dts[1] not in _INT_KINDS:
        return None
    axis %= len(data)
    shape = data[:axis] + idx + data[axis + 1 :]
    if not data[axis] and math.prod(idx) > 0:
        return None  # (every index is out of range: the kernel raises)
    rec = [_buf(0), ("out", 0), math.prod(data[:axis]), data[axis], math.prod(data[axis + 1 :]) * dts[0].itemsize,
           _buf(1), math.prod(idx), _KIND[dts[1]]]
    return shape, dts[0], _Lowered(OP_GATHER, rec)


def _lower_cast(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    to = cv.get("to")
    if not isinstance(to, np.dtype) or to not in _KIND or dts[0] not in _KIND:
        return None
    return ins[0], to, _Lowered(OP_CAST, [_buf(0), _KIND[dts[0]], ("out", 0), _KIND[to], math.prod(ins[0])])


def _lower_argmax(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    axis, keep, last = cv.get("axis"), cv.get("keep"), cv.get("last")
    x = ins[0]
    if not isinstance(axis, int) or not x or not -len(x) <= axis < len(x) or dts[0] not in _INT_KINDS:
        return None
    axis %= len(x)
    if not x[axis]:
        return None  # (numpy raises on an empty axis)
    shape = x[:axis] + ((1,) if keep else ()) + x[axis + 1 :]
    rec = [_buf(0), _KIND[dts[0]], math.prod(x[:axis]), x[axis], math.prod(x[axis + 1 :]), ("out", 0), int(bool(last))]
    return shape, np.dtype(np.int64), _Lowered(OP_ARGMAX, rec)


def _lower_reshape(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    """A reshape that is not an alias (of a constant, or whose buffer cannot be shared): one copy of the bytes."""
    out, x_spec = cv.get("out"), cv.get("x_spec")
    if not isinstance(out, TensorSpec) or not isinstance(x_spec, TensorSpec):
        return None
    x = ins[0]
    batch = x[0] // -x_spec.shape[0] if x_spec.shape and x_spec.shape[0] < 0 else 1
    shape = tuple(out.concrete_shape(batch))
    n = math.prod(x) * dts[0].itemsize
    if math.prod(shape) != math.prod(x):
        return None
    return shape, dts[0], _Lowered(OP_TRANSPOSE, [("at", 0, 0), ("out", 0), 1, 1, n, 1])  # (one memcpy)


def _requant_ok(zp: object, ozp: object, mult: object, shift: object, terms: int, out: object) -> bool:
    """Whether clip(round_div(sum of ``terms`` (x - zp) * mult, count << shift) + ozp) is exact int64 arithmetic
    for byte ``x`` in numpy and in plan.c alike (no step wraps), with a byte output."""
    if not all(isinstance(v, int) for v in (zp, ozp, mult, shift)) or not isinstance(out, TensorSpec):
        return False
    assert isinstance(zp, int) and isinstance(ozp, int) and isinstance(mult, int) and isinstance(shift, int)
    if out.dtype.np not in _BYTE or not 0 <= shift < 40 or max(abs(zp), abs(ozp)) > 1 << 20 or terms >= 1 << 20:
        return False
    return terms * (abs(zp) + 255) * abs(mult) + (terms << shift) < SAFE


def _lower_reduce(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    """From the node's attributes and specs (the op's definition, which the Python kernel computes too)."""
    mode, axes, keep = node.iattr("mode"), node.attr("axes"), node.iattr("keepdims")
    x_spec, out = cv["_ins"][0], cv["_out"]  # type: ignore[index]
    x = ins[0]
    if not isinstance(axes, tuple) or not axes or not x or not isinstance(x_spec, TensorSpec):
        return None
    if not all(isinstance(a, int) and -len(x) <= a < len(x) for a in axes):
        return None
    ax = sorted(a % len(x) for a in axes)
    if ax != list(range(ax[0], ax[0] + len(ax))) or not math.prod(x):
        return None  # (non-adjacent axes, repeated ones, or an empty tensor: the Python kernel)
    outer, n, inner = math.prod(x[: ax[0]]), math.prod(x[ax[0] : ax[-1] + 1]), math.prod(x[ax[-1] + 1 :])
    shape = tuple(1 if d in ax else v for d, v in enumerate(x)) if keep else tuple(
        v for d, v in enumerate(x) if d not in ax)
    head = [_buf(0), _KIND.get(dts[0], -1), outer, n, inner]
    if mode == REDUCE_MAX:
        if dts[0] not in _INT_KINDS or dts[0] == np.bool_:
            return None
        rec = head + [1, 0, 0, 1, 0, 0, 0, ("out", 0), _KIND[dts[0]]]
        return shape, dts[0], _Lowered(OP_REDUCE, rec)
    mult, shift = node.iattr("mult"), node.iattr("shift")
    if mode not in (REDUCE_SUM, REDUCE_MEAN) or dts[0] not in _BYTE:
        return None
    zp, ozp = x_spec.zero_point, getattr(out, "zero_point", None)
    if not _requant_ok(zp, ozp, mult, shift, n, out):
        return None
    assert isinstance(out, TensorSpec) and isinstance(shift, int)
    lo, hi = np.iinfo(out.dtype.np).min, np.iinfo(out.dtype.np).max
    den = (n if mode == REDUCE_MEAN else 1) << shift
    rec = head + [0, zp, mult, den, ozp, int(lo), int(hi), ("out", 0), _KIND[out.dtype.np]]
    return shape, out.dtype.np, _Lowered(OP_REDUCE, rec)


def _axis_counts(size: int, k: int, stride: int, dil: int, pad: int, outs: int) -> list[int]:
    """For each output position along one axis: how many of its window's taps fall inside the input."""
    return [sum(0 <= o * stride + i * dil - pad < size for i in range(k)) for o in range(outs)]


def _lower_avgpool(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    """From the node's attributes and specs (the op's definition, which the Python kernel computes too)."""
    x, out, x_spec = ins[0], cv["_out"], cv["_ins"][0]  # type: ignore[index]
    g = _window_geometry(node, x)
    if g is None or dts[0] not in _BYTE or min(g[:2]) < 1 or not isinstance(out, TensorSpec):
        return None
    zp = x_spec.zero_point
    kh, kw, sh, sw, dh, dw, top, left, hp, wp = g
    oh, ow = _out_hw(hp, wp, kh, kw, sh, sw, dh, dw)
    mult, shift, incl = node.iattr("mult"), node.iattr("shift"), node.iattr("count_include_pad")
    if oh <= 0 or ow <= 0 or not _requant_ok(zp, out.zero_point, mult, shift, kh * kw, out):
        return None
    if not incl and (0 in _axis_counts(x[2], kh, sh, dh, top, oh) or 0 in _axis_counts(x[3], kw, sw, dw, left, ow)):
        return None  # a window entirely in the padding: the Python kernel raises
    info = np.iinfo(out.dtype.np)
    rec = [_buf(0), _KIND[dts[0]], x[0] * x[1], x[2], x[3], kh, kw, sh, sw, dh, dw, top, left, oh, ow, zp, mult, shift,
           out.zero_point, int(info.min), int(info.max), int(bool(incl)), ("out", 0), _KIND[out.dtype.np]]
    return (x[0], x[1], oh, ow), out.dtype.np, _Lowered(OP_AVGPOOL, rec)


_FLIP = np.arange(256, dtype=np.uint8) ^ np.uint8(0x80)


def _lower_flip_sign_bit(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    """byte ^ 0x80 (int8 <-> uint8 with the same offset value): a 256-entry lookup."""
    out = cv["_out"]
    if dts[0] not in _BYTE or not isinstance(out, TensorSpec) or out.dtype.np not in _BYTE:
        return None
    table = _FLIP.view(out.dtype.np)
    return ins[0], out.dtype.np, _Lowered(OP_LUT8, [("arr", table), _buf(0), ("out", 0), math.prod(ins[0])],
                                          keep=[table])


def _lower_where(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    """np.where(cond != 0, a, b) under numpy broadcasting, for a and b of one dtype (no promotion)."""
    if dts[0] not in _INT_KINDS or dts[1] != dts[2]:
        return None
    try:
        shape = tuple(np.broadcast_shapes(*ins))
    except ValueError:
        return None
    nd = len(shape)
    if nd > MAX_DIMS:
        return None
    table: list[object] = list(shape)
    for x in ins:
        x4 = (1,) * (nd - len(x)) + x
        st = _c_strides(x4)
        table += [0 if x4[d] == 1 else st[d] for d in range(nd)]
    rec = [_buf(0), _KIND[dts[0]], _buf(1), _buf(2), ("out", 0), dts[1].itemsize, nd, ("table", table)]
    return shape, dts[1], _Lowered(OP_WHERE, rec)


_LOWERINGS: dict[str, Callable[[Node, dict[str, object], list[Shape], list[np.dtype]], Lowering | None]] = {
    "linear": _lower_linear, "matmul": _lower_matmul, "softmax": _lower_softmax, "layernorm": _lower_layernorm,
    "lut": _lower_lut, "add": _lower_add, "mul": _lower_pair, "transpose": _lower_transpose,
    "maxpool": _lower_maxpool, "conv": _lower_conv, "quantize": _lower_quantize, "dequantize": _lower_dequantize,
    "concat": _lower_concat, "slice": _lower_slice, "gather": _lower_gather, "cast": _lower_cast,
    "argmax": _lower_argmax, "reshape": _lower_reshape, "reduce": _lower_reduce, "avgpool": _lower_avgpool,
    "where": _lower_where, "flip_sign_bit": _lower_flip_sign_bit,
}


# ---------------------------------------------------------------------------------------- the plan


RunNode = Callable[[int, list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class _Segment:
    """Consecutive native nodes: their records, run by one ``opml_plan_run`` call."""

    records: np.ndarray  # int64 [count, RECORD_WORDS]
    nodes: tuple[int, ...]  # the node index of each record (for messages)
    address_arg: ctypes.c_void_p = field(init=False)  # the records' address and count as ctypes arguments
    count_arg: ctypes.c_int64 = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address_arg", ctypes.c_void_p(int(self.records.ctypes.data)))
        object.__setattr__(self, "count_arg", ctypes.c_int64(int(self.records.shape[0])))


@dataclass(eq=False)
class BatchPlan:
    """A bundle prepared for one batch size: an arena holding every non-constant tensor (reused by
    liveness), the native records of the nodes that have them, and the Python nodes between them.
    One call at a time (``lock``); the engine runs the per-node path while it is busy."""

    bundle: Bundle
    batch: int
    steps: tuple[_Segment | int, ...]  # a run of native records, or the index of a Python node
    views: dict[int, np.ndarray]  # every non-constant tensor's buffer, in its shape and dtype
    consts: dict[int, np.ndarray]
    arena_bytes: int
    native_nodes: int
    keep: list[object]  # the arena and every array a record points into
    lock: threading.Lock = field(default_factory=threading.Lock)
    code: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))  # opml_plan_run's failure code
    code_arg: ctypes.c_void_p = field(init=False)
    outputs: list[np.ndarray] = field(init=False)  # the output buffers (or constants), copied out by run

    def __post_init__(self) -> None:
        self.code_arg = ctypes.c_void_p(int(self.code.ctypes.data))
        self.outputs = [self.consts[o] if o in self.consts else self.views[o] for o in self.bundle.outputs]

    def run(self, inputs: dict[int, np.ndarray], run_node: RunNode) -> list[np.ndarray]:
        """The outputs (fresh C-ordered arrays) for validated ``inputs`` (by tensor index, the declared
        shapes at this batch); ``run_node(j, args)`` runs node ``j``'s Python kernel with the engine's
        checks. The caller holds ``lock``."""
        views, consts, nodes = self.views, self.consts, self.bundle.nodes
        for i, v in inputs.items():
            np.copyto(views[i], v)
        run_c = _RUN
        assert run_c is not None
        threads = _threads(worker_count())
        code = self.code
        code_arg = self.code_arg
        for step in self.steps:
            if isinstance(step, _Segment):
                rc = run_c(step.address_arg, step.count_arg, threads, code_arg)
                if rc:
                    j = step.nodes[rc - 1]
                    if int(code[0]) == DATA_ERROR:  # the node's own kernel raises its named error
                        run_node(j, [consts[i] if i in consts else views[i] for i in nodes[j].inputs])
                    raise OpmlError(f"node {j} ({nodes[j].op} {nodes[j].name!r}): the native kernel refused the "
                                    "plan's record (a bug in opml/plan.py)")
            else:
                node = nodes[step]
                y = run_node(step, [consts[i] if i in consts else views[i] for i in node.inputs])
                np.copyto(views[node.outputs[0]], y)
        return [a.copy(order="C") for a in self.outputs]


def _first_fit(live: list[tuple[int, int]], size: int) -> int:
    """The lowest aligned offset where ``size`` bytes fit between the live blocks (sorted by offset)."""
    off = 0
    for start, length in live:
        if off + size <= start:
            return off
        off = max(off, -(-(start + length) // ALIGN) * ALIGN)
    return off


def _reshape_alias(node: Node, specs: Sequence[TensorSpec], shapes: dict[int, Shape]) -> bool:
    """Whether a reshape node's output can share its input's buffer: what its kernel returns (a view of
    the input in the declared output shape) and that shape's bytes are the same."""
    i, o = node.inputs[0], node.outputs[0]
    x_spec = specs[i]
    if x_spec.is_const or len(node.outputs) != 1 or specs[o].dtype != x_spec.dtype:
        return False
    x = shapes[i]
    batch = x[0] // -x_spec.shape[0] if x_spec.shape and x_spec.shape[0] < 0 else 1
    return specs[o].concrete_shape(batch) == shapes[o] and math.prod(shapes[o]) == math.prod(x)


def build(bundle: Bundle, kernels: Sequence[object], consts: dict[int, np.ndarray], batch: int) -> BatchPlan | None:
    """The plan of a prepared bundle at ``batch``; None when it would not help (the library or its plan
    loop absent, no node with a native form) or its arena would exceed :data:`MAX_ARENA_BYTES`."""
    specs = bundle.tensors
    if not _READY or any(specs[i].is_const for i in bundle.inputs):
        return None
    shapes = {i: tuple(s.concrete_shape(batch)) for i, s in enumerate(specs)}
    nodes = bundle.nodes
    store: dict[int, int] = {}  # tensor -> storage
    sizes: list[int] = []
    first: list[int] = []
    last: list[int] = []

    def new_storage(nbytes: int, t: int) -> int:
        sizes.append(max(nbytes, 1))
        first.append(t)
        last.append(t)
        return len(sizes) - 1

    def nbytes(i: int) -> int:
        return math.prod(shapes[i]) * specs[i].dtype.np.itemsize

    for i in bundle.inputs:
        if not specs[i].is_const and i not in store:
            store[i] = new_storage(nbytes(i), -1)
    lowered: list[_Lowered | None] = []
    aliases: set[int] = set()  # reshape nodes whose output shares its input's buffer
    scratch: dict[int, list[int]] = {}
    for j, (node, kernel) in enumerate(zip(nodes, kernels, strict=True)):
        low = None
        if node.op == "reshape" and _reshape_alias(node, specs, shapes) and node.inputs[0] in store:
            store[node.outputs[0]] = store[node.inputs[0]]
            aliases.add(j)
        else:
            low = _lower(node, kernel, specs, shapes)
            for o in node.outputs:
                if specs[o].is_const or o in store:
                    return None  # not SSA over non-constant tensors: keep the per-node path
                store[o] = new_storage(nbytes(o), j)
            if low is not None:
                scratch[j] = [new_storage(n, j) for n in low.scratch]
        lowered.append(low)
        for i in node.inputs:
            if i in store:
                last[store[i]] = max(last[store[i]], j)
    for o in bundle.outputs:
        if o in store:
            last[store[o]] = len(nodes)
    if not any(low is not None for low in lowered):
        return None
    # first fit in order of definition; a node's outputs are placed before its inputs are freed
    offsets = [0] * len(sizes)
    live: list[tuple[int, int]] = []
    order = sorted(range(len(sizes)), key=lambda s: (first[s], s))
    ends = sorted(range(len(sizes)), key=lambda s: (last[s], s))
    top, e = 0, 0
    for t in range(-1, len(nodes) + 1):
        for s in (s for s in order if first[s] == t):
            offsets[s] = _first_fit(live, sizes[s])
            live.append((offsets[s], sizes[s]))
            live.sort()
            top = max(top, offsets[s] + sizes[s])
        while e < len(ends) and last[ends[e]] <= t:
            live.remove((offsets[ends[e]], sizes[ends[e]]))
            e += 1
    if top > MAX_ARENA_BYTES:
        return None
    raw = np.zeros(top + ALIGN, dtype=np.uint8)
    base = (-raw.ctypes.data) % ALIGN
    arena = raw[base : base + top]
    views = {i: arena[offsets[s] : offsets[s] + nbytes(i)].view(specs[i].dtype.np).reshape(shapes[i])
             for i, s in store.items()}
    plan_consts = dict(consts)
    keep: list[object] = [raw, plan_consts]
    steps: list[_Segment | int] = []
    run: list[np.ndarray] = []
    run_nodes: list[int] = []
    isa = native.isa()

    def address(word: object, node: Node, j: int) -> int:
        if isinstance(word, int):
            return word
        assert isinstance(word, tuple)
        kind, v = word[:2]
        if kind == "table":
            table = np.array([address(w, node, j) for w in v], dtype=np.int64)
            keep.append(table)
            return int(table.ctypes.data)
        if kind in ("buf", "at"):
            i = node.inputs[v]
            a = plan_consts[i] if i in plan_consts else views[i]
            if kind == "at":  # an address inside the input (the lowering checked the offset)
                a = np.ascontiguousarray(a)
                keep.append(a)
                return int(a.ctypes.data) + word[2]
        elif kind == "out":
            a = views[node.outputs[v]]
        elif kind == "scratch":
            s = scratch[j][v]
            a = arena[offsets[s] : offsets[s] + sizes[s]]
        else:
            a = v
        assert isinstance(a, np.ndarray)
        a = np.ascontiguousarray(a)  # (a copy only for a constant stored otherwise)
        keep.append(a)
        return int(a.ctypes.data)

    def flush() -> None:
        if run:
            steps.append(_Segment(np.ascontiguousarray(np.stack(run)), tuple(run_nodes)))
            run.clear()
            run_nodes.clear()

    for j, (node, low) in enumerate(zip(nodes, lowered, strict=True)):
        if j in aliases:
            continue  # nothing to run
        if low is None:
            flush()
            steps.append(j)
            continue
        rec = np.zeros(RECORD_WORDS, dtype=np.int64)
        words = [low.op] + [address(w, node, j) for w in low.words]
        if len(words) >= RECORD_WORDS:
            raise AssertionError(f"plan record of {node.op} has {len(words)} words")
        rec[: len(words)] = words
        rec[RECORD_WORDS - 1] = isa
        keep.extend(low.keep)
        run.append(rec)
        run_nodes.append(j)
    flush()
    native_nodes = sum(low is not None for low in lowered)
    return BatchPlan(bundle, batch, tuple(steps), views, plan_consts, top, native_nodes, keep)
