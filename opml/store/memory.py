"""In-memory model cache and the tiered store a node uses (memory -> local directory -> remotes).

Only verified bytes ever enter a :class:`MemoryCache` (``put`` verifies; the tiered store fills it
after a verified fetch), so reads from it are not re-hashed. It also keeps the decoded
:class:`~opml.bundle.Bundle`, so the engine gets a model by address without decoding it again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence

from ..bundle import Bundle, decode_bundle
from ..errors import ModelIntegrityError, ModelNotAvailable
from .base import (
    ModelAbsent,
    ModelStore,
    ReadOnlyStore,
    StoreError,
    address_hex,
    bundle_bytes_and_address,
    parse_address,
)

log = logging.getLogger("aievm.store")


class MemoryCache(ModelStore):
    """A least-recently-used cache of verified bundles, bounded by total bytes."""

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[bytes, tuple[bytes, Bundle | None]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryCache({len(self._items)} models, {self._bytes} bytes)"

    __str__ = __repr__

    def fetch(self, address: bytes) -> tuple[bytes, Bundle]:
        """Cached bytes and bundle (no re-verification: only verified bytes are cached)."""
        with self._lock:
            item = self._items.get(address)
            if item is None:
                raise self._missing(address)
            self._items.move_to_end(address)
        data, bundle = item
        if bundle is None:
            bundle = decode_bundle(data)
            with self._lock:
                if address in self._items:
                    self._items[address] = (data, bundle)
        return data, bundle

    def _read(self, address: bytes) -> bytes:
        return self.fetch(address)[0]

    def _write(self, address: bytes, data: bytes, bundle: Bundle | None = None) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(address, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._items[address] = (data, bundle)
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, (evicted, _) = self._items.popitem(last=False)
                self._bytes -= len(evicted)

    def has(self, address: bytes | str) -> bool:
        """Whether the model is cached."""
        return parse_address(address) in self._items

    def list(self) -> list[bytes]:
        """Cached addresses, sorted."""
        with self._lock:
            return sorted(self._items)

    def remove(self, address: bytes | str) -> bool:
        """Drop a model from the cache."""
        with self._lock:
            old = self._items.pop(parse_address(address), None)
            if old is not None:
                self._bytes -= len(old[0])
        return old is not None

    def size(self, address: bytes | str) -> int | None:
        """Cached size, or None."""
        item = self._items.get(parse_address(address))
        return None if item is None else len(item[0])


class TieredStore(ModelStore):
    """Memory cache, then a local directory, then remote stores (hubs, S3), in that order.

    ``get`` returns the first tier's verified copy and fills the memory and local tiers with it;
    a tier that holds corrupt bytes or cannot be reached is skipped (a corrupt local copy is healed
    by the fill). ``put`` and ``remove`` touch only the memory and local tiers; remotes are
    read-only here.
    """

    def __init__(
        self,
        cache: MemoryCache | None = None,
        local: ModelStore | None = None,
        remotes: Sequence[ModelStore] = (),
    ) -> None:
        self.cache = cache
        self.local = local
        self.remotes = list(remotes)

    def __repr__(self) -> str:
        return f"TieredStore(cache={self.cache!r}, local={self.local!r}, remotes={self.remotes!r})"

    __str__ = __repr__

    @property
    def tiers(self) -> list[ModelStore]:
        """All tiers, fastest first."""
        return [t for t in (self.cache, self.local) if t is not None] + self.remotes

    @property
    def writable_tiers(self) -> list[ModelStore]:
        """The tiers ``put`` writes to (cache and local, or the first writable remote if neither)."""
        near = [t for t in (self.cache, self.local) if t is not None]
        if self.local is None:
            near += [t for t in self.remotes if t.writable][:1]
        return near

    def put(self, bundle: bytes | bytearray | Bundle) -> bytes:
        """Verify once, then store in the writable tiers; returns the address."""
        data, address, decoded = bundle_bytes_and_address(bundle)
        tiers = self.writable_tiers
        if not tiers:
            raise ReadOnlyStore(f"{self} has no writable tier")
        for tier in reversed(tiers):  # persistent tiers first, memory last
            tier._write(address, data, decoded)
        return address

    def fetch(self, address: bytes) -> tuple[bytes, Bundle]:
        """First verified copy, filling the faster tiers; errors name every tier that failed."""
        integrity: list[ModelIntegrityError] = []
        missing: list[str] = []
        absent = 0
        for i, tier in enumerate(self.tiers):
            try:
                data, bundle = tier.fetch(address)
            except (ModelNotAvailable, StoreError) as e:  # absent, or this tier is unreachable
                missing.append(str(e))
                absent += isinstance(e, ModelAbsent)
                continue
            except ModelIntegrityError as e:
                integrity.append(e)
                continue
            for upper in (self.local, self.cache):  # fill the near tiers above the one that answered
                if upper is not None and upper in self.tiers[:i]:
                    try:
                        upper._write(address, data, bundle)
                    except StoreError as e:  # e.g. a full disk: the verified bytes are still good
                        log.warning("could not cache model %s in %s: %s", address_hex(address), upper, e)
            return data, bundle
        if integrity:
            details = "; ".join(str(e) for e in integrity)
            raise ModelIntegrityError(address, f"no tier has a valid copy ({details})")
        if absent == len(self.tiers):  # every tier answered that it does not hold it
            raise ModelAbsent(f"model {address_hex(address)} is in none of the stores: {missing}")
        raise ModelNotAvailable(f"model {address_hex(address)} is in none of the stores: {missing}")

    def _read(self, address: bytes) -> bytes:
        return self.fetch(address)[0]

    def _write(self, address: bytes, data: bytes, bundle: Bundle | None = None) -> None:
        for tier in reversed(self.writable_tiers):
            tier._write(address, data, bundle)

    def has(self, address: bytes | str) -> bool:
        """Whether any tier holds the model."""
        return any(t.has(address) for t in self.tiers)

    def list(self) -> list[bytes]:
        """Union of every tier's addresses."""
        return sorted(set().union(*(t.list() for t in self.tiers)))

    def remove(self, address: bytes | str) -> bool:
        """Remove from the cache and local tiers (not from remotes)."""
        removed = False
        for t in (self.cache, self.local):
            if t is not None and t.writable:
                removed = t.remove(address) or removed
        return removed

    def size(self, address: bytes | str) -> int | None:
        """Size from the first tier that knows it."""
        for t in self.tiers:
            n = t.size(address)
            if n is not None:
                return n
        return None
