"""``AIComputation``: Prague's computation with the inference precompiles in its table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth._utils.address import force_bytes_to_address
from eth.abc import ComputationAPI
from eth.typing import Address
from eth.vm.forks.prague.computation import PragueComputation

from .call import InferenceRecord
from .models import ModelResolver
from .precompiles.inference import inference
from .precompiles.inference_inline import inference_inline

#: Precompile 0xa1: inference by model address.
INFERENCE_ADDRESS: Address = force_bytes_to_address(b"\xa1")
#: Precompile 0xa0: inference with the bundle inline.
INFERENCE_INLINE_ADDRESS: Address = force_bytes_to_address(b"\xa0")

AI_PRECOMPILES: dict[Address, Callable[[ComputationAPI], Any]] = {
    **PragueComputation.get_precompiles(),
    INFERENCE_ADDRESS: inference,
    INFERENCE_INLINE_ADDRESS: inference_inline,
}


class AIComputation(PragueComputation):
    """A Prague computation that can call models; configure ``model_resolver`` per node."""

    _precompiles = AI_PRECOMPILES
    #: Where the precompiles look models up; bound with ``AIComputation.configure(model_resolver=...)``.
    model_resolver: ModelResolver | None = None
    #: Set on a precompile frame by a successful inference.
    inference_record: InferenceRecord | None = None
