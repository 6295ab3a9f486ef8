"""Model resolution for the inference precompile: model address -> verified, decoded bundle.

A :class:`ModelResolver` sits between the precompile and the node's model store
(:mod:`opml.store`). It keeps recently used bundles decoded in memory (an LRU keyed by address)
and the model cost per (address, batch size), so repeated calls skip the store and the cost walk.
Caching changes speed only: the bytes are verified against the address by the store before they
are decoded, and gas never depends on whether a model was cached.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from opml.bundle import Bundle
from opml.cost import ModelCost, model_cost
from opml.store import ModelStore

from .errors import ModelUnavailable

log = logging.getLogger(__name__)


class ModelResolver:
    """Resolves 32-byte model addresses through a model store, with an in-memory LRU cache."""

    def __init__(self, store: ModelStore | None, cache_size: int = 32) -> None:
        self.store = store
        self.cache_size = cache_size
        self._bundles: OrderedDict[bytes, Bundle] = OrderedDict()
        self._costs: OrderedDict[tuple[bytes, int], ModelCost] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, address: bytes) -> Bundle:
        """The bundle whose model address is ``address``; raises :class:`ModelUnavailable`."""
        with self._lock:
            bundle = self._bundles.get(address)
            if bundle is not None:
                self._bundles.move_to_end(address)
                return bundle
        if self.store is None:
            raise ModelUnavailable(f"model 0x{address.hex()}: this node has no model store configured")
        try:
            bundle = self.store.get_bundle(address)
        except Exception as e:  # any store failure (missing, corrupt, network) is "not available"
            log.info("model 0x%s unavailable: %s", address.hex(), e)
            raise ModelUnavailable(f"model 0x{address.hex()} is not available from the model store: {e}") from None
        self.remember(bundle)
        return bundle

    def remember(self, bundle: Bundle) -> None:
        """Put an already verified bundle into the cache (used after inline calls and by tests)."""
        with self._lock:
            self._bundles[bundle.address] = bundle
            self._bundles.move_to_end(bundle.address)
            while len(self._bundles) > self.cache_size:
                self._bundles.popitem(last=False)

    def cost(self, bundle: Bundle, batch: int) -> ModelCost:
        """:func:`opml.cost.model_cost` of ``bundle`` at ``batch``, memoised per (address, batch)."""
        key = (bundle.address, batch)
        with self._lock:
            cost = self._costs.get(key)
            if cost is not None:
                return cost
        cost = model_cost(bundle, batch)
        with self._lock:
            self._costs[key] = cost
            while len(self._costs) > 8 * self.cache_size:
                self._costs.popitem(last=False)
        return cost
