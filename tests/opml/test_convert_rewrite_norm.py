"""Hand-written layer norms, softmax and GELU (opml.convert.rewrite_layernorm / rewrite_softmax /
rewrite_activation) on small onnx.helper graphs of each exported form.

Each form is checked three ways: the rewrite replaces it by one LayerNormalization / Softmax / Gelu (through
Transposes for an axis that is not the last), the rewritten graph computes what the original computes
(both through onnxruntime), and the converted bundle is close to onnxruntime on the original and equal to the
reference interpreter; the bundle's nodes run through the fraud VM. Near misses (a mean factor that is not
1/n, a scale that varies along another axis, a max over another axis, a GELU constant off) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from fraud_vm.trace import NodeTrace
from opml.bundle import load_bundle
from opml.convert import convert
from opml.convert.rewrite import rewrite_graph
from opml.engine import get_plan, run
from opml.reference import run_reference

N, C, F = 4, 12, 10  # batch, normalized axis, other axis


class G:
    """A small graph under construction: input ``x`` of shape ``[batch, *shape]`` (batch symbolic)."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0) -> None:
        self.shape, self.rng = shape, np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.k = 0

    def c(self, arr: object, dtype: object = np.float32) -> str:
        self.k += 1
        name = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def n(self, op: str, *ins: str, **kw: object) -> str:
        self.k += 1
        out = f"{op.lower()}{self.k}"
        self.nodes.append(helper.make_node(op, list(ins), [out], name=out, **kw))
        return out

    def model(self, out: str, opset: int = 17) -> onnx.ModelProto:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *self.shape])
        y = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
        g = helper.make_graph(self.nodes, "g", [x], [y], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m

    def kept_shape(self, reduced: str, axis: int) -> str:
        """``[batch, *shape]`` with ``axis`` as 1, computed from ``Shape(x)`` (as jax2tf writes it)."""
        dims = list(self.shape)
        dims[axis - 1] = 1
        batch = self.n("Slice", self.n("Shape", "x"), self.c([0], np.int64), self.c([1], np.int64))
        return self.n("Concat", batch, self.c(dims, np.int64), axis=0)

    def back(self, reduced: str, axis: int) -> str:
        """A keepdims=0 reduction put back in line with ``x``: Reshape then Expand to the computed shape."""
        s = self.kept_shape(reduced, axis)
        return self.n("Expand", self.n("Reshape", reduced, s), s)


def _ort(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _rewritten(m: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(m)
    g = rewrite_graph(onnx.shape_inference.infer_shapes(m).graph)
    out.graph.CopyFrom(g)
    del out.opset_import[:]  # (Gelu is opset 20, where Reduce* take their axes as an input)
    out.opset_import.extend([helper.make_opsetid("", 20 if "Gelu" in _ops(out) else 17)])
    return out


def _ops(m: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in m.graph.node]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _data(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, *shape)) * 1.5 + 0.7).astype(np.float32)


def _check(m: onnx.ModelProto, want_ops: list[str], cos_min: float = 0.999) -> None:
    """The rewrite gives ``want_ops``, computes the same function, and converts close to onnxruntime."""
    r = _rewritten(m)
    assert _ops(r) == want_ops
    shape = tuple(d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim[1:])
    x = _data(shape, 16, 1)
    want = _ort(m, x)
    np.testing.assert_allclose(_ort(r, x), want, rtol=2e-4, atol=2e-4)
    b = convert(m, _data(shape, 32, 0))
    got = run(b, [x])[0]
    assert got.shape == want.shape
    assert _cos(got, want) >= cos_min
    assert [o.tobytes() for o in run(b, [x[:3]])] == [o.tobytes() for o in run_reference(b, [x[:3]])]
    _through_fraud_vm(b, x[:2])


def _through_fraud_vm(b: object, x: np.ndarray) -> None:
    b = load_bundle(b.encoded)  # type: ignore[attr-defined]
    env = {b.inputs[0]: x}
    for j, (node, kernel) in enumerate(zip(b.nodes, get_plan(b).kernels, strict=True)):
        tr = NodeTrace(b, j, dict(env))
        env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
        final = list(tr.interpret())[-1]
        assert final.status == 1 and final.step == tr.num_steps, f"node {j} ({node.op})"
        assert [o.tobytes() for o in tr.outputs()] == [np.ascontiguousarray(tr.y).tobytes()], f"node {j} ({node.op})"


# ---------------------------------------------------------------- layer norm forms

def torch_mul_square(g: G) -> str:
    """(x - mean) / sqrt(mean((x - mean) * (x - mean)) + eps) * gamma (no bias), last axis."""
    d = g.n("Sub", "x", g.n("ReduceMean", "x", axes=[-1]))
    var = g.n("ReduceMean", g.n("Mul", d, d), axes=[-1])
    y = g.n("Div", d, g.n("Sqrt", g.n("Add", var, g.c(1e-5))))
    return g.n("Mul", y, g.c(1 + 0.2 * g.rng.standard_normal(F)))


def jax2tf(g: G) -> str:
    """magika's form over axis 1 of [N, C, F]: ReduceSum * 1/n without keepdims, E[x^2] - E[x]^2, max(., 0),
    Reshape + Expand from Shape(x), + eps, Sqrt, Reciprocal, times a scale, times x - mean, plus a bias."""
    axes = g.c([1], np.int64)
    inv_n = g.c(1.0 / C)
    mean = g.n("Mul", g.n("ReduceSum", "x", axes, keepdims=0), inv_n)
    m2 = g.n("Mul", g.n("ReduceSum", g.n("Mul", "x", "x"), axes, keepdims=0), inv_n)
    var = g.n("Max", g.c(0.0), g.n("Sub", m2, g.n("Mul", mean, mean)))
    rstd = g.n("Reciprocal", g.n("Sqrt", g.n("Add", g.back(var, 1), g.c(1e-6))))
    scaled = g.n("Mul", rstd, g.c(1 + 0.2 * g.rng.standard_normal((1, C, 1))))
    y = g.n("Mul", g.n("Sub", "x", g.back(mean, 1)), scaled)
    return g.n("Add", y, g.c(0.1 * g.rng.standard_normal((1, C, 1))))


def rsqrt_pow(g: G) -> str:
    """ReduceSum / n (keepdims), Pow(x - mean, 2), Pow(var + eps, -0.5), Mul; then Mul, Add, Sub of constants."""
    axes = g.c([-1], np.int64)
    mean = g.n("Div", g.n("ReduceSum", "x", axes), g.c(float(F)))
    d = g.n("Sub", "x", mean)
    var = g.n("Div", g.n("ReduceSum", g.n("Pow", d, g.c(2.0)), axes), g.c(float(F)))
    y = g.n("Mul", d, g.n("Pow", g.n("Add", g.c(1e-3), var), g.c(-0.5)))
    y = g.n("Add", g.n("Mul", y, g.c(1 + 0.2 * g.rng.standard_normal(F))), g.c(0.3))
    return g.n("Sub", y, g.c(0.1 * g.rng.standard_normal(F)))


def keras(g: G) -> str:
    """TensorFlow's batch-norm form: m = gamma * rsqrt(var + eps); x * m + (beta - mean * m)."""
    mean = g.n("ReduceMean", "x", axes=[-1])
    var = g.n("ReduceMean", g.n("Pow", g.n("Sub", "x", mean), g.c(2.0)), axes=[-1])
    m = g.n("Mul", g.n("Reciprocal", g.n("Sqrt", g.n("Add", var, g.c(1e-3)))), g.c(1 + 0.2 * g.rng.standard_normal(F)))
    return g.n("Add", g.n("Mul", "x", m), g.n("Sub", g.c(0.1 * g.rng.standard_normal(F)), g.n("Mul", mean, m)))


LN = ["LayerNormalization"]
LN_T = ["Transpose", "LayerNormalization", "Transpose"]


@pytest.mark.parametrize("form,want", [(torch_mul_square, LN), (jax2tf, LN_T), (rsqrt_pow, LN), (keras, LN)],
                         ids=["torch_mul_square", "jax2tf_axis1", "rsqrt_pow", "keras"])
def test_layernorm_forms(form: Callable[[G], str], want: list[str]) -> None:
    g = G((C, F))
    _check(g.model(form(g)), want)


def test_layernorm_rank2_jax2tf_last_axis() -> None:
    """magika's second LayerNorm: [N, C] over its last axis, the mean restored by a computed Reshape."""
    g = G((C,))
    axes, inv_n = g.c([1], np.int64), g.c(1.0 / C)
    mean = g.n("Mul", g.n("ReduceSum", "x", axes, keepdims=0), inv_n)
    m2 = g.n("Mul", g.n("ReduceSum", g.n("Mul", "x", "x"), axes, keepdims=0), inv_n)
    var = g.n("Max", g.c(0.0), g.n("Sub", m2, g.n("Mul", mean, mean)))
    rstd = g.n("Reciprocal", g.n("Sqrt", g.n("Add", g.back(var, 1), g.c(1e-6))))
    y = g.n("Mul", g.n("Sub", "x", g.back(mean, 1)), g.n("Mul", rstd, g.c(np.full((1, C), 1.3))))
    _check(g.model(y), LN)


def test_layernorm_near_misses_left_alone() -> None:
    # a mean factor that is not 1/n
    g = G((C, F))
    axes = g.c([-1], np.int64)
    mean = g.n("Mul", g.n("ReduceSum", "x", axes), g.c(0.5 / F))
    d = g.n("Sub", "x", mean)
    var = g.n("ReduceMean", g.n("Mul", d, d), axes=[-1])
    y = g.n("Div", d, g.n("Sqrt", g.n("Add", var, g.c(1e-5))))
    assert "LayerNormalization" not in _ops(_rewritten(g.model(y)))
    # a scale that varies along the other axis: stays a Mul after the LayerNormalization
    g = G((C, F))
    y = torch_mul_square(g)
    g.nodes[-1].input[1] = g.c(np.linspace(0.5, 1.5, C).reshape(C, 1))
    r = _rewritten(g.model(y))
    assert _ops(r) == ["LayerNormalization", "Mul"]
    x = _data((C, F), 4, 3)
    np.testing.assert_allclose(_ort(r, x), _ort(g.model(y), x), rtol=2e-4, atol=2e-4)
    # a bias of higher rank than x (it broadcasts x up): stays an Add
    g = G((C, F))
    y = g.n("Add", torch_mul_square(g), g.c(np.full((1, 1, 1, F), 0.1)))
    r = _rewritten(g.model(y))
    assert _ops(r) == ["LayerNormalization", "Add"]
    np.testing.assert_allclose(_ort(r, x), _ort(g.model(y), x), rtol=2e-4, atol=2e-4)
    # the variance of another tensor
    g = G((C, F))
    d = g.n("Sub", "x", g.n("ReduceMean", "x", axes=[-1]))
    x2 = g.n("Mul", "x", g.c(2.0))
    d2 = g.n("Sub", x2, g.n("ReduceMean", x2, axes=[-1]))
    var = g.n("ReduceMean", g.n("Mul", d2, d2), axes=[-1])
    y = g.n("Div", d, g.n("Sqrt", g.n("Add", var, g.c(1e-5))))
    r = _rewritten(g.model(y))
    assert "LayerNormalization" not in _ops(r)
    x = _data((C, F), 4, 3)
    np.testing.assert_allclose(_ort(r, x), _ort(g.model(y), x), rtol=1e-5)


def test_layernorm_reduced_value_kept_when_read_elsewhere() -> None:
    """The mean is also a graph output's input: it stays, the rest becomes LayerNormalization."""
    g = G((C, F))
    mean = g.n("ReduceMean", "x", axes=[-1])
    d = g.n("Sub", "x", mean)
    var = g.n("ReduceMean", g.n("Mul", d, d), axes=[-1])
    y = g.n("Div", d, g.n("Sqrt", g.n("Add", var, g.c(1e-5))))
    out = g.n("Add", y, mean)
    r = _rewritten(g.model(out))
    assert _ops(r) == ["ReduceMean", "LayerNormalization", "Add"]
    x = _data((C, F), 4, 3)
    np.testing.assert_allclose(_ort(r, x), _ort(g.model(out), x), rtol=2e-4, atol=2e-4)


# ---------------------------------------------------------------- softmax

def test_softmax_jax2tf_form() -> None:
    """ReduceMax without keepdims, Max(-inf, .), Reshape + Expand back, Sub, Exp, ReduceSum, Div."""
    g = G((C,))
    axes = g.c([1], np.int64)
    mx = g.n("Max", g.c(-np.inf), g.n("ReduceMax", "x", axes=[1], keepdims=0))
    e = g.n("Exp", g.n("Sub", "x", g.back(mx, 1)))
    y = g.n("Div", e, g.back(g.n("ReduceSum", e, axes, keepdims=0), 1))
    _check(g.model(y), ["Softmax"])


def test_softmax_without_max_over_axis1() -> None:
    g = G((C, F))
    e = g.n("Exp", "x")
    y = g.n("Div", e, g.n("ReduceSum", e, g.c([1], np.int64)))
    _check(g.model(y), ["Transpose", "Softmax", "Transpose"])


def test_softmax_near_miss_left_alone() -> None:
    """The max over one axis, the sum over another: not a softmax (the rewrite of Exp / sum still applies
    only when the sum is over the axis of the max; here the Sub is kept)."""
    g = G((C, F))
    e = g.n("Exp", g.n("Sub", "x", g.n("ReduceMax", "x", axes=[1])))
    y = g.n("Div", e, g.n("ReduceSum", e, g.c([2], np.int64)))
    r = _rewritten(g.model(y))
    assert "ReduceMax" in _ops(r)
    x = _data((C, F), 4, 3)
    np.testing.assert_allclose(_ort(r, x), _ort(g.model(y), x), rtol=1e-5)


# ---------------------------------------------------------------- GELU

def _gelu_tanh_jax(g: G, x: str, c: float = 0.044715) -> str:
    """jax2tf's order: x * (0.5 * (1 + tanh(k * (x + x * (x * (c * x))))))."""
    cube = g.n("Mul", x, g.n("Mul", x, g.n("Mul", g.c(c), x)))
    t = g.n("Tanh", g.n("Mul", g.c(0.7978846), g.n("Add", x, cube)))
    return g.n("Mul", x, g.n("Mul", g.c(0.5), g.n("Add", g.c(np.ones((1, 1))), t)))


def test_gelu_tanh_jax2tf_form() -> None:
    g = G((C,))
    _check(g.model(_gelu_tanh_jax(g, "x")), ["Gelu"])


def test_gelu_tanh_torch_order() -> None:
    """transformers' gelu_new: (0.5 * x) * (1 + tanh(k * (x + 0.044715 * x^3))), the 0.5 * x a side branch."""
    g = G((C,))
    half = g.n("Mul", "x", g.c(0.5))
    inner = g.n("Mul", g.n("Add", "x", g.n("Mul", g.n("Pow", "x", g.c(3.0)), g.c(0.044715))), g.c(0.7978846))
    _check(g.model(g.n("Mul", half, g.n("Add", g.n("Tanh", inner), g.c(1.0)))), ["Gelu"])


def test_gelu_of_a_scaled_input() -> None:
    """gelu(1.7 x): the scalar Mul before it is the model's, not the GELU's (the region starts after it)."""
    g = G((C,))
    _check(g.model(_gelu_tanh_jax(g, g.n("Mul", "x", g.c(1.7)))), ["Mul", "Gelu"])


def test_gelu_erf_other_order() -> None:
    """Div(x * (erf(x * 1/sqrt 2) + 1), 2): an order _fuse_gelu does not take."""
    g = G((C,))
    inner = g.n("Add", g.n("Erf", g.n("Mul", "x", g.c(0.70710677))), g.c(1.0))
    y = g.n("Div", g.n("Mul", "x", inner), g.c(2.0))
    _check(g.model(y), ["Gelu"])


def test_gelu_near_miss_left_alone() -> None:
    g = G((C,))
    y = _gelu_tanh_jax(g, "x", c=0.05)
    assert "Gelu" not in _ops(_rewritten(g.model(y)))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 4), st.data(), st.booleans(), st.sampled_from(["centered", "moments"]),
       st.sampled_from(["ReduceMean", "ReduceSum"]), st.sampled_from(["div_sqrt", "recip", "pow"]),
       st.sampled_from(["unsqueeze", "reshape"]))
