"""The ONNX backend node tests of LSTM, GRU and RNN through ``convert`` + ``run`` (``opml/convert/recurrent.py``).

The cases come from onnx's own case code, run in memory (``onnx.backend.test.case.node.{lstm,gru,rnn}``; the
onnx wheel ships no test data). The weights, biases, ``sequence_lens`` and peepholes become initializers (the
unrolling needs them constant); X and the initial states stay graph inputs and are the calibration data.
Each float output must be within ``STEPS`` int8 steps of the coarsest int8 tensor of the bundle of the
expected data (the quantization error adds up over the steps, as in ``test_convert_ops_recurrent.py``); the
engine's bytes equal the reference interpreter's. Cases the engine does not support are in ``UNSUPPORTED``
with the reason, and must fail with one line naming the node or op.
"""

from __future__ import annotations

import importlib

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.backend.test.case.test_case import TestCase

from opml.bundle import DType
from opml.convert import convert
from opml.engine import run
from opml.errors import ConversionError
from opml.reference import run_reference

FAMILIES = ("lstm", "gru", "rnn")
DATA_INPUTS = {0, 5, 6}  # X, initial_h, initial_c
STEPS = 6.0

UNSUPPORTED: dict[str, str] = {
    "test_lstm_with_peepholes": "peepholes (input P)",
    **{f"test_{n}": "RNN (the plain tanh recurrence): only LSTM and GRU are unrolled" for n in (
        "simple_rnn_defaults", "simple_rnn_with_initial_bias", "rnn_seq_length", "simple_rnn_batchwise",
        "simple_rnn_reverse", "simple_rnn_bidirectional")},
}


def _cases() -> dict[str, TestCase]:
    import onnx.backend.test.case.node as node_cases

    for fam in FAMILIES:
        importlib.import_module(f"onnx.backend.test.case.node.{fam}")
    return {c.name: c for c in node_cases._NodeTestCases
            if c.model is not None and c.model.graph.node and c.model.graph.node[0].op_type in ("LSTM", "GRU", "RNN")}


CASES = _cases()


def _static(case: TestCase) -> tuple[onnx.ModelProto, list[np.ndarray], list[np.ndarray]]:
    model = case.model
    (node,) = model.graph.node
    inputs, outputs = case.data_sets[0]
    pos = {name: i for i, name in enumerate(node.input) if name}
    keep, inits, arrays = [], [], []
    for vi, v in zip(model.graph.input, inputs, strict=True):
        a = numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v)
        if pos[vi.name] in DATA_INPUTS:
            keep.append(vi)
            arrays.append(a)
        else:
            inits.append(numpy_helper.from_array(a, vi.name))
    g = helper.make_graph(list(model.graph.node), model.graph.name, keep, list(model.graph.output), inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return m, arrays, [np.asarray(o) for o in outputs]


@pytest.mark.parametrize("name", sorted(CASES))
def test_backend_case(name: str) -> None:
    m, arrays, outputs = _static(CASES[name])
    (node,) = m.graph.node
    if name in UNSUPPORTED:
        with pytest.raises(ConversionError) as e:
            convert(m, arrays)
        msg = str(e.value)
        assert "\n" not in msg and (node.op_type in msg or (node.name and node.name in msg)), msg
        return
    bundle = convert(m, arrays)
    got = run(bundle, arrays)
    ref = run_reference(bundle, arrays)
    scale = max(t.scale for t in bundle.tensors if t.dtype == DType.INT8)
    assert len(got) == len(outputs)
    for g, r, want in zip(got, ref, outputs, strict=True):
        assert g.tobytes() == r.tobytes() and g.dtype == r.dtype, "engine != reference"
        assert g.shape == want.shape, f"shape {g.shape}, expected {want.shape}"
        err = float(np.abs(g.astype(np.float64) - want).max(initial=0))
        assert err <= STEPS * scale, f"max error {err} > {STEPS} steps of {scale}"


def test_unsupported_list_is_not_stale() -> None:
    assert set(UNSUPPORTED) <= set(CASES), set(UNSUPPORTED) - set(CASES)
    assert len(CASES) - len(UNSUPPORTED) >= 11, len(CASES) - len(UNSUPPORTED)
