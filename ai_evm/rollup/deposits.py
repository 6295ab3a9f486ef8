"""Deposits: the L1 Portal's ``TransactionDeposited`` events, and the L2 deposit transactions they become.

Reading (:func:`decode_deposit_log`, used by :class:`ai_evm.rollup.l1.L1Reader`): every event of
the Portal in an L1 block, in log order, is checked (topics and data well-formed, gas limit and
data size within the Portal's bounds) and becomes a :class:`Deposit`; :func:`check_nonces` checks
that their nonces continue the previous block's. Anything else is a :class:`DepositError` naming
what is wrong: the L1 follower reports it and retries, it never skips a deposit.

Inclusion (:func:`deposits_between`, :func:`deposit_transactions`, :func:`deposits_hook`): the L2
block on L1 origin ``o`` whose parent is on origin ``p`` starts with the deposits of every L1 block
in ``(p, o]``, in order (the parent of block 1 is the genesis, whose origin counts as the block
before the rollup's genesis L1 block, so a deposit in the genesis L1 block is included too). This
is a pure function of L1: the sequencer and every deriving node call the same function, so a
sequencer that leaves a deposit out builds a block no validator derives (docs/bridge.md "Deposits").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth.abc import BlockHeaderAPI, SignedTransactionAPI
from eth_abi import decode as abi_decode
from eth_hash.auto import keccak

from ai_evm.evm.deposit import deposit_source_hash, new_deposit
from ai_evm.node.chain import L1Origin, NoL1Origin, origin_of

#: ``TransactionDeposited(uint256 indexed nonce, address indexed from, address indexed to,
#: uint256 mint, uint256 value, uint64 gasLimit, bytes data)``.
TRANSACTION_DEPOSITED = keccak(b"TransactionDeposited(uint256,address,address,uint256,uint256,uint64,bytes)")
#: The Portal's bounds (contracts/bridge/Portal.sol): a log outside them is not the Portal's.
MIN_DEPOSIT_GAS = 21_000
MAX_DEPOSIT_GAS = 2_000_000
MAX_DEPOSIT_DATA = 32_768


class DepositError(ValueError):
    """A Portal log that is not a well-formed deposit (the message says which and why)."""


class DepositNonceGap(DepositError):
    """Deposit nonces do not continue 0, 1, 2, ... (a missed or repeated L1 log)."""


class DepositsUnknown(NoL1Origin):
    """An L1 block whose deposits the next L2 block needs has not been read yet: wait for L1."""


@dataclass(frozen=True)
class Deposit:
    """One ``TransactionDeposited`` event, checked."""

    nonce: int
    sender: bytes
    to: bytes
    mint: int
    value: int
    gas_limit: int
    data: bytes
    l1_block: int
    log_index: int


class HasDeposits(Protocol):
    """An L1 block as the deriver reads it (``ai_evm.rollup.derive.L1Block``)."""

    @property
    def deposits(self) -> tuple[Deposit, ...]: ...


def _bytes(v: Any) -> bytes:
    if isinstance(v, str):
        return bytes.fromhex(v[2:] if v.startswith("0x") else v)
    return bytes(v)


def _address_topic(topic: bytes, what: str) -> bytes:
    if len(topic) != 32 or any(topic[:12]):
        raise DepositError(f"TransactionDeposited topic {what} is not an address")
    return topic[12:]


def decode_deposit_log(log: Any) -> Deposit:
    """A :class:`Deposit` from one JSON-RPC log of the Portal; :class:`DepositError` if malformed."""
    try:
        topics = [_bytes(t) for t in log["topics"]]
        data, block, index = _bytes(log["data"]), int(log["blockNumber"]), int(log["logIndex"])
    except (KeyError, TypeError, ValueError) as e:
        raise DepositError(f"unreadable Portal log: {e}") from None
    if len(topics) != 4 or topics[0] != TRANSACTION_DEPOSITED:
        raise DepositError(f"log {index} of L1 block {block} is not a TransactionDeposited event")
    try:
        mint, value, gas_limit, payload = abi_decode(["uint256", "uint256", "uint64", "bytes"], data)
    except Exception as e:  # eth_abi's DecodingError family
        raise DepositError(f"TransactionDeposited log {index} of L1 block {block}: bad data ({e})") from None
    if not MIN_DEPOSIT_GAS <= gas_limit <= MAX_DEPOSIT_GAS:
        raise DepositError(f"deposit log {index} of L1 block {block}: gas limit {gas_limit} outside "
                           f"[{MIN_DEPOSIT_GAS}, {MAX_DEPOSIT_GAS}]")
    if len(payload) > MAX_DEPOSIT_DATA:
        raise DepositError(f"deposit log {index} of L1 block {block}: {len(payload)} data bytes > {MAX_DEPOSIT_DATA}")
    return Deposit(int.from_bytes(topics[1], "big"), _address_topic(topics[2], "from"),
                   _address_topic(topics[3], "to"), mint, value, gas_limit, bytes(payload), block, index)


def check_nonces(deposits: Sequence[Deposit], expected: int) -> int:
    """Check that ``deposits`` carry nonces ``expected, expected + 1, ...``; returns the next one."""
    for d in deposits:
        if d.nonce != expected:
            raise DepositNonceGap(f"deposit in L1 block {d.l1_block} (log {d.log_index}) has nonce {d.nonce}, "
                                  f"expected {expected}")
        expected += 1
    return expected


def deposit_transaction(portal: bytes, d: Deposit) -> SignedTransactionAPI:
    """The L2 deposit transaction (type 0x7E) of ``d``."""
    return new_deposit(deposit_source_hash(portal, d.nonce), d.sender, d.to, d.mint, d.value, d.gas_limit, d.data)


def deposits_between(after: int, through: int, l1_block: Callable[[int], HasDeposits | None]) -> list[Deposit]:
    """The deposits of L1 blocks ``after + 1 .. through``, in order (:class:`DepositsUnknown` if one is unread)."""
    out: list[Deposit] = []
    for n in range(after + 1, through + 1):
        block = l1_block(n)
        if block is None:
            raise DepositsUnknown(f"the deposits of L1 block {n} are not read yet")
        out += block.deposits
    return out


def deposit_transactions(portal: bytes, parent: BlockHeaderAPI, origin: L1Origin, genesis_l1_number: int,
                         l1_block: Callable[[int], HasDeposits | None]) -> list[SignedTransactionAPI]:
    """The deposit transactions that open the L2 block on ``origin`` whose parent is ``parent``
    (module docstring: the deposits of L1 blocks in (parent's origin, origin])."""
    parent_origin = origin_of(parent)
    after = parent_origin.number if parent_origin is not None else genesis_l1_number - 1
    return [deposit_transaction(portal, d) for d in deposits_between(after, origin.number, l1_block)]


def deposits_hook(portal: str | None, genesis_l1_number: int, l1_block: Callable[[int], HasDeposits | None]
                  ) -> Callable[[BlockHeaderAPI, L1Origin], list[SignedTransactionAPI]]:
    """``Sequencer.deposits_for`` for a rollup whose Portal is ``portal`` (None: a rollup without a bridge)."""
    if portal is None:
        return lambda parent, origin: []
    address = _bytes(portal)

    def deposits_for(parent: BlockHeaderAPI, origin: L1Origin) -> list[SignedTransactionAPI]:
        return deposit_transactions(address, parent, origin, genesis_l1_number, l1_block)

    return deposits_for


__all__ = [
    "Deposit",
    "DepositError",
    "DepositNonceGap",
    "DepositsUnknown",
    "TRANSACTION_DEPOSITED",
    "check_nonces",
    "decode_deposit_log",
    "deposit_transaction",
    "deposit_transactions",
    "deposits_between",
    "deposits_hook",
]
