"""scikit-learn models exported by skl2onnx, through the converter (``opml/convert/lower_ml.py`` for tree
ensembles and Scalers on float inputs, ``opml/convert/ml.py`` for the linear models).

Each model is trained here on a dataset that ships inside scikit-learn's wheel (iris, digits,
breast_cancer, diabetes; 70/30 split), exported with ``zipmap`` off, converted with 64 training rows as
calibration data, and checked on the test split: labels equal onnxruntime float32's on >= 98% of the
rows, probabilities (or predictions) at cosine >= 0.99; engine == reference interpreter (zero
tolerance) on a few rows; and every node of a few models through the fraud VM. Random tree ensembles
(hypothesis: modes, depths, classes, a Scaler of any sign in front) on integer features with
half-integer thresholds, where the per-feature grids resolve every test exactly, give onnxruntime's
labels on every row.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn import datasets
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from fraud_vm.trace import NodeTrace
from fraud_vm.vm import step_with_witness
from opml.bundle import Bundle, load_bundle
from opml.convert import convert
from opml.engine import get_plan, run
from opml.errors import ConversionError
from opml.reference import run_reference

DATA = {"iris": datasets.load_iris, "digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes}
MODELS: dict[str, tuple[str, Callable[[], object]]] = {
    "logreg_scaled_iris": ("iris", lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    "logreg_scaled_breast_cancer": ("breast_cancer",
                                    lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    "logreg_scaled_digits": ("digits", lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    "linreg_diabetes": ("diabetes", LinearRegression),
    "tree_iris": ("iris", lambda: DecisionTreeClassifier(max_depth=5, random_state=0)),
    "tree_breast_cancer": ("breast_cancer", lambda: DecisionTreeClassifier(max_depth=6, random_state=0)),
    "tree_scaled_breast_cancer": ("breast_cancer", lambda: make_pipeline(
        StandardScaler(), DecisionTreeClassifier(max_depth=6, random_state=0))),
    "forest_iris": ("iris", lambda: RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)),
    "forest_breast_cancer": ("breast_cancer",
                             lambda: RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)),
    "forest_digits": ("digits", lambda: RandomForestClassifier(n_estimators=5, max_depth=6, random_state=0)),
    "forest_deep_digits": ("digits",
                           lambda: RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0)),
    "boosting_iris": ("iris", lambda: GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0)),
    "boosting_breast_cancer": ("breast_cancer",
                               lambda: GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0)),
    "tree_regressor_diabetes": ("diabetes", lambda: DecisionTreeRegressor(max_depth=6, random_state=0)),
    "forest_regressor_diabetes": ("diabetes",
                                  lambda: RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0)),
    "boosting_regressor_diabetes": ("diabetes",
                                    lambda: GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0)),
}
_CACHE: dict[str, tuple[onnx.ModelProto, Bundle, np.ndarray]] = {}


def exported(name: str) -> tuple[onnx.ModelProto, Bundle, np.ndarray]:
    """(skl2onnx model, converted bundle, test rows) of ``MODELS[name]``, trained once per session."""
    if name not in _CACHE:
        data, make = MODELS[name]
        x, y = DATA[data](return_X_y=True)
        xtr, xte, ytr, _ = train_test_split(x.astype(np.float32), y, test_size=0.3, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = make()
            model.fit(xtr, ytr)  # type: ignore[attr-defined]
        opts = {"zipmap": False} if hasattr(model, "predict_proba") else None
        onx = to_onnx(model, xtr[:1], options=opts, target_opset={"": 17, "ai.onnx.ml": 3})
        _CACHE[name] = (onx, convert(onx, xtr[:64], name=name), xte)
    return _CACHE[name]


def _ort(m: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {m.graph.input[0].name: x})


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_agrees_with_onnxruntime(name: str) -> None:
    onx, bundle, xte = exported(name)
    got, want = run(bundle, [xte]), _ort(onx, xte)
    assert len(got) == len(want)
    if len(want) == 2:  # classifier: label, probabilities
        assert got[0].dtype == np.int64 and got[0].shape == want[0].shape
        assert float(np.mean(got[0] == want[0])) >= 0.98, f"labels agree on {np.mean(got[0] == want[0]):.4f}"
    assert got[-1].shape == want[-1].shape
    assert _cosine(got[-1], want[-1]) >= 0.99


@pytest.mark.parametrize("name", sorted(MODELS))
def test_engine_equals_reference(name: str) -> None:
    _, bundle, xte = exported(name)
    rows = [xte[:3]]
    for g, r in zip(run(bundle, rows), run_reference(bundle, rows), strict=True):
        assert g.dtype == r.dtype and g.shape == r.shape and g.tobytes() == r.tobytes()


def through_vm(bundle: Bundle, xs: list[np.ndarray], full_limit: int = 3000) -> None:
    """Every node through the fraud VM on the engine's own intermediate values: final state, output bytes."""
    b = load_bundle(bundle.encoded)
    env = dict(zip(b.inputs, xs, strict=True))
    for j, (node, kernel) in enumerate(zip(b.nodes, get_plan(b).kernels, strict=True)):
        tr = NodeTrace(b, j, dict(env))
        env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
        n = tr.num_steps
        if n <= full_limit:
            *_, final = tr.interpret()
        else:  # a few steps from fast-forwarded states
            for k in (0, n // 2, n - 1):
                state, _ = step_with_witness(tr.state_at(k), tr.memory_at(k))
                assert state == tr.state_at(k + 1), f"node {j} ({node.op}): step {k}"
            final = tr.state_at(n)
        assert final.status == 1 and final.step == n, f"node {j} ({node.op}) did not finish"
        assert [o.tobytes() for o in tr.outputs()] == [np.ascontiguousarray(env[node.outputs[0]]).tobytes()], \
            f"node {j} ({node.op})"


@pytest.mark.parametrize("name", ["tree_iris", "boosting_iris", "forest_breast_cancer", "boosting_breast_cancer",
                                  "tree_scaled_breast_cancer", "logreg_scaled_breast_cancer",
                                  "forest_regressor_diabetes"])
def test_every_node_through_fraud_vm(name: str) -> None:
    _, bundle, xte = exported(name)
    through_vm(bundle, [xte[:2]])


def test_tree_ops_are_three_linears() -> None:
    """A forest is quantize (one grid per group of features), concat, and three linear ops (+ argmax)."""
    _, bundle, _ = exported("forest_iris")
    ops = [n.op for n in bundle.nodes]
    assert ops.count("linear") == 4  # tests, leaves, int32 scores (label), int8 probabilities
    assert set(ops) <= {"quantize", "concat", "linear", "argmax", "dequantize"}


def test_forest_reads_each_feature_once() -> None:
    """Features on several grids: one column per tested feature (a gather after the grids' concat), and one
    node-test linear for every block of trees (sliced per block), so the weights have no per-grid rows."""
    onx, bundle, _ = exported("forest_deep_digits")
    ops = [n.op for n in bundle.nodes]
    assert ops.count("quantize") > 1 and ops.count("gather") == 1
    tree = next(n for n in onx.graph.node if n.op_type == "TreeEnsembleClassifier")
    feats = next(a for a in tree.attribute if a.name == "nodes_featureids").ints
    modes = next(a for a in tree.attribute if a.name == "nodes_modes").strings
    used = {f for f, m in zip(feats, modes, strict=True) if m != b"LEAF"}
    tests = [n for n in bundle.nodes if n.op == "linear" and bundle.tensors[n.inputs[0]].name.endswith("_picked")]
    internal = sum(m != b"LEAF" for m in modes)
    assert len(tests) == 1 and bundle.tensors[tests[0].inputs[1]].shape == (len(used), internal)
    assert ops.count("slice") == ops.count("linear") - 3  # tests, then per block a slice and the leaves; scores


def test_deep_forest_through_fraud_vm() -> None:
    _, bundle, xte = exported("forest_deep_digits")
    through_vm(bundle, [xte[:1]])


# ---------------------------------------------------------------------------------------------- random ensembles


def _ml(op: str, ins: list[str], outs: list[str], **attrs: object) -> onnx.NodeProto:
    return helper.make_node(op, ins, outs, domain="ai.onnx.ml", **attrs)  # type: ignore[arg-type]


@st.composite
def _ensembles(draw: st.DrawFn) -> tuple[onnx.ModelProto, np.ndarray]:
    nf = draw(st.integers(1, 5))
    classes = draw(st.integers(1, 4))  # 1: regressor
    trees = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    modes = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT"]
    a: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "featureids", "values", "modes", "true", "false")}
    leaves: list[tuple[int, int]] = []
    for t in range(trees):
        depth = int(rng.integers(0, 4))
        count = 0

        def grow(d: int, t: int = t, depth: int = depth) -> int:
            nonlocal count
            me, count = count, count + 1
            a["treeids"].append(t)
            a["nodeids"].append(me)
            for k in ("featureids", "values", "modes", "true", "false"):
                a[k].append(0)
            k = len(a["treeids"]) - 1
            if d == depth or (d and rng.random() < 0.2):
                a["modes"][k], a["values"][k] = "LEAF", 0.0
                leaves.append((t, me))
                return me
            a["featureids"][k] = int(rng.integers(0, nf))
            a["values"][k] = float(rng.integers(-2, 18)) + 0.5  # half-integers: features are integers
            a["modes"][k] = modes[int(rng.integers(0, 4))]
            a["true"][k] = grow(d + 1)
            a["false"][k] = grow(d + 1)
            return me

        grow(0)
    cols = 1 if classes <= 2 else classes
    positive = classes == 2 and draw(st.booleans())  # binary: probabilities (>= 0) or signed margins
    w_t, w_n, w_c, w_v = [], [], [], []
    for t, n in leaves:
        for c in range(cols):
            w_t.append(t)
            w_n.append(n)
            w_c.append(c)
            w_v.append(float(rng.uniform(0, 1 / trees)) if positive else float(rng.uniform(-1, 1)))
    if classes == 2 and not positive:
        w_v[0] = -abs(w_v[0]) - 0.01
    common = dict(nodes_treeids=a["treeids"], nodes_nodeids=a["nodeids"], nodes_featureids=a["featureids"],
                  nodes_values=a["values"], nodes_modes=a["modes"], nodes_truenodeids=a["true"],
                  nodes_falsenodeids=a["false"])
    scaled = draw(st.booleans())
    src = "xs" if scaled else "x"
    if classes == 1:
        node = _ml("TreeEnsembleRegressor", [src], ["y"], n_targets=1, target_treeids=w_t, target_nodeids=w_n,
                   target_ids=w_c, target_weights=w_v, base_values=[0.25],
                   aggregate_function=draw(st.sampled_from(["SUM", "AVERAGE"])), **common)
        outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    else:
        post = "NONE" if positive else draw(st.sampled_from(["NONE", "LOGISTIC"] if classes == 2 else
                                                            ["NONE", "SOFTMAX", "LOGISTIC"]))
        labels = [int(v) for v in rng.choice(100, size=max(classes, 2), replace=False)]
        node = _ml("TreeEnsembleClassifier", [src], ["label", "scores"], class_treeids=w_t, class_nodeids=w_n,
                   class_ids=w_c, class_weights=w_v, classlabels_int64s=labels, post_transform=post, **common)
        outs = [helper.make_tensor_value_info("label", TensorProto.INT64, None),
                helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)]
    nodes = [node]
    if scaled:  # a Scaler of either sign: (x - o) c with the thresholds then in the scaled units
        c = rng.choice([-2.0, -0.5, 0.25, 1.0, 3.0], size=nf)
        o = rng.integers(-3, 3, size=nf).astype(np.float64)
        nodes.insert(0, _ml("Scaler", ["x"], ["xs"], scale=c.tolist(), offset=o.tolist()))
        for j, mode in enumerate(a["modes"]):
            if mode != "LEAF":
                f = a["featureids"][j]
                a["values"][j] = (a["values"][j] - o[f]) * c[f]
        node.attribute.remove(next(x for x in node.attribute if x.name == "nodes_values"))
        node.attribute.append(helper.make_attribute("nodes_values", a["values"]))
    g = helper.make_graph(nodes, "trees", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", nf])], outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    x = rng.integers(-4, 21, size=(24, nf)).astype(np.float32)
    return m, x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ensembles())
