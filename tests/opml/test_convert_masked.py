"""Attention-mask lowerings (opml.convert.rewrite_masked / lower_masked / wide) on a small synthetic encoder.

The model has the exported patterns of all-MiniLM-L6-v2 (models/export_minilm.py): the additive mask
``(1 - Cast(mask)) * -10000`` reshaped to [N, 1, 1, seq] and added to the scaled scores before
Softmax, and sentence-transformers' mean pooling ``ReduceSum(h * m) / Clip(ReduceSum(m), 1e-9)``.
One channel of the attention output has a large bias, so the residual path takes the wide (int16)
route, and two FFN channels are outliers, so the FFN is split in two branches
(``opml.convert.ffn``). Checked: the engine is close to onnxruntime, equal to the reference interpreter, blind to the
tokens at masked positions, and every node runs through the fraud VM.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fraud_vm.trace import NodeTrace
from opml.bundle import DType, load_bundle
from opml.convert import convert
from opml.convert.lower_masked import RECIP_BITS, recip_table
from opml.engine import get_plan, run
from opml.reference import run_reference

SEQ, HID, HEADS, VOCAB, FFN = 8, 16, 2, 40, 32
DH = HID // HEADS


def _encoder(seed: int = 0, mask_value: float = -10000.0, score_bias: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def w(name: str, *shape: int, scale: float = 0.3) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def c(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def n(op: str, ins: list[str], out: str, **kw: object) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **kw))
        return out

    def lin(x: str, name: str, k: int, m: int, bias: np.ndarray | None = None) -> str:
        y = n("MatMul", [x, w(name + "_w", k, m)], name + "_mm")
        b = c(name + "_b", bias.astype(np.float32)) if bias is not None else w(name + "_b", m, scale=0.1)
        return n("Add", [y, b], name + "_out")

    def ln(x: str, name: str) -> str:
        g = c(name + "_g", (1 + 0.1 * rng.standard_normal(HID)).astype(np.float32))
        return n("LayerNormalization", [x, g, w(name + "_beta", HID, scale=0.05)], name, axis=-1, epsilon=1e-12)

    emb = n("Gather", [w("word_emb", VOCAB, HID, scale=1.0), "input_ids"], "emb")
    h0 = ln(n("Add", [emb, w("pos_emb", SEQ, HID, scale=0.5)], "emb_pos"), "ln0")
    # additive mask, exported style
    mf = n("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inv = n("Sub", [c("one", np.array(1.0, np.float32)), mf], "mask_inv")
    madd = n("Mul", [inv, c("big", np.array(mask_value, np.float32))], "mask_add")
    m4 = n("Reshape", [madd, c("m4_shape", np.array([-1, 1, 1, SEQ], np.int64))], "mask4")
    heads = c("heads_shape", np.array([-1, SEQ, HEADS, DH], np.int64))
    q = n("Transpose", [n("Reshape", [lin(h0, "q", HID, HID), heads], "q4")], "qt", perm=[0, 2, 1, 3])
    k = n("Transpose", [n("Reshape", [lin(h0, "k", HID, HID), heads], "k4")], "kt", perm=[0, 2, 3, 1])
    v = n("Transpose", [n("Reshape", [lin(h0, "v", HID, HID), heads], "v4")], "vt", perm=[0, 2, 1, 3])
    s = n("Mul", [n("MatMul", [q, k], "scores"), c("inv_sqrt", np.array(1 / np.sqrt(DH), np.float32))], "scaled")
    if score_bias:  # scores not straight from a MatMul: the lookup-table path
        s = n("Add", [s, w("rel_bias", SEQ, SEQ, scale=0.5)], "biased")
    p = n("Softmax", [n("Add", [s, m4], "masked")], "probs", axis=-1)
    ctx = n("Transpose", [n("MatMul", [p, v], "ctx4")], "ctxt", perm=[0, 2, 1, 3])
    ctx = n("Reshape", [ctx, c("hid_shape", np.array([-1, SEQ, HID], np.int64))], "ctx")
    bias = rng.standard_normal(HID) * 0.1
    bias[3] = 40.0  # an outlier channel, as in real encoders: the residual path goes wide
    h1 = ln(n("Add", [lin(ctx, "o", HID, HID, bias), h0], "res1"), "ln1")
    fb = rng.standard_normal(FFN) * 0.1
    fb[[5, 17]] = 6.0  # two outlier intermediate channels: the FFN is split in two branches
    f1 = lin(h1, "f1", HID, FFN, fb)
    # the exported erf form of GELU
    erf = n("Erf", [n("Div", [f1, c("sqrt2", np.array(np.sqrt(2.0), np.float32))], "f1_div")], "f1_erf")
    gelu = n("Mul", [n("Mul", [f1, n("Add", [erf, c("one_f", np.array(1.0, np.float32))], "f1_erf1")], "f1_x"),
                     c("half", np.array(0.5, np.float32))], "f1_gelu")
    f = lin(gelu, "f2", FFN, HID)
    h2 = ln(n("Add", [f, h1], "res2"), "ln2")
    # sentence-transformers mean pooling
    mp = n("Cast", [n("Unsqueeze", ["attention_mask", c("ax_last", np.array([-1], np.int64))], "mask_u")], "mask_p",
           to=TensorProto.FLOAT)
    ax1 = c("ax1", np.array([1], np.int64))
    num = n("ReduceSum", [n("Mul", [h2, mp], "hm"), ax1], "num", keepdims=0)
    den = n("Clip", [n("ReduceSum", [mp, ax1], "cnt", keepdims=0), c("eps", np.array(1e-9, np.float32))], "den")
    n("Div", [num, den], "embedding")
    g = helper.make_graph(
        nodes, "masked_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["N", SEQ]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["N", SEQ])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", HID])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(n, SEQ), dtype=np.int64)
    lengths = rng.integers(1, SEQ + 1, size=n)
    lengths[0] = SEQ
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    ids[mask == 0] = 0  # [PAD]
    return {"input_ids": ids, "attention_mask": mask}


def _ort(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.fixture(scope="module")
def converted() -> tuple[onnx.ModelProto, object]:
    m = _encoder()
    return m, convert(m, _inputs(48, seed=1))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_patterns_lowered_with_existing_ops(converted) -> None:
    _, b = converted
    ops = [nd.op for nd in b.nodes]
    assert ops.count("where") == 2  # the softmax input and the 0/1 pooling mask
    assert ops.count("softmax") == 1
    lut = next(nd for nd in b.nodes if nd.op == "lut" and b.tensors[nd.outputs[0]].dtype == DType.INT32)
    assert b.tensors[lut.inputs[1]].array().tolist() == recip_table().tolist()
    assert any(t.dtype == DType.INT16 for t in b.tensors)  # the outlier channel's residual path
    names = {t.name for t in b.tensors}
    assert {"f2_out_n_gelu", "f2_out_o_gelu"} <= names  # the FFN's two branches


def test_close_to_onnxruntime(converted) -> None:
    m, b = converted
    feeds = _inputs(32, seed=2)
    want = _ort(m, feeds)
    got = run(b, [feeds["input_ids"], feeds["attention_mask"]])[0]
    assert got.shape == want.shape == (32, HID)
    cos = _cos(got, want)
    assert cos.min() > 0.995, cos
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()


def test_same_as_reference_interpreter(converted) -> None:
    _, b = converted
    feeds = _inputs(3, seed=3)
    x = [feeds["input_ids"], feeds["attention_mask"]]
    assert [o.tobytes() for o in run(b, x)] == [o.tobytes() for o in run_reference(b, x)]


def test_masked_tokens_do_not_matter(converted) -> None:
    _, b = converted
    feeds = _inputs(16, seed=1)  # rows from the calibration distribution
    other = feeds["input_ids"].copy()
    other[feeds["attention_mask"] == 0] = np.arange(1, VOCAB)[: int((feeds["attention_mask"] == 0).sum())] % VOCAB
    y1 = run(b, [feeds["input_ids"], feeds["attention_mask"]])[0]
    y2 = run(b, [other, feeds["attention_mask"]])[0]
    assert (feeds["attention_mask"] == 0).any()
    assert y1.tobytes() == y2.tobytes()


def test_mean_pooling_count_exact() -> None:
    t = recip_table()
    n = np.arange(1, 256)
    assert t[0] == 0
    # round(2^k / n), ties up: within half a unit of the exact reciprocal
    assert np.all(np.abs(t[1:] * n - (1 << RECIP_BITS)) <= n // 2)
    # |sum| <= 255 n, so sum * recip never saturates int32
    assert int((255 * n * t[1:].astype(np.int64)).max()) < 2**31


def test_non_mask_add_is_left_alone() -> None:
    """A small additive term (not a mask: f(0) = -5) stays an ordinary Add before the Softmax."""
    m = _encoder(mask_value=-5.0)
    b = convert(m, _inputs(16, seed=1))
    assert [nd.op for nd in b.nodes].count("where") == 1  # only the pooling mask


def test_every_node_through_fraud_vm(converted) -> None:
    _, b = converted
    b = load_bundle(b.encoded)
    feeds = _inputs(2, seed=4)
    env = {b.inputs[0]: feeds["input_ids"], b.inputs[1]: feeds["attention_mask"]}
    for j, (node, kernel) in enumerate(zip(b.nodes, get_plan(b).kernels, strict=True)):
        tr = NodeTrace(b, j, dict(env))
        env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
        states = list(tr.interpret())
        final = states[-1]
        assert final.status == 1 and final.step == tr.num_steps, f"node {j} ({node.op})"
        assert [o.tobytes() for o in tr.outputs()] == [np.ascontiguousarray(tr.y).tobytes()], f"node {j} ({node.op})"


def test_scores_through_lookup_table() -> None:
    """Scores that are not a scaled MatMul (here: plus a relative-position bias) are re-expressed by a
    lookup table before the where; still close to onnxruntime and blind to masked tokens."""
    m = _encoder(seed=5, score_bias=True)
    b = convert(m, _inputs(48, seed=1))
    assert any(nd.op == "lut" and "masked_in" in b.tensors[b.nodes[j + 1].outputs[0]].name
               for j, nd in enumerate(b.nodes[:-1]))
    feeds = _inputs(16, seed=1)
    got = run(b, [feeds["input_ids"], feeds["attention_mask"]])[0]
    assert _cos(got, _ort(m, feeds)).min() > 0.995


def test_pad_mask_polarity() -> None:
    """A mask input that marks the padding (1 = pad, ``M = pad * -10000``) selects the other way round."""
    nodes = [
        helper.make_node("Cast", ["pad"], ["pad_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["pad_f", "big"], ["pad_add"]),
        helper.make_node("Reshape", ["pad_add", "shape4"], ["pad4"]),
        helper.make_node("Add", ["scores", "pad4"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
    ]
    inits = [numpy_helper.from_array(np.array(-10000.0, np.float32), "big"),
             numpy_helper.from_array(np.array([-1, 1, 1, SEQ], np.int64), "shape4")]
    g = helper.make_graph(nodes, "pad_mask",
                          [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", HEADS, SEQ, SEQ]),
                           helper.make_tensor_value_info("pad", TensorProto.INT64, ["N", SEQ])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", HEADS, SEQ, SEQ])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(7)
    scores = (rng.standard_normal((24, HEADS, SEQ, SEQ)) * 2).astype(np.float32)
    pad = 1 - _inputs(24, seed=7)["attention_mask"]
    b = convert(m, {"scores": scores, "pad": pad})
    where = next(nd for nd in b.nodes if nd.op == "where")
    assert b.tensors[where.inputs[1]].array().tolist() == [-128]  # pad (nonzero) -> the masked value
    got = run(b, [scores, pad])[0]
    want = _ort(m, {"scores": scores, "pad": pad})
    assert np.abs(got - want).max() < 0.03
    assert got[np.broadcast_to(pad[:, None, None, :] == 1, got.shape)].max() == 0.0


def test_conversion_is_deterministic(converted) -> None:
    m, b = converted
    assert convert(m, _inputs(48, seed=1)).encoded == b.encoded
