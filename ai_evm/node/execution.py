"""``eth_call`` and ``eth_estimateGas``: running a call object on a block's state, never mining it.

A call runs in py-evm's costless state on top of the requested block (base fee 0, nothing paid),
after optional state overrides (geth's ``{address: {balance, nonce, code, state, stateDiff}}``).
Errors follow geth: REVERT gives :class:`ExecutionReverted` (code 3, ``data`` = revert bytes,
message ``execution reverted: <reason>`` for ``Error(string)``); other exceptional halts give
-32000 with py-evm's reason. Failed inference calls anywhere in the call tree are named in the
message and in ``data`` so a developer sees *why* the model call failed.

Limits (geth's ``--rpc.gascap`` and ``--rpc.evmtimeout``): the gas of a call, and the upper end of
the estimate's search, are clamped to the RPC gas cap; and execution stops once the time limit has
passed. The limit is enforced inside the EVM: :func:`bounded_chain_class` derives, from the node's
chain class, one whose computations (:class:`DeadlineComputation`) look at the clock every
:data:`CLOCK_EVERY` opcodes and when a frame starts, and raise :class:`ExecutionTimeout` (geth's
``execution aborted (timeout = 5s)``) through every frame. It is a subclass used for reads only:
blocks are built by the unchanged computation. :func:`execution_deadline` sets the deadline for the
calls made inside it, so an ``eth_estimateGas`` search shares one time limit across its runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eth.abc import ComputationAPI, MessageAPI, MetaWitnessAPI, StateAPI, TransactionContextAPI
from eth.chains.base import MiningChain
from eth.exceptions import Revert
from eth.vm.code_stream import CodeStream
from eth.vm.opcode_values import STOP
from eth.vm.spoof import SpoofTransaction
from eth_abi import decode as abi_decode
from eth_typing import Address
from eth_utils import to_checksum_address

from ai_evm.evm.validation import calldata_floor_gas

from .encoding import data, parse_address, parse_data, parse_quantity, parse_storage_slot
from .errors import ExecutionReverted, InvalidParams, NodeError, ServerError
from .limits import go_duration
from .vm import inference_failures

if TYPE_CHECKING:
    from eth.vm.computation import BaseComputation as _ComputationBase
else:
    _ComputationBase = object

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")
PANIC_SELECTOR = bytes.fromhex("4e487b71")
#: geth stops the estimate's binary search once within this fraction of the answer.
ESTIMATE_ERROR_RATIO = 0.015
CALL_STIPEND = 2300
TRANSFER_GAS = 21000
#: Opcodes executed between two looks at the clock (about a millisecond of py-evm execution).
CLOCK_EVERY = 1024


class ExecutionTimeout(ServerError):
    """A read call ran past the RPC time limit; the message is geth's."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"execution aborted (timeout = {go_duration(timeout)})")


#: (deadline on the ``time.monotonic`` clock, the limit in seconds) of the calls of this context.
_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar("aievm_call_deadline", default=None)


@contextmanager
def execution_deadline(seconds: float) -> Iterator[None]:
    """Calls run inside this block stop with :class:`ExecutionTimeout` ``seconds`` from now
    (0: no limit). Only computations of a :func:`bounded_chain_class` chain look at it."""
    token = _DEADLINE.set((time.monotonic() + seconds, seconds) if seconds > 0 else None)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


class _DeadlineCodeStream(CodeStream):
    """py-evm's code stream, whose opcode iterator looks at the clock every :data:`CLOCK_EVERY` opcodes."""

    __slots__ = ("_deadline", "_timeout")

    def __init__(self, code_bytes: bytes, deadline: float, timeout: float) -> None:
        super().__init__(code_bytes)
        self._deadline = deadline
        self._timeout = timeout

    def __iter__(self) -> Iterator[int]:
        # py-evm's CodeStream.__iter__ (the interpreter loop's opcode source) plus the clock check
        code = self._raw_code_bytes
        countdown = CLOCK_EVERY
        while True:
            try:
                opcode = code[self.program_counter]
            except IndexError:
                break
            self.program_counter += 1
            countdown -= 1
            if not countdown:
                countdown = CLOCK_EVERY
                if time.monotonic() > self._deadline:
                    raise ExecutionTimeout(self._timeout)
            yield opcode
        yield STOP


