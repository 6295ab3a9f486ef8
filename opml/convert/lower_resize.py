"""Lowering of Resize / Upsample (nearest, linear and cubic; every coordinate transformation but
``tf_crop_and_resize``) onto ``gather`` and ``linear``.

ONNX's resize is separable: along each resized axis ``a`` the output is ``M_a @ x`` for a constant
matrix ``M_a`` [out_a, in_a] that depends only on the sizes, scales and attributes. ``_axis_matrix``
builds it from the ONNX formulas as onnxruntime evaluates them (float32 coordinates; onnx's own
reference evaluator differs from onnxruntime on a few edge cases: ``pytorch_half_pixel`` with one output
element, ``align_corners`` with given scales). Then, axis by axis:

- a matrix whose rows are one-hot with weight 1 (every ``nearest`` mode) is a ``gather`` with the
  selected indices: exact data movement, same quantization;
- otherwise (``linear``, ``cubic``) it is a ``linear`` op with weights ``M_a^T`` (int8 per output
  position, int32 accumulation, one requantization), between two ``transpose``s when ``a`` is not the
  last axis.

The batch axis (axis 0) is never resized; antialiased downsampling is refused.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..bundle import DType
from .builder import QParams, Val
from .context import Context
from .lower import linear, lowering


def _consts(ctx: Context, node: onnx.NodeProto) -> dict[int, np.ndarray]:
    out = {}
    for i in range(1, len(node.input)):
        v = ctx.get(node, i)
        if v is None:
            continue
        if not v.is_const:
            raise ctx.err(f"input {node.input[i]!r} (roi, scales or sizes) must be a constant; export with static "
                          "upsampling factors")
        out[i] = np.asarray(v.data)
    return out


def _per_axis(ctx: Context, node: onnx.NodeProto, consts: dict[int, np.ndarray],
              in_shape: tuple[int, ...]) -> tuple[list[float] | None, list[int] | None]:
    """Full-rank scales and sizes (``None`` where not given), with the ``axes`` attribute resolved."""
    nd = len(in_shape)
    axes = ctx.attr(node, "axes", None)
    axes = list(range(nd)) if axes is None else [a + nd if a < 0 else a for a in axes]
    scales, sizes = None, None
    if node.op_type == "Upsample" or ctx.opset < 11:  # (X, scales) or a scales attribute
        s = consts.get(1)
        s = np.asarray(ctx.attr(node, "scales", [])) if s is None else s
        scales = [float(v) for v in s.reshape(-1)]
    else:
        if 2 in consts and consts[2].size:
            full = [1.0] * nd
            for a, v in zip(axes, consts[2].reshape(-1), strict=True):
                full[a] = float(v)
            scales = full
        if 3 in consts and consts[3].size:
            fs = list(in_shape)
            for a, v in zip(axes, consts[3].reshape(-1), strict=True):
                fs[a] = int(v)
            sizes = fs
    return scales, sizes


def _x_original(ct: str, n: int, m: int, scale: np.float32) -> np.ndarray:
    """The input coordinate of each output position, rounded as onnxruntime computes it: float32
    arithmetic for the half-pixel modes, float64 on the float32 scale (its ``0.5`` and divisions are
    doubles) for ``asymmetric``, ``align_corners`` and ``half_pixel_symmetric``, then float32. Checked
    against onnxruntime: every nearest mode, sizes 1-9 -> 1-19 by scales and by sizes (6840 cases, all
    indices equal); linear and cubic (coeff a, exclude_outside) 1-8 -> 1-18 (2880 cases, within 1e-4)."""
    f, d = np.float32, np.float64
    if ct in ("half_pixel", "pytorch_half_pixel"):
        x = np.arange(m, dtype=f)
        if ct == "pytorch_half_pixel" and m <= 1:
            return np.zeros(m, f)
        return (x + f(0.5)) / scale - f(0.5)
    xd = np.arange(m, dtype=d)
    if ct == "align_corners":
        xo = xd * (n - 1) / (m - 1) if m > 1 else np.zeros(m, d)
    elif ct == "asymmetric":
        # a scale that is the float32 of out/in acts as the exact ratio (onnxruntime's result on ties)
        xo = xd / (d(m) / d(n)) if np.float32(d(m) / d(n)) == scale else xd / d(scale)
    elif ct == "half_pixel_symmetric":
        adjustment = f(m) / (scale * f(n))
        offset = f(n) / f(2) * (f(1) - adjustment)
        xo = d(offset) + (xd + 0.5) / d(scale) - 0.5
    else:
        raise ValueError(ct)
    return xo.astype(f)


def _nearest(mode: str, xo: np.ndarray) -> np.ndarray:
    fl = np.floor(xo)
    tie = xo == fl + np.float32(0.5)
    if mode == "round_prefer_floor":
        return np.where(tie, fl, np.floor(xo + np.float32(0.5)))
    if mode == "round_prefer_ceil":
        return np.where(tie, fl + 1, np.floor(xo + np.float32(0.5)))
    if mode == "floor":
        return fl
    if mode == "ceil":
        return np.ceil(xo)
    raise ValueError(mode)


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _axis_matrix(ctx: Context, node: onnx.NodeProto, n: int, m: int, scale: float) -> np.ndarray:
    """``M`` [m, n]: output position ``i`` along the axis is ``sum_j M[i, j] x[j]`` (ONNX Resize, as
    onnxruntime implements it: float32 coordinates; linear clamps the coordinate to the input, cubic
    replicates the edge or, with ``exclude_outside``, drops and renormalises the outside taps)."""
    mode = _str(ctx.attr(node, "mode", b"nearest"))
    legacy = node.op_type == "Upsample" or ctx.opset < 11  # Upsample and Resize-10: asymmetric, truncation
    ct = _str(ctx.attr(node, "coordinate_transformation_mode", b"asymmetric" if legacy else b"half_pixel"))
    if ct not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"):
        raise ctx.err(f"coordinate_transformation_mode={ct} is not supported; use half_pixel, pytorch_half_pixel, "
                      "align_corners, asymmetric or half_pixel_symmetric")
    if ctx.attr(node, "antialias", 0) and mode != "nearest" and m < n:
        raise ctx.err("antialiased downsampling is not supported; export with antialias=0 or upsample only")
    xo = _x_original(ct, n, m, np.float32(scale))
    mat = np.zeros((m, n), dtype=np.float64)
    rows = np.arange(m)
    if mode == "nearest":
        # onnxruntime's rule before nearest_mode existed: floor when upsampling, ceil when downsampling
        nm = _str(ctx.attr(node, "nearest_mode", (b"ceil" if m < n else b"floor") if legacy else b"round_prefer_floor"))
        if nm not in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
            raise ctx.err(f"nearest_mode={nm} is not supported")
        idx = np.clip(_nearest(nm, xo), 0, n - 1).astype(np.int64)
        mat[rows, idx] = 1.0
        return mat
    if mode == "linear":
        xc = np.clip(xo, np.float32(0), np.float32(n - 1)).astype(np.float64)
        i0 = np.minimum(np.floor(xc).astype(np.int64), n - 1)
        i1 = np.minimum(i0 + 1, n - 1)
        frac = xc - i0
        np.add.at(mat, (rows, i0), np.where(i0 == i1, 1.0, 1.0 - frac))
        np.add.at(mat, (rows, i1), np.where(i0 == i1, 0.0, frac))
        return mat
    if mode == "cubic":
        a = float(ctx.attr(node, "cubic_coeff_a", -0.75))
        exclude = bool(ctx.attr(node, "exclude_outside", 0))
        xf = xo.astype(np.float64)
        base = np.floor(xf).astype(np.int64)
        for k in (-1, 0, 1, 2):
            j = base + k
            w = _cubic(xf - j, a)
            inside = (j >= 0) & (j < n)
            if exclude:
                w = np.where(inside, w, 0.0)
            np.add.at(mat, (rows, np.clip(j, 0, n - 1)), w)
        if exclude:
            mat /= mat.sum(axis=1, keepdims=True)
        return mat
    raise ctx.err(f"mode={mode} is not supported (nearest, linear, cubic are)")


def _str(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@lowering("Resize", "Upsample")
def lower_resize(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    if np.dtype(x.onnx_dtype).kind != "f":
        raise ctx.err("Resize of an integer tensor is not supported (float tensors only)")
    if _str(ctx.attr(node, "coordinate_transformation_mode", b"")) == "tf_crop_and_resize":
        raise ctx.err("coordinate_transformation_mode=tf_crop_and_resize is not supported; use another mode")
    if _str(ctx.attr(node, "keep_aspect_ratio_policy", b"stretch")) != "stretch":
        raise ctx.err("keep_aspect_ratio_policy other than stretch is not supported; give the output sizes")
    consts = _consts(ctx, node)
    in_shape = tuple(x.data.shape)
    scales, sizes = _per_axis(ctx, node, consts, in_shape)
    if scales is None and sizes is None:
        raise ctx.err("Resize needs constant scales or sizes")
    nd = len(in_shape)
    if (scales is not None and len(scales) != nd) or (sizes is not None and len(sizes) != nd):
        raise ctx.err(f"scales/sizes do not match the input rank {nd}")
    if sizes is not None:
        resized = [a for a in range(nd) if sizes[a] != in_shape[a]]
    else:
        assert scales is not None
        resized = [a for a in range(nd) if scales[a] != 1.0]
    if 0 in resized:
        raise ctx.err("resizing the batch axis (axis 0) is not supported")
    xq = ctx.quantized(x, node.input[0])
    if not resized:
        ctx.set(node, xq)
        return
    cur = xq
    name = node.output[0]
    order = sorted(resized, reverse=True)  # the last axis first: it needs no transpose
    out_shape = list(sizes) if sizes is not None else [int(np.floor(d * np.float32(s))) for d, s in
                                                        zip(in_shape, scales or [], strict=True)]
    if min(out_shape) < 1:
        raise ctx.err(f"the output shape {out_shape} would be empty")
    for k, a in enumerate(order):
        last = k == len(order) - 1
        scale = float(np.float32(scales[a])) if scales is not None else float(np.float32(out_shape[a]) /
                                                                              np.float32(in_shape[a]))
        m = _axis_matrix(ctx, node, in_shape[a], out_shape[a], scale)
        step = name if last else f"{name}_axis{a}"
        cur = _apply(ctx, node, cur, m, a, step, last)
    ctx.set(node, cur)


def _apply(ctx: Context, node: onnx.NodeProto, x: Val, m: np.ndarray, a: int, name: str, last: bool) -> Val:
    """``M @ x`` along axis ``a`` of the int8 activation ``x``, named ``name``."""
    s = ctx.b.spec(x)
    nd = x.data.ndim
    onehot = (np.count_nonzero(m, axis=1) == 1) & np.isclose(m.max(axis=1), 1.0, rtol=0, atol=1e-6)
    if onehot.all():
        idx = ctx.b.const(f"{name}_idx", m.argmax(axis=1).astype(np.int64))
        return ctx.b.add_node("gather", [x.ref, idx], name, s.dtype, None, QParams(s.scale, s.zero_point),
                              {"axis": a}, ctx.env, node.name if last else "")
    perm = list(range(nd))
    perm[a], perm[-1] = perm[-1], perm[a]
    v = x
    if a != nd - 1:
        v = ctx.b.add_node("transpose", [x.ref], f"{name}_t", s.dtype, None, QParams(s.scale, s.zero_point),
                           {"perm": perm}, ctx.env)
    inner = name if a == nd - 1 else f"{name}_lin"
    src = f"{inner}_src"
    ctx.vals[src] = v
    syn = helper.make_node("MatMul", [src, f"{inner}_w"], [inner], name=node.name if last and a == nd - 1 else "")
    if last and a == nd - 1 and node.output[0] in ctx.preferred:
        ctx.preferred[inner] = ctx.preferred[node.output[0]]
    linear(ctx, syn, v, Val(m.T.copy()), None, False)
    out = ctx.vals[inner]
    if a == nd - 1:
        return out
    so = ctx.b.spec(out)
    return ctx.b.add_node("transpose", [out.ref], name, DType.INT8, None, QParams(so.scale, so.zero_point),
                          {"perm": perm}, ctx.env, node.name if last else "")
