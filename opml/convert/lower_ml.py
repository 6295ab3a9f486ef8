"""Tree ensembles (ai.onnx.ml ``TreeEnsembleClassifier`` / ``TreeEnsembleRegressor``, as skl2onnx exports
decision trees, random forests and gradient boosting) lowered onto three ``linear`` ops, exact in integers.

Every tree of the ensemble is evaluated at once, with no new primitive:

1. **Comparisons.** The features are int8: an int8 activation as it comes, or a float32 input quantized
   *per feature* (``slice`` + ``quantize`` + ``concat``) on a grid spanning that feature's thresholds (so
   the thresholds are resolved to 1/250 of their spread, whatever the other features' ranges are; when
   there are several grids a ``gather`` keeps each feature's own column of their concat). A
   test ``x_f <= t`` on the grid of scale ``s``, zero point ``z`` is the integer test ``q_f <= K`` with
   ``K = floor(z + t / s)`` (exact for the dequantized value ``s (q_f - z)``; ``<``, ``>=``, ``>`` likewise
   with ceil). One ``linear`` computes every node's ``acc = 2 a (q_f - K) + 1`` (``a = -1`` for ``<=``,
   ``+1`` for ``>=``; weights ``2 a`` in the feature's row, bias from ``K``): odd, so ``>= 1`` when the
   test holds and ``<= -1`` when not; multiplier 1 and the clamp to [0, 1] give the 0/1 indicator ``d``
   (one ``linear`` for every tree, a ``slice`` of d per block of trees in step 2).
2. **Leaves.** With ``C[m, l] = +1`` when leaf ``l`` lies under node ``m``'s true branch, ``-1`` under
   its false branch, 0 otherwise, and ``E_l`` the number of true branches on leaf ``l``'s path,
   ``d @ C <= E_l`` with equality exactly on the reached leaf. A second ``linear`` (weights ``2 C``, bias
   ``1 - 2 E``, clamp [0, 1]) gives the one-hot leaf indicator ``h`` (one 1 per tree).
3. **Values.** ``h @ V + base``: the leaf values as int8 weights (one scale for all columns, so integer
   scores compare as the real ones do) with ``int32`` accumulators for the label (``argmax``, or the
   binary threshold test as a third 0/1 ``linear``), and per-column weights requantized to int8 for the
   probabilities / regression output, followed by the post transform (``Softmax``, ``Sigmoid``, the
   binary ``[1 - p, p]`` / ``[-s, s]`` columns) through the converter's usual lowerings.

A tree fed by a ``Scaler`` on a float input compares the raw input against the thresholds mapped back
through the scaler (``(x - o) c <= t`` is ``x <= t / c + o`` for ``c > 0``, ``>=`` for ``c < 0``), so
the scaled values are never rounded to one grid for all features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import helper

from ..bundle import DType
from .builder import QParams, Val, requant_params
from .context import Context
from .lower import LOWERINGS, _emit_requant

ML_LOWERINGS: dict[str, Callable[[Context, onnx.NodeProto], None]] = {}

_LE, _GE = -1, 1  # direction a of a comparison: [a (q - K) >= 0]
_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT")
_GRID = 125  # a feature's thresholds span [-_GRID, _GRID] of its int8 grid (values beyond clamp to +-128)


@dataclass(frozen=True)
class Ensemble:
    """The trees in matrix form: internal nodes (feature, threshold, mode), leaf paths, leaf values."""

    features: np.ndarray  # [M] feature index of each internal node
    thresholds: np.ndarray  # [M] float64
    modes: tuple[str, ...]  # [M]
    paths: np.ndarray  # [M, L] +1 (true branch), -1 (false branch), 0
    values: np.ndarray  # [L, columns] float64 leaf contributions
    trees: int
    node_tree: np.ndarray  # [M] the tree of each internal node (0 .. trees - 1)
    leaf_tree: np.ndarray  # [L] the tree of each leaf


def _str(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _attr_array(ctx: Context, node: onnx.NodeProto, name: str, dtype: type) -> np.ndarray:
    v = ctx.attr(node, name + "_as_tensor")
    if v is not None:
        return np.asarray(onnx.numpy_helper.to_array(v), dtype=dtype).reshape(-1)
    return np.asarray(ctx.attr(node, name, []), dtype=dtype).reshape(-1)


def parse_ensemble(ctx: Context, node: onnx.NodeProto, prefix: str, columns: int) -> Ensemble:
    """The ensemble of a TreeEnsemble node; ``prefix`` is ``class`` or ``target`` (the leaf weights)."""
    tree_ids = _attr_array(ctx, node, "nodes_treeids", np.int64)
    node_ids = _attr_array(ctx, node, "nodes_nodeids", np.int64)
    feat = _attr_array(ctx, node, "nodes_featureids", np.int64)
    vals = _attr_array(ctx, node, "nodes_values", np.float64)
    modes = [_str(m) for m in ctx.attr(node, "nodes_modes", [])]
    t_ids = _attr_array(ctx, node, "nodes_truenodeids", np.int64)
    f_ids = _attr_array(ctx, node, "nodes_falsenodeids", np.int64)
    n = len(modes)
    if not n or any(len(a) != n for a in (tree_ids, node_ids, feat, vals, t_ids, f_ids)):
        raise ctx.err("the nodes_* attributes are missing or of different lengths")
    bad = sorted({m for m in modes if m not in _MODES and m != "LEAF"})
    if bad:
        raise ctx.err(f"node modes {bad} are not supported (BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT are); "
                      "export the trees with ordered splits")
    if not np.isfinite(vals).all():
        raise ctx.err("a threshold is NaN or infinite")
    index = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(tree_ids, node_ids, strict=True))}
    if len(index) != n:
        raise ctx.err("duplicate (tree, node) ids")
    w_tree = _attr_array(ctx, node, prefix + "_treeids", np.int64)
    w_node = _attr_array(ctx, node, prefix + "_nodeids", np.int64)
    w_col = _attr_array(ctx, node, prefix + "_ids", np.int64)
    w_val = _attr_array(ctx, node, prefix + "_weights", np.float64)
    if not (len(w_tree) == len(w_node) == len(w_col) == len(w_val)):
        raise ctx.err(f"the {prefix}_* attributes have different lengths")
    if len(w_col) and (w_col.min() < 0 or w_col.max() >= columns):
        raise ctx.err(f"{prefix}_ids outside [0, {columns})")
    if not np.isfinite(w_val).all():
        raise ctx.err("a leaf weight is NaN or infinite")
    internal = [k for k in range(n) if modes[k] != "LEAF"]
    leaves = [k for k in range(n) if modes[k] == "LEAF"]
    col_of = {k: j for j, k in enumerate(internal)}
    leaf_of = {k: j for j, k in enumerate(leaves)}
    paths = np.zeros((len(internal), len(leaves)), dtype=np.int64)
    children = set()
    for k in internal:
        for c in (t_ids[k], f_ids[k]):
            if (int(tree_ids[k]), int(c)) not in index:
                raise ctx.err(f"tree {tree_ids[k]} node {node_ids[k]} points to a missing node {c}")
            children.add(index[(int(tree_ids[k]), int(c))])
    roots = [k for k in range(n) if k not in children]
    if len({int(tree_ids[k]) for k in roots}) != len(roots) or {int(tree_ids[k]) for k in roots} != set(
            tree_ids.tolist()):
        raise ctx.err("every tree must have exactly one root")
    for root in roots:  # walk each tree, recording every leaf's path
        stack: list[tuple[int, list[tuple[int, int]]]] = [(root, [])]
        seen = 0
        while stack:
            k, path = stack.pop()
            seen += 1
            if seen > n:
                raise ctx.err(f"tree {tree_ids[root]} has a cycle")
            if modes[k] == "LEAF":
                for m, sign in path:
                    paths[m, leaf_of[k]] = sign
                continue
            t = int(tree_ids[k])
            stack.append((index[(t, int(t_ids[k]))], path + [(col_of[k], 1)]))
            stack.append((index[(t, int(f_ids[k]))], path + [(col_of[k], -1)]))
    values = np.zeros((len(leaves), columns), dtype=np.float64)
    for t, i, c, w in zip(w_tree, w_node, w_col, w_val, strict=True):
        at = index.get((int(t), int(i)))
        if at is None or modes[at] != "LEAF":
            raise ctx.err(f"a {prefix} weight names tree {t} node {i}, which is not a leaf")
        values[leaf_of[at], int(c)] += w
    order = {int(tree_ids[r]): i for i, r in enumerate(roots)}
    return Ensemble(feat[internal], vals[internal], tuple(modes[k] for k in internal), paths, values, len(roots),
                    np.array([order[int(tree_ids[k])] for k in internal], dtype=np.int64),
                    np.array([order[int(tree_ids[k])] for k in leaves], dtype=np.int64))


# ------------------------------------------------------------------------------ step 1: comparisons


def _scaler_source(ctx: Context, name: str) -> tuple[Val, np.ndarray, np.ndarray] | None:
    """(raw float input, offset, scale) when ``name`` is a Scaler's output computed from a float32 input."""
    prod = next((n for n in ctx.graph.node if name in n.output), None)
    if prod is None or prod.domain != "ai.onnx.ml" or prod.op_type != "Scaler":
        return None
    raw = ctx.vals.get(prod.input[0])
    if raw is None or raw.is_const or ctx.b.spec(raw).dtype != DType.FLOAT32 or raw.data.ndim != 2:
        return None
    f = raw.data.shape[1]
    scale = np.asarray(ctx.attr(prod, "scale", [1.0]), dtype=np.float64).reshape(-1)
    offset = np.asarray(ctx.attr(prod, "offset", [0.0]), dtype=np.float64).reshape(-1)
    if scale.size not in (1, f) or offset.size not in (1, f):
        return None
    return raw, np.broadcast_to(offset, (f,)), np.broadcast_to(scale, (f,))


