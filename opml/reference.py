"""The reference interpreter: the executable specification of every primitive op.

Arithmetic is done one element at a time on Python integers (unbounded, so any overflow in a fast
path shows up as a difference), following the formulas of ``docs/bundle.md`` literally. It is slow
and only meant for differential tests against ``opml.kernels``. Data-movement ops (reshape,
transpose, concat, slice, gather, argmax, cast, where, flip_sign_bit) have no arithmetic and share
the fast path's numpy definitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product

import numpy as np

from . import kernels_data
from .bundle import Bundle, DType, Node, TensorSpec, load_bundle
from .engine import check_input
from .errors import InferenceInputError, OpmlError

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
QRANGE = {DType.INT8: (-128, 127), DType.UINT8: (0, 255)}


def _clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v


def _rshift_round(v: int, s: int) -> int:
    return (v + (1 << (s - 1))) >> s


def _rdiv(n: int, d: int) -> int:
    return (2 * n + d) // (2 * d)


def requant(acc: int, mult: int, shift: int, zp: int, qmin: int, qmax: int) -> int:
    """The requantization rule: saturate to int32, fixed-point multiply, round, offset, clamp."""
    return _clamp(zp + _rshift_round(_clamp(acc, I32_MIN, I32_MAX) * mult, shift), qmin, qmax)


def _ints(a: np.ndarray) -> list:
    return a.astype(np.int64).tolist()


def _per_channel(a: np.ndarray, c: int) -> int:
    return int(a[c] if a.size > 1 else a.reshape(-1)[0])


def ref_quantize(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    out = specs[node.outputs[0]]
    lo, hi = QRANGE[out.dtype]
    y = np.empty(x.shape, dtype=out.dtype.np)
    scale, zp = np.float32(out.scale), np.float32(out.zero_point)
    for i in np.ndindex(x.shape):
        v = np.float32(x[i])
        if v != v:
            raise InferenceInputError("input contains NaN")
        q = np.float32(np.rint(np.float32(v / scale))) + zp
        y[i] = int(max(min(q, np.float32(hi)), np.float32(lo)))
    return y


def ref_dequantize(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    s = specs[node.inputs[0]]
    y = np.empty(x.shape, dtype=np.float32)
    for i in np.ndindex(x.shape):
        y[i] = np.float32(int(x[i]) - s.zero_point) * np.float32(s.scale)
    return y


def _finish(node: Node, out: TensorSpec, acc: int, c: int, specs: Sequence[TensorSpec]) -> int:
    if out.dtype == DType.INT32:
        return _clamp(acc, I32_MIN, I32_MAX)
    mult = _per_channel(specs[node.inputs[3]].array(), c)
    shift = _per_channel(specs[node.inputs[4]].array(), c)
    return requant(acc, mult, shift, out.zero_point, node.iattr("qmin"), node.iattr("qmax"))


def ref_linear(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    out = specs[node.outputs[0]]
    w, bias = specs[node.inputs[1]].array(), specs[node.inputs[2]].array()
    zp = specs[node.inputs[0]].zero_point
    k, n = w.shape
    rows = x.reshape(-1, k)
    wl, bl = _ints(w), _ints(bias)
    y = np.empty((rows.shape[0], n), dtype=out.dtype.np)
    for r, row in enumerate(_ints(rows)):
        for c in range(n):
            acc = sum((row[i] - zp) * wl[i][c] for i in range(k)) + bl[c]
            y[r, c] = _finish(node, out, acc, c, specs)
    return y.reshape(x.shape[:-1] + (n,))


def ref_conv(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    out = specs[node.outputs[0]]
    w, bias = specs[node.inputs[1]].array(), specs[node.inputs[2]].array()
    zp = specs[node.inputs[0]].zero_point
    pt, pl, pb, pr = node.attr("pads")
    sh, sw = node.attr("strides")
    dh, dw = node.attr("dilations")
    group = node.iattr("group")
    b, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    xl, wl, bl = _ints(x), _ints(w), _ints(bias)
    y = np.empty((b, m, oh, ow), dtype=out.dtype.np)
    for n, oc, oy, ox in product(range(b), range(m), range(oh), range(ow)):
        g = oc // (m // group)
        acc = bl[oc]
        for ic, ky, kx in product(range(cg), range(kh), range(kw)):
            iy, ix = oy * sh + ky * dh - pt, ox * sw + kx * dw - pl
            v = xl[n][g * cg + ic][iy][ix] if 0 <= iy < h and 0 <= ix < wd else zp
            acc += (v - zp) * wl[oc][ic][ky][kx]
        y[n, oc, oy, ox] = _finish(node, out, acc, oc, specs)
    return y


def ref_matmul(node: Node, specs: Sequence[TensorSpec], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = specs[node.outputs[0]]
    za, zb = specs[node.inputs[0]].zero_point, specs[node.inputs[1]].zero_point
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a2, b2 = np.broadcast_to(a, batch + a.shape[-2:]), np.broadcast_to(b, batch + b.shape[-2:])
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    y = np.empty(batch + (m, n), dtype=out.dtype.np)
    for bi in np.ndindex(batch):
        al, bl = _ints(a2[bi]), _ints(b2[bi])
        for i, j in product(range(m), range(n)):
            acc = sum((al[i][t] - za) * (bl[t][j] - zb) for t in range(k))
            if out.dtype == DType.INT32:
                y[bi + (i, j)] = _clamp(acc, I32_MIN, I32_MAX)
            else:
                y[bi + (i, j)] = requant(acc, node.iattr("mult"), node.iattr("shift"), out.zero_point,
                                         node.iattr("qmin"), node.iattr("qmax"))
    return y


def _binary(node: Node, specs: Sequence[TensorSpec], a: np.ndarray, b: np.ndarray, f) -> np.ndarray:
    out = specs[node.outputs[0]]
    za, zb = specs[node.inputs[0]].zero_point, specs[node.inputs[1]].zero_point
    a2, b2 = np.broadcast_arrays(a, b)
    y = np.empty(a2.shape, dtype=out.dtype.np)
    for i in np.ndindex(a2.shape):
        y[i] = f(int(a2[i]) - za, int(b2[i]) - zb, out.zero_point)
    return y


def ref_add(node: Node, specs: Sequence[TensorSpec], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    am, bm, s = node.iattr("a_mult"), node.iattr("b_mult"), node.iattr("shift")
    lo, hi = node.iattr("qmin"), node.iattr("qmax")
    return _binary(node, specs, a, b, lambda x, y, zp: _clamp(zp + _rshift_round(x * am + y * bm, s), lo, hi))


def ref_mul(node: Node, specs: Sequence[TensorSpec], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m, s, lo, hi = (node.iattr(k) for k in ("mult", "shift", "qmin", "qmax"))
    return _binary(node, specs, a, b, lambda x, y, zp: requant(x * y, m, s, zp, lo, hi))


def ref_lut(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    table = _ints(specs[node.inputs[1]].array())
    off = 128 if specs[node.inputs[0]].dtype == DType.INT8 else 0
    out = specs[node.outputs[0]]
    y = np.empty(x.shape, dtype=out.dtype.np)
    for i in np.ndindex(x.shape):
        y[i] = table[int(x[i]) + off]
    return y


def _rows(x: np.ndarray, axis: int) -> tuple[np.ndarray, list]:
    moved = np.moveaxis(x, axis, -1)
    return moved, _ints(moved.reshape(-1, moved.shape[-1]))


def ref_softmax(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    out = specs[node.outputs[0]]
    lo, hi = QRANGE[out.dtype]
    table = _ints(specs[node.inputs[1]].array())
    axis = node.iattr("axis")
    moved, rows = _rows(x, axis)
    res = []
    for row in rows:
        mx = max(row)
        e = [table[mx - v] for v in row]
        s = max(sum(e), 1)
        res.append([_clamp((512 * ei + s) // (2 * s) + out.zero_point, lo, hi) for ei in e])
    return np.moveaxis(np.array(res, dtype=out.dtype.np).reshape(moved.shape), -1, axis)


def ref_layernorm(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    from .kernels import LAYERNORM_SQRT_BITS as g

    out = specs[node.outputs[0]]
    gamma, beta = _ints(specs[node.inputs[1]].array()), _ints(specs[node.inputs[2]].array())
    eps, frac, mult, shift, lo, hi = (node.iattr(k) for k in ("eps", "frac_bits", "mult", "shift", "qmin", "qmax"))
    _, rows = _rows(x, -1)
    res = []
    for row in rows:
        n = len(row)
        total = sum(row)
        d = [n * v - total for v in row]
        v = sum(t * t for t in d)
        denom = max(math.isqrt(((v // n) << (2 * g)) + eps), 1)
        z = [_rdiv(t << (frac + g), denom) for t in d]
        res.append([requant(z[c] * gamma[c] + beta[c], mult, shift, out.zero_point, lo, hi) for c in range(n)])
    return np.array(res, dtype=out.dtype.np).reshape(x.shape)


def _windows(node: Node, x: np.ndarray):
    kh, kw = node.attr("kernel")
    pt, pl, pb, pr = node.attr("pads")
    sh, sw = node.attr("strides")
    dh, dw = node.attr("dilations") if "dilations" in node.schema.attrs else (1, 1)
    b, c, h, w = x.shape
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    xl = _ints(x)
    for n, ch, oy, ox in product(range(b), range(c), range(oh), range(ow)):
        vals = []
        for ky, kx in product(range(kh), range(kw)):
            iy, ix = oy * sh + ky * dh - pt, ox * sw + kx * dw - pl
            vals.append(xl[n][ch][iy][ix] if 0 <= iy < h and 0 <= ix < w else None)
        yield (n, ch, oy, ox), vals, (b, c, oh, ow)


def ref_maxpool(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    lo = QRANGE[specs[node.inputs[0]].dtype][0]
    res, shape = {}, None
    for idx, vals, shape in _windows(node, x):  # noqa: B007  (shape is used after the loop)
        res[idx] = max(lo if v is None else v for v in vals)
    assert shape is not None, "a pooling output has at least one window"
    y = np.empty(shape, dtype=x.dtype)
    for idx, v in res.items():
        y[idx] = v
    return y


def ref_avgpool(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    out = specs[node.outputs[0]]
    zp = specs[node.inputs[0]].zero_point
    lo, hi = QRANGE[out.dtype]
    mult, shift, inc = node.iattr("mult"), node.iattr("shift"), node.iattr("count_include_pad")
    res, shape = {}, None
    for idx, vals, shape in _windows(node, x):  # noqa: B007  (shape is used after the loop)
        acc = sum(v - zp for v in vals if v is not None)
        cnt = len(vals) if inc else sum(v is not None for v in vals)
        if cnt == 0:
            raise OpmlError("avgpool: a window lies entirely in the padding (count 0)")
        res[idx] = _clamp(_rdiv(acc * mult, cnt << shift) + out.zero_point, lo, hi)
    assert shape is not None, "a pooling output has at least one window"
    y = np.empty(shape, dtype=out.dtype.np)
    for idx, v in res.items():
        y[idx] = v
    return y


def ref_reduce(node: Node, specs: Sequence[TensorSpec], x: np.ndarray) -> np.ndarray:
    out = specs[node.outputs[0]]
    zp = specs[node.inputs[0]].zero_point
    mode, axes, keep = node.iattr("mode"), node.attr("axes"), bool(node.iattr("keepdims"))
    mult, shift = node.iattr("mult"), node.iattr("shift")
    rest = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, rest + list(axes))
    outer = moved.shape[: len(rest)]
    flat = _ints(moved.reshape(int(np.prod(outer, dtype=np.int64)), -1))
    vals = []
    for row in flat:
        if mode == 3:
            vals.append(max(row))
            continue
        c = [v - zp for v in row]
        acc = math.isqrt(sum(t * t for t in c)) if mode == 2 else sum(c)
        cnt = len(row) if mode == 1 else 1
        lo, hi = QRANGE[out.dtype]
        vals.append(_clamp(_rdiv(acc * mult, cnt << shift) + out.zero_point, lo, hi))
    y = np.array(vals, dtype=out.dtype.np).reshape(outer)
    if keep:
        y = y.reshape([1 if a in axes else x.shape[a] for a in range(x.ndim)])
    return y


def run_reference(bundle: Bundle | bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run a bundle with the reference semantics (slow; for tests)."""
    b = load_bundle(bundle)
    env: dict[int, np.ndarray] = {}
    for idx, spec, v in zip(b.inputs, b.input_specs(), inputs, strict=True):
        env[idx] = check_input(spec, v)[0]
    for node in b.nodes:
        args = [env[i] if i in env else b.tensors[i].array() for i in node.inputs]
        fn = globals().get("ref_" + node.op)
        if fn is not None:
            if node.op in ("matmul", "add", "mul"):
                env[node.outputs[0]] = fn(node, b.tensors, args[0], args[1])
            else:
                env[node.outputs[0]] = fn(node, b.tensors, args[0])
        else:
            prep = getattr(kernels_data, "prepare_" + node.op)
            env[node.outputs[0]] = prep(node, b.tensors)(args)
    return [env[o] if o in env else b.tensors[o].array() for o in b.outputs]
