"""Bad input gives clear, named errors: corrupted/truncated bundles, bad inference inputs, bad ONNX models
and bad calibration data. Every test asserts the error class and its message.

The engine's contract (``opml.errors``): callers that must never crash (the precompile, the RPC
layer) catch ``OpmlError`` and nothing broader, so no bundle bytes and no input may make ``decode``
or ``run`` raise anything else.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from opml.bundle import WORD, Bundle, DType, Node, TensorSpec, decode_bundle, encode_bundle, load_bundle
from opml.convert import convert
from opml.engine import run, run_bytes
from opml.errors import BundleError, ConversionError, InferenceInputError, OpmlError

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "models" / "digits_mlp"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# bundle bytes


def layout(data: bytes) -> dict[str, object]:
    """Byte offsets of a bundle's sections (docs/bundle.md)."""
    meta_len = struct.unpack_from("<Q", data, 12)[0]
    pos = 20 + meta_len
    names_at = pos + 8
    pos = names_at + struct.unpack_from("<Q", data, pos)[0]
    metadata_at = pos + 8
    pos = metadata_at + struct.unpack_from("<Q", data, pos)[0]
    b = decode_bundle(data)
    descs = []
    for _ in range(len(b.tensors) + len(b.nodes)):
        descs.append(pos)
        pos += 4 + struct.unpack_from("<I", data, pos)[0] * WORD
    desc_end = pos
    data_at = []
    for t in b.tensors:
        if t.data is not None:
            data_at.append((pos, len(t.data)))
            pos += len(t.data) + (-len(t.data) % WORD)
    assert pos == len(data)
    return {"meta": 20, "names": names_at, "metadata": metadata_at, "tensor_descs": descs[: len(b.tensors)],
            "node_descs": descs[len(b.tensors):], "desc_end": desc_end, "data": data_at, "bundle": b}


@functools.cache
def _mlp() -> tuple[bytes, np.ndarray]:
    """The example MLP's bundle bytes and 4 test inputs (module-level so hypothesis tests can use them)."""
    bundle = convert(MLP / "model.onnx", np.load(MLP / "calib.npy"), name="digits_mlp")
    return bundle.encoded, np.load(MLP / "test_x.npy")[:4]


@pytest.fixture(scope="module")
def mlp() -> bytes:
    return _mlp()[0]


@pytest.fixture(scope="module")
def mlp_x() -> np.ndarray:
    return _mlp()[1]


def _set_word(data: bytes, at: int, value: int) -> bytes:
    """Replace the 32-byte big-endian word at byte offset ``at``."""
    return data[:at] + (value % (1 << 256)).to_bytes(WORD, "big") + data[at + WORD:]


def _flip(data: bytes, at: int, mask: int = 0xFF) -> bytes:
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1:]


def test_corrupted_magic(mlp: bytes) -> None:
    for i in range(8):
        with pytest.raises(BundleError, match="not an AI EVM bundle \\(bad magic\\)"):
            decode_bundle(_flip(mlp, i))


def test_corrupted_header_version(mlp: bytes) -> None:
    with pytest.raises(BundleError, match="unsupported bundle version 2 \\(this node reads version 1\\)"):
        decode_bundle(mlp[:8] + struct.pack("<I", 2) + mlp[12:])
    with pytest.raises(BundleError, match="meta version does not match header version"):
        decode_bundle(_set_word(mlp, 20, 7))


