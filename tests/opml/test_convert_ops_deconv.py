"""ConvTranspose (1-D and 2-D) lowered to zero insertion (lut, reshape, concat, slice) and a stride-1
``conv`` with the flipped kernel (``opml/convert/lower_deconv.py``): random strides, dilations, groups,
pads, output_padding, output_shape and auto_pad drawn by hypothesis; engine == reference, every node
through the fraud VM, onnxruntime float32 within the int8 error of a convolution (``check``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper
from test_convert_ops_core import FEW, _data, _f, _init, _model, _ops, _ort, check

from opml.convert import convert
from opml.errors import ConversionError


@FEW
@given(nd=st.integers(1, 2), kind=st.sampled_from(["pads", "output_padding", "SAME_UPPER", "SAME_LOWER",
                                                   "output_shape"]), data=st.data())
def test_conv_transpose(nd: int, kind: str, data: st.DataObject) -> None:
    group = data.draw(st.sampled_from([1, 1, 2]))
    cin, mg = group * data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    ints = lambda lo, hi: [data.draw(st.integers(lo, hi)) for _ in range(nd)]  # noqa: E731
    k, s, d, spatial = ints(1, 3), ints(1, 3), ints(1, 2), ints(1, 4)
    attrs: dict[str, object] = {"strides": s, "dilations": d, "group": group}
    if kind in ("pads", "output_padding"):
        attrs["pads"] = ints(0, 2) + ints(0, 2)
    if kind == "output_padding":
        attrs["output_padding"] = [data.draw(st.integers(0, max(s[i], d[i]) - 1)) for i in range(nd)]
    if kind.startswith("SAME"):
        attrs["auto_pad"] = kind
    if kind == "output_shape":
        attrs["output_shape"] = [spatial[i] * s[i] - data.draw(st.integers(0, 1)) for i in range(nd)]
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    inits = [_init("w", rng.standard_normal([cin, mg, *k]).astype(np.float32)),
             _init("b", rng.standard_normal(group * mg).astype(np.float32))]
    shape = [2, cin, *spatial]
    m = _model([helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)], [_f("x", shape)], inits)
    x = _data(data.draw, tuple(shape))
    try:
        want = _ort(m, [x])[0]
    except Exception:  # a geometry onnxruntime refuses: nothing to compare
        return
    if want.size == 0:
        return
    b = check(m, [x], steps=2.0, rel=0.03)
    assert "conv" in _ops(b)


def test_decoder_upsampling_block() -> None:
    """A segmentation decoder step: ConvTranspose(k 2, s 2) -> Relu -> Conv(3x3), dynamic batch."""
    rng = np.random.default_rng(5)
    inits = [_init("wt", rng.standard_normal((4, 3, 2, 2)).astype(np.float32)),
             _init("bt", rng.standard_normal(3).astype(np.float32)),
             _init("w", rng.standard_normal((2, 3, 3, 3)).astype(np.float32))]
    nodes = [helper.make_node("ConvTranspose", ["x", "wt", "bt"], ["u"], strides=[2, 2]),
             helper.make_node("Relu", ["u"], ["r"]), helper.make_node("Conv", ["r", "w"], ["y"], pads=[1, 1, 1, 1])]
    m = _model(nodes, [_f("x", ["N", 4, 3, 5])], inits)
    b = check(m, [rng.standard_normal((3, 4, 3, 5)).astype(np.float32)], steps=2.0, rel=0.03)
    assert b.tensors[b.outputs[0]].shape == (-1, 2, 6, 10)


def test_bad_output_padding_is_one_line() -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2], output_padding=[2, 0])
    m = _model([node], [_f("x", [1, 1, 3, 3])], [_init("w", np.ones((1, 1, 2, 2), np.float32))])
    with pytest.raises(ConversionError, match=r"^node 'up' \(ConvTranspose\): output_padding \[2, 0\] must be "
                                              r"smaller than the stride or the dilation$"):
        convert(m, np.zeros((1, 1, 3, 3), np.float32))