def _integer_test(mode: str, v: float) -> tuple[int, int]:
    """(a, K) with ``[a (q - K) >= 0]`` equal to ``q <mode> v`` for integers ``q``."""
    if mode == "BRANCH_LEQ":
        return _LE, int(np.floor(v))
    if mode == "BRANCH_LT":
        return _LE, int(np.ceil(v)) - 1
    if mode == "BRANCH_GTE":
        return _GE, int(np.ceil(v))
    return _GE, int(np.floor(v)) + 1  # BRANCH_GT


def _feature_grid(lo: float, hi: float, fine: float) -> tuple[float, int]:
    """(scale, zero point) of an int8 grid whose [-_GRID, _GRID] spans [lo, hi] (scale at least ``fine``)."""
    if not np.isfinite(fine):
        fine = max(abs(lo), abs(hi), 1.0) / (2 * _GRID)
    span = hi - lo if hi > lo else fine * 2 * _GRID
    scale = max(span / (2 * _GRID), max(abs(lo), abs(hi)) * 2.0**-20)  # keep |zero point| < 2^21
    scale = float(np.float32(scale))
    return scale, int(-_GRID - np.floor(lo / scale))


PICK_MIN = 64  # gather each feature's own grid column when that drops at least this many weight rows


@dataclass(frozen=True)
class FeatureGrids:
    """Float features as int8: column ``row[f]`` of ``q`` holds feature ``f`` on the grid ``grid[f]``."""

    q: Val
    row: dict[int, int]
    grid: dict[int, tuple[float, int]]  # (scale, zero point) of each feature
    zero_point: int  # the zero point the linear op subtracts (the tensor's)


