"""Turn a store URI (as given to ``--store``) into a :class:`~opml.store.base.ModelStore`.

- a plain path or ``file:///path``: :class:`~opml.store.local.LocalStore`
- ``http://host:port`` or ``https://...``: :class:`~opml.store.hub.HubStore`
- ``s3://bucket/prefix[?endpoint=http://host:port]``: :class:`~opml.store.s3.S3Store`
- several of these separated by commas: a :class:`~opml.store.memory.TieredStore` with a memory
  cache, the first local directory as its local tier, and the others as remotes in order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from .base import ModelStore, ProgressFactory, StoreError, no_progress
from .download import FetchLimits
from .local import LocalStore
from .memory import MemoryCache, TieredStore


def open_store(
    uri: str | os.PathLike[str] | None = None,
    *,
    progress: ProgressFactory = no_progress,
    limits: FetchLimits | None = None,
) -> ModelStore:
    """The store named by ``uri`` (the default local directory when empty).

    ``limits`` bound every download from a hub or S3 (default :class:`FetchLimits`).
    """
    text = os.fspath(uri) if uri is not None else ""
    parts = [p.strip() for p in text.split(",") if p.strip()] if "," in text else [text.strip()]
    if len(parts) > 1:
        stores = [_open_one(p, progress, limits) for p in parts]
        local = next((s for s in stores if isinstance(s, LocalStore)), None)
        return TieredStore(MemoryCache(), local, [s for s in stores if s is not local])
    return _open_one(parts[0] if parts else "", progress, limits)


def node_store(
    local_dir: str | os.PathLike[str] | None = None,
    remotes: Sequence[str] = (),
    *,
    cache_bytes: int = 2 << 30,
    progress: ProgressFactory = no_progress,
    limits: FetchLimits | None = None,
) -> TieredStore:
    """The store a node uses: memory cache -> local directory -> remote hubs / S3 (in order)."""
    remote_stores = [_open_one(r, progress, limits) for r in remotes]
    return TieredStore(MemoryCache(cache_bytes), LocalStore(local_dir), remote_stores)


def _open_one(uri: str, progress: ProgressFactory, limits: FetchLimits | None) -> ModelStore:
    if not uri:
        return LocalStore()
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme in ("", "file"):
        path = unquote(urlsplit(uri).path) if scheme == "file" else uri
        return LocalStore(path)
    if scheme in ("http", "https"):
        from .hub import HubStore

        return HubStore(uri, progress=progress, limits=limits)
    if scheme == "s3":
        from .s3 import S3Store

        return S3Store(uri, progress=progress, limits=limits)
    raise StoreError(f"unknown store URI scheme {scheme!r} in {uri!r} (use a path, http(s)://, s3://)")
