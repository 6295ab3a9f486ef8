"""``AIState``: Prague's state whose computations are :class:`AIComputation`."""

from __future__ import annotations

from eth.vm.forks.prague.state import PragueState

from .computation import AIComputation


class AIState(PragueState):
    """Prague state with the inference precompiles."""

    computation_class = AIComputation
