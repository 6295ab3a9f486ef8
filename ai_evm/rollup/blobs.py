"""Batcher data in EIP-4844 blobs (``docs/rollup.md`` "Blobs").

A blob is 4096 field elements of 32 bytes, each below the BLS12-381 scalar modulus. Data goes in
31 bytes per field element (byte 0 of every element is zero, so any data is a valid element):
126,976 bytes per blob. The payload is ``uint32 length (BE) ‖ data`` spread over as many blobs as
needed (at most ``MAX_BLOBS_PER_TX``), the rest zero. Decoding checks the zero bytes, the length and
the zero tail, so one payload has exactly one encoding and anything else is a :class:`CodecError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from .codec import CodecError

FIELD_ELEMENTS = 4096
BLOB_BYTES = 32 * FIELD_ELEMENTS
USABLE_PER_ELEMENT = 31
USABLE_PER_BLOB = USABLE_PER_ELEMENT * FIELD_ELEMENTS
MAX_BLOBS_PER_TX = 6
"""Blobs per batcher transaction (Prague's per-block target is 6, its maximum 9)."""
VERSIONED_HASH_VERSION_KZG = 1


def max_payload(n_blobs: int = MAX_BLOBS_PER_TX) -> int:
    """Most data bytes ``n_blobs`` blobs can carry."""
    return n_blobs * USABLE_PER_BLOB - 4


def encode_blobs(data: bytes) -> list[bytes]:
    """The blobs carrying ``data`` (as few as fit it)."""
    payload = len(data).to_bytes(4, "big") + data
    n = -(-len(payload) // USABLE_PER_BLOB)
    if n > MAX_BLOBS_PER_TX:
        raise CodecError(f"{len(data)} bytes need {n} blobs, more than {MAX_BLOBS_PER_TX}")
    payload += bytes(n * USABLE_PER_BLOB - len(payload))
    blobs = []
    for b in range(n):
        chunk = payload[b * USABLE_PER_BLOB : (b + 1) * USABLE_PER_BLOB]
        blobs.append(b"".join(b"\x00" + chunk[i : i + USABLE_PER_ELEMENT]
                              for i in range(0, USABLE_PER_BLOB, USABLE_PER_ELEMENT)))
    return blobs


def decode_blobs(blobs: Sequence[bytes]) -> bytes:
    """The data of a batcher transaction's blobs (inverse of :func:`encode_blobs`)."""
    if not 0 < len(blobs) <= MAX_BLOBS_PER_TX or any(len(b) != BLOB_BYTES for b in blobs):
        raise CodecError(f"expected 1..{MAX_BLOBS_PER_TX} blobs of {BLOB_BYTES} bytes")
    parts = []
    for blob in blobs:
        for i in range(0, BLOB_BYTES, 32):
            if blob[i] != 0:
                raise CodecError(f"field element {i // 32} does not start with a zero byte")
            parts.append(blob[i + 1 : i + 32])
    payload = b"".join(parts)
    n = int.from_bytes(payload[:4], "big")
    if n > len(payload) - 4 or -(-(n + 4) // USABLE_PER_BLOB) != len(blobs):
        raise CodecError(f"blob payload length {n} does not match {len(blobs)} blobs")
    if any(payload[4 + n :]):
        raise CodecError("blob payload has non-zero bytes after its length")
    return payload[4 : 4 + n]


@cache
def _setup() -> int:
    """Load the KZG trusted setup once (the one py-evm ships, as the mainnet ceremony's)."""
    import ckzg
    import eth

    path = Path(eth.__file__).parent / "_utils" / "kzg_trusted_setup.txt"
    return ckzg.load_trusted_setup(str(path), 0)  # type: ignore[no-any-return]


def commitment(blob: bytes) -> bytes:
    """The blob's KZG commitment (48 bytes)."""
    import ckzg

    return bytes(ckzg.blob_to_kzg_commitment(blob, _setup()))


def proof(blob: bytes, commit: bytes) -> bytes:
    """The blob's KZG proof for its commitment (48 bytes)."""
    import ckzg

    return bytes(ckzg.compute_blob_kzg_proof(blob, commit, _setup()))


def versioned_hash(commit: bytes) -> bytes:
    """EIP-4844 versioned hash: ``0x01 ‖ sha256(commitment)[1:]``."""
    return bytes([VERSIONED_HASH_VERSION_KZG]) + hashlib.sha256(commit).digest()[1:]


__all__ = ["BLOB_BYTES", "MAX_BLOBS_PER_TX", "USABLE_PER_BLOB", "commitment", "decode_blobs", "encode_blobs",
           "max_payload", "proof", "versioned_hash"]
