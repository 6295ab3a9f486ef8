"""Batcher data in EIP-4844 blobs (ai_evm.rollup.blobs): one encoding per payload, KZG commitments."""

from __future__ import annotations

import hashlib

import pytest

from ai_evm.rollup import blobs
from ai_evm.rollup.codec import CodecError


@pytest.mark.parametrize("size", [0, 1, blobs.USABLE_PER_BLOB - 4, blobs.USABLE_PER_BLOB - 3, 300_000,
                                  blobs.max_payload()])
def test_round_trip_uses_as_few_blobs_as_fit(size: int) -> None:
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    bs = blobs.encode_blobs(data)
    assert len(bs) == max(1, -(-(size + 4) // blobs.USABLE_PER_BLOB))
    assert all(len(b) == blobs.BLOB_BYTES and all(b[i] == 0 for i in range(0, len(b), 32)) for b in bs)
    assert blobs.decode_blobs(bs) == data


def test_too_much_data_is_refused() -> None:
    with pytest.raises(CodecError, match="blobs"):
        blobs.encode_blobs(bytes(blobs.max_payload() + 1))


def test_non_canonical_blobs_are_named() -> None:
    (good,) = blobs.encode_blobs(b"hello")
    cases = {
        "1..": [],
        "bytes": [good[:-1]],
        "zero byte": [b"\x01" + good[1:]],
        "after its length": [good[:100] + b"\x01" + good[101:]],
        "does not match": [good[:1] + (10**6).to_bytes(4, "big") + good[5:]],
    }
    for why, bs in cases.items():
        with pytest.raises(CodecError, match=why):
            blobs.decode_blobs(bs)
    with pytest.raises(CodecError, match="does not match"):  # a payload that fits one blob, sent as two
        blobs.decode_blobs([good, bytes(blobs.BLOB_BYTES)])


def test_kzg_commitment_proof_and_versioned_hash() -> None:
    import ckzg

    (blob,) = blobs.encode_blobs(b"batch data")
    c = blobs.commitment(blob)
    p = blobs.proof(blob, c)
    assert len(c) == len(p) == 48
    assert ckzg.verify_blob_kzg_proof(blob, c, p, blobs._setup())
    vh = blobs.versioned_hash(c)
    assert vh[0] == 1 and vh[1:] == hashlib.sha256(c).digest()[1:]
