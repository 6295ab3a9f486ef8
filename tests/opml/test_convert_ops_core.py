"""Core ONNX ops lowered as compositions of the existing primitives (``opml/convert/lower_select.py``,
``lower_window.py``, ``lower_shape.py``): Max/Min, Abs, Where, Expand, Split, GlobalMaxPool, pooling with
ceil_mode=1, 1-D Conv/pooling/BatchNormalization, and shape/mask subgraphs that fold to constants.

Each case is a tiny ONNX model built here with ``onnx.helper`` (random shapes and attributes drawn by
hypothesis), converted with its own input as calibration, and checked three ways:

- engine == reference interpreter (``opml.reference``), bytes, dtype and shape, zero tolerance;
- every node of the converted bundle through the fraud VM: interpreted from state 0 to the end, the
  output bytes equal the engine's and the final state commits to them;
- onnxruntime float32: same shape, and every element within the int8 error of the lowering (a few
  quantization steps of the tensors involved; a relative bound for the convolution's sums).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from fraud_vm.tensors import commit_tensor
from fraud_vm.trace import NodeTrace, node_final_check
from opml.bundle import DType
from opml.convert import convert
from opml.engine import get_plan, run
from opml.errors import ConversionError
from opml.reference import run_reference

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.data_too_large])
VM_FULL_LIMIT = 4000  # interpret nodes with at most this many steps completely; bigger ones at a few windows


def _model(nodes: list[onnx.NodeProto], inputs: list[tuple[str, int, list]], inits: list[TensorProto] = (),  # type: ignore[assignment]
           outputs: list[str] | None = None, opset: int = 17, out_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(o, out_type, None)
                           for o in (outputs or [nodes[-1].output[0]])], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _f(name: str, shape: list) -> tuple[str, int, list]:
    return (name, TensorProto.FLOAT, shape)


def _init(name: str, a: object) -> TensorProto:
    return numpy_helper.from_array(np.asarray(a), name)


def _ort(m: onnx.ModelProto, xs: list[np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(m.graph.input, xs, strict=True)})


def through_vm(bundle, xs: list[np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    """Every node through the fraud VM; each output equals the engine's kernel output."""
    plan = get_plan(bundle)
    env = dict(zip(bundle.inputs, xs, strict=True))
    for j, (node, kernel) in enumerate(zip(bundle.nodes, plan.kernels, strict=True)):
        tr = NodeTrace(bundle, j, dict(env))
        n = tr.num_steps
        if n <= VM_FULL_LIMIT:
            *_, final = tr.interpret()
        else:  # a few steps from fast-forwarded states, as tests/fraud_vm/test_vm_models.py does
            for k in (0, n // 2, n - 1):
                state, mem = tr.state_at(k), tr.memory_at(k)
                from fraud_vm.vm import step_with_witness

                state, _ = step_with_witness(state, mem)
                assert state == tr.state_at(k + 1), f"node {j} ({node.op}): step {k} != fast-forward"
            final = tr.state_at(n)
        y = kernel([env[i] if i in env else bundle.tensors[i].array() for i in node.inputs])
        assert final.status == 1 and final.step == n, f"node {j} ({node.op}) did not finish"
        assert [o.tobytes() for o in tr.outputs()] == [np.ascontiguousarray(y).tobytes()], f"node {j} ({node.op})"
        root = commit_tensor(y, tr.context.output.dtype)
        assert node_final_check(final, tr.context, root, tr.final_region_proof()), f"node {j} ({node.op})"
        env[node.outputs[0]] = y


def _max_scale(bundle) -> float:  # type: ignore[no-untyped-def]
    return max((t.scale for t in bundle.tensors if t.dtype in (DType.INT8, DType.UINT8)), default=0.0)


def check(m: onnx.ModelProto, xs: list[np.ndarray], *, steps: float = 1.5, rel: float = 0.0, vm: bool = True):  # type: ignore[no-untyped-def]
    """Convert ``m`` calibrated on ``xs``; engine == reference, fraud VM == engine, close to onnxruntime."""
    bundle = convert(m, xs)
    got = run(bundle, xs)
    ref = run_reference(bundle, xs)
    want = _ort(m, xs)
    assert len(got) == len(ref) == len(want)
    tol_abs = steps * _max_scale(bundle)
    for g, r, w in zip(got, ref, want, strict=True):
        assert g.dtype == r.dtype and g.shape == r.shape and g.tobytes() == r.tobytes(), "engine != reference"
        assert g.shape == w.shape, f"shape {g.shape}, onnxruntime {w.shape}"
        if w.dtype.kind == "f":
            err = float(np.abs(g.astype(np.float64) - w).max(initial=0))
            bound = tol_abs + rel * float(np.abs(w).max(initial=0))
            assert err <= bound, f"max error {err} > {bound} against onnxruntime float32"
        else:
            assert g.tobytes() == w.astype(g.dtype).tobytes()
    if vm:
        through_vm(bundle, xs)
    return bundle


def _data(draw, shape: tuple[int, ...], lo: float = -3.0, hi: float = 3.0) -> np.ndarray:  # type: ignore[no-untyped-def]
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)


