"""LSTM and GRU, unrolled over their static sequence length into standard ONNX nodes that the converter
then lowers as usual (linear, add, mul, lookup tables; no new primitive).

The input projection of every step is one ``linear`` over the whole sequence (``x W^T + Wb + Rb``,
batch first); each step then gathers its slice, adds the recurrent projection ``h R^T`` (a ``linear``;
skipped at the first step when the initial state is zero) and applies the gates:

- LSTM (gates i, o, f, c): ``C = f * C_prev + i * tanh(g_c)``, ``H = o * tanh(C)`` with
  ``i, o, f = sigmoid(...)``. The cell gate's weights and biases are doubled, so that one sigmoid table
  over all four gates (``AievmLstmGates``: a ``lut`` and a ``slice`` per gate) also gives
  ``sigmoid(2 g_c) = (1 + tanh g_c) / 2``: on the int8 grid of scale 1/254 and zero point -127 the same
  bytes read with scale 1/127 and zero point 0 are ``tanh g_c``;
- GRU (gates z, r, h): ``h~ = tanh(x Wh^T + (r * h_prev) Rh^T + Rbh + Wbh)`` (``linear_before_reset=0``) or
  ``tanh(x Wh^T + r * (h_prev Rh^T + Rbh) + Wbh)`` (``=1``, PyTorch's: one recurrent ``linear`` for all three
  gates), ``H = (1 - z) * h~ + z * h_prev``; z and r share one ``add`` and one sigmoid table.

Each intermediate gets its own int8 scale from calibration, as any activation does (the gate
sigmoids: the fixed grid above); the quantization error therefore accumulates over the steps.
Supported: the default activations, directions forward, reverse and bidirectional, ``layout`` 1 (batch
first) with any batch, ``layout`` 0 with a fixed batch, initial states (constants or inputs), no
``sequence_lens`` (or all equal to the sequence length), no peepholes, ``clip`` or ``input_forget``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..lut import unary_lut
from .builder import QParams, Val, choose_qparams
from .calibrate import choose_range
from .context import Context
from .lower import lowering

_DEFAULT = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


class _Emit:
    """Collects nodes and constants with unique names under a prefix."""

    def __init__(self, ctx: Context, prefix: str, grids: dict[tuple[int, str], QParams] | None = None) -> None:
        self.ctx, self.prefix, self.nodes, self.k = ctx, prefix, [], 0  # type: ignore[var-annotated]
        self.d = 0  # the direction being unrolled
        self.grids = grids  # one grid per (direction, tag) of _LAYER_GRID, or None: record their names
        self.shared: dict[tuple[int, str], list[str]] = {}

    def name(self, tag: str) -> str:
        self.k += 1
        return f"{self.prefix}_{tag}{self.k}"

    def const(self, tag: str, arr: np.ndarray) -> str:
        n = self.name(tag)
        self.ctx.vals[n] = Val(arr, onnx_dtype=arr.dtype)
        return n

    def op(self, op: str, ins: list[str], tag: str, domain: str = "", out: str | None = None, **attrs: object) -> str:
        o = out or self.name(tag)
        n = helper.make_node(op, ins, [o], domain=domain)
        n.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(n)
        if tag in _LAYER_GRID:
            if self.grids is None:
                self.shared.setdefault((self.d, tag), []).append(o)
            elif (self.d, tag) in self.grids:
                self.ctx.preferred[o] = self.grids[(self.d, tag)]
        return o

    def linear(self, x: str, w: np.ndarray, b: np.ndarray | None, tag: str) -> str:
        """``x @ w + b`` (``x`` an activation; a constant ``x`` folds through MatMul/Add)."""
        ws = self.const(tag + "_w", np.ascontiguousarray(w, dtype=np.float32))
        if x not in self.ctx.vals or not self.ctx.vals[x].is_const:  # (emitted names are activations)
            bias = np.zeros(w.shape[1], dtype=np.float32) if b is None else np.ascontiguousarray(b, dtype=np.float32)
            return self.op("AievmLinear", [x, ws, self.const(tag + "_b", bias)], tag, domain="aievm")
        y = self.op("MatMul", [x, ws], tag)
        return y if b is None else self.op("Add", [y, self.const(tag + "_b", b.astype(np.float32))], tag)


def _check(ctx: Context, node: onnx.NodeProto) -> None:
    allowed = {"hidden_size", "direction", "layout", "activations", "linear_before_reset"}
    for a in node.attribute:
        if a.name not in allowed:
            raise ctx.err(f"attribute {a.name!r} is not supported (hidden_size, direction, layout, the default "
                          "activations and linear_before_reset are)")
    acts = [a.decode() if isinstance(a, bytes) else a for a in ctx.attr(node, "activations", [])]
    n_dir = 2 if ctx.attr(node, "direction", b"forward") in (b"bidirectional", "bidirectional") else 1
    if acts and [a.lower() for a in acts] != [a.lower() for a in _DEFAULT[node.op_type] * n_dir]:
        raise ctx.err(f"activations {acts} are not supported (only the defaults {_DEFAULT[node.op_type]})")
    if node.op_type == "LSTM" and len(node.input) > 7 and node.input[7]:
        p = ctx.need(node, 7)
        if not p.is_const or np.any(np.asarray(p.data)):
            raise ctx.err("peepholes (input P) are not supported")


def _state(ctx: Context, node: onnx.NodeProto, i: int, d: int, layout: int, e: _Emit) -> str | None:
    """Direction ``d``'s initial state [N, H] (None when absent or all zero)."""
    v = ctx.get(node, i)
    if v is None or (v.is_const and not np.any(np.asarray(v.data))):
        return None
    if v.is_const:
        return e.const("h0", np.ascontiguousarray(np.take(np.asarray(v.data, dtype=np.float32), d, axis=layout)))
    idx = e.const("dir", np.array(d, dtype=np.int64))
    return e.op("Gather", [node.input[i], idx], "h0", axis=1 if layout else 0)


