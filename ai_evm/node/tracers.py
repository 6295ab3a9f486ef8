"""The EVM side of ``debug_trace*`` (:mod:`ai_evm.node.tracing`): geth's struct logger and callTracer.

Wired by configuration, as :func:`ai_evm.node.execution.bounded_chain_class` wires the time limit:
:func:`tracing_chain_class` derives from a chain class one whose computation
(:class:`TracingComputation`) has an opcode table in which every entry is a :class:`TracedOpcode`
around py-evm's own, and which names each child frame by the opcode that opened it. A computation
records only while a :class:`Tracer` is set for the context (:func:`tracing`); other transactions
run through the same table untraced.

* The struct logger records, before each opcode, ``{pc, op, gas, gasCost, depth, stack, memory,
  storage, returnData, refund, error}`` (geth's options choose which; ``refund``, the
  transaction's refund counter, only when not 0). ``gasCost`` is what the opcode
  took: for a CALL or CREATE the gas it passes on too (noted when the child frame starts), for an
  exceptional halt all the gas left (as anvil shows it). ``storage`` (at SLOAD and SSTORE) holds
  every slot of the contract seen so far, keys and values as 64 hex digits without 0x, and
  ``memory`` 32-byte words likewise, as geth writes them.
* The callTracer's frames are read from the finished computation tree (:func:`call_frames`).
* Every entry is counted against a :class:`TraceBudget` (entries and estimated JSON bytes) while
  the EVM runs: a trace too big stops with :class:`~ai_evm.node.errors.LimitExceeded`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth.abc import ComputationAPI, MessageAPI, StateAPI, TransactionContextAPI
from eth.chains.base import MiningChain
from eth.exceptions import (
    ContractCreationCollision,
    Halt,
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfGas,
    Revert,
    StackDepthLimit,
    VMError,
    WriteProtection,
)
from eth.vm.logic.invalid import InvalidOpcode

from ai_evm.evm import INFERENCE_ADDRESS, INFERENCE_INLINE_ADDRESS

from .encoding import data, quantity
from .errors import LimitExceeded
from .execution import revert_reason

if TYPE_CHECKING:
    from eth.vm.computation import BaseComputation as _ComputationBase
else:
    _ComputationBase = object

#: Opcode names where py-evm's mnemonic is not geth's.
GETH_NAMES = {0x20: "KECCAK256", 0xFE: "INVALID", 0xFF: "SELFDESTRUCT"}
_CALL_OPS = frozenset({"CALL", "CALLCODE", "DELEGATECALL", "STATICCALL", "CREATE", "CREATE2"})


@dataclass(frozen=True)
class TraceConfig:
    """geth's ``TraceConfig`` (the fields this node serves)."""

    tracer: str | None = None
    disable_stack: bool = False
    disable_storage: bool = False
    enable_memory: bool = False
    enable_return_data: bool = False
    #: most struct logs recorded (0: no limit); later steps are left out, as geth does
    limit: int = 0
    #: seconds; None: the node's RPC time limit
    timeout: float | None = None
    only_top_call: bool = False
    with_log: bool = False
    state_overrides: Any = None


class TraceBudget:
    """What the struct logs of one request may still take: entries and estimated JSON bytes."""

    def __init__(self, max_logs: int, max_bytes: int) -> None:
        self.max_logs, self.max_bytes = max_logs, max_bytes
        self.logs = 0
        self.bytes = 0

    def spend(self, size: int) -> None:
        """Count one entry of about ``size`` JSON bytes; :class:`LimitExceeded` beyond the budget."""
        self.logs += 1
        self.bytes += size
        if self.logs > self.max_logs:
            raise LimitExceeded(f"trace exceeds {self.max_logs} struct logs; trace with the callTracer, "
                                "or set the limit option")
        if self.max_bytes and self.bytes > self.max_bytes:
            raise LimitExceeded(f"trace exceeds the response size limit ({self.max_bytes} bytes) after "
                                f"{self.logs} struct logs; use disableStack/disableStorage, leave out "
                                "enableMemory, or set the limit option")