class DeadlineComputation(_ComputationBase):
    """Mixed in before the node's computation class: every frame checks the deadline when it starts
    and then every :data:`CLOCK_EVERY` opcodes. :class:`ExecutionTimeout` is not a py-evm
    ``VMError``, so no frame swallows it: it ends the whole call."""

    def __init__(
        self, state: StateAPI, message: MessageAPI, transaction_context: TransactionContextAPI
    ) -> None:  # fmt: skip
        super().__init__(state, message, transaction_context)
        limit = _DEADLINE.get()
        if limit is not None:
            deadline, timeout = limit
            if time.monotonic() > deadline:
                raise ExecutionTimeout(timeout)
            self.code = _DeadlineCodeStream(message.code, deadline, timeout)


def bounded_chain_class(chain_class: type[MiningChain]) -> type[MiningChain]:
    """``chain_class`` with :class:`DeadlineComputation` mixed into every VM's computation class."""
    config = []
    for block, vm_class in chain_class.vm_configuration:
        state_class = vm_class.get_state_class()
        computation = state_class.computation_class
        bounded = type(f"Bounded{computation.__name__}", (DeadlineComputation, computation), {})
        state = state_class.configure(__name__=f"Bounded{state_class.__name__}", computation_class=bounded)
        config.append((block, vm_class.configure(__name__=f"Bounded{vm_class.__name__}", _state_class=state)))
    return chain_class.configure(__name__=f"Bounded{chain_class.__name__}", vm_configuration=tuple(config))


@dataclass(frozen=True)
class CallRequest:
    """A transaction call object (``from``, ``to``, ``gas``, ``gasPrice``, ``value``, ``data``)."""

    sender: bytes
    to: bytes
    gas: int | None
    gas_price: int
    value: int
    data: bytes
    #: EIP-2930 ``accessList`` ((address, slots)...); None: run as a legacy transaction
    access_list: tuple[tuple[bytes, tuple[int, ...]], ...] | None = None


def parse_call_request(obj: Any, name: str = "call") -> CallRequest:
    """Validate a JSON call object (``input`` and ``data`` are synonyms, as in geth)."""
    if not isinstance(obj, dict):
        raise InvalidParams(f"invalid {name}: expected an object")
    sender = parse_address(obj["from"], "from") if obj.get("from") is not None else b"\0" * 20
    to = parse_address(obj["to"], "to") if obj.get("to") is not None else b""
    gas = parse_quantity(obj["gas"], "gas", (1 << 64) - 1) if obj.get("gas") is not None else None
    price = 0
    for key in ("gasPrice", "maxFeePerGas"):
        if obj.get(key) is not None:
            price = parse_quantity(obj[key], key)
    value = parse_quantity(obj["value"], "value") if obj.get("value") is not None else 0
    payload = b""
    if obj.get("input") is not None:
        payload = parse_data(obj["input"], "input")
    elif obj.get("data") is not None:
        payload = parse_data(obj["data"], "data")
    access_list = parse_access_list(obj["accessList"]) if obj.get("accessList") is not None else None
    return CallRequest(sender, to, gas, price, value, payload, access_list)


#: Most entries (addresses plus storage keys) of an access list in a call object.
MAX_ACCESS_LIST_ITEMS = 10_000


def parse_access_list(obj: Any) -> tuple[tuple[bytes, tuple[int, ...]], ...]:
    """Validate an EIP-2930 access list: ``[{"address": ..., "storageKeys": [...]}, ...]``."""
    if not isinstance(obj, list):
        raise InvalidParams("invalid accessList: expected a list of {address, storageKeys}")
    out = []
    items = 0
    for entry in obj:
        if not isinstance(entry, dict):
            raise InvalidParams("invalid accessList entry: expected an object {address, storageKeys}")
        keys = entry.get("storageKeys") or []
        if not isinstance(keys, list):
            raise InvalidParams("invalid accessList entry: storageKeys must be a list")
        items += 1 + len(keys)
        if items > MAX_ACCESS_LIST_ITEMS:
            raise InvalidParams(f"invalid accessList: more than {MAX_ACCESS_LIST_ITEMS} addresses and keys")
        slots = tuple(parse_storage_slot(k, "storageKeys") for k in keys)
        out.append((parse_address(entry.get("address"), "accessList address"), slots))
    return tuple(out)


