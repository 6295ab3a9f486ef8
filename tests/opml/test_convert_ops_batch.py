"""Batch handling in conversion: constants computed from the batch size, and batch dimensions written
as -1 by older exporters.

A constant folded from ``Shape(activation)`` has the calibration batch as its leading axis. When its rows
are equal (ViT's class token ``Expand``-ed to the batch, BERT's default ``token_type_ids`` from
``Expand(buffer, Shape(input_ids))``, a mask built from ``ConstantOfShape``) the converter keeps one row,
which broadcasts over any batch (``Context.batch_free``); a Concat with a batched activation repeats it
over the run-time batch with a ``slice`` + ``add`` (a_mult 0). Each model here is converted at batch 4
and run at batch 1 and 3 against onnxruntime, with engine == reference and every node through the
fraud VM (``check`` of ``test_convert_ops_core``).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_convert_ops_core import _f, _init, _model, _ort, check, through_vm

from opml.convert import convert
from opml.engine import run
from opml.errors import ConversionError
from opml.reference import run_reference

D = 4
RNG = np.random.default_rng(0)


def _at_other_batches(m, x: np.ndarray, steps: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    """Converted at batch 4 (calibration ``x``), run on rows of ``x`` at batch 1 and 3."""
    bundle = check(m, [x], steps=steps)
    scale = max(t.scale for t in bundle.tensors if t.scale)
    for rows in (x[1:2], x[:3]):
        got, want = run(bundle, [rows])[0], _ort(m, [rows])[0]
        assert got.shape == want.shape
        assert got.tobytes() == run_reference(bundle, [rows])[0].tobytes()
        assert float(np.abs(got - want).max()) <= steps * scale
        through_vm(bundle, [rows])


def _expand_to_batch(src: str, out: str, tail: list[int]) -> tuple[list, list]:
    """torch's ``t.expand(B, ...)``: Shape -> Gather(0) -> Unsqueeze -> Concat(tail) -> Expand."""
    nodes = [helper.make_node("Shape", [src], [out + "_s"]),
             helper.make_node("Gather", [out + "_s", "zero"], [out + "_n"], axis=0),
             helper.make_node("Unsqueeze", [out + "_n", "ax0"], [out + "_n1"]),
             helper.make_node("Concat", [out + "_n1", out + "_tail"], [out + "_tgt"], axis=0),
             helper.make_node("Expand", ["cls", out + "_tgt"], [out])]
    inits = [_init("zero", np.array(0, np.int64)), _init("ax0", np.array([0], np.int64)),
             _init(out + "_tail", np.array(tail, np.int64))]
    return nodes, inits


def test_vit_class_token_expanded_to_the_batch_and_concatenated() -> None:
    nodes, inits = _expand_to_batch("x", "clsb", [1, D])
    nodes += [helper.make_node("Concat", ["clsb", "x"], ["cat"], axis=1),
              helper.make_node("Add", ["cat", "pos"], ["y"])]
    inits += [_init("cls", RNG.standard_normal((1, 1, D)).astype(np.float32)),
              _init("pos", RNG.standard_normal((1, 4, D)).astype(np.float32))]
    _at_other_batches(_model(nodes, [_f("x", ["N", 3, D])], inits), RNG.standard_normal((4, 3, D)).astype(np.float32))


def test_bert_default_token_type_ids_from_the_input_shape() -> None:
    nodes = [helper.make_node("Shape", ["ids"], ["s"]), helper.make_node("Expand", ["buf", "s"], ["tt"]),
             helper.make_node("Gather", ["temb", "tt"], ["te"], axis=0),
             helper.make_node("Gather", ["wemb", "ids"], ["we"], axis=0), helper.make_node("Add", ["we", "te"], ["y"])]
    inits = [_init("buf", np.zeros((1, 5), np.int64)), _init("temb", RNG.standard_normal((2, D)).astype(np.float32)),
             _init("wemb", RNG.standard_normal((10, D)).astype(np.float32))]
    m = _model(nodes, [("ids", TensorProto.INT64, ["N", 5])], inits)
    ids = RNG.integers(0, 10, (4, 5))
    bundle = check(m, [ids])
    for rows in (ids[2:3], ids[:3]):
        got, want = run(bundle, [rows])[0], _ort(m, [rows])[0]
        assert got.shape == want.shape and float(np.abs(got - want).max()) <= 2 * max(t.scale for t in bundle.tensors)


@pytest.mark.parametrize("op", ["Mul", "Max", "Where"])
def test_batch_sized_constant_mask_in_elementwise_ops(op: str) -> None:
    """A [N, S, 1] constant from ConstantOfShape(Shape(x)) with equal rows, used by Mul / Max / Where."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "st", "en"], ["ns"]),
             helper.make_node("Concat", ["ns", "one"], ["tgt"], axis=0),
             helper.make_node("ConstantOfShape", ["tgt"], ["m"],
                              value=numpy_helper.from_array(np.array([0.5], np.float32)))]
    inits = [_init("st", np.array([0], np.int64)), _init("en", np.array([2], np.int64)),
             _init("one", np.array([1], np.int64))]
    if op == "Where":
        nodes += [helper.make_node("Cast", ["m"], ["mb"], to=TensorProto.BOOL),
                  helper.make_node("Where", ["mb", "x", "zero_f"], ["y"])]
        inits.append(_init("zero_f", np.float32(0)))
    else:
        nodes.append(helper.make_node(op, ["x", "m"], ["y"]))
    _at_other_batches(_model(nodes, [_f("x", ["N", 3, D])], inits), RNG.standard_normal((4, 3, D)).astype(np.float32))


def test_batch_constant_with_different_rows_is_refused_in_one_line() -> None:
    """Range over the batch size gives different rows: it cannot follow the batch (one clear line)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Range", ["zero", "n", "onei"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["rf", "ax1"], ["rc"]),
             helper.make_node("Add", ["x", "rc"], ["y"], name="add_row_index")]
    inits = [_init("zero", np.array(0, np.int64)), _init("onei", np.array(1, np.int64)),
             _init("ax1", np.array([1], np.int64))]
    m = _model(nodes, [_f("x", ["N", 3])], inits)
    with pytest.raises(ConversionError, match=r"^node 'add_row_index' \(Add\): a constant computed from the batch "
                                              r"size differs between batch rows") as e:
        convert(m, RNG.standard_normal((4, 3)).astype(np.float32))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("dim", [-1, "N"])