def feature_grids(ctx: Context, x: Val, ranges: dict[int, tuple[float, float, float]], name: str) -> FeatureGrids:
    """Quantize the float32 features of ``x`` [N, F] named in ``ranges`` (``f -> (lo, hi, resolution)``: the
    span a grid must cover with about that resolution) with as few ``quantize`` ops as possible: features
    whose spans fit one grid at no more than twice the resolution each wants share it (a ``quantize`` of
    the whole tensor); the grids' copies are concatenated along the features."""
    groups: list[tuple[float, float, float, list[int]]] = []  # lo, hi, finest resolution, features
    for f in sorted(ranges, key=lambda f: ranges[f][0]):
        lo, hi, res = ranges[f]
        for g, (glo, ghi, gres, members) in enumerate(groups):
            ulo, uhi, ures = min(lo, glo), max(hi, ghi), min(res, gres)
            if (uhi - ulo) / (2 * _GRID) <= 2 * ures:
                groups[g] = (ulo, uhi, ures, members + [f])
                break
        else:
            groups.append((lo, hi, res, [f]))
    nf = x.data.shape[1]
    copies, row, grid = [], {}, {}
    for g, (lo, hi, res, members) in enumerate(groups):
        scale, zp = _feature_grid(lo, hi, res)
        copies.append(ctx.b.add_node("quantize", [x.ref], f"{name}_grid{g}", DType.INT8, None, QParams(scale, zp), {},
                                     ctx.env))
        for f in members:
            row[f], grid[f] = g * nf + f, (scale, zp)
    if len(copies) == 1:
        return FeatureGrids(copies[0], row, grid, ctx.b.spec(copies[0]).zero_point)
    q = ctx.b.add_node("concat", [c.ref for c in copies], name + "_features", DType.INT8, None, QParams(1.0, 0),
                       {"axis": 1}, ctx.env)
    used = sorted(row, key=lambda f: row[f])
    if len(copies) * nf - len(used) < PICK_MIN:
        return FeatureGrids(q, row, grid, 0)
    # keep only each feature's own column (one per feature, not one per grid): the linears reading the
    # features then have as many weight rows as there are features, not len(copies) times as many
    idx = ctx.b.const(name + "_pick", np.array([row[f] for f in used], dtype=np.int32))
    q = ctx.b.add_node("gather", [q.ref, idx], name + "_picked", DType.INT8, None, QParams(1.0, 0), {"axis": 1},
                       ctx.env)
    return FeatureGrids(q, {f: i for i, f in enumerate(used)}, grid, 0)


