"""Deposit ETH (and an L2 call) through the L1 Portal, and follow it onto L2 (``aievm bridge deposit``,
``ai_evm/cli/bridge_deposit.py``).

Steps (each printed): the Portal's ``depositTransaction`` is sent on L1 and mined; its
``TransactionDeposited`` event gives the deposit's nonce, hence its L2 transaction hash
(:func:`ai_evm.evm.deposit.deposit_source_hash`: the L2 deposit transaction is a pure function of
the event); then the L2 node is polled until that transaction has a receipt (the first L2 block
whose L1 origin reaches the deposit's L1 block carries it, docs/bridge.md "Deposits").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from eth_account import Account
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.evm.deposit import deposit_source_hash, new_deposit
from ai_evm.rollup.config import RollupDeployment
from ai_evm.rollup.deposits import TRANSACTION_DEPOSITED, decode_deposit_log

#: L2 gas limit of a deposit when none is given: a plain transfer's, or enough for a small call.
TRANSFER_GAS = 21_000
CALL_GAS = 200_000


class DepositFailed(RuntimeError):
    """The deposit could not be made or followed (the message says which step and why)."""


@dataclass(frozen=True)
class DepositResult:
    """A deposit made on L1 and, if followed, found on L2."""

    l1_tx: bytes
    l1_block: int
    nonce: int
    l2_tx: bytes
    l2_block: int | None = None
    l2_status: int | None = None


def parse_amount(text: str) -> int:
    """Wei from ``123`` (wei), ``1.5eth``/``1.5ether`` or ``2gwei``; :class:`ValueError` otherwise."""
    t = text.strip().lower()
    for suffix, scale in (("ether", 10**18), ("eth", 10**18), ("gwei", 10**9), ("wei", 1)):
        if t.endswith(suffix):
            t, unit = t[: -len(suffix)].strip(), scale
            break
    else:
        unit = 1
    try:
        amount = Decimal(t) * unit
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r} (wei, or a number with eth/gwei)") from None
    if amount < 0 or amount != amount.to_integral_value():
        raise ValueError(f"not a whole, non-negative number of wei: {text!r}")
    return int(amount)


def make_deposit(l1: Web3, d: RollupDeployment, key: str, to: str, value: int, data: bytes = b"",
                 gas_limit: int | None = None, out: Callable[[str], None] = print) -> DepositResult:
    """Send ``value`` wei through the Portal to ``to`` on L2 (minted to the sender, then sent by the L2 call
    with ``data``); returns once mined on L1, with the L2 transaction hash it will have."""
    if d.portal is None:
        raise DepositFailed("this rollup.json has no portal (deployed before the bridge): redeploy the rollup")
    acct = Account.from_key(key)
    portal = l1.eth.contract(address=Web3.to_checksum_address(d.portal), abi=list(artifact("Portal").abi))
    gas = gas_limit if gas_limit is not None else (CALL_GAS if data else TRANSFER_GAS)
    try:
        target = Web3.to_checksum_address(to)
        params: Any = {"from": acct.address, "value": value, "chainId": d.l1_chain_id,
                       "nonce": l1.eth.get_transaction_count(acct.address, "pending")}
        tx = portal.functions.depositTransaction(target, value, gas, data).build_transaction(params)
        h = l1.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    except Exception as e:  # a revert in gas estimation (GasLimitTooLow...), a bad address, L1 down
        raise DepositFailed(f"L1 deposit not sent: {e}") from None
    out(f"L1: deposit sent in 0x{bytes(h).hex()} ({value} wei to {target} on L2, gas limit {gas})")
    receipt = l1.eth.wait_for_transaction_receipt(h, timeout=120)
    if receipt["status"] != 1:
        raise DepositFailed(f"L1 deposit 0x{bytes(h).hex()} reverted")
    logs = [log for log in receipt["logs"] if Web3.to_checksum_address(log["address"]) == portal.address
            and log["topics"] and bytes(log["topics"][0]) == TRANSACTION_DEPOSITED]
    if len(logs) != 1:
        raise DepositFailed(f"L1 transaction 0x{bytes(h).hex()} emitted {len(logs)} deposit events, expected 1")
    dep = decode_deposit_log(logs[0])
    l2 = new_deposit(deposit_source_hash(bytes.fromhex(d.portal[2:]), dep.nonce), dep.sender, dep.to, dep.mint,
                     dep.value, dep.gas_limit, dep.data)
    out(f"L1: mined in block {dep.l1_block}: deposit {dep.nonce}, its L2 transaction is 0x{bytes(l2.hash).hex()}")
    return DepositResult(bytes(h), dep.l1_block, dep.nonce, bytes(l2.hash))


def wait_on_l2(l2: Web3, result: DepositResult, timeout: float = 300.0, poll_s: float = 1.0,
               out: Callable[[str], None] = print) -> DepositResult:
    """Poll the L2 node until the deposit's transaction has a receipt (:class:`DepositFailed` on timeout)."""
    tx_hex = "0x" + result.l2_tx.hex()
    deadline, said = time.monotonic() + timeout, ""
    while True:
        receipt: Any = l2.provider.make_request("eth_getTransactionReceipt", [tx_hex])  # type: ignore[arg-type]
        got = receipt.get("result")
        if got:
            block, status = int(got["blockNumber"], 16), int(got["status"], 16)
            out(f"L2: included in block {block} ({'success' if status == 1 else 'the call failed; the mint stays'})")
            return DepositResult(result.l1_tx, result.l1_block, result.nonce, result.l2_tx, block, status)
        head = l2.eth.get_block("latest")
        extra = bytes(head["extraData"])
        origin = int.from_bytes(extra, "big") if len(extra) == 8 else None
        line = (f"L2: waiting (L2 head {head['number']} on L1 block {origin}, the deposit is in L1 block "
                f"{result.l1_block})")
        if line != said:
            out(line)
            said = line
        if time.monotonic() > deadline:
            raise DepositFailed(f"deposit not on L2 after {timeout:.0f} s (is the sequencer following L1?)")
        time.sleep(poll_s)


__all__ = ["DepositFailed", "DepositResult", "make_deposit", "parse_amount", "wait_on_l2"]
