"""The model store interface: address -> bundle bytes, every byte verified against the address.

A model address (``opml.commitment``) commits to every byte of a bundle, and
:func:`opml.bundle.decode_bundle` accepts only canonical encodings, so "decode, recompute the
address, compare" proves that a byte string *is* the bundle of that address. Every backend runs
that check (:func:`verify_bundle_bytes`) on whatever it reads before returning it or caching it:
a tampered, truncated or substituted bundle raises :class:`~opml.errors.ModelIntegrityError`.

Backends implement four small primitives (``_read``, ``_write``, ``has``, ``list``, ``remove``);
the public ``put``/``get``/``get_bundle`` add verification on top of them.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

from ..bundle import Bundle, decode_bundle
from ..commitment import compute_address
from ..errors import BundleError, ModelIntegrityError, ModelNotAvailable, OpmlError

ADDRESS_BYTES = 32
#: Default largest bundle a store downloads from a remote source (``--max-model-size``, 1 GiB).
MAX_BUNDLE_BYTES = 1 << 30

_HEX_ADDRESS = re.compile(r"(0x)?([0-9a-fA-F]{64})")


class StoreError(OpmlError):
    """A model store is misconfigured, unreachable, or cannot do what was asked."""


class InvalidAddress(StoreError, ValueError):
    """A string or byte string is not a 32-byte model address."""


class ReadOnlyStore(StoreError):
    """The store (e.g. an HTTP hub client) cannot accept or delete models."""


class ModelAbsent(ModelNotAvailable):
    """The store answered that it does not hold the model (a 404, no such file or key).

    Unlike a plain :class:`ModelNotAvailable` (which may be transient: a hub that could not be
    reached, a download that broke a limit), this is a definite answer from that store.
    """


class Progress(Protocol):
    """What a progress bar must offer (a ``tqdm`` instance does)."""

    def update(self, n: int) -> object: ...

    def close(self) -> object: ...


#: ``progress(description, total_bytes_or_None)`` makes a bar for one transfer.
ProgressFactory = Callable[[str, "int | None"], Progress]


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def no_progress(desc: str, total: int | None) -> Progress:
    """A :data:`ProgressFactory` that shows nothing."""
    return _NoProgress()


def parse_address(address: bytes | str) -> bytes:
    """A model address as 32 bytes, from 32 raw bytes or 64 hex digits (``0x`` optional)."""
    if isinstance(address, bytes | bytearray):
        if len(address) != ADDRESS_BYTES:
            raise InvalidAddress(f"a model address is 32 bytes, got {len(address)}")
        return bytes(address)
    if isinstance(address, str):
        m = _HEX_ADDRESS.fullmatch(address.strip())
        if m:
            return bytes.fromhex(m.group(2))
        raise InvalidAddress(f"not a model address (want 0x + 64 hex digits): {address[:80]!r}")
    raise InvalidAddress(f"not a model address: {type(address).__name__}")


def address_hex(address: bytes) -> str:
    """``0x`` + 64 lowercase hex digits."""
    return "0x" + address.hex()


def verify_bundle_bytes(address: bytes, data: bytes) -> Bundle:
    """Decode ``data`` and check that it is exactly the bundle of ``address``.

    Returns the decoded bundle. Raises :class:`ModelIntegrityError` naming the address for bytes
    that are truncated, malformed, non-canonical, or of another bundle.
    """
    try:
        bundle = decode_bundle(data)
    except BundleError as e:
        raise ModelIntegrityError(address, f"{len(data)} bytes are not a valid bundle: {e}") from None
    got = compute_address(bundle)
    if got != address:
        raise ModelIntegrityError(address, f"bytes hash to a different address {address_hex(got)}")
    return bundle


def bundle_bytes_and_address(bundle: bytes | bytearray | Bundle) -> tuple[bytes, bytes, Bundle]:
    """Canonical bytes, address and decoded form of a bundle given as bytes or :class:`Bundle`."""
    if isinstance(bundle, Bundle):
        data = bundle.encoded
        return data, compute_address(bundle), bundle
    data = bytes(bundle)
    decoded = decode_bundle(data)  # BundleError for anything that is not a canonical bundle
    return data, compute_address(decoded), decoded


class ModelStore(ABC):
    """Maps model addresses to bundle bytes; everything read is verified against the address."""

    #: False for stores that cannot take new models (``put`` raises :class:`ReadOnlyStore`).
    writable = True

    def put(self, bundle: bytes | bytearray | Bundle) -> bytes:
        """Verify and store a bundle (bytes or decoded); returns its 32-byte address.

        Storing a model that is already there is a no-op. Raises :class:`BundleError` for bytes
        that are not a canonical bundle.
        """
        if not self.writable:
            raise ReadOnlyStore(f"{self} is read-only")
        data, address, decoded = bundle_bytes_and_address(bundle)
        self._write(address, data, decoded)
        return address

    def get(self, address: bytes | str) -> bytes:
        """The verified bundle bytes of ``address``.

        Raises :class:`ModelNotAvailable` if the store lacks it, :class:`ModelIntegrityError` if
        what it holds is not that bundle.
        """
        return self.fetch(parse_address(address))[0]

    def get_bundle(self, address: bytes | str) -> Bundle:
        """The verified, decoded bundle of ``address`` (errors as :meth:`get`)."""
        return self.fetch(parse_address(address))[1]

    def fetch(self, address: bytes) -> tuple[bytes, Bundle]:
        """Read and verify: ``(bytes, decoded bundle)``. Backends may override (e.g. to retry)."""
        data = self._read(address)
        return data, verify_bundle_bytes(address, data)

    @abstractmethod
    def _read(self, address: bytes) -> bytes:
        """Raw, unverified bytes stored under ``address``; :class:`ModelNotAvailable` if none."""

    @abstractmethod
    def _write(self, address: bytes, data: bytes, bundle: Bundle | None = None) -> None:
        """Store bytes the caller has already verified to be the bundle of ``address``."""

    @abstractmethod
    def has(self, address: bytes | str) -> bool:
        """Whether the store holds something under ``address`` (not verified)."""

    @abstractmethod
    def list(self) -> list[bytes]:
        """Addresses of the models held, sorted."""

    @abstractmethod
    def remove(self, address: bytes | str) -> bool:
        """Delete a model; returns False if it was not there."""

    def size(self, address: bytes | str) -> int | None:
        """Stored size in bytes, or None if unknown / absent (backends override cheaply)."""
        try:
            return len(self.get(address))
        except ModelNotAvailable:
            return None

    def _missing(self, address: bytes) -> ModelAbsent:
        return ModelAbsent(f"model {address_hex(address)} is not in {self}")
