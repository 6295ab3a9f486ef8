"""Log, Mod and IsNaN (opml.convert.lower_math): ONNX backend node cases, engine == reference, fraud VM.

The backend cases come from onnx's own case code, in memory (as in ``test_convert_ops_backend.py``); Mod's
divisor becomes an initializer (the lowering takes constant divisors). Integer Mod must be exact; float Mod
within ``STEPS`` quantization steps of the coarsest int8 tensor; Log within ``STEPS`` output steps of the
logarithm of its quantized input (the int8 grid's error on a function that is steep near 0 is the grid's, not
the table's). Cases the engine does not support are listed in ``UNSUPPORTED`` with the reason and must fail
with one line naming the node or op. Hypothesis checks engine == reference interpreter with zero tolerance
(integer Mod also == numpy); every node of the bundles runs through the fraud VM.
"""

from __future__ import annotations

import importlib

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.backend.test.case.test_case import TestCase

from fraud_vm.trace import NodeTrace
from opml.bundle import Bundle, DType, load_bundle
from opml.convert import convert
from opml.engine import get_plan, run
from opml.errors import ConversionError
from opml.reference import run_reference

FAMILIES = ("log", "mod", "isnan")
STEPS = 1.5
_WIDE = "Mod of 32/64-bit integer activations: the engine has no integer division (8/16-bit ones use a table)"
_TYPE = "tensor type bundles do not hold (int8/uint8/int16/int32/int64/float32/bool)"
UNSUPPORTED: dict[str, str] = {
    **{f"test_mod_mixed_sign_{t}": _WIDE for t in ("int32", "int64")},
    "test_mod_int64_fmod": _WIDE, "test_mod_broadcast": _WIDE + " (int32)",
    **{f"test_mod_uint{b}": _TYPE for b in (16, 32, 64)},
    **{name: _TYPE + " (float16 or float64)" for name in (
        "test_mod_mixed_sign_float16", "test_mod_mixed_sign_float64", "test_mod_float16_mixed_sign_fmod_0",
        "test_mod_float64_mixed_sign_fmod_0", "test_mod_float_edge_cases_fmod_0_float16",
        "test_mod_float_edge_cases_fmod_0_float64", "test_isnan_float16")},
    "test_mod_float_edge_cases_fmod_0_float32": "NaN and infinity inputs (refused: DESIGN section 3)",
    "test_isnan": "NaN inputs (refused at every float input, which is why IsNaN is false)",
}


def _cases() -> dict[str, TestCase]:
    import onnx.backend.test.case.node as node_cases

    for fam in FAMILIES:
        importlib.import_module(f"onnx.backend.test.case.node.{fam}")
    return {c.name: c for c in node_cases._NodeTestCases
            if c.model is not None and c.model.graph.node and c.model.graph.node[0].op_type.lower() in FAMILIES}


CASES = _cases()


