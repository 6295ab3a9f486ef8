"""Lowering of the windowed ops: convolution, pooling, BatchNormalization, global pooling.

The engine's ``conv``, ``maxpool`` and ``avgpool`` work on 2-D windows over ``[N, C, H, W]``. One
more spatial layout is a composition, not a new op:

- **1-D** (``[N, C, L]``: audio stems, Whisper's encoder, an STFT written as Conv) runs as 2-D with
  ``H = 1``: ``reshape -> [N, C, 1, L]``, the 2-D op with kernel ``[1, K]``, strides ``[1, s]``,
  dilations ``[1, d]`` and pads ``[0, begin, 0, end]``, ``reshape -> [N, M, L']``. Every output
  element reads the same input elements as the 1-D op, so the result is the same integers.
- **ceil_mode=1** (SqueezeNet) adds end padding: ``ceil((L + pads - eff) / s) + 1`` windows, less one
  when the last would start in the end padding (ONNX's and PyTorch's rule), is what the floor formula
  gives once the end padding grows by ``(out - 1) s + eff - (L + pads)``. The engine's max pooling
  pads with the dtype's minimum, which no window's maximum can be below (every window holds at least
  one real element), and average pooling without ``count_include_pad`` counts only real elements: both
  equal ONNX's ceil-mode result. Average pooling *with* ``count_include_pad`` divides ONNX's
  overhanging windows by the part inside the explicit padding only, which the engine cannot express:
  refused with the fix.

``GlobalMaxPool`` and ``GlobalAveragePool`` are a max / mean ``reduce`` over the spatial axes;
``BatchNormalization`` a depthwise 1x1 ``conv`` (over ``[N, C]``, ``[N, C, L]`` and ``[N, C, H, W]``).
"""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from ..ops import REDUCE_MAX, REDUCE_MEAN
from .builder import QInfo, QParams, Val
from .context import Context
from .lower import _reduce, conv, lowering


def conv_pads(ctx: Context, node: onnx.NodeProto, spatial: tuple[int, ...], kernel: tuple[int, ...]) -> list[int]:
    """ONNX pads ``[begin..., end...]`` of a Conv/pooling node over ``len(spatial)`` axes (auto_pad resolved)."""
    nd = len(spatial)
    auto = ctx.attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    strides = list(ctx.attr(node, "strides", [1] * nd))
    dil = list(ctx.attr(node, "dilations", [1] * nd))
    if auto in ("NOTSET", ""):
        pads = list(ctx.attr(node, "pads", [0] * (2 * nd)))
        if len(pads) != 2 * nd:
            raise ctx.err(f"pads has {len(pads)} values; a {nd}-D window needs {2 * nd}")
        return pads
    if auto == "VALID":
        return [0] * (2 * nd)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(nd):
            out = -(-spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - spatial[i])
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin + end
    raise ctx.err(f"auto_pad={auto} is not supported; use NOTSET (explicit pads), VALID, SAME_UPPER or SAME_LOWER")


def _spatial_rank(ctx: Context, x: Val, what: str) -> int:
    nd = x.data.ndim - 2
    if nd not in (1, 2):
        raise ctx.err(f"{what} over {x.data.shape} ({max(nd, 0)} spatial axes): only 1-D [N, C, L] and "
                      "2-D [N, C, H, W] inputs are supported; reshape to one of them")
    return nd


def _to_2d(ctx: Context, x: Val, name: str) -> Val:
    """``[N, C, L]`` -> ``[N, C, 1, L]`` (a reshape: same bytes, same quantization)."""
    s = ctx.b.spec(x)
    n, c, length = x.data.shape
    out = ctx.b.add_node("reshape", [x.ref], name, s.dtype, (n, c, 1, length), QParams(s.scale, s.zero_point),
                         {}, ctx.env)
    out.onnx_dtype = x.onnx_dtype
    return out


def _back_to_1d(ctx: Context, node: onnx.NodeProto) -> None:
    """Reshape the node's ``[N, M, 1, L']`` result to ``[N, M, L']`` under the ONNX output's name."""
    name = node.output[0]
    v = ctx.vals[name]
    assert v.tid is not None
    ctx.b.rename(v.tid, name + "_2d")
    ctx.b.free_name(name)
    s = ctx.b.spec(v)
    n, m, _, length = v.data.shape
    out = ctx.b.add_node("reshape", [v.tid], name, s.dtype, (n, m, length), QParams(s.scale, s.zero_point), {},
                         ctx.env, node.name)
    out.onnx_dtype = v.onnx_dtype
    ctx.set(node, out)


