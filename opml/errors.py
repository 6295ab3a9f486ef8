"""Named errors of the opml package.

Every error says what was wrong and, where it helps, what to do about it. Callers that must never
crash (the precompile, the RPC layer) catch :class:`OpmlError` and nothing broader.
"""

from __future__ import annotations


class OpmlError(Exception):
    """Base class of every error raised by opml."""


class BundleError(OpmlError):
    """A bundle's bytes are malformed, truncated, non-canonical or of an unknown version."""


class ConversionError(OpmlError):
    """An ONNX model cannot be converted (unsupported op or attribute, bad calibration data)."""


class InferenceInputError(OpmlError):
    """Inputs given to the engine do not match the model's declared inputs."""


class ShapeMismatchError(OpmlError):
    """A node produced an output whose shape or dtype differs from its declaration.

    The decoder verifies declared shapes (``opml.shapes``), so this is a guard: it means an engine
    bug or a shape rule that disagrees with a kernel, never a result.
    """


class DeterminismError(OpmlError):
    """The host's float32 arithmetic does not behave as the determinism rules require."""


class NativeIsaError(OpmlError):
    """``OPML_NATIVE_ISA`` (or an explicit ``isa=`` argument) names an instruction set that opml's native
    kernels do not have, or that this CPU cannot run."""


class ModelIntegrityError(OpmlError):
    """Bytes obtained for a model address do not hash to that address."""

    def __init__(self, address: bytes | str, detail: str) -> None:
        addr = address if isinstance(address, str) else "0x" + address.hex()
        super().__init__(f"model {addr}: {detail}")
        self.address = addr


class ModelNotAvailable(OpmlError):
    """No configured model store holds the requested model address."""
