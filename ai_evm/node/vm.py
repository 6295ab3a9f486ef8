"""The one place where the node binds to the AI EVM (:mod:`ai_evm.evm`).

Everything the node needs from the VM layer goes through these names: the chain class for a
model store and chain id, the inference records of a mined block, and the reason of a failed
inference inside a computation tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth.abc import BlockHeaderAPI, ChainAPI, ComputationAPI, SignedTransactionAPI
from eth.chains.base import MiningChain
from eth.exceptions import HeaderNotFound
from eth_typing import BlockNumber, Hash32

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


def canonical_header_by_number(chain: ChainAPI, number: int) -> BlockHeaderAPI | None:
    """The canonical header at ``number`` in ``chain``, or None."""
    try:
        return chain.get_canonical_block_header_by_number(BlockNumber(number))
    except HeaderNotFound:
        return None


def canonical_header_by_hash(chain: ChainAPI, block_hash: bytes) -> BlockHeaderAPI | None:
    """The header with this hash if it is canonical in ``chain``, else None."""
    try:
        header = chain.get_block_header_by_hash(Hash32(block_hash))
    except Exception:  # HeaderNotFound, or a malformed stored value under an unrelated key
        return None
    canonical = canonical_header_by_number(chain, header.block_number)
    return header if canonical is not None and canonical.hash == header.hash else None