def test_random_ensembles_exact(case: tuple[onnx.ModelProto, np.ndarray]) -> None:
    m, x = case
    bundle = convert(m, x)
    got, want = run(bundle, [x]), _ort(m, x)
    for g, r in zip(got, run_reference(bundle, [x[:4]]), strict=True):
        assert g[:4].tobytes() == r.tobytes()
    if len(want) == 2:
        # integer features, half-integer thresholds: every test exact; labels differ only at near ties of the
        # scores (int8 leaf values), here a top-2 margin under 3% of the largest score
        sc = np.sort(want[1].reshape(len(x), -1), axis=1)
        clear = (sc[:, -1] - sc[:, -2] if sc.shape[1] > 1 else np.abs(sc[:, 0])) > 0.03 * float(np.abs(sc).max())
        assert np.array_equal(got[0][clear], want[0][clear])
    step = max(float(np.abs(want[-1]).max()) / 40, 0.05)  # int8 leaf values and output grid, a transform
    assert np.abs(got[-1].astype(np.float64) - want[-1]).max() <= step


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ensembles())
def test_random_ensembles_through_fraud_vm(case: tuple[onnx.ModelProto, np.ndarray]) -> None:
    m, x = case
    through_vm(convert(m, x), [x[:2]])


# ---------------------------------------------------------------------------------------------- refusals