def apply_overrides(state: StateAPI, overrides: Any) -> None:
    """Apply geth-style state overrides to a (throwaway) state."""
    if overrides is None:
        return
    if not isinstance(overrides, dict):
        raise InvalidParams("invalid state overrides: expected an object keyed by address")
    for key, spec in overrides.items():
        address = Address(parse_address(key, "state override address"))
        if not isinstance(spec, dict):
            raise InvalidParams(f"invalid state override for {key}: expected an object")
        if "state" in spec and "stateDiff" in spec:
            raise InvalidParams(f"account {key} has both 'state' and 'stateDiff'")
        if spec.get("balance") is not None:
            state.set_balance(address, parse_quantity(spec["balance"], "balance"))
        if spec.get("nonce") is not None:
            state.set_nonce(address, parse_quantity(spec["nonce"], "nonce", (1 << 64) - 1))
        if spec.get("code") is not None:
            state.set_code(address, parse_data(spec["code"], "code"))
        slots = spec.get("state") if spec.get("state") is not None else spec.get("stateDiff")
        if slots is not None:
            if not isinstance(slots, dict):
                raise InvalidParams(f"invalid storage override for {key}: expected an object")
            if spec.get("state") is not None:
                state.delete_storage(address)
            for slot, value in slots.items():
                state.set_storage(address, parse_storage_slot(slot), parse_storage_slot(value, "value"))


def run_call(
    vm: Any, req: CallRequest, gas: int, overrides: Any = None, witness: bool = False
) -> tuple[ComputationAPI, int, MetaWitnessAPI | None]:
    """Execute ``req`` with ``gas`` on ``vm``'s block; (computation, total gas used before refunds,
    and with ``witness`` py-evm's record of the accounts and storage slots the execution read).

    As geth (``eth_call``, ``eth_estimateGas``, ``eth_createAccessList``, ``debug_traceCall``), the
    call runs on the block's post-state *in the context of that block's own header*: ``NUMBER``,
    ``TIMESTAMP``, ``GASLIMIT``, ``COINBASE``, ``PREVRANDAO`` are the block's and ``BLOCKHASH``
    reaches its parent (anvil does the same). Without a gas price (``gasPrice``/``maxFeePerGas``
    absent or 0) the fee checks are skipped and ``BASEFEE`` reads 0 (geth's ``NoBaseFee``: anvil
    reads the header's base fee there); with one, the call is a paying transaction as in geth: the
    price must reach the block's base fee, the sender must afford ``gas * price + value``, and
    ``BASEFEE`` is the header's. The state is a throwaway one; with ``witness`` it is persisted
    (into the database the VM reads, which must be a private overlay: a
    :class:`~ai_evm.node.snapshot.HeadSnapshot`) once before the execution, so that the witness
    persisted after it holds the execution's reads only."""
    header = vm.get_header()
    fee_free = req.gas_price == 0
    if fee_free and getattr(header, "base_fee_per_gas", None):
        header = header.copy(base_fee_per_gas=0)  # only the execution context reads it (not the hash)
    state = vm.build_state(vm.chaindb.db, header, vm.chain_context, vm.previous_hashes)
    apply_overrides(state, overrides)
    nonce = state.get_nonce(req.sender)
    if req.access_list is None:
        unsigned = vm.create_unsigned_transaction(
            nonce=nonce, gas_price=req.gas_price, gas=gas, to=req.to, value=req.value, data=req.data,
        )  # fmt: skip
    else:
        unsigned = vm.get_transaction_builder().new_unsigned_access_list_transaction(
            vm.chain_context.chain_id, nonce, req.gas_price, gas, req.to, req.value, req.data, req.access_list,
        )  # fmt: skip
    tx = SpoofTransaction(unsigned, from_=req.sender)
    if gas < unsigned.intrinsic_gas:
        raise ServerError(f"intrinsic gas too low: gas {gas}, minimum needed {unsigned.intrinsic_gas}")
    if not fee_free:  # geth's preCheck and buyGas, with its messages
        base_fee = int(getattr(header, "base_fee_per_gas", 0) or 0)
        if req.gas_price < base_fee:
            raise ServerError(f"max fee per gas less than block base fee: address {to_checksum_address(req.sender)}, "
                              f"maxFeePerGas: {req.gas_price}, baseFee: {base_fee}")  # fmt: skip
        have, want = state.get_balance(Address(req.sender)), gas * req.gas_price + req.value
        if have < want:
            raise ServerError(f"insufficient funds for gas * price + value: address "
                              f"{to_checksum_address(req.sender)} have {have} want {want}")  # fmt: skip
    if witness:
        state.persist()
    try:
        computation = state.costless_execute_transaction(tx) if fee_free else state.apply_transaction(tx)
    except NodeError:  # ExecutionTimeout, bad params
        raise
    except Exception as e:  # py-evm ValidationError: balance, nonce...
        raise ServerError(_validation_message(e)) from None
    return computation, gas - computation.get_gas_remaining(), state.persist() if witness else None


