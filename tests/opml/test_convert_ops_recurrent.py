"""LSTM and GRU unrolled into standard nodes (``opml/convert/recurrent.py``): every direction, both
layouts, initial states (inputs), GRU's linear_before_reset, a dynamic batch with layout 1. Each model:
engine == reference (zero tolerance), every node through the fraud VM, and every output within a few
int8 steps of onnxruntime float32 (which runs layout 0 only: layout 1 is compared with the layout-0 node
on transposed tensors). The quantization error adds up over the steps; sequences here are 5 long.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from test_convert_ops_core import _ort, through_vm

from opml.bundle import DType
from opml.convert import convert
from opml.engine import run
from opml.errors import ConversionError
from opml.reference import run_reference

S, N, I, H = 5, 3, 4, 6
STEPS = 6.0


def _rnn(op: str, direction: str, layout: int, init: bool, lbr: int, dyn: bool, seed: int
         ) -> tuple[onnx.ModelProto, onnx.ModelProto, list[np.ndarray], list[str]]:
    """The model, its layout-0 twin (for onnxruntime) and the inputs."""
    rng = np.random.default_rng(seed)
    ng, d = (4 if op == "LSTM" else 3), (2 if direction == "bidirectional" else 1)
    outs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    inits = [numpy_helper.from_array((rng.standard_normal((d, ng * H, I)) * 0.5).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((d, ng * H, H)) * 0.5).astype(np.float32), "R"),
             numpy_helper.from_array((rng.standard_normal((d, 2 * ng * H)) * 0.2).astype(np.float32), "B")]
    ins = ["x", "W", "R", "B", "", "h0" if init else "", "c0" if init and op == "LSTM" else ""]
    while not ins[-1]:
        ins.pop()
    attrs: dict[str, object] = {"hidden_size": H, "direction": direction}
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    x = rng.standard_normal((N, S, I) if layout else (S, N, I)).astype(np.float32)
    feeds = [x]
    state = [N, d, H] if layout else [d, N, H]
    names = ["h0", "c0"][: (2 if op == "LSTM" else 1)] if init else []
    for _ in names:
        feeds.append((rng.standard_normal(state) * 0.5).astype(np.float32))

    def model(lay: int, shapes: list[list]) -> onnx.ModelProto:
        vis = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(["x", *names], shapes,
                                                                                     strict=True)]
        node = helper.make_node(op, ins, outs, layout=lay, **attrs)
        g = helper.make_graph([node], "rnn", vis, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                    for o in outs], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])

    shapes = [list(f.shape) for f in feeds]
    if dyn:
        shapes = [["N", *s[1:]] for s in shapes]
    return model(layout, shapes), model(0, [[None] * len(s) for s in shapes]), feeds, outs


CASES = [(op, direction, layout, init, lbr, dyn)
         for op in ("LSTM", "GRU") for direction in ("forward", "reverse", "bidirectional") for layout in (0, 1)
         for init in (False, True) for lbr in ((0, 1) if op == "GRU" else (0,)) for dyn in (False,)]
CASES += [("LSTM", "forward", 1, True, 0, True), ("GRU", "bidirectional", 1, True, 1, True)]


@pytest.mark.parametrize("op,direction,layout,init,lbr,dyn", CASES)
def test_recurrent(op: str, direction: str, layout: int, init: bool, lbr: int, dyn: bool) -> None:
    m, m0, feeds, outs = _rnn(op, direction, layout, init, lbr, dyn, seed=len(op) + layout + 2 * init + lbr)
    bundle = convert(m, feeds)
    got = run(bundle, feeds)
    for g, r in zip(got, run_reference(bundle, feeds), strict=True):
        assert g.tobytes() == r.tobytes(), "engine != reference"
    want = _ort(m0, [f.transpose(1, 0, 2) for f in feeds] if layout else feeds)
    if layout:
        want = [w.transpose(2, 0, 1, 3) if w.ndim == 4 else w.transpose(1, 0, 2) for w in want]
    scale = max(t.scale for t in bundle.tensors if t.dtype == DType.INT8)
    for name, g, w in zip(outs, got, want, strict=True):
        assert g.shape == w.shape, f"{name}: shape {g.shape}, onnxruntime {w.shape}"
        err = float(np.abs(g - w).max())
        assert err <= STEPS * scale, f"{name}: max error {err} > {STEPS} steps ({scale})"
    through_vm(bundle, feeds)
    if dyn:  # another batch size at run time
        rows = [f[:1] for f in feeds]
        assert [g.shape[0] for g in run(bundle, rows)] == [1] * len(outs)


def test_unsupported_recurrent_attributes_are_one_line() -> None:
    m, _, feeds, _ = _rnn("LSTM", "forward", 0, False, 0, False, seed=1)
    m.graph.node[0].name = "lstm"
    m.graph.node[0].attribute.append(helper.make_attribute("clip", 3.0))
    with pytest.raises(ConversionError, match=r"^node 'lstm' \(LSTM\): attribute 'clip' is not supported"):
        convert(m, feeds)
    m, _, feeds, _ = _rnn("GRU", "forward", 0, False, 0, True, seed=1)
    m.graph.node[0].name = "gru"
    with pytest.raises(ConversionError, match=r"^node 'gru' \(GRU\): layout=0 puts the batch on axis 1"):
        convert(m, feeds)


def _torch_batch_first(op: str, layers: int, bidir: bool, seed: int, keep_state: bool = False) -> onnx.ModelProto:
    """What torch.onnx.export writes for nn.LSTM/nn.GRU(batch_first=True): Transpose -> layout-0 layers
    (Squeeze, or Transpose + Reshape([0, 0, -1]) between them) -> Transpose back."""
    rng = np.random.default_rng(seed)
    ng, d = (4 if op == "LSTM" else 3), (2 if bidir else 1)
    nodes, inits = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2])], []
    cur, width = "xt", I
    for k in range(layers):
        for name, shape, s in (("W", (d, ng * H, width), 0.5), ("R", (d, ng * H, H), 0.5), ("B", (d, 2 * ng * H), 0.2)):
            inits.append(numpy_helper.from_array((rng.standard_normal(shape) * s).astype(np.float32), f"{name}{k}"))
        attrs: dict[str, object] = {"hidden_size": H, "direction": "bidirectional" if bidir else "forward"}
        if op == "GRU":
            attrs["linear_before_reset"] = 1
        nodes.append(helper.make_node(op, [cur, f"W{k}", f"R{k}", f"B{k}"], [f"Y{k}", f"Yh{k}"], **attrs))
        if bidir:
            nodes += [helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3]),
                      helper.make_node("Reshape", [f"Yt{k}", "shape"], [f"S{k}"])]
        else:
            nodes.append(helper.make_node("Squeeze", [f"Y{k}", "axis1"], [f"S{k}"]))
        cur, width = f"S{k}", d * H
    nodes.append(helper.make_node("Transpose", [cur], ["y"], perm=[1, 0, 2]))
    inits += [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape"),
              numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if keep_state:
        outs.append(helper.make_tensor_value_info("Yh0", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "torch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", S, I])],
                          outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("layers,bidir", [(1, False), (1, True), (2, False), (2, True)])
def test_torch_batch_first_layers_keep_a_dynamic_batch(op: str, layers: int, bidir: bool) -> None:
    from test_convert_ops_core import check

    m = _torch_batch_first(op, layers, bidir, seed=layers + 2 * bidir)
    x = np.random.default_rng(3).standard_normal((4, S, I)).astype(np.float32)
    bundle = check(m, [x], steps=STEPS)
    assert bundle.tensors[bundle.inputs[0]].shape[0] < 0  # the batch stays dynamic
    assert "transpose" not in [n.op for n in bundle.nodes]
    for rows in (x[:1], x[1:3]):
        got, want = run(bundle, [rows])[0], _ort(m, [rows])[0]
        assert got.shape == want.shape and float(np.abs(got - want).max()) <= STEPS * max(
            t.scale for t in bundle.tensors if t.dtype == DType.INT8)


def test_torch_batch_first_with_the_state_used_keeps_the_batch_error() -> None:
    """Y_h stays [D, N, H] in torch's layout: the rewrite does not apply and a dynamic batch is refused."""
    m = _torch_batch_first("GRU", 1, False, seed=0, keep_state=True)
    with pytest.raises(ConversionError, match="batch") as e:
        convert(m, np.zeros((4, S, I), np.float32))
    assert "\n" not in str(e.value)


