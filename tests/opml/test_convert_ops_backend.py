"""The ONNX backend node tests of the float ops lowered in ``lower_select.py`` / ``lower_window.py`` /
``lower_shape.py`` / ``lower_resize.py`` / ``lower_deconv.py`` (Max, Min, Abs, Where, Expand, Split,
GlobalMaxPool, MaxPool, AveragePool, Conv, ConvTranspose, Resize, Upsample).

The cases come from onnx's own case code, run in memory (``onnx.backend.test.case.node.<op>``; the
onnx wheel ships no test data). As in ``test_onnx_node_backend.py``, parameter inputs (shapes, split
sizes, weights) become initializers and the data inputs stay graph inputs and are the calibration
data. Float outputs must be within the int8 error of the lowering (``STEPS`` quantization steps of the
coarsest int8 tensor of the bundle, plus ``REL`` of the output's magnitude for convolution sums), integer
and bool outputs exact; every bundle also runs through the reference interpreter (bytes equal to the
engine's). Cases the engine does not support are in ``UNSUPPORTED`` with the reason, and must fail with
one line naming the node or op; the few whose expected data comes from onnx's reference implementation
where it differs from onnxruntime are compared with onnxruntime (``ONNXRUNTIME_INSTEAD``).
"""

from __future__ import annotations

import importlib

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.backend.test.case.test_case import TestCase

from opml.bundle import DType
from opml.convert import convert
from opml.engine import run
from opml.errors import ConversionError
from opml.reference import run_reference

FAMILIES = ("max", "min", "abs", "where", "expand", "split", "globalmaxpool", "maxpool", "averagepool", "conv",
            "convtranspose", "resize", "upsample")
# op -> positions of the inputs that stay graph inputs (None: all)
DATA_INPUTS: dict[str, set[int] | None] = {"Expand": {0}, "Split": {0}, "Conv": {0}, "ConvTranspose": {0},
                                           "Resize": {0}, "Upsample": {0}}
STEPS, REL = 1.5, 0.02

_INT = "integer tensors wider than 8 bits: Max/Min are lowered on float (quantized), int8 and uint8 tensors"
UNSUPPORTED: dict[str, str] = {
    **{f"test_{op}_{t}": _INT for op in ("max", "min")
       for t in ("int16", "int32", "int64", "uint16", "uint32", "uint64")},
    "test_max_float16": "float16 tensors (bundles hold int8/uint8/int16/int32/int64/float32/bool)",
    "test_min_float16": "float16 tensors",
    "test_max_float64": "float64 tensors", "test_min_float64": "float64 tensors",
    "test_split_zero_size_splits_opset13": "zero-sized (empty) tensors",
    "test_split_zero_size_splits_opset18": "zero-sized (empty) tensors",
    "test_maxpool_3d_default": "3-D pooling (only 1-D and 2-D windows)",
    "test_maxpool_3d_dilations": "3-D pooling",
    "test_maxpool_3d_dilations_use_ref_impl": "3-D pooling",
    "test_maxpool_3d_dilations_use_ref_impl_large": "3-D pooling",
    "test_averagepool_3d_default": "3-D pooling",
    "test_averagepool_3d_dilations_small": "3-D pooling",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True": "3-D pooling",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False": "3-D pooling",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True": "3-D pooling",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False": "3-D pooling",
    "test_averagepool_2d_dilations": "dilated AveragePool",
    "test_maxpool_with_argmax_2d_precomputed_pads": "the Indices output of MaxPool",
    "test_maxpool_with_argmax_2d_precomputed_strides": "the Indices output of MaxPool (storage_order)",
    "test_convtranspose_3d": "3-D transposed convolution (only 1-D and 2-D)",
    "test_resize_downsample_scales_cubic_antialias": "antialiased downsampling",
    "test_resize_downsample_scales_linear_antialias": "antialiased downsampling",
    "test_resize_downsample_sizes_cubic_antialias": "antialiased downsampling",
    "test_resize_downsample_sizes_linear_antialias": "antialiased downsampling",
    "test_resize_downsample_sizes_nearest_not_larger": "keep_aspect_ratio_policy other than stretch",
    "test_resize_downsample_sizes_nearest_not_smaller": "keep_aspect_ratio_policy other than stretch",
    "test_resize_upsample_sizes_nearest_not_larger": "keep_aspect_ratio_policy other than stretch",
    "test_resize_upsample_sizes_nearest_not_smaller": "keep_aspect_ratio_policy other than stretch",
    "test_resize_tf_crop_and_resize": "tf_crop_and_resize",
    "test_resize_tf_crop_and_resize_axes_2_3": "tf_crop_and_resize",
    "test_resize_tf_crop_and_resize_axes_3_2": "tf_crop_and_resize",
    "test_resize_tf_crop_and_resize_extrapolation_value": "tf_crop_and_resize",
}
# cases whose expected data (onnx's reference implementation) differs from onnxruntime, which implements the
# ONNX formula (align_corners: x * (in - 1) / (out - 1)); the engine follows onnxruntime: compared with it
ONNXRUNTIME_INSTEAD: dict[str, str] = {
    "test_resize_downsample_scales_linear_align_corners": "align_corners with scales",
    "test_resize_downsample_scales_cubic_align_corners": "align_corners with scales",
}