def _ops(bundle) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.op for n in bundle.nodes]


# ---------------------------------------------------------------------------------------------
# Max / Min / Abs / Where


@st.composite
def _broadcastable(draw, n: int) -> list[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    full = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    shapes = []
    for _ in range(n):
        shapes.append(tuple(d if draw(st.booleans()) else 1 for d in full))
    shapes[0] = tuple(full)  # the first operand has the output's shape (rank and size)
    return shapes


@FEW
@given(op=st.sampled_from(["Max", "Min"]), data=st.data())
def test_max_min_of_activations(op: str, data: st.DataObject) -> None:
    n = data.draw(st.integers(2, 3))
    shapes = data.draw(_broadcastable(n))
    names = [f"x{i}" for i in range(n)]
    xs = [_data(data.draw, s, -2.0 * (i + 1), 1.5 * (i + 1)) for i, s in enumerate(shapes)]
    inits = []
    ins = list(names)
    if data.draw(st.booleans()):  # a constant tensor operand too
        c = np.random.default_rng(1).uniform(-1, 1, size=shapes[0][-1:]).astype(np.float32)
        inits.append(_init("c", c))
        ins.append("c")
    m = _model([helper.make_node(op, ins, ["y"], name="sel")], [_f(nm, list(s)) for nm, s in zip(names, shapes,
                                                                                                  strict=True)], inits)
    b = check(m, xs)
    assert set(_ops(b)) <= {"quantize", "lut", "add", "dequantize"}


@FEW
@given(op=st.sampled_from(["Max", "Min"]), bound=st.floats(-1.5, 1.5, width=32), data=st.data())
def test_max_min_with_a_scalar_is_one_table(op: str, bound: float, data: st.DataObject) -> None:
    x = _data(data.draw, (3, 5))
    m = _model([helper.make_node(op, ["x", "k"], ["y"])], [_f("x", [3, 5])], [_init("k", np.float32(bound))])
    b = check(m, [x])
    assert _ops(b) == ["quantize", "lut", "dequantize"]


@FEW
@given(data=st.data())
def test_abs(data: st.DataObject) -> None:
    x = _data(data.draw, (2, 7), -4.0, data.draw(st.floats(-1.0, 4.0)))
    b = check(_model([helper.make_node("Abs", ["x"], ["y"])], [_f("x", [2, 7])]), [x])
    assert _ops(b) == ["quantize", "lut", "dequantize"]


@FEW
@given(cond_kind=st.sampled_from(["const", "input"]), other=st.sampled_from(["const", "input", "scalar"]),
       data=st.data())
def test_where(cond_kind: str, other: str, data: st.DataObject) -> None:
    shape = (2, data.draw(st.integers(1, 4)), data.draw(st.integers(1, 5)))
    cond = np.random.default_rng(data.draw(st.integers(0, 99))).random(shape[1:]) < 0.5
    x = _data(data.draw, shape)
    inputs, xs, inits = [_f("x", list(shape))], [x], []
    if cond_kind == "const":
        inits.append(_init("c", cond))
    else:
        inputs.append(("c", TensorProto.BOOL, list(shape[1:])))
        xs.append(cond)
    if other == "input":
        inputs.append(_f("z", [shape[-1]]))
        xs.append(_data(data.draw, (shape[-1],), 0.0, 5.0))
    else:
        inits.append(_init("z", np.float32(-1.0) if other == "scalar" else np.linspace(-1, 1, shape[-1],
                                                                                          dtype=np.float32)))
    m = _model([helper.make_node("Where", ["c", "x", "z"], ["y"])], inputs, inits)
    b = check(m, xs)
    assert "where" in _ops(b)


def test_where_of_integer_branches_selects_them_exactly() -> None:
    c = np.array([[True, False, True]])
    m = _model([helper.make_node("Where", ["c", "a", "b"], ["y"])],
               [("c", TensorProto.BOOL, [1, 3]), ("a", TensorProto.INT64, [1, 3])], [_init("b", np.int64(-7))],
               out_type=TensorProto.INT64)
    check(m, [c, np.array([[5, 6, 7]], np.int64)])


# ---------------------------------------------------------------------------------------------
# Expand, Split


@FEW
@given(data=st.data())
def test_expand(data: st.DataObject) -> None:
    rank = data.draw(st.integers(2, 4))
    out = [data.draw(st.integers(1, 4)) for _ in range(rank)]
    x_shape = [d if data.draw(st.booleans()) else 1 for d in out]
    x_shape[0] = out[0]
    target = [1 if data.draw(st.booleans()) and x_shape[a] > 1 else d for a, d in enumerate(out)]  # 1 keeps x's
    lead = data.draw(st.integers(0, 1))
    if lead:  # a target of higher rank: x gains leading axes (static batch)
        target = [data.draw(st.integers(1, 3))] + target
    m = _model([helper.make_node("Expand", ["x", "s"], ["y"])], [_f("x", x_shape)],
               [_init("s", np.array(target, np.int64))])
    check(m, [_data(data.draw, tuple(x_shape))], steps=0.0)


@FEW
@given(data=st.data())
def test_split(data: st.DataObject) -> None:
    shape = [2, data.draw(st.integers(2, 7)), data.draw(st.integers(1, 3))]
    axis = data.draw(st.sampled_from([1, 2, -2]))
    dim = shape[axis]
    n = data.draw(st.integers(1, dim))
    mode = data.draw(st.sampled_from(["sizes", "num_outputs", "equal"]))
    outs = [f"y{i}" for i in range(n)]
    inits, opset, attrs = [], 17, {"axis": axis}
    if mode == "sizes":
        cuts = sorted(data.draw(st.sets(st.integers(1, dim - 1), min_size=n - 1, max_size=n - 1)) if n > 1 else [])
        sizes = np.diff([0, *cuts, dim])
        inits.append(_init("s", sizes.astype(np.int64)))
        node = helper.make_node("Split", ["x", "s"], outs, **attrs)
    elif mode == "num_outputs":
        if (n - 1) * -(-dim // n) >= dim:  # ONNX needs every chunk non-empty
            n, outs = 1, ["y0"]
        node = helper.make_node("Split", ["x"], outs, num_outputs=n, **attrs)
        opset = 18
    else:
        while dim % n:
            n -= 1
        outs = outs[:n]
        node = helper.make_node("Split", ["x"], outs, **attrs)
    check(_model([node], [_f("x", shape)], inits, outputs=outs, opset=opset), [_data(data.draw, tuple(shape))],
          steps=0.0)


# ---------------------------------------------------------------------------------------------
# pooling: GlobalMaxPool, ceil_mode, 1-D


@FEW
@given(rank=st.integers(3, 4), data=st.data())
def test_global_max_pool(rank: int, data: st.DataObject) -> None:
    shape = [2, data.draw(st.integers(1, 3))] + [data.draw(st.integers(1, 5)) for _ in range(rank - 2)]
    b = check(_model([helper.make_node("GlobalMaxPool", ["x"], ["y"])], [_f("x", shape)]),
              [_data(data.draw, tuple(shape))])
    assert "reduce" in _ops(b)


@st.composite
def _window(draw, nd: int, dilate: bool = True) -> dict:  # type: ignore[no-untyped-def]
    k = [draw(st.integers(1, 3)) for _ in range(nd)]
    s = [draw(st.integers(1, 3)) for _ in range(nd)]
    d = [draw(st.integers(1, 2)) if dilate else 1 for _ in range(nd)]
    p = [draw(st.integers(0, k[i] - 1)) for i in range(nd)] + [draw(st.integers(0, k[i] - 1)) for i in range(nd)]
    spatial = [draw(st.integers((k[i] - 1) * d[i] + 1, 9)) for i in range(nd)]
    return {"kernel_shape": k, "strides": s, "dilations": d, "pads": p, "spatial": spatial}


@FEW
@given(op=st.sampled_from(["MaxPool", "AveragePool"]), nd=st.integers(1, 2), ceil=st.integers(0, 1), data=st.data())
def test_pooling_1d_2d_and_ceil_mode(op: str, nd: int, ceil: int, data: st.DataObject) -> None:
    w = data.draw(_window(nd, dilate=op == "MaxPool"))
    shape = [2, data.draw(st.integers(1, 3))] + w.pop("spatial")
    if op == "AveragePool":
        w.pop("dilations")
        # ONNX pads windows that start in the padding: keep pads below the kernel and below the stride's reach
    node = helper.make_node(op, ["x"], ["y"], ceil_mode=ceil, **w)
    m = _model([node], [_f("x", shape)])
    try:
        want = _ort(m, [np.zeros(shape, np.float32)])[0]
    except Exception:  # onnxruntime refuses the geometry (e.g. an empty output): nothing to compare
        return
    if want.size == 0:
        return
    b = check(m, [_data(data.draw, tuple(shape))], steps=2.0)
    assert op.lower().replace("averagepool", "avgpool") in _ops(b)


def test_ceil_mode_with_count_include_pad_that_overhangs_is_refused_in_one_line() -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2],
                            ceil_mode=1, count_include_pad=1)
    m = _model([node], [_f("x", [1, 1, 6, 6])])
    with pytest.raises(ConversionError, match=r"^node 'pool' \(AveragePool\): ceil_mode=1 with count_include_pad=1 "
                                              r"[^\n]*use count_include_pad=0") as e:
        convert(m, np.zeros((1, 1, 6, 6), np.float32))
    assert "\n" not in str(e.value)


