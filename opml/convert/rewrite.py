"""ONNX-level rewrites applied before lowering: fusions that keep precision in the int8 graph.

- Conv followed by BatchNormalization (its only consumer): the normalization folds into the weights.
- MatMul by a constant followed by Add of a constant vector: one linear op with an int32 bias.
- Conv / Gemm / linear followed by Relu (only consumer): the Relu becomes the output clamp.
- The exported erf form of GELU, ``x * 0.5 * (1 + erf(x / sqrt 2))``: one Gelu lookup table.
- The decomposed LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add): one op; other
  hand-written forms (E[x^2] - E[x]^2, rsqrt, TensorFlow's, jax2tf's, any one axis): ``rewrite_layernorm``.
- A hand-written softmax (``exp(x - max) / sum``, jax2tf's): ``rewrite_softmax``; GELU in other orders
  (jax2tf's tanh form): ``rewrite_activation``; paddle2onnx's hard-swish: ``rewrite_hardswish``.
- Attention-mask patterns (additive mask before Softmax, masked mean pooling): ``rewrite_masked``.
- Batch-first LSTM/GRU (the transposes torch exports around them): ``rewrite_recurrent``.
- Batch-first ``nn.MultiheadAttention`` (its ``[L, N * H, d]`` layout) and paddle's sliced q/k/v: ``rewrite_mha``;
  sequence-first blocks (per-token ops after a ``Transpose(1, 0, 2)``): ``rewrite_sink``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class _Graph:
    def __init__(self, g: onnx.GraphProto) -> None:
        self.nodes = list(g.node)
        self.inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.outputs = {o.name for o in g.output}
        self.value_info = {vi.name: vi for vi in (*g.input, *g.value_info, *g.output)}  # (declared shapes)
        self.new_inits: list[onnx.TensorProto] = []
        self._index()

    def _index(self) -> None:
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        c = self.consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in self.outputs else None

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return self.inits[name]
        p = self.producer.get(name)
        if p is not None and p.op_type == "Constant":
            for a in p.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name == "value_float":
                    return np.array(a.f, dtype=np.float32)
                if a.name == "value_floats":
                    return np.array(a.floats, dtype=np.float32)
        return None

    def scalar(self, name: str) -> float | None:
        c = self.const(name)
        if c is None or c.size != 1:
            return None
        return float(c.reshape(-1)[0])

    def add_init(self, name: str, arr: np.ndarray) -> str:
        self.inits[name] = arr
        self.new_inits.append(numpy_helper.from_array(arr, name))
        return name

    def other_input(self, node: onnx.NodeProto, name: str) -> str | None:
        ins = list(node.input)
        if len(ins) != 2 or name not in ins:
            return None
        return ins[1] if ins[0] == name else ins[0]


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _fold_batchnorm(g: _Graph) -> bool:
    for conv in g.nodes:
        if conv.op_type != "Conv" or conv.input[1] not in g.inits:
            continue
        bn = g.only_consumer(conv.output[0])
        if bn is None or bn.op_type != "BatchNormalization" or len(bn.output) > 1 and any(bn.output[1:]):
            continue
        params = [g.const(n) for n in bn.input[1:5]]
        if any(p is None for p in params):
            continue
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)  # type: ignore[arg-type]
        eps = float(_attr(bn, "epsilon", 1e-5))  # type: ignore[arg-type]
        k = gamma / np.sqrt(var + eps)
        w = g.inits[conv.input[1]].astype(np.float64)
        w = w * k.reshape((-1,) + (1,) * (w.ndim - 1))  # any spatial rank (1-D convs too)
        b = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros_like(k)
        b = (np.asarray(b, dtype=np.float64) - mean) * k + beta
        wn = g.add_init(conv.output[0] + "_bnw", w.astype(np.float32))
        bn_b = g.add_init(conv.output[0] + "_bnb", b.astype(np.float32))
        new = helper.make_node("Conv", [conv.input[0], wn, bn_b], [bn.output[0]], name=conv.name)
        new.attribute.extend(conv.attribute)
        _replace(g, [conv, bn], new)
        return True
    return False


def _fuse_matmul_add(g: _Graph) -> bool:
    for mm in g.nodes:
        if mm.op_type != "MatMul" or g.const(mm.input[1]) is None or g.const(mm.input[1]).ndim != 2:  # type: ignore[union-attr]
            continue
        add = g.only_consumer(mm.output[0])
        if add is None or add.op_type != "Add":
            continue
        other = g.other_input(add, mm.output[0])
        c = g.const(other) if other else None
        n = g.const(mm.input[1]).shape[1]  # type: ignore[union-attr]
        if c is None or c.size != n or (c.ndim > 1 and c.shape[-1] != n):
            continue
        bias = g.add_init(add.output[0] + "_bias", np.asarray(c, dtype=np.float32).reshape(-1))
        new = helper.make_node("AievmLinear", [mm.input[0], mm.input[1], bias], [add.output[0]], name=mm.name,
                               domain="aievm")
        _replace(g, [mm, add], new)
        return True
    return False


def _fuse_relu(g: _Graph) -> bool:
    for n in g.nodes:
        if n.op_type not in ("Conv", "Gemm", "AievmLinear") or _attr(n, "aievm_relu", 0):
            continue
        r = g.only_consumer(n.output[0])
        if r is None or r.op_type != "Relu":
            continue
        new = helper.make_node(n.op_type, list(n.input), [r.output[0]], name=n.name, domain=n.domain)
        new.attribute.extend(n.attribute)
        new.attribute.append(helper.make_attribute("aievm_relu", 1))
        _replace(g, [n, r], new)
        return True
    return False


def _fuse_gelu(g: _Graph) -> bool:
    for erf in g.nodes:
        if erf.op_type != "Erf":
            continue
        pre = g.producer.get(erf.input[0])
        if pre is None or pre.op_type not in ("Div", "Mul") or len(pre.input) != 2:
            continue
        c = g.scalar(pre.input[1])
        if c is None or not np.isclose(c if pre.op_type == "Div" else 1.0 / c, np.sqrt(2.0), rtol=1e-3):
            continue
        x = pre.input[0]
        add = g.only_consumer(erf.output[0])
        if add is None or add.op_type != "Add" or g.scalar(g.other_input(add, erf.output[0]) or "") != 1.0:
            continue
        m1 = g.only_consumer(add.output[0])
        if m1 is None or m1.op_type != "Mul":
            continue
        other = g.other_input(m1, add.output[0])
        chain = [pre, erf, add, m1]
        if other == x:  # (x * (1 + erf)) * 0.5
            m2 = g.only_consumer(m1.output[0])
            if m2 is None or m2.op_type != "Mul" or g.scalar(g.other_input(m2, m1.output[0]) or "") != 0.5:
                continue
            chain.append(m2)
            out = m2.output[0]
        else:  # (0.5 * x) * (1 + erf)
            half = g.producer.get(other or "")
            if half is None or half.op_type != "Mul" or g.other_input(half, x) is None:
                continue
            if g.scalar(g.other_input(half, x) or "") != 0.5 or len(g.consumers.get(half.output[0], [])) != 1:
                continue
            chain.append(half)
            out = m1.output[0]
        if len(g.consumers.get(pre.output[0], [])) != 1:
            continue
        _replace(g, chain, helper.make_node("Gelu", [x], [out], name=erf.name or "gelu"))
        return True
    return False


def _fuse_layernorm(g: _Graph) -> bool:
    for sq in g.nodes:
        if sq.op_type != "Sqrt":
            continue
        add_eps = g.producer.get(sq.input[0])
        if add_eps is None or add_eps.op_type != "Add":
            continue
        var = g.producer.get(add_eps.input[0])
        eps = g.scalar(add_eps.input[1])
        if var is None or var.op_type != "ReduceMean" or eps is None:
            continue
        pw = g.producer.get(var.input[0])
        if pw is None or pw.op_type != "Pow" or g.scalar(pw.input[1]) != 2.0:
            continue
        sub = g.producer.get(pw.input[0])
        if sub is None or sub.op_type != "Sub":
            continue
        mean = g.producer.get(sub.input[1])
        if mean is None or mean.op_type != "ReduceMean" or mean.input[0] != sub.input[0]:
            continue
        for rm in (mean, var):
            axes = _attr(rm, "axes", None)
            if axes is None and len(rm.input) > 1:
                axes = g.const(rm.input[1])
            if axes is None or list(np.asarray(axes).reshape(-1)) != [-1]:
                break
        else:
            div = [c for c in g.consumers.get(sq.output[0], []) if c.op_type == "Div"]
            if len(div) != 1 or div[0].input[0] != sub.output[0]:
                continue
            mul = g.only_consumer(div[0].output[0])
            if mul is None or mul.op_type != "Mul":
                continue
            gamma = g.const(g.other_input(mul, div[0].output[0]) or "")
            addb = g.only_consumer(mul.output[0])
            beta = None
            if addb is not None and addb.op_type == "Add":
                beta = g.const(g.other_input(addb, mul.output[0]) or "")
            if gamma is None or beta is None:
                continue
            if len(g.consumers.get(sub.output[0], [])) != 2:
                continue
            gname = g.add_init(addb.output[0] + "_ln_gamma", np.asarray(gamma, dtype=np.float32).reshape(-1))  # type: ignore[union-attr]
            bname = g.add_init(addb.output[0] + "_ln_beta", np.asarray(beta, dtype=np.float32).reshape(-1))  # type: ignore[union-attr]
            new = helper.make_node("LayerNormalization", [sub.input[0], gname, bname], [addb.output[0]],  # type: ignore[union-attr]
                                   axis=-1, epsilon=eps, name=sq.name or "layernorm")
            _replace(g, [mean, sub, pw, var, add_eps, sq, div[0], mul, addb], new)  # type: ignore[list-item]
            return True
    return False


def _replace(g: _Graph, old: list[onnx.NodeProto], new: onnx.NodeProto) -> None:
    ids = {id(n) for n in old}
    pos = max(i for i, n in enumerate(g.nodes) if id(n) in ids)
    before = [n for n in g.nodes[:pos] if id(n) not in ids]
    g.nodes = before + [new] + [n for n in g.nodes[pos + 1 :] if id(n) not in ids]
    g._index()


def rewrite_graph(graph: onnx.GraphProto) -> onnx.GraphProto:
    """A copy of ``graph`` with the fusions applied (the input is not modified)."""
    g = _Graph(graph)
    from .rewrite_activation import fuse_elementwise_gelu
    from .rewrite_hardswish import fuse_hardswish
    from .rewrite_layernorm import fuse_handwritten_layernorm
    from .rewrite_masked import fuse_masked_mean, fuse_masked_softmax
    from .rewrite_mha import batch_first_attention, slice_squeeze_gather
    from .rewrite_onehot import fuse_onehot_matmul
    from .rewrite_recurrent import batch_first_recurrent
    from .rewrite_softmax import fuse_handwritten_softmax
    from .rewrite_stft import fuse_stft_magnitude

    for rule in (batch_first_attention, slice_squeeze_gather,  # (before _fuse_matmul_add fuses the q/k/v MatMul)
                 fuse_onehot_matmul, _fold_batchnorm, _fuse_layernorm, fuse_handwritten_layernorm,
                 fuse_handwritten_softmax, _fuse_gelu, fuse_elementwise_gelu, fuse_hardswish, _fuse_matmul_add,
                 _fuse_relu,
                 fuse_masked_softmax, fuse_masked_mean, batch_first_recurrent, fuse_stft_magnitude):
        while rule(g):
            pass
    out = onnx.GraphProto()
    out.CopyFrom(graph)
    del out.node[:]
    out.node.extend(g.nodes)
    out.initializer.extend(g.new_inits)
    return out
