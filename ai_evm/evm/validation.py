"""Prague transaction validity: the rules py-evm 0.12 leaves out, with geth's error wording.

A transaction is valid in a block only if it passes every check of the execution-specs'
``validate_transaction`` and ``check_transaction`` (Prague). py-evm 0.12 implements most of them;
this module adds the ones it lacks, so that a node built on it accepts and executes exactly the
transactions Ethereum does:

- **EIP-7623 calldata floor.** py-evm charges the floor after execution but never checks it: a
  transaction whose gas limit is below ``21000 + 10 * tokens`` (``tokens = zero bytes + 4 *
  non-zero bytes``) ran and was charged more gas than its own limit. Such a transaction is invalid.
- **Intrinsic gas of a creation includes the initcode words** (EIP-3860: ``2`` gas per 32-byte word
  of initcode). py-evm charges them inside the creation frame, so a transaction with too little gas
  for them was included as an out-of-gas failure instead of being invalid.
- **Initcode size** (EIP-3860): a creation transaction with more than 49152 bytes of initcode is
  invalid (py-evm included it as an out-of-gas failure).
- **Sender must be an EOA** (EIP-3607), or an EOA delegated with EIP-7702 (code ``0xef0100 ||
  address``).
- **Balance covers ``gas * maxFeePerGas + value``** (py-evm checked ``gas * maxFeePerGas`` and
  ``gas * effectiveGasPrice + value`` separately).
- **Chain id** of a typed (or EIP-155) transaction equals the chain's (py-evm executes a typed
  transaction signed for another chain).
- **Nonce below 2^64 - 1** (EIP-2681), **fee fields** (``maxPriorityFeePerGas <= maxFeePerGas``,
  ``maxFeePerGas >= baseFee``) and the EIP-7702 shape rules (``to`` set, authorization list not
  empty) are checked here too, so the error says what geth says.
- **Blob transactions (type 3)** are refused: this chain carries no blobs.

What py-evm already does right is left to it: signature bounds (``0 < r < n``, ``0 < s <= n/2``,
``y_parity`` in {0, 1}), RLP field ranges (authorization nonce below 2^64, ``y_parity`` a byte),
and the EIP-7702 authorization processing (invalid authorizations are skipped, not the
transaction; the delegation designator ``0xef0100 || address``; a refund of 12500 per
authorization of an existing account). The tests in ``tests/ai_evm/evm/test_validation.py`` and
``tests/ai_evm/node/test_tx_rules.py`` check those behaviours as well.

The rules are split in two: :func:`validate_transaction_rules` needs only the transaction and the
chain id; :func:`validate_transaction_in_state` needs the state of the block it executes in. The
pool runs both at admission; :class:`ai_evm.evm.state.AITransactionExecutor` runs both before
every transaction it executes (the stateful ones are skipped for ``eth_call``-style spoofed
transactions, as geth skips its nonce and EOA checks for calls).
"""

from __future__ import annotations

from eth.abc import SignedTransactionAPI, StateAPI
from eth.constants import SECPK1_N
from eth.vm.spoof import SpoofTransaction
from eth_utils import ValidationError

#: Gas every transaction pays before execution.
TX_BASE_GAS = 21_000
#: EIP-7623: calldata tokens per non-zero byte (a zero byte is one token).
TOKENS_PER_NONZERO_BYTE = 4
#: EIP-7623: floor gas per calldata token.
FLOOR_GAS_PER_TOKEN = 10
#: EIP-3860: gas per 32-byte word of initcode, part of a creation's intrinsic gas.
INITCODE_WORD_GAS = 2
#: EIP-3860: the largest initcode a creation transaction may carry (2 * 24576).
MAX_INITCODE_SIZE = 49_152
#: EIP-2681: a transaction nonce must be below this.
NONCE_LIMIT = 2**64 - 1
#: EIP-7702: the code of a delegated EOA is this prefix followed by a 20-byte address.
DELEGATION_PREFIX = b"\xef\x01\x00"
#: Transaction types this chain executes (legacy, EIP-2930, EIP-1559, EIP-7702).
SUPPORTED_TYPES = (0, 1, 2, 4)
SET_CODE_TYPE = 4


