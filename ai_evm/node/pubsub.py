"""JSON-RPC over WebSocket on the HTTP port: every method, plus ``eth_subscribe``/``eth_unsubscribe``.

A WebSocket connection to any path of the node's port speaks JSON-RPC 2.0: each text message is a
request or a batch, answered on the same socket (responses may come in another order than the
requests: a slow ``eth_call`` does not hold up the others; the ids match them). Requests run where
HTTP requests run (the same worker pools and limits), so every HTTP method works over ws.

Subscriptions (geth's): ``eth_subscribe("newHeads")`` (block header objects), ``eth_subscribe("logs",
{address, topics})`` (one notification per matching log, in chain order; numeric ``fromBlock``/
``toBlock`` bound the blocks reported, tags do not, as for a filter) and
``eth_subscribe("newPendingTransactions")`` (transaction hashes); each notification is
``{"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": id, "result": ...}}``.
``eth_unsubscribe(id)`` ends one; closing the socket ends them all.

Where the events come from: one :class:`BlockFeed` per server polls the last **committed** block
(an LMDB read, no chain lock) every :data:`POLL_INTERVAL` seconds and reads the records of the
blocks committed since, so a subscriber sees every block once, in order, and never one that is not
on disk; pending hashes are those seen in the pool, then those of newly mined transactions not
announced yet (under automine a transaction is pending only inside its send). After ``evm_revert``
(the filter registry tells the feed, :meth:`BlockFeed.rewound`) the blocks mined from the snapshot
on are announced, at their reused numbers, even blocks identical to reverted ones; geth's
``removed`` logs are not sent. Each connection has a bounded queue of outgoing messages; a client that lets more
than :data:`MAX_QUEUED_MESSAGES` pile up is disconnected (close code 1008) rather than make the node
hold them without bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.websockets import WebSocket, WebSocketDisconnect

from .errors import InvalidParams, InvalidRequest, LimitExceeded, NodeError
from .filters import LogCriteria, log_matches, numeric_bound, parse_criteria
from .index import block_key, decode_record
from .rpc import Dispatcher, encode, error_response, valid_id
from .snapshot import committed_head_number

log = logging.getLogger(__name__)

#: Seconds between two looks at the committed head.
POLL_INTERVAL = 0.02
#: Messages waiting to be sent to one connection before it is closed as too slow.
MAX_QUEUED_MESSAGES = 20_000
#: Subscriptions one connection may hold.
MAX_SUBSCRIPTIONS = 1_000
#: Transaction hashes remembered as announced (``newPendingTransactions``).
ANNOUNCED_MEMORY = 50_000
#: Most blocks read per poll (a subscriber far behind catches up over several polls).
MAX_BLOCKS_PER_POLL = 256
SUBSCRIPTION_KINDS = ("newHeads", "logs", "newPendingTransactions")


@dataclass
class Subscription:
    """One ``eth_subscribe``: its id, kind, log criteria and the connection it reports to."""

    sid: str
    kind: str
    criteria: LogCriteria | None
    connection: Connection
    #: numeric ``fromBlock``/``toBlock`` of a logs subscription (None: no bound)
    first: int | None = None
    last: int | None = None

    def wants_block(self, number: int) -> bool:
        """Whether a logs subscription's block bounds include block ``number``."""
        return (self.first is None or number >= self.first) and (self.last is None or number <= self.last)


