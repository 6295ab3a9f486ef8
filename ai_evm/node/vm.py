"""The one place where the node binds to the AI EVM (:mod:`ai_evm.evm`).

Everything the node needs from the VM layer goes through these names: the chain class for a
model store and chain id, the inference records of a mined block, and the reason of a failed
inference inside a computation tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth.abc import ComputationAPI, SignedTransactionAPI
from eth.chains.base import MiningChain

from ai_evm.evm import (  # noqa: F401  (inference_failures is re-exported for the node)
    ModelResolver,
    inference_failures,
    inference_records,
    inference_root,
    make_chain_class,
)
from opml.store import ModelStore


def chain_class(resolver: ModelResolver, chain_id: int) -> type[MiningChain]:
    """The MiningChain subclass the sequencer runs (AIVM from genesis)."""
    return make_chain_class(resolver, chain_id)


def make_resolver(store: ModelStore | None) -> ModelResolver:
    """A model resolver over the node's model store (None: no models available); remote tiers are
    fetched in the background, never during execution (:func:`ai_evm.node.models.node_resolver`)."""
    from .models import node_resolver

    return node_resolver(store)


def block_inferences(
    computations: Sequence[ComputationAPI], transactions: Sequence[SignedTransactionAPI]
) -> tuple[list[dict[str, Any]], bytes]:
    """JSON records of the inferences a block executed, and their inference root."""
    records = inference_records(computations, transactions)
    return [r.to_json() for r in records], inference_root(records)
