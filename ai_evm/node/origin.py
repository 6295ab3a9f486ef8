"""What a rollup L2 block says of L1: its L1 origin (epoch), the deposits that open it, and how far
an automine sequencer's origin may lag (``docs/rollup.md`` "L1 origin of every L2 block").

Kept apart from :mod:`ai_evm.node.chain` (the chain, pool and miner), which re-exports these names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth.abc import BlockHeaderAPI, SignedTransactionAPI, StateAPI
from eth_typing import Hash32

from .errors import NodeError


class NoL1Origin(NodeError):
    """The next block has no usable L1 origin yet (the node's view of L1 lags behind the L2 time):
    nothing is mined; the pool waits for the next L1 block (docs/rollup.md "L1 origin")."""


#: Why a deposit transaction (type 0x7E) is refused anywhere but from L1.
DEPOSIT_REFUSED = ("deposit transactions (type 0x7e) are created only by derivation from the L1 Portal's "
                   "deposits: deposit on L1 (aievm bridge deposit)")


@dataclass(frozen=True)
class L1Origin:
    """The L1 block an L2 block names as its origin (its epoch, docs/rollup.md): the block's
    ``mix_hash`` (PREVRANDAO) is the origin's hash and its ``extra_data`` the origin's number as 8
    big-endian bytes, so every L2 header says which L1 state (model registry) it executed against."""

    number: int
    hash: bytes
    timestamp: int = 0

    def header_fields(self) -> dict[str, Any]:
        return {"mix_hash": Hash32(self.hash), "extra_data": self.number.to_bytes(8, "big")}


def origin_of(header: BlockHeaderAPI) -> L1Origin | None:
    """The L1 origin an L2 header names (None for a header without one: genesis, a plain devnet)."""
    extra = bytes(header.extra_data)
    if len(extra) != 8:
        return None
    return L1Origin(int.from_bytes(extra, "big"), bytes(header.mix_hash))


def deposit_nonces(state: StateAPI, deposits: Sequence[SignedTransactionAPI]) -> list[int]:
    """The nonce each deposit's sender has when it executes, the deposits opening a block on ``state``
    (each deposit bumps its sender's nonce; nothing runs before them)."""
    seen: dict[bytes, int] = {}
    out = []
    for tx in deposits:
        sender = bytes(tx.sender)
        nonce = seen.get(sender, state.get_nonce(tx.sender))
        out.append(nonce)
        seen[sender] = nonce + 1
    return out


#: L1 blocks an automine sequencer's head origin may lag behind the newest L1 block read before it mines
#: empty blocks to catch up (each advances the origin by one). Well within the default sequencing window
#: (64 L1 blocks) and, at 12 s L1 blocks, within the default drift (600 s); below the lag (33 with the
#: default window) from which the sequencer builds forced blocks itself (docs/rollup.md "Forced blocks").
MAX_ORIGIN_LAG = 24


__all__ = ["DEPOSIT_REFUSED", "MAX_ORIGIN_LAG", "L1Origin", "NoL1Origin", "deposit_nonces", "origin_of"]
