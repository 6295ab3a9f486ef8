"""``opml/convert/fold_lut.py``: a ``mul`` / ``add`` of two functions of one byte tensor becomes one ``lut``.

- SiLU (``Sigmoid`` + ``Mul``, either operand order), hard-swish (the ``HardSwish`` node and ``HardSigmoid`` +
  ``Mul``), ``x * x``, ``sigmoid(x) * tanh(x)`` and ``x + relu(x)`` convert to bundles without the ``mul`` /
  ``add``, whose outputs equal the unfolded bundle's byte for byte on the calibration data and on random
  inputs (hypothesis, including far outside the calibration range), with the same output scale;
- the folded bundles: engine == reference, and every node through the fraud VM;
- near misses stay two nodes: a gate of another tensor, a broadcast gate (squeeze-excitation);
- the corpus: EfficientNet-B0 and MobileNetV3-small lose their activation muls (49 and 19) with the same outputs.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from fraud_vm.trace import NodeTrace
from opml.bundle import Bundle, load_bundle
from opml.convert import convert, fold_lut
from opml.engine import get_plan, run
from opml.reference import run_reference

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def _fold(on: bool) -> Iterator[None]:
    old = fold_lut.ENABLED
    fold_lut.ENABLED = on
    try:
        yield
    finally:
        fold_lut.ENABLED = old


def _both(m: onnx.ModelProto, calib: object) -> tuple[Bundle, Bundle]:
    with _fold(True):
        on = convert(m, calib)
    with _fold(False):
        off = convert(m, calib)
    return on, off


def _model(body: list[onnx.NodeProto], inits: list[onnx.TensorProto] = (), opset: int = 17) -> onnx.ModelProto:  # type: ignore[assignment]
    """x -> Conv (a realistic spread, 4 channels) -> body -> y."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(0, 0.8, (4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]), *body]
    g = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, *inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _n(op: str, ins: list[str], out: str, **kw: object) -> onnx.NodeProto:
    return helper.make_node(op, ins, [out], **kw)


CASES: dict[str, tuple[list[onnx.NodeProto], str]] = {  # body, the op that disappears
    "silu": ([_n("Sigmoid", ["a"], "s"), _n("Mul", ["a", "s"], "y")], "mul"),
    "silu_swapped": ([_n("Sigmoid", ["a"], "s"), _n("Mul", ["s", "a"], "y")], "mul"),
    "hardswish_node": ([_n("HardSwish", ["a"], "y")], "mul"),
    "hardsigmoid_mul": ([_n("HardSigmoid", ["a"], "s", alpha=1.0 / 6.0, beta=0.5), _n("Mul", ["a", "s"], "y")], "mul"),
    "square": ([_n("Mul", ["a", "a"], "y")], "mul"),
    "sigmoid_times_tanh": ([_n("Sigmoid", ["a"], "s"), _n("Tanh", ["a"], "t"), _n("Mul", ["s", "t"], "y")], "mul"),
    "x_plus_relu": ([_n("Relu", ["a"], "r"), _n("Add", ["a", "r"], "y")], "add"),
}
CALIB = np.random.default_rng(0).standard_normal((8, 3, 6, 6)).astype(np.float32)


def _through_fraud_vm(b: Bundle, arrays: list[np.ndarray]) -> None:
    b = load_bundle(b.encoded)
    env = dict(zip(b.inputs, arrays, strict=True))
    for j, (node, kernel) in enumerate(zip(b.nodes, get_plan(b).kernels, strict=True)):
        tr = NodeTrace(b, j, dict(env))
        env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
        final = list(tr.interpret())[-1]
        assert final.status == 1 and final.step == tr.num_steps, f"node {j} ({node.op})"
        assert [o.tobytes() for o in tr.outputs()] == [np.ascontiguousarray(tr.y).tobytes()], f"node {j} ({node.op})"


