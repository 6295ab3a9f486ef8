"""The AI EVM's precompiles, one per module: ``inference`` (0xa1) and ``inference_inline`` (0xa0)."""
