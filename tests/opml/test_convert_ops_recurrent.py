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
