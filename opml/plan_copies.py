"""The batch plan's records for data movement, casts and reductions (``opml/native/plan.c``): transpose, slice,
concat, gather, reshape copies, cast, argmax, where, reduce and avgpool. Lowerings as in ``opml/plan_records.py``
(which has the record layout); ``opml/plan.py`` builds and runs the plans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .bundle import Node, TensorSpec
from .ops import REDUCE_MAX, REDUCE_MEAN, REDUCE_SUM
from .plan_records import (
    _BYTE,
    _INT_KINDS,
    _KIND,
    MAX_DIMS,
    OP_ARGMAX,
    OP_AVGPOOL,
    OP_CAST,
    OP_CONCAT,
    OP_GATHER,
    OP_REDUCE,
    OP_TRANSPOSE,
    OP_TRANSPOSE2D,
    OP_WHERE,
    SAFE,
    Lower,
    Lowering,
    Shape,
    _buf,
    _c_strides,
    _Lowered,
    _out_hw,
    _window_geometry,
)


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


def _lower_transpose(node: Node, cv: dict[str, object], ins: list[Shape], dts: list[np.dtype]) -> Lowering | None:
    perm, x = cv.get("perm"), ins[0]
    if not isinstance(perm, tuple) or sorted(perm) != list(range(len(x))) or not 1 <= len(x) <= MAX_DIMS:
        return None
    st = _c_strides(x)
    shape = tuple(x[p] for p in perm)
    low = _strided_copy(0, shape, [st[p] for p in perm], dts[0].itemsize)
    return None if low is None else (shape, dts[0], low)


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


COPIES: dict[str, Lower] = {
    "transpose": _lower_transpose, "concat": _lower_concat, "slice": _lower_slice, "gather": _lower_gather,
    "cast": _lower_cast, "argmax": _lower_argmax, "reshape": _lower_reshape, "reduce": _lower_reduce,
    "avgpool": _lower_avgpool, "where": _lower_where,
}
