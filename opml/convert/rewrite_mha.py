"""Batch-first attention: undo the ``[L, N * H, d]`` layout ``torch.nn.MultiheadAttention`` exports.

``nn.MultiheadAttention`` computes in ``[L, N, E]`` (sequence first), so with ``batch_first=True``
(``nn.TransformerEncoder``, torchvision's ViT) torch exports its self-attention as::

    x [N, L, E] -> Transpose(1, 0, 2) -> MatMul(W_in [E, 3E]) -> Add(b_in)          qkv [L, N, 3E]
      -> Reshape(s0 = [L, N, 3, E]) -> Unsqueeze(0) -> Transpose(3, 1, 2, 0, 4) -> Squeeze(3)
      -> Gather(c, axis 0)                                                           q/k/v [L, N, E]
      -> Reshape(s1 = [L, N * H, d]) -> Transpose(1, 0, 2)                           t_c [N * H, L, d]
      -> Reshape([N, H, L, d]) ... attention in [N, H, L, d] ...                     y [N, H, L, d]
      -> Transpose(2, 0, 1, 3) -> Reshape(s3 = [L * N, E]) -> Gemm(W_out, b_out)
      -> Reshape(s4 = [L, N, E']) -> Transpose(1, 0, 2)                              z [N, L, E']

Between the first and the last Transpose the batch is not the leading axis (and is merged with the
heads in ``[L, N * H, d]``), which a bundle (batch first) cannot follow. ``t_c`` is batch-major again
(row ``n * H + h``: a leading dimension of ``H`` times the batch, which bundles express as ``-H``), so
only the two ends are rewritten, into their batch-first forms::

    x -> MatMul(W_in) -> Add(b_in) -> qkv' [N, L, 3E]
    t_c = AievmHeadsSplit(qkv', s0, s1; index c)
        = reshape(transpose(reshape(qkv'[:, :, cE:(c+1)E], [N, L, H, d]), (0, 2, 1, 3)), [N * H, L, d])
    z = AievmHeadsMerge(y, s3, s4) @ W_out^T + b_out
      = reshape(transpose(y, (0, 2, 1, 3)), [N, L, E]) @ W_out^T + b_out

``s0``, ``s1``, ``s3``, ``s4`` are the model's own (shape-computed) Reshape targets: the lowering
(``lower_mha``) checks on the concrete calibration shapes that they are the ones drawn above and
refuses the node otherwise, so a graph of the same structure with other reshapes is never silently
rewired. The replaced nodes are removed; the ``Shape`` nodes that read a removed tensor (torch takes
``L``, ``N``, ``E'`` from them) read the same dimensions from a batch-first tensor computed before
them (``Shape``, ``Gather``, ``Mul``, ``Div``, ``Concat``, which fold to constants during conversion).

The other forms torch emits go through the same two rules: each projection ``MatMul(Transpose(x), W) (+ b)``
(``W`` a matrix, ``b`` a vector, by construction: torch slices q's out of the packed ones when the query is
not the key) is rewritten on its own, packed by ``k`` (``s0 = [L, N, k, E]``: 3, or 2 for k/v) or not at all
(``index`` -1); the heads transpose may be ``(1, 2, 0)`` (k transposed for ``q @ k^T``, ``need_weights=True``;
attribute ``perm``); the attention may run on ``[N * H, L, d]`` with the output ``Transpose(1, 0, 2)`` of a
3-D ``y`` (``merged``); the output projection may be a MatMul (``bias=False``); torch.export writes the
targets as constants with -1 where the batch is.

Also here: ``Squeeze(Slice(Transpose(x), [i], [i + 1], axis a), a)`` is ``Gather(Transpose(x), i, axis a)``
(paddle2onnx's form of ``qkv[0]`` after ``Transpose(2, 0, 3, 1, 4)``): the converter gathers from a
transposed view whose batch is not first (``layout.gather``), while a Slice cannot read one.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .rewrite import _attr, _Graph, _replace

HEADS_SPLIT = "AievmHeadsSplit"
HEADS_MERGE = "AievmHeadsMerge"


def _perm(n: onnx.NodeProto | None, want: list[int]) -> bool:
    if n is None or n.op_type != "Transpose":
        return False
    p = _attr(n, "perm", None)
    return p is not None and [int(v) for v in p] == want  # type: ignore[attr-defined]


def _const(g: _Graph, name: str) -> np.ndarray | None:
    """A constant, also through Identity nodes (torch shares repeated layers' weights through them)."""
    p = g.producer.get(name)
    while p is not None and p.op_type == "Identity":
        name = p.input[0]
        p = g.producer.get(name)
    return g.const(name)


def _axes(g: _Graph, n: onnx.NodeProto) -> list[int] | None:
    axes = _attr(n, "axes", None)
    if axes is None and len(n.input) > 1 and n.input[1]:
        axes = g.const(n.input[1])
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


def _data_consumers(g: _Graph, name: str) -> list[onnx.NodeProto]:
    """Consumers of ``name`` other than ``Shape`` nodes."""
    return [c for c in g.consumers.get(name, []) if c.op_type != "Shape"]


def _only_data(g: _Graph, name: str, op: str) -> onnx.NodeProto | None:
    """The one non-Shape consumer of ``name`` if it is an ``op`` reading ``name`` as its first input."""
    if name in g.outputs:
        return None
    c = _data_consumers(g, name)
    if len(c) != 1 or c[0].op_type != op or c[0].input[0] != name:
        return None
    return c[0]


def _shape_ok(g: _Graph, name: str) -> bool:
    """The Shape consumers of ``name`` can be re-pointed (no ``start``/``end`` attributes)."""
    return all(_attr(c, "start", None) is None and _attr(c, "end", None) is None
               for c in g.consumers.get(name, []) if c.op_type == "Shape")


def _shape_nodes(g: _Graph, dead: str, src: str, groups: list[list[int] | tuple[list[int], int] | int],
                 anchor: _New) -> None:
    """Re-point each ``Shape(dead)`` to the dimensions of ``src``: entry ``i`` is the product of ``src``'s
    dimensions ``groups[i]`` (a list of axes; ``(axes, k)``: that product divided by ``k``), or the literal
    ``groups[i]`` (an int). Standard ops on a shape, which fold to constants during conversion; each replaces
    its Shape node in place."""
    for sh in (c for c in g.consumers.get(dead, []) if c.op_type == "Shape"):
        base = f"{sh.output[0]}_aievm_bf"
        nodes = [helper.make_node("Shape", [src], [base + "_src"], name=base + "_shape")]
        parts = []
        for i, grp in enumerate(groups):
            if isinstance(grp, int):
                parts.append(g.add_init(f"{base}_c{i}", np.array([grp], dtype=np.int64)))
                continue
            axes, div = grp if isinstance(grp, tuple) else (grp, 1)
            cur = ""
            for j, axis in enumerate(axes):
                idx = g.add_init(f"{base}_i{i}_{j}", np.array([axis], dtype=np.int64))
                out = f"{base}_g{i}_{j}"
                nodes.append(helper.make_node("Gather", [base + "_src", idx], [out], axis=0, name=out))
                if cur:
                    prod = f"{base}_p{i}_{j}"
                    nodes.append(helper.make_node("Mul", [cur, out], [prod], name=prod))
                    out = prod
                cur = out
            if div != 1:
                k = g.add_init(f"{base}_k{i}", np.array([div], dtype=np.int64))
                nodes.append(helper.make_node("Div", [cur, k], [f"{base}_q{i}"], name=f"{base}_q{i}"))
                cur = f"{base}_q{i}"
            parts.append(cur)
        nodes.append(helper.make_node("Concat", parts, [sh.output[0]], axis=0, name=sh.name or base))
        anchor.add(sh, nodes, drop=True)


class _New:
    """New nodes, each inserted in front of an existing node (its anchor), and the nodes they replace."""

    def __init__(self) -> None:
        self.before: dict[int, list[onnx.NodeProto]] = {}
        self.drop: set[int] = set()

    def add(self, at: onnx.NodeProto, nodes: list[onnx.NodeProto], drop: bool = False) -> None:
        self.before.setdefault(id(at), []).extend(nodes)
        if drop:
            self.drop.add(id(at))

    def apply(self, g: _Graph, old: list[onnx.NodeProto]) -> None:
        drop = self.drop | {id(n) for n in old}
        out: list[onnx.NodeProto] = []
        for n in g.nodes:
            out += self.before.get(id(n), [])
            if id(n) not in drop:
                out.append(n)
        g.nodes = out
        g._index()


def _folded(g: _Graph, name: str, depth: int = 6) -> np.ndarray | None:
    """The value of ``name`` when it is computed from constants only (torch slices the q projection's weight
    out of ``in_proj_weight`` and transposes it), by the ONNX reference evaluator; None otherwise."""
    c = _const(g, name)
    if c is not None or depth == 0:
        return c
    p = g.producer.get(name)
    if p is None or p.op_type not in ("Transpose", "Slice", "Gather", "Reshape", "Unsqueeze", "Squeeze") or \
            p.domain not in ("", "ai.onnx"):
        return None
    feeds: dict[str, np.ndarray] = {}
    for i in p.input:
        v = _folded(g, i, depth - 1) if i else None
        if i and v is None:
            return None
        if v is not None:
            feeds[i] = v
    from onnx.reference import ReferenceEvaluator

    graph = helper.make_graph([p], "fold", [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(
        v.dtype), v.shape) for i, v in feeds.items()], [helper.make_tensor_value_info(p.output[0], 0, None)])
    try:  # (opset 13 forms: Slice/Squeeze/Unsqueeze with inputs, as torch exports them since opset 13)
        return np.asarray(ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
                          .run(None, feeds)[0])  # type: ignore[index]
    except Exception:
        return None


