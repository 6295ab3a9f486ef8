"""Precompile 0xa1 ``inference``: run a model named by its 32-byte model address.

Input ``bytes32 modelAddress ‖ uint256 outputSize ‖ inputBytes``; returns
``uint256 outputLength ‖ outputBytes`` (docs/precompile.md). Any failure is an exceptional halt
that consumes the gas given to the call; nothing raises out of the VM.
"""

from __future__ import annotations

from eth.abc import ComputationAPI

from ..call import batch_and_output_length, check_output_size, execute, parse_by_address
from ..errors import InferenceFailed
from ..gas import INFERENCE_BASE_GAS, inference_gas
from ..models import ModelResolver


def resolver_of(computation: ComputationAPI) -> ModelResolver:
    """The model resolver the computation class was configured with."""
    resolver = getattr(computation, "model_resolver", None)
    if not isinstance(resolver, ModelResolver):
        raise InferenceFailed("this node has no model store configured")
    return resolver


def inference(computation: ComputationAPI) -> ComputationAPI:
    """Execute one 0xa1 call on ``computation`` (sets its output and inference record)."""
    data = computation.msg.data_as_bytes

    # GAS
    computation.consume_gas(INFERENCE_BASE_GAS, reason="inference: base")
    model, output_size, input_bytes = parse_by_address(data)
    resolver = resolver_of(computation)
    # Local models only: a model still to be fetched aborts the execution (ModelFetchRequired),
    # it never fails the call nor waits for a download here (docs/node.md, "Models").
    bundle = resolver.resolve(model, origin=bytes(computation.transaction_context.origin),
                              l1_origin=bytes(computation.state.execution_context.mix_hash))
    batch, n_out = batch_and_output_length(bundle, input_bytes)
    check_output_size(bundle, output_size, n_out)
    gas = inference_gas(resolver.cost(bundle, batch), len(input_bytes), n_out)
    computation.consume_gas(gas - INFERENCE_BASE_GAS, reason="inference: model")

    # OPERATION
    computation.output, record = execute(bundle, input_bytes, gas)
    computation.inference_record = record  # type: ignore[attr-defined]
    return computation