def _lift(values: list[int], fill: int) -> list[int]:
    """1-D attribute ``[v]`` (or pads ``[b, e]``) -> its 2-D form with H = 1."""
    if len(values) == 2:  # pads: begin, end
        return [0, values[0], 0, values[1]]
    return [fill, values[0]]


# ------------------------------------------------------------------------------ convolution


@lowering("Conv")
def lower_conv(ctx: Context, node: onnx.NodeProto) -> None:
    ctx.reject_attrs(node, {"pads", "strides", "dilations", "group", "kernel_shape", "auto_pad", "aievm_relu"})
    x, w = ctx.need(node, 0), ctx.need(node, 1)
    if not w.is_const:
        raise ctx.err("Conv weights must be a constant (an initializer or a folded subgraph)")
    nd = _spatial_rank(ctx, x, "Conv")
    if w.data.ndim != nd + 2:
        raise ctx.err(f"weights of rank {w.data.ndim} for a {nd}-D input: expected [M, C/group, {'K' * nd}]")
    b = ctx.get(node, 2)
    bias = None if b is None else np.asarray(b.data, dtype=np.float64)
    relu = bool(ctx.attr(node, "aievm_relu", 0))
    pads = conv_pads(ctx, node, x.data.shape[2:], w.data.shape[2:])
    if nd == 2:
        conv(ctx, node, x, w, bias, pads, relu)
        return
    x2 = _to_2d(ctx, ctx.quantized(x, node.input[0]), node.output[0] + "_in2d")
    qi = w.qinfo
    w2 = Val(np.asarray(w.data)[:, :, None, :],
             qinfo=None if qi is None else QInfo(qi.q[:, :, None, :], qi.scale, qi.zero_point, qi.axis))
    conv(ctx, node, x2, w2, bias, _lift(pads, 0), relu, strides=_lift(list(ctx.attr(node, "strides", [1])), 1),
         dilations=_lift(list(ctx.attr(node, "dilations", [1])), 1))
    _back_to_1d(ctx, node)