class Tracer:
    """What one transaction's trace collects; set for the context while it executes (:func:`tracing`)."""

    def __init__(self, config: TraceConfig, budget: TraceBudget) -> None:
        self.config = config
        self.budget = budget
        #: the struct logs (None with the callTracer)
        self.logs: list[dict[str, Any]] | None = None if config.tracer else []
        #: storage slots seen per contract (geth shows them at each SLOAD/SSTORE)
        self.storage: dict[bytes, dict[int, int]] = {}
        #: the frames running, outermost first (their refunds make the transaction's refund counter)
        self.frames: list[Any] = []

    def before(self, computation: Any, op: TracedOpcode) -> dict[str, Any] | None:
        """The entry of the opcode about to run (None: not recorded)."""
        logs = self.logs
        assert logs is not None
        cfg = self.config
        if cfg.limit and len(logs) >= cfg.limit:
            return None
        gas = computation._gas_meter.gas_remaining
        entry: dict[str, Any] = {"pc": computation.code.program_counter - 1, "op": op.name, "gas": gas,
                                 "gasCost": 0, "depth": computation.msg.depth + 1}  # fmt: skip
        size = 80
        stack = computation._stack.values
        if not cfg.disable_stack:
            words = [hex(v if isinstance(v, int) else int.from_bytes(v, "big")) for v in stack]
            entry["stack"] = words
            size += sum(len(w) + 3 for w in words)
        if cfg.enable_memory:
            mem = bytes(computation._memory._bytes)
            entry["memory"] = [mem[i:i + 32].hex() for i in range(0, len(mem), 32)]
            size += 67 * len(entry["memory"])
        if cfg.enable_return_data:
            entry["returnData"] = data(computation.return_data)
            size += 2 * len(computation.return_data) + 20
        if not cfg.disable_storage and op.name in ("SLOAD", "SSTORE") and stack:
            address = computation.msg.storage_address
            seen = self.storage.setdefault(address, {})
            key = _word(stack[-1])
            if op.name == "SLOAD":
                seen[key] = computation.state.get_storage(address, key)
            elif len(stack) >= 2:
                seen[key] = _word(stack[-2])
            entry["storage"] = {f"{k:064x}": f"{v:064x}" for k, v in seen.items()}
            size += 134 * len(seen)
        refund = 0
        for frame in self.frames:
            refund += frame._gas_meter.gas_refunded + frame.children_refund
        if refund:
            entry["refund"] = refund
        self.budget.spend(size)
        logs.append(entry)
        return entry


def _word(value: int | bytes) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")


#: The tracer of the transaction executing in this context (None: nothing is traced).
_TRACER: ContextVar[Tracer | None] = ContextVar("aievm_tracer", default=None)


@contextmanager
def tracing(tracer: Tracer | None) -> Iterator[None]:
    """Computations started inside this block record into ``tracer`` (None: nothing)."""
    token = _TRACER.set(tracer)
    try:
        yield
    finally:
        _TRACER.reset(token)


class TracedOpcode:
    """An opcode table entry that records the step into the frame's tracer, then runs py-evm's."""

    def __init__(self, value: int, fn: Any) -> None:
        self.value = value
        self.fn = fn
        mnemonic = getattr(fn, "mnemonic", None) or getattr(getattr(fn, "__wrapped__", None), "mnemonic", None)
        if isinstance(fn, InvalidOpcode) and value != 0xFE:
            mnemonic = f"opcode 0x{value:02x} not defined"
        self.name = GETH_NAMES.get(value, mnemonic or f"opcode 0x{value:02x} not defined")
        self.mnemonic = self.name

    def __call__(self, computation: Any) -> None:
        tracer = computation.tracer
        if tracer is None:
            return self.fn(computation=computation)  # type: ignore[no-any-return]
        computation.current_op = self.name
        if tracer.logs is None:
            return self.fn(computation=computation)  # type: ignore[no-any-return]
        entry = tracer.before(computation, self)
        computation.trace_entry = entry
        gas = computation._gas_meter.gas_remaining
        try:
            self.fn(computation=computation)
        except Halt:
            raise
        except VMError as e:
            if entry is not None:
                if not isinstance(e, Revert):
                    entry["error"] = geth_error(e)
                if computation.trace_entry is entry:  # out of gas: all that is left (anvil's cost)
                    entry["gasCost"] = gas if isinstance(e, OutOfGas) else gas - computation._gas_meter.gas_remaining
            raise
        finally:
            if entry is not None and computation.trace_entry is entry and "error" not in entry:
                entry["gasCost"] = gas - computation._gas_meter.gas_remaining
            computation.trace_entry = None