def _one_tree(mode: str = "BRANCH_LEQ", **extra: object) -> onnx.ModelProto:
    attrs: dict[str, object] = dict(nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                                    nodes_values=[0.5, 0.0, 0.0], nodes_modes=[mode, "LEAF", "LEAF"],
                                    nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
                                    class_treeids=[0, 0], class_nodeids=[1, 2], class_ids=[0, 0],
                                    class_weights=[0.2, 0.9], classlabels_int64s=[0, 1])
    attrs.update(extra)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    node = _ml("TreeEnsembleClassifier", ["x"], ["label", "p"], name="forest", **attrs)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                          [helper.make_tensor_value_info("label", TensorProto.INT64, None),
                           helper.make_tensor_value_info("p", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])


def test_one_tree_is_onnxruntime() -> None:
    x = np.array([[0.0, 1], [1, 0], [0.5, 3], [-2, 2]], dtype=np.float32)
    got, want = run(convert(_one_tree(), x), [x]), _ort(_one_tree(), x)
    assert np.array_equal(got[0], want[0])
    assert np.abs(got[1] - want[1]).max() <= 0.01


@pytest.mark.parametrize("model,words", [
    (_one_tree("BRANCH_EQ"), ["node 'forest' (TreeEnsembleClassifier)", "BRANCH_EQ", "ordered splits"]),
    (_one_tree(classlabels_int64s=None, classlabels_strings=["a", "b"]),
     ["node 'forest' (TreeEnsembleClassifier)", "string class labels", "integer labels"]),
    (_one_tree(nodes_truenodeids=[7, 0, 0]), ["node 'forest'", "missing node 7"]),
    (_one_tree(class_nodeids=[0, 2]), ["node 'forest'", "not a leaf"]),
])
def test_refusals_are_one_line(model: onnx.ModelProto, words: list[str]) -> None:
    x = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ConversionError) as e:
        convert(model, x)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
