"""BERT-style encoder built with numpy + ``onnx.helper`` (no torch), random weights.

``build_bert_like(...)`` returns an ``onnx.ModelProto`` shaped like an exported BERT/MiniLM
sequence classifier:

* input  ``input_ids`` int64 [N, seq] (dynamic batch ``N``)
* output ``logits``    float32 [N, num_classes]

Graph (per the usual PyTorch export patterns)::

    Gather(word_emb, input_ids) + pos_emb -> LayerNorm
    repeat `layers` times (post-LN, as in BERT):
        Q/K/V = MatMul + Add
        Reshape [0, 0, heads, dh] -> Transpose (Q, V: [0,2,1,3]; K: [0,2,3,1])
        MatMul(Q, K^T) -> Mul(1/sqrt(dh)) -> Softmax(axis=-1) -> MatMul(V)
        Transpose [0,2,1,3] -> Reshape [0, 0, hidden] -> MatMul + Add -> Add(residual) -> LayerNorm
        MatMul + Add -> GELU -> MatMul + Add -> Add(residual) -> LayerNorm
    Gather(axis=1, index 0)  (the [CLS] token) -> MatMul + Add -> logits

Reshape shape constants are exporter-style, with 0 ("copy this dim from the input") entries:
``[0, 0, heads, dh]`` and ``[0, 0, hidden]`` (no -1), so batch and sequence dims stay dynamic in the
constants themselves; the sequence length is nevertheless fixed to ``seq`` by the position
embedding initializer ([seq, hidden]), and the graph input is declared [N, seq].

LayerNorm is a single ``LayerNormalization`` node (opset 17) or, with ``decomposed_layernorm=True``,
the pattern older exporters emit: ReduceMean, Sub, Pow(2), ReduceMean, Add(eps), Sqrt, Div,
Mul(gamma), Add(beta).  GELU is the exported Erf pattern ``x * 0.5 * (1 + Erf(x / sqrt(2)))`` (as
Div, Erf, Add, Mul, Mul) with ``erf_gelu=True``, otherwise a single ``Gelu`` node, which only exists
from opset 20 on, so the model is then stamped opset 20 (ReduceMean then takes its axes as an input).

Weights: N(0, 0.02) for matrices and embeddings (BERT's init), biases N(0, 0.02),
LayerNorm gamma 1 + N(0, 0.1) and beta N(0, 0.02) so the affine part is not the identity.
Everything is drawn from ``numpy.random.default_rng(seed)``: same arguments, same bytes.

The default size (6 layers, hidden 384, 12 heads, ffn 1536 — MiniLM-L6-like) is ~11 M parameters
(~43 MB), so it is not committed; write it when needed::

    .venv/bin/python models/bert_like.py --out models/bert_like/model.onnx [--calib 64] [--check]

``--calib K`` also writes ``calib.npy`` (int64 [K, seq] token ids from ``make_token_inputs``) next to
the model; ``--check`` runs onnx.checker and onnxruntime on a few inputs.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_token_inputs(n: int, seq: int = 32, vocab: int = 1000, seed: int = 0) -> np.ndarray:
    """Deterministic random token ids, int64 [n, seq]; column 0 is token 1 (a "[CLS]")."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocab, size=(n, seq), dtype=np.int64) if vocab > 2 else np.zeros((n, seq), np.int64)
    if vocab > 1:
        ids[:, 0] = 1
    return ids


