"""Model fetches happen outside execution and the chain lock; a slow or hostile hub stalls no one.

A model hub started in the test (127.0.0.1, threaded ``http.server``) serves each model in its own
way: held back until the test opens a gate, trickled at one byte per second, endless, or absent.
In-process tests drive the sequencer directly; one test runs a node process and talks JSON-RPC
to it while its hub trickles.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nodeproc import NodeProcess, RpcFailure  # noqa: E402

from ai_evm.evm import ModelFetchRequired, ModelResolver, ModelUnavailable, encode_call  # noqa: E402
from ai_evm.node.chain import NodeConfig, Sequencer  # noqa: E402
from ai_evm.node.vm import make_resolver  # noqa: E402
from opml.store import FetchLimits, LocalStore, node_store  # noqa: E402
from opml.store.testing import example_bundle  # noqa: E402

PRECOMPILE = "0x00000000000000000000000000000000000000a1"
SINK = "0x000000000000000000000000000000000000dEaD"
X = bytes(range(256))  # one sample of the example bundles' int8[-1, 256] input
MIB = 1 << 20


class _Hub(BaseHTTPRequestHandler):
    """``GET /models/0x<address>`` answered as ``server.routes[address]`` says; 404 otherwise."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        srv: Any = self.server
        key = self.path.rsplit("/", 1)[-1].removeprefix("0x")
        mode, body = srv.routes.get(key, ("absent", b""))
        srv.hits.append((key, mode))
        try:
            if mode == "absent":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if mode == "gate":
                srv.gate.wait(60)
            self.send_response(200)
            if mode == "endless":
                self.send_header("Connection", "close")
                self.end_headers()
                while not srv.stop.is_set():
                    self.wfile.write(b"\x05" * MIB)
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "trickle":
                for i in range(len(body)):
                    if srv.stop.is_set() or srv.routes.get(key, ("",))[0] != "trickle":
                        return
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(1.0)
            else:
                self.wfile.write(body)
        except OSError:  # the client gave up, as it should
            pass
        finally:
            self.close_connection = True


@pytest.fixture
def hub() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    server.daemon_threads = True
    server.routes, server.hits = {}, []
    server.gate, server.stop = threading.Event(), threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server
    finally:
        server.stop.set()
        server.gate.set()
        server.shutdown()
        server.server_close()


def _serve(hub: Any, seed: int, mode: str) -> Any:
    bundle = example_bundle([2000], seed=seed)
    hub.routes[bundle.address.hex()] = (mode, bundle.encoded)
    return bundle


def _sign(key: bytes, nonce: int, to: str, data: bytes = b"", gas: int = 21000) -> bytes:
    fields = {"to": to_checksum_address(to), "value": 0 if data else 1, "gas": gas, "maxFeePerGas": 10**10,
              "maxPriorityFeePerGas": 10**9, "nonce": nonce, "chainId": 31337, "type": 2, "data": data}  # fmt: skip
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