def test_corrupted_meta_lengths(mlp: bytes) -> None:
    with pytest.raises(BundleError, match="bad meta section length"):
        decode_bundle(mlp[:12] + struct.pack("<Q", 33) + mlp[20:])
    too_long = (len(mlp) // WORD + 1) * WORD  # a plausible length, past the end of the bundle
    with pytest.raises(BundleError, match="bundle truncated: needed \\d+ bytes for meta section"):
        decode_bundle(mlp[:12] + struct.pack("<Q", too_long) + mlp[20:])


def test_corrupted_tensor_descriptor(mlp: bytes) -> None:
    lay = layout(mlp)
    t0 = lay["tensor_descs"][0] + 4  # type: ignore[index]
    with pytest.raises(BundleError, match="tensor 0: unknown dtype code 99"):
        decode_bundle(_set_word(mlp, t0, 99))
    with pytest.raises(BundleError, match="tensor 0: list length 9 out of range"):
        decode_bundle(_set_word(mlp, t0 + WORD, 9))  # rank 9 > MAX_NDIM


def test_corrupted_node_descriptor(mlp: bytes) -> None:
    lay = layout(mlp)
    n0 = lay["node_descs"][0] + 4  # type: ignore[index]
    with pytest.raises(BundleError, match="node 0: unknown op code 250"):
        decode_bundle(_set_word(mlp, n0, 250))
    # an input index pointing at a tensor that is computed later: not topologically ordered
    b: Bundle = lay["bundle"]  # type: ignore[assignment]
    last_out = b.nodes[-1].outputs[0]
    with pytest.raises(BundleError, match="node 0 \\(.*\\): input .* used before it is defined"):
        decode_bundle(_set_word(mlp, n0 + 2 * WORD, last_out))


def test_corrupted_data_padding(mlp: bytes) -> None:
    lay = layout(mlp)
    b: Bundle = lay["bundle"]  # type: ignore[assignment]
    const_ids = [i for i, t in enumerate(b.tensors) if t.data is not None]
    padded = [(i, at, n) for i, (at, n) in zip(const_ids, lay["data"], strict=True) if n % WORD]  # type: ignore[arg-type]
    assert padded, "the MLP bundle should have a constant whose length is not a multiple of 32"
    i, at, n = padded[0]
    with pytest.raises(BundleError, match=f"tensor {i}: non-zero padding"):
        decode_bundle(_flip(mlp, at + n, 0x01))


def test_corrupted_names_and_metadata(mlp: bytes) -> None:
    lay = layout(mlp)
    with pytest.raises(BundleError, match="names section is not UTF-8"):
        decode_bundle(_flip(mlp, lay["names"] + 2, 0x80))  # type: ignore[operator]
    with pytest.raises(BundleError, match="bundle metadata is not valid JSON"):
        decode_bundle(_flip(mlp, lay["metadata"], 0x01))  # type: ignore[arg-type]


def test_trailing_bytes(mlp: bytes) -> None:
    with pytest.raises(BundleError, match="1 trailing bytes after the bundle"):
        decode_bundle(mlp + b"\0")


def test_flipped_weight_byte_changes_the_address(mlp: bytes) -> None:
    """Weights are free data: a flipped weight decodes, but names another model (the store rejects it)."""
    at, _ = layout(mlp)["data"][0]  # type: ignore[index]
    other = decode_bundle(_flip(mlp, at, 0x01))
    assert other.address != decode_bundle(mlp).address


@pytest.mark.parametrize("cut", [0, 1, 7, 8, 11, 12, 19, 20, 52, -1, -2, -31, -32, -33])
def test_truncated_bundle(mlp: bytes, cut: int) -> None:
    with pytest.raises(BundleError, match="bundle truncated: needed \\d+ bytes for .* at offset \\d+"):
        decode_bundle(mlp[:cut])


@FUZZ
@given(st.data())
def test_every_truncation_is_reported_as_truncation(data: st.DataObject) -> None:
    mlp = _mlp()[0]
    n = data.draw(st.integers(0, len(mlp) - 1))
    with pytest.raises(BundleError, match="truncated"):
        decode_bundle(mlp[:n])


@FUZZ
@given(st.data())
def test_random_corruption_gives_bundle_error_or_another_model(data: st.DataObject) -> None:
    mlp = _mlp()[0]
    at = data.draw(st.integers(0, len(mlp) - 1))
    mask = data.draw(st.integers(1, 255))
    try:
        other = decode_bundle(_flip(mlp, at, mask))
    except BundleError:
        return
    assert other.address != decode_bundle(mlp).address


@FUZZ
@given(st.data())
def test_decodable_corruption_never_crashes_the_engine(data: st.DataObject) -> None:
    """A corrupted descriptor word that still decodes (a different, possibly nonsensical model) must
    run or fail with an OpmlError: the precompile catches OpmlError only."""
    mlp, mlp_x = _mlp()
    lay = layout(mlp)
    nodes, tensors = st.sampled_from(lay["node_descs"]), st.sampled_from(lay["tensor_descs"])  # type: ignore[arg-type]
    start = data.draw(st.one_of(nodes, nodes, tensors))  # node wiring and attributes matter most
    n_words = struct.unpack_from("<I", mlp, start)[0]
    at = start + 4 + WORD * data.draw(st.integers(0, n_words - 1))
    old = int.from_bytes(mlp[at:at + WORD], "big", signed=True)
    near = st.integers(old - 2, old + 2).filter(lambda v: v != old)
    new = data.draw(st.one_of(near, near, st.integers(-3, 80), st.integers(-(2**70), 2**70)))
    try:
        b = decode_bundle(_set_word(mlp, at, new))
    except BundleError:
        return
    try:
        run(b, [mlp_x])
    except OpmlError:
        pass


def _one_node(op: str, ins: list[TensorSpec], out: TensorSpec, attrs: tuple) -> Bundle:
    node = Node(op, tuple(range(len(ins))), (len(ins),), attrs, name=f"bad_{op}")
    return Bundle(tuple(ins) + (out,), (node,), tuple(i for i, t in enumerate(ins) if not t.is_const), (len(ins),))


def test_inconsistent_shapes_raise_opml_errors() -> None:
    """Structurally valid bundles whose shapes or attributes do not fit: an OpmlError, not a numpy error."""
    w = np.ones((4, 2), np.int8)
    bad_linear = _one_node(
        "linear",
        [TensorSpec("x", DType.INT8, (-1, 3), 0.1, 0), TensorSpec("w", DType.INT8, (4, 2), data=w.tobytes()),
         TensorSpec("b", DType.INT32, (2,), data=np.zeros(2, np.int32).tobytes())],
        TensorSpec("y", DType.INT32, (-1, 2)), ((0,), (0,)))
    bad_axis = _one_node("argmax", [TensorSpec("x", DType.INT8, (-1, 3))], TensorSpec("y", DType.INT64, (-1,)),
                         ((5,), (0,), (0,)))
    for b, x in ((bad_linear, np.ones((2, 3), np.int8)), (bad_axis, np.ones((2, 3), np.int8))):
        with pytest.raises(OpmlError, match=r"bad_(linear|argmax)|node"):
            run(decode_bundle(encode_bundle(b)), [x])


def test_missing_bundle_file() -> None:
    with pytest.raises(BundleError, match="cannot read bundle .*nowhere.bundle: No such file"):
        load_bundle("/nowhere/nowhere.bundle")


def test_not_bytes() -> None:
    with pytest.raises(BundleError, match="bundle must be bytes"):
        decode_bundle(12345)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# inference inputs


def test_wrong_shape_input(mlp: bytes, mlp_x: np.ndarray) -> None:
    with pytest.raises(InferenceInputError, match=r"input 'input': expected shape \(N, 64\), got \(4, 63\)"):
        run(mlp, [mlp_x[:, :63]])
    with pytest.raises(InferenceInputError, match=r"input 'input': expected shape \(N, 64\), got \(64,\)"):
        run(mlp, [mlp_x[0]])
    with pytest.raises(InferenceInputError, match="input 'input': leading dimension must be a positive multiple of 1"):
        run(mlp, [mlp_x[:0]])


def test_wrong_dtype_input(mlp: bytes, mlp_x: np.ndarray) -> None:
    for bad in (mlp_x.astype(np.int64), mlp_x.astype(np.int32), mlp_x.astype(str), mlp_x.astype(object)):
        with pytest.raises(InferenceInputError, match=f"input 'input': expected dtype float32, got {bad.dtype.name}"):
            run(mlp, [bad])


def test_nan_input(mlp: bytes, mlp_x: np.ndarray) -> None:
    x = mlp_x.copy()
    x[1, 5] = np.nan
    with pytest.raises(InferenceInputError, match="input contains NaN; inference inputs must be finite or \\+-inf"):
        run(mlp, [x])
    with pytest.raises(InferenceInputError, match="NaN"):
        run_bytes(mlp, x.tobytes())


def test_infinite_input_is_fine(mlp: bytes, mlp_x: np.ndarray) -> None:
    x = mlp_x.copy()
    x[0, 0], x[1, 1] = np.inf, -np.inf
    (y,) = run(mlp, [x])
    assert np.isfinite(y).all()


def test_wrong_number_or_names_of_inputs(mlp: bytes, mlp_x: np.ndarray) -> None:
    with pytest.raises(InferenceInputError, match="model takes 1 inputs, got 0"):
        run(mlp, [])
    with pytest.raises(InferenceInputError, match="model takes 1 inputs, got 2"):
        run(mlp, [mlp_x, mlp_x])
    msg = r"inputs must be exactly \['input'\]; missing \['input'\], unknown \['x'\]"
    with pytest.raises(InferenceInputError, match=msg):
        run(mlp, {"x": mlp_x})


@pytest.mark.parametrize("delta", [-1, 1, 4, -300])
def test_run_bytes_wrong_length(mlp: bytes, mlp_x: np.ndarray, delta: int) -> None:
    raw = mlp_x.tobytes()
    n = len(raw) + delta
    msg = f"input length {n} is not 0 \\+ k\\*256 bytes for a batch size k >= 1"
    with pytest.raises(InferenceInputError, match=msg):
        run_bytes(mlp, raw[:n] if delta < 0 else raw + b"\0" * delta)
    with pytest.raises(InferenceInputError, match="input length 0 is not"):
        run_bytes(mlp, b"")


def test_run_bytes_matches_run(mlp: bytes, mlp_x: np.ndarray) -> None:
    assert run_bytes(mlp, mlp_x.tobytes()) == run(mlp, [mlp_x])[0].astype("<f4").tobytes()


# ---------------------------------------------------------------------------------------------
# ONNX models and calibration


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], inits: list[TensorProto] | None = None,
           outputs: list[onnx.ValueInfoProto] | None = None) -> onnx.ModelProto:
    outs = outputs or [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)]
    g = helper.make_graph(nodes, "g", inputs, outs, inits or [])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _x(*shape: object) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("op", ["Hardmax", "Softplus", "Sin"])