def _rank(g: _Graph, name: str) -> int | None:
    """The rank of ``name`` by construction: of a constant, a Transpose (its perm), or a Slice, Identity or Cast
    of one (torch's q projection weight is ``Transpose(Slice(in_proj_weight, 0, E))`` with ``E`` read from a
    shape, its bias ``Slice(in_proj_bias, 0, E)``); None when unknown."""
    v = _folded(g, name)
    if v is not None:
        return v.ndim
    p = g.producer.get(name)
    if p is not None and p.op_type == "Transpose" and _attr(p, "perm", None) is not None:
        return len(_attr(p, "perm", []))  # type: ignore[arg-type]
    if p is not None and p.op_type in ("Slice", "Identity", "Cast") and p.input:
        return _rank(g, p.input[0])
    return None


def _heads_chain(g: _Graph, v: str) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
    """``v [L, N, E] -> Reshape -> Transpose(p)`` with ``p[0] == 1`` (the merged batch-heads axis first): the two
    nodes (q ``(1, 0, 2)``, and k ``(1, 2, 0)`` where torch transposes it for ``q @ k^T`` at once)."""
    r1 = _only_data(g, v, "Reshape")
    t1 = _only_data(g, r1.output[0], "Transpose") if r1 is not None else None
    if r1 is None or t1 is None or not (_perm(t1, [1, 0, 2]) or _perm(t1, [1, 2, 0])):
        return None
    return r1, t1