def _indicator(ctx: Context, x: Val, w: np.ndarray, bias: np.ndarray, name: str) -> Val:
    """``clamp(x @ w + bias, 0, 1)`` with multiplier 1: a 0/1 int8 tensor (``acc`` is odd by construction)."""
    mult, shift = requant_params(np.array([1.0]))
    ins = [x.ref, ctx.b.const(name + "_w", w.astype(np.int8)), ctx.b.const(name + "_b", bias.astype(np.int32)),
           ctx.b.const(name + "_mult", mult), ctx.b.const(name + "_shift", shift)]
    return ctx.b.add_node("linear", ins, name, DType.INT8, None, QParams(1.0, 0), {"qmin": 0, "qmax": 1}, ctx.env)


def node_tests(ctx: Context, node: onnx.NodeProto, ens: Ensemble) -> tuple[Val, np.ndarray, np.ndarray]:
    """The int8 features ``q`` and the weights and bias of ``_indicator(q, w, b)``, the 0/1 tensor
    [N, internal nodes] of each node's test on each row."""
    name = node.output[0] + "_tests"
    x = ctx.need(node, 0)
    if x.is_const or x.data.ndim != 2:
        raise ctx.err(f"the input must be an activation of shape [N, features], got {x.data.shape}")
    m = len(ens.modes)
    feats, thresh, modes = ens.features, ens.thresholds.copy(), list(ens.modes)
    fixed: dict[int, bool] = {}  # node -> constant outcome (a Scaler with scale 0)
    src = _scaler_source(ctx, node.input[0])
    if src is not None:  # compare the raw input against the thresholds mapped through the Scaler
        x, offset, scale = src
        flip = {"BRANCH_LEQ": "BRANCH_GTE", "BRANCH_LT": "BRANCH_GT", "BRANCH_GTE": "BRANCH_LEQ",
                "BRANCH_GT": "BRANCH_LT"}
        for j in range(m):
            c, o, t = float(scale[feats[j]]), float(offset[feats[j]]), float(thresh[j])
            if c == 0:
                fixed[j] = {"BRANCH_LEQ": 0 <= t, "BRANCH_LT": 0 < t, "BRANCH_GTE": 0 >= t,
                            "BRANCH_GT": 0 > t}[modes[j]]
                continue
            thresh[j] = t / c + o
            if c < 0:
                modes[j] = flip[modes[j]]
    nf = x.data.shape[1]
    if m and (feats.min() < 0 or feats.max() >= nf):
        raise ctx.err(f"a node tests feature {int(feats.max())} of an input with {nf} features")
    spec = ctx.b.spec(x)
    if spec.dtype == DType.FLOAT32:
        ranges = {}
        for f in sorted({int(feats[j]) for j in range(m) if j not in fixed}):
            ts = thresh[[j for j in range(m) if feats[j] == f and j not in fixed]]
            spread = float(np.ptp(x.data[:, f])) if x.data.shape[0] else 0.0
            # the grid must resolve the thresholds' spread, or 1/8 of the data's for a lone threshold
            fine = max(float(np.ptp(ts)), spread / 8, abs(float(ts[0])) * 2.0**-10, 1e-6) / (2 * _GRID)
            ranges[f] = (float(ts.min()), float(ts.max()), fine)
        fg = feature_grids(ctx, x, ranges, name) if ranges else None
        q, row, grid, zin = (fg.q, fg.row, fg.grid, fg.zero_point) if fg else (None, {}, {}, 0)
    elif spec.dtype == DType.INT8:
        q, row = x, {f: f for f in range(nf)}
        grid = {f: (float(np.float32(spec.scale)), spec.zero_point) for f in range(nf)}
        zin = spec.zero_point
    else:
        raise ctx.err(f"tree ensembles of a {spec.dtype.name} input are not supported (float features are)")
    w = np.zeros((q.data.shape[1] if q is not None else 1, max(m, 1)), dtype=np.int64)
    b = np.zeros(max(m, 1), dtype=np.int64)
    for j in range(m):
        if j in fixed:
            b[j] = 1 if fixed[j] else -1
            continue
        f = int(feats[j])
        s, z = grid[f]
        a, k = _integer_test(modes[j], z + float(thresh[j]) / s)
        k = int(np.clip(k, -(1 << 20), 1 << 20))  # beyond the int8 range the outcome no longer changes
        w[row[f], j] = 2 * a
        b[j] = -2 * a * (k - zin) + 1  # acc = 2a (q - zin) + b = 2a (q - k) + 1
    if q is None:  # every outcome fixed: any int8 activation supplies the rows
        q = ctx.quantized(ctx.need(node, 0), name + "_in")
        w = np.zeros((q.data.shape[1], max(m, 1)), dtype=np.int64)
    return q, w, b


