"""Converter semantics on edge cases of the exact (data-movement) ops, against onnxruntime.

Each case is a tiny ONNX model whose engine output must equal onnxruntime's exactly (the ops move
data, so there is no quantization error), including the shape. The last test runs a small
BERT-like encoder (models/bert_like.py) whose [CLS] pooling is a Gather with a scalar index.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from opml.convert import convert
from opml.engine import run

ROOT = Path(__file__).resolve().parents[2]


def _model(node: onnx.NodeProto, x_shape: list, inits: list[TensorProto]) -> onnx.ModelProto:
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _ort(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _assert_same_as_ort(m: onnx.ModelProto, x: np.ndarray) -> None:
    want = _ort(m, {"x": x})
    got = run(convert(m, x), [x])[0]
    assert got.shape == want.shape, f"shape {got.shape}, onnxruntime {want.shape}"
    assert got.tobytes() == want.tobytes(), f"\n{got}\nonnxruntime\n{want}"


# (starts, ends, steps) on an axis of length 5; ONNX clamps a negative-step start to [0, dim - 1]
SLICES = [
    (1, 4, 1), (-4, -1, 1), (0, 100, 2), (100, -100, -1), (4, -6, -2), (-1, -7, -1), (3, 0, -1),
    (-10, -20, -1),  # start before the first element, backwards: ONNX clamps start to 0 -> [x0]
    (-100, -100, -1),  # likewise
    (-6, 0, -1),  # empty: start clamps to 0, end 0
    (7, 9, 1), (2, 2, 1), (0, -100, 1),
]


@pytest.mark.parametrize("start,end,step", SLICES)
def test_slice_matches_onnxruntime(start: int, end: int, step: int) -> None:
    inits = [numpy_helper.from_array(np.array([v], np.int64), n)
             for v, n in ((start, "s"), (end, "e"), (1, "a"), (step, "t"))]
    m = _model(helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"], name="slice"), ["N", 5], inits)
    x = np.arange(10, dtype=np.float32).reshape(2, 5) + 1
    _assert_same_as_ort(m, x)


@pytest.mark.parametrize("index", [0, 2, -1])
@pytest.mark.parametrize("batch_dim", ["N", 2])
def test_gather_with_a_scalar_index_drops_the_axis(index: int, batch_dim: object) -> None:
    """Gather(axis=1) with a 0-d index: output rank is one less (e.g. the [CLS] token of a BERT)."""
    inits = [numpy_helper.from_array(np.array(index, np.int64), "i")]
    m = _model(helper.make_node("Gather", ["x", "i"], ["y"], name="cls", axis=1), [batch_dim, 4, 3], inits)
    _assert_same_as_ort(m, np.random.default_rng(0).random((2, 4, 3), dtype=np.float32))


def test_bert_like_output_shape_matches_onnxruntime() -> None:
    spec = importlib.util.spec_from_file_location("bert_like", ROOT / "models" / "bert_like.py")
    assert spec is not None and spec.loader is not None
    bl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bl)
    cfg = dict(layers=2, hidden=64, heads=4, ffn=128, seq=16, vocab=100, num_classes=3, seed=7)
    m = bl.build_bert_like(**cfg)
    ids = bl.make_token_inputs(32, cfg["seq"], cfg["vocab"], seed=1)
    want = _ort(m, {"input_ids": ids})
    got = run(convert(m, ids), [ids])[0]
    assert got.shape == want.shape, f"engine {got.shape}, onnxruntime {want.shape}"
    assert float((got.argmax(-1) == want.argmax(-1)).mean()) >= 0.8
