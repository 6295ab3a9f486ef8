"""Calibration over several batches (``opml.convert.Batches``, arrays with a leading batches axis).

- one batch, however given, converts to the same bytes as before;
- a dynamic-batch model is calibrated on the concatenation of the batches (same bytes);
- a fixed-batch model converted on K batches in lockstep chooses every quantization parameter exactly as
  the same graph with a dynamic batch does on the K samples concatenated (minmax, percentile, mse with bias
  correction, int16 tensors): ranges and calibration means are those of all batches together;
- the accuracy report has one row per batch; the CLI reads an .npz with a leading batches axis;
- the lockstep itself: a conversion that takes another path on one batch is refused with a named error, and
  a conversion error is the first batch's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from ai_evm.cli import main
from opml.convert import Batches, convert
from opml.convert.accuracy import report_for
from opml.convert.calibrate import AccuracyOptions, ConversionTrace
from opml.convert.lockstep import CalibrationDiverged, merged_range, run_lockstep
from opml.engine import run
from opml.errors import ConversionError


def _net(batch: int | str, state: bool = False) -> onnx.ModelProto:
    """Conv-Relu-Conv + skip, Sigmoid, pooled Gemm; optionally a second (state-like) input added in."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, (4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (3, 4, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, 0.3, (5, 3)).astype(np.float32), "wg"),
             numpy_helper.from_array(rng.normal(0, 0.1, 5).astype(np.float32), "bg")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "x"], ["s"]),
             helper.make_node("Sigmoid", ["s"], ["g"]),
             helper.make_node("GlobalAveragePool", ["g"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["y0"], transB=1)]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])]
    if state:
        ins.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, [batch, 5]))
        nodes.append(helper.make_node("Add", ["y0", "h"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", ["y0"], ["y"]))
    g = helper.make_graph(nodes, "net", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _x(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # samples of different scales, so that the batches' ranges differ
    return (rng.standard_normal((n, 3, 8, 8)) * np.linspace(0.5, 2.0, n).reshape(n, 1, 1, 1)).astype(np.float32)


def _qparams(b) -> list[tuple[str, float, int, bytes]]:  # type: ignore[no-untyped-def]
    return [(t.dtype.name, t.scale, t.zero_point, t.data or b"") for t in b.tensors]


def test_one_batch_keeps_the_bytes() -> None:
    x = _x(4)
    plain = convert(_net("N"), x)
    assert convert(_net("N"), Batches([x])).encoded == plain.encoded
    assert convert(_net("N"), x[None]).encoded == plain.encoded  # (a leading batches axis of one)
    fixed = convert(_net(1), x[:1])
    assert convert(_net(1), Batches([x[:1]])).encoded == fixed.encoded


def test_dynamic_batch_is_the_concatenation() -> None:
    x = _x(6)
    want = convert(_net("N"), x).encoded
    assert convert(_net("N"), Batches([x[:2], x[2:4], x[4:]])).encoded == want
    assert convert(_net("N"), x.reshape(3, 2, 3, 8, 8)).encoded == want


@pytest.mark.parametrize("opts", [AccuracyOptions(), AccuracyOptions("percentile"), AccuracyOptions("mse", True),
                                  AccuracyOptions(int16=frozenset({"c2", "s"}))],
                         ids=["minmax", "percentile", "mse+bias", "int16"])
def test_fixed_batch_lockstep_equals_the_concatenated_batch(opts: AccuracyOptions) -> None:
    x = _x(5)
    trace = ConversionTrace()
    fixed = convert(_net(1), Batches([x[k:k + 1] for k in range(5)]), accuracy=opts, trace=trace)
    dynamic = convert(_net("N"), x, accuracy=opts)
    assert _qparams(fixed) == _qparams(dynamic)  # (every scale, zero point and constant)
    one = convert(_net(1), x[4:5], accuracy=opts)
    assert _qparams(one) != _qparams(fixed)  # (one sample alone chooses other ranges)
    # the conversion-time outputs are the engine's own, one row per batch
    assert trace.outputs[0].shape == (5, 1, 5)
    for k in range(5):
        assert np.array_equal(run(fixed, [x[k:k + 1]])[0], trace.outputs[0][k])


def test_a_shared_input_and_the_report() -> None:
    x, h = _x(4), np.linspace(-1, 1, 5, dtype=np.float32).reshape(1, 5)
    m = _net(1, state=True)
    a = convert(m, {"x": x[:, None], "h": h})  # x: 4 batches of [1, 3, 8, 8]; h: the same in each
    b = convert(m, Batches([{"x": x[k:k + 1], "h": h} for k in range(4)]))
    assert a.encoded == b.encoded
    rep = report_for(m, {"x": x[:, None], "h": h}, AccuracyOptions())
    assert rep.bundle.encoded == a.encoded and rep.report[0].mean > 0.99
    with pytest.raises(ConversionError, match="different numbers of batches"):
        convert(m, {"x": x[:, None], "h": np.stack([h, h])})
    with pytest.raises(ConversionError, match="at least one batch"):
        Batches([])
    seq = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "T"])]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ConversionError, match="must have the same shapes: input 'x' is \\(1, 4\\) in batch 0 and "
                                              "\\(1, 5\\) in batch 1"):
        convert(seq, Batches([np.ones((1, 4), np.float32), np.ones((1, 5), np.float32)]))


def test_cli_reads_batches_from_npz(tmp_path: Path) -> None:
    x = _x(3)
    onnx.save(_net(1), str(tmp_path / "m.onnx"))
    np.savez(tmp_path / "calib.npz", x=x[:, None])
    r = CliRunner().invoke(main, ["model", "convert", str(tmp_path / "m.onnx"), "--calibration",
                                  str(tmp_path / "calib.npz"), "-o", str(tmp_path / "m.bundle"), "--name", "m"])
    assert r.exit_code == 0, r.output
    want = convert(_net(1), Batches([x[k:k + 1] for k in range(3)]), name="m")
    assert r.output.strip().splitlines()[-1] == want.address_hex
    r = CliRunner().invoke(main, ["model", "convert", str(tmp_path / "m.onnx"), "--calibration",
                                  str(tmp_path / "calib.npz"), "-o", str(tmp_path / "a.bundle"), "--accuracy", "auto",
                                  "--max-conversions", "2"])
    assert r.exit_code == 0, r.output
    assert "cosine to onnxruntime float32" in r.output


def test_lockstep_merges_and_refuses_divergence() -> None:
    assert merged_range(-1.0, 2.0) == (-1.0, 2.0)  # (outside a lockstep: unchanged)
    got = run_lockstep(lambda i: merged_range(-float(i), 1.0 + i), 3)
    assert got == [(-2.0, 3.0)] * 3

    def uneven(i: int) -> int:
        for _ in range(1 + (i == 1)):
            merged_range(0.0, 1.0)
        return i

    with pytest.raises(CalibrationDiverged, match="different graphs"):
        run_lockstep(uneven, 3)

    def fails(i: int) -> None:
        merged_range(0.0, 1.0)
        if i == 2:
            raise ConversionError("batch two is bad")
        merged_range(0.0, 1.0)

    with pytest.raises(ConversionError, match="batch two is bad"):
        run_lockstep(fails, 3)
