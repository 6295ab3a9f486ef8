"""AILib's int8/uint8 helpers and precompile-call guards, and the example contracts' pure parts.

Run in a plain Prague EVM: there is no inference precompile at 0xa1/0xa0 here, so a call to it
returns nothing and AILib must reject the missing output (the end-to-end inference tests run on
the AI EVM in tests/ai_evm).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

int8s = st.lists(st.integers(min_value=-128, max_value=127), max_size=70)
uint8s = st.lists(st.integers(min_value=0, max_value=255), max_size=70)


@settings(max_examples=40, deadline=None)
@given(values=int8s)
def test_int8_encode_decode_round_trip(harness, values: list[int]) -> None:
    data = harness.value("encodeInt8", values)
    assert data == np.array(values, dtype=np.int8).tobytes()
    assert list(harness.value("decodeInt8", data)) == values


@settings(max_examples=30, deadline=None)
@given(values=uint8s)
def test_uint8_encode_decode_round_trip(harness, values: list[int]) -> None:
    data = harness.value("encodeUint8", values)
    assert data == bytes(values)
    assert list(harness.value("decodeUint8", data)) == values


@settings(max_examples=40, deadline=None)
@given(values=int8s.filter(bool))
def test_argmax_int8_matches_numpy(harness, values: list[int]) -> None:
    data = np.array(values, dtype=np.int8).tobytes()
    assert harness.value("argmaxInt8", data) == int(np.argmax(np.array(values, dtype=np.int8)))
    assert harness.value("argmaxUint8", data) == int(np.argmax(np.frombuffer(data, dtype=np.uint8)))


def test_argmax_int8_negatives_and_empty(harness) -> None:
    assert harness.value("argmaxInt8", np.array([-128, -5, -1, -1, -7], dtype=np.int8).tobytes()) == 2
    assert harness.value("argmaxInt8", np.array([-1, 127, -128], dtype=np.int8).tobytes()) == 1
    # As uint8 the same bytes order differently: 0xff (-1) is the largest.
    assert harness.value("argmaxUint8", np.array([-1, 127, -128], dtype=np.int8).tobytes()) == 0
    assert harness.call("argmaxInt8", b"").error == ("EmptyTensor", ())
    assert harness.call("argmaxUint8", b"").error == ("EmptyTensor", ())


def test_inference_without_precompile_reports_missing_output(harness) -> None:
    # A plain Prague chain has no code at 0xa1: the call succeeds with no return data, which the
    # Axonum-style trick would silently turn into a zero-filled output; AILib rejects it.
    result = harness.call("inference", b"\x11" * 32, b"\x01\x02\x03", 40)
    assert result.error == ("OutputSizeMismatch", (40, 0))
    inline = harness.call("inferenceInline", b"\x00" * 50, b"\x01", 4)
    assert inline.error == ("OutputSizeMismatch", (4, 0))
    assert harness.value("tryInference", b"\x11" * 32, b"\x01", 40, 100_000) is False
    assert harness.call("tryInference", b"\x11" * 32, b"\x01", 40, 100_000).values == (False, b"")


@pytest.fixture(scope="module")
def digits(prague):
    return prague.deploy("DigitsClassifier", b"\x42" * 32)


def test_digits_classifier_encodes_pixels_as_float32(digits) -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 17, size=64, dtype=np.uint8)
    expected = (pixels.astype(np.float32) / np.float32(16)).astype("<f4").tobytes()
    assert digits.value("encodeImage", pixels.tobytes()) == expected


def test_digits_classifier_state_after_deploy(digits) -> None:
    assert digits.value("model") == b"\x42" * 32
    assert digits.value("lastPrediction") == 0
    assert digits.value("OUTPUT_SIZE") == 40


def test_digits_classifier_rejects_bad_images(digits) -> None:
    assert digits.call("encodeImage", b"\x00" * 63).error == ("InvalidImageLength", (63,))
    bad = bytearray(64)
    bad[5] = 17
    assert digits.call("encodeImage", bytes(bad)).error == ("InvalidPixel", (5, 17))
    assert digits.call("predict", bytes(bad)).error == ("InvalidPixel", (5, 17))


def test_axonum_style_merge_layout(prague) -> None:
    caller = prague.deploy("AxonumStyleCaller")
    model = bytes(range(32))
    merged = caller.value("mergeInput", model, b"\xaa\xbb\xcc", 40)
    assert merged == model + (40).to_bytes(32, "big") + b"\xaa\xbb\xcc"
