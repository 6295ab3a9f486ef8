"""Fast numpy kernels of the primitive ops (the engine's execution path).

Each ``prepare_<op>`` takes a node and the bundle's tensor specs and returns a function from input
arrays to the output array, with constants (float32 copies of weights, column sums) computed once.
Every kernel must equal ``opml.reference`` bit for bit; only DESIGN §3's safe operations are used.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from . import native
from .bundle import DType, Node, TensorSpec
from .errors import InferenceInputError, OpmlError
from .intmath import (
    chunk_for,
    clip_int32,
    exact_matmul,
    isqrt,
    requantize,
    round_div,
)
from .native import conv as native_conv
from .ops import REDUCE_L2, REDUCE_MAX, REDUCE_MEAN, REDUCE_SUM
from .requant import F32_EXACT, apply_float_requant, can_apply, plan_float_requant

Kernel = Callable[[Sequence[np.ndarray]], np.ndarray]

QRANGE = {DType.INT8: (-128, 127), DType.UINT8: (0, 255)}
# GEMMs with at most this many rows run as W^T @ x^T (faster in OpenBLAS for short, wide outputs)
FLIP_ROWS = 256


def _exact_divide(op: str, x: np.ndarray, terms: int, zp: int, mult: int, shift: int) -> bool:
    """Whether round_div(sum of ``terms`` (x - zp) * mult, count << shift) stays within exact int64 arithmetic
    (else the caller computes it on Python integers: numpy would wrap silently). OpmlError for a shift outside
    docs/bundle.md's [0, 62]."""
    if not 0 <= shift <= 62:
        raise OpmlError(f"{op}: shift {shift} is outside [0, 62]")
    span = 1 << (8 * x.dtype.itemsize)
    return terms * (abs(zp) + span) * abs(mult) + (terms << shift) < 1 << 62