# ------------------------------------------------------------------------------ steps 2 and 3


BLOCK = 256  # internal nodes per block of trees: the leaf step's weights are block-diagonal
SHARED_TESTS = True  # one node-test linear for every block (sliced per block), not one per block


def leaf_indicator(ctx: Context, node: onnx.NodeProto, ens: Ensemble) -> tuple[Val, np.ndarray]:
    """The one-hot (per tree) int8 tensor [N, leaves] of the reached leaves, and the leaf order in it.

    Trees are taken in blocks of about ``BLOCK`` internal nodes: per block one ``linear`` of the node
    tests and one of the leaves (the path matrix is block-diagonal over trees, so blocks skip its zeros),
    the blocks' leaves concatenated."""
    name = node.output[0]
    q, w, b = node_tests(ctx, node, ens)
    if not len(ens.modes):  # trees that are a single leaf: every leaf is reached
        tests = _indicator(ctx, q, w, b, name + "_tests")
        c = np.zeros((1, ens.paths.shape[1]), dtype=np.int64)
        return _indicator(ctx, tests, c, np.ones(ens.paths.shape[1], dtype=np.int64), name + "_leaves"), \
            np.arange(ens.paths.shape[1])
    trues = (ens.paths == 1).sum(axis=0)
    blocks: list[list[int]] = [[]]
    for t in range(ens.trees):
        size = int((ens.node_tree[np.isin(ens.node_tree, blocks[-1])]).size) if blocks[-1] else 0
        if blocks[-1] and size + int((ens.node_tree == t).sum()) > BLOCK:
            blocks.append([])
        blocks[-1].append(t)
    nodes_of = [np.flatnonzero(np.isin(ens.node_tree, trees)) for trees in blocks]
    shared = None  # every block's node tests in one linear (a linear costs more than a slice of its output)
    if SHARED_TESTS and sum(1 for im in nodes_of if im.size) > 1:
        every = np.concatenate(nodes_of)
        shared = _indicator(ctx, q, w[:, every], b[every], name + "_tests")
    parts, order, start = [], [], 0
    for i, trees in enumerate(blocks):
        im = nodes_of[i]
        il = np.flatnonzero(np.isin(ens.leaf_tree, trees))
        start += im.size
        if not il.size:
            continue
        suffix = f"_{i}" if len(blocks) > 1 else ""
        if im.size:
            if shared is not None:
                tests = ctx.b.add_node("slice", [shared.ref], name + "_tests" + suffix, DType.INT8, None,
                                       QParams(1.0, 0), {"starts": [0, start - im.size],
                                                         "ends": [1 << 62, start], "steps": [1, 1]}, ctx.env)
            else:
                tests = _indicator(ctx, q, w[:, im], b[im], name + "_tests" + suffix)
            parts.append(_indicator(ctx, tests, 2 * ens.paths[np.ix_(im, il)], 1 - 2 * trues[il],
                                    name + "_leaves" + suffix))
        else:  # single-leaf trees only: their leaves are always reached
            tests = _indicator(ctx, q, w[:, :1] * 0, np.array([-1]), name + "_tests" + suffix)
            parts.append(_indicator(ctx, tests, np.zeros((1, il.size), dtype=np.int64),
                                    np.ones(il.size, dtype=np.int64), name + "_leaves" + suffix))
        order.extend(il.tolist())
    if len(parts) == 1:
        return parts[0], np.array(order)
    return ctx.b.add_node("concat", [p.ref for p in parts], name + "_leaves", DType.INT8, None, QParams(1.0, 0),
                          {"axis": 1}, ctx.env), np.array(order)


