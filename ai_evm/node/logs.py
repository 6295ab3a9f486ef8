"""Log and filter methods (``eth_getLogs``, ``eth_newFilter``, ``eth_getFilterChanges``...).

A mixin of :class:`ai_evm.node.methods.EthApi`: it uses the API's sequencer (``self.seq``), block
number resolution (``self._number``) and filter registry (``self.filters``); the matching itself
is in :mod:`ai_evm.node.filters`.

Semantics are geth's:

* ``eth_getLogs`` queries a block range. A range whose end is before its start, or that names a
  block past the head, is refused with -32602 (``invalid block range params``, ``block range
  extends beyond current head block``), as the execution-apis tests want.
* ``eth_getFilterChanges`` returns what a filter matched in **every** block mined since its last
  poll (or since it was installed), in order: a poll after several blocks loses none of their
  logs. A log filter's ``fromBlock``/``toBlock`` numbers bound the blocks it reports; tags
  (``latest``...) do not. One poll returns at most :data:`~ai_evm.node.filters.MAX_LOGS` logs
  (whole blocks; a single block is never split) or :data:`~ai_evm.node.filters.MAX_BLOCK_RANGE`
  block hashes; the rest comes with the next poll.
* A pending-transaction filter reports each transaction once: those in the pool at the poll and
  those of the blocks mined since the last poll that it has not reported (under automine a
  transaction is pending only while its send runs, so it is reported with its block).
* ``eth_getFilterLogs`` runs the filter's criteria as an ``eth_getLogs`` query.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidParams, ServerError
from .filters import (
    MAX_BLOCK_RANGE,
    MAX_LOGS,
    MAX_REPORTED,
    Filter,
    FilterRegistry,
    LogCriteria,
    bloom_may_match,
    check_range,
    collect_logs,
    log_matches,
    numeric_bound,
    parse_criteria,
)  # fmt: skip


class LogsApi:
    """``eth_getLogs`` and the polling filters."""

    seq: Any
    filters: FilterRegistry

    def _number(self, block: Any, name: str = "block") -> int | None:
        raise NotImplementedError

    # -- logs -------------------------------------------------------------------------
    def _query_range(self, criteria: LogCriteria) -> tuple[int, int]:
        """The block range of an ``eth_getLogs`` query (under the chain lock)."""
        if criteria.block_hash is not None:
            header = self.seq.header_by_hash(criteria.block_hash)
            if header is None:
                raise ServerError("unknown block")
            return int(header.block_number), int(header.block_number)
        first = self._number(criteria.from_block, "fromBlock")
        last = self._number(criteria.to_block, "toBlock")
        if first is None or last is None:
            raise InvalidParams("block range extends beyond current head block")
        if first > last:
            raise InvalidParams("invalid block range params")
        return first, last

    def _logs(self, criteria: LogCriteria) -> list[dict[str, Any]]:
        seq = self.seq
        with seq.lock:
            lo, hi = self._query_range(criteria)
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

    # -- filters ----------------------------------------------------------------------
    def eth_newFilter(self, criteria: Any) -> str:
        """Install a log filter; returns its id."""
        parsed = parse_criteria(criteria)
        numeric_bound(parsed.from_block, "fromBlock")  # validated now, not at the first poll
        numeric_bound(parsed.to_block, "toBlock")
        with self.seq.lock:
            head = int(self.seq.head().block_number)
        return self.filters.install(Filter("logs", parsed, head + 1))

    def eth_newBlockFilter(self) -> str:
        """Install a new-block filter; returns its id."""
        with self.seq.lock:
            head = int(self.seq.head().block_number)
        return self.filters.install(Filter("blocks", None, head + 1))

    def eth_newPendingTransactionFilter(self, *_: Any) -> str:
        """Install a pending-transaction filter; returns its id."""
        with self.seq.lock:
            head = int(self.seq.head().block_number)
        return self.filters.install(Filter("pending", None, head + 1))

    def eth_getFilterChanges(self, fid: Any) -> list[Any]:
        """What a filter matched in every block since its last poll (see the module docstring)."""
        flt = self.filters.get(fid)
        if flt is None:
            raise ServerError("filter not found")
        with self.seq.lock:
            head = int(self.seq.head().block_number)
            start = flt.next_block
            if flt.kind == "pending":
                return self._new_pending(flt, start, head)
            if start > head:
                return []
            if flt.kind == "blocks":
                last = min(head, start + MAX_BLOCK_RANGE - 1)
                flt.next_block = last + 1
                return [self.seq.record(n)["block"]["hash"] for n in range(start, last + 1)]
            assert flt.criteria is not None
            logs, flt.next_block = self._new_logs(flt.criteria, start, head)
            return logs

    def _new_pending(self, flt: Filter, start: int, head: int) -> list[str]:
        """Hashes of the transactions mined in blocks ``start..head`` or pending now, not reported yet."""
        last = min(head, start + MAX_BLOCK_RANGE - 1)
        hashes: list[str] = []
        for n in range(start, last + 1):
            record = self.seq.record(n)
            if record is not None:
                hashes += record["block"]["transactions"]
        if last == head:
            hashes += ["0x" + bytes(h).hex() for h in self.seq.pool.pending]
        flt.next_block = max(flt.next_block, last + 1)
        fresh = [h for h in dict.fromkeys(hashes) if h not in flt.reported]
        for h in fresh:
            flt.reported[h] = None
        while len(flt.reported) > MAX_REPORTED:
            del flt.reported[next(iter(flt.reported))]
        return fresh

    def _new_logs(self, criteria: LogCriteria, start: int, head: int) -> tuple[list[dict[str, Any]], int]:
        """Matching logs of blocks ``start..head`` within the criteria's numeric bounds, whole blocks
        up to :data:`MAX_LOGS`; returns them and the first block not yet reported."""
        lo, hi = start, head
        first = numeric_bound(criteria.from_block, "fromBlock")
        last = numeric_bound(criteria.to_block, "toBlock")
        if first is not None:
            lo = max(lo, first)
        if last is not None:
            hi = min(hi, last)
        out: list[dict[str, Any]] = []
        for n in range(lo, hi + 1):
            if len(out) >= MAX_LOGS:
                return out, n
            header = self.seq.header_by_number(n)
            if header is None or not bloom_may_match(int(header.bloom), criteria):
                continue
            record = self.seq.record(n)
            if record is None:
                continue
            out += [log for receipt in record["receipts"] for log in receipt["logs"] if log_matches(log, criteria)]
        return out, head + 1

    def eth_getFilterLogs(self, fid: Any) -> list[dict[str, Any]]:
        """Every log a log filter matches."""
        flt = self.filters.get(fid)
        if flt is None or flt.criteria is None:
            raise ServerError("filter not found")
        return self._logs(flt.criteria)

    def eth_uninstallFilter(self, fid: Any) -> bool:
        """Remove a filter; true if it existed."""
        return self.filters.remove(fid)
