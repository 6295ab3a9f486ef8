"""The JSON-RPC layer cannot be stalled or blown up by requests (docs/node.md, "Limits").

A node process with a short time limit and no gas cap (so only the time limit can stop a loop)
serves the HTTP cases: an infinite-loop ``eth_call`` while other methods, a send and ``/health``
keep answering; cheap methods answering while the call pool is saturated; a 31 MiB body and a
4.9 MiB ``[{},...]`` body; 300 ``eth_getBlockByNumber(full)`` on a ~2 MB block. Memory is the node's
peak RSS (``VmHWM`` of ``/proc/<pid>/status``, reset through ``clear_refs`` before each case). The gas
cap, the estimate's shared deadline and the protocol nits are checked on an in-process dispatcher.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from nodeproc import NodeProcess

from ai_evm.node import execution
from ai_evm.node.chain import NodeConfig, Sequencer
from ai_evm.node.limits import LimitsError, RpcLimits
from ai_evm.node.methods import EthApi
from ai_evm.node.rpc import Dispatcher
from ai_evm.node.vm import make_resolver

TIMEOUT_S = 3
KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # public dev account 0
ACCOUNT0 = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
ACCOUNT1 = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
LOOPER = "0x" + "11" * 20
LOOP_CODE = "0x5b600056"  # JUMPDEST PUSH1 0 JUMP: loops until out of gas or stopped
GAS_CODE = "0x5a60005260206000f3"  # returns the gas left when it starts
MAX_GAS = "0xffffffffffffffff"
MiB = 1 << 20


def _loop_call(rid: Any = 1, method: str = "eth_call") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method,
            "params": [{"to": LOOPER, "gas": MAX_GAS}, "latest", {LOOPER: {"code": LOOP_CODE}}]}


def strict_loads(raw: bytes) -> Any:
    """json.loads that refuses NaN/Infinity (Python's accepts them; JSON does not)."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"non-JSON constant {name} in the response")
    return json.loads(raw, parse_constant=refuse)


def post_raw(node: NodeProcess, body: bytes, timeout: float = 120) -> tuple[int, bytes]:
    req = urllib.request.Request(node.url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def peak_growth_mib(node: NodeProcess, action: Any) -> tuple[float, Any]:
    """Run ``action()``; the node's peak RSS above its RSS before, in MiB, and the action's result."""
    assert node.proc is not None
    pid = node.proc.pid
    reset_peak(pid)
    before = memory_kib(pid, "VmRSS")
    result = action()
    return (memory_kib(pid, "VmHWM") - before) / 1024, result


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with a 3 s call time limit and no gas cap: only the time limit stops a loop."""
    datadir = tmp_path_factory.mktemp("limits") / "data"
    datadir.mkdir()
    proc = NodeProcess(datadir, args=("--rpc-evmtimeout", str(TIMEOUT_S), "--rpc-gascap", "0", "--no-fsync")).start()
    yield proc
    proc.stop()


class Signer:
    """Signs transfers from dev account 0 with consecutive nonces."""

    def __init__(self, node: NodeProcess) -> None:
        self.nonce = int(node.rpc("eth_getTransactionCount", ACCOUNT0, "pending"), 16)

    def raw(self, data: bytes = b"", gas: int = 21000) -> str:
        tx = {"to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "value": 1, "gas": gas, "nonce": self.nonce,
              "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9, "chainId": 31337, "type": 2, "data": data}
        self.nonce += 1
        return "0x" + Account.sign_transaction(tx, KEY0).raw_transaction.hex()


def test_infinite_loop_call_is_stopped_while_the_node_keeps_serving(node: NodeProcess) -> None:
    answer: dict[str, Any] = {}

    def slow_call() -> None:
        answer["response"] = node.post(_loop_call(), timeout=120)
        answer["at"] = time.monotonic()

    signer = Signer(node)
    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.3)  # let the call start executing
    served: dict[str, float] = {}
    while caller.is_alive() and len(served) < 5:  # each kind once while the call runs
        served.setdefault("eth_chainId", (node.rpc("eth_chainId"), time.monotonic())[1])
        served.setdefault("eth_blockNumber", (node.rpc("eth_blockNumber"), time.monotonic())[1])
        served.setdefault("eth_getBalance", (node.rpc("eth_getBalance", ACCOUNT1, "latest"), time.monotonic())[1])
        if "send" not in served:
            tx_hash = node.rpc("eth_sendRawTransaction", signer.raw())  # takes the chain lock and mines
            assert node.rpc("eth_getTransactionReceipt", tx_hash)["status"] == "0x1"
            served["send"] = time.monotonic()
        with urllib.request.urlopen(node.url + "/health", timeout=60) as resp:
            assert json.loads(resp.read())["ok"] is True
        served.setdefault("health", time.monotonic())
    caller.join(timeout=120)
    assert not caller.is_alive()
    response = answer["response"]
    assert response["error"] == {"code": -32000, "message": f"execution aborted (timeout = {TIMEOUT_S}s)"}
    assert set(served) == {"eth_chainId", "eth_blockNumber", "eth_getBalance", "send", "health"}
    assert all(t < answer["at"] for t in served.values()), "a method waited for the call to end"
    # the estimate is stopped by the same limit
    assert node.post(_loop_call(method="eth_estimateGas"))["error"]["message"].startswith("execution aborted")


def test_cheap_methods_answer_while_every_call_worker_is_busy(node: NodeProcess) -> None:
    heavy = 8  # 4 call workers, 3 s each: the last ends after ~6 s or more
    finished: list[float] = []
    lock = threading.Lock()

    def loop_call(i: int) -> None:
        out = node.post(_loop_call(i), timeout=300)
        assert out["error"]["message"].startswith("execution aborted")
        with lock:
            finished.append(time.monotonic())

    threads = [threading.Thread(target=loop_call, args=(i,)) for i in range(heavy)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    answered = []
    for method, params in [("eth_chainId", []), ("net_version", []), ("eth_blockNumber", []),
                           ("eth_getBalance", [ACCOUNT1, "latest"]), ("eth_getLogs", [{"fromBlock": "0x0"}])]:
        node.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=120)
        with lock:
            answered.append((method, len(finished)))
    for t in threads:
        t.join(timeout=300)
    assert len(finished) == heavy
    assert all(done < heavy for _, done in answered), answered  # each answered while calls were in flight


def test_bodies_over_the_limit_and_huge_batches_cost_no_memory(node: NodeProcess) -> None:
    # 31 MiB of [{},{},...]: refused from its Content-Length, nothing parsed
    body = b"[" + b"{}," * (31 * MiB // 3) + b"{}]"
    growth, (status, raw) = peak_growth_mib(node, lambda: _send_raw(node, body))
    assert status == 413 and strict_loads(raw)["error"]["code"] == -32600
    assert growth < 64, f"node peak RSS grew by {growth:.0f} MiB"
    # 4.9 MiB of [{},{},...] (under the body limit): refused after 1001 elements, not 1.7 million
    body = b"[" + b"{}," * (int(4.9 * MiB) // 3) + b"{}]"
    growth, (status, raw) = peak_growth_mib(node, lambda: post_raw(node, body))
    assert status == 200 and strict_loads(raw) == [
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch too large"}}]
    assert growth < 64, f"node peak RSS grew by {growth:.0f} MiB"
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(1001)]
    assert node.post(batch) == [{"jsonrpc": "2.0", "id": 0, "error": {"code": -32600, "message": "batch too large"}}]
    assert len(node.post(batch[:1000])) == 1000


def _send_raw(node: NodeProcess, body: bytes) -> tuple[int, bytes]:
    """POST by hand: the server may answer 413 and close before the whole body is sent."""
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", node.port), timeout=60) as sock:
        sock.sendall(head)
        try:
            sock.sendall(body)
        except OSError:
            pass
        data = b""
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
            header, _, rest = data.partition(b"\r\n\r\n")
            length = [int(h.split(b":")[1]) for h in header.split(b"\r\n") if h.lower().startswith(b"content-length")]
            if length and len(rest) >= length[0]:
                break
    header, _, rest = data.partition(b"\r\n\r\n")
    return int(header.split(b" ", 2)[1]), rest


def test_full_block_batch_is_bounded_by_the_response_limit(node: NodeProcess) -> None:
    signer = Signer(node)
    # 20 transactions with 50 kB of calldata each, mined together: ~2 MB of JSON per full block
    sends = [{"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction",
              "params": [signer.raw(b"\0" * 50_000, gas=600_000)]} for i in range(20)]
    results = node.post(sends)
    assert all("result" in r for r in results), results[:2]
    receipt = node.rpc("eth_getTransactionReceipt", results[0]["result"])
    number = receipt["blockNumber"]
    single = len(json.dumps(node.rpc("eth_getBlockByNumber", number, True)))
    assert single > 1_900_000
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber", "params": [number, True]}
             for i in range(300)]
    growth, (status, raw) = peak_growth_mib(node, lambda: post_raw(node, json.dumps(batch).encode()))
    out = strict_loads(raw)
    assert status == 200 and [r["id"] for r in out] == list(range(300))
    blocks = [r for r in out if "result" in r]
    assert 0 < len(blocks) <= 25_000_000 // single + 1
    assert all(r["error"] == {"code": -32003, "message": "response too large"} for r in out[len(blocks):])
    assert len(raw) < 25_000_000 + 2 * single
    assert growth < 200, f"node peak RSS grew by {growth:.0f} MiB (unbounded: ~{300 * single >> 20} MiB)"


def test_strict_json_and_strict_hex_over_http(node: NodeProcess) -> None:
    for constant in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        status, raw = post_raw(node, b'{"jsonrpc":"2.0","id":' + constant + b',"method":"eth_chainId"}')
        out = strict_loads(raw)
        assert status == 200 and out["id"] is None and out["error"]["code"] == -32600, (constant, out)
    status, raw = post_raw(node, b'[{"jsonrpc":"2.0","id":NaN,"method":"eth_blockNumber"},'
                                 b'{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["' + ACCOUNT1.encode()
                                 + b'","0x1\\n"]}]')
    first, second = strict_loads(raw)
    assert first["id"] is None and first["error"]["code"] == -32600
    assert second["id"] == 2 and second["error"]["code"] == -32602


# -- in-process: gas cap, shared deadline, protocol nits ---------------------------------------------

@pytest.fixture(scope="module")
def seq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sequencer]:
    s = Sequencer(NodeConfig(Path(tmp_path_factory.mktemp("limits-inproc")), sync=False), make_resolver(None))
    yield s
    s.close()


def _ask(dispatcher: Dispatcher, method: str, *params: Any) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    out = dispatcher.handle_body(json.dumps(body).encode())
    assert isinstance(out, dict)
    return out


def test_gas_above_the_cap_is_clamped(seq: Sequencer) -> None:
    dispatcher = Dispatcher(EthApi(seq, limits=RpcLimits(gas_cap=1_000_000)))
    overrides = {LOOPER: {"code": GAS_CODE}}
    for call in ({"to": LOOPER, "gas": MAX_GAS}, {"to": LOOPER}):  # explicit gas, and the default (block gas limit)
        left = int(_ask(dispatcher, "eth_call", call, "latest", overrides)["result"], 16)
        assert 1_000_000 - 21_000 - 10 < left < 1_000_000 - 21_000
    uncapped = Dispatcher(EthApi(seq, limits=RpcLimits(gas_cap=0)))
    assert int(_ask(uncapped, "eth_call", {"to": LOOPER}, "latest", overrides)["result"], 16) > 29_000_000
    error = _ask(dispatcher, "eth_estimateGas", {"to": LOOPER, "gas": MAX_GAS}, "latest", {LOOPER: {"code": LOOP_CODE}})
    assert error["error"]["message"] == "gas required exceeds allowance (1000000)"


class TickingClock:
    """A stand-in for the ``time`` module whose clock advances 0.1 s each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def monotonic(self) -> float:
        self.now += 0.1
        self.reads += 1
        return self.now


def test_one_deadline_for_the_whole_estimate(seq: Sequencer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each run of the search reads the clock a few times; the runs together pass the limit, no run
    alone does: a deadline per run would let the search finish."""
    code = "0x" + "5b" * 3000 + "00"  # 3000 JUMPDESTs then STOP: 1 frame + 2 opcode-count checks per run
    overrides = {LOOPER: {"code": code}}
    clock = TickingClock()
    monkeypatch.setattr(execution, "time", clock)
    dispatcher = Dispatcher(EthApi(seq, limits=RpcLimits(evm_timeout=1.0)))
    assert "result" in _ask(dispatcher, "eth_call", {"to": LOOPER}, "latest", overrides)  # one run: 4 reads
    per_call = clock.reads
    assert per_call < 10
    out = _ask(dispatcher, "eth_estimateGas", {"to": LOOPER}, "latest", overrides)
    assert out["error"] == {"code": -32000, "message": "execution aborted (timeout = 1s)"}
    # without a time limit the same search finishes
    no_limit = Dispatcher(EthApi(seq, limits=RpcLimits(evm_timeout=0)))
    assert int(_ask(no_limit, "eth_estimateGas", {"to": LOOPER}, "latest", overrides)["result"], 16) > 21_000


def test_ids_and_hex_are_strict(seq: Sequencer) -> None:
    dispatcher = Dispatcher(EthApi(seq))
    for constant in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400"):
        raw = dispatcher.respond_body(f'{{"jsonrpc":"2.0","id":{constant},"method":"eth_chainId"}}'.encode())
        assert raw is not None
        out = strict_loads(raw)
        assert out["id"] is None and out["error"]["code"] == -32600
    assert _ask(dispatcher, "eth_chainId")["result"] == "0x7a69"
    for bad in ("0x1\n", "0x1 ", " 0x1", "0x\n1", "0x1_0"):
        assert _ask(dispatcher, "eth_getBlockByNumber", bad, False)["error"]["code"] == -32602, repr(bad)
        assert _ask(dispatcher, "eth_getBalance", ACCOUNT0, bad)["error"]["code"] == -32602, repr(bad)
    assert _ask(dispatcher, "web3_sha3", "0x00\n")["error"]["code"] == -32602
    assert _ask(dispatcher, "eth_getBalance", ACCOUNT0 + "\n", "latest")["error"]["code"] == -32602
    assert _ask(dispatcher, "eth_getBlockByNumber", "0x0", False)["result"]["number"] == "0x0"


def test_batch_parsing_and_response_limits(seq: Sequencer) -> None:
    # each eth_chainId response is 41 bytes: the third one passes 100 bytes, later ones are refused
    dispatcher = Dispatcher(EthApi(seq, limits=RpcLimits(batch_limit=5, batch_response_max=100)))
    ask = {"jsonrpc": "2.0", "method": "eth_chainId"}
    out = dispatcher.handle_body(json.dumps([{**ask, "id": i} for i in range(5)]).encode())
    assert [r.get("result") for r in out] == ["0x7a69"] * 3 + [None] * 2
    assert [r["id"] for r in out] == list(range(5))
    assert all(r["error"] == {"code": -32003, "message": "response too large"} for r in out[3:])
    out = dispatcher.handle_body(json.dumps([{**ask, "id": i} for i in range(6)]).encode())
    assert out == [{"jsonrpc": "2.0", "id": 0, "error": {"code": -32600, "message": "batch too large"}}]
    block = {"jsonrpc": "2.0", "id": 9, "method": "eth_getBlockByNumber", "params": ["0x0", False]}
    single = dispatcher.handle_body(json.dumps(block).encode())
    assert single["id"] == 9 and single["error"]["code"] == -32003
    assert "response too large" in single["error"]["message"]
    small = Dispatcher(EthApi(seq, limits=RpcLimits(batch_limit=3)))
    assert [r["result"] for r in small.handle_body(b' [ {"jsonrpc":"2.0","id":1,"method":"eth_chainId"} ,'
                                                   b'{"jsonrpc":"2.0","method":"eth_chainId"},'
                                                   b'{"jsonrpc":"2.0","id":2,"method":"net_version"} ] ')] == [
        "0x7a69", "31337"]
    for body in (b"[1,2", b"[1,2] x", b"[1 2]", b"[,]", b"[1,]"):
        assert small.handle_body(body)["error"]["code"] == -32700, body
    assert small.handle_body(b"[ ]")["error"]["code"] == -32600
    assert small.handle_body(b'[{"jsonrpc":"2.0","id":1,"method":["x"]}]')[0]["error"]["code"] == -32600


def test_limits_refuse_impossible_values() -> None:
    for bad in ({"gas_cap": -1}, {"evm_timeout": -1.0}, {"evm_timeout": float("nan")}, {"max_body": 0},
                {"call_workers": 0}, {"batch_limit": -5}):
        with pytest.raises(LimitsError):
            RpcLimits(**bad)


def test_requests_beyond_the_queue_bound_get_503(seq: Sequencer) -> None:
    """One call worker, one waiting place. While the test holds the chain lock, the first of four
    concurrent eth_sendTransaction requests occupies the worker and the second waits: the other two
    get HTTP 503 at once, whatever the order of arrival. Released, the two admitted ones are mined."""
    import uvicorn

    from ai_evm.node.server import build_app

    limits = RpcLimits(call_workers=1, max_queued=1)
    server = uvicorn.Server(uvicorn.Config(build_app(Dispatcher(EthApi(seq, limits=limits))), host="127.0.0.1",
                                           port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    results: list[tuple[int, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

        def send(i: int) -> None:
            body = {"jsonrpc": "2.0", "id": i, "method": "eth_sendTransaction",
                    "params": [{"from": ACCOUNT0, "to": ACCOUNT1, "value": "0x1", "gas": "0x5208"}]}
            req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    results.append((resp.status, strict_loads(resp.read())))
            except urllib.error.HTTPError as e:
                results.append((e.code, strict_loads(e.read())))

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        with seq.lock:
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while len(results) < 2:
                assert time.monotonic() < deadline, results
                time.sleep(0.02)
            refused = list(results)
            # cheap methods are still answered on the event loop
            with urllib.request.urlopen(url + "/health", timeout=30) as resp:
                assert json.loads(resp.read())["ok"] is True
        for t in threads:
            t.join(timeout=120)
        assert [status for status, _ in refused] == [503, 503]
        assert all(out["error"]["code"] == -32005 and "server busy" in out["error"]["message"] for _, out in refused)
        mined = [out for status, out in results if status == 200]
        assert len(mined) == 2 and all(out["result"].startswith("0x") for out in mined), results
    finally:
        server.should_exit = True
        thread.join(timeout=30)
