"""Client of the HTTP model hub (``aievm model serve``): fetch bundles by address, verified.

The client tries its hub URLs in order. A download is bounded in size, time and rate
(:class:`~opml.store.download.FetchLimits`: ``--max-model-size``, ``--model-fetch-deadline``...),
streamed into one buffer (with a progress bar when asked), decompressed in bounded steps if the hub
compresses it, and resumed with an HTTP ``Range`` request if the connection drops; a body that stays
short is a truncated download. Whatever arrives is verified against the address before it is
returned (and so before any tier caches it); a hub that serves wrong bytes is reported and the
next hub is tried. The hub protocol: ``GET /models`` (JSON listing), ``GET``/``HEAD
/models/0x<address>`` (bundle bytes, 404 if unknown, 400 for a malformed address).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from ..bundle import Bundle
from ..errors import ModelIntegrityError, ModelNotAvailable
from .base import (
    ModelAbsent,
    ModelStore,
    ProgressFactory,
    ReadOnlyStore,
    StoreError,
    address_hex,
    no_progress,
    parse_address,
    verify_bundle_bytes,
)
from .download import FetchLimits, download, request

#: Largest ``GET /models`` listing read (about 100 bytes per model).
MAX_LISTING_BYTES = 64 << 20


class HubStore(ModelStore):
    """Read-only client of one or more model hubs, tried in order."""

    writable = False

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        limits: FetchLimits | None = None,
        retries: int = 2,
        progress: ProgressFactory = no_progress,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise StoreError("a hub store needs at least one URL")
        self.urls = [u.rstrip("/") for u in self.urls]
        self.limits = limits or FetchLimits()
        self.retries, self.progress = retries, progress

    def __repr__(self) -> str:
        return f"HubStore({self.urls!r})"

    __str__ = __repr__

    def model_url(self, base: str, address: bytes) -> str:
        """URL of one model on one hub."""
        return f"{base}/models/{address_hex(address)}"

    def fetch(self, address: bytes) -> tuple[bytes, Bundle]:
        """Download from the first hub that has a valid copy; errors say what each hub did.

        :class:`ModelAbsent` if every hub answered 404, :class:`ModelIntegrityError` if some hub
        served wrong or truncated bytes and none served the right ones, else
        :class:`ModelNotAvailable` naming what went wrong with each hub.
        """
        bad: list[str] = []
        others: list[str] = []
        absent = 0
        for base in self.urls:
            try:
                data = download(
                    self.model_url(base, address), address, self.limits, retries=self.retries, progress=self.progress
                )
                return data, verify_bundle_bytes(address, data)
            except ModelIntegrityError as e:
                bad.append(f"{base}: {e}")
            except ModelAbsent:
                others.append(f"{base}: not found")
                absent += 1
            except StoreError as e:
                others.append(str(e))
        if bad:
            raise ModelIntegrityError(address, "hub served wrong or truncated bytes: " + "; ".join(bad + others))
        what = f"model {address_hex(address)} not available from hubs: " + "; ".join(others)
        raise ModelAbsent(what) if absent == len(self.urls) else ModelNotAvailable(what)

    def _read(self, address: bytes) -> bytes:
        return self.fetch(address)[0]

    def _write(self, address: bytes, data: bytes, bundle: Bundle | None = None) -> None:
        raise ReadOnlyStore(f"{self} is read-only: add models on the hub's own store")

    def _head(self, base: str, address: bytes) -> dict[str, str] | None:
        try:
            status, headers, _ = request(self.model_url(base, address), self.limits, "HEAD")
        except StoreError:
            return None
        return headers if status == 200 else None

    def has(self, address: bytes | str) -> bool:
        """Whether some hub answers ``HEAD`` with 200 (not verified)."""
        a = parse_address(address)
        return any(self._head(base, a) is not None for base in self.urls)

    def size(self, address: bytes | str) -> int | None:
        """Size announced by the first hub that has the model."""
        a = parse_address(address)
        for base in self.urls:
            headers = self._head(base, a)
            if headers is not None:
                return _int_header(headers.get("content-length"))
        return None

    def list(self) -> list[bytes]:
        """Union of the hubs' listings (unreachable hubs are skipped unless all are)."""
        found: set[bytes] = set()
        errors = []
        limits = replace(self.limits, max_bytes=min(self.limits.max_bytes, MAX_LISTING_BYTES))
        for base in self.urls:
            try:
                status, _, body = request(f"{base}/models", limits)
                if status != 200:
                    raise StoreError(f"HTTP {status}")
                found.update(parse_address(m["address"]) for m in json.loads(body)["models"])
            except (StoreError, ValueError, KeyError, TypeError) as e:
                errors.append(f"{base}: {e}")
        if errors and len(errors) == len(self.urls):
            raise StoreError("no hub could be listed: " + "; ".join(errors))
        return sorted(found)

    def remove(self, address: bytes | str) -> bool:
        """Hubs are read-only through this client."""
        raise ReadOnlyStore(f"{self} is read-only")


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