def _scores_int32(ctx: Context, leaves: Val, values: np.ndarray, base: np.ndarray, qmax: int,
                  name: str) -> tuple[Val, float]:
    """``leaves @ values + base`` as int32 accumulators, one weight scale for every column."""
    amax = float(np.abs(values).max(initial=0))
    scale = amax / qmax if amax > 0 else 1.0
    w = np.clip(np.rint(values / scale), -qmax, qmax).astype(np.int8)
    b = np.clip(np.rint(base / scale), -(2**31), 2**31 - 1).astype(np.int32)
    ins = [leaves.ref, ctx.b.const(name + "_w", w), ctx.b.const(name + "_b", b)]
    return ctx.b.add_node("linear", ins, name, DType.INT32, None, None, {"qmin": 0, "qmax": 0}, ctx.env), scale


def real_scores(ctx: Context, out: str, leaves: Val, values: np.ndarray, base: np.ndarray) -> Val:
    """``leaves @ values + base`` as int8 (per-column weight scales, requantized on the calibrated range)."""
    amax = np.abs(values).max(axis=0)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    w = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
    b = np.clip(np.rint(base / scale), -(2**31), 2**31 - 1).astype(np.int64)
    acc = leaves.data.astype(np.int64) @ w.astype(np.int64) + b
    ins = [leaves.ref, ctx.b.const(out + "_w", w), ctx.b.const(out + "_b", b.astype(np.int32))]
    fake = helper.make_node("Identity", [], [out])
    _emit_requant(ctx, fake, "linear", ins, scale.astype(np.float64), acc.astype(np.float64), 1, {}, False)
    return ctx.vals[out]


def _run(ctx: Context, op: str, ins: list[str], out: str, **attrs: object) -> Val:
    """Lower one standard ONNX node built here (a post transform) with the converter's own lowering."""
    LOWERINGS[op](ctx, helper.make_node(op, ins, [out], **attrs))  # type: ignore[arg-type]
    return ctx.vals[out]


def _const(ctx: Context, name: str, arr: np.ndarray) -> str:
    ctx.vals[name] = Val(arr, onnx_dtype=arr.dtype)
    return name


def _base(ctx: Context, node: onnx.NodeProto, columns: int) -> np.ndarray:
    base = _attr_array(ctx, node, "base_values", np.float64)
    if base.size not in (0, columns):
        raise ctx.err(f"{base.size} base_values for {columns} outputs")
    return base if base.size else np.zeros(columns)


@dataclass(frozen=True)
class _Lowered:
    ens: Ensemble
    leaves: Val


def _trees(ctx: Context, node: onnx.NodeProto, prefix: str, columns: int) -> _Lowered:
    ens = parse_ensemble(ctx, node, prefix, columns)
    leaves, order = leaf_indicator(ctx, node, ens)
    return _Lowered(replace(ens, values=ens.values[order]), leaves)