def _until(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


def _sequencer(tmp_path: Path, hub: Any, limits: FetchLimits | None = None) -> Sequencer:
    store = node_store(tmp_path / "models", [hub.url], limits=limits or FetchLimits(timeout=2, deadline=20))
    return Sequencer(NodeConfig(tmp_path / "node", sync=False), make_resolver(store))


def _status(seq: Sequencer, tx_hash: bytes) -> str | None:
    with seq.lock:  # a background thread may be mining: read the index and the record together
        loc = seq.tx_location(tx_hash)
        if loc is None:
            return None
        record = seq.record(loc[0])
    assert record is not None
    return str(record["receipts"][loc[1]]["status"])


def test_a_sender_waits_for_its_model_while_others_are_mined(tmp_path: Path, hub: Any) -> None:
    bundle = _serve(hub, 1, "gate")
    seq = _sequencer(tmp_path, hub)
    a, b = (acct.private_key for acct in seq.config.accounts[1:3])
    call = encode_call(bundle.address, 256, X)
    infer = seq.decode_raw(_sign(a, 0, PRECOMPILE, call, gas=500_000))
    later = seq.decode_raw(_sign(a, 1, SINK))  # the same sender's next transaction queues behind it
    transfer = seq.decode_raw(_sign(b, 0, SINK))
    assert seq.submit([infer, later, transfer]) == [None, None, None]
    (block,) = seq.mine_pending()  # the hub holds the model back: only the other sender's block
    assert block.tx_hashes == (bytes(transfer.hash),)
    assert set(seq.pool.pending) == {bytes(infer.hash), bytes(later.hash)} and not seq.pool.dropped
    assert seq.model_waits.parked() == {bytes(infer.sender): bundle.address}
    assert seq.mine_pending(allow_empty=True)[0].tx_hashes == ()  # interval mining goes on meanwhile
    hub.gate.set()  # the model arrives: the waiting transactions are mined, the inference succeeds
    _until(lambda: _status(seq, bytes(later.hash)), what="the parked transactions mined")
    assert _status(seq, bytes(infer.hash)) == "0x1" and _status(seq, bytes(later.hash)) == "0x1"
    loc = seq.tx_location(bytes(infer.hash))
    assert loc is not None
    record = seq.record(loc[0])
    assert record is not None and [r["model"] for r in record["inferences"]] == ["0x" + bundle.address.hex()]
    assert LocalStore(tmp_path / "models").get(bundle.address) == bundle.encoded  # kept locally
    assert not seq.model_waits.parked() and not seq.pool.pending
    seq.close()


def test_a_model_that_no_store_holds_fails_the_call_as_before(tmp_path: Path, hub: Any) -> None:
    seq = _sequencer(tmp_path, hub)
    key = seq.config.accounts[1].private_key
    tx = seq.decode_raw(_sign(key, 0, PRECOMPILE, encode_call(b"\x0b" * 32, 256, X), gas=100_000))
    seq.submit([tx])
    seq.mine_pending()  # parked while the hub is asked; it answers 404: mined as a failed call
    assert _until(lambda: _status(seq, bytes(tx.hash)), what="the failed call mined") == "0x0"
    loc = seq.tx_location(bytes(tx.hash))
    assert loc is not None
    record = seq.record(loc[0])
    assert record is not None and int(record["receipts"][loc[1]]["gasUsed"], 16) == 100_000
    seq.close()


def test_a_trickling_hub_stalls_only_its_senders_and_is_retried(tmp_path: Path, hub: Any) -> None:
    bundle = _serve(hub, 2, "trickle")
    seq = _sequencer(tmp_path, hub, FetchLimits(timeout=1, deadline=2))
    a, b = (acct.private_key for acct in seq.config.accounts[3:5])
    infer = seq.decode_raw(_sign(a, 0, PRECOMPILE, encode_call(bundle.address, 256, X), gas=500_000))
    seq.submit([infer])
    t0 = time.monotonic()
    assert seq.mine_pending() == []
    for nonce in range(3):  # while the hub trickles, the other sender's transfers are mined at once
        transfer = seq.decode_raw(_sign(b, nonce, SINK))
        seq.submit([transfer])
        assert [blk.tx_hashes for blk in seq.mine_pending()] == [(bytes(transfer.hash),)]
    fetcher = seq.resolver.fetcher
    assert fetcher is not None
    failed = _until(lambda: (st := fetcher.status(bundle.address)) is not None and st.state == "failed" and st,
                    what="the trickle cut off")  # fmt: skip
    assert "deadline" in failed.detail and time.monotonic() - t0 < 15
    assert bytes(infer.hash) in seq.pool.pending and not seq.pool.dropped  # stalled, never failed
    hub.routes[bundle.address.hex()] = ("serve", bundle.encoded)  # the hub recovers: the retry fetches
    assert _until(lambda: _status(seq, bytes(infer.hash)), what="the retried fetch") == "0x1"
    seq.close()


def test_execution_reads_only_local_tiers_and_the_registry_seam(tmp_path: Path, hub: Any) -> None:
    local = example_bundle([100], seed=3)
    remote = _serve(hub, 4, "serve")
    store = node_store(tmp_path / "models", [hub.url])
    store.put(local)
    resolver = ModelResolver(store)
    assert resolver.resolve(local.address).address == local.address
    with pytest.raises(ModelFetchRequired, match="not available on this node yet"):
        resolver.resolve(remote.address)  # no download here: it starts in the background
    assert resolver.fetcher is not None
    assert resolver.fetcher.wait(remote.address, 30) is not None
    assert resolver.resolve(remote.address).address == remote.address
    registered = {remote.address}
    seam = ModelResolver(node_store(tmp_path / "models2", [hub.url]),
                         is_registered=lambda address, l1_origin: address in registered)
    with pytest.raises(ModelUnavailable, match="not registered"):
        seam.resolve(local.address)
    seam.remember(local)  # cached (as after a later block that may use it): still not registered here
    with pytest.raises(ModelUnavailable, match="not registered"):
        seam.resolve(local.address)
    registered.add(b"\x0c" * 32)  # registered but nowhere to be found: stall (retried), never fail
    for _ in range(2):
        with pytest.raises(ModelFetchRequired):
            seam.resolve(b"\x0c" * 32)
        assert seam.fetcher is not None
        seam.fetcher.wait(b"\x0c" * 32, 30)


def _rss_peak_growth(pid: int, action: Callable[[], None]) -> int:
    def read(key: str) -> int:
        text = Path(f"/proc/{pid}/status").read_text()
        m = re.search(rf"{key}:\s+(\d+) kB", text)
        assert m is not None
        return int(m.group(1)) << 10

    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the node's peak RSS to its current RSS
    before = read("VmRSS")
    action()
    return read("VmHWM") - before


def test_the_node_answers_everyone_while_its_hub_trickles(tmp_path: Path, hub: Any) -> None:
    slow = _serve(hub, 5, "trickle")
    endless = _serve(hub, 6, "endless")
    datadir = tmp_path / "data"
    datadir.mkdir()
    args = ("--model-store", hub.url, "--model-fetch-timeout", "1", "--model-fetch-deadline", "4",
            "--max-model-size", str(8 * MIB))  # fmt: skip
    node = NodeProcess(datadir, args=args).start()
    try:
        assert node.proc is not None
        call = {"to": PRECOMPILE, "data": "0x" + encode_call(slow.address, 256, X).hex(), "gas": hex(500_000)}
        t0 = time.monotonic()
        with pytest.raises(RpcFailure) as err:  # answered at once, not after the download
            node.rpc("eth_call", call, "latest")
        assert err.value.error["code"] == -32000
        assert "not available on this node yet: fetching" in err.value.error["message"]
        # While the fetch trickles on, other clients are served: reads, and a transfer mined at once.
        key = Account.from_key(bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"))
        assert int(node.rpc("eth_blockNumber"), 16) == 0
        tx_hash = node.rpc("eth_sendRawTransaction", "0x" + _sign(key.key, 0, SINK).hex())
        assert node.rpc("eth_getTransactionReceipt", tx_hash)["status"] == "0x1"
        assert int(node.rpc("eth_blockNumber"), 16) == 1
        assert time.monotonic() - t0 < 4  # all of it before the fetch's deadline: nobody waited for it
        assert any(mode == "trickle" for _, mode in hub.hits)
        # The fetch fails at its deadline; the call now says so, with the reason.
        def failed() -> str | None:
            try:
                node.rpc("eth_call", call, "latest")
            except RpcFailure as e:
                return str(e.error["message"]) if "failed" in e.error["message"] else None
            return None

        assert "deadline" in _until(failed, 30, "the trickle cut off")
        # An endless body costs the node at most about --max-model-size of memory.
        endless_call = dict(call, data="0x" + encode_call(endless.address, 256, X).hex())

        def fetch_endless() -> None:
            with pytest.raises(RpcFailure):
                node.rpc("eth_call", endless_call, "latest")
            msg = _until(lambda: _message(node, endless_call) if "failed" in _message(node, endless_call) else None,
                         30, "the endless body cut off")  # fmt: skip
            assert "sent more than 8388608 bytes" in msg

        growth = _rss_peak_growth(node.proc.pid, fetch_endless)
        assert growth < 64 * MIB, f"node peak RSS grew by {growth >> 20} MiB"
    finally:
        node.stop()


def _message(node: NodeProcess, call: dict[str, Any]) -> str:
    try:
        node.rpc("eth_call", call, "latest")
    except RpcFailure as e:
        return str(e.error["message"])
    return ""
