"""Hostile model servers (a hub or an S3 endpoint) cost bounded memory and bounded time.

A server started in the test on 127.0.0.1 misbehaves in one way per case: an endless body, a
gzip bomb (1 MB that inflates to 1 GiB), a size announced over the limit, a body or headers
trickled at one byte per second, silence, or a wrong body. The client must fail with a named error
within its limits, without growing the process by more than a small multiple of ``max_bytes``
(peak RSS, reset through ``/proc/self/clear_refs`` before each case), and must still accept honest
compressed answers.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from opml.errors import ModelIntegrityError, ModelNotAvailable
from opml.store import FetchLimits, HubStore, ModelAbsent, S3Store, StoreError, TransferFailed
from opml.store.download import download
from opml.store.testing import example_bundle

BUNDLE = example_bundle([300_000], seed=41)
DATA, ADDR = BUNDLE.encoded, BUNDLE.address
OTHER = example_bundle([1000], seed=42).encoded
MIB = 1 << 20
#: Limits of the client under test: small, so that every case ends quickly.
LIMITS = FetchLimits(max_bytes=8 * MIB, timeout=1.0, deadline=2.0, min_rate=0, window=1.0)
#: Peak memory a failed download may add (the buffer is bounded by max_bytes + one chunk).
MEMORY_BOUND = 48 * MIB


def _gzip_bomb(mib: int = 1024) -> bytes:
    """A single-member gzip stream of ``mib`` MiB of zeros (1 GiB by default, about 1 MB).

    Deflate output after a full flush does not depend on earlier input, so the compressed form of
    one MiB of zeros is repeated; the trailer carries the true CRC-32 and length.
    """
    zeros = bytes(MIB)
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    c.compress(zeros)
    c.flush(zlib.Z_FULL_FLUSH)  # the first block may differ (empty history); skip it
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty final block
    n = mib
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = crc.to_bytes(4, "little") + ((n * MIB) % (1 << 32)).to_bytes(4, "little")
    return header + block * n + end + trailer


class _Hostile(BaseHTTPRequestHandler):
    """Answers every GET according to ``server.mode`` (see :func:`hostile`)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _stopped(self) -> bool:
        return bool(self.server.stop.is_set())  # type: ignore[attr-defined]

    def _trickle(self, data: bytes, interval: float = 1.0) -> None:
        for i in range(len(data)):
            if self._stopped():
                return
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            time.sleep(interval)

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        mode: str = self.server.mode  # type: ignore[attr-defined]
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        try:
            self._answer(mode)
        except OSError:  # the client hung up, as it should
            pass
        self.close_connection = True

    def _head(self, status: int = 200, **headers: object) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), str(v))
        self.end_headers()

    def _answer(self, mode: str) -> None:
        if mode == "endless":  # no length, close-delimited, never ends
            self._head(Connection="close")
            block = b"\x07" * MIB
            while not self._stopped():
                self.wfile.write(block)
        elif mode == "endless-chunked":
            self._head(Transfer_Encoding="chunked")
            block = b"%x\r\n" % MIB + b"\x07" * MIB + b"\r\n"
            while not self._stopped():
                self.wfile.write(block)
        elif mode == "bomb":
            bomb: bytes = self.server.bomb  # type: ignore[attr-defined]
            self._head(Content_Encoding="gzip", Content_Length=len(bomb))
            self.wfile.write(bomb)
        elif mode == "announce":  # 10 GiB announced; the client must not wait for any of it
            self._head(Content_Length=10 << 30)
            self.server.stop.wait(10)  # type: ignore[attr-defined]
        elif mode == "trickle":
            self._head(Content_Length=len(DATA))
            self._trickle(DATA, interval=0.2)  # each byte well within the 1 s read timeout: only the deadline ends it
        elif mode == "trickle-headers":
            self._trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Slow: " + b"a" * 1000)
        elif mode == "silent":
            self._head(Content_Length=len(DATA))
            self.wfile.write(DATA[:100])
            self.wfile.flush()
            self.server.stop.wait(10)  # type: ignore[attr-defined]
        elif mode == "slow":  # 2 KiB/s: alive, but under the minimum rate of the test
            self._head(Content_Length=len(DATA))
            for i in range(0, len(DATA), 512):
                if self._stopped():
                    return
                self.wfile.write(DATA[i : i + 512])
                self.wfile.flush()
                time.sleep(0.25)
        elif mode in ("gzip", "deflate", "raw-deflate", "wrong-gzip"):
            body = OTHER if mode == "wrong-gzip" else DATA
            wbits = {"deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}.get(mode, 16 + zlib.MAX_WBITS)
            c = zlib.compressobj(6, zlib.DEFLATED, wbits)
            packed = c.compress(body) + c.flush()
            self._head(Content_Encoding="gzip" if "gzip" in mode else "deflate", Content_Length=len(packed))
            self.wfile.write(packed)
        elif mode == "brotli":
            self._head(Content_Encoding="br", Content_Length=10)
            self.wfile.write(b"\0" * 10)
        elif mode == "missing":
            self._head(404, Content_Length=0)
        else:
            raise AssertionError(mode)


@pytest.fixture(scope="module")
def hostile() -> Iterator[Callable[[str], str]]:
    """``set_mode(mode)`` -> base URL of a server that misbehaves as ``mode`` says."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    server.stop = threading.Event()  # type: ignore[attr-defined]
    server.hits = []  # type: ignore[attr-defined]
    server.bomb = _gzip_bomb()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def set_mode(mode: str) -> str:
        server.mode = mode  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{server.server_address[1]}"

    try:
        yield set_mode
    finally:
        server.stop.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


def _peak_rss_growth(fn: Callable[[], object]) -> tuple[int, BaseException | None]:
    """Peak resident memory added while ``fn`` runs (bytes), and what it raised."""

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            m = re.search(rf"{key}:\s+(\d+) kB", f.read())
        assert m is not None
        return int(m.group(1)) << 10

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (peak RSS) to the current RSS
    before = status("VmRSS")
    error: BaseException | None = None
    try:
        fn()
    except Exception as e:
        error = e
    return status("VmHWM") - before, error


def test_the_gzip_bomb_is_valid_gzip() -> None:
    assert len(_gzip_bomb()) < 1_100_000  # 1 GiB of zeros
    small = _gzip_bomb(64)  # the same construction, small enough to inflate here
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert d.decompress(small) == bytes(64 * MIB) and d.eof and not d.unused_data  # CRC and length hold


@pytest.mark.parametrize(
    "mode,match",
    [
        ("endless", "sent more than 8388608 bytes"),
        ("endless-chunked", "sent more than 8388608 bytes"),
        ("bomb", "sent more than 8388608 bytes"),
        ("announce", "announces 10737418240 bytes .* over the 8388608-byte limit"),
    ],
)
def test_oversized_bodies_are_refused_with_bounded_memory(
    hostile: Callable[[str], str], mode: str, match: str
) -> None:
    hub = HubStore(hostile(mode), limits=LIMITS, retries=0)
    growth, error = _peak_rss_growth(lambda: hub.get(ADDR))
    assert isinstance(error, ModelNotAvailable) and not isinstance(error, ModelAbsent), error
    assert re.search(match, str(error)), error
    assert growth < MEMORY_BOUND, f"peak RSS grew by {growth >> 20} MiB"


@pytest.mark.parametrize(
    "mode,limits,match",
    [
        ("trickle", LIMITS, "not finished within the 2 s deadline"),
        ("trickle-headers", LIMITS, "no answer within 1 s"),
        ("silent", LIMITS, "stalled: no data for 1 s|deadline"),
        ("slow", FetchLimits(max_bytes=8 * MIB, timeout=5, deadline=60, min_rate=16 << 10, window=1.0), "too slow"),
    ],
)
def test_slow_servers_are_cut_off(
    hostile: Callable[[str], str], mode: str, limits: FetchLimits, match: str
) -> None:
    url = hostile(mode)
    t0 = time.monotonic()
    with pytest.raises((TransferFailed, ModelIntegrityError)) as err:
        download(f"{url}/models/0x{ADDR.hex()}", ADDR, limits, retries=1)
    took = time.monotonic() - t0
    assert re.search(match, str(err.value)), err.value
    # The trickle alone would take len(DATA) seconds (~3.5 days); each case ends within its limits.
    assert took < limits.deadline + limits.timeout + 5, took


def test_a_trickling_hub_fails_as_model_not_available(hostile: Callable[[str], str]) -> None:
    with pytest.raises(ModelNotAvailable, match="deadline"):
        HubStore(hostile("trickle"), limits=LIMITS, retries=0).get(ADDR)


@pytest.mark.parametrize("mode", ["gzip", "deflate", "raw-deflate"])
def test_honest_compressed_answers_are_decoded_and_verified(hostile: Callable[[str], str], mode: str) -> None:
    assert HubStore(hostile(mode), limits=LIMITS).get(ADDR) == DATA


def test_wrong_or_unusable_bytes_are_refused(hostile: Callable[[str], str]) -> None:
    with pytest.raises(ModelIntegrityError, match="different address"):
        HubStore(hostile("wrong-gzip"), limits=LIMITS).get(ADDR)
    with pytest.raises(ModelNotAvailable, match="unsupported content-encoding 'br'"):
        HubStore(hostile("brotli"), limits=LIMITS).get(ADDR)
    with pytest.raises(ModelAbsent):
        HubStore(hostile("missing"), limits=LIMITS).get(ADDR)


def test_limits_are_validated() -> None:
    for bad in ({"max_bytes": 0}, {"deadline": 0}, {"timeout": -1}, {"min_rate": -1}, {"window": 0}):
        with pytest.raises(ValueError, match="invalid fetch limits"):
            FetchLimits(**bad)  # type: ignore[arg-type]


@pytest.fixture
def s3_creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.mark.parametrize(
    "mode,match",
    [("trickle", "deadline"), ("endless", "sent more than"), ("bomb", "sent more than"), ("missing", "is not in")],
)
def test_s3_gets_have_the_same_bounds(
    hostile: Callable[[str], str], s3_creds: None, mode: str, match: str
) -> None:
    endpoint = hostile(mode)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    store = S3Store("s3://models/hostile", client=client, limits=LIMITS)
    growth, error = _peak_rss_growth(lambda: store.get(ADDR))
    assert isinstance(error, StoreError | ModelNotAvailable), error
    assert re.search(match, str(error)), error
    assert "Signature" not in str(error)  # the presigned URL stays out of messages
    assert growth < MEMORY_BOUND, f"peak RSS grew by {growth >> 20} MiB"


def test_a_stalling_hub_is_not_called_a_liar(hostile: Callable[[str], str]) -> None:
    """A body that stops arriving (read timeout) is the hub being unavailable, not serving bad bytes."""
    with pytest.raises(ModelNotAvailable, match="stalled") as err:
        HubStore(hostile("silent"), limits=LIMITS, retries=0).get(ADDR)
    assert not isinstance(err.value, ModelIntegrityError)
