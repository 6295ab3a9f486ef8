"""JSON-RPC 2.0 dispatch: body parsing, request validation, the method table, batches, error objects.

:meth:`Dispatcher.respond_body` takes the raw HTTP body and returns the encoded response (or None
when every request was a notification); :meth:`Dispatcher.handle_body` is the same as a JSON value.
They never raise: malformed JSON is -32700, a non-request -32600, an unknown method -32601, bad
params -32602, and an unexpected exception inside a method -32603 with the exception logged.
Output is always strict JSON: a request id that is not a string, a finite number or null (``NaN``,
``Infinity``, ``1e400``) is an invalid request answered with id null.

Memory bounds (geth's, from :class:`~ai_evm.node.limits.RpcLimits`): a batch is parsed element by
element and refused with ``batch too large`` as soon as it has more than ``batch_limit`` entries,
so a body of ``[{},{},...]`` never becomes millions of objects. Responses are encoded as they are
produced; once a batch's responses add up to more than ``batch_response_max`` bytes, every later
request of the batch is answered ``response too large`` (-32003) without running. A single response
over that size is replaced by the same error.

In a batch, transactions sent by consecutive ``eth_sendRawTransaction`` / ``eth_sendTransaction``
requests are mined together (one block) before any other request of the batch runs and before the
batch's response is returned.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from .encoding import data
from .errors import (
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    NodeError,
    ParseError,
    ResponseTooLarge,
    ServerError,
)  # fmt: skip
from .limits import RpcLimits
from .methods import CALL_METHODS, LOCK_FREE_METHODS, METHODS, EthApi

log = logging.getLogger(__name__)

SEND_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})
#: Largest batch answered inline (on the server's event loop) when all its methods are lock-free.
INLINE_BATCH = 64
_WHITESPACE = re.compile(r"[ \t\n\r]*")


class BatchTooLarge(InvalidRequest):
    """A batch with more entries than the batch limit (geth: ``batch too large``)."""

    def __init__(self, first_id: Any) -> None:
        super().__init__("batch too large")
        self.first_id = first_id


def error_response(error: NodeError, req_id: Any = None) -> dict[str, Any]:
    """A JSON-RPC error response object."""
    return {"jsonrpc": "2.0", "id": req_id, "error": error.to_json()}


def encode(value: Any) -> bytes:
    """Compact strict JSON (never ``NaN``/``Infinity``); an unencodable value becomes an internal error."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError) as e:
        log.error("unencodable response: %s", e)
        return json.dumps(error_response(InternalError(f"internal error: unencodable response: {e}"))).encode()


def valid_id(value: Any) -> bool:
    """A JSON-RPC id this node echoes: a string, a finite number or null."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | type(None))


def _method_of(req: Any) -> str | None:
    method = req.get("method") if isinstance(req, dict) else None
    return method if isinstance(method, str) else None


def parse_body(body: bytes, batch_limit: int = 0) -> Any:
    """The JSON value of a request body. An array is parsed one element at a time and refused with
    :class:`BatchTooLarge` once it has more than ``batch_limit`` (> 0) elements; other failures
    are :class:`ParseError`."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        start = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
        if not text.startswith("[", start):
            return json.loads(text)
        return _parse_array(text, start + 1, batch_limit)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise ParseError(f"parse error: {e}") from None


def _parse_array(text: str, pos: int, batch_limit: int) -> list[Any]:
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            item, pos = decoder.raw_decode(text, pos)
            items.append(item)
            if batch_limit and len(items) > batch_limit:
                first = items[0].get("id") if isinstance(items[0], dict) else None
                raise BatchTooLarge(first if valid_id(first) else None)
            pos = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos = _WHITESPACE.match(text, pos + 1).end()  # type: ignore[union-attr]
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise ValueError(f"expecting ',' or ']' at char {pos}")
    if _WHITESPACE.match(text, pos).end() != len(text):  # type: ignore[union-attr]
        raise ValueError(f"extra data at char {pos}")
    return items


