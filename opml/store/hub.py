"""Client of the HTTP model hub (``aievm model serve``): fetch bundles by address, verified.

The client tries its hub URLs in order. A download is streamed in chunks (with a progress bar
when asked) and resumed with an HTTP ``Range`` request if the connection drops; a body that stays
short is a truncated download. Whatever arrives is verified against the address before it is
returned (and so before any tier caches it); a hub that serves wrong bytes is reported and the
next hub is tried. The hub protocol: ``GET /models`` (JSON listing), ``GET``/``HEAD
/models/0x<address>`` (bundle bytes, 404 if unknown, 400 for a malformed address).
"""

from __future__ import annotations

from collections.abc import Sequence

import requests

from ..bundle import Bundle
from ..errors import ModelIntegrityError, ModelNotAvailable
from .base import (
    MAX_BUNDLE_BYTES,
    ModelStore,
    ProgressFactory,
    ReadOnlyStore,
    StoreError,
    address_hex,
    no_progress,
    parse_address,
    verify_bundle_bytes,
)


class HubStore(ModelStore):
    """Read-only client of one or more model hubs, tried in order."""

    writable = False

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        timeout: float = 30.0,
        retries: int = 2,
        chunk_size: int = 1 << 20,
        max_bytes: int = MAX_BUNDLE_BYTES,
        progress: ProgressFactory = no_progress,
        session: requests.Session | None = None,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise StoreError("a hub store needs at least one URL")
        self.urls = [u.rstrip("/") for u in self.urls]
        self.timeout, self.retries, self.chunk_size = timeout, retries, chunk_size
        self.max_bytes, self.progress = max_bytes, progress
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        return f"HubStore({self.urls!r})"

    __str__ = __repr__

    def model_url(self, base: str, address: bytes) -> str:
        """URL of one model on one hub."""
        return f"{base}/models/{address_hex(address)}"

    def fetch(self, address: bytes) -> tuple[bytes, Bundle]:
        """Download from the first hub that has a valid copy; errors say what each hub did."""
        bad: list[str] = []
        others: list[str] = []
        for base in self.urls:
            try:
                data = self._download(base, address)
                return data, verify_bundle_bytes(address, data)
            except ModelIntegrityError as e:
                bad.append(f"{base}: {e}")
            except ModelNotAvailable:
                others.append(f"{base}: not found")
            except StoreError as e:
                others.append(str(e))
        if bad:
            raise ModelIntegrityError(address, "hub served wrong or truncated bytes: " + "; ".join(bad + others))
        raise ModelNotAvailable(f"model {address_hex(address)} not available from hubs: " + "; ".join(others))

    def _read(self, address: bytes) -> bytes:
        return self.fetch(address)[0]

    def _download(self, base: str, address: bytes) -> bytes:
        url = self.model_url(base, address)
        got = bytearray()
        total: int | None = None
        bar = None
        last_error = ""
        try:
            for _attempt in range(self.retries + 1):
                headers = {"Range": f"bytes={len(got)}-"} if got else {}
                try:
                    with self.session.get(url, stream=True, timeout=self.timeout, headers=headers) as r:
                        if r.status_code == 404:
                            raise ModelNotAvailable(f"{url}: not found")
                        if r.status_code == 200:
                            got.clear()
                            total = _int_header(r.headers.get("content-length"))
                        elif r.status_code == 206 and got:
                            if not r.headers.get("content-range", "").startswith(f"bytes {len(got)}-"):
                                raise StoreError(f"{url}: hub answered a resume with the wrong range")
                        else:
                            raise StoreError(f"{url}: HTTP {r.status_code} {r.reason}")
                        if total is not None and total > self.max_bytes:
                            raise ModelIntegrityError(address, f"{url} announces {total} bytes, over the limit")
                        if bar is None:
                            bar = self.progress(f"fetch {address_hex(address)[:10]}", total)
                        for chunk in r.iter_content(self.chunk_size):
                            got += chunk
                            bar.update(len(chunk))
                            if len(got) > self.max_bytes:
                                raise ModelIntegrityError(address, f"{url} sent over {self.max_bytes} bytes")
                    if total is None or len(got) >= total:
                        return bytes(got)
                    last_error = f"connection closed after {len(got)} of {total} bytes"
                except (
                    requests.ConnectionError,
                    requests.Timeout,
                    requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError,
                ) as e:
                    if not got and isinstance(e, requests.ConnectionError | requests.Timeout):
                        raise StoreError(f"{url}: cannot connect: {e}") from None
                    last_error = f"{type(e).__name__} after {len(got)} bytes"
        finally:
            if bar is not None:
                bar.close()
        raise ModelIntegrityError(address, f"download from {url} truncated ({last_error})")

    def _write(self, address: bytes, data: bytes, bundle: Bundle | None = None) -> None:
        raise ReadOnlyStore(f"{self} is read-only: add models on the hub's own store")

    def _head(self, base: str, address: bytes) -> requests.Response | None:
        try:
            r = self.session.head(self.model_url(base, address), timeout=self.timeout)
        except requests.RequestException:
            return None
        return r if r.status_code == 200 else None

    def has(self, address: bytes | str) -> bool:
        """Whether some hub answers ``HEAD`` with 200 (not verified)."""
        a = parse_address(address)
        return any(self._head(base, a) is not None for base in self.urls)

    def size(self, address: bytes | str) -> int | None:
        """Size announced by the first hub that has the model."""
        a = parse_address(address)
        for base in self.urls:
            r = self._head(base, a)
            if r is not None:
                return _int_header(r.headers.get("content-length"))
        return None

    def list(self) -> list[bytes]:
        """Union of the hubs' listings (unreachable hubs are skipped unless all are)."""
        found: set[bytes] = set()
        errors = []
        for base in self.urls:
            try:
                r = self.session.get(f"{base}/models", timeout=self.timeout)
                r.raise_for_status()
                found.update(parse_address(m["address"]) for m in r.json()["models"])
            except (requests.RequestException, ValueError, KeyError, TypeError) as e:
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
