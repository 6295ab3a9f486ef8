"""Log and filter methods (``eth_getLogs``, ``eth_newFilter``, ``eth_getFilterChanges``...).

A mixin of :class:`ai_evm.node.methods.EthApi`: it uses the API's sequencer (``self.seq``), block
number resolution (``self._number``) and filter registry (``self.filters``); the matching itself
is in :mod:`ai_evm.node.filters`.
"""

from __future__ import annotations

from typing import Any

from .errors import ServerError
from .filters import Filter, FilterRegistry, LogCriteria, check_range, collect_logs, parse_criteria


class LogsApi:
    """``eth_getLogs`` and the polling filters."""

    seq: Any
    filters: FilterRegistry

    def _number(self, block: Any, name: str = "block") -> int | None:
        raise NotImplementedError

    # -- logs -------------------------------------------------------------------------
    def _logs(self, criteria: LogCriteria, first: int | None = None) -> list[dict[str, Any]]:
        seq = self.seq
        with seq.lock:
            if criteria.block_hash is not None:
                header = seq.header_by_hash(criteria.block_hash)
                if header is None:
                    raise ServerError("unknown block")
                lo = hi = int(header.block_number)
            else:
                head = int(seq.head().block_number)
                first_n = self._number(criteria.from_block, "fromBlock")
                last_n = self._number(criteria.to_block, "toBlock")
                lo = head + 1 if first_n is None else first_n
                hi = head if last_n is None else last_n
                if first is not None:
                    lo = max(lo, first)
                if lo > hi:
                    return []
            check_range(lo, hi)
            blocks = []
            for n in range(lo, hi + 1):
                header = seq.header_by_number(n)
                if header is not None:
                    blocks.append((int(header.bloom), lambda n=n: seq.record(n)))
            return collect_logs(blocks, criteria)

    def eth_getLogs(self, criteria: Any) -> list[dict[str, Any]]:
        """Logs matching a filter object."""
        return self._logs(parse_criteria(criteria))

    def eth_newFilter(self, criteria: Any) -> str:
        """Install a log filter; returns its id."""
        parsed = parse_criteria(criteria)
        with self.seq.lock:
            head = int(self.seq.head().block_number)
        return self.filters.install(Filter("logs", parsed, head + 1))

    def eth_newBlockFilter(self) -> str:
        """Install a new-block filter; returns its id."""
        with self.seq.lock:
            head = int(self.seq.head().block_number)
        return self.filters.install(Filter("blocks", None, head + 1))

    def eth_newPendingTransactionFilter(self, *_: Any) -> str:
        """Install a pending-transaction filter (always empty: automine)."""
        return self.filters.install(Filter("pending", None, 0))

    def eth_getFilterChanges(self, fid: Any) -> list[Any]:
        """What a filter matched since its last poll."""
        flt = self.filters.get(fid)
        if flt is None:
            raise ServerError("filter not found")
        with self.seq.lock:
            head = int(self.seq.head().block_number)
            start, flt.next_block = flt.next_block, max(flt.next_block, head + 1)
            if flt.kind == "pending" or start > head:
                return []
            if flt.kind == "blocks":
                return [self.seq.record(n)["block"]["hash"] for n in range(start, head + 1)]  # type: ignore[index]
            assert flt.criteria is not None
            return self._logs(flt.criteria, first=start)

    def eth_getFilterLogs(self, fid: Any) -> list[dict[str, Any]]:
        """Every log a log filter matches."""
        flt = self.filters.get(fid)
        if flt is None or flt.criteria is None:
            raise ServerError("filter not found")
        return self._logs(flt.criteria)

    def eth_uninstallFilter(self, fid: Any) -> bool:
        """Remove a filter; true if it existed."""
        return self.filters.remove(fid)