class Dispatcher:
    """Maps method names to :class:`EthApi` methods, with signatures checked before the call; the
    limits are the API's (:attr:`EthApi.limits`)."""

    def __init__(self, api: EthApi) -> None:
        self.api = api
        self.limits: RpcLimits = api.limits
        self.table: dict[str, tuple[Callable[..., Any], inspect.Signature]] = {}
        for name in sorted(METHODS):
            fn = getattr(api, name)
            self.table[name] = (fn, inspect.signature(fn))

    # -- routing (used by the server to pick where a request runs) ---------------------------------
    @staticmethod
    def lock_free(message: Any) -> bool:
        """True for a request, or a batch of at most :data:`INLINE_BATCH`, whose methods are all
        lock-free constant-work methods (answerable on the event loop)."""
        reqs = message if isinstance(message, list) else [message]
        return 0 < len(reqs) <= INLINE_BATCH and all(_method_of(r) in LOCK_FREE_METHODS for r in reqs)

    @staticmethod
    def executes(message: Any) -> bool:
        """True if the request (or a request of the batch) executes EVM code for a read."""
        reqs = message if isinstance(message, list) else [message]
        return any(_method_of(r) in CALL_METHODS for r in reqs)

    # -- one request --------------------------------------------------------------------------------
    def call(self, method: str, params: list[Any]) -> Any:
        """Run one method; raises :class:`NodeError`."""
        entry = self.table.get(method)
        if entry is None:
            if method in ("eth_subscribe", "eth_unsubscribe"):  # answered by the WebSocket side only
                raise MethodNotFound("notifications not supported: eth_subscribe needs a WebSocket connection "
                                     "(ws://, same host and port)")
            raise MethodNotFound(f"the method {method} does not exist/is not available")
        fn, sig = entry
        try:
            sig.bind(*params)
        except TypeError:
            required = sum(1 for p in sig.parameters.values()
                           if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD)
            total = sum(1 for p in sig.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD)
            raise InvalidParams(
                f"wrong number of params for {method}: got {len(params)}, expected "
                + (f"{required}" if required == total else f"{required} to {total}")
            ) from None
        return fn(*params)

    def handle_one(self, req: Any) -> dict[str, Any] | None:
        """One request object -> response (None for a notification)."""
        if not isinstance(req, dict):
            return error_response(InvalidRequest("invalid request: expected a JSON object"))
        req_id = req.get("id")
        if not valid_id(req_id):
            return error_response(InvalidRequest("invalid request: id must be a string, a finite number or null"))
        notification = "id" not in req
        if req.get("jsonrpc") != "2.0":
            return error_response(InvalidRequest('invalid request: "jsonrpc" must be "2.0"'), req_id)
        method = req.get("method")
        if not isinstance(method, str):
            return error_response(InvalidRequest("invalid request: method must be a string"), req_id)
        params = req.get("params", [])
        if params is None:
            params = []
        if not isinstance(params, list):
            return error_response(InvalidParams("non-array params are not supported"), req_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("rpc %s %s", method, json.dumps(params)[:200])
        try:
            result = self.call(method, params)
        except NodeError as e:
            response = error_response(e, req_id)
        except RecursionError:
            response = error_response(InvalidParams("params nested too deeply"), req_id)
        except Exception as e:  # a bug: report it, keep serving
            log.exception("internal error in %s", method)
            response = error_response(InternalError(f"internal error: {type(e).__name__}: {e}"), req_id)
        else:
            response = {"jsonrpc": "2.0", "id": req_id, "result": result}
        return None if notification else response

    def _encode_bounded(self, response: dict[str, Any]) -> bytes:
        raw = encode(response)
        limit = self.limits.batch_response_max
        if limit and len(raw) > limit:
            error = ResponseTooLarge(f"response too large: {len(raw)} bytes > limit {limit} bytes")
            raw = encode(error_response(error, response.get("id")))
        return raw

    # -- batches ------------------------------------------------------------------------------------
    def handle_batch(self, reqs: list[Any]) -> bytes | None:
        """A batch: encoded responses in request order, notifications left out (None if none)."""
        if not reqs:
            return encode(error_response(InvalidRequest("empty batch")))
        if self.limits.batch_limit and len(reqs) > self.limits.batch_limit:
            first = reqs[0].get("id") if isinstance(reqs[0], dict) else None
            return encode([error_response(BatchTooLarge(None), first if valid_id(first) else None)])
        budget = self.limits.batch_response_max
        pieces: list[bytes] = []
        size = 0
        pending: list[dict[str, Any] | None] = []  # responses not yet encoded (sends awaiting their block)
        sends: dict[str, int] = {}  # tx hash -> position of its response in ``pending``
        self.api.defer_mining = True
        try:
            for req in reqs:
                method = _method_of(req)
                if budget and size > budget:
                    if not (isinstance(req, dict) and "id" not in req):  # notifications get no answer
                        req_id = req["id"] if isinstance(req, dict) and valid_id(req["id"]) else None
                        pieces.append(encode(error_response(ResponseTooLarge("response too large"), req_id)))
                    continue
                if method not in SEND_METHODS and sends:
                    self._flush(pending, sends)
                response = self.handle_one(req)
                pending.append(response)
                if method in SEND_METHODS:
                    if response is not None and isinstance(response.get("result"), str):
                        sends[response["result"]] = len(pending) - 1
                else:  # nothing is waiting for a block: encode now, and count it
                    size += self._drain(pending, pieces)
            self._flush(pending, sends)
            self._drain(pending, pieces)
        finally:
            self.api.defer_mining = False
        return b"[" + b",".join(pieces) + b"]" if pieces else None

    def _drain(self, pending: list[dict[str, Any] | None], pieces: list[bytes]) -> int:
        size = 0
        for response in pending:
            if response is not None:
                raw = self._encode_bounded(response)
                pieces.append(raw)
                size += len(raw)
        pending.clear()
        return size

    def _flush(self, responses: list[dict[str, Any] | None], sends: dict[str, int]) -> None:
        try:
            dropped = self.api.flush()
        except Exception as e:  # mining failed as a whole: every deferred send fails
            log.exception("mining a batch failed")
            dropped = {bytes.fromhex(h[2:]): f"mining failed: {e}" for h in sends}
        for tx_hash, reason in dropped.items():
            pos = sends.get(data(tx_hash))
            if pos is not None and responses[pos] is not None:
                responses[pos] = error_response(ServerError(reason), responses[pos]["id"])  # type: ignore[index]
        sends.clear()

    # -- bodies -------------------------------------------------------------------------------------
    def parse(self, body: bytes) -> Any:
        """The body's JSON value (see :func:`parse_body`); raises :class:`ParseError`/:class:`BatchTooLarge`."""
        return parse_body(body, self.limits.batch_limit)

    def respond(self, message: Any) -> bytes | None:
        """Encoded response to a parsed request or batch (None: nothing to send back)."""
        if isinstance(message, list):
            return self.handle_batch(message)
        response = self.handle_one(message)
        return None if response is None else self._encode_bounded(response)

    def respond_body(self, body: bytes) -> bytes | None:
        """Encoded response to a raw HTTP body (None: nothing to send back)."""
        try:
            message = self.parse(body)
        except BatchTooLarge as e:
            return encode([error_response(e, e.first_id)])
        except NodeError as e:
            return encode(error_response(e))
        return self.respond(message)

    def handle_body(self, body: bytes) -> Any:
        """Raw HTTP body -> response JSON value (None: nothing to send back)."""
        raw = self.respond_body(body)
        return None if raw is None else json.loads(raw)