def test_layernorm_forms_random(rank: int, data: st.DataObject, keep: bool, var_form: str, mean_op: str,
                                rstd: str, back: str) -> None:
    """Random combinations of the accepted parts, any one axis, keepdims or not: always one
    LayerNormalization (with Transposes off the last axis), the same values as the original graph."""
    dims = tuple(data.draw(st.lists(st.integers(2, 5), min_size=rank - 1, max_size=rank - 1)))
    axis = data.draw(st.integers(1, rank - 1))
    g = G(dims)
    n = dims[axis - 1]
    axes = g.c([axis], np.int64)

    def mean(t: str) -> str:
        if mean_op == "ReduceMean":
            return g.n("ReduceMean", t, axes=[axis], keepdims=int(keep))
        return g.n("Mul", g.n("ReduceSum", t, axes, keepdims=int(keep)), g.c(1.0 / n))

    def restore(t: str) -> str:
        if keep:
            return t
        if back == "unsqueeze":
            return g.n("Unsqueeze", t, g.c([axis], np.int64))
        kept = [0] + [1 if k == axis - 1 else d for k, d in enumerate(dims)]  # (0: copy the batch)
        return g.n("Reshape", t, g.c(kept, np.int64))

    m = mean("x")
    d = g.n("Sub", "x", restore(m))
    if var_form == "centered":
        var = mean(g.n("Mul", d, d))
    else:
        var = g.n("Max", g.n("Sub", mean(g.n("Mul", "x", "x")), g.n("Mul", m, m)), g.c(0.0))
    u = g.n("Add", restore(var), g.c(1e-3))
    if rstd == "div_sqrt":
        y = g.n("Div", d, g.n("Sqrt", u))
    elif rstd == "recip":
        y = g.n("Mul", g.n("Reciprocal", g.n("Sqrt", u)), d)
    else:
        y = g.n("Mul", d, g.n("Pow", u, g.c(-0.5)))
    shape = [1] * rank
    shape[axis] = n
    y = g.n("Add", g.n("Mul", y, g.c(1 + 0.2 * g.rng.standard_normal(shape))), g.c(0.1 * g.rng.standard_normal(shape)))
    model = g.model(y)
    r = _rewritten(model)
    assert _ops(r).count("LayerNormalization") == 1, _ops(r)
    assert _ops(r) == (LN if axis == rank - 1 else LN_T)
    x = _data(dims, 3, 5)
    np.testing.assert_allclose(_ort(r, x), _ort(model, x), rtol=5e-4, atol=5e-4)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.data(), st.booleans(), st.sampled_from(["none", "max", "max_guard"]))
