"""Local directory store, memory cache and tiered store: verification, atomicity, concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opml.bundle import decode_bundle
from opml.errors import BundleError, ModelIntegrityError, ModelNotAvailable
from opml.store import (
    InvalidAddress,
    LocalStore,
    MemoryCache,
    TieredStore,
    open_store,
    parse_address,
    verify_bundle_bytes,
)
from opml.store.testing import example_bundle

BUNDLE = example_bundle([3000, 77, 500])
DATA = BUNDLE.encoded
ADDR = BUNDLE.address
OTHER = example_bundle([64], seed=7)


def test_round_trip(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "models")
    assert store.list() == [] and not store.has(ADDR)
    assert store.put(DATA) == ADDR
    assert store.put(BUNDLE) == ADDR  # idempotent, accepts a decoded bundle too
    assert store.put(OTHER) == OTHER.address
    assert store.get(ADDR) == DATA
    assert store.get("0x" + ADDR.hex()) == DATA and store.get(ADDR.hex().upper()) == DATA
    assert store.get_bundle(ADDR) == decode_bundle(DATA)
    assert store.list() == sorted([ADDR, OTHER.address])
    assert store.size(ADDR) == len(DATA)
    assert (tmp_path / "models" / ADDR.hex()).read_bytes() == DATA
    assert store.remove(ADDR) and not store.remove(ADDR)
    with pytest.raises(ModelNotAvailable, match=ADDR.hex()):
        store.get(ADDR)
    assert store.list() == [OTHER.address]


def test_put_rejects_non_bundles(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for junk in (b"", b"garbage", DATA[:-1], DATA + b"\0"):
        with pytest.raises(BundleError):
            store.put(junk)
    assert store.list() == [] and os.listdir(tmp_path) == []


def test_addresses_are_parsed_strictly() -> None:
    assert parse_address(ADDR) == ADDR == parse_address("0x" + ADDR.hex())
    for bad in (
        "",
        "0x",
        "0x" + "g" * 64,
        "0x" + "0" * 63,
        "0x" + "0" * 65,
        b"\0" * 31,
        "../../etc/passwd",
        5,
    ):
        with pytest.raises(InvalidAddress):
            parse_address(bad)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, len(DATA) - 1), xor=st.integers(1, 255))
def test_a_tampered_byte_anywhere_is_detected(tmp_path: Path, pos: int, xor: int) -> None:
    store = LocalStore(tmp_path / "tamper")
    bad = bytearray(DATA)
    bad[pos] ^= xor
    store.dir.mkdir(exist_ok=True)
    store.path(ADDR).write_bytes(bytes(bad))
    with pytest.raises(ModelIntegrityError, match="0x" + ADDR.hex()):
        store.get(ADDR)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, len(DATA) - 1))
def test_truncated_bytes_are_detected(cut: int) -> None:
    with pytest.raises(ModelIntegrityError, match="0x" + ADDR.hex()):
        verify_bundle_bytes(ADDR, DATA[:cut])


def test_another_valid_bundle_is_not_accepted_for_an_address() -> None:
    with pytest.raises(ModelIntegrityError, match="different address"):
        verify_bundle_bytes(ADDR, OTHER.encoded)


def test_temp_files_are_invisible_and_swept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put(DATA)
    (tmp_path / f".tmp-{ADDR.hex()[:16]}-xyz").write_bytes(DATA[:100])
    (tmp_path / "README").write_text("not a model")
    assert store.list() == [ADDR]
    assert store.sweep_temp(max_age_s=3600) == 0
    assert store.sweep_temp(max_age_s=-1) == 1
    assert sorted(os.listdir(tmp_path)) == sorted([ADDR.hex(), "README"])


_CRASH_WRITER = """
import os, sys, time
from opml.store import LocalStore
data = open(sys.argv[2], "rb").read()
def stuck_fsync(fd):  # the temp file is written but not yet renamed: die here
    print("writing", flush=True)
    time.sleep(60)
os.fsync = stuck_fsync
LocalStore(sys.argv[1]).put(data)
"""


def test_a_crash_mid_write_leaves_no_visible_partial_file(tmp_path: Path) -> None:
    src = tmp_path / "bundle.bin"
    src.write_bytes(DATA)
    store = LocalStore(tmp_path / "models")
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_WRITER, str(store.dir), str(src)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"writing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    leftovers = os.listdir(store.dir)
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")  # the killed writer's temp file
    assert store.list() == [] and not store.has(ADDR)
    with pytest.raises(ModelNotAvailable):
        store.get(ADDR)
    assert store.put(DATA) == ADDR and store.get(ADDR) == DATA


_ADDER = """
import os, sys, time
from opml.store import LocalStore
data = open(sys.argv[2], "rb").read()
go = sys.argv[3]
while not os.path.exists(go):
    time.sleep(0.001)
for _ in range(int(sys.argv[4])):
    LocalStore(sys.argv[1])._write(bytes.fromhex(sys.argv[5]), data)  # force the write race