# the per-step values whose range is not bounded a priori (recurrent products, pre-activations, the LSTM cell):
# one grid per layer and direction, the union of their per-step calibrated ranges
_LAYER_GRID = frozenset({"hr", "hzr", "hh", "g", "gzr", "rh", "ph", "fc", "c"})


def expand(ctx: Context, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Standard ONNX nodes computing the LSTM/GRU ``node`` unrolled (constants registered in ``ctx``).

    A layer of several steps is unrolled twice: the first unrolling is lowered (calibrated step by step as
    usual) only to learn the range of each of its ``_LAYER_GRID`` values over all steps, then undone; the
    second gives each such value one grid for all steps (the union). With every other step value on a fixed
    grid, each step's ``mul``/``add`` nodes then have the same parameters at every step (the same tables)."""
    snap = _Snapshot(ctx)
    nodes, shared = _unroll(ctx, node, None)
    if not shared:
        return nodes
    from . import _lower_nodes

    _lower_nodes(ctx, nodes)
    grids = {key: _union_grid(ctx, acts) for key, names in shared.items()
             if (acts := [n for n in names if not ctx.vals[n].is_const])}  # (a constant h0 folds step 0's h R^T)
    snap.restore(ctx)
    return _unroll(ctx, node, grids)[0]


class _Snapshot:
    """The conversion state before a trial lowering, to undo it (tensors, nodes, names, values, choices)."""

    def __init__(self, ctx: Context) -> None:
        b = ctx.b
        self.nt, self.nn, self.cache, self.names = len(b.tensors), len(b.nodes), dict(b._const_cache), set(b._names)
        self.vals, self.env, self.preferred = dict(ctx.vals), set(ctx.env), dict(ctx.preferred)
        self.int8_of, self.ahead, self.int16 = dict(ctx._int8_of), set(ctx.lowered_ahead), set(ctx.int16_done)
        self.readers, self.current = list(ctx.int8_readers), ctx.current

    def restore(self, ctx: Context) -> None:
        b = ctx.b
        del b.tensors[self.nt:], b.nodes[self.nn:]
        b._const_cache.clear()
        b._const_cache.update(self.cache)
        ctx.vals.clear()
        ctx.vals.update(self.vals)
        ctx.preferred.clear()
        ctx.preferred.update(self.preferred)
        ctx._int8_of.clear()
        ctx._int8_of.update(self.int8_of)
        for now, was in ((b._names, self.names), (ctx.lowered_ahead, self.ahead), (ctx.int16_done, self.int16)):
            now.clear()
            now.update(was)
        for k in [k for k in ctx.env if k not in self.env]:
            del ctx.env[k]
        ctx.int8_readers[:] = self.readers
        ctx.current = self.current


def _union_grid(ctx: Context, names: list[str]) -> QParams:
    """The int8 grid of the values of ``names`` over all steps (the conversion's range method)."""
    real = np.concatenate([ctx.dequant(ctx.vals[n]).reshape(-1) for n in names])
    return choose_qparams(*choose_range(ctx.accuracy.method, real))


def _unroll(ctx: Context, node: onnx.NodeProto, grids: dict[tuple[int, str], QParams] | None
            ) -> tuple[list[onnx.NodeProto], dict[tuple[int, str], list[str]]]:
    """The nodes of the unrolled layer, and (``grids`` None, several steps) the names of its per-step values
    by (direction, tag)."""
    _check(ctx, node)
    lstm = node.op_type == "LSTM"
    ng = 4 if lstm else 3
    layout = int(ctx.attr(node, "layout", 0))
    x = ctx.raw(node, 0)
    xb = node.input[0]
    batch_first_x = False
    if x is not None and x.pending is not None and layout == 0 and tuple(x.pending) == (1, 0, 2):
        # a batch-first tensor seen through Transpose(1, 0, 2) (what LSTM(batch_first=True) exports): read the
        # batch-first tensor itself; the outputs keep the node's layout (pending transposed views again)
        xb = f"{node.output[0] or node.name}_batch_first_x"
        ctx.vals[xb] = Val(x.data, x.tid, onnx_dtype=x.onnx_dtype, qinfo=x.qinfo)
        batch_first_x = True
    x = ctx.need(node, 0) if not batch_first_x else ctx.vals[xb]
    if np.dtype(x.onnx_dtype).kind != "f" or x.data.ndim != 3:
        raise ctx.err(f"{node.op_type} expects a float [seq, batch, input] or [batch, seq, input] tensor")
    if layout == 0 and ctx.b.batch and not batch_first_x:
        raise ctx.err("layout=0 puts the batch on axis 1, which a dynamic batch cannot follow; export with "
                      "batch_first=True (layout=1) or convert with a fixed batch")
    if len(node.input) > 4 and node.input[4]:
        sl = ctx.need(node, 4)
        seq = x.data.shape[1 if layout or batch_first_x else 0]
        if not sl.is_const or np.any(np.asarray(sl.data) != seq):
            raise ctx.err("sequence_lens other than the full sequence length is not supported")
    w = np.asarray(ctx.const_of(node, 1, "W"), dtype=np.float64)
    r = np.asarray(ctx.const_of(node, 2, "R"), dtype=np.float64)
    hsz = int(ctx.attr(node, "hidden_size", r.shape[-1]))
    n_dir = w.shape[0]
    b_in = ctx.get(node, 3)
    bias = np.zeros((n_dir, 2 * ng * hsz)) if b_in is None else np.asarray(ctx.const_of(node, 3, "B"), dtype=np.float64)
    direction = ctx.attr(node, "direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if (direction == "bidirectional") != (n_dir == 2) or w.shape[1] != ng * hsz or r.shape[1:] != (ng * hsz, hsz):
        raise ctx.err(f"weights {w.shape}, {r.shape} do not match hidden_size {hsz} and direction {direction}")
    e = _Emit(ctx, node.output[0] or node.name or node.op_type, grids)
    if layout == 0 and not batch_first_x:  # [S, N, I] -> [N, S, I] (fixed batch only)
        xb = e.op("Transpose", [xb], "xb", perm=[1, 0, 2])
    steps = x.data.shape[1 if layout or batch_first_x else 0]
    # one grid for every h when Y concatenates several (steps or directions); one h keeps its calibrated grid
    hq = None if steps == 1 and n_dir == 1 else _H_Q if lstm else _gru_grid(ctx, node)
    ys, hs, cs = [], [], []
    wide_c = False
    for d in range(n_dir):
        e.d = d
        reverse = direction == "reverse" or d == 1
        wb, rb = bias[d, :ng * hsz], bias[d, ng * hsz:]
        if lstm:  # the cell gate doubled: one sigmoid table also gives (1 + tanh g) / 2 (AievmLstmGates)
            wd, rd, pb = w[d].copy(), r[d].copy(), wb + rb
            for a in (wd, rd, pb):
                a[3 * hsz:] *= 2.0
            proj = e.linear(xb, wd.T, pb, "xw")
        else:  # GRU: the h gate's recurrent bias stays with the recurrent term when linear_before_reset
            lbr = bool(ctx.attr(node, "linear_before_reset", 0))
            pb = wb + rb
            if lbr:
                pb = pb.copy()
                pb[2 * hsz:] = wb[2 * hsz:]
            proj = e.linear(xb, w[d].T, pb, "xw")
        h = _state(ctx, node, 5, d, layout, e)
        c = _state(ctx, node, 6, d, layout, e) if lstm else None
        if WIDE_STATE and c is not None and steps == 1 and n_dir == 1 and c not in ctx.vals:  # carried: int16
            c = e.op("AievmWideState", [c], "cw", domain="aievm")
            wide_c = True
        outs: list[str] = []
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            xt = e.op("Gather", [proj, e.const("t", np.array(t, dtype=np.int64))], "xt", axis=1)
            if lstm:
                h, c = _lstm_step(e, xt, h, c, rd, hsz, hq is not None)
            else:
                h = _gru_step(e, xt, h, r[d], rb, hsz, bool(ctx.attr(node, "linear_before_reset", 0)), hq)
            if hq is not None:
                ctx.preferred[h] = hq
            outs.append(h)
        if reverse:
            outs.reverse()
        assert h is not None
        ax = e.const("ax", np.array([1], dtype=np.int64))
        seq = [e.op("Unsqueeze", [o, ax], "yt") for o in outs]
        ys.append(e.op("Concat", seq, "y", axis=1) if len(seq) > 1 else seq[0])  # [N, S, H]
        if hq is not None:
            ctx.preferred[ys[-1]] = hq
        hs.append(h)
        cs.append(c)
    if wide_c:  # Y_h and Y_c in float32, each part dequantized from its own grid (the state output's Concat)
        hs = [e.op("AievmDequantize", [hs[0]], "hf", domain="aievm")]
        cs = [e.op("AievmDequantize", [cs[0]], "cf", domain="aievm")] if cs[0] is not None else cs
    _outputs(ctx, node, e, ys, hs, cs, layout, hq)
    return e.nodes, e.shared if steps > 1 else {}


def _outputs(ctx: Context, node: onnx.NodeProto, e: _Emit, ys: list[str], hs: list[str],
             cs: list[str | None], layout: int, hq: QParams | None) -> None:
    """Y [N, S, D, H] / [S, D, N, H], Y_h and Y_c [N, D, H] / [D, N, H] from the per-direction results (the two
    directions' Y and Y_h on the shared h grid ``hq`` when there is one: no requantization)."""
    outs = list(node.output) + [""] * 3

    def stack(parts: list[str], axis: int, out: str, final_perm: list[int] | None, grid: QParams | None) -> None:
        ax = e.const("ax", np.array([axis], dtype=np.int64))
        us = [e.op("Unsqueeze", [p, ax], "u") for p in parts]
        cat = e.op("Concat", us, "cat", out=out if final_perm is None else None, axis=axis) if len(us) > 1 else us[0]
        if len(us) > 1 and grid is not None:
            ctx.preferred.setdefault(cat, grid)
        if final_perm is not None:
            e.op("Transpose", [cat], "tr", out=out, perm=final_perm)
        elif len(us) == 1:
            e.op("Identity", us, "id", out=out)

    if outs[0]:
        stack(ys, 2, outs[0], None if layout else [1, 2, 0, 3], hq)
    if outs[1]:
        stack(hs, 1, outs[1], None if layout else [1, 0, 2], hq)
    if outs[2]:
        if any(c is None for c in cs):
            raise ctx.err("Y_c is only an LSTM output")
        stack([c for c in cs if c is not None], 1, outs[2], None if layout else [1, 0, 2], None)


# sigmoid on [0, 1] as int8 [-127, 127]: a value q read with scale 1/127 and zero point 0 is 2 sigmoid - 1
_SIGMOID_Q = QParams(float(np.float32(1 / 254)), -127)
_TANH_VIEW_Q = QParams(float(np.float32(1 / 127)), 0)  # (float32(1/127) == 2 float32(1/254) exactly)
_H_Q = _TANH_VIEW_Q  # every LSTM output h = o tanh(C) is in (-1, 1): one grid, so Y concatenates without requantizing


def _lstm_step(e: _Emit, xt: str, h: str | None, c: str | None, r: np.ndarray, hsz: int,
               fixed: bool) -> tuple[str, str]:
    """One step: ``g = x_t W^T + h R^T + b`` (gates i, o, f, 2c), one sigmoid table over all of ``g``
    (``AievmLstmGates``), ``C = f * C_prev + i * tanh(g_c)``, ``H = o * tanh(C)``. ``fixed``: ``i tanh(g_c)``
    and ``tanh(C)`` on the grid 1/127 of (-1, 1), so the two muls have the same parameters at every step."""
    g = xt if h is None else e.op("Add", [xt, e.linear(h, r.T, None, "hr")], "g")
    i, o, f, cand = (e.name(t) for t in ("i", "o", "f", "tc"))
    node = helper.make_node("AievmLstmGates", [g], [i, o, f, cand], domain="aievm", hidden_size=hsz)
    e.nodes.append(node)
    ic = e.op("Mul", [i, cand], "ic")
    c_new = ic if c is None else e.op("Add", [e.op("Mul", [f, c], "fc"), ic], "c")
    th = e.op("Tanh", [c_new], "th")
    if fixed:
        e.ctx.preferred[ic] = e.ctx.preferred[th] = _H_Q
    return e.op("Mul", [o, th], "h"), c_new


@lowering("AievmLstmGates")
def lower_lstm_gates(ctx: Context, node: onnx.NodeProto) -> None:
    """The gates of an LSTM step from its pre-activations ``g`` [N, 4H] (i, o, f and the cell gate doubled):
    one ``lut`` (sigmoid, int8 scale 1/254, zero point -127) and a ``slice`` per gate. The cell gate's slice
    reads the same bytes with scale 1/127 and zero point 0: ``2 sigmoid(2 g) - 1 = tanh(g)``."""
    from ..bundle import DType

    g = ctx.quantized(ctx.need(node, 0), node.output[0] + "_in")
    hsz = int(ctx.attr(node, "hidden_size"))
    if g.data.ndim != 2 or g.data.shape[1] != 4 * hsz:
        raise ctx.err(f"gate pre-activations of shape {g.data.shape} do not hold 4 x {hsz} gates")
    s = ctx.b.spec(g)
    table = unary_lut("sigmoid", {}, s.scale, s.zero_point, _SIGMOID_Q.scale, _SIGMOID_Q.zero_point)
    sg = ctx.lut(g, table, _SIGMOID_Q, node.output[0] + "_sigmoid")
    n = 1 << 62 if ctx.b.batch else g.data.shape[0]
    for k, out in enumerate(node.output):
        qp = _TANH_VIEW_Q if k == 3 else _SIGMOID_Q
        v = ctx.b.add_node("slice", [sg.ref], out, DType.INT8, None, qp,
                           {"starts": [0, k * hsz], "ends": [n, (k + 1) * hsz], "steps": [1, 1]}, ctx.env, node.name)
        ctx.vals[out] = v


def _gru_grid(ctx: Context, node: onnx.NodeProto) -> QParams:
    """The int8 grid of every GRU output h: ``H = (1 - z) h~ + z H_prev`` stays within ``max(1, |h0|)``."""
    v = ctx.get(node, 5)
    if v is None:
        return _H_Q
    real = np.asarray(v.data, dtype=np.float64) if v.is_const or v.data.dtype.kind == "f" else ctx.dequant(v)
    lo, hi = choose_range("minmax", real) if real.size else (0.0, 0.0)  # (all batches' range in a lockstep run)
    bound = max(1.0, -lo, hi)
    return QParams(float(np.float32(bound / 127)), 0)


def _gru_step(e: _Emit, xt: str, h: str | None, r: np.ndarray, rb: np.ndarray, hsz: int, lbr: bool,
              hq: QParams | None) -> str:
    """One step (``hq``: the shared h grid; then z, r, 1 - z, h~, (1 - z) h~ and z H_prev are on fixed grids
    too, so the step's muls and final add have the same parameters at every step)."""
    if h is None:  # h_prev = 0: the recurrent products vanish (but r * Rbh with linear_before_reset)
        xz, xr, xh = _split(e, xt, [hsz] * 3, "xg")
        z = e.op("Sigmoid", [xz], "z")
        pre = xh
        if lbr and np.any(rb[2 * hsz:]):
            rr = e.op("Sigmoid", [xr], "r")
            pre = e.op("Add", [xh, e.op("Mul", [rr, e.const("rbh", rb[2 * hsz:].astype(np.float32))], "rh")], "ph")
    else:  # z and r: one add and one sigmoid table over [N, 2H]; linear_before_reset: one recurrent linear
        xzr, xh = _split(e, xt, [2 * hsz, hsz], "xg")
        if lbr:
            hzr, hh = _split(e, e.linear(h, r.T, np.concatenate([np.zeros(2 * hsz), rb[2 * hsz:]]), "hr"),
                             [2 * hsz, hsz], "hg")
        else:
            hzr = e.linear(h, r[:2 * hsz].T, None, "hzr")
        szr = e.op("Sigmoid", [e.op("Add", [xzr, hzr], "gzr")], "szr")
        if hq is not None:
            e.ctx.preferred[szr] = _SIGMOID_Q
        z, rr = _split(e, szr, [hsz, hsz], "zr")
        if lbr:
            pre = e.op("Add", [xh, e.op("Mul", [rr, hh], "rh")], "ph")
        else:
            hh = e.linear(e.op("Mul", [rr, h], "rh"), r[2 * hsz:].T, None, "hh")
            pre = e.op("Add", [xh, hh], "ph")
    cand = e.op("Tanh", [pre], "hc")
    one = e.const("one", np.array(1.0, dtype=np.float32))
    nz = e.op("Sub", [one, z], "nz")
    zc = e.op("Mul", [nz, cand], "zc")
    if h is None:
        return zc
    zh = e.op("Mul", [z, h], "zh")
    if hq is not None:
        for t, q in ((cand, _H_Q), (nz, _SIGMOID_Q), (zc, _H_Q), (zh, hq)):
            e.ctx.preferred[t] = q
    return e.op("Add", [zc, zh], "h")


def _split(e: _Emit, x: str, sizes: list[int], tag: str) -> list[str]:
    """``Split`` of ``x`` [N, sum(sizes)] along axis 1."""
    names = [e.name(tag) for _ in sizes]
    e.nodes.append(helper.make_node("Split", [x, e.const("split", np.array(sizes, dtype=np.int64))], names, axis=1))
    return names


# a single-step layer's cell state input (an activation: a state carried between calls) on an int16 grid; off:
# on int8 as any activation (tests compare the two)
WIDE_STATE = True
# the carried cell state's int16 grid: |q| <= 255 * _STATE_HALF_WINDOWS (2 * that many int8 windows)
_STATE_HALF_WINDOWS = 8


@lowering("AievmWideState")
def lower_wide_state(ctx: Context, node: onnx.NodeProto) -> None:
    """A float32 state input onto a fine symmetric int16 grid ``s`` (zero point 0) with int8 ``quantize``s only.

    ``2 M`` quantizes of the same input with scale ``s`` and zero points ``zp_k = -128 - 255 (k - M)`` each
    saturate in turn: ``q_k - zp_k = clamp(rint(x / s), 255 (k - M), 255 (k - M + 1))``. Their sum is
    ``rint(x / s)`` plus the interior window bounds ``255 (1 - M) .. 255 (M - 1)``, which cancel: exactly
    ``clamp(rint(x / s), -255 M, 255 M)``. ``2 M - 1`` int16 ``add``s (multipliers 2, shift 1) sum them."""
    from ..bundle import DType
    from .lockstep import merged_range
    from .wide import WIDE_LIMIT

    x = ctx.need(node, 0)
    if x.is_const or ctx.b.spec(x).dtype != DType.FLOAT32:
        raise ctx.err("AievmWideState expects a float32 activation")
    m = _STATE_HALF_WINDOWS
    assert 255 * m <= WIDE_LIMIT
    real = np.asarray(x.data, dtype=np.float64)
    top = float(np.abs(real).max()) if real.size else 0.0
    top = merged_range(-top, top)[1]  # (several calibration batches in lockstep: all of them)
    qp = QParams(float(np.float32(max(top, 1e-8) / (255 * m))), 0)
    out = node.output[0]
    # windows k and 2M - 1 - k first: their bounds sum to -255, so each pair's sum is in [-255, 255] and every
    # partial sum of the tree within 255 M (the sum of windows in order would reach far beyond the int16 clamp)
    order = [k for j in range(m) for k in (j, 2 * m - 1 - j)]
    parts = [ctx.b.add_node("quantize", [x.ref], f"{out}_w{k}", DType.INT8, None,
                            QParams(qp.scale, -128 - 255 * (k - m)), {}, ctx.env, node.name) for k in order]
    attrs = {"a_mult": 2, "b_mult": 2, "shift": 1, "qmin": -WIDE_LIMIT, "qmax": WIDE_LIMIT}
    k = 0
    while len(parts) > 1:  # a balanced tree of exact sums
        a, b = parts.pop(0), parts.pop(0)
        name = out if not parts else f"{out}_s{k}"
        k += 1
        parts.append(ctx.b.add_node("add", [a.ref, b.ref], name, DType.INT16, None, qp, attrs, ctx.env, node.name))
    v = parts[0]
    v.onnx_dtype = np.dtype(np.float32)
    ctx.set(node, v)


@lowering("AievmDequantize")
def lower_dequantize_value(ctx: Context, node: onnx.NodeProto) -> None:
    """A quantized activation as float32 on its own grid (``dequantize``)."""
    from ..bundle import DType

    x = ctx.need(node, 0)
    if x.is_const or ctx.b.spec(x).dtype == DType.FLOAT32:
        return ctx.set(node, x)
    v = ctx.b.add_node("dequantize", [x.ref], node.output[0], DType.FLOAT32, None, None, {}, ctx.env, node.name)
    v.onnx_dtype = np.dtype(np.float32)
    ctx.set(node, v)

