"""opml: model bundles, ONNX conversion with int8 quantization, and the deterministic engine.

The names below are imported on first use (PEP 562), so that importing a numpy-free submodule
(``opml.merkle``, ``opml.ops``, ``opml.bundle``'s descriptor types) does not load the engine and
numpy: the fraud VM's one-step verifier (``fraud_vm.vm.verify_step``) depends on that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_LAZY = {
    **dict.fromkeys(("Bundle", "DType", "Node", "TensorSpec", "decode_bundle", "encode_bundle", "load_bundle"),
                    "bundle"),
    **dict.fromkeys(("run", "run_bytes"), "engine"),
    **dict.fromkeys(("BundleError", "ConversionError", "InferenceInputError", "ModelIntegrityError",
                     "ModelNotAvailable", "OpmlError"), "errors"),
}

__all__ = [
    "Bundle", "DType", "Node", "TensorSpec", "decode_bundle", "encode_bundle", "load_bundle", "run", "run_bytes",
    "BundleError", "ConversionError", "InferenceInputError", "ModelIntegrityError", "ModelNotAvailable", "OpmlError",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