class BlockFeed:
    """Reads what the chain committed and hands it to the subscriptions (one per server)."""

    def __init__(self, seq: Any) -> None:
        self.seq = seq
        self.subscriptions: dict[str, Subscription] = {}
        self._last: int | None = None
        self._announced: OrderedDict[str, None] = OrderedDict()
        #: the lowest block the chain was rewound to since the last poll (:meth:`rewound`)
        self._rewound: int | None = None
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling on the running event loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # the database closed under us at shutdown, or a bug: keep serving
                log.exception("block feed poll failed")
            await asyncio.sleep(POLL_INTERVAL)

    async def poll(self) -> None:
        """Announce what was committed (and pooled) since the last poll."""
        if not self.subscriptions:
            self._last = None  # nobody listens: start from the head when someone does
            return
        head = committed_head_number(self.seq.db)
        with self._lock:
            rewound, self._rewound = self._rewound, None
        if self._last is None:
            self._last = head
        if rewound is not None:  # evm_revert: the blocks mined from there on are new, even identical ones
            self._last = min(self._last, rewound)
        self._last = min(self._last, head)
        if self._has("newPendingTransactions"):
            self._announce(self._pending_hashes())
        if head == self._last:
            return
        first, last = self._last + 1, min(head, self._last + MAX_BLOCKS_PER_POLL)
        records = await anyio.to_thread.run_sync(self._read_records, first, last)
        for record in records:
            self._publish_block(record)
            self._last = int(record["block"]["number"], 16)

    def rewound(self, number: int) -> None:
        """The chain went back to block ``number`` (``evm_revert``; called from any thread): the next
        poll announces the blocks mined after it, whatever their numbers and contents."""
        with self._lock:
            self._rewound = number if self._rewound is None else min(self._rewound, number)

    def add(self, sub: Subscription) -> None:
        """Report to ``sub`` from the next block on (the feed's starting point is fixed now, so that
        a block committed before the next poll is not missed)."""
        if self._last is None:
            self._last = committed_head_number(self.seq.db)
        self.subscriptions[sub.sid] = sub

    def _has(self, kind: str) -> bool:
        return any(s.kind == kind for s in self.subscriptions.values())

    def _read_records(self, first: int, last: int) -> list[dict[str, Any]]:
        txn = self.seq.db.begin_read()
        try:
            out = []
            for n in range(first, last + 1):
                raw = txn.get(block_key(n))
                if raw is None:  # rewound meanwhile: the next poll starts from the new head
                    break
                out.append(decode_record(bytes(raw)))
            return out
        finally:
            txn.abort()

    def _pending_hashes(self) -> list[str]:
        try:
            return ["0x" + bytes(h).hex() for h in list(self.seq.pool.pending)]
        except RuntimeError:  # the pool changed while we copied it (no lock taken): next poll
            return []

    def _announce(self, hashes: list[str]) -> None:
        fresh = [h for h in hashes if h not in self._announced]
        for h in fresh:
            self._announced[h] = None
        while len(self._announced) > ANNOUNCED_MEMORY:
            self._announced.popitem(last=False)
        if fresh:
            for sub in list(self.subscriptions.values()):
                if sub.kind == "newPendingTransactions":
                    for h in fresh:
                        sub.connection.notify(sub.sid, h)

    def _publish_block(self, record: dict[str, Any]) -> None:
        header = {k: v for k, v in record["block"].items() if k != "transactions"}
        logs = [lg for receipt in record["receipts"] for lg in receipt["logs"]]
        if self._has("newPendingTransactions"):
            self._announce(list(record["block"]["transactions"]))
        number = int(header["number"], 16)
        for sub in list(self.subscriptions.values()):
            if sub.kind == "newHeads":
                sub.connection.notify(sub.sid, header)
            elif sub.kind == "logs" and sub.wants_block(number):
                assert sub.criteria is not None
                for lg in logs:
                    if log_matches(lg, sub.criteria):
                        sub.connection.notify(sub.sid, lg)