def _round_div_big(acc: np.ndarray, mult: int, cnt: np.ndarray | int, shift: int) -> np.ndarray:
    """round_div(acc * mult, cnt << shift) on Python integers (adversarial parameters); the result is clipped to
    [-2^62, 2^62] (the callers clip it to an integer dtype's range after adding the zero point)."""
    num = np.asarray(acc).astype(object) * mult
    den = np.asarray(cnt).astype(object) << shift
    y = (num + den // 2) // den
    return np.clip(y, -(1 << 62), 1 << 62).astype(np.int64)


def _const(specs: Sequence[TensorSpec], i: int) -> np.ndarray:
    return specs[i].array()


def _check_weights(w: np.ndarray) -> None:
    if w.dtype == np.int16 and w.size and int(np.abs(w.astype(np.int32)).max()) > 255:
        raise OpmlError("int16 weights must lie in [-255, 255] (the exact GEMM chunk bound)")
    if w.dtype not in (np.int8, np.int16):
        raise OpmlError(f"weights must be int8 or int16, not {w.dtype}")


def _requant_params(node: Node, specs: Sequence[TensorSpec]) -> tuple[np.ndarray, np.ndarray]:
    mult = _const(specs, node.inputs[3]).astype(np.int64)
    shift = _const(specs, node.inputs[4]).astype(np.int64)
    return mult, shift


def prepare_quantize(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    out = specs[node.outputs[0]]
    lo, hi = QRANGE[out.dtype]
    scale = np.float32(out.scale)
    zp = np.float32(out.zero_point)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        if np.isnan(x).any():
            raise InferenceInputError("input contains NaN; inference inputs must be finite or +-inf")
        q = np.rint(x / scale) + zp
        return np.clip(q, np.float32(lo), np.float32(hi)).astype(out.dtype.np)

    return run


def prepare_dequantize(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    src = specs[node.inputs[0]]
    scale = np.float32(src.scale)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        return (xs[0].astype(np.int64) - src.zero_point).astype(np.float32) * scale

    return run


def _gemm_bound(x: np.ndarray, static_mag: int, wmag: int) -> int:
    """An upper bound on |every partial sum| of ``x @ w``: max|x| * max over columns of sum_k |w[k, col]|.

    Whatever order BLAS adds the products of one output in, each intermediate is a sum over a subset
    of them, so its magnitude is at most this bound; at or below 2^24 every intermediate is an integer
    that float32 holds exactly, so one float32 GEMM is exact. The dtype's magnitude is tried first; the
    data's actual maximum only when that is not enough.
    """
    bound = static_mag * wmag
    if bound > F32_EXACT and x.size:
        bound = max(-int(x.min()), int(x.max())) * wmag
    return bound


def _dtype_magnitude(dtype: np.dtype) -> int:
    info = np.iinfo(dtype)
    return max(-int(info.min), int(info.max))


def _chunked_gemm(x2: np.ndarray, w32: np.ndarray, w64: np.ndarray, wmax: int) -> np.ndarray:
    """``x2 @ w`` exactly as int64 when one float32 GEMM is not enough: K split into chunks whose
    partial sums stay within 2^24 (chunk * max|x| * max|w| <= 2^24), or int64 numpy when even one
    product is too large."""
    xabs = max(-int(x2.min()), int(x2.max())) if x2.size else 0
    per = xabs * wmax
    if per > F32_EXACT:
        return np.matmul(x2.astype(np.int64), w64)
    chunk = 1 << ((F32_EXACT // max(per, 1)).bit_length() - 1)  # largest power of two <= 2^24 / per
    return exact_matmul(x2.astype(np.float32), w32, chunk)


def _gemm_tail(node: Node, specs: Sequence[TensorSpec],
               offset: np.ndarray) -> Callable[[np.ndarray, int | None], np.ndarray]:
    """The end shared by linear and conv: their [rows, channels] product -> the node's output.

    The returned ``finish(t, bound)`` takes ``t``, the float32 result of one exact GEMM with
    ``bound`` its :func:`_gemm_bound`, or the int64 result of the chunked path with ``bound`` None;
    it adds ``offset`` (bias minus the input zero point's share) and clips to int32 (raw
    accumulator output) or requantizes, through the float64 plan when its bound allows.
    """
    out = specs[node.outputs[0]]
    if out.dtype == DType.INT32:
        return lambda t, bound: clip_int32(t.astype(np.int64, copy=False) + offset).astype(np.int32)
    qmin, qmax = node.iattr("qmin"), node.iattr("qmax")
    mult, shift = _requant_params(node, specs)
    fast = plan_float_requant(mult, shift, offset, out.zero_point, qmin, qmax, out.dtype.np, F32_EXACT)

    def finish(t: np.ndarray, bound: int | None) -> np.ndarray:
        if bound is not None and fast is not None and can_apply(fast, bound):
            return apply_float_requant(fast, t, bound)
        acc = t.astype(np.int64, copy=False) + offset
        return requantize(acc, mult, shift, out.zero_point, qmin, qmax, out.dtype.np)

    return finish


def _native_gemm(node: Node, specs: Sequence[TensorSpec], w: np.ndarray, offset: np.ndarray,
                 channels: slice = slice(None), conv: bool = False) -> native.Gemm | None:
    """The native exact GEMM and epilogue for weights [K, N] (output channels ``channels`` of the node,
    whose per-channel requantization constants apply), when the library can take them; ``conv``: also the
    weight layout of :meth:`native.Gemm.conv_nchw`'s AMX tiles."""
    x_dtype = specs[node.inputs[0]].dtype
    if not native.available() or x_dtype not in QRANGE:
        return None
    out = specs[node.outputs[0]]
    n = w.shape[1]
    if out.dtype == DType.INT32:
        ep = native.epilogue(n, offset, 0, 0, 0, 0, 0, np.int32)
    elif out.dtype in QRANGE or out.dtype == DType.INT16:
        mult, shift = _requant_params(node, specs)
        mult, shift = (v if v.size == 1 else v.reshape(-1)[channels] for v in (mult, shift))
        ep = native.epilogue(n, offset, mult, shift, out.zero_point, node.iattr("qmin"), node.iattr("qmax"),
                             out.dtype.np)
    else:
        return None
    packed = native.pack_weights(w, rows=conv) if ep is not None else None
    return native.Gemm(packed, ep, x_dtype.np) if packed is not None and ep is not None else None


# groups with at most this many input channels run the native direct conv (conv.c: about cg * kh * kw / 2 vector
# multiply-adds per 16 outputs) instead of one im2col and GEMM per group; measured on ShuffleNet's grouped 1x1
# convs (one thread): 34 channels per group 1.77 -> 1.34 ms, 68 the same, 136 slower (0.65 -> 0.84 ms)
DIRECT_CONV_MAX_CG = 64
# ungrouped convs with at most this many input channels run it too (any instruction set)
DIRECT_CONV_MAX_CG_UNGROUPED = 0
# and ungrouped convs of these input channel counts (RGB stems) where AVX-512 VNNI forms four channels' products per
# lane (VPDPBUSD: conv.c's channel quads, int8 weights): one thread, the dense GEMM path -> direct: MobileNetV2's
# 3 -> 32 96x96 stride 2 82 -> 53 us, 3 -> 16 73 -> 33 us, ppocr_cls's 3 -> 8 48x192 95 -> 47 us, 3 -> 64 64x64
# stride 2 54 -> 44 us (1 input channel stays dense: 1 -> 32 1x80 stride 16 31 -> 48 us direct)
DIRECT_STEM_CG = (3, 4)
_QUAD_ISAS = ("avx512vnni", "amx")


def _direct_stem(cg: int, w: np.ndarray) -> bool:
    return cg in DIRECT_STEM_CG and w.dtype == np.int8 and native.available() and native.isa_name() in _QUAD_ISAS


def _native_group_conv(node: Node, specs: Sequence[TensorSpec], w: np.ndarray,
                       offset: np.ndarray) -> native_conv.GroupConv | None:
    """The native direct grouped conv of the node (weights [M, C/group, kh, kw], per-channel ``offset``), with
    the epilogue :func:`_native_gemm` would give its columns; None when the library cannot take it."""
    x_spec, out = specs[node.inputs[0]], specs[node.outputs[0]]
    if not native_conv.available() or x_spec.dtype not in QRANGE or not native_conv.fits(w):
        return None
    m = w.shape[0]
    if out.dtype == DType.INT32:
        ep = native.epilogue(m, offset, 0, 0, 0, 0, 0, np.int32)
    elif out.dtype in QRANGE or out.dtype == DType.INT16:
        mult, shift = _requant_params(node, specs)
        ep = native.epilogue(m, offset, mult.reshape(-1), shift.reshape(-1), out.zero_point, node.iattr("qmin"),
                             node.iattr("qmax"), out.dtype.np)
    else:
        return None
    if ep is None:
        return None
    return native_conv.GroupConv(w, node.iattr("group"), node.attr("strides"), node.attr("dilations"),
                                 node.attr("pads"), x_spec.zero_point, x_spec.dtype.np, ep)


def prepare_linear(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    x_spec = specs[node.inputs[0]]
    w = _const(specs, node.inputs[1])
    _check_weights(w)
    k, n = w.shape
    w64 = w.astype(np.int64)
    wmag = int(np.abs(w64).sum(axis=0).max()) if w.size else 0
    bias = _const(specs, node.inputs[2]).astype(np.int64)
    zp = x_spec.zero_point
    xmag = _dtype_magnitude(x_spec.dtype.np)
    wmax = int(np.abs(w64).max()) if w.size else 0
    offset = bias - zp * w64.sum(axis=0)
    finish = _gemm_tail(node, specs, offset)  # acc = x @ w + offset
    fast = _native_gemm(node, specs, w, offset)

    @functools.cache
    def float_weights() -> tuple[np.ndarray, np.ndarray]:
        """w and w^T as float32 for the numpy path, made when it first runs (not kept beside the native
        packing: for the BERT-like encoder they are 84 MB)."""
        w32 = w.astype(np.float32)
        return w32, np.ascontiguousarray(w32.T)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        lead = x.shape[:-1]
        x2 = x.reshape(math.prod(lead), k)
        if fast is not None and x2.dtype == fast.x_dtype:
            return fast(x2).reshape(lead + (n,))
        w32, wt32 = float_weights()
        bound = _gemm_bound(x2, xmag, wmag)
        if bound <= F32_EXACT:
            # BLAS runs faster with the few rows of a small batch as the GEMM's columns
            flip = x2.shape[0] <= FLIP_ROWS
            xf = x2.astype(np.float32)
            y = finish(np.matmul(wt32, xf.T).T if flip else np.matmul(xf, w32), bound)
        else:
            y = finish(_chunked_gemm(x2, w32, w64, wmax), None)
        return y.reshape(lead + (n,))

    return run


def _pad_value(spec: TensorSpec) -> int:
    return spec.zero_point


def _out_hw(h: int, w: int, kh: int, kw: int, strides: Sequence[int], dil: Sequence[int]) -> tuple[int, int]:
    """Output height and width of a (dilated, strided) kernel over an already padded input."""
    oh = (h - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (w - (kw - 1) * dil[1] - 1) // strides[1] + 1
    if oh <= 0 or ow <= 0:
        raise InferenceInputError(f"input spatial size {h}x{w} is smaller than the kernel")
    return oh, ow


def _im2col(x: np.ndarray, kh: int, kw: int, strides: Sequence[int], dil: Sequence[int]) -> np.ndarray:
    """[B, C, H, W] -> [B, C, OH, OW, kh, kw] view of the (already padded) input."""
    b, c, h, w = x.shape
    oh, ow = _out_hw(h, w, kh, kw, strides, dil)
    s = x.strides
    return np.lib.stride_tricks.as_strided(
        x,
        shape=(b, c, oh, ow, kh, kw),
        strides=(s[0], s[1], s[2] * strides[0], s[3] * strides[1], s[2] * dil[0], s[3] * dil[1]),
        writeable=False,
    )


def _pad_nchw(x: np.ndarray, pads: Sequence[int], value: int) -> np.ndarray:
    t, left, bottom, right = pads
    if not any(pads):
        return x
    b, c, h, w = x.shape
    out = np.full((b, c, h + t + bottom, w + left + right), value, dtype=x.dtype)  # (np.pad is ~5x slower)
    out[:, :, t : t + h, left : left + w] = x
    return out


def prepare_conv(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    x_spec = specs[node.inputs[0]]
    w = _const(specs, node.inputs[1])
    _check_weights(w)
    m, cg, kh, kw = w.shape
    group = node.iattr("group")
    pads, strides, dil = node.attr("pads"), node.attr("strides"), node.attr("dilations")
    bias = _const(specs, node.inputs[2]).astype(np.int64)
    zp = x_spec.zero_point
    if x_spec.dtype not in QRANGE or not QRANGE[x_spec.dtype][0] <= zp <= QRANGE[x_spec.dtype][1]:
        # padding holds the zero point, so it must be a value of the input's dtype
        raise OpmlError(f"conv input zero point {zp} is not a {x_spec.dtype.name.lower()} value")
    chunk = chunk_for(x_spec.dtype.np, w.dtype)
    mg = m // group
    # per group: weights as [cg*kh*kw, mg] float32 and their column sums
    w_groups = [w[g * mg : (g + 1) * mg].reshape(mg, -1).T.astype(np.float32) for g in range(group)]
    w64 = w.astype(np.int64).reshape(m, -1)
    wmag = int(np.abs(w64).sum(axis=1).max()) if w.size else 0
    xmag = _dtype_magnitude(x_spec.dtype.np)  # padding holds zp, a value of the dtype
    offset = bias - zp * w64.sum(axis=1)
    finish = _gemm_tail(node, specs, offset)
    # native, groups of few channels (depthwise): one direct conv over all groups (opml/native/conv.c)
    use_direct = cg <= DIRECT_CONV_MAX_CG and (group > 1 or cg <= DIRECT_CONV_MAX_CG_UNGROUPED or _direct_stem(cg, w))
    direct = _native_group_conv(node, specs, w, offset) if use_direct else None
    # native: rows of im2col in (kernel row, kernel column, channel) order, weights permuted to match
    # (the exact integer sum does not depend on the order of its terms)
    fast: list[native.Gemm | None] = [] if direct is not None else [
        _native_gemm(node, specs, w[g * mg : (g + 1) * mg].transpose(2, 3, 1, 0).reshape(kh * kw * cg, mg),
                     offset[g * mg : (g + 1) * mg], slice(g * mg, (g + 1) * mg), group == 1) for g in range(group)]

    pointwise = group == 1 and kh == kw == 1 and tuple(strides) == (1, 1)

    def run_native(xp: np.ndarray) -> np.ndarray:
        b = xp.shape[0]
        oh, ow = _out_hw(xp.shape[2], xp.shape[3], kh, kw, strides, dil)
        c, hp, wp = xp.shape[1:]
        xh = native_conv.transpose_batched(xp.reshape(b, c, hp * wp)).reshape(b, hp, wp, c)  # NHWC
        if pointwise and fast[0] is not None:  # a 1x1 stride-1 window is one pixel: NHWC rows are im2col rows
            outs = [fast[0](xh.reshape(b * hp * wp, c))]
        else:
            outs = [f(native.im2col_nhwc(xh, kh, kw, strides, dil, oh, ow, g * cg, cg)) for g, f in enumerate(fast)
                    if f is not None]
        y8 = outs[0] if group == 1 else np.concatenate(outs, axis=1)  # [B*OH*OW, M]
        return native_conv.transpose_batched(y8.reshape(b, oh * ow, m)).reshape(b, m, oh, ow)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        if direct is not None and xs[0].dtype == direct.x_dtype:
            oh, ow = direct.out_hw(xs[0].shape[2], xs[0].shape[3])
            if oh > 0 and ow > 0:  # (else the numpy path below raises the input error)
                return direct(xs[0])
        single = fast[0] if group == 1 and fast else None
        if single is not None and xs[0].dtype == single.x_dtype and xs[0].ndim == 4:  # NCHW to NCHW (qconv.c)
            _out_hw(xs[0].shape[2] + pads[0] + pads[2], xs[0].shape[3] + pads[1] + pads[3], kh, kw, strides, dil)
            return single.conv_nchw(xs[0], kh, kw, pads, strides, dil, zp)
        x = _pad_nchw(xs[0], pads, _pad_value(x_spec))
        if fast and all(f is not None and x.dtype == f.x_dtype for f in fast):
            return run_native(x)
        cols = _im2col(x, kh, kw, strides, dil)  # [B, C, OH, OW, kh, kw]
        b, _, oh, ow = cols.shape[:4]
        mats = [cols[:, g * cg : (g + 1) * cg].transpose(0, 2, 3, 1, 4, 5).reshape(b * oh * ow, cg * kh * kw)
                .astype(np.float32) for g in range(group)]
        bound = _gemm_bound(x, xmag, wmag)
        if bound <= F32_EXACT:  # one exact float32 GEMM per group (see _gemm_bound)
            parts = [np.matmul(mat, w_groups[g]) for g, mat in enumerate(mats)]
            exact: int | None = bound
        else:
            parts = [exact_matmul(mat, w_groups[g], chunk) for g, mat in enumerate(mats)]
            exact = None
        y = finish(parts[0] if group == 1 else np.concatenate(parts, axis=1), exact)  # [B*OH*OW, M]
        return np.ascontiguousarray(y.reshape(b, oh, ow, m).transpose(0, 3, 1, 2))

    return run


def _centered_magnitude(spec: TensorSpec) -> int:
    """Largest |v - zero_point| over the values of the spec's dtype."""
    info = np.iinfo(spec.dtype.np)
    return max(abs(int(info.min) - spec.zero_point), abs(int(info.max) - spec.zero_point))


def prepare_matmul(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    a_spec, b_spec, out = specs[node.inputs[0]], specs[node.inputs[1]], specs[node.outputs[0]]
    raw = out.dtype == DType.INT32
    mult, shift = node.iattr("mult"), node.iattr("shift")
    qmin, qmax = node.iattr("qmin"), node.iattr("qmax")

    za, zb = a_spec.zero_point, b_spec.zero_point
    chunk = chunk_for(a_spec.dtype.np, b_spec.dtype.np)
    # The zero points are subtracted in float32 before one GEMM when every partial sum of
    # (a - za)(b - zb) is bounded by K * max|a - za| * max|b - zb| <= 2^24 (then all are exact).
    mag = _centered_magnitude(a_spec) * _centered_magnitude(b_spec)
    fast = None if raw else plan_float_requant([mult], [shift], [0], out.zero_point, qmin, qmax, out.dtype.np,
                                               F32_EXACT)

    fast_mm = native.matmul(a_spec.dtype.np, za, b_spec.dtype.np, zb, out.dtype.np, mult, shift, out.zero_point,
                            qmin, qmax)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        a, b = xs
        if fast_mm is not None and a.dtype == fast_mm.a_dtype and b.dtype == fast_mm.b_dtype:
            y = fast_mm(a, b)
            if y is not None:
                return y
        bound = a.shape[-1] * mag
        if bound <= F32_EXACT:
            af = a.astype(np.float32)
            if za:
                af -= np.float32(za)
            bf = b.astype(np.float32)
            if zb:
                bf -= np.float32(zb)
            t = np.matmul(af, bf)
            if fast is not None and can_apply(fast, bound):
                return apply_float_requant(fast, t, bound)
            acc = t.astype(np.int64)
        else:
            acc = exact_matmul(a.astype(np.float32), b.astype(np.float32), chunk)
            # sum (a-za)(b-zb) = sum ab - zb*rowsum(a) - za*colsum(b) + K*za*zb
            if zb:
                acc = acc - zb * a.astype(np.int64).sum(axis=-1, keepdims=True)
            if za:
                acc = acc - za * b.astype(np.int64).sum(axis=-2, keepdims=True)
            if za and zb:
                acc = acc + a.shape[-1] * za * zb
        if raw:
            return clip_int32(acc).astype(np.int32)
        return requantize(acc, mult, shift, out.zero_point, qmin, qmax, out.dtype.np)

    return run


LAYERNORM_SQRT_BITS = 8  # the layernorm's isqrt works on the variance << 2 * LAYERNORM_SQRT_BITS


def _pool_geometry(node: Node) -> tuple[int, int, Sequence[int], Sequence[int], Sequence[int]]:
    """kernel height and width, strides, dilations and pads of a pooling node."""
    kh, kw = node.attr("kernel")
    dil = node.attr("dilations") if "dilations" in node.schema.attrs else (1, 1)
    return kh, kw, node.attr("strides"), dil, node.attr("pads")


def _window_reduce(x: np.ndarray, node: Node, pad_value: int,
                   op: Callable[..., np.ndarray]) -> np.ndarray:
    """``op`` (np.maximum, np.add: exact on integers) folded over each pooling window of ``x``, one strided view
    of the padded input per kernel offset."""
    kh, kw, strides, dil, pads = _pool_geometry(node)
    acc: np.ndarray | None = None
    for win in _window_views(_pad_nchw(x, pads, pad_value), kh, kw, strides, dil):
        acc = win.copy() if acc is None else op(acc, win, out=acc)
    assert acc is not None
    return acc


def prepare_maxpool(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    x_spec = specs[node.inputs[0]]
    if x_spec.dtype not in QRANGE:
        raise OpmlError(f"maxpool on {x_spec.dtype.name} is not supported (int8/uint8 only)")
    lo = QRANGE[x_spec.dtype][0]
    kh, kw, strides, dil, pads = _pool_geometry(node)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        y = native_conv.maxpool(xs[0], kh, kw, strides, dil, pads)  # (None: numpy, which raises the input errors)
        return y if y is not None else _window_reduce(xs[0], node, lo, np.maximum)

    return run


def _window_views(xp: np.ndarray, kh: int, kw: int, strides: Sequence[int],
                  dil: Sequence[int]) -> list[np.ndarray]:
    """For each kernel offset (i, j), the [B, C, OH, OW] view of the (padded) input it reads."""
    oh, ow = _out_hw(xp.shape[2], xp.shape[3], kh, kw, strides, dil)
    return [xp[:, :, i * dil[0] : i * dil[0] + (oh - 1) * strides[0] + 1 : strides[0],
               j * dil[1] : j * dil[1] + (ow - 1) * strides[1] + 1 : strides[1]]
            for i in range(kh) for j in range(kw)]


def prepare_avgpool(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    x_spec, out = specs[node.inputs[0]], specs[node.outputs[0]]
    zp = x_spec.zero_point
    mult, shift = node.iattr("mult"), node.iattr("shift")
    include_pad = bool(node.iattr("count_include_pad"))
    lo, hi = QRANGE[out.dtype]
    kh, kw = node.attr("kernel")
    _, _, strides, dil, pads = _pool_geometry(node)
    sums: dict[tuple[int, np.dtype], native_conv.GroupConv | None] = {}  # by channel count and dtype

    def window_sums(x: np.ndarray) -> np.ndarray:
        """sum over each window of x - zp (padding 0) as int64: the native depthwise conv with unit weights
        (the same integers as the numpy windows), or numpy."""
        key = (x.shape[1], x.dtype)
        if key not in sums:
            sums[key] = native_conv.window_sum(x.shape[1], kh, kw, strides, dil, pads, zp, x.dtype) \
                if x.ndim == 4 and x.dtype in (np.int8, np.uint8) and native_conv.available() else None
        ws = sums[key]
        if ws is not None:
            oh, ow = ws.out_hw(x.shape[2], x.shape[3])
            if oh > 0 and ow > 0:  # (else the numpy path raises the input error)
                return ws(x).astype(np.int64)
        return _window_reduce(x.astype(np.int64) - zp, node, 0, np.add)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        acc = window_sums(x)
        if include_pad:
            cnt: np.ndarray | int = kh * kw
        else:
            counts = _window_reduce(np.ones((1, 1) + x.shape[2:], dtype=np.int64), node, 0, np.add)
            if counts.size and counts.min() == 0:
                raise OpmlError("avgpool: a window lies entirely in the padding (count 0)")
            cnt = counts
        if _exact_divide("avgpool", x, kh * kw, zp, mult, shift):
            y = round_div(acc * mult, np.asarray(cnt, dtype=np.int64) << shift) + out.zero_point
        else:
            y = _round_div_big(acc, mult, cnt, shift) + out.zero_point
        return np.ascontiguousarray(np.clip(y, lo, hi).astype(out.dtype.np))

    return run


def prepare_reduce(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    x_spec, out = specs[node.inputs[0]], specs[node.outputs[0]]
    mode, axes = node.iattr("mode"), node.attr("axes")
    keep = bool(node.iattr("keepdims"))
    mult, shift = node.iattr("mult"), node.iattr("shift")
    lo, hi = QRANGE.get(out.dtype, (0, 0))

    def native_plane(x: np.ndarray) -> np.ndarray | None:
        """The reduce over trailing axes of a C-contiguous byte tensor (global pooling), in one native call."""
        k = x.ndim - len(axes)
        if mode not in (REDUCE_MAX, REDUCE_SUM, REDUCE_MEAN) or sorted(axes) != list(range(k, x.ndim)) or not x.size:
            return None
        planes, n = math.prod(x.shape[:k]), math.prod(x.shape[k:])
        out_shape = x.shape[:k] + (1,) * len(axes) if keep else x.shape[:k]
        if mode == REDUCE_MAX:
            y = native_conv.plane_reduce(x, planes, 1, 0, 0, 1, 0, -(1 << 40), 1 << 40, x.dtype)
        else:
            den = (n if mode == REDUCE_MEAN else 1) << shift
            y = native_conv.plane_reduce(x, planes, 0, x_spec.zero_point, mult, den, out.zero_point, lo, hi,
                                         out.dtype.np) if out.dtype in QRANGE and 0 <= shift < 40 else None
        return None if y is None else y.reshape(out_shape)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        exact = mode == REDUCE_MAX or _exact_divide("reduce", x, math.prod(x.shape[a] for a in axes),
                                                     x_spec.zero_point, mult, shift)
        if exact and x.dtype in (np.int8, np.uint8) and (y := native_plane(x)) is not None:
            return y
        if mode == REDUCE_MAX:
            return x.max(axis=axes, keepdims=keep)
        c = x.astype(np.int64) - x_spec.zero_point
        cnt = int(np.prod([x.shape[a] for a in axes])) if mode == REDUCE_MEAN else 1
        if mode in (REDUCE_SUM, REDUCE_MEAN):
            acc = c.sum(axis=axes, keepdims=keep)
        elif mode == REDUCE_L2:
            acc = isqrt((c * c).sum(axis=axes, keepdims=keep))
        else:
            raise OpmlError(f"reduce: unknown mode {mode}")
        if exact:
            y = round_div(acc * mult, np.asarray(cnt, dtype=np.int64) << shift) + out.zero_point
        else:
            y = _round_div_big(acc, mult, cnt, shift) + out.zero_point
        return np.clip(y, lo, hi).astype(out.dtype.np)

    return run
