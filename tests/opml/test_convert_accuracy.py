"""Accuracy beyond plain int8 (``opml/convert/calibrate.py``, ``accuracy.py``, ``wide16.py``): range
methods, bias correction, 13-bit int16 tensors (convolutions read them as two int8 halves) and the
measured search behind ``aievm model convert --accuracy auto``.

- the default options convert to the same bytes as before (no metadata added);
- range choices are order statistics and exactly rounded sums: the same for any order of the values;
- on a MobileNetV2-like network with trained-like BatchNormalization statistics (``accuracy_models``),
  plain int8 is far from float and the chosen options reach the target cosine;
- an int16-mixed bundle: engine == reference interpreter bytes, and every node through the fraud VM;
- bias correction removes the mean output shift of coarse weights;
- the CLI prints the report, and its printed flags reproduce the auto choice byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from accuracy_models import mobilenet_like
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from test_convert_ops_core import through_vm

from ai_evm.cli import main
from opml.bundle import DType, load_bundle
from opml.convert import convert
from opml.convert.accuracy import choose_options, compare, float_outputs, int16_candidates, report_for
from opml.convert.calibrate import AccuracyOptions, ConversionTrace, choose_range
from opml.engine import run
from opml.errors import ConversionError
from opml.reference import run_reference

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mnet() -> tuple[onnx.ModelProto, np.ndarray]:
    return mobilenet_like(spread=0.85, batch=12)


def _cos(m: onnx.ModelProto, x: np.ndarray, opts: AccuracyOptions) -> float:
    return report_for(m, x, opts).score


# ------------------------------------------------------------------------------ default = today's bytes


def test_default_options_keep_the_bytes(mnet: tuple[onnx.ModelProto, np.ndarray]) -> None:
    m, x = mnet
    plain = convert(m, x)
    assert convert(m, x, accuracy=AccuracyOptions()).encoded == plain.encoded
    assert set(plain.metadata) == {"producer", "source"}
    d = ROOT / "models" / "digits_cnn"
    assert convert(str(d / "model.onnx"), str(d / "calib.npy"), name="digits_cnn",
                   accuracy=AccuracyOptions()).encoded == load_bundle(d / "model.bundle").encoded
    chosen = convert(m, x, accuracy=AccuracyOptions("mse", True, frozenset({"bn7"})))
    assert chosen.metadata["calibration"] == "mse" and chosen.metadata["bias_correction"] == "1"
    assert chosen.metadata["int16"] == "bn7"


# ------------------------------------------------------------------------------ range methods


def test_ranges() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(0, 1, 100_000)
    v[17] = 60.0  # one outlier
    assert choose_range("minmax", v) == (float(v.min()), 60.0)
    lo, hi = choose_range("percentile", v)
    assert 3.0 < hi < 5.0 and -5.0 < lo < -3.0
    lo, hi = choose_range("mse", v)
    assert hi < 60.0 and lo > float(v.min()) - 1e-12
    assert choose_range("percentile", np.abs(v), relu=True)[0] == 0.0
    # pure functions of the values: any order gives the same range (partition, histogram counts, fsum)
    for method in ("percentile", "mse"):
        assert choose_range(method, v) == choose_range(method, rng.permutation(v))
    with pytest.raises(ConversionError, match="unknown calibration method"):
        AccuracyOptions("entropyy")


# ------------------------------------------------------------------------------ accuracy on a depthwise net


def test_int16_and_ranges_improve_a_depthwise_net(mnet: tuple[onnx.ModelProto, np.ndarray]) -> None:
    m, x = mnet
    cands = int16_candidates(m)
    assert "logits" in cands and len(cands) >= 20
    plain = _cos(m, x, AccuracyOptions())
    assert plain < 0.96, plain  # plain int8 loses accuracy on this model (as on trained MobileNets)
    wide = _cos(m, x, AccuracyOptions("mse", False, frozenset(cands)))
    assert wide >= 0.99, (plain, wide)


def test_auto_search_reaches_the_target(mnet: tuple[onnx.ModelProto, np.ndarray]) -> None:
    m, x = mnet
    res = choose_options(m, x, target_cosine=0.99, max_conversions=20)
    assert res.score >= 0.99 and res.conversions <= 20
    assert res.baseline is not None and res.baseline[0].mean < 0.96
    assert 0 < len(res.options.int16) < len(int16_candidates(m))  # fewer int16 tensors than all of them
    again = convert(m, x, accuracy=res.options)  # the recorded options reproduce the bundle without a search
    assert again.encoded == res.bundle.encoded


# ------------------------------------------------------------------------------ exactness of int16 bundles


def _small_block() -> tuple[onnx.ModelProto, np.ndarray]:
    """conv -> Clip -> depthwise conv -> Clip -> conv (+ residual) -> Relu -> GlobalAveragePool -> Gemm, and
    MaxPool beside."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (3, 4, 6, 6)).astype(np.float32)

    def w(name: str, shape: tuple[int, ...], scale: float = 0.5) -> TensorProto:
        return numpy_helper.from_array((rng.normal(0, scale, shape)).astype(np.float32), name)

    inits = [w("w1", (8, 4, 1, 1)), w("b1", (8,)), w("w2", (8, 1, 3, 3)), w("w3", (4, 8, 1, 1)), w("b3", (4,)),
             w("fc", (5, 4)), w("fcb", (5,)), numpy_helper.from_array(np.float32(0), "z"),
             numpy_helper.from_array(np.float32(6), "six")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
        helper.make_node("Clip", ["c1", "z", "six"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "z", "six"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
        helper.make_node("Add", ["x", "c3"], ["s"]),
        helper.make_node("Relu", ["s"], ["sr"]),
        helper.make_node("MaxPool", ["sr"], ["mp"], kernel_shape=[2, 2]),
        helper.make_node("GlobalAveragePool", ["sr"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1),
    ]
    g = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5]),
                           helper.make_tensor_value_info("mp", TensorProto.FLOAT, ["N", 4, 3, 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), x


def test_int16_bundle_engine_reference_fraud_vm() -> None:
    m, x = _small_block()
    cands = int16_candidates(m)
    assert set(cands) == {"c1", "c2", "c3", "s", "y"}
    trace = ConversionTrace()
    b = convert(m, x, accuracy=AccuracyOptions("percentile", True, frozenset(cands)), trace=trace)
    specs = {t.name: t for t in b.tensors}
    assert specs["c1"].dtype == DType.INT16 and specs["r1"].dtype == DType.INT16  # (Clip keeps int16)
    assert specs["sr"].dtype == DType.INT16  # (so does Relu)
    assert any(n.op == "conv" and b.tensors[n.inputs[0]].dtype == DType.INT8 for n in b.nodes)
    assert trace.int8_readers == ["MaxPool mp"]  # (pooling has no int16 path: it reads an int8 copy)
    got = run(b, [x])
    assert [g.tobytes() for g in got] == [g.tobytes() for g in trace.outputs]  # conversion ran the same kernels
    ref = run_reference(b, [x])
    assert [g.tobytes() for g in got] == [r.tobytes() for r in ref]
    through_vm(b, [x])
    rep = compare(["y", "mp"], got, float_outputs(m, [x]))
    plain = compare(["y", "mp"], run(convert(m, x), [x]), float_outputs(m, [x]))
    assert rep[0].mean >= plain[0].mean - 1e-4 and rep[0].mean > 0.999


def _mlp(k: int) -> tuple[onnx.ModelProto, np.ndarray]:
    """x [N, 16] -> Gemm + Relu [k] -> Gemm [8] (two layers: the hidden one may be int16)."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, shape).astype(np.float32), name)
             for name, shape in (("w1", (16, k)), ("b1", (k,)), ("w2", (k, 8)), ("b2", (8,)))]
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w1", "b1"], ["g1"]),
                           helper.make_node("Relu", ["g1"], ["h"]),
                           helper.make_node("Gemm", ["h", "w2", "b2"], ["y"])], "mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), rng.normal(0, 1, (6, 16)).astype(
        np.float32)


def test_int16_linear_input() -> None:
    """A Gemm reads an int16 input directly while ``4095 x max column sum |W| < 2^30`` (else an int8 copy)."""
    m, x = _mlp(32)
    assert int16_candidates(m) == ["h", "y"]
    trace = ConversionTrace()
    b = convert(m, x, accuracy=AccuracyOptions(int16=frozenset({"h", "y"})), trace=trace)
    lin = [n for n in b.nodes if n.op == "linear"]
    assert [b.tensors[n.inputs[0]].dtype for n in lin] == [DType.INT8, DType.INT16]
    assert trace.int8_readers == []
    got = run(b, [x])
    assert [g.tobytes() for g in got] == [r.tobytes() for r in run_reference(b, [x])]
    through_vm(b, [x])
    assert compare(["y"], got, float_outputs(m, [x]))[0].mean > 0.9999
    m, x = _mlp(20000)  # (4095 x 127 x ~16000 > 2^30: the second Gemm reads an int8 copy)
    trace = ConversionTrace()
    b = convert(m, x, accuracy=AccuracyOptions(int16=frozenset({"h"})), trace=trace)
    assert trace.int8_readers == ["Gemm " + m.graph.node[2].output[0]]


_RUN = """
import sys
import numpy as np
from opml.bundle import load_bundle
from opml.engine import run
b = load_bundle(sys.argv[1])
outs = run(b, [np.load(sys.argv[2])])
sys.stdout.write("".join(o.tobytes().hex() for o in outs))
"""


@pytest.mark.parametrize("env", [{"OPML_NATIVE": "0"}, {"OPML_NATIVE_ISA": "generic", "OPML_THREADS": "1"},
                                 {"OPML_THREADS": "2"}])
def test_int16_bundle_same_bytes_on_every_path(tmp_path: Path, env: dict[str, str]) -> None:
    """The int16-mixed bundle gives the same bytes with the native kernels off, forced to portable C on one
    thread, or on two threads (the engine's fast paths for int16 adds, int16-output and int16-input GEMMs)."""
    import os
    import subprocess
    import sys

    m, x = _small_block()
    b = convert(m, x, accuracy=AccuracyOptions("mse", False, frozenset(int16_candidates(m))))
    (tmp_path / "b.bundle").write_bytes(b.encoded)
    big = np.random.default_rng(11).normal(0, 1.5, (1024,) + x.shape[1:]).astype(np.float32)  # (threads split rows)
    np.save(tmp_path / "x.npy", big)
    script = tmp_path / "run.py"
    script.write_text(_RUN)
    want = "".join(o.tobytes().hex() for o in run(b, [big]))
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "b.bundle"), str(tmp_path / "x.npy")],
                         env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out == want


def test_no_candidate_flows_into_a_concat() -> None:
    """``concat`` needs one dtype: a tensor whose int16 would reach a Concat (through Clip, Relu, Add or data
    movement) is not a candidate; the Concat-free branch still is."""
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (3, 4, 5, 5)).astype(np.float32)
    inits = [numpy_helper.from_array(rng.normal(0, .5, (4, 4, 1, 1)).astype(np.float32), n) for n in ("w", "v")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "x"], ["s"]),
             helper.make_node("Relu", ["s"], ["r"]), helper.make_node("Concat", ["r", "x"], ["y"], axis=1),
             helper.make_node("Conv", ["x", "v"], ["d"]), helper.make_node("Add", ["d", "x"], ["z"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("y", "z")], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert int16_candidates(m) == ["d", "z"]
    with pytest.raises(ConversionError, match="Concat"):
        convert(m, x, accuracy=AccuracyOptions(int16=frozenset({"c"})))
    res = choose_options(m, x, target_cosine=1.0, max_conversions=10)
    assert res.options.int16 <= {"d", "z"}


def test_int16_names_must_be_candidates() -> None:
    m, x = _small_block()
    with pytest.raises(ConversionError, match=r"int16 was asked for \['r1'\]"):
        convert(m, x, accuracy=AccuracyOptions(int16=frozenset({"r1"})))


# ------------------------------------------------------------------------------ bias correction


def test_bias_correction_removes_the_mean_shift() -> None:
    rng = np.random.default_rng(7)
    x = (rng.normal(0, 1, (256, 64)) + 2.0).astype(np.float32)  # inputs with a large mean
    w = rng.normal(0, 0.3, (64, 16)).astype(np.float32)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    want = x @ w
    shifts = []
    for bc in (False, True):
        trace = ConversionTrace()
        convert(m, x, weight_bits=3, accuracy=AccuracyOptions(bias_correction=bc), trace=trace)
        shifts.append(float(np.abs((trace.outputs[0] - want).mean(axis=0)).mean()))
    assert shifts[1] < 0.5 * shifts[0], shifts


# ------------------------------------------------------------------------------ command line


def test_cli_report_and_reproducible_flags(tmp_path: Path) -> None:
    m, x = _small_block()
    onnx.save(m, str(tmp_path / "m.onnx"))
    np.save(tmp_path / "calib.npy", x)
    base = ["model", "convert", str(tmp_path / "m.onnx"), "--calibration", str(tmp_path / "calib.npy")]
    r = CliRunner().invoke(main, base + ["-o", str(tmp_path / "a.bundle"), "--accuracy", "auto",
                                         "--target-cosine", "0.9999", "--max-conversions", "12"])
    assert r.exit_code == 0, r.output
    assert "output y: cosine to onnxruntime float32" in r.stderr and "plain int8 (minmax)" in r.stderr
    address = r.stdout.strip()
    assert address.startswith("0x") and len(address) == 66  # stdout stays the address alone
    flags = r.stderr.split("): ", 1)[1].splitlines()[0].split()
    r2 = CliRunner().invoke(main, base + ["-o", str(tmp_path / "b.bundle")] + flags)
    assert r2.exit_code == 0, r2.output
    assert r2.stdout.strip() == address
    assert (tmp_path / "a.bundle").read_bytes() == (tmp_path / "b.bundle").read_bytes()
    plain = CliRunner().invoke(main, base + ["-o", str(tmp_path / "c.bundle")])
    assert plain.exit_code == 0 and plain.output.strip() == convert(m, x, name="m").address_hex  # no report
    bad = CliRunner().invoke(main, base + ["-o", str(tmp_path / "d.bundle"), "--accuracy", "auto", "--int16", "s"])
    assert bad.exit_code != 0 and "either --accuracy auto" in bad.output
    bad = CliRunner().invoke(main, base + ["-o", str(tmp_path / "d.bundle"), "--int16", "nope"])
    assert bad.exit_code != 0 and "int16 was asked for ['nope']" in bad.output
