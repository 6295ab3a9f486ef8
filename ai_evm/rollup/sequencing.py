"""The sequencer's side of the rollup: choosing each block's L1 origin, and turning blocks into batches.

:func:`choose_origin` is the policy a sequencer following L1 uses for the next L2 block (the rules
the deriver checks, ``ai_evm.rollup.derive.check_batch``): keep the parent's origin, or advance by
one L1 block once that block's timestamp is not after the L2 timestamp; never run more than
``max_sequencer_drift`` seconds ahead of the origin (:class:`OriginLag`: wait for L1).
:func:`batch_of_block` is what the batcher posts for one L2 block (its transactions without the
deposits, which every node derives from L1 itself).
"""

from __future__ import annotations

from collections.abc import Callable

from eth.abc import BlockAPI

from ai_evm.evm.deposit import as_deposit
from ai_evm.node.chain import L1Origin, NoL1Origin, origin_of

from .codec import Batch
from .derive import L1Block


class OriginLag(NoL1Origin):
    """The next L2 block would run too far ahead of L1: the sequencer waits for the next L1 block."""


def choose_origin(parent: L1Origin, timestamp: int, l1_block: Callable[[int], L1Block | None],
                  max_sequencer_drift: int) -> L1Origin:
    """The L1 origin of an L2 block at ``timestamp`` whose parent's origin is ``parent``."""
    nxt = l1_block(parent.number + 1)
    if nxt is not None and nxt.timestamp <= timestamp:
        return L1Origin(nxt.number, nxt.hash, nxt.timestamp)
    cur = l1_block(parent.number)
    ts = cur.timestamp if cur is not None else parent.timestamp
    if timestamp > ts + max_sequencer_drift:
        raise OriginLag(f"L2 timestamp {timestamp} is more than {max_sequencer_drift} s after L1 block "
                        f"{parent.number} and L1 block {parent.number + 1} is not there yet")
    return L1Origin(parent.number, parent.hash, ts)


def batch_of_block(block: BlockAPI) -> Batch:
    """The batch that carries L2 ``block`` (its header must name an L1 origin)."""
    origin = origin_of(block.header)
    if origin is None:
        raise ValueError(f"L2 block {block.number} names no L1 origin")
    return Batch(bytes(block.header.parent_hash), origin.number, origin.hash, int(block.header.timestamp),
                 tuple(bytes(tx.encode()) for tx in block.transactions if as_deposit(tx) is None))


__all__ = ["OriginLag", "batch_of_block", "choose_origin"]
