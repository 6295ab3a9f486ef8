"""The JSON-RPC layer's resource limits, in one record (defaults follow geth where geth has one).

:class:`RpcLimits` is built from the ``aievm node``/``aievm devnet`` flags and handed to the HTTP
server (body size, worker pools, queue), the dispatcher (batch length, response size) and the
methods that execute EVM code for a read (gas cap, time limit). ``docs/node.md`` ("Limits") lists
every limit with its default and flag.
"""

from __future__ import annotations

from dataclasses import dataclass

#: geth's ``--rpc.gascap``: gas of ``eth_call``/``eth_estimateGas`` above it is clamped to it.
DEFAULT_GAS_CAP = 50_000_000
#: geth's ``--rpc.evmtimeout``: an ``eth_call`` (or a whole ``eth_estimateGas``) runs at most this long.
DEFAULT_EVM_TIMEOUT = 5.0
#: geth's ``--rpc.batch-request-limit``.
DEFAULT_BATCH_LIMIT = 1000
#: geth's ``--rpc.batch-response-max-size`` (25 MB); also bounds a single response.
DEFAULT_BATCH_RESPONSE_MAX = 25_000_000
#: geth's HTTP body limit (5 MiB). Raw transactions are at most 128 KiB and inference inputs of the
#: example models a few KiB, so a larger body is an error or an attack: parsing JSON costs up to
#: ~25 bytes of memory per body byte (``[{},{},...]``).
DEFAULT_MAX_BODY = 5 << 20
#: Worker threads for requests that execute EVM code for a read (``eth_call``, ``eth_estimateGas``...).
CALL_WORKERS = 4
#: Worker threads for every other request that cannot be answered on the event loop.
WORK_WORKERS = 16
#: Requests allowed to wait for a worker of one pool; beyond that the node answers HTTP 503.
MAX_QUEUED = 128


class LimitsError(ValueError):
    """A limit was given an impossible value (negative, or zero where zero cannot mean "off")."""


@dataclass(frozen=True)
class RpcLimits:
    """Resource limits of the JSON-RPC layer; 0 disables ``gas_cap``, ``evm_timeout`` and the two
    batch limits, as in geth (the body limit cannot be disabled)."""

    gas_cap: int = DEFAULT_GAS_CAP
    evm_timeout: float = DEFAULT_EVM_TIMEOUT
    batch_limit: int = DEFAULT_BATCH_LIMIT
    batch_response_max: int = DEFAULT_BATCH_RESPONSE_MAX
    max_body: int = DEFAULT_MAX_BODY
    call_workers: int = CALL_WORKERS
    work_workers: int = WORK_WORKERS
    max_queued: int = MAX_QUEUED

    def __post_init__(self) -> None:
        for name in ("gas_cap", "batch_limit", "batch_response_max", "max_queued"):
            if getattr(self, name) < 0:
                raise LimitsError(f"{name} must be >= 0 (0 = unlimited), got {getattr(self, name)}")
        if not self.evm_timeout >= 0:  # also refuses NaN
            raise LimitsError(f"evm_timeout must be >= 0 seconds (0 = unlimited), got {self.evm_timeout}")
        for name in ("max_body", "call_workers", "work_workers"):
            if getattr(self, name) < 1:
                raise LimitsError(f"{name} must be >= 1, got {getattr(self, name)}")


def go_duration(seconds: float) -> str:
    """A duration as Go prints it in geth's messages: ``5s``, ``1.5s``, ``500ms``."""
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"
