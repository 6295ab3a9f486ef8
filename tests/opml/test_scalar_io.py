"""0-d model inputs and outputs (a sample rate, a scalar score) are first-class: shape ``()`` in the bundle.

A 0-d input converts to a ``()`` tensor spec (it was stored as ``(1,)`` before), runs through ``engine.run``
given 0-d or as a one-element vector, through ``run_bytes`` (one value of its dtype in the input bytes), and
a 0-d output comes back 0-d. Bundles that declared a scalar as ``(1,)`` keep their bytes and accept a 0-d
value. Every node of the converted graph runs through the fraud VM.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from fraud_vm.trace import NodeTrace
from opml.bundle import DType, TensorSpec, encode_bundle, load_bundle
from opml.convert import convert
from opml.engine import check_input, get_plan, output_length, run, run_bytes
from opml.errors import InferenceInputError


def _model() -> onnx.ModelProto:
    """y = x * 0.5 + s (s a 0-d float input); m = max(y) (a 0-d output); k = sr * 0 (a 0-d int64 input that
    folds, silero-vad's pattern) added to nothing else but declared."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    m = helper.make_tensor_value_info("m", TensorProto.FLOAT, None)
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    nodes = [helper.make_node("Mul", ["x", "half"], ["xh"]), helper.make_node("Add", ["xh", "s"], ["y"]),
             helper.make_node("ReduceMax", ["y"], ["m"], keepdims=0)]
    g = helper.make_graph(nodes, "scalars", [x, s], [y, m], [half])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _inputs(seed: int, spread: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((3, 4)) * spread).astype(np.float32), np.float32(rng.uniform(0.2, 0.8))]


@pytest.fixture(scope="module")
def bundle():  # type: ignore[no-untyped-def]
    x, _ = _inputs(0, 3.0)  # (one calibration sample: ranges wide enough for the others)
    return convert(_model(), [x, np.float32(1.0)])


def test_zero_d_specs_in_the_bundle(bundle) -> None:  # type: ignore[no-untyped-def]
    b = load_bundle(encode_bundle(bundle))
    assert [b.tensors[i].shape for i in b.inputs] == [(3, 4), ()]
    assert [b.tensors[i].shape for i in b.outputs] == [(3, 4), ()]
    assert encode_bundle(b) == encode_bundle(bundle)


def test_run_and_run_bytes(bundle) -> None:  # type: ignore[no-untyped-def]
    x, s = _inputs(1)
    y, m = run(bundle, [x, s])
    assert y.shape == (3, 4) and m.shape == ()
    sess = ort.InferenceSession(_model().SerializeToString(), providers=["CPUExecutionProvider"])
    wy, wm = sess.run(None, {"x": x, "s": np.asarray(s)})
    assert np.abs(y - wy).max() < 0.05 and abs(float(m) - float(wm)) < 0.05
    # the one-element vector form gives the same outputs
    assert [o.tobytes() for o in run(bundle, [x, np.array([s])])] == [y.tobytes(), m.tobytes()]
    assert [o.tobytes() for o in run(bundle, {"x": x, "s": float(s)})] == [y.tobytes(), m.tobytes()]
    raw = x.tobytes() + np.asarray(s).tobytes()
    out = run_bytes(bundle, raw)
    assert out == y.tobytes() + m.tobytes()
    assert output_length(bundle, len(raw)) == len(out) == 13 * 4  # (the precompile's length rule)


def test_zero_d_input_refusals(bundle) -> None:  # type: ignore[no-untyped-def]
    x, s = _inputs(1)
    with pytest.raises(InferenceInputError, match="input 's': expected shape"):
        run(bundle, [x, np.array([s, s])])
    with pytest.raises(InferenceInputError, match="input 's': expected dtype float32"):
        run(bundle, [x, np.array(True)])
    with pytest.raises(Exception, match="input"):
        run_bytes(bundle, x.tobytes())  # the scalar's 4 bytes missing


def test_old_one_element_specs_take_a_scalar() -> None:
    """A bundle converted before declared a scalar input as (1,): it takes a 0-d value as that vector."""
    spec = TensorSpec("sr", DType.INT64, (1,))
    arr, batch = check_input(spec, np.int64(16000))
    assert arr.shape == (1,) and arr.tolist() == [16000] and batch is None
    arr, _ = check_input(TensorSpec("sr", DType.INT64, ()), np.array([8000]))
    assert arr.shape == () and int(arr) == 8000
    with pytest.raises(InferenceInputError):
        check_input(TensorSpec("sr", DType.INT64, (2,)), np.int64(1))


def test_every_node_through_fraud_vm(bundle) -> None:  # type: ignore[no-untyped-def]
    b = load_bundle(encode_bundle(bundle))
    x, s = _inputs(2)
    env = {b.inputs[0]: x, b.inputs[1]: np.asarray(s)}
    for j, (node, kernel) in enumerate(zip(b.nodes, get_plan(b).kernels, strict=True)):
        tr = NodeTrace(b, j, dict(env))
        env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
        final = list(tr.interpret())[-1]
        assert final.status == 1 and final.step == tr.num_steps, f"node {j} ({node.op})"
        assert [o.tobytes() for o in tr.outputs()] == [np.ascontiguousarray(tr.y).tobytes()], f"node {j} ({node.op})"