def _static(case: TestCase) -> tuple[onnx.ModelProto, list[np.ndarray], list[np.ndarray]]:
    model = case.model
    (node,) = model.graph.node
    inputs, outputs = case.data_sets[0]
    keep, inits, arrays = [], [], []
    for k, (vi, v) in enumerate(zip(model.graph.input, inputs, strict=True)):
        a = numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v)
        if node.op_type == "Mod" and k == 1:
            inits.append(numpy_helper.from_array(a, vi.name))
        else:
            keep.append(vi)
            arrays.append(a)
    g = helper.make_graph(list(model.graph.node), model.graph.name, keep, list(model.graph.output), inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return m, arrays, [np.asarray(o) for o in outputs]


def _input_grid(b: Bundle) -> tuple[float, int]:
    q = next(n for n in b.nodes if n.op == "quantize")
    t = b.tensors[q.outputs[0]]
    return t.scale, t.zero_point


@pytest.mark.parametrize("name", sorted(CASES))
def test_backend_case(name: str) -> None:
    m, arrays, outputs = _static(CASES[name])
    (node,) = m.graph.node
    if name in UNSUPPORTED:
        with pytest.raises(ConversionError) as e:
            convert(m, arrays)
        msg = str(e.value)
        culprits = [node.op_type] + ([repr(node.name)] if node.name else []) + [repr(i.name) for i in m.graph.input]
        assert "\n" not in msg and any(c in msg for c in culprits), msg
        return
    b = convert(m, arrays)
    got, ref = run(b, arrays), run_reference(b, arrays)
    assert [g.tobytes() for g in got] == [r.tobytes() for r in ref], "engine != reference"
    (g,), (want,) = got, outputs
    assert g.shape == want.shape and g.dtype == want.dtype, (g.shape, g.dtype, want.shape, want.dtype)
    if want.dtype.kind != "f":
        assert g.tobytes() == want.tobytes()
        return
    out_scale = b.tensors[next(n for n in b.nodes if n.op == "dequantize").inputs[0]].scale
    if node.op_type == "Log":  # against the logarithm of the quantized input (floored at one step)
        s, z = _input_grid(b)
        xq = (np.clip(np.rint(arrays[0] / s) + z, -128, 127) - z) * s
        want = np.log(np.maximum(xq, s)).astype(np.float32)
        bound = STEPS * out_scale
    else:
        bound = STEPS * max(t.scale for t in b.tensors if t.dtype == DType.INT8)
    err = float(np.abs(g.astype(np.float64) - want).max(initial=0))
    assert err <= bound, f"max error {err} > {bound}"
    _through_fraud_vm(b, arrays)


def test_unsupported_list_is_not_stale() -> None:
    assert set(UNSUPPORTED) <= set(CASES), set(UNSUPPORTED) - set(CASES)
    assert len(CASES) - len(UNSUPPORTED) >= 7, len(CASES) - len(UNSUPPORTED)


def _through_fraud_vm(b: Bundle, arrays: list[np.ndarray]) -> None:
    b = load_bundle(b.encoded)
    env = dict(zip(b.inputs, arrays, strict=True))
    for j, (node, kernel) in enumerate(zip(b.nodes, get_plan(b).kernels, strict=True)):
        tr = NodeTrace(b, j, dict(env))
        env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
        final = list(tr.interpret())[-1]
        assert final.status == 1 and final.step == tr.num_steps, f"node {j} ({node.op})"
        assert [o.tobytes() for o in tr.outputs()] == [np.ascontiguousarray(tr.y).tobytes()], f"node {j} ({node.op})"


def _model(op: str, x: np.ndarray, inits: dict[str, np.ndarray], ins: list[str], **kw: object) -> onnx.ModelProto:
    xi = helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), ["N", *x.shape[1:]])
    y = helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)
    g = helper.make_graph([helper.make_node(op, ins, ["y"], name="the_node", **kw)], "g", [xi], [y],
                          [numpy_helper.from_array(a, n) for n, a in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


INT_TYPES = {np.int8: (-128, 127), np.uint8: (0, 255), np.int16: (-32768, 32767)}


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(INT_TYPES, key=str)), st.integers(0, 2**31), st.booleans(), st.booleans())
def test_integer_mod_exact(dt: type, seed: int, per_element: bool, fmod: bool) -> None:
    """Integer Mod by constants (one or several divisors): == numpy, engine == reference, dynamic batch."""
    lo, hi = INT_TYPES[dt]
    rng = np.random.default_rng(seed)
    x = rng.integers(lo, hi + 1, (3, 5)).astype(dt)
    x[0, :2] = lo, hi
    dmax = min(hi, 300)
    d = rng.integers(1, dmax + 1, (5,) if per_element else ()).astype(dt)
    if lo < 0:
        d = (d * rng.choice([-1, 1], d.shape)).astype(dt)
    m = _model("Mod", x, {"d": d}, ["x", "d"], fmod=int(fmod))
    b = convert(m, [x])
    want = np.fmod(x, d) if fmod else np.mod(x, d)
    for xs in (x, x[:2], np.concatenate([x, x[::-1]])):
        got = run(b, [xs])[0]
        assert got.dtype == np.dtype(dt) and got.tobytes() == (np.fmod(xs, d) if fmod else np.mod(xs, d)).tobytes()
        assert got.tobytes() == run_reference(b, [xs])[0].tobytes()
    assert run(b, [x])[0].tobytes() == want.tobytes()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["log", "mod_scalar", "mod_vector"]), st.booleans())
