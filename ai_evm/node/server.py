"""The HTTP side of the node: a starlette app serving JSON-RPC, and the process that runs it.

``POST /`` (any path) takes a JSON-RPC request or batch; a WebSocket on any path speaks JSON-RPC
too, with ``eth_subscribe`` (:mod:`ai_evm.node.pubsub`; its requests use the same worker pools); a
handshake whose ``Origin`` the CORS origins do not allow is refused (browsers apply no CORS to
ws). Bodies over the body limit get HTTP 413 with a JSON-RPC -32600 error, without being read past
the limit. CORS allows the origins of
:attr:`ServeOptions.cors` (default any: wallets and browser dapps talk to a dev node from any
origin). ``GET /health`` answers ``{"ok": true, ...}``. :func:`run_node` opens the chain, starts
the interval miner when ``block_time`` is set, serves until SIGINT/SIGTERM (uvicorn's handlers),
then stops the miner and closes the database. It refuses to serve the public dev accounts unlocked
on an address other than loopback unless told so (:func:`check_exposure`).

Scheduling, so that cheap methods keep answering under any load:

* a small body (up to :data:`INLINE_BODY` bytes) is parsed on the event loop; if all its methods are
  lock-free constant-work methods (``eth_chainId``, ``eth_blockNumber``...:
  :data:`~ai_evm.node.methods.LOCK_FREE_METHODS`) it is answered right there, never waiting for a
  worker thread (``/health`` too);
* requests that execute EVM code for a read (``eth_call``, ``eth_estimateGas``...) run in their own
  small pool of ``call_workers`` threads, everything else in a pool of ``work_workers`` threads,
  so slow calls never occupy the threads that sends and other reads need;
* at most ``max_queued`` requests wait for each pool; beyond that the node answers HTTP 503 with a
  -32005 ``server busy`` error at once instead of queueing without bound.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .chain import Sequencer
from .errors import InvalidRequest, LimitExceeded, NodeError
from .limits import RpcLimits
from .methods import EthApi
from .pubsub import BlockFeed, Connection
from .rpc import BatchTooLarge, Dispatcher, encode, error_response

log = logging.getLogger(__name__)

#: Stack size of the worker threads that run requests. py-evm and py_ecc raise Python's recursion
#: limit (to 100 000) for deep EVM call chains, so the C stack of a thread must hold that many
#: frames: deeply nested JSON or calls would otherwise overflow an 8 MiB stack and crash the process.
THREAD_STACK_SIZE = 256 << 20

#: Bodies up to this size are parsed on the event loop (small enough that no nesting in them can
#: exhaust the main thread's 8 MiB C stack); larger ones are parsed in a worker thread.
INLINE_BODY = 4096


def _json(value: Any, status: int = 200) -> Response:
    body = b"" if value is None else json.dumps(value, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


def _raw(body: bytes | None, status: int = 200) -> Response:
    return Response(body or b"", status_code=status, media_type="application/json")


def _too_large(size: int | None, limit: int) -> Response:
    what = f"{size} bytes" if size is not None else "more"
    err = InvalidRequest(f"request body too large: {what} > limit {limit} bytes")
    return _json(error_response(err), status=413)


class _Pool:
    """A worker pool: an anyio capacity limiter (created on the event loop at first use) and the
    number of requests admitted to it, running or waiting, counted on the event loop (so that the
    bound holds exactly, whatever arrives between two steps of the loop)."""

    def __init__(self, workers: int, max_queued: int) -> None:
        self.workers = workers
        self.max_queued = max_queued
        self.admitted = 0
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, work: Callable[[], bytes | None]) -> Response:
        """Run ``work`` in a worker thread, or answer 503 at once if too many requests wait."""
        raw, busy = await self.call(work)
        return _raw(raw, status=503 if busy else 200)

    async def call(self, work: Callable[[], bytes | None]) -> tuple[bytes | None, bool]:
        """``work()`` run in a worker thread, or (a -32005 ``server busy`` error, True) at once."""
        if self.admitted >= self.workers + self.max_queued:
            waiting = self.admitted - self.workers
            busy = LimitExceeded(f"server busy: {waiting} requests are waiting for a worker; retry later")
            return encode(error_response(busy)), True
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.workers)
        self.admitted += 1
        try:
            return await anyio.to_thread.run_sync(work, limiter=self._limiter), False
        finally:
            self.admitted -= 1


@dataclass(frozen=True)
class ServeOptions:
    """What a served node exposes (``aievm node`` flags): the test methods, the dev accounts
    unlocked, on which terms off loopback, and the CORS origins (empty: no CORS headers)."""

    dev_methods: bool = False
    dev_accounts: bool = True
    allow_public_dev_accounts: bool = False
    cors: tuple[str, ...] = ("*",)


class UnsafeExposure(NodeError):
    """The node would serve the public dev accounts, unlocked, beyond this machine."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(host: str, seq: Sequencer, options: ServeOptions) -> None:
    """Refuse to listen beyond loopback while the dev accounts, whose keys are public, sign for anyone."""
    check_exposure_of(host, len(seq.config.accounts), options)