def test_batch_written_as_minus_one_is_dynamic(dim: object) -> None:
    m = _model([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Mul", ["h", "k"], ["y"])],
               [_f("x", [dim, 3])], [_init("k", np.linspace(-1, 1, 3, dtype=np.float32))])
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    bundle = convert(m, [x])
    assert bundle.tensors[bundle.inputs[0]].shape[0] < 0  # the batch is dynamic
    assert run(bundle, [x[:1]])[0].shape == (1, 3)
    _at_other_batches(m, x)


# ---------------------------------------------------------------------------------------------
# transposes that move the batch, held back until it leads again (opml/convert/layout.py)


def _timm_attention(unbind: bool, n: int = 5, heads: int = 2, hd: int = 3):  # type: ignore[no-untyped-def]
    """timm's ViT/Swin attention: qkv.reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4); q, k, v = qkv[0..2] (or
    unbind(0): Split + Squeeze); softmax(q k^T / sqrt d) v; transpose(1, 2).reshape(B, N, E); proj."""
    e = heads * hd
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("MatMul", ["x", "wqkv"], ["qkv0"]),
             helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
             helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
             helper.make_node("Concat", ["b1", "tail"], ["tgt"], axis=0),
             helper.make_node("Reshape", ["qkv0", "tgt"], ["qkv1"]),
             helper.make_node("Transpose", ["qkv1"], ["qkv"], perm=[2, 0, 3, 1, 4])]
    if unbind:
        nodes += [helper.make_node("Split", ["qkv", "ones3"], ["q0", "k0", "v0"], axis=0)]
        nodes += [helper.make_node("Squeeze", [f"{t}0", "ax0"], [t]) for t in "qkv"]
    else:
        nodes += [helper.make_node("Gather", ["qkv", f"i{j}"], [t], axis=0) for j, t in enumerate("qkv")]
    nodes += [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
              helper.make_node("MatMul", ["q", "kt"], ["sc"]), helper.make_node("Mul", ["sc", "scale"], ["sc2"]),
              helper.make_node("Softmax", ["sc2"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["o"]),
              helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ot", "tgt2"], ["y0"]), helper.make_node("MatMul", ["y0", "wo"], ["y"])]
    inits = [_init("wqkv", (rng.standard_normal((e, 3 * e)) * 0.4).astype(np.float32)),
             _init("i0", np.array(0, np.int64)), _init("i1", np.array(1, np.int64)), _init("i2", np.array(2, np.int64)),
             _init("ax0", np.array([0], np.int64)), _init("tail", np.array([n, 3, heads, hd], np.int64)),
             _init("ones3", np.array([1, 1, 1], np.int64)), _init("scale", np.float32(hd ** -0.5)),
             _init("tgt2", np.array([0, 0, e], np.int64)),
             _init("wo", (rng.standard_normal((e, e)) * 0.4).astype(np.float32))]
    return _model(nodes, [_f("x", ["B", n, e])], inits), (4, n, e)


@pytest.mark.parametrize("unbind", [False, True])
def test_timm_attention_permute_moving_the_batch_keeps_a_dynamic_batch(unbind: bool) -> None:
    m, shape = _timm_attention(unbind)
    _at_other_batches(m, RNG.standard_normal(shape).astype(np.float32), steps=4.0)


def test_a_batch_moving_transpose_read_by_another_op_is_refused_in_one_line() -> None:
    m = _model([helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
                helper.make_node("Relu", ["t"], ["y"], name="act")], [_f("x", ["N", 3, 4])])
    with pytest.raises(ConversionError, match=r"^node 'act' \(Relu\): input 't' is a transpose that moves the batch "
                                              r"dimension, which this op cannot read; the batch must stay the first "
                                              r"axis: convert with a fixed batch") as e:
        convert(m, RNG.standard_normal((4, 3, 4)).astype(np.float32))
    assert "\n" not in str(e.value)
    m = _model([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2])], [_f("x", ["N", 3, 4])])
    with pytest.raises(ConversionError, match="graph output 'y' is a transpose that moves the batch dimension"):
        convert(m, RNG.standard_normal((4, 3, 4)).astype(np.float32))
    # with a fixed batch the same model converts (the batch is an ordinary axis)
    m = _model([helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]), helper.make_node("Relu", ["t"], ["y"])],
               [_f("x", [4, 3, 4])])
    check(m, [RNG.standard_normal((4, 3, 4)).astype(np.float32)])
