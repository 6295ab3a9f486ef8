"""The S3 backend against a real ``moto_server`` process on a free local port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from opml.errors import ModelIntegrityError, ModelNotAvailable
from opml.store import LocalStore, MemoryCache, S3Store, StoreError, TieredStore, open_store
from opml.store.testing import example_bundle, moto_process

BUNDLE = example_bundle([2 << 20, 300], seed=21)
DATA = BUNDLE.encoded
ADDR = BUNDLE.address
SMALL = example_bundle([100], seed=22)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with moto_process() as url:
            yield url


def _store(endpoint: str, prefix: str) -> S3Store:
    store = S3Store(f"s3://models/{prefix}", endpoint_url=endpoint)
    store.create_bucket()
    return store


def test_round_trip_through_s3(endpoint: str) -> None:
    store = _store(endpoint, "round/trip")
    assert store.list() == [] and not store.has(ADDR)
    assert store.put(DATA) == ADDR and store.put(SMALL) == SMALL.address
    assert store.get(ADDR) == DATA
    assert store.get_bundle(SMALL.address).address == SMALL.address
    assert store.has(ADDR) and store.size(ADDR) == len(DATA)
    assert store.list() == sorted([ADDR, SMALL.address])
    assert store.remove(ADDR) and not store.remove(ADDR)
    with pytest.raises(ModelNotAvailable, match=ADDR.hex()):
        store.get(ADDR)
    assert _store(endpoint, "elsewhere").list() == []  # prefixes are separate namespaces


def test_tampered_or_truncated_objects_are_detected(endpoint: str) -> None:
    store = _store(endpoint, "tamper")
    raw = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for bad in (DATA[:-1], DATA[:1000], DATA[:70] + bytes([DATA[70] ^ 1]) + DATA[71:], SMALL.encoded):
        raw.put_object(Bucket="models", Key=store.key(ADDR), Body=bad)
        with pytest.raises(ModelIntegrityError, match="0x" + ADDR.hex()):
            store.get(ADDR)


def test_s3_as_a_remote_tier_via_uri(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = _store(endpoint, "tier")
    seed.put(DATA)
    monkeypatch.setenv("AIEVM_S3_ENDPOINT", endpoint)
    tiered = open_store(f"{tmp_path},s3://models/tier")
    assert isinstance(tiered, TieredStore) and isinstance(tiered.cache, MemoryCache)
    assert tiered.get(ADDR) == DATA
    assert LocalStore(tmp_path).get(ADDR) == DATA
    via_query = open_store(f"s3://models/tier?endpoint={endpoint}")
    assert via_query.list() == [ADDR]


def test_missing_bucket_and_dead_endpoint_are_named_errors(endpoint: str, tmp_path: Path) -> None:
    from botocore.config import Config

    with pytest.raises(ModelNotAvailable):
        S3Store("s3://no-such-bucket/x", endpoint_url=endpoint).get(ADDR)
    dead_url = "http://127.0.0.1:9"  # discard port: nothing listens
    client = boto3.client(
        "s3", endpoint_url=dead_url, region_name="us-east-1", config=Config(retries={"max_attempts": 1})
    )
    dead = S3Store("s3://models/x", client=client)
    with pytest.raises(StoreError, match="failed"):
        dead.list()
    with pytest.raises(StoreError):
        dead.get(ADDR)
    backup = LocalStore(tmp_path)
    backup.put(DATA)
    assert TieredStore(None, None, [dead, backup]).get(ADDR) == DATA  # an unreachable tier is skipped