def test_squeezenet_style_ceil_mode_pool() -> None:
    """SqueezeNet's MaxPool(3, stride 2, ceil_mode=1) on a 13x13 map: 6x6 (floor would give 6x6 too at 13,
    and 7x7 vs 6x6 at 14)."""
    for hw in (13, 14, 15):
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
        x = np.random.default_rng(hw).standard_normal((1, 2, hw, hw)).astype(np.float32)
        check(_model([node], [_f("x", [1, 2, hw, hw])]), [x], steps=2.0)


# ---------------------------------------------------------------------------------------------
# 1-D convolution, BatchNormalization on [N, C] and [N, C, L]


@FEW
@given(data=st.data())
def test_conv_1d(data: st.DataObject) -> None:
    group = data.draw(st.sampled_from([1, 1, 2]))
    cin = group * data.draw(st.integers(1, 2))
    cout = group * data.draw(st.integers(1, 3))
    w = data.draw(_window(1))
    length = w.pop("spatial")[0]
    k = w.pop("kernel_shape")[0]
    attrs = dict(w, group=group)
    auto = data.draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "VALID"]))
    if auto != "NOTSET":
        attrs.pop("pads")
        attrs["auto_pad"] = auto
        if auto == "SAME_UPPER":
            attrs["dilations"] = [1]
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    inits = [_init("w", rng.standard_normal((cout, cin // group, k)).astype(np.float32)),
             _init("b", rng.standard_normal(cout).astype(np.float32))]
    relu = data.draw(st.booleans())
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if relu else "y"], **attrs)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    m = _model(nodes, [_f("x", [2, cin, length])], inits)
    b = check(m, [_data(data.draw, (2, cin, length))], steps=2.0, rel=0.03)
    assert "conv" in _ops(b) and b.tensors[b.outputs[0]].shape[-1] >= 1


def _bn_params(rng: np.random.Generator, c: int) -> list[TensorProto]:
    f32 = np.float32
    return [_init("g", rng.uniform(0.5, 2, c).astype(f32)), _init("be", rng.standard_normal(c).astype(f32)),
            _init("mu", rng.standard_normal(c).astype(f32)), _init("var", rng.uniform(0.5, 2, c).astype(f32))]


def test_conv_1d_with_batchnorm_and_dynamic_batch() -> None:
    """An audio stem: Conv1d -> BatchNorm (folded into the weights) -> Relu -> MaxPool1d, batch 'N'."""
    rng = np.random.default_rng(3)
    inits = [_init("w", rng.standard_normal((4, 1, 5)).astype(np.float32)), *_bn_params(rng, 4)]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[2], pads=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2], strides=[2])]
    m = _model(nodes, [_f("x", ["N", 1, 32])], inits)
    x = rng.standard_normal((3, 1, 32)).astype(np.float32)
    b = check(m, [x], steps=2.0, rel=0.03)
    assert "batchnormalization" not in " ".join(_ops(b))
    y = run(b, [x[:1]])[0]
    assert y.shape == (1, 4, 8)