class TracingComputation(_ComputationBase):
    """Mixed in before the node's computation class by :func:`tracing_chain_class`: a frame takes
    the context's tracer when it starts; a child frame is named by the opcode that opened it."""

    #: the tracer of this frame (None: untraced)
    tracer: Tracer | None = None
    #: geth's name of the opcode executing (CALL, CREATE2...) and of the one that opened this frame
    current_op: str = ""
    call_type: str = ""
    #: the struct-log entry of the opcode executing, until its cost is known
    trace_entry: dict[str, Any] | None = None
    #: per log of this frame, the number of calls it had made before (None: no log yet)
    log_positions: list[int] | None = None
    #: gas refunds of the child frames that ended successfully (with theirs)
    children_refund: int = 0

    def __init__(
        self, state: StateAPI, message: MessageAPI, transaction_context: TransactionContextAPI
    ) -> None:  # fmt: skip
        super().__init__(state, message, transaction_context)
        self.tracer = _TRACER.get()
        if self.tracer is not None:
            self.tracer.frames.append(self)

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> Any:
        """py-evm's; the frame leaves the tracer's stack of running frames."""
        try:
            return super().__exit__(exc_type, exc_value, traceback)  # type: ignore[misc]
        finally:
            frames = self.tracer.frames if self.tracer is not None else None
            if frames and frames[-1] is self:
                frames.pop()

    def add_log_entry(self, account: Any, topics: Any, data: bytes) -> None:
        """py-evm's, noting how many calls this frame had made before the log (geth's ``position``)."""
        super().add_log_entry(account, topics, data)  # type: ignore[misc]
        if self.tracer is not None:
            if self.log_positions is None:
                self.log_positions = []
            self.log_positions.append(len(self.children))  # type: ignore[attr-defined]

    def apply_child_computation(self, child_msg: MessageAPI) -> ComputationAPI:
        """py-evm's, noting the gas the calling opcode took (geth's ``gasCost`` of a CALL includes
        the gas it passes on) and naming the child by the opcode."""
        entry = self.trace_entry
        if entry is not None:
            entry["gasCost"] = entry["gas"] - self._gas_meter.gas_remaining
            self.trace_entry = None
        child: Any = super().apply_child_computation(child_msg)  # type: ignore[misc]
        if child.is_success:
            self.children_refund += child._gas_meter.gas_refunded + child.children_refund
        if self.tracer is not None:
            child.call_type = self.current_op if self.current_op in _CALL_OPS else \
                ("CREATE" if child_msg.is_create else "CALL")
        return child  # type: ignore[no-any-return]


def tracing_chain_class(chain_class: type[MiningChain]) -> type[MiningChain]:
    """``chain_class`` with :class:`TracingComputation` and a :class:`TracedOpcode` table mixed into
    every VM's computation class (use it on the read-call chain class: the time limit stays)."""
    config = []
    for block, vm_class in chain_class.vm_configuration:
        state_class = vm_class.get_state_class()
        computation = state_class.computation_class
        table = computation.opcodes
        opcodes = {v: TracedOpcode(v, table[v] if v in table else InvalidOpcode(v)) for v in range(256)}
        traced = type(f"Tracing{computation.__name__}", (TracingComputation, computation), {"opcodes": opcodes})
        state = state_class.configure(__name__=f"Tracing{state_class.__name__}", computation_class=traced)
        config.append((block, vm_class.configure(__name__=f"Tracing{vm_class.__name__}", _state_class=state)))
    return chain_class.configure(__name__=f"Tracing{chain_class.__name__}", vm_configuration=tuple(config))


def geth_error(error: BaseException) -> str:
    """geth's message for an exceptional halt (py-evm's own message where geth has none)."""
    if isinstance(error, Revert):
        return "execution reverted"
    if isinstance(error, OutOfGas):
        return "out of gas"
    if isinstance(error, InvalidJumpDestination):
        return "invalid jump destination"
    if isinstance(error, InsufficientStack):
        return "stack underflow"
    if isinstance(error, WriteProtection):
        return "write protection"
    if isinstance(error, ContractCreationCollision):
        return "contract address collision"
    if isinstance(error, StackDepthLimit):
        return "max call depth exceeded"
    if isinstance(error, InvalidInstruction):
        return f"invalid opcode: {_invalid_name(str(error))}"
    return str(error) or type(error).__name__


def _invalid_name(message: str) -> str:
    """geth's name of the opcode in py-evm's ``Invalid opcode 0x.. @ pc`` message."""
    import re

    found = re.search(r"0x([0-9a-fA-F]+)", message)
    value = int(found.group(1), 16) if found else 0xFE
    return "INVALID" if value == 0xFE else f"opcode 0x{value:02x} not defined"


