"""``eth_createAccessList``: the EIP-2930 access list of a call, found by running it (geth's method).

The call runs on a throwaway state of the block with py-evm's state witness on
(:func:`ai_evm.node.execution.run_call` with ``witness``): the accounts and storage slots the
execution read. That list, less the addresses every transaction has warm anyway (the sender, the
recipient, the precompiles and the coinbase; the recipient's and sender's slots stay, as in geth's
access-list tracer), is run again as the call's access list, until a run reads nothing new
(an access list can change the gas left and so the path the code takes). The answer is the last
list, the gas that call used (after refunds, at least the EIP-7623 floor, as a receipt would show)
and, if the call failed, its error.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from eth.abc import MetaWitnessAPI

from ai_evm.evm.validation import calldata_floor_gas

from .encoding import data, quantity
from .errors import NodeError
from .execution import CallRequest, clamp_gas, raise_for_computation, run_call

AccessList = tuple[tuple[bytes, tuple[int, ...]], ...]
#: Runs of the call before the list is returned as it is (geth loops until it is stable).
MAX_ROUNDS = 8


def accessed(witness: MetaWitnessAPI, start: AccessList, excluded: frozenset[bytes]) -> AccessList:
    """``start`` plus what ``witness`` read, without the excluded addresses that hold no slot, sorted."""
    slots: dict[bytes, set[int]] = {}
    for address, keys in start:
        slots.setdefault(bytes(address), set()).update(keys)
    for address in witness.accounts_queried:
        slots.setdefault(bytes(address), set()).update(witness.get_slots_queried(address))
    return tuple((a, tuple(sorted(k))) for a, k in sorted(slots.items()) if k or a not in excluded)


def create_access_list(
    vm: Any, req: CallRequest, default_gas: int, overrides: Any = None, gas_cap: int = 0
) -> dict[str, Any]:
    """The ``eth_createAccessList`` result object for ``req`` on ``vm``'s block."""
    gas = clamp_gas(req.gas if req.gas is not None else default_gas, gas_cap)
    header = vm.get_header()
    precompiles = vm.state.computation_class.get_precompiles()
    excluded = frozenset({bytes(req.sender), bytes(req.to), bytes(header.coinbase), *map(bytes, precompiles)})
    current: AccessList = tuple((a, k) for a, k in (req.access_list or ()) if a not in excluded or k)
    for _ in range(MAX_ROUNDS):
        computation, used, witness = run_call(vm, replace(req, access_list=current), gas, overrides, witness=True)
        assert witness is not None
        found = accessed(witness, current, excluded)
        if found == current:
            break
        current = found
    refund = min(computation.get_gas_refund(), used // 5)
    out: dict[str, Any] = {
        "accessList": [{"address": data(a), "storageKeys": [data(k.to_bytes(32, "big")) for k in keys]}
                       for a, keys in current],
        "gasUsed": quantity(max(used - refund, calldata_floor_gas(req.data))),
    }  # fmt: skip
    try:
        raise_for_computation(computation)
    except NodeError as e:
        out["error"] = e.message
    return out