@pytest.mark.parametrize("shape", [(3, 4), (2, 4, 5)])
def test_batchnorm_on_rank_2_and_3(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    inits = _bn_params(rng, 4)
    m = _model([helper.make_node("BatchNormalization", ["x", "g", "be", "mu", "var"], ["y"])], [_f("x", list(shape))],
               inits)
    check(m, [rng.standard_normal(shape).astype(np.float32)], steps=2.0)


# ---------------------------------------------------------------------------------------------
# shape and mask subgraphs fold to constants


def test_shape_and_mask_subgraph_folds_to_constants() -> None:
    """Shape -> Gather -> Range -> Equal/Not/GreaterOrEqual/And -> Where(mask, x, 0), ConstantOfShape and Cast
    of constants: everything but the final select is folded at conversion."""
    one, zero, two = (_init(n, np.array(v, np.int64)) for n, v in (("one", 1), ("zero", 0), ("two", 2)))
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Equal", ["r", "two"], ["e"]),
        helper.make_node("Not", ["e"], ["ne"]),
        helper.make_node("GreaterOrEqual", ["r", "zero"], ["ge"]),
        helper.make_node("And", ["ne", "ge"], ["mask"]),
        helper.make_node("ConstantOfShape", ["s"], ["zeros"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Cast", ["zeros"], ["zf"], to=TensorProto.FLOAT),
        helper.make_node("Where", ["mask", "x", "zf"], ["y"]),
    ]
    m = _model(nodes, [_f("x", [3, 6])], [one, zero, two])
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    b = check(m, [x])
    assert _ops(b) == ["quantize", "where", "dequantize"]
    assert not run(b, [x])[0][:, 2].any()


# ---------------------------------------------------------------------------------------------
# errors: one line naming the node, the op and what would make it convertible


@pytest.mark.parametrize("op,attrs,hint", [
    ("Hardmax", {}, "no lowering onto the engine's ops"),
    ("RNN", {"hidden_size": 2}, "unroll the recurrence"),
    ("NonZero", {}, "compute the mask arithmetically"),
])
def test_unsupported_op_is_one_line_with_a_fix(op: str, attrs: dict, hint: str) -> None:
    ins = ["x", "W", "R"] if op == "RNN" else ["x"]
    inits = [_init("W", np.zeros((1, 2, 3), np.float32)), _init("R", np.zeros((1, 2, 2), np.float32))] \
        if op == "RNN" else []
    m = _model([helper.make_node(op, ins, ["y"], **attrs)], [_f("x", [2, 2, 3])], inits)
    with pytest.raises(ConversionError) as e:
        convert(m, np.zeros((2, 2, 3), np.float32))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{op} node producing 'y': unsupported op {op}; "), msg
    assert hint in msg
    if op == "Hardmax":
        assert "make its input(s) 'x' constant" in msg


def test_ml_domain_op_names_the_domain() -> None:
    node = helper.make_node("Binarizer", ["x"], ["y"], name="scale", domain="ai.onnx.ml", threshold=0.5)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(*_f("x", [2, 3]))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    with pytest.raises(ConversionError, match=r"^node 'scale' \(Binarizer\): unsupported op ai.onnx.ml.Binarizer; "
                                              r"Scaler, Normalizer, LinearClassifier"):
        convert(m, np.zeros((2, 3), np.float32))


def test_a_lowering_failure_is_one_line_naming_the_node() -> None:
    """An attribute combination no lowering anticipated still gives one line with the node and op."""
    m = _model([helper.make_node("Split", ["x"], ["a", "b"], name="cut", axis=1, split=[1, 1])], [_f("x", [2, 5])],
               outputs=["a", "b"], opset=11)
    with pytest.raises(ConversionError, match=r"^node 'cut' \(Split\): split sizes \[1, 1\] do not divide"):
        convert(m, np.zeros((2, 5), np.float32))
    m = _model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2])], [_f("x", [1, 1, 2, 2, 2])])
    with pytest.raises(ConversionError, match=r"^MaxPool node producing 'y': MaxPool over \(1, 1, 2, 2, 2\) "
                                              r"\(3 spatial axes\): only 1-D"):
        convert(m, np.zeros((1, 1, 2, 2, 2), np.float32))


