"""Log queries and polling filters: ``eth_getLogs``, ``eth_newFilter``, ``eth_newBlockFilter``...

A log query is a block range (or one ``blockHash``), an optional address or list of addresses,
and up to four topic positions, each ``null`` (anything), one topic, or a list of alternatives.
Blocks whose header bloom cannot match are skipped without reading their records. Filters are
polled with ``eth_getFilterChanges``; one that is not polled for :data:`FILTER_TIMEOUT` seconds
is removed, like geth's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_bloom import BloomFilter

from .encoding import parse_address, parse_hash, parse_quantity
from .errors import InvalidParams, LimitExceeded

FILTER_TIMEOUT = 300.0
MAX_BLOCK_RANGE = 10_000
MAX_LOGS = 20_000
MAX_FILTERS = 10_000
MAX_TOPICS = 4
#: Transaction hashes a pending-transaction filter remembers having reported.
MAX_REPORTED = 10_000


@dataclass(frozen=True)
class LogCriteria:
    """A parsed log filter; ``from_block``/``to_block`` stay unresolved tags until queried."""

    from_block: Any = "latest"
    to_block: Any = "latest"
    block_hash: bytes | None = None
    addresses: tuple[bytes, ...] = ()
    topics: tuple[tuple[bytes, ...] | None, ...] = ()


def parse_criteria(obj: Any) -> LogCriteria:
    """Validate a JSON filter object."""
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise InvalidParams("invalid filter: expected an object")
    block_hash = parse_hash(obj["blockHash"], "blockHash") if obj.get("blockHash") is not None else None
    if block_hash is not None and (obj.get("fromBlock") is not None or obj.get("toBlock") is not None):
        raise InvalidParams("invalid filter: cannot specify both blockHash and fromBlock/toBlock")
    raw_addr = obj.get("address")
    if raw_addr is None:
        addresses: tuple[bytes, ...] = ()
    elif isinstance(raw_addr, list):
        addresses = tuple(parse_address(a, "address") for a in raw_addr)
    else:
        addresses = (parse_address(raw_addr, "address"),)
    raw_topics = obj.get("topics")
    topics: list[tuple[bytes, ...] | None] = []
    if raw_topics is not None:
        if not isinstance(raw_topics, list):
            raise InvalidParams("invalid filter: topics must be a list")
        if len(raw_topics) > MAX_TOPICS:
            raise InvalidParams(f"invalid filter: more than {MAX_TOPICS} topic positions")
        for t in raw_topics:
            if t is None:
                topics.append(None)
            elif isinstance(t, list):
                topics.append(tuple(parse_hash(x, "topic") for x in t if x is not None) or None)
            else:
                topics.append((parse_hash(t, "topic"),))
    return LogCriteria(
        from_block=obj.get("fromBlock", "latest") if obj.get("fromBlock") is not None else "latest",
        to_block=obj.get("toBlock", "latest") if obj.get("toBlock") is not None else "latest",
        block_hash=block_hash, addresses=addresses, topics=tuple(topics),
    )  # fmt: skip


def bloom_may_match(bloom_value: int, criteria: LogCriteria) -> bool:
    """False only if the block's logs bloom proves no log matches."""
    bloom = BloomFilter(bloom_value)
    if criteria.addresses and not any(a in bloom for a in criteria.addresses):
        return False
    for alternatives in criteria.topics:
        if alternatives and not any(t in bloom for t in alternatives):
            return False
    return True


def log_matches(log: dict[str, Any], criteria: LogCriteria) -> bool:
    """Whether one JSON log object matches."""
    if criteria.addresses and bytes.fromhex(log["address"][2:]) not in criteria.addresses:
        return False
    topics = log["topics"]
    for i, alternatives in enumerate(criteria.topics):
        if alternatives is None:
            continue
        if i >= len(topics) or bytes.fromhex(topics[i][2:]) not in alternatives:
            return False
    return True