def _random_rnn(op: str, direction: str, s: int, n: int, i: int, h: int, init: bool, lbr: int, seed: int
                ) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """A batch-first (layout 1) LSTM/GRU of the given sizes with a dynamic batch, and its inputs."""
    rng = np.random.default_rng(seed)
    ng, d = (4 if op == "LSTM" else 3), (2 if direction == "bidirectional" else 1)
    inits = [numpy_helper.from_array((rng.standard_normal((d, ng * h, i)) * 0.6).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((d, ng * h, h)) * 0.6).astype(np.float32), "R"),
             numpy_helper.from_array((rng.standard_normal((d, 2 * ng * h)) * 0.3).astype(np.float32), "B")]
    names = (["h0", "c0"] if op == "LSTM" else ["h0"]) if init else []
    ins = ["x", "W", "R", "B", "", *names]
    outs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    attrs: dict[str, object] = {"hidden_size": h, "direction": direction, "layout": 1}
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    feeds = [rng.standard_normal((n, s, i)).astype(np.float32)]
    feeds += [(rng.standard_normal((n, d, h)) * 0.5).astype(np.float32) for _ in names]
    vis = [helper.make_tensor_value_info(nm, TensorProto.FLOAT, ["N", *f.shape[1:]])
           for nm, f in zip(["x", *names], feeds, strict=True)]
    g = helper.make_graph([helper.make_node(op, ins, outs, **attrs)], "rnn", vis,
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), feeds


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(op=st.sampled_from(["LSTM", "GRU"]), direction=st.sampled_from(["forward", "reverse", "bidirectional"]),
       s=st.integers(1, 4), n=st.integers(2, 3), i=st.integers(1, 5), h=st.integers(1, 9), init=st.booleans(),
       lbr=st.integers(0, 1), seed=st.integers(0, 2**16))
