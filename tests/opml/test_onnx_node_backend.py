"""The ONNX backend node tests of the integer and shape ops, through ``convert`` + ``run``.

The cases are regenerated offline by ``scripts/gen_onnx_node_tests.py`` (the onnx wheel ships no
test data) into ``tests/.onnx_node_cache`` (self-ignored by git), once per session. Each case's model
is one node whose every input is a graph input; the engine compiles static graphs, so the test
turns the *parameter* inputs (scales, zero points, weights, shapes, axes, starts/ends) into
initializers and keeps the data inputs as graph inputs, which are also the calibration data. The
QLinearMatMul and MatMulInteger cases also run with a constant B (the engine's ``linear`` path).

Every case must match the expected output exactly (dtype, shape, bytes), except that
QLinearMatMul/QLinearConv elements may differ by 1 where the fixed-point requantization rounds a
tie up and ONNX rounds it to even: such elements are verified to be ties, counted, and bounded.
Cases using features the engine legitimately does not support are listed in ``UNSUPPORTED`` with
the reason; for those, ``convert`` must raise ``ConversionError`` naming the node, op or input.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from opml.convert import convert
from opml.engine import run
from opml.errors import ConversionError

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_onnx_node_tests", ROOT / "scripts" / "gen_onnx_node_tests.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()
# case names at collection time (in memory, well under a second); the data is read from the cache
CASES = sorted(c.name for c in gen.collect())

UNSUPPORTED: dict[str, str] = {
    "test_dequantizelinear_axis": "per-axis (per-channel) quantization parameters on an activation",
    "test_dequantizelinear_blocked": "blocked quantization",
    "test_dequantizelinear_e4m3fn": "float8 tensors",
    "test_dequantizelinear_e4m3fn_float16": "float8 tensors (float16 scale)",
    "test_dequantizelinear_e4m3fn_zero_point": "float8 tensors",
    "test_dequantizelinear_e5m2": "float8 tensors",
    "test_dequantizelinear_float4e2m1": "float4 tensors",
    "test_dequantizelinear_int16": "16-bit quantized activations",
    "test_dequantizelinear_uint16": "16-bit quantized activations",
    "test_dequantizelinear_int2": "2-bit tensors",
    "test_dequantizelinear_uint2": "2-bit tensors",
    "test_dequantizelinear_int4": "4-bit tensors",
    "test_dequantizelinear_uint4": "4-bit tensors",
    "test_quantizelinear_axis": "per-axis (per-channel) quantization parameters on an activation",
    "test_quantizelinear_blocked_asymmetric": "blocked quantization",
    "test_quantizelinear_blocked_symmetric": "blocked quantization",
    "test_quantizelinear_e4m3fn": "float8 outputs",
    "test_quantizelinear_e5m2": "float8 outputs",
    "test_quantizelinear_float4e2m1": "float4 outputs (per-axis)",
    "test_quantizelinear_int16": "16-bit outputs",
    "test_quantizelinear_uint16": "16-bit outputs",
    "test_quantizelinear_int2": "2-bit outputs (per-axis)",
    "test_quantizelinear_uint2": "2-bit outputs (per-axis)",
    "test_quantizelinear_int4": "4-bit outputs (per-axis)",
    "test_quantizelinear_uint4": "4-bit outputs (per-axis)",
    "test_reshape_allowzero_reordered": "zero-sized (empty) tensors",
}

# positions (in node.input) of the inputs that stay graph inputs; None: all of them
DATA_INPUTS: dict[str, set[int] | None] = {
    "QuantizeLinear": {0}, "DequantizeLinear": {0}, "QLinearMatMul": {0, 3}, "QLinearConv": {0},
    "MatMulInteger": {0, 1}, "ConvInteger": {0}, "Reshape": {0}, "Transpose": {0}, "Flatten": {0},
    "Concat": None, "Slice": {0}, "Squeeze": {0}, "Unsqueeze": {0}, "Gather": {0},
}
CONST_B = {"QLinearMatMul": {0}, "MatMulInteger": {0}}  # the constant-B variant
TIE_OPS = {"QLinearMatMul", "QLinearConv"}
MAX_TIE_FRACTION = 0.1

PARAMS = [(n, "as_given") for n in CASES]
PARAMS += [(n, "const_b") for n in CASES if gen.family_of(n) in ("qlinearmatmul", "matmulinteger")]


@pytest.fixture(scope="session")
def node_cache() -> Path:
    return gen.ensure_cache() / "node"


def _read(path: Path) -> TensorProto:
    t = TensorProto()
    t.ParseFromString(path.read_bytes())
    return t


def load_case(case_dir: Path) -> tuple[onnx.ModelProto, list[TensorProto], list[TensorProto]]:
    model = onnx.load(str(case_dir / "model.onnx"))
    ds = case_dir / "test_data_set_0"
    ins = [_read(ds / f"input_{i}.pb") for i in range(len(model.graph.input))]
    outs = [_read(ds / f"output_{i}.pb") for i in range(len(model.graph.output))]
    return model, ins, outs


def static_model(model: onnx.ModelProto, inputs: list[TensorProto], data: set[int] | None
                 ) -> tuple[onnx.ModelProto, list[np.ndarray], list[str]]:
    """The model with non-data inputs as initializers; returns it, the data arrays and their names."""
    (node,) = model.graph.node
    pos = {name: i for i, name in enumerate(node.input) if name}
    keep, inits, arrays = [], [], []
    for vi, t in zip(model.graph.input, inputs, strict=True):
        if data is None or pos[vi.name] in data:
            keep.append(vi)
            arrays.append(numpy_helper.to_array(t))
        else:
            init = TensorProto()
            init.CopyFrom(t)
            init.name = vi.name
            inits.append(init)
    g = helper.make_graph(list(model.graph.node), model.graph.name, keep, list(model.graph.output), inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return m, arrays, [vi.name for vi in keep]


# ---------------------------------------------------------------------------------------------
# rounding-tie check for QLinearMatMul / QLinearConv


def _conv_acc(x: np.ndarray, w: np.ndarray, node: onnx.NodeProto) -> np.ndarray:
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    assert a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"), "tie check supports explicit pads only"
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    sh, sw = a.get("strides", [1, 1])
    dh, dw = a.get("dilations", [1, 1])
    group = a.get("group", 1)
    b, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh, ow = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1, (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    acc = np.zeros((b, m, oh, ow), dtype=np.int64)
    for oc in range(m):
        g = oc // (m // group)
        for oy in range(oh):
            for ox in range(ow):
                y0, x0 = oy * sh, ox * sw
                win = xp[:, g * cg:(g + 1) * cg, y0:y0 + (kh - 1) * dh + 1:dh, x0:x0 + (kw - 1) * dw + 1:dw]
                acc[:, oc, oy, ox] = (win * w[oc]).reshape(b, -1).sum(axis=1)
    return acc


def _real_requant_input(model: onnx.ModelProto, inputs: list[TensorProto]) -> np.ndarray:
    """The exact real value ONNX rounds (before adding the output zero point), in float64."""
    (node,) = model.graph.node
    v = {name: numpy_helper.to_array(t) for name, t in zip(node.input, inputs, strict=False)}
    f = [v.get(n) for n in node.input] + [None] * 9
    if node.op_type == "QLinearMatMul":
        a, sa, za, b, sb, zb, sy = f[:7]
        acc = np.matmul(a.astype(np.int64) - za.astype(np.int64), b.astype(np.int64) - zb.astype(np.int64))
        return acc * (np.float64(sa.reshape(-1)[0]) * np.float64(sb.reshape(-1)[0]) / np.float64(sy.reshape(-1)[0]))
    x, sx, zx, w, sw, zw, sy = f[:7]
    bias = f[8]
    m = w.shape[0]
    zw_c = np.broadcast_to(zw.astype(np.int64).reshape(-1), (m,)).reshape(m, 1, 1, 1)
    acc = _conv_acc(x.astype(np.int64) - np.int64(zx.reshape(-1)[0]), w.astype(np.int64) - zw_c, node)
    if bias is not None:
        acc = acc + bias.astype(np.int64).reshape(1, m, 1, 1)
    scale = np.float64(sx.reshape(-1)[0]) * np.broadcast_to(sw.astype(np.float64).reshape(-1), (m,))
    return acc * (scale / np.float64(sy.reshape(-1)[0])).reshape(1, m, 1, 1)


TIE_COUNTS: dict[str, tuple[int, int]] = {}


def _assert_ties_only(name: str, model: onnx.ModelProto, inputs: list[TensorProto], got: np.ndarray,
                      want: np.ndarray) -> None:
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    TIE_COUNTS[name] = (int((diff > 0).sum()), diff.size)
    if not diff.any():
        return
    assert diff.max() <= 1, f"{name}: differs by up to {diff.max()} (only ties may differ, by 1)"
    real = _real_requant_input(model, inputs)
    frac = real[diff > 0] - np.floor(real[diff > 0])
    assert np.all(np.abs(frac - 0.5) < 1e-4), f"{name}: elements differ that are not rounding ties: {real[diff > 0]}"
    assert (diff > 0).mean() <= MAX_TIE_FRACTION, f"{name}: {(diff > 0).sum()}/{diff.size} tie differences"


# ---------------------------------------------------------------------------------------------


def _names_the_culprit(msg: str, model: onnx.ModelProto) -> bool:
    (node,) = model.graph.node
    names = [node.op_type] + ([repr(node.name)] if node.name else []) + [repr(vi.name) for vi in model.graph.input]
    return any(n in msg for n in names)


@pytest.mark.parametrize("name,variant", PARAMS, ids=[f"{n}-{v}" for n, v in PARAMS])
def test_node_case(node_cache: Path, name: str, variant: str) -> None:
    model, inputs, outputs = load_case(node_cache / name)
    (node,) = model.graph.node
    data = CONST_B[node.op_type] if variant == "const_b" else DATA_INPUTS[node.op_type]
    m, arrays, _ = static_model(model, inputs, data)
    if name in UNSUPPORTED:
        with pytest.raises(ConversionError) as e:
            convert(m, arrays)
        assert _names_the_culprit(str(e.value), m), f"error does not name the node, op or input: {e.value}"
        return
    bundle = convert(m, arrays)
    got = run(bundle, arrays)
    assert len(got) == len(outputs)
    for g, t in zip(got, outputs, strict=True):
        want = numpy_helper.to_array(t)
        assert g.dtype == want.dtype, f"dtype {g.dtype}, expected {want.dtype}"
        assert g.shape == want.shape, f"shape {g.shape}, expected {want.shape}"
        if node.op_type in TIE_OPS:
            _assert_ties_only(f"{name}-{variant}", model, inputs, g, want)
        else:
            assert g.tobytes() == want.tobytes(), f"values differ:\n{g}\nexpected\n{want}"


def test_case_lists_are_consistent() -> None:
    """Every family has cases; every documented unsupported case exists (the list cannot go stale)."""
    fams = {gen.family_of(n) for n in CASES}
    assert fams == set(gen.FAMILIES), set(gen.FAMILIES) - fams
    assert set(UNSUPPORTED) <= set(CASES), set(UNSUPPORTED) - set(CASES)
    assert not any(n.startswith(("test_gather_elements", "test_gathernd")) for n in CASES)
    supported = [n for n in CASES if n not in UNSUPPORTED]
    assert len(supported) >= 70, len(supported)  # the shape ops and the integer ops proper


def test_tie_check_recognises_a_tie() -> None:
    """The tie checker itself: 0.5 * odd is a tie, 0.3 is not."""
    assert math.isclose(0.5 - math.floor(0.5), 0.5)
    a = numpy_helper.from_array(np.array([[1]], np.uint8), "a")
    one = numpy_helper.from_array(np.array(1.0, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.uint8), "z")
    b = numpy_helper.from_array(np.array([[1]], np.uint8), "b")
    half = numpy_helper.from_array(np.array(2.0, np.float32), "sy")
    node = helper.make_node("QLinearMatMul", ["a", "s", "z", "b", "s", "z", "sy", "z"], ["y"])
    g = helper.make_graph([node], "t", [], [helper.make_tensor_value_info("y", TensorProto.UINT8, None)])
    real = _real_requant_input(helper.make_model(g), [a, one, zero, b, one, zero, half, zero])
    assert real.reshape(-1)[0] == 0.5
