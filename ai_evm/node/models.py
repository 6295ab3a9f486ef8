"""``aievm_getModel``: what a developer needs to call a model, read through the node's resolver."""

from __future__ import annotations

from typing import Any

import numpy as np

from ai_evm.evm import ModelResolver
from ai_evm.evm.gas import inference_gas
from opml.bundle import Bundle, TensorSpec

from .errors import ServerError


def _nbytes(spec: TensorSpec) -> int:
    return int(np.prod(spec.concrete_shape(1), dtype=np.int64)) * np.dtype(spec.dtype.np).itemsize


def _spec(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "dtype": spec.dtype.name.lower(),
        "shape": list(spec.shape),
        "bytesPerSample": _nbytes(spec),
    }


def model_info(bundle: Bundle, resolver: ModelResolver) -> dict[str, Any]:
    """JSON description of a model: name, tensors, size, cost and gas of one sample."""
    cost = resolver.cost(bundle, 1)
    in_bytes = sum(_nbytes(s) for s in bundle.input_specs())
    out_bytes = sum(_nbytes(s) for s in bundle.output_specs())
    return {
        "address": bundle.address_hex,
        "name": bundle.metadata.get("name") or bundle.metadata.get("source", ""),
        "metadata": dict(bundle.metadata),
        "inputs": [_spec(s) for s in bundle.input_specs()],
        "outputs": [_spec(s) for s in bundle.output_specs()],
        "size": hex(len(bundle.encoded)),
        "nodes": len(bundle.nodes),
        "cost": {"macs": hex(cost.macs), "elementwise": hex(cost.elementwise), "weightBytes": hex(cost.weight_bytes)},
        "inputBytes": hex(in_bytes),
        "outputBytes": hex(out_bytes),
        "gasPerSample": hex(inference_gas(cost, in_bytes, out_bytes)),
    }


def get_model(resolver: ModelResolver, address: bytes) -> dict[str, Any]:
    """Resolve ``address`` and describe it; -32000 with the store's reason if unavailable."""
    try:
        bundle = resolver.resolve(address)
    except Exception as e:
        raise ServerError(f"model 0x{address.hex()} not available: {e}") from None
    return model_info(bundle, resolver)
