"""scikit-learn's ai.onnx.ml operators (``opml/convert/ml.py``: rewritten as standard nodes, then lowered):
Scaler, LinearRegressor, LinearClassifier (binary and multiclass, each post_transform), Normalizer,
ArrayFeatureExtractor, and a Scaler -> LinearClassifier pipeline with a dynamic batch. Each model is
built with ``onnx.helper`` as skl2onnx emits it (zipmap off) and checked by ``check``: engine ==
reference, fraud VM == engine on every node, onnxruntime float32 within int8 steps, labels equal.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_convert_ops_core import check

from opml.convert import convert
from opml.errors import ConversionError

F = 4
RNG = np.random.default_rng(11)


def _ml_model(nodes: list, outputs: list[tuple[str, int]], inits: list | None = None):  # type: ignore[no-untyped-def]
    g = helper.make_graph(nodes, "sklearn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", F])],
                          [helper.make_tensor_value_info(n, t, None) for n, t in outputs], inits or [])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])


def _x(n: int = 16) -> np.ndarray:
    return RNG.standard_normal((n, F)).astype(np.float32)


def _ml(op: str, ins: list[str], outs: list[str], **attrs: object):  # type: ignore[no-untyped-def]
    return helper.make_node(op, ins, outs, domain="ai.onnx.ml", **attrs)


def test_scaler_is_one_linear() -> None:
    node = _ml("Scaler", ["x"], ["y"], offset=RNG.standard_normal(F).tolist(), scale=RNG.uniform(0.5, 2, F).tolist())
    b = check(_ml_model([node], [("y", TensorProto.FLOAT)]), [_x()], steps=2.0, rel=0.01)
    assert [n.op for n in b.nodes] == ["quantize", "linear", "dequantize"]


def test_linear_regressor() -> None:
    node = _ml("LinearRegressor", ["x"], ["y"], coefficients=RNG.standard_normal(2 * F).tolist(),
               intercepts=[0.5, -1.0], targets=2)
    check(_ml_model([node], [("y", TensorProto.FLOAT)]), [_x()], steps=2.0, rel=0.01)


@pytest.mark.parametrize("rows,post", [(1, "NONE"), (1, "LOGISTIC"), (3, "SOFTMAX"), (3, "LOGISTIC"), (3, "NONE")])
def test_linear_classifier(rows: int, post: str) -> None:
    labels = [3, 7] if rows == 1 else [10, 20, 30]
    node = _ml("LinearClassifier", ["x"], ["label", "scores"], coefficients=RNG.standard_normal(rows * F).tolist(),
               intercepts=RNG.standard_normal(rows).tolist(), classlabels_ints=labels, post_transform=post)
    check(_ml_model([node], [("label", TensorProto.INT64), ("scores", TensorProto.FLOAT)]), [_x()], steps=2.0,
          rel=0.01)


@pytest.mark.parametrize("norm", ["L1", "L2", "MAX"])
def test_normalizer(norm: str) -> None:
    check(_ml_model([_ml("Normalizer", ["x"], ["y"], norm=norm)], [("y", TensorProto.FLOAT)]), [_x()], steps=3.0,
          rel=0.02)


def test_array_feature_extractor_is_a_gather() -> None:
    m = _ml_model([_ml("ArrayFeatureExtractor", ["x", "i"], ["y"])], [("y", TensorProto.FLOAT)],
                  [numpy_helper.from_array(np.array([2, 0], np.int64), "i")])
    b = check(m, [_x()], steps=0.0)
    assert [n.op for n in b.nodes] == ["gather"]


def test_standard_scaler_then_logistic_regression_pipeline() -> None:
    nodes = [_ml("Scaler", ["x"], ["s"], offset=[0.1] * F, scale=[2.0] * F),
             _ml("LinearClassifier", ["s"], ["label", "probabilities"], intercepts=[0.0, 0.1, -0.1],
                 coefficients=RNG.standard_normal(3 * F).tolist(), classlabels_ints=[0, 1, 2],
                 post_transform="SOFTMAX")]
    m = _ml_model(nodes, [("label", TensorProto.INT64), ("probabilities", TensorProto.FLOAT)])
    check(m, [_x(32)], steps=2.0, rel=0.01)


@pytest.mark.parametrize("node,match", [
    (_ml("ZipMap", ["x"], ["y"], classlabels_int64s=[0, 1, 2, 3]), "ZipMap outputs a sequence of maps"),
    (_ml("LinearClassifier", ["x"], ["y", "z"], coefficients=[1.0] * (2 * F), classlabels_strings=["a", "b"]),
     "string class labels are not supported"),
    (_ml("CategoryMapper", ["x"], ["y"]), "unsupported op ai.onnx.ml.CategoryMapper"),
])
def test_refusals_are_one_line(node, match: str) -> None:  # type: ignore[no-untyped-def]
    node.name = "step"
    m = _ml_model([node], [("y", TensorProto.FLOAT)])
    with pytest.raises(ConversionError, match=f"^node 'step' \\({node.op_type}\\): {match}") as e:
        convert(m, _x())
    assert "\n" not in str(e.value)
