"""The model registry as L2 consensus sees it: which models an L2 block may run.

:class:`RegistryView` follows the L1 ``ModelRegistry`` (its ``ModelRegistered`` events) and the L1
blocks the node has read, and answers the resolver's ``is_registered(address, l1_origin)``: a model
is usable in an L2 block whose L1 origin (the block's ``mix_hash``) is at or after the model's
registration block. Every node answers from L1 data alone, so an inference on an unregistered model
fails the same way on the sequencer and on every validator (docs/rollup.md "Models").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from web3 import Web3

from ai_evm.contracts import artifact

log = logging.getLogger(__name__)


class RegistryView:
    """Registrations and L1 block numbers by hash, synced from L1 with :meth:`sync`."""

    def __init__(self, w3: Web3, registry: str, on_registered: Callable[[bytes, str], None] | None = None) -> None:
        self.w3 = w3
        abi = list(artifact("ModelRegistry").abi)
        self.contract = w3.eth.contract(address=Web3.to_checksum_address(registry), abi=abi)
        self.on_registered = on_registered
        self.registered: dict[bytes, int] = {}  # model address -> L1 block of its registration
        self.uris: dict[bytes, str] = {}
        self.numbers: dict[bytes, int] = {}  # L1 block hash -> number (the origins this node knows)
        self.synced_to = -1
        self._lock = threading.Lock()

    def note_l1_block(self, number: int, block_hash: bytes) -> None:
        """Remember an L1 block the node read (an origin blocks may name)."""
        with self._lock:
            self.numbers[bytes(block_hash)] = number

    def rewind(self, ancestor: int, removed: list[bytes]) -> None:
        """An L1 reorg replaced the blocks after ``ancestor`` (hashes ``removed``): forget them and the
        registrations read from them; the next :meth:`sync` reads the new blocks' registrations."""
        with self._lock:
            for h in removed:
                self.numbers.pop(bytes(h), None)
            for model in [m for m, at in self.registered.items() if at > ancestor]:
                del self.registered[model]
                self.uris.pop(model, None)
            self.synced_to = min(self.synced_to, ancestor)

    def sync(self, to_block: int | None = None) -> int:
        """Read registrations up to ``to_block`` (default: the L1 head); returns how many were new."""
        head = int(self.w3.eth.block_number) if to_block is None else to_block
        if head <= self.synced_to:
            return 0
        logs: list[Any] = self.contract.events.ModelRegistered.get_logs(from_block=self.synced_to + 1, to_block=head)
        new = 0
        for ev in logs:
            model = bytes(ev["args"]["model"])
            with self._lock:
                if model in self.registered:
                    continue
                self.registered[model] = int(ev["args"]["l1Block"])
                self.uris[model] = str(ev["args"]["uri"])
            new += 1
            log.info("model 0x%s registered at L1 block %d (%s)", model.hex(), ev["args"]["l1Block"], ev["args"]["uri"])
            if self.on_registered is not None:
                self.on_registered(model, str(ev["args"]["uri"]))
        self.synced_to = head
        return new

    def is_registered(self, model: bytes, l1_origin: bytes) -> bool:
        """Whether ``model`` may run in an L2 block whose L1 origin hash is ``l1_origin``.

        An origin this node has not read is answered False with a warning: blocks are only built on
        origins the node read (the sequencer chose them, the deriver checked them), so this happens
        only for reads against a header without an origin (genesis)."""
        with self._lock:
            at = self.registered.get(bytes(model))
            origin = self.numbers.get(bytes(l1_origin))
        if origin is None:
            log.warning("registry check against an unknown L1 origin 0x%s", bytes(l1_origin).hex())
            return False
        return at is not None and at <= origin


__all__ = ["RegistryView"]