def lower_tree_classifier(ctx: Context, node: onnx.NodeProto) -> None:
    """TreeEnsembleClassifier: label (int64) and scores, as onnxruntime computes them."""
    if ctx.attr(node, "classlabels_strings") is not None:
        raise ctx.err("string class labels are not supported (bundles hold numbers); train with integer labels "
                      "or read the probabilities output")
    labels = np.asarray(ctx.attr(node, "classlabels_int64s", []), dtype=np.int64)
    if labels.size < 2:
        raise ctx.err("classlabels_int64s must name at least 2 classes")
    post = _str(ctx.attr(node, "post_transform", b"NONE"))
    ids = _attr_array(ctx, node, "class_ids", np.int64)
    weights = _attr_array(ctx, node, "class_weights", np.float64)
    binary = labels.size == 2 and (ids.size == 0 or int(ids.max()) == 0)
    columns = 1 if binary else int(labels.size)
    low = _trees(ctx, node, "class", columns)
    base = _base(ctx, node, columns)
    label_out, score_out = (list(node.output) + ["", ""])[:2]
    p = node.output[0] + "_ml"
    if binary:
        _binary_classifier(ctx, node, low, base, labels, post, bool((weights >= 0).all()), label_out, score_out, p)
        return
    if post not in ("NONE", "SOFTMAX", "LOGISTIC"):
        raise ctx.err(f"post_transform={post} is not supported (NONE, SOFTMAX, LOGISTIC are)")
    if label_out:
        s, _ = _scores_int32(ctx, low.leaves, low.ens.values, base, 127, p + "_s32")
        idx = ctx.b.add_node("argmax", [s.ref], p + "_idx", DType.INT64, None, None,
                             {"axis": 1, "keepdims": 0, "select_last_index": 0}, ctx.env)
        idx.onnx_dtype = np.dtype(np.int64)
        if np.array_equal(labels, np.arange(labels.size)):
            ctx.vals[label_out] = idx
        else:
            ctx.vals[p + "_idx"] = idx
            _run(ctx, "Gather", [_const(ctx, p + "_labels", labels), p + "_idx"], label_out, axis=0)
    if score_out:
        if post == "NONE":
            real_scores(ctx, score_out, low.leaves, low.ens.values, base)
        else:
            real_scores(ctx, p + "_raw", low.leaves, low.ens.values, base)
            op = "Softmax" if post == "SOFTMAX" else "Sigmoid"
            _run(ctx, op, [p + "_raw"], score_out, **({"axis": 1} if op == "Softmax" else {}))


def _binary_classifier(ctx: Context, node: onnx.NodeProto, low: _Lowered, base: np.ndarray, labels: np.ndarray,
                       post: str, positive: bool, label_out: str, score_out: str, p: str) -> None:
    """One score column ``s`` (onnxruntime's binary case): with all weights >= 0, label 1 where s > 0.5 and
    scores ``[1 - s, s]``; with mixed weights, label 1 where s > 0 and scores ``[-s, s]`` (NONE) or
    ``[sigmoid(-s), sigmoid(s)]`` (LOGISTIC)."""
    if post not in ("NONE", "LOGISTIC") or (positive and post != "NONE"):
        raise ctx.err(f"binary tree classifier with post_transform={post} is not supported (NONE, and LOGISTIC "
                      "with signed leaf weights, are)")
    if label_out:
        # [s > threshold] as a 0/1 linear: acc = 2 (leaves @ w + base - T) - 1 is odd, >= 1 exactly when s > T
        values = low.ens.values
        amax = float(np.abs(values).max(initial=0))
        scale = amax / 63 if amax > 0 else 1.0
        w = np.clip(np.rint(values / scale), -63, 63).astype(np.int64)
        shifted = (base[0] - (0.5 if positive else 0.0)) / scale
        # s > T  <=>  sum w > -shifted  <=>  sum w >= 1 - ceil(shifted) (sum w is an integer)
        b = 2 * int(np.clip(np.ceil(shifted), -(2**29), 2**29)) - 1
        bit = _indicator(ctx, low.leaves, 2 * w, np.array([b]), p + "_positive")
        flat = ctx.b.add_node("reshape", [bit.ref], p + "_bit", DType.INT8, (bit.data.shape[0],), None, {}, ctx.env)
        flat.onnx_dtype = np.dtype(np.int8)
        if np.array_equal(labels, [0, 1]):
            ctx.vals[label_out] = flat
        else:
            idx = ctx.b.add_node("cast", [flat.ref], p + "_idx", DType.INT64, None, None, {}, ctx.env)
            ctx.vals[p + "_idx"] = idx
            _run(ctx, "Gather", [_const(ctx, p + "_labels", labels), p + "_idx"], label_out, axis=0)
        ctx.vals[label_out].onnx_dtype = np.dtype(np.int64)
    if score_out:
        s = p + "_s"
        real_scores(ctx, s, low.leaves, low.ens.values, base)
        if positive:
            _run(ctx, "Sub", [_const(ctx, p + "_one", np.array(1.0, np.float32)), s], p + "_neg")
        elif post == "LOGISTIC":
            _run(ctx, "Sigmoid", [s], p + "_pos")
            _run(ctx, "Sub", [_const(ctx, p + "_one", np.array(1.0, np.float32)), p + "_pos"], p + "_neg")
            s = p + "_pos"
        else:
            _run(ctx, "Neg", [s], p + "_neg")
        _run(ctx, "Concat", [p + "_neg", s], score_out, axis=1)