# ---------------------------------------------------------------------------------------------
# If on shapes: the taken branch is inlined


def _if_model(cond_nodes: list, then_nodes: list, else_nodes: list, inits: list, width: int):  # type: ignore[no-untyped-def]
    out = lambda n: [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)]  # noqa: E731
    then_g = helper.make_graph(then_nodes, "then", [], out("t_out"))
    else_g = helper.make_graph(else_nodes, "else", [], out("e_out"), [_init("two", np.float32(2))])
    nodes = [*cond_nodes, helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)]
    return _model(nodes, [_f("x", ["N", width])], inits)


@pytest.mark.parametrize("width", [4, 5])
def test_if_on_a_static_shape_is_the_taken_branch(width: int) -> None:
    """``if x.shape[1] == 4: relu(x) else: 2 x`` (the kind of test torch.onnx.export leaves in a graph)."""
    cond = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i1"], ["d1"], axis=0),
            helper.make_node("Equal", ["d1", "four"], ["c"])]
    m = _if_model(cond, [helper.make_node("Relu", ["x"], ["t_out"])],
                  [helper.make_node("Mul", ["x", "two"], ["e_out"])],
                  [_init("i1", np.array(1, np.int64)), _init("four", np.array(4, np.int64))], width)
    x = np.random.default_rng(width).standard_normal((3, width)).astype(np.float32)
    b = check(m, [x])
    assert _ops(b) == ["quantize", "lut", "dequantize"]