def test_unsupported_op_names_the_node(op: str) -> None:
    m = _model([helper.make_node(op, ["x"], ["y"], name=f"my_{op.lower()}")], [_x("N", 4)])
    with pytest.raises(ConversionError, match=f"node 'my_{op.lower()}': unsupported op {op}"):
        convert(m, RNG.random((4, 4), dtype=np.float32))


def test_unsupported_rnn_names_the_node() -> None:
    w = numpy_helper.from_array(np.zeros((1, 4, 4), np.float32), "W")
    r = numpy_helper.from_array(np.zeros((1, 4, 4), np.float32), "R")
    m = _model([helper.make_node("RNN", ["x", "W", "R"], ["y"], name="the_rnn", hidden_size=4)], [_x(3, "N", 4)],
               [w, r])
    with pytest.raises(ConversionError, match="node 'the_rnn': unsupported op RNN"):
        convert(m, RNG.random((3, 4, 4), dtype=np.float32))


def test_unnamed_unsupported_node_names_the_op() -> None:
    m = _model([helper.make_node("Hardmax", ["x"], ["y"])], [_x("N", 4)])
    with pytest.raises(ConversionError, match="Hardmax"):
        convert(m, RNG.random((4, 4), dtype=np.float32))


def test_custom_domain_op() -> None:
    g = helper.make_graph([helper.make_node("Foo", ["x"], ["y"], name="custom", domain="com.example")], "g",
                          [_x("N", 4)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(ConversionError, match="node 'custom': unsupported op com.example.Foo"):
        convert(m, RNG.random((4, 4), dtype=np.float32))


def test_unsupported_attributes_name_the_node() -> None:
    pool = _model([helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2],
                                    ceil_mode=1, count_include_pad=1)], [_x("N", 1, 5, 5)])  # fmt: skip
    with pytest.raises(ConversionError, match="node 'pool' \\(AveragePool\\): ceil_mode=1 with count_include_pad=1"):
        convert(pool, RNG.random((4, 1, 5, 5), dtype=np.float32))
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    gemm = _model([helper.make_node("Gemm", ["x", "W"], ["y"], name="gemm", transA=1)], [_x(4, 4)], [w])
    with pytest.raises(ConversionError, match="node 'gemm' \\(Gemm\\): transA=1 is not supported"):
        convert(gemm, RNG.random((4, 4), dtype=np.float32))
    e = numpy_helper.from_array(np.array(1.5, np.float32), "e")
    cube = _model([helper.make_node("Pow", ["x", "e"], ["y"], name="cube")], [_x("N", 4)], [e])
    with pytest.raises(ConversionError, match="node 'cube' \\(Pow\\): Pow with exponent 1.5 is not supported"):
        convert(cube, RNG.random((4, 4), dtype=np.float32))


