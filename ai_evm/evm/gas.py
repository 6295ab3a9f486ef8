"""The inference gas schedule: a pure function of the model header and the call's sizes.

Every constant of the schedule lives here. The formula (docs/precompile.md derives it) is::

    gas = INFERENCE_BASE_GAS
        + INPUT_WORD_GAS  * ceil(input_bytes / 32)
        + OUTPUT_WORD_GAS * ceil(output_bytes / 32)
        + ceil(macs * MAC_GAS_MILLI / 1000)
        + ceil(elementwise * ELEMENTWISE_GAS_MILLI / 1000)
        + ceil(weight_bytes * WEIGHT_BYTE_GAS_MILLI / 1000)

``macs``, ``elementwise`` and ``weight_bytes`` come from :func:`opml.cost.model_cost` for the
batch size implied by the input length. The inline precompile (0xa0) adds
``BUNDLE_WORD_GAS`` per 32-byte word of bundle it must decode, hash and prepare.

The precompile charges :data:`INFERENCE_BASE_GAS` before it looks the model up (so a lookup is
never free) and the rest before any inference work; the total always equals the formula.
The constants are calibrated by ``scripts/bench/gas_calibration.py`` so that inference gas per
second on this node lies within 0.5x-2x of ordinary EVM execution's gas per second.
"""

from __future__ import annotations

from opml.cost import ModelCost

#: Flat charge of every call: call-data parsing, the model-store lookup, plan lookup, encoding.
INFERENCE_BASE_GAS = 20_000
#: Per 32-byte word of model input (decoding into arrays, hashing for the inference record).
INPUT_WORD_GAS = 12
#: Per 32-byte word of model output (encoding, copying back to the caller, hashing).
OUTPUT_WORD_GAS = 12
#: Per thousand multiply-accumulates of linear/conv/matmul layers.
MAC_GAS_MILLI = 40
#: Per thousand elementwise element-operations (activations, requantization, softmax, ...).
ELEMENTWISE_GAS_MILLI = 400
#: Per thousand bytes of constant tensors (weights, biases, tables) the inference reads.
WEIGHT_BYTE_GAS_MILLI = 10
#: Inline bundles (0xa0): per 32-byte word of bundle bytes decoded, hashed and prepared.
BUNDLE_WORD_GAS = 60


def words(n_bytes: int) -> int:
    """Number of 32-byte words needed for ``n_bytes`` bytes."""
    return (n_bytes + 31) // 32


def _milli(units: int, milli_gas: int) -> int:
    return (units * milli_gas + 999) // 1000


def inference_gas(cost: ModelCost, input_bytes: int, output_bytes: int) -> int:
    """Gas of one inference with model cost ``cost`` (already for the call's batch size)."""
    return (
        INFERENCE_BASE_GAS
        + INPUT_WORD_GAS * words(input_bytes)
        + OUTPUT_WORD_GAS * words(output_bytes)
        + _milli(cost.macs, MAC_GAS_MILLI)
        + _milli(cost.elementwise, ELEMENTWISE_GAS_MILLI)
        + _milli(cost.weight_bytes, WEIGHT_BYTE_GAS_MILLI)
    )


def inline_bundle_gas(bundle_bytes: int) -> int:
    """Extra gas of the inline precompile for decoding and committing ``bundle_bytes`` bytes."""
    return BUNDLE_WORD_GAS * words(bundle_bytes)