class _Builder:
    def __init__(self, rng: np.random.Generator, opset: int):
        self.rng = rng
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0
        self._consts: dict[tuple, str] = {}

    def uid(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def const(self, value, dtype=np.float32) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(f"const_{len(self._consts)}", arr)
        return self._consts[key]

    def normal(self, name: str, shape, std: float = 0.02, mean: float = 0.0) -> str:
        return self.init(name, (mean + std * self.rng.standard_normal(shape)).astype(np.float32))

    def node(self, op: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        name = name or self.uid(op)
        out = name + "_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def linear(self, x: str, prefix: str, d_in: int, d_out: int) -> str:
        w = self.normal(f"{prefix}.weight", (d_in, d_out))
        b = self.normal(f"{prefix}.bias", (d_out,))
        y = self.node("MatMul", [x, w], name=f"{prefix}/MatMul")
        return self.node("Add", [y, b], name=f"{prefix}/Add")

    def reduce_mean(self, x: str, name: str) -> str:
        if self.opset >= 18:
            return self.node("ReduceMean", [x, self.const([-1], np.int64)], name=name, keepdims=1)
        return self.node("ReduceMean", [x], name=name, axes=[-1], keepdims=1)

    def layernorm(self, x: str, prefix: str, hidden: int, decomposed: bool, eps: float = 1e-12) -> str:
        gamma = self.normal(f"{prefix}.weight", (hidden,), std=0.1, mean=1.0)
        beta = self.normal(f"{prefix}.bias", (hidden,))
        if not decomposed:
            return self.node("LayerNormalization", [x, gamma, beta], name=f"{prefix}/LayerNorm",
                             axis=-1, epsilon=eps)
        mean = self.reduce_mean(x, f"{prefix}/ReduceMean")
        d = self.node("Sub", [x, mean], name=f"{prefix}/Sub")
        sq = self.node("Pow", [d, self.const(2.0)], name=f"{prefix}/Pow")
        var = self.reduce_mean(sq, f"{prefix}/ReduceMean_1")
        ve = self.node("Add", [var, self.const(eps)], name=f"{prefix}/Add")
        sd = self.node("Sqrt", [ve], name=f"{prefix}/Sqrt")
        n = self.node("Div", [d, sd], name=f"{prefix}/Div")
        m = self.node("Mul", [n, gamma], name=f"{prefix}/Mul")
        return self.node("Add", [m, beta], name=f"{prefix}/Add_1")

    def gelu(self, x: str, prefix: str, erf: bool) -> str:
        if not erf:
            return self.node("Gelu", [x], name=f"{prefix}/Gelu")
        d = self.node("Div", [x, self.const(math.sqrt(2.0))], name=f"{prefix}/Div")
        e = self.node("Erf", [d], name=f"{prefix}/Erf")
        a = self.node("Add", [e, self.const(1.0)], name=f"{prefix}/Add")
        m = self.node("Mul", [x, a], name=f"{prefix}/Mul")
        return self.node("Mul", [m, self.const(0.5)], name=f"{prefix}/Mul_1")


def build_bert_like(
    layers: int = 6,
    hidden: int = 384,
    heads: int = 12,
    ffn: int = 1536,
    seq: int = 32,
    vocab: int = 1000,
    num_classes: int = 2,
    seed: int = 0,
    decomposed_layernorm: bool = False,
    erf_gelu: bool = True,
) -> onnx.ModelProto:
    if hidden % heads:
        raise ValueError("hidden must be divisible by heads")
    dh = hidden // heads
    opset = 17 if erf_gelu else 20
    b = _Builder(np.random.default_rng(seed), opset)

    word = b.normal("embeddings.word_embeddings.weight", (vocab, hidden))
    pos = b.normal("embeddings.position_embeddings.weight", (seq, hidden))
    x = b.node("Gather", [word, "input_ids"], name="embeddings/Gather", axis=0)
    x = b.node("Add", [x, pos], name="embeddings/Add")
    x = b.layernorm(x, "embeddings.LayerNorm", hidden, decomposed_layernorm)

    split_shape = b.const([0, 0, heads, dh], np.int64)
    merge_shape = b.const([0, 0, hidden], np.int64)
    scale = b.const(1.0 / math.sqrt(dh))
    for i in range(layers):
        p = f"encoder.layer.{i}"
        q = b.linear(x, f"{p}.attention.self.query", hidden, hidden)
        k = b.linear(x, f"{p}.attention.self.key", hidden, hidden)
        v = b.linear(x, f"{p}.attention.self.value", hidden, hidden)
        q = b.node("Transpose", [b.node("Reshape", [q, split_shape], name=f"{p}/q/Reshape")],
                   name=f"{p}/q/Transpose", perm=[0, 2, 1, 3])
        k = b.node("Transpose", [b.node("Reshape", [k, split_shape], name=f"{p}/k/Reshape")],
                   name=f"{p}/k/Transpose", perm=[0, 2, 3, 1])
        v = b.node("Transpose", [b.node("Reshape", [v, split_shape], name=f"{p}/v/Reshape")],
                   name=f"{p}/v/Transpose", perm=[0, 2, 1, 3])
        s = b.node("MatMul", [q, k], name=f"{p}/scores/MatMul")
        s = b.node("Mul", [s, scale], name=f"{p}/scores/Mul")
        a = b.node("Softmax", [s], name=f"{p}/Softmax", axis=-1)
        c = b.node("MatMul", [a, v], name=f"{p}/context/MatMul")
        c = b.node("Transpose", [c], name=f"{p}/context/Transpose", perm=[0, 2, 1, 3])
        c = b.node("Reshape", [c, merge_shape], name=f"{p}/context/Reshape")
        o = b.linear(c, f"{p}.attention.output.dense", hidden, hidden)
        x = b.node("Add", [o, x], name=f"{p}/attention/residual")
        x = b.layernorm(x, f"{p}.attention.output.LayerNorm", hidden, decomposed_layernorm)
        h = b.linear(x, f"{p}.intermediate.dense", hidden, ffn)
        h = b.gelu(h, f"{p}.intermediate.gelu", erf_gelu)
        h = b.linear(h, f"{p}.output.dense", ffn, hidden)
        x = b.node("Add", [h, x], name=f"{p}/output/residual")
        x = b.layernorm(x, f"{p}.output.LayerNorm", hidden, decomposed_layernorm)

    cls = b.node("Gather", [x, b.const(0, np.int64)], name="pooler/Gather", axis=1)  # [N, hidden]
    w = b.normal("classifier.weight", (hidden, num_classes))
    bias = b.normal("classifier.bias", (num_classes,))
    y = b.node("MatMul", [cls, w], name="classifier/MatMul")
    b.nodes.append(helper.make_node("Add", [y, bias], ["logits"], name="classifier/Add"))

    graph = helper.make_graph(
        b.nodes,
        "bert_like",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", seq])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="aievm-models")
    model.ir_version = 8 if opset < 20 else 9
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write the model here (e.g. models/bert_like/model.onnx)")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--num-classes", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decomposed-layernorm", action="store_true")
    ap.add_argument("--gelu-node", action="store_true", help="use a Gelu node (opset 20) instead of Erf")
    ap.add_argument("--calib", type=int, default=0, help="also write K calibration rows to calib.npy")
    ap.add_argument("--check", action="store_true", help="run onnx.checker + onnxruntime")
    args = ap.parse_args(argv)

    model = build_bert_like(
        layers=args.layers, hidden=args.hidden, heads=args.heads, ffn=args.ffn, seq=args.seq,
        vocab=args.vocab, num_classes=args.num_classes, seed=args.seed,
        decomposed_layernorm=args.decomposed_layernorm, erf_gelu=not args.gelu_node,
    )
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(f"bert_like: {len(model.graph.node)} nodes, {n_params} parameters")
    if args.check:
        import onnxruntime as ort

        onnx.checker.check_model(model, full_check=True)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ids = make_token_inputs(4, args.seq, args.vocab, args.seed + 1)
        logits = sess.run(None, {"input_ids": ids})[0]
        print("onnxruntime logits", logits.shape, logits.dtype, logits.tolist())
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        onnx.save(model, args.out)
        print("wrote", args.out, os.path.getsize(args.out), "bytes")
        if args.calib:
            calib = make_token_inputs(args.calib, args.seq, args.vocab, args.seed + 1)
            path = os.path.join(os.path.dirname(os.path.abspath(args.out)), "calib.npy")
            np.save(path, calib)
            print("wrote", path, calib.shape)


if __name__ == "__main__":
    main()
