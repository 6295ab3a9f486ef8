"""The model store: the data-availability layer that maps model addresses to verified bundles.

A contract names a model by its 32-byte address (``opml.commitment``); every node must obtain
exactly those bundle bytes from wherever they are kept and refuse anything else. Backends:

- :class:`LocalStore`: a local directory, one file per model (atomic, crash-safe writes);
- :class:`HubStore`: client of HTTP model hubs (``aievm model serve``, :mod:`opml.store.server`),
  with downloads bounded in size, time and rate (:class:`FetchLimits`, :mod:`opml.store.download`);
- :class:`S3Store`: an S3-compatible bucket via boto3 (:mod:`opml.store.s3`, imported lazily);
- :class:`MemoryCache` and :class:`TieredStore` (memory -> local -> remotes), what a node uses.

Every byte read from any backend is verified against the address (:func:`verify_bundle_bytes`)
before it is returned or cached; failures raise :class:`~opml.errors.ModelIntegrityError`.
:func:`open_store` builds a store from a URI. ``docs/store.md`` has the details.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelIntegrityError, ModelNotAvailable
from .base import (
    InvalidAddress,
    ModelAbsent,
    ModelStore,
    ReadOnlyStore,
    StoreError,
    address_hex,
    parse_address,
    verify_bundle_bytes,
)
from .download import FetchLimits, TransferFailed
from .factory import node_store, open_store
from .local import LocalStore, default_store_dir
from .memory import MemoryCache, TieredStore

__all__ = [
    "FetchLimits",
    "HubStore",
    "InvalidAddress",
    "LocalStore",
    "MemoryCache",
    "ModelAbsent",
    "ModelIntegrityError",
    "ModelNotAvailable",
    "ModelStore",
    "ReadOnlyStore",
    "S3Store",
    "StoreError",
    "TieredStore",
    "TransferFailed",
    "address_hex",
    "default_store_dir",
    "node_store",
    "open_store",
    "parse_address",
    "verify_bundle_bytes",
]


def __getattr__(name: str) -> Any:
    # The network backends pull in requests / boto3; import them only when asked for.
    if name == "HubStore":
        from .hub import HubStore

        return HubStore
    if name == "S3Store":
        from .s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