def test_float_ops_engine_equals_reference(seed: int, kind: str, fmod: bool) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((4, 6)) * 3).astype(np.float32)
    if kind == "log":
        x = np.abs(x) + np.float32(0.01)
        m = _model("Log", x, {}, ["x"])
    else:
        d = rng.uniform(0.3, 4.0, (6,) if kind == "mod_vector" else ()).astype(np.float32)
        d = np.where(rng.random(d.shape) < 0.5, -d, d).astype(np.float32)
        m = _model("Mod", x, {"d": d}, ["x", "d"], fmod=int(fmod))
    b = convert(m, [x])
    xe = (rng.standard_normal((3, 6)) * 3).astype(np.float32)
    xe = np.abs(xe) if kind == "log" else xe
    assert run(b, [xe])[0].tobytes() == run_reference(b, [xe])[0].tobytes()


def test_fraud_vm_on_mod_and_isnan_bundles() -> None:
    x = np.int8([[-128, -7, -1, 0, 5, 127], [3, -100, 17, 9, -2, 44]])
    b = convert(_model("Mod", x, {"d": np.int8([2, 3, -3, 2, 4, -5])}, ["x", "d"]), [x])
    assert [n.op for n in b.nodes].count("where") == 4
    _through_fraud_vm(b, [x[::-1].copy()])
    xf = np.float32([[0.5, -1.0, 2.0], [1.0, 2.0, -3.0]])
    b = convert(_model("IsNaN", xf, {}, ["x"]), [xf])
    assert [n.op for n in b.nodes] == ["quantize", "lut", "cast"]
    assert run(b, [xf])[0].tolist() == [[False] * 3] * 2
    _through_fraud_vm(b, [xf])


def test_isnan_of_a_computed_activation_folds() -> None:
    """Where(IsNaN(h), 0, h) on an activation the engine computed: IsNaN folds to false, the Where to h."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("IsNaN", ["h"], ["nan"]),
             helper.make_node("Where", ["nan", "zero", "h"], ["y"])]
    g = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(np.float32(0), "zero")])
    xs = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    b = convert(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), [xs])
    assert "cast" not in [n.op for n in b.nodes]
    got = run(b, [xs])[0]
    assert np.abs(got - np.maximum(xs, 0)).max() < 0.05


def test_isnan_refuses_nan_input_at_run_time() -> None:
    from opml.errors import InferenceInputError

    xf = np.float32([[0.5, -1.0, 2.0], [1.0, 2.0, 3.0]])
    b = convert(_model("IsNaN", xf, {}, ["x"]), [xf])
    with pytest.raises(InferenceInputError, match="NaN"):
        run(b, [np.float32([[np.nan, 1.0, 2.0]])])


@pytest.mark.parametrize("what,inits,x,match", [
    ("int32 dividend", {"d": np.int32(3)}, np.int32([[1, 2, 3]]), "no integer division"),
    ("zero divisor", {"d": np.int8([1, 0, 2])}, np.int8([[1, 2, 3]]), "Mod by zero"),
    ("too many divisors", {"d": np.arange(1, 21, dtype=np.int8)}, np.int8([list(range(20))]), "different divisors"),
])
def test_mod_refusals(what: str, inits: dict[str, np.ndarray], x: np.ndarray, match: str) -> None:
    with pytest.raises(ConversionError, match=match) as e:
        convert(_model("Mod", x, inits, ["x", "d"]), [np.concatenate([x, x])])
    assert "the_node" in str(e.value) and "\n" not in str(e.value), what


def test_mod_by_an_activation_refused() -> None:
    x = np.float32([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ConversionError, match="constant divisor") as e:
        convert(_model("Mod", x, {}, ["x", "x"], fmod=1), [x])
    assert "the_node" in str(e.value)
