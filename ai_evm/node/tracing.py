"""``debug_trace*``: geth's struct-log and call tracers over re-executed transactions.

A mixin of :class:`ai_evm.node.methods.EthApi` (as :class:`ai_evm.node.proofs.ProofsApi`): it uses
the API's sequencer (``self.seq``), block resolution (``self._header``) and RPC limits.

The EVM side (a tracing computation class, the struct logger, the call frames) is
:mod:`ai_evm.node.tracers`; here are the config, the re-execution and the methods.

A mined transaction is traced by re-executing its block on a :class:`~ai_evm.node.snapshot.HeadSnapshot`
(no chain lock): the block's VM on the parent's state root, as ``mine_all`` built it, the earlier
transactions applied untraced, then the traced one. ``debug_traceCall`` runs a call object as
``eth_call`` does (state overrides, RPC gas cap).

Tracers (geth's ``TraceConfig``):

* default, the struct logger: ``{gas, failed, returnValue, structLogs}``; one entry per opcode
  ``{pc, op, gas, gasCost, depth, stack, memory, storage, returnData, error}`` with geth's options
  ``disableStack``, ``disableStorage``, ``enableMemory``, ``enableReturnData`` and ``limit``;
* ``callTracer``: the tree of call frames ``{from, gas, gasUsed, to, input, output, error,
  revertReason, calls, value, type}`` with ``tracerConfig.onlyTopCall``. A frame of a call to the
  inference precompiles (0xa1, 0xa0) carries an ``inference`` object: the model address, the
  input and output bytes, the inference gas and the record's ``callIndex`` (the index in
  ``aievm_getInferences``), or the reason the inference failed.

Bounds: the whole re-execution (earlier transactions included) runs under the RPC time limit (or
a shorter ``timeout`` option), gas as the block ran it (``debug_traceCall``: the RPC gas cap), and
the struct logs of one request are bounded in number (:data:`MAX_STRUCT_LOGS`) and in estimated
JSON bytes (the response size limit, or :data:`MAX_TRACE_BYTES` if it is off): beyond either the
request fails with :class:`~ai_evm.node.errors.LimitExceeded` while it executes, before the
memory is spent.
"""

from __future__ import annotations

import re
from typing import Any

from eth_typing import BlockNumber, Hash32

from .encoding import data, parse_bool, parse_hash, parse_quantity
from .errors import InvalidParams, ServerError
from .execution import clamp_gas, execution_deadline, parse_call_request, run_call
from .tracers import TraceBudget, TraceConfig, Tracer, trace_result, tracing, tracing_chain_class

#: Most struct-log entries one request may produce (geth has no limit but its own memory).
MAX_STRUCT_LOGS = 1_000_000
#: Most estimated JSON bytes of one request's struct logs when the response size limit is off (0).
MAX_TRACE_BYTES = 200_000_000
#: The tracers this node serves (None: the struct logger).
TRACERS = ("callTracer",)
#: Keys of geth's ``TraceConfig`` this node reads (others are refused by name).
CONFIG_KEYS = frozenset({"tracer", "tracerConfig", "disableStack", "disableStorage", "enableMemory",
                         "enableReturnData", "limit", "timeout", "reexec", "stateOverrides"})  # fmt: skip


class TransactionNotFound(ServerError):
    """``debug_traceTransaction`` of a hash the node has not mined."""


class BlockNotFound(ServerError):
    """``debug_traceBlockBy*`` of a block the node does not have."""


