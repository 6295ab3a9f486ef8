"""``txpool_*`` (geth's pool inspection) and the smaller lookups anvil also answers.

A mixin of :class:`ai_evm.node.methods.EthApi`. This node keeps no queue of future-nonce
transactions (it refuses them), so ``queued`` is always empty; ``pending`` is the pool, which under
automine is empty between sends and under ``--block-time`` holds what the next block will mine.
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address

from .encoding import parse_hash, parse_quantity, quantity
from .index import effective_gas_price, tx_json


class TxPoolApi:
    """``txpool_status``, ``txpool_content``, ``txpool_inspect``; uncle and raw-transaction lookups."""

    seq: Any

    def debug_getRawTransaction(self, tx_hash: Any) -> str | None:
        raise NotImplementedError

    def _by_sender(self) -> dict[str, dict[str, Any]]:
        """Pending transactions as geth groups them: checksummed sender -> decimal nonce -> tx."""
        out: dict[str, dict[str, Any]] = {}
        with self.seq.lock:
            for tx in self.seq.pool.pending.values():
                out.setdefault(to_checksum_address(tx.sender), {})[str(tx.nonce)] = tx
        return out

    def txpool_status(self) -> dict[str, str]:
        """Numbers of pending and queued transactions."""
        with self.seq.lock:
            return {"pending": quantity(len(self.seq.pool.pending)), "queued": "0x0"}

    def txpool_content(self) -> dict[str, Any]:
        """Every pending transaction as a JSON-RPC object, by sender and nonce."""
        return {"pending": {sender: {n: tx_json(tx, None, None) for n, tx in txs.items()}
                            for sender, txs in self._by_sender().items()},
                "queued": {}}  # fmt: skip

    def txpool_inspect(self) -> dict[str, Any]:
        """geth's one-line summaries of the pending transactions: ``to: value wei + gas gas × price wei``."""
        with self.seq.lock:
            base_fee = self.seq.limits().base_fee
        return {"pending": {sender: {n: _summary(tx, base_fee) for n, tx in txs.items()}
                            for sender, txs in self._by_sender().items()},
                "queued": {}}  # fmt: skip

    def eth_getUncleByBlockHashAndIndex(self, block_hash: Any, index: Any) -> None:
        """Always null: blocks here have no uncles."""
        parse_hash(block_hash, "blockHash")
        parse_quantity(index, "index", 1 << 32)

    def eth_getUncleByBlockNumberAndIndex(self, block: Any, index: Any) -> None:
        """Always null: blocks here have no uncles."""
        parse_quantity(index, "index", 1 << 32)

    def eth_getRawTransactionByHash(self, tx_hash: Any) -> str | None:
        """The signed bytes of a mined transaction (as ``debug_getRawTransaction``)."""
        return self.debug_getRawTransaction(tx_hash)


def _summary(tx: Any, base_fee: int) -> str:
    to = to_checksum_address(tx.to) if tx.to else "contract creation"
    return f"{to}: {tx.value} wei + {tx.gas} gas × {effective_gas_price(tx, base_fee)} wei"
