"""The HTTP model hub (a real ``aievm model serve`` process) and its client, honest and not."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from opml.errors import ModelIntegrityError, ModelNotAvailable
from opml.store import HubStore, LocalStore, MemoryCache, ReadOnlyStore, TieredStore
from opml.store.testing import example_bundle, hub_process

BUNDLE = example_bundle([3 << 20, 1000], seed=11)  # big enough for several 1 MiB chunks
DATA = BUNDLE.encoded
ADDR = BUNDLE.address
SMALL = example_bundle([100], seed=12)
MISSING = bytes(range(32))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, LocalStore]]:
    store = LocalStore(tmp_path_factory.mktemp("hub"))
    store.put(DATA)
    store.put(SMALL)
    with hub_process(store.dir) as url:
        yield url, store


def test_round_trip_through_the_hub(hub: tuple[str, LocalStore]) -> None:
    url, _ = hub
    client = HubStore([url])
    assert client.get(ADDR) == DATA
    assert client.get_bundle(SMALL.address).address == SMALL.address
    assert client.has(ADDR) and not client.has(MISSING)
    assert client.size(ADDR) == len(DATA)
    assert client.list() == sorted([ADDR, SMALL.address])
    with pytest.raises(ModelNotAvailable):
        client.get(MISSING)
    with pytest.raises(ReadOnlyStore):
        client.put(DATA)


def test_hub_http_interface(hub: tuple[str, LocalStore]) -> None:
    url, _ = hub
    model = f"{url}/models/0x{ADDR.hex()}"
    listing = requests.get(f"{url}/models", timeout=10).json()
    assert {"address": "0x" + ADDR.hex(), "size": len(DATA)} in listing["models"]
    head = requests.head(model, timeout=10)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(DATA)
    assert head.headers["accept-ranges"] == "bytes"
    r = requests.get(model, headers={"Range": "bytes=100-199"}, timeout=10)
    assert r.status_code == 206 and r.content == DATA[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(DATA)}"
    r = requests.get(model, headers={"Range": "bytes=-10"}, timeout=10)
    assert r.status_code == 206 and r.content == DATA[-10:]
    assert requests.get(model, headers={"Range": f"bytes={len(DATA)}-"}, timeout=10).status_code == 416
    assert requests.get(model, headers={"Range": "bytes=zz"}, timeout=10).status_code == 400
    assert requests.get(f"{url}/models/0x{MISSING.hex()}", timeout=10).status_code == 404
    assert requests.head(f"{url}/models/{MISSING.hex()}", timeout=10).status_code == 404
    for bad in ("nothex", "0x1234", "0x" + "g" * 64, "%00", "..%2f..%2fetc%2fpasswd", "0x" + "a" * 65):
        assert requests.get(f"{url}/models/{bad}", timeout=10).status_code in (400, 404), bad
    assert requests.post(model, data=b"x", timeout=10).status_code == 405


def test_hub_survives_garbage(hub: tuple[str, LocalStore]) -> None:
    url, _ = hub
    port = int(url.rsplit(":", 1)[1])
    for junk in (b"\x00\xff" * 100 + b"\r\n\r\n", b"GET /models/" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(junk)
            try:
                s.recv(1024)
            except OSError:
                pass
    assert requests.get(f"{url}/models", timeout=10).status_code == 200


def test_hub_refuses_to_serve_a_corrupted_file(hub: tuple[str, LocalStore]) -> None:
    url, store = hub
    third = example_bundle([200], seed=13)
    store.put(third)
    assert HubStore(url).get(third.address) == third.encoded
    path = store.path(third.address)
    path.write_bytes(third.encoded[:-1] + b"\x07")  # tampered on the hub's disk after being served
    r = requests.get(f"{url}/models/0x{third.address.hex()}", timeout=10)
    assert r.status_code == 500 and "corrupt" in r.json()["error"]
    with pytest.raises(ModelNotAvailable, match="HTTP 500"):
        HubStore(url).get(third.address)
    store.remove(third.address)


class _BadHub(BaseHTTPRequestHandler):
    """Serves ``server.body`` for any model; ``server.mode`` says how to misbehave."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        srv = self.server
        srv.requests.append(self.headers.get("Range"))  # type: ignore[attr-defined]
        body: bytes = srv.body  # type: ignore[attr-defined]
        mode: str = srv.mode  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        if mode == "flaky" and rng:  # honour the resume
            start = int(rng.split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode in ("truncate", "flaky"):  # announce everything, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def bad_hub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BadHub)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize(
    "mode,body,match",
    [
        ("honest", SMALL.encoded, "different address"),  # a valid bundle, but another model's
        ("honest", DATA[:-100], "not a valid bundle"),  # short body, consistent length header
        ("honest", DATA[:50] + bytes([DATA[50] ^ 0xFF]) + DATA[51:], "not a valid bundle|different address"),
        ("truncate", DATA, "truncated"),  # connection dropped mid-body, every time
    ],
)
def test_a_hub_serving_wrong_bytes_is_detected_and_nothing_is_cached(
    bad_hub: ThreadingHTTPServer, tmp_path: Path, mode: str, body: bytes, match: str
) -> None:
    bad_hub.mode, bad_hub.body = mode, body  # type: ignore[attr-defined]
    local, cache = LocalStore(tmp_path), MemoryCache()
    tiered = TieredStore(cache, local, [HubStore(_url(bad_hub), retries=1)])
    with pytest.raises(ModelIntegrityError, match=match) as err:
        tiered.get(ADDR)
    assert "0x" + ADDR.hex() in str(err.value)
    assert local.list() == [] and cache.list() == [] and list(tmp_path.iterdir()) == []


def test_an_interrupted_download_is_resumed_with_a_range_request(bad_hub: ThreadingHTTPServer) -> None:
    bad_hub.mode, bad_hub.body = "flaky", DATA  # type: ignore[attr-defined]
    assert HubStore(_url(bad_hub)).get(ADDR) == DATA
    reqs = bad_hub.requests  # type: ignore[attr-defined]
    assert reqs[0] is None and reqs[1] is not None and reqs[1].startswith("bytes=")


def test_hubs_are_tried_in_order_past_a_bad_one(
    bad_hub: ThreadingHTTPServer, hub: tuple[str, LocalStore], tmp_path: Path
) -> None:
    bad_hub.mode, bad_hub.body = "honest", SMALL.encoded  # type: ignore[attr-defined]
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    tiered = TieredStore(MemoryCache(), LocalStore(tmp_path), [HubStore([dead, _url(bad_hub), hub[0]])])
    assert tiered.get(ADDR) == DATA
    assert LocalStore(tmp_path).get(ADDR) == DATA
    with pytest.raises(ModelNotAvailable, match="cannot connect"):
        HubStore([dead]).get(ADDR)