class Connection:
    """One WebSocket client: its outgoing queue, its subscriptions, its request loop."""

    def __init__(self, websocket: WebSocket, dispatcher: Dispatcher, feed: BlockFeed,
                 run: Callable[[Any, Callable[[], bytes | None]], Awaitable[bytes | None]]) -> None:  # fmt: skip
        self.websocket = websocket
        self.dispatcher = dispatcher
        self.feed = feed
        self.run = run
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_QUEUED_MESSAGES)
        self.subscriptions: set[str] = set()
        self.overflowed = False
        self._writer_task: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    # -- outgoing ---------------------------------------------------------------------------------
    def send(self, raw: bytes | None) -> None:
        """Queue one encoded message (None: nothing to send); a full queue closes the connection."""
        if raw is None or self.overflowed:
            return
        try:
            self.outbox.put_nowait(raw)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("closing a WebSocket client that does not read its messages (%d queued)", self.outbox.qsize())
            self._unsubscribe_all()
            if self._writer_task is not None:
                self._writer_task.cancel()  # it may be stuck in a send the client never reads
            self._closer = asyncio.get_running_loop().create_task(self._close_slow())

    async def _close_slow(self) -> None:
        try:
            await self.websocket.close(code=1008, reason="too many messages waiting: read faster")
        except Exception:  # already gone
            pass

    def notify(self, sid: str, result: Any) -> None:
        """Queue an ``eth_subscription`` notification."""
        self.send(encode({"jsonrpc": "2.0", "method": "eth_subscription",
                          "params": {"subscription": sid, "result": result}}))  # fmt: skip

    async def _writer(self) -> None:
        while not self.overflowed:
            raw = await self.outbox.get()
            if raw is None:
                return
            await self.websocket.send_text(raw.decode())

    # -- incoming ---------------------------------------------------------------------------------
    async def serve(self) -> None:
        """Accept, then answer messages until the client goes away."""
        await self.websocket.accept()
        writer = self._writer_task = asyncio.create_task(self._writer())
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not writer.done():
                try:
                    message = await self.websocket.receive()
                except (WebSocketDisconnect, RuntimeError):
                    break
                if message["type"] == "websocket.disconnect":
                    break
                body = message.get("bytes") or (message.get("text") or "").encode()  # text or binary frames
                task = asyncio.create_task(self._handle(body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            self._unsubscribe_all()
            for task in tasks:
                task.cancel()
            if writer.done():
                pass
            elif self.outbox.full():
                writer.cancel()
            else:
                self.outbox.put_nowait(None)
            try:
                await writer
            except (asyncio.CancelledError, Exception):
                pass

    async def _handle(self, body: bytes) -> None:
        limit = self.dispatcher.limits.max_body
        if limit and len(body) > limit:
            self.send(encode(error_response(InvalidRequest(f"message too large: {len(body)} bytes > limit {limit}"))))
            return
        try:
            message = self.dispatcher.parse(body)
        except NodeError as e:
            self.send(encode(error_response(e, getattr(e, "first_id", None))))
            return
        if isinstance(message, list) and any(_is_pubsub(r) for r in message):
            if not message:
                return
            parts = [await self._one(r) for r in message]
            pieces = [p for p in parts if p is not None]
            self.send(b"[" + b",".join(pieces) + b"]" if pieces else None)
        elif _is_pubsub(message):
            self.send(await self._one(message))
        elif self.dispatcher.lock_free(message):
            self.send(self.dispatcher.respond(message))
        else:
            self.send(await self.run(message, lambda: self.dispatcher.respond(message)))

    async def _one(self, req: Any) -> bytes | None:
        if not _is_pubsub(req):
            return await self.run(req, lambda: self.dispatcher.respond(req))
        req_id = req.get("id")
        if not valid_id(req_id) or req.get("jsonrpc") != "2.0":
            return encode(error_response(InvalidRequest("invalid request"), req_id if valid_id(req_id) else None))
        params = req.get("params") or []
        try:
            if not isinstance(params, list):
                raise InvalidParams("non-array params are not supported")
            result = self._subscribe(params) if req["method"] == "eth_subscribe" else self._unsubscribe(params)
        except NodeError as e:
            return encode(error_response(e, req_id))
        return None if "id" not in req else encode({"jsonrpc": "2.0", "id": req_id, "result": result})

    def _subscribe(self, params: list[Any]) -> str:
        if not params or params[0] not in SUBSCRIPTION_KINDS:
            raise InvalidParams(f"invalid subscription: expected one of {', '.join(SUBSCRIPTION_KINDS)}")
        kind = params[0]
        if kind == "logs":
            if len(params) > 2:
                raise InvalidParams("logs subscription takes one filter object")
            criteria = parse_criteria(params[1] if len(params) > 1 else {})
            if criteria.block_hash is not None:
                raise InvalidParams("a logs subscription reports new blocks: blockHash is not allowed")
            first = numeric_bound(criteria.from_block, "fromBlock")  # as a filter's: numbers bound, tags do not
            last = numeric_bound(criteria.to_block, "toBlock")
        else:
            if len(params) > 2:
                raise InvalidParams(f"{kind} subscription takes no filter")
            criteria, first, last = None, None, None
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise LimitExceeded(f"too many subscriptions on this connection (max {MAX_SUBSCRIPTIONS})")
        sid = "0x" + (os.urandom(16).hex().lstrip("0") or "0")  # a QUANTITY, as geth's ids
        # registered once this request's response is queued (the caller sends it first: same loop step)
        asyncio.get_running_loop().call_soon(self._register, Subscription(sid, kind, criteria, self, first, last))
        self.feed.start()
        return sid

    def _register(self, sub: Subscription) -> None:
        if self.overflowed:
            return
        self.subscriptions.add(sub.sid)
        self.feed.add(sub)

    def _unsubscribe(self, params: list[Any]) -> bool:
        if len(params) != 1 or not isinstance(params[0], str):
            raise InvalidParams("eth_unsubscribe takes one subscription id")
        sid = params[0].lower()
        if sid not in self.subscriptions:
            return False
        self.subscriptions.discard(sid)
        self.feed.subscriptions.pop(sid, None)
        return True

    def _unsubscribe_all(self) -> None:
        for sid in self.subscriptions:
            self.feed.subscriptions.pop(sid, None)
        self.subscriptions.clear()


def _is_pubsub(req: Any) -> bool:
    return isinstance(req, dict) and req.get("method") in ("eth_subscribe", "eth_unsubscribe")

