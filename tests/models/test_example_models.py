"""Checks of the example models under models/ (their files, interfaces, op sets and float accuracy)."""

from __future__ import annotations

import importlib.util
import os
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")

# name -> (input shape without batch, output name, output width, min accuracy, allowed ops)
EXAMPLES = {
    "digits_mlp": ((64,), "probabilities", 10, 0.95, {"Gemm", "Relu", "Softmax"}),
    "digits_cnn": ((1, 8, 8), "logits", 10, 0.95,
                   {"Conv", "BatchNormalization", "Relu", "MaxPool", "Flatten", "Gemm"}),
    "encoder": ((8, 8), "logits", 10, 0.90,
                {"MatMul", "Add", "Constant", "Reshape", "Transpose", "Mul", "Softmax",
                 "LayerNormalization", "Div", "Erf", "ReduceMean", "Gemm"}),
}


def _session(path_or_model) -> ort.InferenceSession:
    data = path_or_model if isinstance(path_or_model, str) else path_or_model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_model(name: str) -> None:
    in_shape, out_name, width, min_acc, allowed = EXAMPLES[name]
    d = os.path.join(MODELS, name)
    path = os.path.join(d, "model.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    ops = Counter(n.op_type for n in model.graph.node)
    assert set(ops) <= allowed, ops
    if name == "digits_cnn":
        assert ops["BatchNormalization"] == 2

    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "input" and out.name == out_name
    dims = [x.dim_param or x.dim_value for x in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and tuple(dims[1:]) == in_shape

    calib = np.load(os.path.join(d, "calib.npy"))
    x = np.load(os.path.join(d, "test_x.npy"))
    y = np.load(os.path.join(d, "test_y.npy"))
    assert calib.dtype == np.float32 and calib.shape == (200, *in_shape)
    assert x.dtype == np.float32 and x.shape == (450, *in_shape)
    assert y.dtype == np.int64 and y.shape == (450,)
    assert 0.0 <= x.min() and x.max() <= 1.0

    got = _session(path).run(None, {"input": x})[0]
    assert got.shape == (450, width) and got.dtype == np.float32
    assert float((got.argmax(1) == y).mean()) >= min_acc


def _load_bert_like():
    spec = importlib.util.spec_from_file_location("bert_like", os.path.join(MODELS, "bert_like.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SMALL = dict(layers=2, hidden=64, heads=4, ffn=128, seq=16, vocab=100, num_classes=3, seed=7)


def _bert_reference(model: onnx.ModelProto, ids: np.ndarray, layers: int, heads: int) -> np.ndarray:
    """Plain numpy forward pass over the builder's initializers (by their names)."""
    from math import erf, sqrt

    w = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    verf = np.vectorize(erf)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"] + w[p + ".bias"]

    x = ln(w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"],
           "embeddings.LayerNorm")
    n, s, h = x.shape
    dh = h // heads
    for i in range(layers):
        p = f"encoder.layer.{i}"
        q, k, v = (lin(x, f"{p}.attention.self.{t}").reshape(n, s, heads, dh).transpose(0, 2, 1, 3)
                   for t in ("query", "key", "value"))
        sc = q @ k.transpose(0, 1, 3, 2) / sqrt(dh)
        a = np.exp(sc - sc.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(0, 2, 1, 3).reshape(n, s, h)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        f = lin(x, f"{p}.intermediate.dense")
        f = 0.5 * f * (1.0 + verf(f / sqrt(2.0)))
        x = ln(lin(f, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    return lin(x[:, 0], "classifier")


def test_bert_like_small_variants() -> None:
    bl = _load_bert_like()
    ids = bl.make_token_inputs(5, SMALL["seq"], SMALL["vocab"], seed=1)
    assert ids.dtype == np.int64 and ids.shape == (5, SMALL["seq"])
    assert ids.min() >= 0 and ids.max() < SMALL["vocab"]
    np.testing.assert_array_equal(ids, bl.make_token_inputs(5, SMALL["seq"], SMALL["vocab"], seed=1))

    base = bl.build_bert_like(**SMALL)
    assert base.SerializeToString() == bl.build_bert_like(**SMALL).SerializeToString()  # deterministic
    ops = Counter(n.op_type for n in base.graph.node)
    assert set(ops) == {"Gather", "Add", "LayerNormalization", "MatMul", "Reshape", "Transpose", "Mul",
                        "Softmax", "Div", "Erf"}
    assert base.graph.input[0].name == "input_ids" and base.graph.output[0].name == "logits"
    ref = _session(base).run(None, {"input_ids": ids})[0]
    assert ref.shape == (5, SMALL["num_classes"]) and ref.dtype == np.float32
    np.testing.assert_allclose(ref, _bert_reference(base, ids, SMALL["layers"], SMALL["heads"]),
                               rtol=1e-4, atol=1e-4)

    dec = bl.build_bert_like(**SMALL, decomposed_layernorm=True)
    assert "LayerNormalization" not in {n.op_type for n in dec.graph.node}
    np.testing.assert_allclose(_session(dec).run(None, {"input_ids": ids})[0], ref, rtol=1e-4, atol=1e-4)

    gelu = bl.build_bert_like(**SMALL, erf_gelu=False, decomposed_layernorm=True)
    assert "Gelu" in {n.op_type for n in gelu.graph.node}
    np.testing.assert_allclose(_session(gelu).run(None, {"input_ids": ids})[0], ref, rtol=1e-4, atol=1e-4)


def test_minilm_calibration_files() -> None:
    d = os.path.join(MODELS, "minilm")
    ids = np.load(os.path.join(d, "calib_input_ids.npy"))
    mask = np.load(os.path.join(d, "calib_attention_mask.npy"))
    ref = np.load(os.path.join(d, "ref_output.npy"))
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == mask.shape == (64, 128)
    assert ref.dtype == np.float32 and ref.shape == (64, 384)
    assert (ids[:, 0] == 101).all() and set(np.unique(mask)) == {0, 1}  # [CLS] first, 0/1 mask
    path = os.path.join(d, "model.onnx")
    if not os.path.exists(path):
        pytest.skip("models/minilm/model.onnx not exported (see models/export_minilm.py)")
    got = _session(path).run(None, {"input_ids": ids, "attention_mask": mask})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)