@lowering("BatchNormalization")
def lower_batchnorm(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.need(node, 0)
    if len(node.output) > 1 and any(node.output[1:]):
        raise ctx.err("the training outputs (running mean/var) of BatchNormalization are not supported; "
                      "export the model in eval mode")
    gamma, beta, mean, var = (np.asarray(ctx.const_of(node, i, "BatchNormalization parameters"), dtype=np.float64)
                              for i in range(1, 5))
    eps = float(ctx.attr(node, "epsilon", 1e-5))
    if x.data.ndim not in (2, 3, 4):
        raise ctx.err(f"BatchNormalization over {x.data.shape}: supported on [N, C], [N, C, L] and [N, C, H, W]")
    k = gamma / np.sqrt(var + eps)
    c = k.shape[0]
    w = Val(k.reshape(c, 1, 1, 1))
    if x.data.ndim == 4:  # a depthwise 1x1 convolution: one group per channel
        conv(ctx, node, x, w, beta - mean * k, [0, 0, 0, 0], False, group=c)
        return
    xq = ctx.quantized(x, node.input[0])
    s = ctx.b.spec(xq)
    shape = xq.data.shape
    flat = (shape[0], c, 1, int(np.prod(shape[2:], dtype=np.int64)))
    x4 = ctx.b.add_node("reshape", [xq.ref], node.output[0] + "_in4d", s.dtype, flat, QParams(s.scale, s.zero_point),
                        {}, ctx.env)
    conv(ctx, node, x4, w, beta - mean * k, [0, 0, 0, 0], False, group=c, strides=[1, 1], dilations=[1, 1])
    name = node.output[0]
    v = ctx.vals[name]
    assert v.tid is not None
    ctx.b.rename(v.tid, name + "_4d")
    ctx.b.free_name(name)
    so = ctx.b.spec(v)
    ctx.set(node, ctx.b.add_node("reshape", [v.tid], name, so.dtype, shape, QParams(so.scale, so.zero_point), {},
                                 ctx.env, node.name))


# ------------------------------------------------------------------------------ pooling


def ceil_mode_pads(ctx: Context, spatial: tuple[int, ...], kernel: list[int], strides: list[int], dil: list[int],
                   pads: list[int]) -> list[int]:
    """Pads (``[begin..., end...]``) that make the floor output size equal ONNX's ceil_mode=1 size."""
    nd = len(spatial)
    out = list(pads)
    for i in range(nd):
        eff = (kernel[i] - 1) * dil[i] + 1
        total = spatial[i] + pads[i] + pads[nd + i]
        if total < eff:
            raise ctx.err(f"the pooling window ({eff}) is larger than the padded input ({total}) on spatial axis {i}")
        n_out = -(-(total - eff) // strides[i]) + 1
        if (n_out - 1) * strides[i] >= spatial[i] + pads[i]:  # the last window would start in the end padding
            n_out -= 1
        out[nd + i] += max(0, (n_out - 1) * strides[i] + eff - total)
    return out


def _pool_attrs(ctx: Context, node: onnx.NodeProto, x: Val) -> dict[str, object]:
    """The engine's 2-D pooling attributes for a 1-D or 2-D ONNX pooling node (ceil_mode resolved)."""
    if len(node.output) > 1 and node.output[1]:  # (storage_order only affects the Indices output)
        raise ctx.err("the Indices output of MaxPool is not supported; export the pooling without return_indices")
    nd = _spatial_rank(ctx, x, node.op_type)
    kernel = list(ctx.attr(node, "kernel_shape", []))
    if len(kernel) != nd:
        raise ctx.err(f"kernel_shape {kernel} for a {nd}-D input")
    strides = list(ctx.attr(node, "strides", [1] * nd))
    dil = list(ctx.attr(node, "dilations", [1] * nd))
    pads = conv_pads(ctx, node, x.data.shape[2:], tuple(kernel))
    if ctx.attr(node, "ceil_mode", 0):
        ceil = ceil_mode_pads(ctx, x.data.shape[2:], kernel, strides, dil, pads)
        if ceil != pads and node.op_type == "AveragePool" and ctx.attr(node, "count_include_pad", 0):
            raise ctx.err("ceil_mode=1 with count_include_pad=1 where a window overhangs the padding is not "
                          "supported (ONNX divides it by a partial count); use count_include_pad=0, ceil_mode=0, "
                          "or pads that make the windows fit")
        pads = ceil
    if nd == 1:
        kernel, strides, dil, pads = _lift(kernel, 1), _lift(strides, 1), _lift(dil, 1), _lift(pads, 0)
    return {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dil}


def _pool(ctx: Context, node: onnx.NodeProto, op: str) -> None:
    src = ctx.need(node, 0)
    x = ctx.quantized(src, node.input[0])
    attrs = _pool_attrs(ctx, node, x)
    if op == "avgpool":
        if attrs.pop("dilations") != [1, 1]:
            raise ctx.err("dilated AveragePool is not supported; use dilations of 1")
        attrs.update(count_include_pad=int(ctx.attr(node, "count_include_pad", 0)), mult=1 << 30, shift=30)
    one_d = x.data.ndim == 3
    if one_d:
        x = _to_2d(ctx, x, node.output[0] + "_in2d")
    s = ctx.b.spec(x)
    out = ctx.b.add_node(op, [x.ref], node.output[0], DType.INT8, None, QParams(s.scale, s.zero_point), attrs,
                         ctx.env, node.name)
    out.onnx_dtype = src.onnx_dtype  # a uint8/int8 model tensor stays one (flipped back at the output)
    ctx.set(node, out)
    if one_d:
        _back_to_1d(ctx, node)


@lowering("MaxPool")
def lower_maxpool(ctx: Context, node: onnx.NodeProto) -> None:
    _pool(ctx, node, "maxpool")


@lowering("AveragePool")
def lower_avgpool(ctx: Context, node: onnx.NodeProto) -> None:
    _pool(ctx, node, "avgpool")


@lowering("GlobalAveragePool", "GlobalMaxPool")
def lower_global_pool(ctx: Context, node: onnx.NodeProto) -> None:
    src = ctx.need(node, 0)
    from .wide import is_wide  # (an int16 activation's mean is read directly: reduce takes any integer)

    x = src if node.op_type == "GlobalAveragePool" and is_wide(ctx, src) else ctx.quantized(src, node.input[0])
    if x.data.ndim < 3:
        raise ctx.err(f"{node.op_type} needs [N, C, spatial...], got shape {x.data.shape}")
    mode = REDUCE_MAX if node.op_type == "GlobalMaxPool" else REDUCE_MEAN
    _reduce(ctx, node, x, mode, list(range(2, x.data.ndim)), True)
    ctx.vals[node.output[0]].onnx_dtype = src.onnx_dtype


# ------------------------------------------------------------------------------ local response normalization


@lowering("LRN")
def lower_lrn(ctx: Context, node: onnx.NodeProto) -> None:
    """``y = x / (bias + alpha / size * sum of x^2 over the size neighbouring channels)^beta`` as
    ``square`` (a table), the channel-window sum (a 1x1 ``conv`` with 0/1 band weights), the divisor's
    reciprocal (a table built from the float32 programs of ``opml.f32prog``: IEEE operations and its
    square root, so every machine builds the same bytes; beta 0.5, 0.75 or 1) and a ``mul``."""
    from .. import f32prog
    from ..lut import dequant_grid, quantize
    from .lower import LOWERINGS

    x = ctx.quantized(ctx.need(node, 0), node.input[0])
    if x.data.ndim < 3:
        raise ctx.err(f"LRN needs [N, C, spatial...], got shape {x.data.shape}")
    size = int(ctx.attr(node, "size"))
    alpha, beta, bias = (float(ctx.attr(node, k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    if beta not in (0.5, 0.75, 1.0) or bias <= 0 or alpha < 0:
        raise ctx.err(f"LRN with beta={beta}, bias={bias}, alpha={alpha} is not supported (beta 0.5, 0.75 or 1, "
                      "bias > 0, alpha >= 0)")
    out, c = node.output[0], x.data.shape[1]
    shape4 = x.data.shape if x.data.ndim == 4 else None
    if shape4 is None:
        raise ctx.err("LRN is supported on [N, C, H, W]")
    sq_node = onnx.helper.make_node("Mul", [node.input[0], node.input[0]], [out + "_sq"])
    ctx.unary_from(sq_node, x, "square", {})
    lo_off, hi_off = (size - 1) // 2, -(-(size - 1) // 2)
    band = np.zeros((c, c, 1, 1))
    for ch in range(c):
        band[ch, max(0, ch - lo_off):min(c - 1, ch + hi_off) + 1, 0, 0] = 1.0
    sum_node = onnx.helper.make_node("Conv", [out + "_sq"], [out + "_sum"])
    conv(ctx, sum_node, ctx.vals[out + "_sq"], Val(band), None, [0, 0, 0, 0], False, group=1, strides=[1, 1],
         dilations=[1, 1])
    s = ctx.vals[out + "_sum"]
    spec = ctx.b.spec(s)

    def divisor(b, v):  # type: ignore[no-untyped-def]
        t = b.add(b.mul(v, b.c(alpha / size)), b.c(bias))
        t = b.where(b.lt(t, b.c(bias)), b.c(bias), t)  # the sum of squares is >= 0
        p = t if beta == 1.0 else f32prog.sqrt(b, t)
        if beta == 0.75:
            p = b.mul(p, f32prog.sqrt(b, p))
        return b.div(b.c(1.0), p)

    grid = f32prog.run(divisor, dequant_grid(spec.scale, spec.zero_point))
    real = grid.astype(np.float64)[s.data.astype(np.int64) + 128]
    div_node = onnx.helper.make_node("Reciprocal", [out + "_sum"], [out + "_div"])
    qp = ctx.out_qparams(div_node, real)
    ctx.vals[out + "_div"] = ctx.lut(s, quantize(grid, qp.scale, qp.zero_point), qp, out + "_div")
    ctx.vals[out + "_x"] = x
    LOWERINGS["Mul"](ctx, onnx.helper.make_node("Mul", [out + "_x", out + "_div"], [out], name=node.name))