def test_data_dependent_if_is_refused_in_one_line() -> None:
    m = _if_model([], [helper.make_node("Relu", ["x"], ["t_out"])], [helper.make_node("Mul", ["x", "two"], ["e_out"])],
                  [], 4)
    m.graph.input.append(helper.make_tensor_value_info("c", TensorProto.BOOL, ["N"]))
    with pytest.raises(ConversionError) as e:
        convert(m, [np.ones((3, 4), np.float32), np.array([True, False, True])])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("node 'branch' (If): the condition depends on the input data; "), msg


# ---------------------------------------------------------------------------------------------
# Sum, Mean, PRelu, HardSwish: compositions of the lowerings above


@FEW
@given(op=st.sampled_from(["Sum", "Mean"]), n=st.integers(1, 4), data=st.data())
def test_sum_mean(op: str, n: int, data: st.DataObject) -> None:
    shapes = data.draw(_broadcastable(n))
    names = [f"x{i}" for i in range(n)]
    m = _model([helper.make_node(op, names, ["y"])], [_f(nm, list(s)) for nm, s in zip(names, shapes, strict=True)])
    check(m, [_data(data.draw, s) for s in shapes], steps=1.5 * n)


@pytest.mark.parametrize("slope", [[0.2], [0.1, 0.25, -0.3]])
def test_prelu(slope: list[float]) -> None:
    s = np.array(slope, np.float32).reshape(-1, 1, 1) if len(slope) > 1 else np.array(slope, np.float32)
    m = _model([helper.make_node("PRelu", ["x", "s"], ["y"])], [_f("x", [2, 3, 4, 4])], [_init("s", s)])
    b = check(m, [np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)], steps=2.0)
    assert _ops(b) == (["quantize", "lut", "dequantize"] if len(slope) == 1 else
                       ["quantize", "lut", "lut", "mul", "add", "dequantize"])