def _projection(g: _Graph, t_in: onnx.NodeProto, mm: onnx.NodeProto) -> bool:
    """Rewrite one projection ``MatMul(Transpose(x), W) (+ b)`` of a batch_first attention and the chains that
    split its heads (packed q/k/v or k/v, or one of q, k, v); True if it did."""
    # MatMul(Transpose(x), W) = Transpose(MatMul(x, W)) for a matrix W; Add(b, .) commutes for a vector b
    if _rank(g, mm.input[1]) != 2:
        return False
    add = g.only_consumer(mm.output[0])
    bias = g.other_input(add, mm.output[0]) if add is not None and add.op_type == "Add" else None
    if add is not None and (bias is None or _rank(g, bias) not in (0, 1)):
        add = None  # (the Add is not a bias over the last axis: the projection ends at the MatMul)
    p = add if add is not None else mm
    out = p.output[0]
    old: list[onnx.NodeProto] = [mm] + ([add] if add is not None else [])
    chains: list[tuple[int, onnx.NodeProto, onnx.NodeProto]] = []  # (index in the packed axis or -1, r1, t1)
    r0 = _only_data(g, out, "Reshape")
    un = _only_data(g, r0.output[0], "Unsqueeze") if r0 is not None else None
    direct = _heads_chain(g, out)
    if direct is not None:
        chains.append((-1, *direct))
        r0 = None
    elif r0 is not None and un is not None and _axes(g, un) in ([0], [-5]):  # (rank 5 after it)
        tq = _only_data(g, un.output[0], "Transpose")
        sq = _only_data(g, tq.output[0], "Squeeze") if tq is not None and _perm(tq, [3, 1, 2, 0, 4]) else None
        if tq is None or sq is None or _axes(g, sq) not in ([3], [-2]) or sq.output[0] in g.outputs:
            return False
        gathers = g.consumers.get(sq.output[0], [])
        for ga in gathers:
            idx = g.const(ga.input[1]) if ga.op_type == "Gather" and ga.input[0] == sq.output[0] else None
            if idx is None or idx.ndim != 0 or int(_attr(ga, "axis", 0)) != 0:  # type: ignore[call-overload]
                return False
            chain = _heads_chain(g, ga.output[0])
            if chain is None or ga.output[0] in g.outputs or g.consumers.get(ga.output[0], []) != [chain[0]]:
                return False
            chains.append((int(idx), *chain))
        if not chains or len(chains) != len(gathers) or len({c[0] for c in chains}) != len(chains):
            return False
        old += [r0, un, tq, sq] + gathers
    else:
        return False
    dead = [n.output[0] for n in old] + [c[1].output[0] for c in chains]
    if any(n in g.outputs for n in dead) or not _shape_ok(g, out):
        return False
    if any(c.op_type == "Shape" for n in dead if n != out for c in g.consumers.get(n, [])):
        return False  # (torch reads the dimensions of the projection only; others would need their own mapping)
    # the batch-first projection keeps the names of the one it replaces: the same values in another layout
    # (what name-based tools measure, e.g. ``accuracy``'s int16 candidates, run on the original model)
    new = _New()
    new.add(mm, [helper.make_node("MatMul", [t_in.input[0], mm.input[1]], [mm.output[0]],
                                  name=(mm.name or out) + "_bf")])
    if add is not None:  # (each where the node it replaces was: after its inputs)
        new.add(add, [helper.make_node("Add", [mm.output[0], g.other_input(add, mm.output[0]) or ""], [out],
                                       name=(add.name or out) + "_bf")])
    _shape_nodes(g, out, out, [[1], [0], [2]], new)
    for c, r1, t1 in chains:  # t1 [N * H, L, d] is batch-major: a real tensor (leading dim H * batch)
        perm = [int(v) for v in _attr(t1, "perm", [])]  # type: ignore[attr-defined]
        az = [int(_attr(r, "allowzero", 0)) for r in (r0, r1) if r is not None]  # type: ignore[call-overload]
        new.add(t1, [helper.make_node(HEADS_SPLIT, [out, r0.input[1] if r0 is not None else "", r1.input[1]],
                                      [t1.output[0]], domain="aievm", name=t1.name or t1.output[0], index=c,
                                      perm=perm, allowzero=az)])
    new.apply(g, old + [n for c in chains for n in c[1:]])
    return True


