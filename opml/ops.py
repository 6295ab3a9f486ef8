"""The engine's operator set: the primitive quantized ops a bundle's graph is made of.

ONNX models are lowered to these at conversion (``opml.convert``); complex layers are compositions
of them. Each op has a fixed code (committed in node descriptions, so never renumber one), an input
arity and an ordered list of integer attributes. ``docs/bundle.md`` gives the semantics of each;
``opml.reference`` is their executable specification.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpSchema:
    """Name, code, input arity and attribute names of one primitive op."""

    name: str
    code: int
    min_inputs: int
    max_inputs: int
    attrs: tuple[str, ...]


_SCHEMAS = [
    OpSchema("quantize", 1, 1, 1, ()),
    OpSchema("dequantize", 2, 1, 1, ()),
    OpSchema("linear", 3, 3, 5, ("qmin", "qmax")),
    OpSchema("conv", 4, 3, 5, ("pads", "strides", "dilations", "group", "qmin", "qmax")),
    OpSchema("matmul", 5, 2, 2, ("mult", "shift", "qmin", "qmax")),
    OpSchema("add", 6, 2, 2, ("a_mult", "b_mult", "shift", "qmin", "qmax")),
    OpSchema("mul", 7, 2, 2, ("mult", "shift", "qmin", "qmax")),
    OpSchema("lut", 8, 2, 2, ()),
    OpSchema("softmax", 9, 2, 2, ("axis",)),
    OpSchema("layernorm", 10, 3, 3, ("eps", "frac_bits", "mult", "shift", "qmin", "qmax")),
    OpSchema("maxpool", 11, 1, 1, ("kernel", "strides", "pads", "dilations")),
    OpSchema("avgpool", 12, 1, 1, ("kernel", "strides", "pads", "count_include_pad", "mult", "shift")),
    OpSchema("reduce", 13, 1, 1, ("mode", "axes", "keepdims", "mult", "shift")),
    OpSchema("reshape", 14, 1, 1, ()),
    OpSchema("transpose", 15, 1, 1, ("perm",)),
    OpSchema("concat", 16, 1, 64, ("axis",)),
    OpSchema("slice", 17, 1, 1, ("starts", "ends", "steps")),
    OpSchema("gather", 18, 2, 2, ("axis",)),
    OpSchema("argmax", 19, 1, 1, ("axis", "keepdims", "select_last_index")),
    OpSchema("cast", 20, 1, 1, ()),
    OpSchema("flip_sign_bit", 21, 1, 1, ()),
    OpSchema("where", 22, 3, 3, ()),
]

BY_NAME: dict[str, OpSchema] = {s.name: s for s in _SCHEMAS}
BY_CODE: dict[int, OpSchema] = {s.code: s for s in _SCHEMAS}

# reduce modes
REDUCE_SUM, REDUCE_MEAN, REDUCE_L2, REDUCE_MAX = 0, 1, 2, 3
