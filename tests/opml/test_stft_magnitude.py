"""The magnitude of an STFT written as a convolution (``rewrite_stft.py``, ``lower_stft.py``; silero-vad's front end).

- the rule: ``Conv -> Slice/Cast -> Pow 2 -> Add -> Sqrt`` becomes an int16 convolution and ``reduce`` L2 over the
  stacked real/imaginary pair; engine == reference interpreter bytes; every node through the fraud VM;
- hypothesis: engine == reference on random audio, scales and basis sizes;
- the magnitude follows float far better than the op-by-op lowering on a signal with loud and quiet frames;
- without a common ``Conv`` source (two graph inputs) the chain converts as before (no ``reduce``);
- data movement keeps a 13-bit int16 tensor's scale (it used to drop it).
"""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from test_convert_ops_core import through_vm

from opml.bundle import DType
from opml.convert import Batches, convert, rewrite_stft
from opml.convert.rewrite import rewrite_graph
from opml.engine import run
from opml.ops import REDUCE_L2
from opml.reference import run_reference

import onnxruntime as ort  # isort: skip


def _stft_model(n_fft: int = 32, hop: int = 8, samples: int = 96, enc: int = 6, seed: int = 0) -> onnx.ModelProto:
    """``audio [1, samples] -> Unsqueeze -> Conv(basis [2F, 1, n_fft], stride hop) -> Slice re / im -> Pow 2 -> Add
    -> Sqrt -> Conv(enc, 3) -> Relu`` (silero-vad's shape of front end, smaller)."""
    f = n_fft // 2 + 1
    k = np.arange(n_fft)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * k / n_fft)
    freqs = np.arange(f)[:, None]
    re = (np.cos(2 * np.pi * freqs * k / n_fft) * win)[:, None, :]
    im = (-np.sin(2 * np.pi * freqs * k / n_fft) * win)[:, None, :]
    basis = np.concatenate([re, im]).astype(np.float32)
    rng = np.random.default_rng(seed)
    w_enc = rng.normal(0, 1 / np.sqrt(3 * f), (enc, f, 3)).astype(np.float32)
    consts = {"basis": basis, "w_enc": w_enc, "ax1": np.array([1], np.int64), "s0": np.array([0], np.int64),
              "sf": np.array([f], np.int64), "s2f": np.array([2 * f], np.int64), "two": np.array(2.0, np.float32)}
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    nodes = [
        helper.make_node("Unsqueeze", ["audio", "ax1"], ["a3"]),
        helper.make_node("Conv", ["a3", "basis"], ["spec"], strides=[hop], name="stft"),
        helper.make_node("Slice", ["spec", "s0", "sf", "ax1"], ["re"]),
        helper.make_node("Slice", ["spec", "sf", "s2f", "ax1"], ["im0"]),
        helper.make_node("Cast", ["im0"], ["im"], to=TensorProto.FLOAT),
        helper.make_node("Pow", ["re", "two"], ["re2"]),
        helper.make_node("Pow", ["im", "two"], ["im2"]),
        helper.make_node("Add", ["re2", "im2"], ["pw"]),
        helper.make_node("Sqrt", ["pw"], ["mag"], name="magnitude"),
        helper.make_node("Conv", ["mag", "w_enc"], ["e"], pads=[1, 1]),
        helper.make_node("Relu", ["e"], ["y"]),
    ]
    g = helper.make_graph(nodes, "stft", [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, samples])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("mag", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])


