"""7-bit weights (``convert(..., weight_bits=7)`` / ``aievm model convert --weight-bits 7``): the same bundle
format with every float weight within +-63, which the native GEMM runs on its uint8 x int8 kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from engine_cases import check

from ai_evm.cli import main
from opml import native
from opml.bundle import DType, load_bundle
from opml.convert import convert
from opml.engine import run
from opml.errors import ConversionError

ROOT = Path(__file__).resolve().parents[2]


def _model(name: str) -> tuple[str, np.ndarray]:
    d = ROOT / "models" / name
    return str(d / "model.onnx"), np.load(d / "calib.npy")


@pytest.fixture(scope="module")
def seven() -> dict:
    return {name: convert(*_model(name), name=name, weight_bits=7) for name in ("digits_mlp", "digits_cnn", "encoder")}


def _gemm_weights(bundle) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    return [bundle.tensors[n.inputs[1]].array() for n in bundle.nodes if n.op in ("linear", "conv")]


def test_weights_are_within_7_bits_and_the_bundle_says_so(seven: dict) -> None:
    for name, b in seven.items():
        ws = _gemm_weights(b)
        assert ws and all(w.dtype == DType.INT8.np and np.abs(w.astype(int)).max() <= 63 for w in ws), name
        assert b.metadata["weight_bits"] == "7"
        eight = load_bundle(ROOT / "models" / name / "model.bundle")
        assert "weight_bits" not in eight.metadata and eight.address != b.address
        if native.available():  # the native GEMM takes the uint8 x int8 kernel for every such layer
            assert all(native.pack_weights(w.reshape(w.shape[0], -1).T if w.ndim == 4 else w).kind == 1  # type: ignore[union-attr]
                       for w in ws)


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "encoder"])
def test_engine_equals_reference(seven: dict, name: str) -> None:
    x = np.load(ROOT / "models" / name / "test_x.npy")
    rng = np.random.default_rng(3)
    wild = rng.uniform(-3, 4, size=(2,) + x.shape[1:]).astype(x.dtype)  # beyond the calibration range
    check(seven[name], [np.concatenate([x[:4], wild])])


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_accuracy_within_one_point_of_float(seven: dict, name: str) -> None:
    import onnxruntime as ort

    d = ROOT / "models" / name
    x, y = np.load(d / "test_x.npy"), np.load(d / "test_y.npy")
    s = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    fp = float(np.mean(np.argmax(s.run(None, {s.get_inputs()[0].name: x})[0], -1) == y)) * 100
    q = float(np.mean(np.argmax(run(seven[name], [x])[0], -1) == y)) * 100
    assert abs(q - fp) <= 1.0, (q, fp)


def test_cli_flag_and_bounds(tmp_path: Path, seven: dict) -> None:
    onnx_path, _ = _model("digits_mlp")
    out = tmp_path / "m7.bundle"
    res = CliRunner().invoke(main, ["model", "convert", onnx_path, "-o", str(out), "--name", "digits_mlp",
                                    "--calibration", str(ROOT / "models" / "digits_mlp" / "calib.npy"),
                                    "--weight-bits", "7"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == seven["digits_mlp"].address_hex
    assert load_bundle(out).encoded == seven["digits_mlp"].encoded
    bad = CliRunner().invoke(main, ["model", "convert", onnx_path, "-o", str(tmp_path / "x"), "--weight-bits", "9"])
    assert bad.exit_code != 0 and "9" in bad.output
    with pytest.raises(ConversionError, match="weight_bits"):
        convert(*_model("digits_mlp"), weight_bits=1)