@pytest.mark.parametrize("case", sorted(CASES))
def test_fold_gives_the_same_bytes(case: str) -> None:
    body, gone = CASES[case]
    on, off = _both(_model(body, opset=14 if case == "hardswish_node" else 17), CALIB)
    ops_on, ops_off = Counter(n.op for n in on.nodes), Counter(n.op for n in off.nodes)
    assert ops_off[gone] == 1 and ops_on[gone] == 0, (ops_on, ops_off)
    assert len(on.nodes) <= len(off.nodes) - (case != "square")  # (x * x: the mul becomes the one lut)
    # the product keeps its calibrated output parameters
    out_on, out_off = (b.tensors[b.nodes[-1].inputs[0]] for b in (on, off))
    assert (out_on.scale, out_on.zero_point) == (out_off.scale, out_off.zero_point)
    for x in (CALIB, CALIB[:1], np.random.default_rng(1).standard_normal((3, 3, 6, 6)).astype(np.float32) * 4):
        assert run(on, [x])[0].tobytes() == run(off, [x])[0].tobytes()
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32) * 3
    assert run(on, [x])[0].tobytes() == run_reference(on, [x])[0].tobytes()
    _through_fraud_vm(on, [x])


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(CASES)), st.integers(0, 2**31), st.floats(0.1, 8.0), st.integers(1, 5))
def test_fold_equals_unfolded_on_random_inputs(case: str, seed: int, spread: float, n: int) -> None:
    body, _ = CASES[case]
    rng = np.random.default_rng(seed)
    calib = (rng.standard_normal((4, 3, 6, 6)) * rng.uniform(0.2, 3.0)).astype(np.float32)
    on, off = _both(_model(body, opset=14 if case == "hardswish_node" else 17), calib)
    x = (rng.standard_normal((n, 3, 6, 6)) * spread).astype(np.float32)
    got = run(on, [x])[0]
    assert got.tobytes() == run(off, [x])[0].tobytes()
    assert got.tobytes() == run_reference(on, [x])[0].tobytes()


def test_near_misses_stay_two_nodes() -> None:
    # a gate computed from another tensor (x * sigmoid(z), z = -x as its own lut of the conv output is still a
    # function of x: use a second convolution instead)
    rng = np.random.default_rng(4)
    w2 = numpy_helper.from_array(rng.normal(0, 0.8, (4, 4, 1, 1)).astype(np.float32), "w2")
    other = _model([_n("Conv", ["a", "w2"], "z"), _n("Sigmoid", ["z"], "s"), _n("Mul", ["a", "s"], "y")], [w2])
    # squeeze-excitation: the gate is per channel, broadcast over the pixels
    se = _model([_n("GlobalAveragePool", ["a"], "p"), _n("Sigmoid", ["p"], "s"), _n("Mul", ["a", "s"], "y")])
    for m in (other, se):
        on, off = _both(m, CALIB)
        assert on.encoded == off.encoded
        assert Counter(n.op for n in on.nodes)["mul"] == 1


def test_folded_lut_reads_the_shared_input_and_the_gate_stays_when_read_elsewhere() -> None:
    """The gate ``sigmoid(a)`` is also a graph output: it stays, and the product is a table of ``a``."""
    m = _model([_n("Sigmoid", ["a"], "s"), _n("Mul", ["a", "s"], "y")])
    m.graph.output.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, None))
    on, off = _both(m, CALIB)
    luts = [n for n in on.nodes if n.op == "lut"]
    assert len(luts) == 2 and luts[0].inputs[0] == luts[1].inputs[0]
    for a, b in zip(run(on, [CALIB]), run(off, [CALIB]), strict=True):
        assert a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------------------------- corpus models

sys.path.insert(0, str(ROOT / "scripts" / "bench"))


@pytest.mark.parametrize("name,folded", [("efficientnet_b0", 49), ("mobilenet_v3_small", 19)])
def test_corpus_models_fold_with_the_same_outputs(name: str, folded: int) -> None:
    from corpus import CORPUS_DIR
    from corpus import _skeleton_entry as skeleton_entry

    e = skeleton_entry(CORPUS_DIR / f"{name}.onnx")
    calib = e.batch(4, 0)
    on, off = _both(e.load(), calib)
    muls_on, muls_off = (Counter(n.op for n in b.nodes)["mul"] for b in (on, off))
    assert muls_off - muls_on == folded, (muls_on, muls_off)
    assert len(off.nodes) - len(on.nodes) == folded
    for xs in (calib, e.batch(1, 1), e.batch(3, 2)):
        for a, b in zip(run(on, xs), run(off, xs), strict=True):
            assert a.tobytes() == b.tobytes()
