"""The HTTP model hub: serves a local model directory by address (``aievm model serve``).

Routes:

- ``GET /models``: ``{"models": [{"address": "0x...", "size": N}, ...]}``
- ``GET /models/0x<address>``: the bundle bytes (``Range`` requests supported, one or several
  ranges); ``HEAD`` for existence and size. 404 for an unknown address, 400 for a malformed one.

Every file is verified against its address before it is first served, and again whenever it
changes on disk (size, mtime or inode); a corrupt file is answered with 500 and never served.
Clients verify what they receive anyway. Nothing a client sends can crash the server: bad
addresses and ranges get 4xx answers, unexpected errors a 500.
"""

from __future__ import annotations

import logging
import os
import threading

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import ModelIntegrityError, OpmlError
from .base import InvalidAddress, address_hex, parse_address, verify_bundle_bytes
from .local import LocalStore

log = logging.getLogger("aievm.hub")


class BundleFileResponse(FileResponse):
    """A file response with large chunks (loopback throughput is bound by per-chunk overhead)."""

    chunk_size = 1 << 20


class _Verified:
    """Which files have been verified, keyed by address, valid while the file's stat is unchanged."""

    def __init__(self) -> None:
        self._ok: dict[bytes, tuple[int, int, int]] = {}
        self._lock = threading.Lock()

    def check(self, store: LocalStore, address: bytes) -> os.stat_result:
        """Stat the file and verify it if it is new or changed. Raises ModelIntegrityError."""
        path = store.path(address)
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._ok.get(address) == key:
            return st
        with open(path, "rb") as f:
            data = f.read()
            st = os.fstat(f.fileno())
        verify_bundle_bytes(address, data)
        with self._lock:
            self._ok[address] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return st


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(store: LocalStore) -> Starlette:
    """The hub's ASGI application over a local directory store."""
    verified = _Verified()

    async def index(request: Request) -> Response:
        return JSONResponse({"service": "aievm model hub", "models": "/models"})

    async def list_models(request: Request) -> Response:
        try:
            addresses = await run_in_threadpool(store.list)
        except OpmlError as e:
            return _error(500, str(e))
        models = [{"address": address_hex(a), "size": store.size(a)} for a in addresses]
        return JSONResponse({"models": [m for m in models if m["size"] is not None]})

    async def get_model(request: Request) -> Response:
        try:
            address = parse_address(request.path_params["address"])
        except InvalidAddress as e:
            return _error(400, str(e))
        if not store.has(address):
            return _error(404, f"model {address_hex(address)} is not on this hub")
        try:
            st = await run_in_threadpool(verified.check, store, address)
        except FileNotFoundError:
            return _error(404, f"model {address_hex(address)} is not on this hub")
        except ModelIntegrityError as e:
            log.error("refusing to serve corrupt file: %s", e)
            return _error(500, f"stored copy is corrupt, not served: {e}")
        except OSError as e:
            return _error(500, f"cannot read model: {e.strerror}")
        headers = {
            "etag": f'"{address_hex(address)}"',
            "cache-control": "public, max-age=31536000, immutable",
        }
        return BundleFileResponse(
            store.path(address), stat_result=st, media_type="application/octet-stream", headers=headers
        )

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/models", list_models, methods=["GET"]),
        Route("/models/{address}", get_model, methods=["GET", "HEAD"]),
    ]
    return Starlette(routes=routes)


def serve(directory: str, host: str = "127.0.0.1", port: int = 8765, log_level: str = "warning") -> None:
    """Run the hub in the foreground until interrupted."""
    import uvicorn

    uvicorn.run(create_app(LocalStore(directory)), host=host, port=port, log_level=log_level)
