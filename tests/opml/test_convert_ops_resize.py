"""Resize / Upsample lowered to ``gather`` (nearest) and ``linear`` (linear, cubic) per axis
(``opml/convert/lower_resize.py``), against onnxruntime float32; engine == reference and the fraud VM
on every node (``check`` of ``test_convert_ops_core``). Modes, coordinate transformations, nearest
rounding modes, scales or sizes (with and without ``axes``), up- and downsampling, 1-D and 2-D.
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

MODES = ["nearest", "linear", "cubic"]
TRANSFORMS = ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "half_pixel_symmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


@FEW
@given(mode=st.sampled_from(MODES), ct=st.sampled_from(TRANSFORMS), nearest=st.sampled_from(NEAREST),
       nd=st.integers(1, 2), by_sizes=st.booleans(), data=st.data())
def test_resize(mode: str, ct: str, nearest: str, nd: int, by_sizes: bool, data: st.DataObject) -> None:
    spatial = [data.draw(st.integers(2, 6)) for _ in range(nd)]
    shape = [2, data.draw(st.integers(1, 3)), *spatial]
    attrs = {"mode": mode, "coordinate_transformation_mode": ct}
    if mode == "nearest":
        attrs["nearest_mode"] = nearest
    if mode != "nearest" and data.draw(st.booleans()):
        attrs["antialias"] = 1
    if by_sizes:
        sizes = [2, shape[1]] + [data.draw(st.integers(1, 13)) for _ in range(nd)]
        node = helper.make_node("Resize", ["x", "", "", "z"], ["y"], **attrs)
        inits = [_init("z", np.array(sizes, np.int64))]
    else:
        scales = [1.0, 1.0] + [data.draw(st.sampled_from([0.5, 0.75, 1.5, 2.0, 3.0])) for _ in range(nd)]
        node = helper.make_node("Resize", ["x", "", "s"], ["y"], **attrs)
        inits = [_init("s", np.array(scales, np.float32))]
    m = _model([node], [_f("x", shape)], inits, opset=19)
    x = _data(data.draw, tuple(shape))
    try:
        want = _ort(m, [x])[0]
    except Exception:  # a combination onnxruntime refuses: nothing to compare
        return
    if want.size == 0:
        return
    out_sp, in_sp = want.shape[2:], x.shape[2:]
    if attrs.get("antialias") and any(o < i for o, i in zip(out_sp, in_sp, strict=True)):
        with pytest.raises(ConversionError, match="antialiased downsampling is not supported"):
            convert(m, [x])
        return
    b = check(m, [x], steps=2.5)
    ops = set(_ops(b))
    if mode == "nearest":
        assert ops <= {"quantize", "gather", "dequantize"}, ops


def test_fpn_nearest_upsampling_by_axes_is_two_gathers() -> None:
    """An FPN top-down step: Resize(nearest, scales 2 on axes [2, 3]) then Add with the lateral map."""
    node = helper.make_node("Resize", ["x", "", "s"], ["u"], mode="nearest", axes=[2, 3])
    m = _model([node, helper.make_node("Add", ["u", "lat"], ["y"])], [_f("x", [2, 4, 3, 5]), _f("lat", [2, 4, 6, 10])],
               [_init("s", np.array([2.0, 2.0], np.float32))], opset=19)
    rng = np.random.default_rng(0)
    b = check(m, [rng.standard_normal((2, 4, 3, 5)).astype(np.float32),
                  rng.standard_normal((2, 4, 6, 10)).astype(np.float32)], steps=2.0)
    assert _ops(b).count("gather") == 2


@pytest.mark.parametrize("scale", [2.0, 3.0, 1.5])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_opset9_and_resize_opset10(mode: str, scale: float) -> None:
    """The legacy forms: asymmetric coordinates, nearest truncates (onnxruntime's rule)."""
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 4)).astype(np.float32)
    s = _init("s", np.array([1, 1, scale, scale], np.float32))
    check(_model([helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode)], [_f("x", [1, 2, 3, 4])], [s], opset=9),
          [x], steps=2.0)
    check(_model([helper.make_node("Resize", ["x", "s"], ["y"], mode=mode)], [_f("x", [1, 2, 3, 4])], [s], opset=10),
          [x], steps=2.0)


def test_resize_refusals_are_one_line() -> None:
    node = helper.make_node("Resize", ["x", "r", "s"], ["y"], name="crop", mode="linear",
                            coordinate_transformation_mode="tf_crop_and_resize")
    m = _model([node], [_f("x", [1, 1, 4, 4])], [_init("r", np.array([0, 0, 0, 0, 1, 1, 1, 1], np.float32)),
                                                 _init("s", np.array([1, 1, 2, 2], np.float32))], opset=19)
    with pytest.raises(ConversionError, match=r"^node 'crop' \(Resize\): coordinate_transformation_mode="
                                              r"tf_crop_and_resize is not supported"):
        convert(m, np.zeros((1, 1, 4, 4), np.float32))
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="batch", mode="nearest")
    m = _model([node], [_f("x", [2, 1, 4])], [_init("s", np.array([2, 1, 1], np.float32))], opset=19)
    with pytest.raises(ConversionError, match=r"^node 'batch' \(Resize\): resizing the batch axis"):
        convert(m, np.zeros((2, 1, 4), np.float32))
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="dyn", mode="nearest")
    m = _model([helper.make_node("Shape", ["x"], ["sh"]), helper.make_node("Cast", ["sh"], ["s"], to=1), node],
               [_f("x", [2, 1, 4])], opset=19)
    m.graph.node[2].input[2] = "s"
    with pytest.raises(ConversionError, match=r"^node 'dyn' \(Resize\): resizing the batch axis"):
        convert(m, np.zeros((2, 1, 4), np.float32))
