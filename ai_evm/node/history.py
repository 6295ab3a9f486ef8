"""Forgetting the newest blocks of the node's chain (:meth:`ai_evm.node.chain.Sequencer.rewind`: ``evm_revert``,
and an L1 reorg that removed the L1 origins of the later blocks).

Every later block's canonical number -> hash entry, transaction lookups and node record (receipts, logs,
inference records) go in one database commit, and py-evm's chain-gap records are cut back, so the next
block mined takes the freed number as the new head's child."""

from __future__ import annotations

from typing import Any

import rlp
from eth.abc import SignedTransactionAPI
from eth.db.schema import SchemaV1
from eth.rlp.sedes import chain_gaps
from eth_typing import BlockNumber, Hash32

from ai_evm.evm.deposit import as_deposit

from .errors import InvalidParams
from .index import block_key


def forget_blocks_after(seq: Any, number: int) -> list[SignedTransactionAPI]:
    """Make ``seq``'s canonical block ``number`` the head (the caller holds ``seq.lock`` and resets its
    pending header); returns the forgotten blocks' transactions other than deposits, in order."""
    head = int(seq.head().block_number)
    target = seq.header_by_number(number)
    if target is None or number > head:
        raise InvalidParams(f"cannot revert to block {number}: the head is {head}")
    dropped: list[SignedTransactionAPI] = []
    for n in range(number + 1, head + 1):
        block = seq.chain.get_canonical_block_by_number(BlockNumber(n))
        dropped += [tx for tx in block.transactions if as_deposit(tx) is None]
    db = seq.db
    try:
        for n in range(head, number, -1):
            record = seq.record(n)
            for tx_hash in record["block"]["transactions"] if record is not None else ():
                key = SchemaV1.make_transaction_hash_to_block_lookup_key(Hash32(bytes.fromhex(tx_hash[2:])))
                if db.exists(key):
                    del db[key]
            del db[SchemaV1.make_block_number_to_hash_lookup_key(BlockNumber(n))]
            if db.exists(block_key(n)):
                del db[block_key(n)]
        db[SchemaV1.make_canonical_head_hash_lookup_key()] = bytes(target.hash)
        for key in (SchemaV1.make_header_chain_gaps_lookup_key(), SchemaV1.make_chain_gaps_lookup_key()):
            _truncate_gaps(db, key, number)
        db.commit()
    except BaseException:
        db.discard()
        raise
    finally:
        for n in range(number + 1, head + 1):
            seq._records.pop(n, None)  # the sequencer's record cache
    return dropped


def _truncate_gaps(db: Any, key: bytes, number: int) -> None:
    """py-evm's record of the (header or block) chain's gaps, as if ``number`` were the last block
    ever persisted: so that it takes the next block at ``number + 1`` as the tip's child."""
    if not db.exists(key):
        return
    ranges, _ = rlp.decode(db[key], sedes=chain_gaps)
    kept = tuple((lo, min(hi, number)) for lo, hi in ranges if lo <= number)
    db[key] = rlp.encode((kept, number + 1), sedes=chain_gaps)


__all__ = ["forget_blocks_after"]