print(LocalStore(sys.argv[1]).put(data).hex())
"""


def test_two_processes_adding_the_same_model_leave_one_valid_copy(tmp_path: Path) -> None:
    big = example_bundle([1 << 20, 1 << 20], seed=3)
    src = tmp_path / "bundle.bin"
    src.write_bytes(big.encoded)
    store = LocalStore(tmp_path / "models")
    go = tmp_path / "go"
    args = [str(store.dir), str(src), str(go), "3", big.address.hex()]
    procs = [subprocess.Popen([sys.executable, "-c", _ADDER, *args], stdout=subprocess.PIPE) for _ in range(2)]
    time.sleep(0.3)
    go.touch()
    outs = [p.communicate(timeout=60)[0].decode().strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == [big.address.hex()] * 2
    assert os.listdir(store.dir) == [big.address.hex()]  # one file, no temp files
    assert store.list() == [big.address] and store.get(big.address) == big.encoded


def test_put_repairs_a_corrupt_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put(DATA)
    store.path(ADDR).write_bytes(DATA[:-5])
    with pytest.raises(ModelIntegrityError):
        store.get(ADDR)
    store.put(DATA)
    assert store.get(ADDR) == DATA


def test_memory_cache_is_a_bounded_lru() -> None:
    bundles = [example_bundle([1000], seed=s) for s in range(4)]
    size = len(bundles[0].encoded)
    cache = MemoryCache(max_bytes=3 * size)
    for b in bundles[:3]:
        cache.put(b.encoded)
    cache.get(bundles[0].address)  # touch: bundles[1] is now the oldest
    cache.put(bundles[3])
    assert set(cache.list()) == {bundles[i].address for i in (0, 2, 3)}
    assert cache.get_bundle(bundles[3].address) is bundles[3]
    with pytest.raises(ModelNotAvailable):
        cache.get(bundles[1].address)
    assert cache.remove(bundles[0].address) and not cache.has(bundles[0].address)


def test_tiered_store_fills_faster_tiers_after_a_verified_fetch(tmp_path: Path) -> None:
    remote = LocalStore(tmp_path / "remote")
    remote.put(DATA)
    local = LocalStore(tmp_path / "local")
    cache = MemoryCache()
    tiered = TieredStore(cache, local, [remote])
    assert tiered.has(ADDR) and tiered.list() == [ADDR]
    assert tiered.get(ADDR) == DATA
    assert local.get(ADDR) == DATA and cache.has(ADDR)
    remote.remove(ADDR)
    local.remove(ADDR)
    assert tiered.get_bundle(ADDR).address == ADDR  # served by the memory tier now


def test_tiered_store_skips_and_heals_a_corrupt_tier_and_caches_nothing_unverified(tmp_path: Path) -> None:
    remote = LocalStore(tmp_path / "remote")
    local = LocalStore(tmp_path / "local")
    cache = MemoryCache()
    tiered = TieredStore(cache, local, [remote])
    for store in (local, remote):
        store.dir.mkdir()
        store.path(ADDR).write_bytes(DATA[:-1] + b"\x01")
    with pytest.raises(ModelIntegrityError, match="0x" + ADDR.hex()):
        tiered.get(ADDR)
    assert not cache.has(ADDR) and local.path(ADDR).read_bytes() != DATA
    remote.path(ADDR).write_bytes(DATA)
    assert tiered.get(ADDR) == DATA
    assert local.path(ADDR).read_bytes() == DATA and cache.has(ADDR)
    with pytest.raises(ModelNotAvailable):
        tiered.get(OTHER.address)


def test_tiered_put_and_remove_touch_only_cache_and_local(tmp_path: Path) -> None:
    remote = LocalStore(tmp_path / "remote")
    tiered = open_store(f"{tmp_path / 'local'},file://{tmp_path / 'remote'}")
    assert isinstance(tiered, TieredStore) and tiered.remotes[0].dir == remote.dir  # type: ignore[attr-defined]
    assert tiered.put(DATA) == ADDR
    assert not remote.has(ADDR) and LocalStore(tmp_path / "local").has(ADDR)
    assert tiered.remove(ADDR) and not tiered.has(ADDR)


def test_open_store_dispatches_on_the_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opml.store import HubStore, S3Store, StoreError

    monkeypatch.setenv("AIEVM_HOME", str(tmp_path / "home"))
    assert open_store().dir == tmp_path / "home" / "models"  # type: ignore[attr-defined]
    assert open_store(str(tmp_path)).dir == tmp_path  # type: ignore[attr-defined]
    assert open_store(f"file://{tmp_path}").dir == tmp_path  # type: ignore[attr-defined]
    assert isinstance(open_store("http://127.0.0.1:1"), HubStore)
    s3 = open_store("s3://bucket/some/prefix?endpoint=http://127.0.0.1:1")
    assert isinstance(s3, S3Store) and s3.endpoint_url == "http://127.0.0.1:1"
    assert s3.key(ADDR) == "some/prefix/" + ADDR.hex()
    with pytest.raises(StoreError):
        open_store("ftp://x")
