"""``AIVM`` (fork ``ai-prague``) and the factories that bind it to a node's model store."""

from __future__ import annotations

from eth.chains.base import MiningChain
from eth.vm.forks.prague import PragueVM
from eth_typing import BlockNumber

from .computation import AIComputation
from .deposit import AIBlock
from .models import ModelResolver
from .state import AIState


class AIVM(PragueVM):
    """Prague plus the inference precompiles (0xa1, 0xa0) and the deposit transaction (0x7E)."""

    fork = "ai-prague"
    block_class = AIBlock
    _state_class = AIState


def make_vm_class(resolver: ModelResolver | None) -> type[AIVM]:
    """An :class:`AIVM` subclass whose precompiles resolve models through ``resolver``."""
    computation = AIComputation.configure(__name__="AIComputation", model_resolver=resolver)
    state = AIState.configure(__name__="AIState", computation_class=computation)
    return AIVM.configure(__name__="AIVM", _state_class=state)


class AIChain(MiningChain):
    """A mining chain running :class:`AIVM` from genesis (use :func:`make_chain_class` to bind a store)."""

    vm_configuration = ((BlockNumber(0), AIVM),)
    chain_id = 1337


def make_chain_class(resolver: ModelResolver | None, chain_id: int) -> type[AIChain]:
    """An :class:`AIChain` subclass with ``chain_id`` whose VM resolves models through ``resolver``."""
    return AIChain.configure(
        __name__="AIChain", vm_configuration=((BlockNumber(0), make_vm_class(resolver)),), chain_id=chain_id
    )
