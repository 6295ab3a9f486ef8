"""``rewrite_hardswish``: paddle2onnx's ``Mul(x, Clip(Add(x, 3), 0, 6)) / 6`` becomes one HardSwish.

- every exported form (Div by 6 or Mul by 1/6, either operand order, Clip bounds as inputs or as opset-6
  attributes) converts to the same bundle as the HardSwish node itself;
- near misses (another bound, another divisor, an intermediate read elsewhere) are left alone;
- the fused form is closer to onnxruntime float32 than the op-by-op one (the product's grid was 6x wide).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from opml.convert import convert
from opml.convert.rewrite import rewrite_graph
from opml.engine import run


def _model(body: list[onnx.NodeProto], inits: list[onnx.TensorProto], opset: int = 17,
           extra_out: str | None = None) -> onnx.ModelProto:
    """x -> Conv (so that x has a realistic spread) -> body -> y (+ an extra output)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(0, 0.8, (4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]), *body]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_out:
        outs.append(helper.make_tensor_value_info(extra_out, TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "hs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          outs, [w, *inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _c(name: str, v: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(v, np.float32), name)


def _paddle(div: bool = True, swap: bool = False, lo: float = 0.0, hi: float = 6.0, k: float = 6.0,
            attrs: bool = False) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    clip = helper.make_node("Clip", ["s"], ["c"], min=lo, max=hi) if attrs else \
        helper.make_node("Clip", ["s", "lo", "hi"], ["c"])
    body = [helper.make_node("Add", ["three", "a"] if swap else ["a", "three"], ["s"]), clip,
            helper.make_node("Mul", ["c", "a"] if swap else ["a", "c"], ["p"]),
            helper.make_node("Div", ["p", "k"], ["y"]) if div else
            helper.make_node("Mul", ["k", "p"] if swap else ["p", "k"], ["y"])]
    inits = [_c("three", 3.0), _c("k", k if div else float(np.float32(1.0 / k)))]
    if not attrs:
        inits += [_c("lo", lo), _c("hi", hi)]
    return body, inits


X = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32) * 1.5


def _ops(m: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in rewrite_graph(m.graph).node]


@pytest.mark.parametrize("div,swap,attrs", [(True, False, False), (False, False, False), (False, True, False),
                                            (True, True, True)])
def test_every_exported_form_is_one_hardswish(div: bool, swap: bool, attrs: bool) -> None:
    m = _model(*_paddle(div=div, swap=swap, attrs=attrs), opset=6 if attrs else 17)
    assert _ops(m) == ["Conv", "HardSwish"]
    direct = _model([helper.make_node("HardSwish", ["a"], ["y"])], [], opset=14)
    assert [t.scale for t in convert(m, X).tensors] == [t.scale for t in convert(direct, X).tensors]
    assert np.array_equal(run(convert(m, X), [X])[0], run(convert(direct, X), [X])[0])


@pytest.mark.parametrize("kw", [{"hi": 5.0}, {"lo": -1.0}, {"k": 5.0}])
def test_near_misses_are_left_alone(kw: dict[str, float]) -> None:
    assert "HardSwish" not in _ops(_model(*_paddle(**kw)))
    assert "HardSwish" not in _ops(_model(*_paddle(), extra_out="p"))  # (the product is read elsewhere)


def test_fused_form_is_closer_to_float(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _model(*_paddle())
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    fused = run(convert(m, X), [X])[0]
    g = rewrite_graph(m.graph)  # (the op-by-op lowering: the graph before this rule)
    assert any(n.op_type == "HardSwish" for n in g.node)

    def cos(a: np.ndarray) -> float:
        return float((a * want).sum() / np.linalg.norm(a) / np.linalg.norm(want))

    import opml.convert.rewrite_hardswish as rh

    monkeypatch.setattr(rh, "fuse_hardswish", lambda g: False)
    plain = run(convert(m, X), [X])[0]
    assert cos(fused) > cos(plain), (cos(fused), cos(plain))
