"""Lowerings the model corpus needed (``scripts/bench/corpus.py``): Pad (reflect, edge, wrap) onto ``gather``,
LSTM/GRU exported with ``batch_first=True`` (a Transpose(1, 0, 2) in front, dynamic batch), Shape of a
transposed view, and an integer product with a zero constant folding away (silero-vad's ``sr * 0``).
Each: engine == reference with zero tolerance, every node through the fraud VM, close to onnxruntime
float32 (``check`` of ``test_convert_ops_core``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper
from test_convert_ops_core import FEW, _data, _f, _init, _model, _ort, check

from opml.convert import convert
from opml.convert.lower_pad import source_index
from opml.engine import run
from opml.errors import ConversionError
from opml.reference import run_reference


@FEW
@given(mode=st.sampled_from(["reflect", "edge", "wrap"]), nd=st.integers(1, 2), data=st.data())
def test_pad(mode: str, nd: int, data: st.DataObject) -> None:
    spatial = [data.draw(st.integers(2, 6)) for _ in range(nd)]
    shape = [2, data.draw(st.integers(1, 3)), *spatial]
    lim = [(n - 2 if mode == "reflect" else n - 1) for n in spatial]  # (pads < the axis after a crop of 1)
    before = [data.draw(st.integers(-1 if n > 2 else 0, max(m, 0))) for n, m in zip(spatial, lim, strict=True)]
    after = [data.draw(st.integers(0, max(m, 0) + (b >= 0))) for m, b in zip(lim, before, strict=True)]
    pads = [0, 0, *before, 0, 0, *after]
    node = helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)
    m = _model([node], [_f("x", shape)], [_init("p", np.array(pads, np.int64))], opset=19)
    x = _data(data.draw, tuple(shape))
    if _ort(m, [x])[0].size == 0:
        return
    check(m, [x], steps=1.0)


def test_pad_index_vectors() -> None:
    assert source_index(4, 2, 3, "reflect").tolist() == [2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert source_index(3, 2, 2, "edge").tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert source_index(3, 2, 2, "wrap").tolist() == [1, 2, 0, 1, 2, 0, 1]
    assert source_index(5, -1, -2, "edge").tolist() == [1, 2]
    assert source_index(5, -1, 2, "wrap").tolist() == [1, 2, 3, 4, 1, 2]  # crop, then wrap (onnxruntime's order)
    assert source_index(5, 1, -1, "reflect").tolist() == [1, 0, 1, 2, 3]


def test_pad_constant_mode_of_an_activation_is_one_clear_line() -> None:
    m = _model([helper.make_node("Pad", ["x", "p"], ["y"])], [_f("x", [2, 3, 4])],
               [_init("p", np.array([0, 0, 1, 0, 0, 1], np.int64))], opset=19)
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.raises(ConversionError) as e:
        convert(m, [x])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("Pad node producing 'y'"), msg
    assert "'constant'" in msg and "pads attribute" in msg, msg


def _rnn_batch_first(op: str, seq: int, inp: int, hid: int, rng: np.random.Generator) -> object:
    """What torch exports for ``nn.LSTM/GRU(batch_first=True)``: Transpose, the layer, Squeeze, Transpose."""
    ng = 4 if op == "LSTM" else 3
    w = rng.normal(0, 0.4, (1, ng * hid, inp)).astype(np.float32)
    r = rng.normal(0, 0.4, (1, ng * hid, hid)).astype(np.float32)
    b = rng.normal(0, 0.1, (1, 2 * ng * hid)).astype(np.float32)
    extra = {"linear_before_reset": 1} if op == "GRU" else {}
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node(op, ["xt", "w", "r", "b"], ["y", "yh"], hidden_size=hid, **extra),
             helper.make_node("Squeeze", ["y", "ax1"], ["ys"]),
             helper.make_node("Transpose", ["ys"], ["yb"], perm=[1, 0, 2]),
             helper.make_node("Gather", ["yb", "last"], ["out"], axis=1)]
    return _model(nodes, [_f("x", ["N", seq, inp])], [_init("w", w), _init("r", r), _init("b", b),
                                                       _init("ax1", np.array([1], np.int64)),
                                                       _init("last", np.array(seq - 1, np.int64))])


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_recurrent_batch_first_with_a_dynamic_batch(op: str) -> None:
    rng = np.random.default_rng(3)
    m = _rnn_batch_first(op, 5, 4, 6, rng)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    b = check(m, [x], steps=6.0)  # (the int8 error accumulates over the steps)
    assert b.inputs and b.tensors[b.inputs[0]].shape[0] == -1  # the batch stays dynamic


def test_shape_of_a_transposed_view_is_its_onnx_shape() -> None:
    """MultiheadAttention(batch_first=True) reads Shape of x.transpose(0, 1): the ONNX shape, not the physical."""
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("Shape", ["xt"], ["s"]),
             helper.make_node("Gather", ["s", "i0"], ["seq"], axis=0),
             helper.make_node("Cast", ["seq"], ["seqf"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["xt"], ["xb"], perm=[1, 0, 2]),
             helper.make_node("Mul", ["xb", "seqf"], ["y"])]
    m = _model(nodes, [_f("x", ["N", 5, 3])], [_init("i0", np.array(0, np.int64))])
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    check(m, [x])


def test_integer_times_zero_folds() -> None:
    """silero-vad's ``state + Cast(sr * 0)``: the 0-d int64 input multiplied by 0 is a constant, not a node."""
    nodes = [helper.make_node("Mul", ["sr", "zero"], ["z"]),
             helper.make_node("Cast", ["z"], ["zf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "zf"], ["y"])]
    m = _model(nodes, [_f("x", [1, 4]), ("sr", TensorProto.INT64, [])], [_init("zero", np.array(0, np.int64))])
    x = np.random.default_rng(2).standard_normal((1, 4)).astype(np.float32)
    sr = np.array(16000, np.int64)
    b = convert(m, [x, sr])
    assert not any(n.op == "mul" for n in b.nodes)
    feed = [x, sr.reshape(1)]  # (a bundle input is never 0-d: the scalar is a one-element vector there)
    got, ref = run(b, feed), run_reference(b, feed)
    assert got[0].tobytes() == ref[0].tobytes()
    np.testing.assert_allclose(got[0], _ort(m, [x, sr])[0], atol=2 * max(t.scale for t in b.tensors))


def _mask_feed(n: int, s: int, rng: np.random.Generator) -> np.ndarray:
    keep = rng.integers(1, s + 1, n)
    return (np.arange(s)[None, :] < keep[:, None]).astype(np.int64)


def test_per_sample_gather_of_a_flattened_mask() -> None:
    """transformers 5: Flatten(mask, axis 2) read by Gather(axis 0) at ``b * S + j`` (folded from Shape/Range)."""
    s = 6
    i64 = lambda name, v: _init(name, np.array(v, np.int64))  # noqa: E731
    nodes = [helper.make_node("Cast", ["mask"], ["mb"], to=TensorProto.BOOL),
             helper.make_node("Flatten", ["mb"], ["flat"], axis=2),
             helper.make_node("Shape", ["mask"], ["shp"]),
             helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
             helper.make_node("Range", ["zero", "n", "one"], ["bs"]),
             helper.make_node("Mul", ["bs", "S"], ["off"]),
             helper.make_node("Unsqueeze", ["off", "ax1"], ["off2"]),
             helper.make_node("Add", ["off2", "keys"], ["idx"]),
             helper.make_node("Gather", ["flat", "idx"], ["g"], axis=0),
             helper.make_node("Squeeze", ["g", "ax2"], ["gm"]),
             helper.make_node("Where", ["gm", "x", "neg"], ["y"])]
    m = _model(nodes, [("mask", TensorProto.INT64, ["N", s]), _f("x", ["N", s])],
               [i64("zero", 0), i64("one", 1), i64("S", s), i64("ax1", [1]), i64("ax2", [2]),
                i64("keys", np.arange(s)[None, :]), _init("neg", np.array(-2.0, np.float32))])
    rng = np.random.default_rng(4)
    b = check(m, [_mask_feed(4, s, rng), rng.standard_normal((4, s)).astype(np.float32)])
    assert "gather" in [n.op for n in b.nodes]


@pytest.mark.parametrize("const_mask", [False, True])
def test_and_or_not_of_masks(const_mask: bool) -> None:
    s = 5
    rng = np.random.default_rng(5)
    pattern = rng.random((1, s)) < 0.6 if not const_mask else np.ones((1, s), bool)
    nodes = [helper.make_node("Cast", ["m1"], ["b1"], to=TensorProto.BOOL),
             helper.make_node("Cast", ["m2"], ["b2"], to=TensorProto.BOOL),
             helper.make_node("And", ["pat", "b1"], ["a"]),
             helper.make_node("Or", ["a", "b2"], ["o"]),
             helper.make_node("Not", ["o"], ["no"]),
             helper.make_node("Where", ["no", "x", "neg"], ["y"])]
    m = _model(nodes, [("m1", TensorProto.INT64, ["N", s]), ("m2", TensorProto.INT64, ["N", s]), _f("x", ["N", s])],
               [_init("pat", pattern), _init("neg", np.array(-1.0, np.float32))])
    xs = [_mask_feed(4, s, rng), 1 - _mask_feed(4, s, rng), rng.standard_normal((4, s)).astype(np.float32)]
    check(m, xs)


def test_gather_elements_folds_with_a_smaller_index() -> None:
    """BERT's default token_type_ids: GatherElements(Expand(buffer [1, 64], batch), position ids [1, S], axis 1)."""
    nodes = [helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Concat", ["n1", "width"], ["tgt"], axis=0),
             helper.make_node("Expand", ["buf", "tgt"], ["e"]),
             helper.make_node("GatherElements", ["e", "pos"], ["ge"], axis=1),
             helper.make_node("Cast", ["ge"], ["gf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "gf"], ["y"])]
    buf = np.arange(8, dtype=np.int64)[None, :] % 3
    m = _model(nodes, [_f("x", ["N", 4])], [_init("zero", np.array(0, np.int64)), _init("ax0", np.array([0], np.int64)),
                                            _init("width", np.array([8], np.int64)), _init("buf", buf),
                                            _init("pos", np.array([[1, 2, 3, 4]], np.int64))])
    check(m, [np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)])


def test_pow_by_a_small_integer() -> None:
    """GPT-2's gelu_new has ``x ** 3``: a square table, then a product."""
    m = _model([helper.make_node("Pow", ["x", "e"], ["y"])], [_f("x", ["N", 8])],
               [_init("e", np.array(3.0, np.float32))])
    check(m, [np.random.default_rng(7).uniform(-2, 2, (4, 8)).astype(np.float32)], steps=3.0)


def test_one_hot_matmul_is_a_gather() -> None:
    """magika's byte embedding: Cast(Equal(Expand(Reshape(x, [-1, S, 1])), arange(K)), float) @ W."""
    s, k, d = 6, 9, 4
    nodes = [helper.make_node("Reshape", ["x", "shp"], ["r"]),
             helper.make_node("Expand", ["r", "big"], ["e"]),
             helper.make_node("Equal", ["e", "iota"], ["eq"]),
             helper.make_node("Cast", ["eq"], ["oh"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["oh", "w"], ["y"])]
    w = np.random.default_rng(8).standard_normal((k, d)).astype(np.float32)
    m = _model(nodes, [("x", TensorProto.INT32, ["N", s])],
               [_init("shp", np.array([-1, s, 1], np.int64)), _init("big", np.array([1, s, k], np.int64)),
                _init("iota", np.arange(k, dtype=np.int32).reshape(1, 1, k)), _init("w", w)])
    x = np.random.default_rng(9).integers(0, k, (3, s)).astype(np.int32)
    b = check(m, [x])
    assert "gather" in [n.op for n in b.nodes] and not any(n.op in ("linear", "matmul") for n in b.nodes)