def test_unrolled_recurrence_engine_equals_reference(op: str, direction: str, s: int, n: int, i: int, h: int,
                                                    init: bool, lbr: int, seed: int) -> None:
    """The lowering (one gate table per step, the tanh view, the shared h grid) at random sizes: the engine's
    bytes equal the reference interpreter's at the calibration batch and at batch 1."""
    m, feeds = _random_rnn(op, direction, s, n, i, h, init, lbr, seed)
    bundle = convert(m, feeds)
    for xs in (feeds, [f[:1] for f in feeds]):
        for g, r in zip(run(bundle, xs), run_reference(bundle, xs), strict=True):
            assert g.tobytes() == r.tobytes(), "engine != reference"


def test_lstm_step_is_one_gate_table_and_y_needs_no_requantization() -> None:
    """Per LSTM step: gather, linear, add, one sigmoid lut for all gates, four slices (the cell gate's read as
    tanh on scale 1/127), three muls, an add and the tanh of C; every h on one grid, so Y is one concat."""
    m, feeds = _random_rnn("LSTM", "forward", 6, 2, 3, 5, False, 0, seed=7)
    bundle = convert(m, feeds)
    ops = [nd.op for nd in bundle.nodes]
    assert ops.count("linear") == 1 + 5 and ops.count("lut") == 6 * 2 and ops.count("concat") == 1
    assert ops.count("mul") == 3 * 6 - 1 and ops.count("slice") == 4 * 6 - 1  # (step 0: C_prev = 0, f unused)
    tanh_views = [bundle.tensors[nd.outputs[0]] for nd in bundle.nodes
                  if nd.op == "slice" and bundle.tensors[nd.outputs[0]].scale == np.float32(1 / 127)]
    assert len(tanh_views) == 6 and all(t.zero_point == 0 for t in tanh_views)
    (cat,) = [nd for nd in bundle.nodes if nd.op == "concat"]
    producers = {nd.outputs[0]: nd for nd in bundle.nodes}
    for t in cat.inputs:  # each step's h (through a free reshape), not a requantizing lut
        p = producers[t]
        while p.op == "reshape":
            p = producers[p.inputs[0]]
        assert p.op == "mul"


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_unrolled_recurrence_through_the_fraud_vm(op: str) -> None:
    m, feeds = _random_rnn(op, "bidirectional", 3, 2, 3, 4, True, 1, seed=5)
    bundle = convert(m, feeds)
    through_vm(bundle, feeds)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_fixed_batch_calibrated_on_several_batches_is_the_dynamic_batch_on_their_concatenation(op: str) -> None:
    """Every range of the lowering (the GRU's h grid from its initial state included) merges over the batches
    of a lockstep conversion: the same scales as the dynamic-batch twin calibrated on the concatenation."""
    from opml.convert import Batches

    m, feeds = _random_rnn(op, "forward", 4, 6, 3, 5, True, 1, seed=11)
    parts = [[f[k:k + 2] for f in feeds] for k in (0, 2, 4)]
    fixed = onnx.ModelProto()
    fixed.CopyFrom(m)
    for vi in fixed.graph.input:
        vi.type.tensor_type.shape.dim[0].dim_value = 2
    a, b = convert(fixed, Batches(parts)), convert(m, feeds)
    scales = [(t.name, t.scale, t.zero_point) for t in a.tensors if t.dtype == DType.INT8 and not t.is_const]
    assert scales == [(t.name, t.scale, t.zero_point) for t in b.tensors if t.dtype == DType.INT8 and not t.is_const]


