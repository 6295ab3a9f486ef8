"""The HTTP side of the node: a starlette app serving JSON-RPC, and the process that runs it.

``POST /`` (any path) takes a JSON-RPC request or batch. Bodies over ``max_body`` bytes get HTTP
413 with a JSON-RPC -32600 error, without being read past the limit. CORS is open (wallets and
browser dapps talk to a dev node from any origin). ``GET /health`` answers ``{"ok": true, ...}``.
:func:`run_node` opens the chain, starts the interval miner when ``block_time`` is set, serves
until SIGINT/SIGTERM (uvicorn's handlers), then stops the miner and closes the database.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .chain import Sequencer
from .errors import InvalidRequest
from .methods import EthApi
from .rpc import Dispatcher, error_response

log = logging.getLogger(__name__)

#: Stack size of the worker threads that run requests. py-evm and py_ecc raise Python's recursion
#: limit (to 100 000) for deep EVM call chains, so the C stack of a thread must hold that many
#: frames: deeply nested JSON or calls would otherwise overflow an 8 MiB stack and crash the process.
THREAD_STACK_SIZE = 256 << 20

#: Default request body limit (geth's is 5 MiB; inference inputs can be large).
DEFAULT_MAX_BODY = 32 << 20


def _json(value: Any, status: int = 200) -> Response:
    body = b"" if value is None else json.dumps(value, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


def _too_large(size: int | None, limit: int) -> Response:
    what = f"{size} bytes" if size is not None else "more"
    err = InvalidRequest(f"request body too large: {what} > limit {limit} bytes")
    return _json(error_response(err), status=413)


def build_app(dispatcher: Dispatcher, max_body: int = DEFAULT_MAX_BODY) -> Starlette:
    """The ASGI app around a dispatcher."""

    async def rpc(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > max_body:
                    return _too_large(int(declared), max_body)
            except ValueError:
                return _json(error_response(InvalidRequest("invalid content-length header")), status=400)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                return _too_large(None, max_body)
            chunks.append(chunk)
        result = await run_in_threadpool(dispatcher.handle_body, b"".join(chunks))
        return _json(result)

    async def health(request: Request) -> Response:
        head = await run_in_threadpool(dispatcher.api.eth_blockNumber)
        return _json({"ok": True, "blockNumber": head})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/", rpc, methods=["POST"]),
        Route("/{path:path}", rpc, methods=["POST"]),
    ]
    middleware = [Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])]
    return Starlette(routes=routes, middleware=middleware)


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
    max_body: int = DEFAULT_MAX_BODY, on_ready: Callable[[int], None] | None = None,
) -> None:  # fmt: skip
    """Serve the node over HTTP until SIGINT/SIGTERM, then shut down cleanly.

    ``on_ready(port)`` runs (in another thread) once the server listens.
    """
    import uvicorn

    threading.stack_size(THREAD_STACK_SIZE)
    api = EthApi(seq, automine=block_time is None)
    app = build_app(Dispatcher(api), max_body)
    miner = IntervalMiner(seq, block_time) if block_time else None
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=10)
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