def _audio(samples: int, seed: int, quiet: float = 0.01) -> np.ndarray:
    """A loud tone burst then a quiet one (40 dB apart), with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples)
    x = np.sin(2 * np.pi * t * rng.uniform(0.05, 0.3)) * np.where(t < samples // 2, 1.0, quiet)
    return (x + rng.normal(0, quiet / 10, samples)).astype(np.float32)[None]


def _ort(m: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"audio": x})  # type: ignore[no-any-return]


def test_rule_rewrites_the_chain() -> None:
    ops = [(n.op_type, n.domain) for n in rewrite_graph(_stft_model().graph).node]
    assert ("AievmWideConv", "aievm") in ops and ("AievmMagnitude", "aievm") in ops
    assert not {"Pow", "Sqrt", "Add"} & {o for o, _ in ops}


def test_stft_magnitude_engine_reference_fraud_vm() -> None:
    m = _stft_model()
    calib = np.concatenate([_audio(96, s) for s in range(4)])[:, None, :]  # 4 batches (the batch is fixed to 1)
    b = convert(m, Batches([c for c in calib]))
    specs = {t.name: t for t in b.tensors}
    red = [n for n in b.nodes if n.op == "reduce"]
    assert len(red) == 1 and red[0].iattr("mode") == REDUCE_L2 and b.tensors[red[0].inputs[0]].dtype == DType.INT16
    assert specs["spec"].dtype == DType.INT16 and specs["mag_pair"].shape[1] == 2
    assert not any(n.op == "lut" for n in b.nodes)  # (no square or square-root tables)
    x = _audio(96, 7)
    got = run(b, [x])
    assert [g.tobytes() for g in got] == [r.tobytes() for r in run_reference(b, [x])]
    through_vm(b, [x])
    # the magnitude follows float to ~one step of its int8 grid (the audio's int8 grid, the spectrum's 13-bit
    # one, the isqrt floor and the output's rounding)
    want = _ort(m, x)[1]
    err = np.abs(got[1] - want).max()
    assert err <= 1.5 * float(specs["mag_int8"].scale), err


def test_magnitude_far_closer_than_op_by_op() -> None:
    """The quiet half's spectrum (40 dB down) survives; op by op (one int8 grid each for the STFT output, the
    squares and their sum) it is mostly lost."""
    m = _stft_model()
    calib = [_audio(96, s) for s in range(4)]
    x = _audio(96, 9)
    want = _ort(m, x)[1]
    new = run(convert(m, Batches(calib)), [x])[1]
    rule = rewrite_stft.fuse_stft_magnitude
    try:
        rewrite_stft.fuse_stft_magnitude = lambda g: False  # type: ignore[assignment]
        old = run(convert(m, Batches(calib)), [x])[1]
    finally:
        rewrite_stft.fuse_stft_magnitude = rule
    quiet = want[..., want.shape[-1] // 2 + 1:]

    def rel(a: np.ndarray) -> float:
        d = a[..., want.shape[-1] // 2 + 1:] - quiet
        return float(np.linalg.norm(d) / np.linalg.norm(quiet))

    assert rel(new) < 0.5 * rel(old), (rel(new), rel(old))


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([16, 32]), st.sampled_from([4, 8]),
       st.floats(0.001, 0.5), st.floats(0.05, 20.0))
def test_engine_equals_reference_hypothesis(seed: int, n_fft: int, hop: int, quiet: float, gain: float) -> None:
    m = _stft_model(n_fft, hop, 64, 3, seed)
    calib = [_audio(64, seed + s, quiet) * gain for s in range(2)]
    b = convert(m, Batches(calib))
    assert any(n.op == "reduce" for n in b.nodes)
    x = _audio(64, seed + 5, quiet) * gain
    got = run(b, [x])
    assert [g.tobytes() for g in got] == [r.tobytes() for r in run_reference(b, [x])]


def test_two_inputs_convert_as_before() -> None:
    """``Sqrt(a^2 + b^2)`` of two graph inputs (no common Conv: int8 operands) is lowered op by op."""
    nodes = [helper.make_node("Pow", ["a", "two"], ["a2"]), helper.make_node("Pow", ["b", "two"], ["b2"]),
             helper.make_node("Add", ["a2", "b2"], ["s"]), helper.make_node("Sqrt", ["s"], ["y"])]
    g = helper.make_graph(nodes, "mag", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 8]) for n in "ab"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (4, 8)).astype(np.float32), rng.normal(0, 1, (4, 8)).astype(np.float32)
    bundle = convert(m, [a, b])
    assert not any(n.op == "reduce" for n in bundle.nodes) and sum(n.op == "lut" for n in bundle.nodes) == 3
    assert [x.tobytes() for x in run(bundle, [a, b])] == [x.tobytes() for x in run_reference(bundle, [a, b])]