def collect_logs(
    blocks: Iterable[tuple[int, Callable[[], dict[str, Any] | None]]], criteria: LogCriteria
) -> list[dict[str, Any]]:
    """Matching logs of ``(bloom, load record)`` pairs, in order, up to :data:`MAX_LOGS`."""
    out: list[dict[str, Any]] = []
    for bloom, load in blocks:
        if not bloom_may_match(bloom, criteria):
            continue
        record = load()
        if record is None:
            continue
        for receipt in record["receipts"]:
            for log in receipt["logs"]:
                if log_matches(log, criteria):
                    out.append(log)
                    if len(out) > MAX_LOGS:
                        raise LimitExceeded(f"query returned more than {MAX_LOGS} results")
    return out


def numeric_bound(block: Any, name: str) -> int | None:
    """A filter's ``fromBlock``/``toBlock`` as a bound on the blocks it reports to
    ``eth_getFilterChanges``: a number, 0 for ``earliest``, None (no bound) for the other tags."""
    if block == "earliest":
        return 0
    if block in ("latest", "pending", "safe", "finalized"):
        return None
    return parse_quantity(block, name, (1 << 63) - 1)


def check_range(first: int, last: int) -> None:
    """Refuse ranges wider than :data:`MAX_BLOCK_RANGE` blocks."""
    if last - first + 1 > MAX_BLOCK_RANGE:
        raise LimitExceeded(f"query exceeds max block range {MAX_BLOCK_RANGE}")


@dataclass
class Filter:
    """One installed filter: ``kind`` is ``logs``, ``blocks`` or ``pending``."""

    kind: str
    criteria: LogCriteria | None
    next_block: int
    last_poll: float = field(default_factory=time.monotonic)
    #: transaction hashes a ``pending`` filter reported (oldest first, at most :data:`MAX_REPORTED`)
    reported: dict[str, None] = field(default_factory=dict)


class FilterRegistry:
    """Installed filters by id (random 16-byte hex ids), with expiry."""

    def __init__(self, timeout: float = FILTER_TIMEOUT) -> None:
        self.timeout = timeout
        self._filters: dict[str, Filter] = {}
        self._lock = threading.Lock()
        #: told the block a rewind went back to (the WebSocket feed, :mod:`ai_evm.node.pubsub`)
        self.rewind_listeners: list[Callable[[int], None]] = []

    def install(self, flt: Filter) -> str:
        """Add a filter; returns its id."""
        with self._lock:
            self._expire()
            if len(self._filters) >= MAX_FILTERS:
                raise LimitExceeded(f"too many filters installed (max {MAX_FILTERS})")
            fid = "0x" + (os.urandom(16).hex().lstrip("0") or "0")  # a QUANTITY, as geth's ids
            self._filters[fid] = flt
            return fid

    def get(self, fid: Any) -> Filter | None:
        """The filter with this id (touching its poll time), or None."""
        if not isinstance(fid, str):
            raise InvalidParams("invalid filter id: expected a hex string")
        with self._lock:
            self._expire()
            flt = self._filters.get(fid.lower())
            if flt is not None:
                flt.last_poll = time.monotonic()
            return flt

    def remove(self, fid: Any) -> bool:
        """Uninstall; True if it existed."""
        if not isinstance(fid, str):
            raise InvalidParams("invalid filter id: expected a hex string")
        with self._lock:
            return self._filters.pop(fid.lower(), None) is not None

    def rewind(self, head: int) -> None:
        """The chain went back to block ``head`` (``evm_revert``): every filter reports the blocks
        mined from there on again, since their numbers are reused by other blocks."""
        with self._lock:
            for flt in self._filters.values():
                if flt.next_block > head + 1:
                    flt.next_block = head + 1
        for listener in self.rewind_listeners:
            listener(head)

    def _expire(self) -> None:
        now = time.monotonic()
        for fid in [f for f, flt in self._filters.items() if now - flt.last_poll > self.timeout]:
            del self._filters[fid]
