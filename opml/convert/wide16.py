"""int16 (13-bit) activations through convolutions and Clip: compositions of existing ops.

``conv`` reads only int8/uint8 inputs, ``lut`` too. A 13-bit int16 activation ``x`` (symmetric, zero
point 0, ``|x| <= 4095``: ``wide.WIDE_LIMIT``) chosen by ``--int16`` or ``--accuracy auto``
(``calibrate.py``, ``accuracy.py``) is read by a convolution as two int8 halves:

```
hi = add(x, 0; a_mult 1, shift 8)            = round_shift(x, 8)       int8 in [-16, 16], scale 256 s
lo = add(x, hi; a_mult 2, b_mult -512, shift 1) = x - 256 hi           int8 in [-128, 127], scale s
y_lo = conv(lo, W, bias) -> int16 at s_mid    y_hi = conv(hi, W, 0) -> int16 at s_mid
y  = add(y_hi, y_lo) -> the output's int8 (or int16) grid, with the Relu clamp
```

Both halves have zero point 0, so the zero padding of each is the real 0, and convolution is linear:
``conv(x) = conv(lo) + 256 conv(hi)`` exactly in the accumulators; the only roundings are each half's
requantization to the 13-bit grid ``s_mid`` (half a step each) and the final one. Cost: two
convolutions instead of one. ``Clip`` (ReLU6) and ``Relu`` of an int16 activation are an ``add`` of a
zero constant whose clamp is ``[rint(min / s), rint(max / s)]``, keeping int16.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..bundle import DType
from .builder import QParams, Val, requant_params
from .context import Context
from .wide import WIDE_LIMIT, is_wide, wide_sum_qparams

I16_MIN, I16_MAX = -32768, 32767


def _f64(scale: float) -> np.float64:
    return np.float64(np.float32(scale))


def add_requant(ctx: Context, a: Val, b: Val, out_name: str, qp: QParams, dtype: DType, lo: int, hi: int,
                name: str = "") -> Val:
    """``add`` of two activations (zero point 0 for int16 ones) onto ``qp``, clamped to ``[lo, hi]``."""
    sa, sb, so = _f64(ctx.b.spec(a).scale), _f64(ctx.b.spec(b).scale), _f64(qp.scale)
    big = max(sa, sb) / so
    shift = int(np.clip(30 - int(np.ceil(np.log2(big))) if big > 0 else 30, 1, 62))
    attrs = {"a_mult": int(np.rint(sa / so * 2.0**shift)), "b_mult": int(np.rint(sb / so * 2.0**shift)),
             "shift": shift, "qmin": lo, "qmax": hi}
    return ctx.b.add_node("add", [a.ref, b.ref], out_name, dtype, None, qp, attrs, ctx.env, name)


def conv_wide_input(ctx: Context, node: onnx.NodeProto, x: Val, wq: np.ndarray, sw: np.ndarray,
                    bias: np.ndarray | None, attrs: dict[str, object], relu: bool) -> None:
    """Lower a convolution of an int16 activation ``x`` by int8 weights ``wq`` (scales ``sw``) as above."""
    from .lower import _bias  # (lower imports this module)

    out = node.output[0]
    sx = _f64(ctx.b.spec(x).scale)
    zero = ctx.b.const(out + "_zero", np.zeros(1, dtype=np.int8))
    hi = ctx.b.add_node("add", [x.ref, zero], out + "_xhi", DType.INT8, None, QParams(float(sx * 256), 0),
                        {"a_mult": 1, "b_mult": 0, "shift": 8, "qmin": -128, "qmax": 127}, ctx.env)
    lo = ctx.b.add_node("add", [x.ref, hi.ref], out + "_xlo", DType.INT8, None, QParams(float(sx), 0),
                        {"a_mult": 2, "b_mult": -512, "shift": 1, "qmin": -128, "qmax": 127}, ctx.env)
    scale = sx * sw
    m = wq.shape[0]
    w_id = ctx.b.const(out + "_w", wq)
    b_lo = ctx.b.const(out + "_b", _bias(ctx, bias, m, scale))
    b_hi = ctx.b.const(out + "_b0", np.zeros(m, dtype=np.int32))
    accs = []
    for part, b_id in ((lo, b_lo), (hi, b_hi)):
        raw = ctx.b.add_node("conv", [part.ref, w_id, b_id], out + "_acc", DType.INT32, None, None,
                             dict(attrs, qmin=0, qmax=0), {**ctx.env})
        ctx.b.nodes.pop()
        accs.append(raw.data.astype(np.int64))
    real = (accs[0] + 256 * accs[1]).astype(np.float64) * scale.reshape(1, -1, 1, 1)
    mid = wide_sum_qparams(real)
    parts = []
    for part, b_id, k, tag in ((lo, b_lo, 1.0, "_ylo"), (hi, b_hi, 256.0, "_yhi")):
        mult, shift = requant_params(k * scale / _f64(mid.scale))
        ins = [part.ref, w_id, b_id, ctx.b.const(out + tag + "_mult", mult), ctx.b.const(out + tag + "_shift", shift)]
        parts.append(ctx.b.add_node("conv", ins, out + tag, DType.INT16, None, mid,
                                    dict(attrs, qmin=I16_MIN, qmax=I16_MAX), ctx.env))
    if out in ctx.accuracy.int16:
        ctx.int16_done.add(out)
        y = add_requant(ctx, parts[1], parts[0], out, mid, DType.INT16, 0 if relu else -WIDE_LIMIT, WIDE_LIMIT,
                        node.name)
    else:
        qp = ctx.out_qparams(node, real, relu)
        y = add_requant(ctx, parts[1], parts[0], out, qp, DType.INT8, qp.zero_point if relu else -128, 127, node.name)
    ctx.set(node, y)


def clip_wide(ctx: Context, node: onnx.NodeProto, x: Val, lo: float, hi: float) -> bool:
    """Clip (or Relu: ``lo = 0, hi = inf``) of an int16 activation as a clamping ``add``; False if not int16."""
    if not is_wide(ctx, x) or ctx.b.spec(x).zero_point != 0:
        return False
    s = _f64(ctx.b.spec(x).scale)
    qlo = int(np.clip(np.ceil(lo / s - 0.5) if np.isfinite(lo) else I16_MIN, I16_MIN, I16_MAX))
    qhi = int(np.clip(np.floor(hi / s + 0.5) if np.isfinite(hi) else I16_MAX, I16_MIN, I16_MAX))
    zero = ctx.b.const(node.output[0] + "_zero", np.zeros(1, dtype=np.int8))
    qp = QParams(float(s), 0)
    ctx.set(node, ctx.b.add_node("add", [x.ref, zero], node.output[0], DType.INT16, None, qp,
                                 {"a_mult": 2, "b_mult": 0, "shift": 1, "qmin": qlo, "qmax": max(qlo, qhi)},
                                 ctx.env, node.name))
    return True