def lower_tree_regressor(ctx: Context, node: onnx.NodeProto) -> None:
    """TreeEnsembleRegressor: ``SUM`` or ``AVERAGE`` of the trees plus base values, no post transform."""
    post = _str(ctx.attr(node, "post_transform", b"NONE"))
    if post != "NONE":
        raise ctx.err(f"TreeEnsembleRegressor with post_transform={post} is not supported (NONE is)")
    agg = _str(ctx.attr(node, "aggregate_function", b"SUM"))
    if agg not in ("SUM", "AVERAGE"):
        raise ctx.err(f"aggregate_function={agg} is not supported (SUM, AVERAGE are)")
    targets = int(ctx.attr(node, "n_targets", 1))
    if targets < 1:
        raise ctx.err(f"n_targets={targets}")
    low = _trees(ctx, node, "target", targets)
    values = low.ens.values / (low.ens.trees if agg == "AVERAGE" else 1)
    real_scores(ctx, node.output[0], low.leaves, values, _base(ctx, node, targets))


def lower_scaler(ctx: Context, node: onnx.NodeProto) -> None:
    """Scaler ``(x - offset) * scale`` of a float32 input: each feature quantized on a grid of its own
    calibrated range (``feature_grids``: raw features of very different magnitudes, e.g. an area in the
    thousands beside a ratio below 1, keep their resolution), then one ``linear`` with the grids folded
    into the weights (``W[row(f), f] = scale_f s_f`` over the tensor's own scale, bias
    ``scale_f (s_f (Z - z_f) - offset_f)``). An int8 input (already quantized) is rewritten as a Gemm
    (``ml.expand``) and lowered as usual."""
    x = ctx.need(node, 0)
    if x.is_const or ctx.b.spec(x).dtype != DType.FLOAT32 or x.data.ndim != 2:
        from . import _lower_nodes, ml

        _lower_nodes(ctx, ml.expand(ctx, node))
        return
    f = x.data.shape[1]
    scale = np.asarray(ctx.attr(node, "scale", [1.0]), dtype=np.float64).reshape(-1)
    offset = np.asarray(ctx.attr(node, "offset", [0.0]), dtype=np.float64).reshape(-1)
    if scale.size not in (1, f) or offset.size not in (1, f):
        raise ctx.err(f"scale ({scale.size}) and offset ({offset.size}) must have 1 or {f} values")
    if not (np.isfinite(scale).all() and np.isfinite(offset).all()):
        raise ctx.err("scale or offset is NaN or infinite")
    scale, offset = np.broadcast_to(scale, (f,)), np.broadcast_to(offset, (f,))
    ranges = {}
    for j in range(f):
        lo, hi = float(x.data[:, j].min()), float(x.data[:, j].max())
        # (a feature constant on the calibration data joins any grid)
        ranges[j] = (lo, hi, (hi - lo) / (2 * _GRID) if hi > lo else float("inf"))
    fg = feature_grids(ctx, x, ranges, node.output[0] + "_in")
    w = np.zeros((fg.q.data.shape[1], f))
    bias = np.zeros(f)
    sq = float(np.float32(ctx.b.spec(fg.q).scale))  # (the linear op takes its input as sq (q - Z))
    for j in range(f):
        sj, zj = fg.grid[j]
        w[fg.row[j], j] = scale[j] * sj / sq
        bias[j] = scale[j] * (sj * (fg.zero_point - zj) - offset[j])
    from .lower import linear

    linear(ctx, node, fg.q, Val(w), bias, False)


ML_LOWERINGS["TreeEnsembleClassifier"] = lower_tree_classifier
ML_LOWERINGS["TreeEnsembleRegressor"] = lower_tree_regressor
ML_LOWERINGS["Scaler"] = lower_scaler
