"""Named errors of the node, each carrying its JSON-RPC 2.0 error code (geth's conventions).

| class | code | when |
|---|---|---|
| :class:`ParseError` | -32700 | the body is not JSON |
| :class:`InvalidRequest` | -32600 | JSON that is not a JSON-RPC request (or an empty batch) |
| :class:`MethodNotFound` | -32601 | unknown method |
| :class:`InvalidParams` | -32602 | wrong number, type or format of params, undecodable raw transaction |
| :class:`InternalError` | -32603 | a bug: the node caught an unexpected exception |
| :class:`ServerError` | -32000 | the request is well formed but refused: nonce too low, insufficient funds... |
| :class:`ExecutionReverted` | 3 | eth_call / eth_estimateGas hit REVERT; ``data`` is the revert bytes |
| :class:`LimitExceeded` | -32005 | a query over the node's limits (log range, result size), server busy |
| :class:`ResponseTooLarge` | -32003 | a response, or a batch's responses together, over the response size limit |
"""

from __future__ import annotations

from typing import Any


class NodeError(Exception):
    """Base of every error the node reports to a client."""

    code = -32000

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        """The JSON-RPC ``error`` member."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


class ParseError(NodeError):
    """The request body is not valid JSON."""

    code = -32700


class InvalidRequest(NodeError):
    """The JSON is not a valid JSON-RPC 2.0 request object."""

    code = -32600


class MethodNotFound(NodeError):
    """The method does not exist or is not available."""

    code = -32601


class InvalidParams(NodeError):
    """The params have the wrong count, type or format."""

    code = -32602


class InternalError(NodeError):
    """An unexpected failure inside the node (reported, never crashes the server)."""

    code = -32603


class ServerError(NodeError):
    """A valid request the node refuses (geth's generic -32000)."""

    code = -32000


class TransactionRejected(ServerError):
    """A transaction the pool will not accept (nonce too low, insufficient funds...)."""


class ExecutionReverted(NodeError):
    """Execution hit REVERT; ``data`` is the hex revert payload (geth uses code 3)."""

    code = 3


class LimitExceeded(NodeError):
    """A query exceeds the node's limits."""

    code = -32005


class ResponseTooLarge(NodeError):
    """The response (or the batch's responses so far) exceeds the response size limit (geth's code)."""

    code = -32003