def _cases() -> dict[str, TestCase]:
    import onnx.backend.test.case.node as node_cases

    for fam in FAMILIES:
        importlib.import_module(f"onnx.backend.test.case.node.{fam}")
    out = {}
    for c in node_cases._NodeTestCases:
        if c.model is not None and c.model.graph.node and c.model.graph.node[0].op_type.lower() in FAMILIES:
            out[c.name] = c
    return out


CASES = _cases()


def _static(case: TestCase) -> tuple[onnx.ModelProto, list[np.ndarray], list[np.ndarray]]:
    model = case.model
    (node,) = model.graph.node
    inputs, outputs = case.data_sets[0]
    data = DATA_INPUTS.get(node.op_type)
    pos = {name: i for i, name in enumerate(node.input) if name}
    keep, inits, arrays = [], [], []
    for vi, v in zip(model.graph.input, inputs, strict=True):
        a = numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v)
        if data is None or pos[vi.name] in data:
            keep.append(vi)
            arrays.append(a)
        else:
            inits.append(numpy_helper.from_array(a, vi.name))
    g = helper.make_graph(list(model.graph.node), model.graph.name, keep, list(model.graph.output), inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return m, arrays, [np.asarray(o) for o in outputs]


@pytest.mark.parametrize("name", sorted(CASES))
def test_backend_case(name: str) -> None:
    m, arrays, outputs = _static(CASES[name])
    (node,) = m.graph.node
    if name in UNSUPPORTED:
        with pytest.raises(ConversionError) as e:
            convert(m, arrays)
        msg = str(e.value)
        culprits = [node.op_type] + ([repr(node.name)] if node.name else []) + [repr(i.name) for i in m.graph.input]
        assert "\n" not in msg and any(c in msg for c in culprits), msg
        return
    bundle = convert(m, arrays)
    got = run(bundle, arrays)
    ref = run_reference(bundle, arrays)
    scale = max((t.scale for t in bundle.tensors if t.dtype in (DType.INT8, DType.UINT8)), default=0.0)
    if name in ONNXRUNTIME_INSTEAD:
        import onnxruntime as ort

        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs = sess.run(None, {i.name: a for i, a in zip(m.graph.input, arrays, strict=True)})
    assert len(got) == len(outputs)
    for g, r, want in zip(got, ref, outputs, strict=True):
        assert g.tobytes() == r.tobytes() and g.dtype == r.dtype, "engine != reference"
        assert g.shape == want.shape, f"shape {g.shape}, expected {want.shape}"
        assert g.dtype == want.dtype, f"dtype {g.dtype}, expected {want.dtype}"
        if want.dtype.kind == "f":
            err = float(np.abs(g.astype(np.float64) - want).max(initial=0))
            rel = REL if node.op_type in ("Conv", "ConvTranspose", "Resize", "Upsample") else 0.0
            bound = STEPS * scale + rel * float(np.abs(want).max(initial=0))
            assert err <= bound, f"max error {err} > {bound}"
        else:
            assert g.tobytes() == want.tobytes()


def test_unsupported_list_is_not_stale() -> None:
    assert set(UNSUPPORTED) <= set(CASES), set(UNSUPPORTED) - set(CASES)
    assert set(ONNXRUNTIME_INSTEAD) <= set(CASES) - set(UNSUPPORTED)
    assert len(CASES) - len(UNSUPPORTED) >= 50, len(CASES) - len(UNSUPPORTED)