def test_missing_calibration() -> None:
    with pytest.raises(ConversionError, match="calibration data is required"):
        convert(MLP / "model.onnx")
    with pytest.raises(ConversionError, match="calibration data is required"):
        convert(MLP / "model.onnx", None)


def test_bad_calibration_data() -> None:
    onnx_path = MLP / "model.onnx"
    with pytest.raises(ConversionError, match="need at least 2 calibration samples"):
        convert(onnx_path, np.zeros((1, 64), np.float32))
    with pytest.raises(ConversionError, match="calibration for 'input' contains NaN or infinity"):
        convert(onnx_path, np.full((4, 64), np.nan, np.float32))
    with pytest.raises(ConversionError, match=r"calibration data lacks inputs \['input'\]"):
        convert(onnx_path, {"wrong": np.zeros((4, 64), np.float32)})
    with pytest.raises(ConversionError, match="model has 1 inputs, calibration gives 2"):
        convert(onnx_path, [np.zeros((4, 64), np.float32)] * 2)
    with pytest.raises(ConversionError, match="calibration for 'input' has dtype <U1, model wants float32"):
        convert(onnx_path, np.array([["a"] * 64] * 4))
    with pytest.raises(ConversionError, match="cannot read calibration file"):
        convert(onnx_path, ROOT / "models" / "nowhere.npy")


def test_wrong_shaped_calibration_names_the_input() -> None:
    with pytest.raises(ConversionError, match="'input'"):
        convert(MLP / "model.onnx", np.zeros((4, 63), np.float32))


def test_unreadable_onnx() -> None:
    calib = np.zeros((4, 64), np.float32)
    with pytest.raises(ConversionError, match="ONNX file not found: .*nowhere.onnx"):
        convert(ROOT / "nowhere.onnx", calib)
    with pytest.raises(ConversionError, match="not a readable ONNX model"):
        convert(b"this is not a protobuf", calib)
    with pytest.raises(ConversionError, match="not a readable ONNX model"):
        convert(MLP / "calib.npy", calib)


def test_unsupported_input_dtype_is_a_conversion_error() -> None:
    """A graph input of a dtype bundles cannot hold: a ConversionError naming the input."""
    x = helper.make_tensor_value_info("x", TensorProto.UINT16, ["N", 4])
    m = _model([helper.make_node("Identity", ["x"], ["y"], name="id")], [x],
               outputs=[helper.make_tensor_value_info("y", TensorProto.UINT16, None)])
    with pytest.raises(ConversionError, match="'x'"):
        convert(m, np.arange(16, dtype=np.uint16).reshape(4, 4))