def parse_go_duration(value: Any, name: str = "timeout") -> float:
    """A Go duration string (``"5s"``, ``"1m30s"``, ``"500ms"``) in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    if not isinstance(value, str) or not re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value):
        raise InvalidParams(f"invalid {name}: expected a Go duration such as \"5s\" or \"500ms\", got {value!r}")
    return sum(float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", value))


def parse_trace_config(obj: Any, call: bool = False) -> TraceConfig:
    """Validate a ``TraceConfig`` object (None: the defaults); ``call``: ``debug_traceCall``'s,
    which may carry ``stateOverrides``."""
    if obj is None:
        return TraceConfig()
    if not isinstance(obj, dict):
        raise InvalidParams(f"invalid trace config: expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - CONFIG_KEYS - ({"blockOverrides"} if call else set()))
    if unknown or (not call and "stateOverrides" in obj):
        bad = unknown or ["stateOverrides"]
        raise InvalidParams(f"invalid trace config: unknown field {bad[0]!r} (this node reads "
                            f"{', '.join(sorted(CONFIG_KEYS - ({'stateOverrides'} if not call else set())))})")
    if obj.get("blockOverrides") is not None:
        raise InvalidParams("invalid trace config: blockOverrides is not supported by this node")
    tracer = obj.get("tracer")
    if tracer is not None and tracer not in TRACERS:
        raise InvalidParams(f"invalid tracer {tracer!r}: this node serves the struct logger (no tracer) "
                            f"and {', '.join(TRACERS)}")
    sub = obj.get("tracerConfig")
    if sub is not None and not isinstance(sub, dict):
        raise InvalidParams("invalid tracerConfig: expected an object")
    sub = sub or {}
    if tracer is None and sub:
        raise InvalidParams("invalid tracerConfig: the struct logger takes its options at the top level")
    for key in sub:
        if key not in ("onlyTopCall", "withLog"):
            raise InvalidParams(f"invalid tracerConfig: unknown field {key!r} (callTracer reads onlyTopCall, "
                                "withLog)")

    def flag(key: str, source: dict[str, Any] = obj) -> bool:
        return False if source.get(key) is None else parse_bool(source[key], key)

    return TraceConfig(
        tracer=tracer, disable_stack=flag("disableStack"), disable_storage=flag("disableStorage"),
        enable_memory=flag("enableMemory"), enable_return_data=flag("enableReturnData"),
        limit=parse_quantity(obj["limit"], "limit", 1 << 32) if obj.get("limit") is not None else 0,
        timeout=parse_go_duration(obj["timeout"]) if obj.get("timeout") is not None else None,
        only_top_call=flag("onlyTopCall", sub), with_log=flag("withLog", sub),
        state_overrides=obj.get("stateOverrides"),
    )  # fmt: skip


# -- re-execution ------------------------------------------------------------------------------
def replay_block(chain: Any, block: Any, tracers: dict[int, Tracer]) -> dict[int, dict[str, Any]]:
    """Re-execute ``block`` on its parent's state up to its last traced transaction; the result
    of each traced one by index. ``chain`` is a :func:`tracing_chain_class` chain."""
    parent = chain.get_block_header_by_hash(block.header.parent_hash)
    fields: dict[str, Any] = {"state_root": parent.state_root, "gas_used": 0}
    if hasattr(block.header, "blob_gas_used"):
        fields["blob_gas_used"] = 0
    header = block.header.copy(**fields)
    vm = chain.get_vm(header)
    results: dict[int, dict[str, Any]] = {}
    last = max(tracers) if tracers else -1
    for i, tx in enumerate(block.transactions[:last + 1]):
        tracer = tracers.get(i)
        with tracing(tracer):
            receipt, computation = vm.apply_transaction(header, tx)
        gas_used = receipt.gas_used - header.gas_used
        header = vm.add_receipt_to_header(header, receipt)
        if tracer is not None:
            results[i] = trace_result(tracer, computation, bytes(tx.sender), int(tx.gas), gas_used)
    return results


class TracingApi:
    """``debug_traceTransaction``, ``debug_traceCall``, ``debug_traceBlockByNumber``, ``debug_traceBlockByHash``."""

    seq: Any
    limits: Any
    call_chain_class: Any
    _trace_chain_class: Any = None

    def _header(self, block: Any, name: str = "block", source: Any = None) -> Any:
        raise NotImplementedError

    def _trace_snapshot(self) -> Any:
        from .snapshot import HeadSnapshot

        if self._trace_chain_class is None:
            self._trace_chain_class = tracing_chain_class(self.call_chain_class)
        return HeadSnapshot(self.seq.db, self._trace_chain_class)

    def _budget(self) -> TraceBudget:
        return TraceBudget(MAX_STRUCT_LOGS, self.limits.batch_response_max or MAX_TRACE_BYTES)

    def _timeout(self, config: TraceConfig) -> float:
        """The request's time limit: ``timeout`` if given, never above the node's RPC limit."""
        node = float(self.limits.evm_timeout)
        if config.timeout is None:
            return node
        return min(config.timeout, node) if node > 0 else config.timeout

    def debug_traceTransaction(self, tx_hash: Any, config: Any = None) -> dict[str, Any]:
        """A mined transaction re-executed with a tracer (module docstring)."""
        h, cfg = parse_hash(tx_hash), parse_trace_config(config)
        with self._trace_snapshot() as snap:
            try:
                number, index = snap.chain.chaindb.get_transaction_index(Hash32(h))
            except Exception:
                raise TransactionNotFound(f"transaction {data(h)} not found") from None
            block = snap.chain.get_canonical_block_by_number(BlockNumber(number))
            with execution_deadline(self._timeout(cfg)):
                return replay_block(snap.chain, block, {int(index): Tracer(cfg, self._budget())})[int(index)]

    def _trace_block(self, header: Any, config: Any) -> list[dict[str, Any]]:
        cfg = parse_trace_config(config)
        with self._trace_snapshot() as snap:
            block = snap.chain.get_canonical_block_by_number(BlockNumber(header.block_number))
            if block.header.hash != header.hash:
                raise BlockNotFound(f"block {data(header.hash)} is no longer canonical")
            budget = self._budget()
            tracers = {i: Tracer(cfg, budget) for i in range(len(block.transactions))}
            with execution_deadline(self._timeout(cfg)):
                results = replay_block(snap.chain, block, tracers)
            return [{"txHash": data(bytes(tx.hash)), "result": results[i]}
                    for i, tx in enumerate(block.transactions)]

    def debug_traceBlockByNumber(self, block: Any, config: Any = None) -> list[dict[str, Any]]:
        """Every transaction of a block, traced (geth's ``[{txHash, result}]``)."""
        with self.seq.lock:
            header = self._header(block)
        if int(header.block_number) == 0:
            raise BlockNotFound("genesis is not traceable")
        return self._trace_block(header, config)

    def debug_traceBlockByHash(self, block_hash: Any, config: Any = None) -> list[dict[str, Any]]:
        """Every transaction of a block given by hash, traced."""
        h = parse_hash(block_hash, "blockHash")
        with self.seq.lock:
            header = self.seq.header_by_hash(h)
        if header is None:
            raise BlockNotFound(f"block {data(h)} not found")
        if int(header.block_number) == 0:
            raise BlockNotFound("genesis is not traceable")
        return self._trace_block(header, config)

    def debug_traceCall(self, tx: Any, block: Any = "latest", config: Any = None) -> dict[str, Any]:
        """A call object traced on a block's state, as ``eth_call`` runs it (overrides from the
        config's ``stateOverrides``; gas clamped to the RPC gas cap)."""
        req, cfg = parse_call_request(tx), parse_trace_config(config, call=True)
        with self._trace_snapshot() as snap:
            header = self._header(block, source=snap)
            gas = clamp_gas(req.gas if req.gas is not None else header.gas_limit, self.limits.gas_cap)
            tracer = Tracer(cfg, self._budget())
            with execution_deadline(self._timeout(cfg)), tracing(tracer):
                computation, used, _ = run_call(snap.vm(header), req, gas, cfg.state_overrides)
            refund = min(computation.get_gas_refund(), used // 5) if computation.is_success else 0
            return trace_result(tracer, computation, req.sender, gas, used - refund)


__all__ = ["CONFIG_KEYS", "MAX_STRUCT_LOGS", "MAX_TRACE_BYTES", "TRACERS", "BlockNotFound", "TracingApi",
           "TransactionNotFound", "parse_go_duration", "parse_trace_config", "replay_block"]
