"""JSON-RPC 2.0 dispatch: request validation, the method table, batches and error objects.

:func:`handle_body` takes the raw HTTP body and returns the response object (or None when every
request was a notification). It never raises: malformed JSON is -32700, a non-request -32600, an
unknown method -32601, bad params -32602, and an unexpected exception inside a method -32603 with
the exception logged. In a batch, transactions sent by consecutive ``eth_sendRawTransaction`` /
``eth_sendTransaction`` requests are mined together (one block) before any other request of the
batch runs and before the batch's response is returned.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

from .encoding import data
from .errors import InternalError, InvalidParams, InvalidRequest, MethodNotFound, NodeError, ParseError, ServerError
from .methods import METHODS, EthApi

log = logging.getLogger(__name__)

MAX_BATCH = 10_000
SEND_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})


def error_response(error: NodeError, req_id: Any = None) -> dict[str, Any]:
    """A JSON-RPC error response object."""
    return {"jsonrpc": "2.0", "id": req_id, "error": error.to_json()}


class Dispatcher:
    """Maps method names to :class:`EthApi` methods, with signatures checked before the call."""

    def __init__(self, api: EthApi) -> None:
        self.api = api
        self.table: dict[str, tuple[Callable[..., Any], inspect.Signature]] = {}
        for name in sorted(METHODS):
            fn = getattr(api, name)
            self.table[name] = (fn, inspect.signature(fn))

    def call(self, method: str, params: list[Any]) -> Any:
        """Run one method; raises :class:`NodeError`."""
        entry = self.table.get(method)
        if entry is None:
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
        if not isinstance(req_id, str | int | float | type(None)) or isinstance(req_id, bool):
            return error_response(InvalidRequest("invalid request: id must be a string, number or null"))
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

    def handle_batch(self, reqs: list[Any]) -> list[dict[str, Any]] | dict[str, Any] | None:
        """A batch: responses in request order, notifications left out."""
        if not reqs:
            return error_response(InvalidRequest("empty batch"))
        if len(reqs) > MAX_BATCH:
            return error_response(InvalidRequest(f"batch of {len(reqs)} requests exceeds {MAX_BATCH}"))
        responses: list[dict[str, Any] | None] = []
        sends: dict[str, int] = {}  # tx hash -> position of its response
        self.api.defer_mining = True
        try:
            for req in reqs:
                method = req.get("method") if isinstance(req, dict) else None
                if method not in SEND_METHODS and sends:
                    self._flush(responses, sends)
                response = self.handle_one(req)
                responses.append(response)
                if method in SEND_METHODS and response is not None and isinstance(response.get("result"), str):
                    sends[response["result"]] = len(responses) - 1
            self._flush(responses, sends)
        finally:
            self.api.defer_mining = False
        out = [r for r in responses if r is not None]
        return out or None

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

    def handle_body(self, body: bytes) -> Any:
        """Raw HTTP body -> response JSON value (None: nothing to send back)."""
        try:
            msg = json.loads(body)
        except (ValueError, RecursionError) as e:
            return error_response(ParseError(f"parse error: {e}"))
        if isinstance(msg, list):
            return self.handle_batch(msg)
        return self.handle_one(msg)
