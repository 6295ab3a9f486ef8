"""Inference records of a block and the inference root that commits to them (DESIGN §5).

The records are read from the computations ``mine_all`` returns: every successful 0xa1/0xa0 frame
in a transaction's call tree, in execution (depth-first) order, numbered per transaction. Frames
inside calls that later reverted are included: they were executed and their gas was spent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from eth.abc import ComputationAPI, SignedTransactionAPI

from opml.merkle import keccak, merkle_root

from .call import InferenceRecord
from .errors import InferenceFailed


def walk_computations(computation: ComputationAPI) -> Iterator[ComputationAPI]:
    """Every frame of a computation tree, depth-first in execution order (the root first)."""
    stack = [computation]
    while stack:
        c = stack.pop()
        yield c
        stack.extend(reversed(c.children))


def computation_records(computation: ComputationAPI, tx_hash: bytes = b"") -> list[InferenceRecord]:
    """Records of one transaction's computation tree, numbered 0, 1, ... in execution order."""
    found: list[InferenceRecord] = []
    for c in walk_computations(computation):
        record = getattr(c, "inference_record", None)
        if record is not None and c.is_success:
            found.append(replace(record, tx_hash=tx_hash, call_index=len(found)))
    return found


def inference_failures(computation: ComputationAPI) -> list[str]:
    """Reasons of every failed inference call in a computation tree, in execution order."""
    return [str(c.error) for c in walk_computations(computation)
            if c.is_error and isinstance(c.error, InferenceFailed)]


def inference_records(
    computations: Sequence[ComputationAPI], transactions: Sequence[SignedTransactionAPI]
) -> list[InferenceRecord]:
    """Records of a block, from ``mine_all``'s computations and the transactions they ran."""
    if len(computations) != len(transactions):
        raise ValueError(f"{len(computations)} computations for {len(transactions)} transactions")
    out: list[InferenceRecord] = []
    for computation, tx in zip(computations, transactions, strict=True):
        out.extend(computation_records(computation, bytes(tx.hash)))
    return out


def inference_root(records: Sequence[InferenceRecord]) -> bytes:
    """Keccak Merkle root over ``keccak(record.encode())`` leaves (zero-padded to a power of two)."""
    return merkle_root([keccak(r.encode()) for r in records])