def heads_split(g: _Graph) -> bool:
    """Rewrite the input side of one batch_first attention projection (module docstring); True if it did."""
    for t_in in g.nodes:
        if not _perm(t_in, [1, 0, 2]) or t_in.input[0] in g.outputs:
            continue
        for mm in _data_consumers(g, t_in.output[0]):
            if mm.op_type == "MatMul" and mm.input[0] == t_in.output[0] and _projection(g, t_in, mm):
                return True
    return False


def heads_merge(g: _Graph) -> bool:
    """Rewrite the output side of one batch_first attention (module docstring); True if it did."""
    for t6 in g.nodes:
        if not (_perm(t6, [2, 0, 1, 3]) or _perm(t6, [1, 0, 2])):
            continue
        r3 = _only_data(g, t6.output[0], "Reshape")
        gemm = (_only_data(g, r3.output[0], "Gemm") or _only_data(g, r3.output[0], "MatMul")) if r3 is not None \
            else None  # (the output projection: Gemm, or MatMul without a bias)
        if gemm is None or r3 is None or len(gemm.input) < 2:
            continue
        w = _folded(g, gemm.input[1])
        b = _folded(g, gemm.input[2]) if len(gemm.input) > 2 and gemm.input[2] else None
        if w is None or w.ndim != 2 or float(_attr(gemm, "alpha", 1.0)) != 1.0 or int(_attr(gemm, "transA", 0)):  # type: ignore[arg-type, call-overload]
            continue
        if b is not None and float(_attr(gemm, "beta", 1.0)) != 1.0:  # type: ignore[arg-type]
            continue
        wt = w.T if int(_attr(gemm, "transB", 0)) else w  # type: ignore[call-overload]
        if b is not None and b.size not in (1, wt.shape[1]):
            continue
        r4 = _only_data(g, gemm.output[0], "Reshape")
        t7 = _only_data(g, r4.output[0], "Transpose") if r4 is not None else None
        if r4 is None:
            continue
        if t7 is None or not _perm(t7, [1, 0, 2]):  # a sequence-first model reads [L, N, E'] (``rewrite_sink``)
            t7 = None
        dead = [t6.output[0], r3.output[0], gemm.output[0]] + ([r4.output[0]] if t7 is not None else [])
        if any(n in g.outputs for n in dead) or not all(_shape_ok(g, n) for n in dead):
            continue
        merged = _perm(t6, [1, 0, 2])  # y [N * H, L, d] (torch's bmm path) rather than [N, H, L, d]
        # z [N, L, E']: the model's batch-first output, or (named as the projection, which holds the same values)
        # the tensor whose transpose replaces the sequence-first [L, N, E'] the model reads
        y, z, eo = t6.input[0], t7.output[0] if t7 is not None else gemm.output[0], int(wt.shape[1])
        base = z + "_aievm_bf"
        wname = g.add_init(base + "_w", np.ascontiguousarray(wt, dtype=np.float32))
        nodes = [helper.make_node(HEADS_MERGE, [y, r3.input[1], r4.input[1]], [base + "_y"], domain="aievm",
                                  name=(r3.name or base) + "_bf", out_features=eo, merged=int(merged),
                                  allowzero=[int(_attr(r, "allowzero", 0)) for r in (r3, r4)])]  # type: ignore[call-overload]
        if b is not None:
            bname = g.add_init(base + "_b", np.broadcast_to(np.asarray(b, dtype=np.float32).reshape(-1), (eo,)).copy())
            gname = gemm.name or base
            nodes += [helper.make_node("MatMul", [base + "_y", wname], [base + "_mm"], name=gname + "_bf"),
                      helper.make_node("Add", [base + "_mm", bname], [z], name=gname + "_bf_b")]
        else:
            nodes.append(helper.make_node("MatMul", [base + "_y", wname], [z], name=(gemm.name or base) + "_bf"))
        if t7 is None:
            nodes.append(helper.make_node("Transpose", [z], [r4.output[0]], perm=[1, 0, 2],
                                          name=(r4.name or base) + "_bf"))
        new = _New()
        new.add(t7 if t7 is not None else r4, nodes)
        # (torch reads the output's dimensions to reshape it: they come from y and E')
        if merged:  # y [N * H, L, d]: N * L = |y| / E, N = (N * H) * d / E
            e = int(wt.shape[0])
            _shape_nodes(g, t6.output[0], y, [[1], [0], [2]], new)
            _shape_nodes(g, r3.output[0], y, [([0, 1, 2], e), e], new)
            _shape_nodes(g, gemm.output[0], y, [([0, 1, 2], e), eo], new)
            if t7 is not None:
                _shape_nodes(g, r4.output[0], y, [[1], ([0, 2], e), eo], new)
        else:
            _shape_nodes(g, t6.output[0], y, [[2], [0], [1], [3]], new)
            _shape_nodes(g, r3.output[0], y, [[2, 0], [1, 3]], new)
            _shape_nodes(g, gemm.output[0], y, [[2, 0], eo], new)
            if t7 is not None:
                _shape_nodes(g, r4.output[0], y, [[2], [0], eo], new)
        new.apply(g, [t6, r3, gemm, r4] + ([t7] if t7 is not None else []))
        return True
    return False