class InvalidTransaction(ValidationError):
    """A transaction that Prague forbids in a block; ``str(e)`` is geth's message for it.

    A subclass of py-evm's ``ValidationError``, so py-evm (``mine_all``, block import) treats it
    like its own validity errors: the block is invalid.
    """


class UnsupportedTransactionType(InvalidTransaction):
    """A transaction type this chain does not execute (3: blobs)."""


class InvalidChainId(InvalidTransaction):
    """Signed for another chain."""


class InvalidSignatureValues(InvalidTransaction):
    """Signature ``r`` outside (0, n) or ``s`` outside (0, n/2]."""


class NonceMax(InvalidTransaction):
    """EIP-2681: nonce at or above 2^64 - 1."""


class InitcodeTooLarge(InvalidTransaction):
    """EIP-3860: a creation with more than 49152 bytes of initcode."""


class IntrinsicGasTooLow(InvalidTransaction):
    """Gas limit below the intrinsic gas."""


class FloorDataGasTooLow(InvalidTransaction):
    """EIP-7623: gas limit below the calldata floor."""


class TipAboveFeeCap(InvalidTransaction):
    """``maxPriorityFeePerGas`` above ``maxFeePerGas``."""


class FeeCapTooLow(InvalidTransaction):
    """``maxFeePerGas`` (or a legacy ``gasPrice``) below the block's base fee."""


class SetCodeCreate(InvalidTransaction):
    """EIP-7702: a set-code transaction without a destination."""


class EmptyAuthorizationList(InvalidTransaction):
    """EIP-7702: a set-code transaction without authorizations."""


class SenderNotEOA(InvalidTransaction):
    """EIP-3607: the sender has code that is not an EIP-7702 delegation."""


class InsufficientFunds(InvalidTransaction):
    """Balance below ``gas * maxFeePerGas + value``."""


class NonceMismatch(InvalidTransaction):
    """Transaction nonce differs from the sender's account nonce."""


def _hex(address: bytes) -> str:
    return "0x" + bytes(address).hex()


def transaction_type(tx: SignedTransactionAPI) -> int:
    """EIP-2718 type of ``tx`` (0 for legacy and for spoofed call transactions)."""
    return int(getattr(tx, "type_id", None) or 0)


def calldata_tokens(data: bytes) -> int:
    """EIP-7623 tokens: one per zero byte, four per non-zero byte."""
    zeros = data.count(0)
    return zeros + (len(data) - zeros) * TOKENS_PER_NONZERO_BYTE


def calldata_floor_gas(data: bytes) -> int:
    """EIP-7623: the least gas a transaction with this calldata (or initcode) is charged."""
    return TX_BASE_GAS + FLOOR_GAS_PER_TOKEN * calldata_tokens(data)


def is_creation(tx: SignedTransactionAPI) -> bool:
    """Whether ``tx`` creates a contract (empty ``to``)."""
    return bytes(tx.to) == b""


