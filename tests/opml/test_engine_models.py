"""The example models through the whole pipeline: ONNX + calibration -> bundle -> engine.

Accuracy on each model's test set is within 1 point of onnxruntime float32 (measured in the same
run), the engine's outputs have the ONNX model's dtypes and shapes, the bundle round-trips through
its canonical encoding, and the model address is stable (same bundle, same address, however it is
obtained).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from opml.bundle import decode_bundle, encode_bundle, load_bundle
from opml.commitment import bundle_address
from opml.engine import run, run_bytes

NAMES = ("digits_mlp", "digits_cnn", "encoder")
MAX_ACCURACY_DROP = 0.01  # one percentage point


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", NAMES)
def test_accuracy_within_one_point_of_onnxruntime(examples: dict, name: str) -> None:
    ex = examples[name]
    want = _ort(ex.onnx_path, ex.test_x)
    (got,) = run(ex.bundle, [ex.test_x])
    assert got.dtype == want.dtype and got.shape == want.shape
    acc_float = float((want.argmax(1) == ex.test_y).mean())
    acc_engine = float((got.argmax(1) == ex.test_y).mean())
    assert acc_engine >= acc_float - MAX_ACCURACY_DROP, (
        f"{name}: engine accuracy {acc_engine:.4f} vs onnxruntime float32 {acc_float:.4f}")
    assert acc_engine >= 0.9, f"{name}: engine accuracy {acc_engine:.4f}"
    # the prediction agrees with the float model on nearly every sample
    assert float((got.argmax(1) == want.argmax(1)).mean()) >= 0.97


@pytest.mark.parametrize("name", NAMES)
def test_bundle_round_trip(examples: dict, name: str) -> None:
    b = examples[name].bundle
    data = encode_bundle(b)
    assert data == b.encoded
    again = decode_bundle(data)
    assert again == b
    assert encode_bundle(again) == data
    x = examples[name].test_x[:16]
    assert run(again, [x])[0].tobytes() == run(b, [x])[0].tobytes()
    assert run_bytes(data, x.tobytes()) == run(b, [x])[0].tobytes()


@pytest.mark.parametrize("name", NAMES)
def test_address_is_stable(examples: dict, name: str, tmp_path: Path) -> None:
    b = examples[name].bundle
    addr = b.address
    assert len(addr) == 32 and b.address_hex == "0x" + addr.hex() and len(b.address_hex) == 66
    assert bundle_address(b) == addr
    assert decode_bundle(b.encoded).address == addr
    path = tmp_path / f"{name}.bundle"
    path.write_bytes(b.encoded)
    assert load_bundle(path).address == addr
    assert load_bundle(str(path)).address_hex == b.address_hex
    others = {examples[n].bundle.address for n in NAMES}
    assert len(others) == len(NAMES)  # distinct models, distinct addresses
