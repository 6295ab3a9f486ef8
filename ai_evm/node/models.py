"""The node's side of model fetching, and ``aievm_getModel``.

Execution never downloads a model (:mod:`ai_evm.evm.models`): it raises
:class:`~ai_evm.evm.ModelFetchRequired` and the model is fetched in the background. Here:

- :class:`ModelNotYetLocal`, the node's form of that signal: also a -32000 :class:`ServerError`,
  so an ``eth_call``/``eth_estimateGas`` that needs a model still being fetched is answered at
  once with ``model 0x... is not available on this node yet: fetching it ...; retry shortly``;
- :class:`ModelWaits`, the sequencer's parking lot: the transactions of a sender whose execution
  needed such a model wait (pending, nothing failed, nothing dropped) while other senders' blocks
  are mined; once the fetch ends (the model is local, or no store has it) they are mined again;
- ``aievm_getModel``, which runs outside the chain lock and so may wait a bounded time for a fetch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from eth.abc import SignedTransactionAPI

from ai_evm.evm import FetchStatus, ModelFetcher, ModelFetchRequired, ModelResolver
from ai_evm.evm.gas import inference_gas
from ai_evm.evm.models import ABSENT, READY
from opml.bundle import Bundle, TensorSpec
from opml.store import ModelStore

from .errors import ServerError

log = logging.getLogger(__name__)

#: How long ``aievm_getModel`` waits for a model being fetched before answering "not yet".
GET_MODEL_WAIT = 10.0


class ModelNotYetLocal(ModelFetchRequired, ServerError):
    """A model is being fetched in the background; the request may be retried shortly (-32000)."""

    def __init__(self, address: bytes, detail: str, origin: bytes = b"") -> None:
        super().__init__(address, detail, origin)
        self.data = {"model": "0x" + address.hex(), "retry": True}


def node_resolver(store: ModelStore | None) -> ModelResolver:
    """The resolver of a node: local tiers in execution, remote tiers fetched in the background."""
    return ModelResolver(store, fetch_required=ModelNotYetLocal)


class ModelWaits:
    """Senders whose transactions wait for a model fetch (see the module docstring).

    The sequencer calls :meth:`park` when a block build raised :class:`ModelFetchRequired`, skips
    the transactions for which :meth:`is_parked` is true, and gets ``on_ready()`` called (from a
    fetch thread, outside any lock of ours) whenever parked senders may run again.
    """

    def __init__(self, fetcher: ModelFetcher | None, on_ready: Callable[[], None]) -> None:
        self.fetcher, self.on_ready = fetcher, on_ready
        self._lock = threading.Lock()
        self._parked: dict[bytes, bytes] = {}  # sender -> model address
        if fetcher is not None:
            fetcher.subscribe(self._fetched)

    def is_parked(self, tx: SignedTransactionAPI) -> bool:
        """Whether ``tx``'s sender waits for a model."""
        return bytes(tx.sender) in self._parked

    def parked(self) -> dict[bytes, bytes]:
        """A copy of sender -> model address for every waiting sender."""
        with self._lock:
            return dict(self._parked)

    def park(self, signal: ModelFetchRequired) -> bool:
        """Make ``signal.origin``'s transactions wait for ``signal.address``.

        Returns False if that is impossible (no sender, no fetcher, or the sender is already
        parked, which would mean the signal did not come from a parked transaction): the
        caller must then treat the signal as an error.
        """
        sender, address = signal.origin, signal.address
        if not sender or self.fetcher is None:
            return False
        with self._lock:
            if sender in self._parked:
                return False
            self._parked[sender] = address
        self.fetcher.hold(address)
        log.info("transactions of 0x%s wait for model 0x%s: %s", sender.hex(), address.hex(), signal.detail)
        status = self.fetcher.status(address)
        if status is None or status.state in (READY, ABSENT):  # it ended before we parked: wake now
            threading.Thread(target=self._fetched, args=(address, status), daemon=True).start()
        return True

    def _fetched(self, address: bytes, status: FetchStatus | None) -> None:
        if status is not None and status.state not in (READY, ABSENT):
            return  # failed: the fetcher retries (we hold the address); the senders keep waiting
        with self._lock:
            senders = [s for s, a in self._parked.items() if a == address]
            for s in senders:
                del self._parked[s]
        if not senders:
            return
        assert self.fetcher is not None
        for _ in senders:
            self.fetcher.release(address)
        try:
            self.on_ready()
        except Exception:
            log.exception("mining after model 0x%s arrived failed", address.hex())


def _nbytes(spec: TensorSpec) -> int:
    return int(np.prod(spec.concrete_shape(1), dtype=np.int64)) * np.dtype(spec.dtype.np).itemsize


def _spec(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "dtype": spec.dtype.name.lower(),
        "shape": list(spec.shape),
        "bytesPerSample": _nbytes(spec),
    }


def model_info(bundle: Bundle, resolver: ModelResolver) -> dict[str, Any]:
    """JSON description of a model: name, tensors, size, cost and gas of one sample."""
    cost = resolver.cost(bundle, 1)
    in_bytes = sum(_nbytes(s) for s in bundle.input_specs())
    out_bytes = sum(_nbytes(s) for s in bundle.output_specs())
    return {
        "address": bundle.address_hex,
        "name": bundle.metadata.get("name") or bundle.metadata.get("source", ""),
        "metadata": dict(bundle.metadata),
        "inputs": [_spec(s) for s in bundle.input_specs()],
        "outputs": [_spec(s) for s in bundle.output_specs()],
        "size": hex(len(bundle.encoded)),
        "nodes": len(bundle.nodes),
        "cost": {"macs": hex(cost.macs), "elementwise": hex(cost.elementwise), "weightBytes": hex(cost.weight_bytes)},
        "inputBytes": hex(in_bytes),
        "outputBytes": hex(out_bytes),
        "gasPerSample": hex(inference_gas(cost, in_bytes, out_bytes)),
    }


def get_model(resolver: ModelResolver, address: bytes, wait: float = GET_MODEL_WAIT) -> dict[str, Any]:
    """Resolve ``address`` and describe it; -32000 with the store's reason if unavailable.

    Runs outside the chain lock, so a model being fetched is waited for up to ``wait`` seconds.
    """
    try:
        try:
            bundle = resolver.resolve(address)
        except ModelFetchRequired:
            if resolver.fetcher is None:
                raise
            resolver.fetcher.wait(address, wait)
            bundle = resolver.resolve(address)
    except ServerError:
        raise
    except Exception as e:
        raise ServerError(f"model 0x{address.hex()} not available: {e}") from None
    return model_info(bundle, resolver)