def test_hardswish_and_a_float_input_read_twice_is_quantized_once() -> None:
    m = _model([helper.make_node("HardSwish", ["x"], ["y"])], [_f("x", [2, 3, 4])])
    b = check(m, [np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32) * 4], steps=2.0)
    assert _ops(b) == ["quantize", "lut", "dequantize"]  # (x * HardSigmoid(x) folded into one table: fold_lut)


# ---------------------------------------------------------------------------------------------
# LRN, Dropout's mask, folding in the model's own opset


@pytest.mark.parametrize("size,beta", [(5, 0.75), (3, 0.5), (1, 1.0)])
def test_lrn(size: int, beta: float) -> None:
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=0.5, beta=beta, bias=1.0)
    x = np.random.default_rng(size).standard_normal((2, 6, 3, 3)).astype(np.float32)
    b = check(_model([node], [_f("x", [2, 6, 3, 3])]), [x], steps=3.0)
    assert _ops(b) == ["quantize", "lut", "conv", "lut", "mul", "dequantize"]


def test_dropout_mask_is_ignored_unless_read() -> None:
    m = _model([helper.make_node("Dropout", ["x"], ["y", "mask"])], [_f("x", [2, 3])], opset=11)
    check(m, [np.ones((2, 3), np.float32)], steps=0.0)
    m = _model([helper.make_node("Dropout", ["x"], ["d", "mask"], name="drop"),
                helper.make_node("Cast", ["mask"], ["y"], to=TensorProto.FLOAT)], [_f("x", [2, 3])], opset=11)
    with pytest.raises(ConversionError, match=r"^node 'drop' \(Dropout\): the mask output of Dropout is read"):
        convert(m, np.ones((2, 3), np.float32))


def test_constants_fold_in_the_models_opset() -> None:
    """Unsqueeze with an ``axes`` attribute (opset < 13) on a constant: folded as the model's opset reads it."""
    nodes = [helper.make_node("Unsqueeze", ["c"], ["cu"], axes=[0]), helper.make_node("Add", ["x", "cu"], ["y"])]
    m = _model(nodes, [_f("x", [2, 3])], [_init("c", np.array([1.0, 2.0, 3.0], np.float32))], opset=11)
    check(m, [np.zeros((2, 3), np.float32)])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_of_8_bit_integer_tensors(op: str, dtype: type) -> None:
    t = TensorProto.INT8 if dtype == np.int8 else TensorProto.UINT8
    m = _model([helper.make_node(op, ["a", "b"], ["y"])], [("a", t, [3, 4]), ("b", t, [1, 4])], out_type=t)
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    xs = [rng.integers(info.min, info.max + 1, s).astype(dtype) for s in ((3, 4), (1, 4))]
    b = check(m, xs)
    assert _ops(b).count("add") == 2


# ---------------------------------------------------------------------------------------------
# the op table of docs/engine.md lists every lowered op


def test_docs_op_table_lists_every_lowering() -> None:
    import re
    from pathlib import Path

    from opml.convert.lower import LOWERINGS

    text = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    section = text.split("## ONNX op coverage", 1)[1].split("\n\n**", 1)[0]
    listed: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| ") and not row.startswith("| ONNX op"):
            cell = re.sub(r"\([^)]*\)|`[^`]*`", "", row.split("|")[1])
            for word in re.findall(r"[A-Z][A-Za-z0-9]+(?:/[A-Za-z0-9]+)*", cell):
                head, *rest = word.split("/")
                listed.add(head)
                stem = re.match(r"[A-Z][a-z]+", head)
                listed.update(stem.group(0) + r for r in rest) if stem else None
    missing = sorted(op for op in LOWERINGS if not op.startswith("Aievm") and op not in listed)
    assert not missing, f"lowered but not in the docs/engine.md op table: {missing}"