def check_exposure_of(host: str, dev_accounts: int, options: ServeOptions) -> None:
    """:func:`check_exposure` before the chain is opened (``dev_accounts``: how many it unlocks)."""
    if options.dev_accounts and dev_accounts and not is_loopback(host) and not options.allow_public_dev_accounts:
        raise UnsafeExposure(
            f"refusing to listen on {host} with the dev accounts unlocked: their private keys are public, so "
            "anyone who reaches this address can sign with them; use --no-dev-accounts, or "
            "--allow-public-dev-accounts if that is what you want (a throwaway test network)")


def build_app(dispatcher: Dispatcher, cors: tuple[str, ...] = ("*",)) -> Starlette:
    """The ASGI app around a dispatcher (limits: ``dispatcher.limits``); ``cors``: allowed origins."""
    limits = dispatcher.limits
    pools = {"call": _Pool(limits.call_workers, limits.max_queued),
             "work": _Pool(limits.work_workers, limits.max_queued)}

    async def read_body(request: Request) -> bytes | Response:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limits.max_body:
                    return _too_large(int(declared), limits.max_body)
            except ValueError:
                return _json(error_response(InvalidRequest("invalid content-length header")), status=400)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body:
                return _too_large(None, limits.max_body)
            chunks.append(chunk)
        return b"".join(chunks)

    async def rpc(request: Request) -> Response:
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        if len(body) <= INLINE_BODY:
            try:
                message = dispatcher.parse(body)
            except BatchTooLarge as e:
                return _raw(encode([error_response(e, e.first_id)]))
            except NodeError as e:
                return _raw(encode(error_response(e)))
            if dispatcher.lock_free(message):
                return _raw(dispatcher.respond(message))
            return await pools["call" if dispatcher.executes(message) else "work"].run(
                functools.partial(dispatcher.respond, message))
        return await pools["work"].run(functools.partial(dispatcher.respond_body, body))

    async def health(request: Request) -> Response:
        return _json({"ok": True, "blockNumber": dispatcher.api.eth_blockNumber()})

    feed = BlockFeed(dispatcher.api.seq)
    dispatcher.api.filters.rewind_listeners.append(feed.rewound)

    async def run_message(message: Any, work: Callable[[], bytes | None]) -> bytes | None:
        raw, _ = await pools["call" if dispatcher.executes(message) else "work"].call(work)
        return raw

    async def websocket(ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if origin is not None and "*" not in cors and origin not in cors:  # a web page of another origin
            await ws.close(code=1008)  # before accept: the handshake is refused (HTTP 403)
            return
        await Connection(ws, dispatcher, feed, run_message).serve()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await feed.stop()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/", rpc, methods=["POST"]),
        WebSocketRoute("/", websocket),
        Route("/{path:path}", rpc, methods=["POST"]),
        WebSocketRoute("/{path:path}", websocket),
    ]
    middleware = [Middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["*"], allow_headers=["*"])]
    if not cors:
        middleware = []
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


class IntervalMiner:
    """Mines a block every ``interval`` seconds (empty blocks included), like ``anvil --block-time``."""

    def __init__(self, seq: Sequencer, interval: float) -> None:
        self.seq = seq
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="interval-miner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.seq.mine_pending(allow_empty=True)
            except Exception:
                log.exception("interval mining failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def run_node(
    seq: Sequencer, host: str, port: int, block_time: float | None = None,
    limits: RpcLimits | None = None, on_ready: Callable[[int], None] | None = None,
    options: ServeOptions | None = None,
) -> None:  # fmt: skip
    """Serve the node over HTTP until SIGINT/SIGTERM, then shut down cleanly.

    ``limits`` bounds the JSON-RPC layer (defaults: :class:`RpcLimits`), ``options`` says what it
    exposes (:class:`ServeOptions`; raises :class:`UnsafeExposure` before serving, see
    :func:`check_exposure`). ``on_ready(port)`` runs (in another thread) once the server listens.
    """
    import uvicorn

    options = options if options is not None else ServeOptions()
    try:
        check_exposure(host, seq, options)
    except UnsafeExposure:
        seq.close()
        raise
    threading.stack_size(THREAD_STACK_SIZE)
    api = EthApi(seq, automine=block_time is None, limits=limits, dev_methods=options.dev_methods,
                 dev_accounts=options.dev_accounts)
    app = build_app(Dispatcher(api), options.cors)
    miner = IntervalMiner(seq, block_time) if block_time else None
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=10, ws_max_size=api.limits.max_body)
    server = uvicorn.Server(config)
    if miner is not None:
        miner.start()
    _absorb_reraised_signals()
    try:
        if on_ready is not None:
            _call_when_started(server, on_ready)
        server.run()
    finally:
        if miner is not None:
            miner.stop()
        seq.close()


def _absorb_reraised_signals() -> None:
    """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown; make that a no-op so that
    :func:`run_node` can close the database and return normally (exit status 0)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)


def _call_when_started(server: Any, callback: Callable[[int], None]) -> None:
    """Call ``callback(port actually bound)`` once uvicorn listens (``--port 0`` picks a free one)."""
    def wait() -> None:
        import time

        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            port = int(server.servers[0].sockets[0].getsockname()[1])
            callback(port)

    threading.Thread(target=wait, daemon=True).start()