def intrinsic_gas(tx: SignedTransactionAPI) -> int:
    """The execution-specs' intrinsic gas: py-evm's (base, calldata, creation, access list,
    authorizations) plus the EIP-3860 initcode words of a creation, which py-evm charges later."""
    gas = int(tx.intrinsic_gas)
    if is_creation(tx):
        gas += INITCODE_WORD_GAS * ((len(tx.data) + 31) // 32)
    return gas


def is_delegation(code: bytes) -> bool:
    """Whether ``code`` is an EIP-7702 delegation designator (``0xef0100 || address``)."""
    return len(code) == 23 and code[:3] == DELEGATION_PREFIX


def _fee_cap(tx: SignedTransactionAPI) -> int:
    return int(tx.gas_price) if transaction_type(tx) in (0, 1) else int(tx.max_fee_per_gas)


def validate_transaction_rules(tx: SignedTransactionAPI, chain_id: int) -> None:
    """Stateless Prague validity of ``tx`` on chain ``chain_id``; raises :class:`InvalidTransaction`.

    Checks, in geth's order: type, chain id, signature bounds, nonce limit, initcode size,
    intrinsic gas, calldata floor, fee fields, and the EIP-7702 shape (destination set,
    authorization list not empty). Spoofed call transactions have no signature to check.
    """
    kind = transaction_type(tx)
    if kind not in SUPPORTED_TYPES:
        raise UnsupportedTransactionType(f"transaction type {kind} not supported")
    if not isinstance(tx, SpoofTransaction):
        signed_for = tx.chain_id
        if signed_for is not None and signed_for != chain_id:
            raise InvalidChainId(f"invalid chain id: have {signed_for} want {chain_id}")
        if not (0 < tx.r < SECPK1_N and 0 < tx.s <= SECPK1_N // 2):
            raise InvalidSignatureValues("invalid transaction v, r, s values")
    if tx.nonce >= NONCE_LIMIT:
        raise NonceMax(f"nonce has max value: address {_hex(tx.sender)}, nonce: {tx.nonce}")
    if is_creation(tx) and len(tx.data) > MAX_INITCODE_SIZE:
        raise InitcodeTooLarge(f"max initcode size exceeded: code size {len(tx.data)}, limit {MAX_INITCODE_SIZE}")
    needed = intrinsic_gas(tx)
    if tx.gas < needed:
        raise IntrinsicGasTooLow(f"intrinsic gas too low: gas {tx.gas}, minimum needed {needed}")
    floor = calldata_floor_gas(tx.data)
    if tx.gas < floor:
        raise FloorDataGasTooLow(f"insufficient gas for floor data gas cost: gas {tx.gas}, minimum needed {floor}")
    if kind not in (0, 1) and tx.max_priority_fee_per_gas > tx.max_fee_per_gas:
        raise TipAboveFeeCap(
            f"max priority fee per gas higher than max fee per gas: address {_hex(tx.sender)}, "
            f"maxPriorityFeePerGas: {tx.max_priority_fee_per_gas}, maxFeePerGas: {tx.max_fee_per_gas}"
        )
    if kind == SET_CODE_TYPE:
        if is_creation(tx):
            raise SetCodeCreate("EIP-7702 transaction cannot be used to create contract")
        if not tx.authorization_list:
            raise EmptyAuthorizationList("EIP-7702 transaction with empty auth list")


def validate_fee_cap(tx: SignedTransactionAPI, base_fee: int) -> None:
    """``maxFeePerGas`` (legacy: ``gasPrice``) must cover the block's base fee."""
    cap = _fee_cap(tx)
    if cap < base_fee:
        raise FeeCapTooLow(
            f"max fee per gas less than block base fee: address {_hex(tx.sender)}, maxFeePerGas: {cap}, "
            f"baseFee: {base_fee}"
        )


def max_cost(tx: SignedTransactionAPI) -> int:
    """The most ``tx`` can cost its sender: ``gas * maxFeePerGas (legacy: gasPrice) + value``."""
    return int(tx.gas) * _fee_cap(tx) + int(tx.value)


def validate_sender_code(code: bytes, sender: bytes) -> None:
    """EIP-3607 with EIP-7702: the sender has no code, or only a delegation designator."""
    if code and not is_delegation(code):
        raise SenderNotEOA(f"sender not an eoa: address {_hex(sender)}, len(code): {len(code)}")


def validate_transaction_in_state(state: StateAPI, tx: SignedTransactionAPI) -> None:
    """Prague validity of ``tx`` as the next transaction on ``state`` (base fee, nonce, funds, EOA).

    Raises :class:`InvalidTransaction` (nonce, funds and EOA with geth's messages).
    """
    sender = tx.sender
    validate_fee_cap(tx, int(state.execution_context.base_fee_per_gas or 0))
    nonce = state.get_nonce(sender)
    if tx.nonce < nonce:
        raise NonceMismatch(f"nonce too low: address {_hex(sender)}, tx: {tx.nonce} state: {nonce}")
    if tx.nonce > nonce:
        raise NonceMismatch(f"nonce too high: address {_hex(sender)}, tx: {tx.nonce} state: {nonce}")
    balance, cost = state.get_balance(sender), max_cost(tx)
    if balance < cost:
        raise InsufficientFunds(
            f"insufficient funds for gas * price + value: address {_hex(sender)} have {balance} want {cost}"
        )
    validate_sender_code(state.get_code(sender), sender)
