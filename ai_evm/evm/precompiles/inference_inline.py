"""Precompile 0xa0 ``inference_inline``: run a model whose bundle is in the call data.

Input ``uint256 bundleLength ‖ uint256 inputLength ‖ bundle ‖ inputBytes``; returns
``uint256 outputLength ‖ outputBytes``. For tiny models only: the caller pays
:data:`~ai_evm.evm.gas.BUNDLE_WORD_GAS` per word of bundle on top of the 0xa1 formula, charged
before the bundle is decoded. The record names the bundle's model address.
"""

from __future__ import annotations

from eth.abc import ComputationAPI

from opml.bundle import decode_bundle
from opml.commitment import compute_address
from opml.cost import model_cost
from opml.errors import OpmlError

from ..call import batch_and_output_length, execute, parse_inline
from ..errors import MalformedCall
from ..gas import INFERENCE_BASE_GAS, inference_gas, inline_bundle_gas


def inference_inline(computation: ComputationAPI) -> ComputationAPI:
    """Execute one 0xa0 call on ``computation`` (sets its output and inference record)."""
    data = computation.msg.data_as_bytes

    # GAS
    computation.consume_gas(INFERENCE_BASE_GAS, reason="inference_inline: base")
    bundle_bytes, input_bytes = parse_inline(data)
    computation.consume_gas(inline_bundle_gas(len(bundle_bytes)), reason="inference_inline: bundle")
    try:
        bundle = decode_bundle(bundle_bytes)
        compute_address(bundle)
    except OpmlError as e:
        raise MalformedCall(f"inline bundle is not a valid bundle: {e}") from None
    except Exception as e:  # the decoder is strict, but no byte string may crash the node
        raise MalformedCall(f"inline bundle is not a valid bundle: {type(e).__name__}: {e}") from None
    batch, n_out = batch_and_output_length(bundle, input_bytes)
    gas = inference_gas(model_cost(bundle, batch), len(input_bytes), n_out)
    computation.consume_gas(gas - INFERENCE_BASE_GAS, reason="inference_inline: model")

    # OPERATION
    computation.output, record = execute(bundle, input_bytes, gas + inline_bundle_gas(len(bundle_bytes)))
    computation.inference_record = record  # type: ignore[attr-defined]
    return computation