def batch_first_attention(g: _Graph) -> bool:
    """One step of the batch-first rewrite: a heads split or merge, else one transpose moved past a per-token op
    (``rewrite_sink``, which exposes the next sequence-first block's projections); True if it did one."""
    from .rewrite_sink import sink_transpose

    return heads_split(g) or heads_merge(g) or sink_transpose(g)


def slice_squeeze_gather(g: _Graph) -> bool:
    """Rewrite one ``Squeeze(Slice(t, [i], [i + 1], [a]), [a])`` of a batch-moving Transpose ``t`` (``i >= 0``,
    step 1) into ``Gather(t, i, a)``; True if it did."""
    for sl in g.nodes:
        if sl.op_type != "Slice" or len(sl.input) < 4:
            continue
        sq = g.only_consumer(sl.output[0])
        tr = g.producer.get(sl.input[0])
        if sq is None or sq.op_type != "Squeeze" or tr is None or tr.op_type != "Transpose":
            continue  # (only where the sliced value is a transpose: elsewhere the Slice lowers as it is)
        perm = _attr(tr, "perm", None)
        if perm is None or int(perm[0]) == 0:  # type: ignore[index]
            continue
        vals = [g.const(n) if n else None for n in sl.input[1:5]]
        starts, ends, axes = vals[0], vals[1], vals[2]
        steps = vals[3] if len(vals) > 3 else None
        if starts is None or ends is None or axes is None or starts.size != 1 or ends.size != 1 or axes.size != 1:
            continue
        if steps is not None and (steps.size != 1 or int(steps.reshape(-1)[0]) != 1):
            continue
        if len(sl.input) > 4 and sl.input[4] and steps is None:
            continue
        i, e, a = (int(v.reshape(-1)[0]) for v in (starts, ends, axes))
        if i < 0 or e != i + 1 or _axes(g, sq) != [a]:
            continue
        idx = g.add_init(sq.output[0] + "_aievm_index", np.array(i, dtype=np.int64))
        _replace(g, [sl, sq], helper.make_node("Gather", [sl.input[0], idx], [sq.output[0]], axis=a,
                                               name=sq.name or sl.name or sq.output[0]))
        return True
    return False


from . import lower_mha  # noqa: E402, F401  (registers the lowerings of the nodes these rules emit)
