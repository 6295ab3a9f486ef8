"""The batch plan's op records (``opml/native/plan.c``): their layout constants and the lowerings of the compute
ops -- GEMMs, convs, softmax, layernorm, lookups, the float boundary (quantize, dequantize).

A lowering takes a node, the variables its prepared kernel captured (``cv``: the native objects and constants the
per-node path calls, so nothing is packed twice; ``cv["_ins"]`` / ``cv["_out"]`` are the input and output specs)
and the concrete input shapes and dtypes at the plan's batch size, and returns the output shape and dtype it
would produce with its record (:class:`_Lowered`), or None when the node keeps its Python kernel (a case the
native kernel does not take). Every dimension in a record is checked here; the C loop trusts it. The lowerings of
data movement, casts and reductions are in ``opml/plan_copies.py``; ``opml/plan.py`` builds and runs the plans.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import native
from .bundle import Node, TensorSpec
from .native import conv as native_conv
from .native import ops as native_ops

RECORD_WORDS = 32  # plan.c's OPML_PLAN_REC
MAX_DIMS = 12  # plan.c's OPML_PLAN_MAX_DIMS

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


_FLIP = np.arange(256, dtype=np.uint8) ^ np.uint8(0x80)


def _lower_flip_sign_bit(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    """byte ^ 0x80 (int8 <-> uint8 with the same offset value): a 256-entry lookup."""
    out = cv["_out"]
    if dts[0] not in _BYTE or not isinstance(out, TensorSpec) or out.dtype.np not in _BYTE:
        return None
    table = _FLIP.view(out.dtype.np)
    return ins[0], out.dtype.np, _Lowered(OP_LUT8, [("arr", table), _buf(0), ("out", 0), math.prod(ins[0])],
                                          keep=[table])


Lower = Callable[[Node, dict[str, object], list[Shape], list[np.dtype]], Lowering | None]
COMPUTE: dict[str, Lower] = {
    "linear": _lower_linear, "matmul": _lower_matmul, "softmax": _lower_softmax, "layernorm": _lower_layernorm,
    "lut": _lower_lut, "add": _lower_add, "mul": _lower_pair, "maxpool": _lower_maxpool, "conv": _lower_conv,
    "quantize": _lower_quantize, "dequantize": _lower_dequantize, "flip_sign_bit": _lower_flip_sign_bit,
}