def _validation_message(e: Exception) -> str:
    text = str(e)
    if "balance" in text.lower() or "afford" in text.lower():
        return f"insufficient funds for gas * price + value: {text}"
    return text or type(e).__name__


def revert_reason(output: bytes) -> str | None:
    """The reason string of ``Error(string)`` or a description of ``Panic(uint256)``, else None."""
    try:
        if output[:4] == ERROR_STRING_SELECTOR:
            (reason,) = abi_decode(["string"], output[4:])
            return str(reason)
        if output[:4] == PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], output[4:])
            return f"panic: 0x{code:02x}"
    except Exception:
        return None
    return None


def raise_for_computation(computation: ComputationAPI) -> None:
    """Turn a failed computation into the JSON-RPC error geth would give."""
    if not computation.is_error:
        return
    failures = inference_failures(computation)
    if isinstance(computation.error, Revert):
        output = computation.output
        reason = revert_reason(output)
        message = f"execution reverted: {reason}" if reason else "execution reverted"
        if failures:
            message += f" (inference failed: {failures[0]})"
        raise ExecutionReverted(message, data(output))
    message = str(computation.error) or type(computation.error).__name__
    if failures and failures[0] != message:
        message += f" (inference failed: {failures[0]})"
    raise ServerError(message, {"inferenceErrors": failures} if failures else None)


def clamp_gas(gas: int, gas_cap: int) -> int:
    """``gas`` clamped to the RPC gas cap (0: no cap), as geth does ("Caller gas above allowance, capping")."""
    return min(gas, gas_cap) if gas_cap else gas


def call(vm: Any, req: CallRequest, default_gas: int, overrides: Any = None, gas_cap: int = 0) -> bytes:
    """``eth_call``: the return data, or the error the computation ended with.

    The gas is ``req.gas`` or ``default_gas``, clamped to ``gas_cap`` (0: no cap)."""
    gas = clamp_gas(req.gas if req.gas is not None else default_gas, gas_cap)
    computation, _, _ = run_call(vm, req, gas, overrides)
    raise_for_computation(computation)
    return bytes(computation.output)


def estimate_gas(
    vm: Any, req: CallRequest, cap: int, balance: int, overrides: Any = None, gas_cap: int = 0
) -> int:
    """``eth_estimateGas``: geth's binary search for the least gas limit that succeeds.

    The search starts at ``req.gas`` or ``cap`` (the block gas limit), clamped to ``gas_cap``
    (0: no cap). As in geth, a plain value transfer to an account without code is exactly 21000.
    """
    if req.to and not req.data and overrides is None and req.access_list is None \
            and not vm.state.get_code(Address(req.to)):
        if balance < req.value:
            raise ServerError(f"insufficient funds for transfer: have {balance} want {req.value}")
        return TRANSFER_GAS
    hi = clamp_gas(req.gas if req.gas is not None else cap, gas_cap)
    if req.gas_price > 0:
        allowance = max(balance - req.value, 0) // req.gas_price
        hi = min(hi, allowance)
    computation, used, _ = run_call(vm, req, hi, overrides)
    if computation.is_error:
        if isinstance(computation.error, Revert) or inference_failures(computation):
            raise_for_computation(computation)
        raise ServerError(f"gas required exceeds allowance ({hi})")
    lo = max(used, calldata_floor_gas(req.data)) - 1  # EIP-7623: less than the floor is invalid
    optimistic = (used + computation.get_gas_refund() + CALL_STIPEND) * 64 // 63
    if lo < optimistic < hi:
        ok, _, _ = run_call(vm, req, optimistic, overrides)
        if ok.is_error:
            lo = optimistic
        else:
            hi = optimistic
    while lo + 1 < hi:
        if (hi - lo) / hi < ESTIMATE_ERROR_RATIO:
            break
        mid = (hi + lo) // 2
        if mid > lo * 2:
            mid = lo * 2
        try:
            attempt, _, _ = run_call(vm, req, mid, overrides)
            failed = attempt.is_error
        except ExecutionTimeout:
            raise
        except ServerError:
            failed = True
        if failed:
            lo = mid
        else:
            hi = mid
    return hi