def test_softmax_forms_random(rank: int, data: st.DataObject, keep: bool, shift: str) -> None:
    """Random hand-written softmaxes (any one axis, keepdims or not, with or without the max and its -inf
    guard): one Softmax (with Transposes off the last axis), the same values as the original graph."""
    dims = tuple(data.draw(st.lists(st.integers(2, 5), min_size=rank - 1, max_size=rank - 1)))
    axis = data.draw(st.integers(1, rank - 1))
    g = G(dims)
    axes = g.c([axis], np.int64)

    def restore(t: str) -> str:
        return t if keep else g.n("Unsqueeze", t, g.c([axis], np.int64))

    s = "x"
    if shift != "none":
        mx = g.n("ReduceMax", "x", axes=[axis], keepdims=int(keep))
        if shift == "max_guard":
            mx = g.n("Max", g.c(-np.inf), mx)
        s = g.n("Sub", "x", restore(mx))
    e = g.n("Exp", s)
    y = g.n("Div", e, restore(g.n("ReduceSum", e, axes, keepdims=int(keep))))
    model = g.model(y)
    r = _rewritten(model)
    assert _ops(r) == (["Softmax"] if axis == rank - 1 else ["Transpose", "Softmax", "Transpose"]), _ops(r)
    x = _data(dims, 3, 5)
    np.testing.assert_allclose(_ort(r, x), _ort(model, x), rtol=1e-5, atol=1e-6)
