"""opml: model bundles, ONNX conversion with int8 quantization, and the deterministic engine."""

from __future__ import annotations

from .bundle import Bundle, DType, Node, TensorSpec, decode_bundle, encode_bundle, load_bundle
from .engine import run, run_bytes
from .errors import (
    BundleError,
    ConversionError,
    InferenceInputError,
    ModelIntegrityError,
    ModelNotAvailable,
    OpmlError,
)

__all__ = [
    "Bundle", "DType", "Node", "TensorSpec", "decode_bundle", "encode_bundle", "load_bundle", "run", "run_bytes",
    "BundleError", "ConversionError", "InferenceInputError", "ModelIntegrityError", "ModelNotAvailable", "OpmlError",
]