@pytest.mark.parametrize("op,distinct", [("LSTM", 5), ("GRU", 7)])
def test_every_step_has_the_same_pair_parameters(op: str, distinct: int) -> None:
    """The per-step values are on fixed grids (bounded ones) or on one grid per layer (the union of the trial
    unrolling's per-step ranges): the ``mul``/``add`` nodes of all steps have a handful of parameter sets,
    however many steps, so an engine that shares equal tables keeps a handful of them in cache."""
    for steps in (6, 12):
        m, feeds = _random_rnn(op, "forward", steps, 3, 4, 8, False, 1, seed=3)
        bundle = convert(m, feeds)
        t = bundle.tensors
        pair = [(nd.op, nd.attrs, tuple((t[i].scale, t[i].zero_point) for i in nd.inputs),
                 (t[nd.outputs[0]].scale, t[nd.outputs[0]].zero_point))
                for nd in bundle.nodes if nd.op in ("mul", "add")]
        assert len(pair) >= 4 * steps and len(set(pair)) == distinct, (len(pair), len(set(pair)))
        assert len({s.name for s in t}) == len(t)  # (the trial unrolling left no tensor behind)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_constant_initial_states_over_several_steps(op: str) -> None:
    """Constant initial states fold step 0's recurrent product to a constant; the layer grids skip it."""
    m, feeds = _random_rnn(op, "forward", 4, 3, 3, 5, True, 0, seed=2)
    g = m.graph
    for vi, f in zip(list(g.input)[1:], feeds[1:], strict=True):
        g.initializer.append(numpy_helper.from_array(f, vi.name))
    x = g.input[0]
    x.type.tensor_type.shape.dim[0].dim_value = feeds[0].shape[0]  # (a numeric batch: the states fix it)
    del g.input[1:]
    bundle = convert(m, feeds[:1])
    got = run(bundle, feeds[:1])
    for gv, r in zip(got, run_reference(bundle, feeds[:1]), strict=True):
        assert gv.tobytes() == r.tobytes(), "engine != reference"
    scale = max(t.scale for t in bundle.tensors if t.dtype == DType.INT8)
    from onnx.reference import ReferenceEvaluator  # (onnxruntime runs layout 0 only)

    for gv, w in zip(got, ReferenceEvaluator(m).run(None, {"x": feeds[0]}), strict=True):
        assert float(np.abs(gv - w).max()) <= STEPS * scale
