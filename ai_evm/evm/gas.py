"""The inference gas schedule: a pure function of the model header and the call's sizes.

Every constant of the schedule lives here. With ``c = opml.cost.model_cost(bundle, batch)`` for
the batch size the input length implies (docs/precompile.md derives it)::

    gas = INFERENCE_BASE_GAS
        + NODE_GAS * c.nodes
        + INPUT_WORD_GAS  * ceil(input_bytes / 32)
        + OUTPUT_WORD_GAS * ceil(output_bytes / 32)
        + ceil(( MAC_GAS_PER_MILLION         * (c.macs - c.conv_macs)
               + CONV_MAC_GAS_PER_MILLION    * c.conv_macs
               + ELEMENTWISE_GAS_PER_MILLION * (c.elementwise - c.window_ops)
               + WINDOW_GAS_PER_MILLION      * c.window_ops
               + WEIGHT_BYTE_GAS_PER_MILLION * c.weight_bytes) / 1_000_000)

The inline precompile (0xa0) adds ``BUNDLE_WORD_GAS`` per 32-byte word of bundle it must decode,
hash and prepare. The precompile charges :data:`INFERENCE_BASE_GAS` before it looks the model up
(so a lookup is never free) and the rest before any inference work; the total always equals the
formula. ``scripts/bench/gas_calibration.py`` measures inference gas per second against ordinary
EVM gas per second on this node; the constants are set so the ratio lies within 0.5x-2x for
every example model and the BERT-like encoder (DESIGN §5), i.e. a block's gas limit bounds its
execution time whatever mix of inference and ordinary transactions it holds.
"""

from __future__ import annotations

from opml.cost import ModelCost

#: Flat charge of every call: call-data parsing, the model-store lookup, plan lookup, encoding.
INFERENCE_BASE_GAS = 400
#: Per graph node executed and per convolution group beyond the first (the fixed per-kernel-call overhead).
NODE_GAS = 30
#: Per 32-byte word of model input (decoding into arrays, hashing for the inference record).
INPUT_WORD_GAS = 1
#: Per 32-byte word of model output (encoding, copying back to the caller, hashing).
OUTPUT_WORD_GAS = 1
#: Per million multiply-accumulates of linear and matmul layers.
MAC_GAS_PER_MILLION = 40
#: Per million multiply-accumulates of convolutions (the im2col copy makes them dearer).
CONV_MAC_GAS_PER_MILLION = 200
#: Per million elementwise element-operations (activations, requantization, softmax, ...).
ELEMENTWISE_GAS_PER_MILLION = 2_000
#: Per million element-operations of pooling windows.
WINDOW_GAS_PER_MILLION = 2_000
#: Per million bytes of constant tensors (weights, biases, tables) the inference reads.
WEIGHT_BYTE_GAS_PER_MILLION = 500
#: Inline bundles (0xa0): per 32-byte word of bundle bytes decoded, hashed and prepared.
BUNDLE_WORD_GAS = 8

MILLION = 1_000_000


def words(n_bytes: int) -> int:
    """Number of 32-byte words needed for ``n_bytes`` bytes."""
    return (n_bytes + 31) // 32


def work_gas(cost: ModelCost) -> int:
    """Gas for the arithmetic of one inference (the last term of the formula)."""
    micro = (
        MAC_GAS_PER_MILLION * (cost.macs - cost.conv_macs)
        + CONV_MAC_GAS_PER_MILLION * cost.conv_macs
        + ELEMENTWISE_GAS_PER_MILLION * (cost.elementwise - cost.window_ops)
        + WINDOW_GAS_PER_MILLION * cost.window_ops
        + WEIGHT_BYTE_GAS_PER_MILLION * cost.weight_bytes
    )
    return (micro + MILLION - 1) // MILLION


def inference_gas(cost: ModelCost, input_bytes: int, output_bytes: int) -> int:
    """Gas of one inference with model cost ``cost`` (already for the call's batch size)."""
    return (
        INFERENCE_BASE_GAS
        + NODE_GAS * cost.nodes
        + INPUT_WORD_GAS * words(input_bytes)
        + OUTPUT_WORD_GAS * words(output_bytes)
        + work_gas(cost)
    )


def inline_bundle_gas(bundle_bytes: int) -> int:
    """Extra gas of the inline precompile for decoding and committing ``bundle_bytes`` bytes."""
    return BUNDLE_WORD_GAS * words(bundle_bytes)