# -- results -----------------------------------------------------------------------------------
def struct_result(tracer: Tracer, computation: ComputationAPI, gas_used: int) -> dict[str, Any]:
    """The struct logger's result (geth's ``ExecutionResult``)."""
    failed = computation.is_error
    output = bytes(computation.output) if not failed or isinstance(computation.error, Revert) else b""
    return {"gas": gas_used, "failed": failed, "returnValue": data(output), "structLogs": tracer.logs}


def call_frames(
    computation: Any, sender: bytes, gas: int, gas_used: int, only_top: bool = False, with_log: bool = False
) -> dict[str, Any]:
    """The callTracer's frame tree of a transaction (geth's: the top frame has the transaction's gas
    limit and its receipt's gas used; ``with_log``: each frame's logs, none in a failed frame or
    below one)."""
    counter = [0]
    top_type = "CREATE" if computation.msg.is_create else "CALL"
    frame = _frame(computation, top_type, sender, counter, only_top, with_log)
    frame["gas"], frame["gasUsed"] = quantity(gas), quantity(gas_used)
    return frame


def _frame(
    c: Any, call_type: str, sender: bytes, counter: list[int], only_top: bool, with_log: bool
) -> dict[str, Any]:  # fmt: skip
    msg = c.msg
    create = call_type in ("CREATE", "CREATE2")
    out: dict[str, Any] = {"from": data(sender), "gas": quantity(msg.gas),
                           "gasUsed": quantity(msg.gas - c.get_gas_remaining()),
                           "to": data(msg.storage_address if create else msg.code_address),
                           "input": data(msg.code if create else msg.data)}  # fmt: skip
    error = c.error if c.is_error else None
    if error is None:
        if c.output:
            out["output"] = data(c.output)
    else:
        out["error"] = geth_error(error)
        if create:
            del out["to"]
        if isinstance(error, Revert) and c.output:
            out["output"] = data(c.output)
            reason = revert_reason(bytes(c.output))
            if reason is not None and not reason.startswith("panic"):
                out["revertReason"] = reason
    inference = _inference(c, msg, counter)
    children = list(c.children)
    if children and not only_top:
        here = msg.storage_address
        out["calls"] = [_frame(ch, ch.call_type or ("CREATE" if ch.msg.is_create else "CALL"), here, counter, False,
                               with_log and error is None) for ch in children]  # fmt: skip
    if with_log and error is None and c._log_entries:
        out["logs"] = [{"address": data(address), "topics": [data(t.to_bytes(32, "big")) for t in topics],
                        "data": data(payload), "position": quantity(position), "index": quantity(counter)}
                       for (counter, address, topics, payload), position
                       in zip(c._log_entries, c.log_positions, strict=True)]  # fmt: skip
    if call_type != "STATICCALL":
        out["value"] = quantity(msg.value)
    out["type"] = call_type
    if inference is not None:
        out["inference"] = inference
    return out


def _inference(c: Any, msg: Any, counter: list[int]) -> dict[str, Any] | None:
    """The ``inference`` object of a 0xa1/0xa0 frame (None for any other frame); ``counter``
    numbers the successful ones in execution order, as the inference records are."""
    record = getattr(c, "inference_record", None)
    if record is not None and c.is_success:
        index = counter[0]
        counter[0] += 1
        precompile = "0xa1" if msg.code_address == INFERENCE_ADDRESS else "0xa0"
        return {"precompile": precompile, "model": data(record.model), "input": data(record.input),
                "output": data(record.output), "gas": quantity(record.gas), "callIndex": index}  # fmt: skip
    if msg.code_address == INFERENCE_ADDRESS:
        payload = bytes(msg.data)
        out: dict[str, Any] = {"precompile": "0xa1", "model": data(payload[:32]), "input": data(payload[64:])}
    elif msg.code_address == INFERENCE_INLINE_ADDRESS:
        out = {"precompile": "0xa0", "input": data(bytes(msg.data))}
    else:
        return None
    if c.is_error:
        out["error"] = str(c.error) or type(c.error).__name__
    return out


def trace_result(tracer: Tracer, computation: Any, sender: bytes, gas: int, gas_used: int) -> dict[str, Any]:
    """The tracer's answer for one executed transaction."""
    if tracer.logs is not None:
        return struct_result(tracer, computation, gas_used)
    return call_frames(computation, sender, gas, gas_used, tracer.config.only_top_call, tracer.config.with_log)


__all__ = ["TraceBudget", "TraceConfig", "TracedOpcode", "Tracer", "TracingComputation", "call_frames",
           "geth_error", "struct_result", "trace_result", "tracing", "tracing_chain_class"]
