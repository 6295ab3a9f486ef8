"""Model resolution for the inference precompile: model address -> verified, decoded bundle.

A :class:`ModelResolver` sits between the precompile and the node's model store
(:mod:`opml.store`). It keeps recently used bundles decoded in memory (an LRU keyed by address)
and the model cost per (address, batch size), so repeated calls skip the store and the cost walk.
Caching changes speed only: the bytes are verified against the address by the store before they
are decoded, and gas never depends on whether a model was cached.

**Execution never downloads.** The precompile runs inside block building (under the sequencer's
chain lock) and inside ``eth_call``; a download there would let any slow model server stall every
client. So :meth:`ModelResolver.resolve` reads only the *local* tiers of the store (the memory
cache and local directories). A model that only a remote tier (hub, S3) can provide is handed to a
:class:`ModelFetcher`, which downloads it in a background thread, and execution is aborted with
:class:`ModelFetchRequired`. That is not a failed call (failing it would fork the chain from nodes
that hold the model, DESIGN §7): nothing of the aborted execution is committed, and the caller
retries once the model is local (the sequencer parks the sender's transactions meanwhile, an
``eth_call`` answers "not available yet"). A call fails (:class:`ModelUnavailable`, consuming its
gas) only for a model that no store has: every remote answered that it does not hold it.

The seam for the model registry (DESIGN §7, "an inference on an unregistered model fails
identically everywhere; a node that cannot fetch a registered model stalls"): ``is_registered``,
called with the model address and the executing block's L1 origin hash (its ``mix_hash``, see
``docs/rollup.md``) before anything else, the memory cache included (a model cached for a later
block must still fail in an earlier block that cannot use it). When given, an unregistered model
fails without looking at any store, and a registered one is never failed for being unavailable:
execution stalls (:class:`ModelFetchRequired`) until it is fetched, however many times the stores
say no.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opml.bundle import Bundle
from opml.cost import ModelCost, model_cost
from opml.store import LocalStore, MemoryCache, ModelAbsent, ModelStore, TieredStore

from .errors import ModelUnavailable

log = logging.getLogger(__name__)

#: Fetch states (:attr:`FetchStatus.state`).
FETCHING, READY, ABSENT, FAILED = "fetching", "ready", "absent", "failed"


class ModelFetchRequired(Exception):  # noqa: N818 (a signal, not an error of the call)
    """Execution needs a model this node does not hold locally yet; it is being fetched.

    Deliberately not an :class:`~ai_evm.evm.errors.InferenceFailed` (a ``VMError``): py-evm does
    not turn it into a failed call but lets it abort the whole execution (block build or
    ``eth_call``), whose state the caller discards. ``origin`` is the transaction sender whose
    execution needed the model (the sequencer parks that sender's transactions).
    """

    def __init__(self, address: bytes, detail: str, origin: bytes = b"") -> None:
        super().__init__(f"model 0x{address.hex()} is not available on this node yet: {detail}")
        self.address, self.detail, self.origin = address, detail, origin


@dataclass(frozen=True)
class FetchStatus:
    """Where the background fetch of one model stands."""

    state: str
    detail: str
    since: float  # time.monotonic() of the last change
    attempts: int = 0

    def describe(self) -> str:
        """A sentence for logs and error messages."""
        age = time.monotonic() - self.since
        if self.state == FETCHING:
            return f"fetching it from the model stores (for {age:.0f} s; attempt {self.attempts}); retry shortly"
        if self.state == FAILED:
            return f"fetching it failed {self.attempts} time(s), retrying: {self.detail}"
        return f"{self.state}: {self.detail}"


class ModelFetcher:
    """Downloads models in background threads, one fetch per address at a time.

    ``fetch(address)`` does the work (normally the node's whole tiered store, which verifies the
    bytes and fills the local tiers). A fetch whose stores all answered "not there" ends
    :data:`ABSENT` (kept ``absent_ttl`` seconds, then asked again); a transient failure ends
    :data:`FAILED` and is retried with backoff for as long as someone :meth:`hold` s the address
    (the sequencer does while transactions wait for it), otherwise at the next :meth:`request`
    after ``retry_after`` seconds. Subscribers are told of every finished attempt.
    """

    def __init__(
        self,
        fetch: Callable[[bytes], tuple[bytes, Bundle]],
        *,
        workers: int = 2,
        absent_ttl: float = 60.0,
        retry_after: float = 5.0,
        backoff: Sequence[float] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
        max_tracked: int = 1024,
        max_running: int = 64,
    ) -> None:
        self._fetch = fetch
        self.absent_ttl, self.retry_after, self.backoff = absent_ttl, retry_after, tuple(backoff)
        self.max_tracked, self.max_running = max_tracked, max_running
        # Daemon workers: a download stuck until its deadline never delays the process's exit.
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"model-fetch-{i}", daemon=True) for i in range(workers)
        ]
        self._started = False
        self._lock = threading.Lock()
        self._status: OrderedDict[bytes, FetchStatus] = OrderedDict()
        self._holds: dict[bytes, int] = {}
        self._done = threading.Condition(self._lock)
        self._subscribers: list[Callable[[bytes, FetchStatus], None]] = []
        self._closed = False

    def subscribe(self, callback: Callable[[bytes, FetchStatus], None]) -> None:
        """Call ``callback(address, status)`` (in a fetch thread) after every finished attempt."""
        self._subscribers.append(callback)

    def status(self, address: bytes) -> FetchStatus | None:
        """The latest status of ``address``, or None if it was never requested (or forgotten)."""
        with self._lock:
            return self._status.get(address)

    def request(self, address: bytes) -> FetchStatus:
        """Start a fetch unless one is running or a recent answer stands; returns the status."""
        now = time.monotonic()
        with self._lock:
            st = self._status.get(address)
            stale = st is None or st.state == READY or (
                st.state == ABSENT and now - st.since >= self.absent_ttl
            ) or (st.state == FAILED and now - st.since >= self.retry_after and not self._holds.get(address))
            if not stale:
                assert st is not None
                return st
            return self._start(address, st.attempts if st is not None and st.state == FAILED else 0)

    def _start(self, address: bytes, attempts: int) -> FetchStatus:
        """Submit a fetch (the lock is held)."""
        now = time.monotonic()
        if self._closed:
            return FetchStatus(FAILED, "the node is shutting down", now, attempts)
        running = sum(1 for s in self._status.values() if s.state == FETCHING)
        if running >= self.max_running:  # a flood of unknown addresses: try again later
            st = FetchStatus(FAILED, f"{running} model fetches already in progress", now, attempts)
            self._status[address] = st
            self._schedule_retry(address, max(attempts, 1))
            return st
        st = FetchStatus(FETCHING, "", now, attempts + 1)
        self._status[address] = st
        self._status.move_to_end(address)
        self._forget_old()
        if not self._started:
            self._started = True
            for w in self._workers:
                w.start()
        self._queue.put(address)
        return st

    def _work(self) -> None:
        while (address := self._queue.get()) is not None:
            self._run(address)

    def _schedule_retry(self, address: bytes, attempts: int) -> None:
        """Retry a failed fetch after a backoff delay if someone holds it (the lock is held)."""
        if not self._holds.get(address) or self._closed:
            return
        delay = self.backoff[min(attempts - 1, len(self.backoff) - 1)] if self.backoff else self.retry_after
        log.warning("model 0x%s is needed by waiting transactions: retrying the fetch in %.0f s", address.hex(), delay)
        timer = threading.Timer(delay, self._retry, (address,))
        timer.daemon = True
        timer.start()

    def _forget_old(self) -> None:
        excess = len(self._status) - self.max_tracked
        for addr in [a for a, s in self._status.items() if s.state != FETCHING and a not in self._holds][:excess]:
            del self._status[addr]

    def _run(self, address: bytes) -> None:
        hexa = "0x" + address.hex()
        t0 = time.monotonic()
        try:
            self._fetch(address)
            state, detail = READY, "fetched and verified"
            log.info("model %s fetched and verified in %.1f s", hexa, time.monotonic() - t0)
        except ModelAbsent as e:
            state, detail = ABSENT, f"no model store holds it ({e})"
            log.info("model %s: no model store holds it", hexa)
        except Exception as e:  # unreachable, too slow, too big, corrupt... : transient for us
            state, detail = FAILED, f"{type(e).__name__}: {e}"
            log.warning("fetching model %s failed after %.1f s: %s", hexa, time.monotonic() - t0, detail)
        with self._lock:
            old = self._status.get(address)
            attempts = old.attempts if old is not None else 1
            st = FetchStatus(state, detail, time.monotonic(), attempts)
            self._status[address] = st
            self._done.notify_all()
            if state == FAILED:
                self._schedule_retry(address, attempts)
        for callback in list(self._subscribers):
            try:
                callback(address, st)
            except Exception:
                log.exception("model fetch subscriber failed")

    def _retry(self, address: bytes) -> None:
        with self._lock:
            st = self._status.get(address)
            if st is not None and st.state == FAILED and self._holds.get(address) and not self._closed:
                self._start(address, st.attempts)

    def hold(self, address: bytes) -> None:
        """Keep retrying ``address`` after failures until :meth:`release` (counts nest)."""
        with self._lock:
            self._holds[address] = self._holds.get(address, 0) + 1

    def release(self, address: bytes) -> None:
        """Undo one :meth:`hold`."""
        with self._lock:
            n = self._holds.get(address, 0) - 1
            if n > 0:
                self._holds[address] = n
            else:
                self._holds.pop(address, None)

    def wait(self, address: bytes, timeout: float) -> FetchStatus | None:
        """Wait up to ``timeout`` seconds while ``address`` is being fetched; its status then."""
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                st = self._status.get(address)
                left = end - time.monotonic()
                if st is None or st.state != FETCHING or left <= 0:
                    return st
                self._done.wait(left)

    def close(self) -> None:
        """Stop accepting fetches; running downloads end within their own deadlines."""
        with self._lock:
            self._closed = True
        for _ in self._workers:
            self._queue.put(None)


def split_tiers(store: ModelStore) -> tuple[list[ModelStore], bool]:
    """The tiers of ``store`` that execution may read (memory, local directories), and whether
    there are others (hubs, S3) that only a background fetch may use."""
    local_kinds = (MemoryCache, LocalStore)
    if isinstance(store, TieredStore):
        tiers = store.tiers
        return [t for t in tiers if isinstance(t, local_kinds)], any(not isinstance(t, local_kinds) for t in tiers)
    if isinstance(store, local_kinds):
        return [store], False
    return [], True


class ModelResolver:
    """Resolves 32-byte model addresses through a model store, with an in-memory LRU cache.

    ``fetch_inline=True`` (single-user tools such as :class:`~ai_evm.evm.devchain.DevChain`, which
    hold no lock anyone waits on) reads remote tiers synchronously, as a plain store read; a node
    leaves it False so that remote tiers are only read by the background :attr:`fetcher`.
    ``fetch_required`` builds the :class:`ModelFetchRequired` raised (a node passes a subclass
    that is also one of its RPC errors).
    """

    def __init__(
        self,
        store: ModelStore | None,
        cache_size: int = 32,
        *,
        fetch_inline: bool = False,
        fetch_workers: int = 2,
        is_registered: Callable[[bytes, bytes], bool] | None = None,
        fetch_required: type[ModelFetchRequired] = ModelFetchRequired,
    ) -> None:
        self.store = store
        self.cache_size = cache_size
        self.is_registered = is_registered
        self.fetch_required = fetch_required
        self._bundles: OrderedDict[bytes, Bundle] = OrderedDict()
        self._costs: OrderedDict[tuple[bytes, int], ModelCost] = OrderedDict()
        self._lock = threading.Lock()
        local, remote = split_tiers(store) if store is not None else ([], False)
        self.fetch_inline = fetch_inline and remote
        #: What execution reads: the local tiers, filling the memory cache and the node's directory.
        self._local: ModelStore | None = None
        if local and store is not None:
            self._local = store if not remote else _local_view(store, local)
        self.fetcher: ModelFetcher | None = None
        if remote and not fetch_inline and store is not None:
            self.fetcher = ModelFetcher(self._fetch_remote, workers=fetch_workers)

    def _fetch_remote(self, address: bytes) -> tuple[bytes, Bundle]:
        assert self.store is not None
        data, bundle = self.store.fetch(address)  # verifies, and fills the local tiers
        self.remember(bundle)
        return data, bundle

    def resolve(self, address: bytes, origin: bytes = b"", l1_origin: bytes = b"") -> Bundle:
        """The bundle whose model address is ``address``, from memory or a local tier.

        Raises :class:`ModelUnavailable` (the call fails) for a model no store holds or that is not
        registered as of ``l1_origin`` (the executing block's L1 origin hash), :class:`ModelFetchRequired`
        (execution must be retried later) for one that is being fetched. ``origin`` is the sender of
        the transaction being executed, if any.
        """
        hexa = "0x" + address.hex()
        # INVARIANT: registration is checked first, whatever is cached (consensus, not a cache hint).
        registered = self.is_registered(address, l1_origin) if self.is_registered is not None else None
        if registered is False:
            raise ModelUnavailable(f"model {hexa} is not registered")
        with self._lock:
            bundle = self._bundles.get(address)
            if bundle is not None:
                self._bundles.move_to_end(address)
                return bundle
        if self.store is None:
            raise ModelUnavailable(f"model {hexa}: this node has no model store configured")
        local_error = ""
        if self._local is not None:
            try:
                bundle = self._local.get_bundle(address)
            except Exception as e:  # absent, corrupt, unreadable: a remote may still have it
                local_error = str(e)
            else:
                self.remember(bundle)
                return bundle
        if self.fetch_inline:
            try:
                bundle = self.store.get_bundle(address)
            except Exception as e:  # any store failure (missing, corrupt, network) is "not available"
                raise ModelUnavailable(f"model {hexa} is not available from the model store: {e}") from None
            self.remember(bundle)
            return bundle
        if self.fetcher is None:
            log.info("model %s unavailable: %s", hexa, local_error)
            raise ModelUnavailable(f"model {hexa} is not available from the model store: {local_error}")
        status = self.fetcher.request(address)
        if status.state == ABSENT and registered is None:
            raise ModelUnavailable(f"model {hexa} is not available: {status.detail}")
        raise self.fetch_required(address, status.describe(), origin)

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


def _local_view(store: ModelStore, local: list[ModelStore]) -> ModelStore:
    """A tiered store over the local tiers of ``store`` only (a copy found in an extra local
    directory is written to the node's own directory and memory cache, as a full read would)."""
    assert isinstance(store, TieredStore)
    extra = [t for t in local if t is not store.cache and t is not store.local]
    return TieredStore(store.cache, store.local, extra)


__all__ = [
    "ABSENT",
    "FAILED",
    "FETCHING",
    "READY",
    "FetchStatus",
    "ModelFetchRequired",
    "ModelFetcher",
    "ModelResolver",
    "split_tiers",
]
