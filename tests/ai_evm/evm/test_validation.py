"""Prague validity rules at the VM layer (:mod:`ai_evm.evm.validation`): the gas formulas, and the
EIP-3607 sender rule on a chain whose genesis gives a keyed account code (which no transaction can
do), for execution (``mine_all``) and for the pool's admission."""

from __future__ import annotations

from typing import Any

import pytest
from eth.db.atomic import AtomicDB
from eth_account import Account
from eth_keys.datatypes import PrivateKey
from eth_utils import keccak

from ai_evm.evm import make_chain_class
from ai_evm.evm.validation import (
    SenderNotEOA,
    calldata_floor_gas,
    calldata_tokens,
    intrinsic_gas,
    is_delegation,
)
from ai_evm.node.errors import TransactionRejected
from ai_evm.node.pool import PoolLimits, TxPool

CHAIN_ID = 1337
CONTRACT_KEY = PrivateKey(keccak(b"validation test: an account with code"))
DELEGATED_KEY = PrivateKey(keccak(b"validation test: a delegated account"))
SPONSOR_KEY = PrivateKey(keccak(b"validation test: a plain account"))
TARGET = b"\x12" * 20


def _chain() -> Any:
    alloc: dict[Any, Any] = {
        CONTRACT_KEY.public_key.to_canonical_address(): {"balance": 10**20, "nonce": 0, "code": b"\x60\x00",
                                                         "storage": {}},
        DELEGATED_KEY.public_key.to_canonical_address(): {"balance": 10**20, "nonce": 0,
                                                          "code": b"\xef\x01\x00" + TARGET, "storage": {}},
        SPONSOR_KEY.public_key.to_canonical_address(): {"balance": 10**20, "nonce": 0, "code": b"", "storage": {}},
    }  # fmt: skip
    genesis: dict[str, Any] = {
        "difficulty": 0, "gas_limit": 30_000_000, "timestamp": 1_700_000_000, "base_fee_per_gas": 10**9,
    }  # fmt: skip
    return make_chain_class(None, CHAIN_ID).from_genesis(AtomicDB(), genesis, alloc)


def _tx(chain: Any, key: PrivateKey, **fields: Any) -> Any:
    tx = {"to": "0x000000000000000000000000000000000000dEaD", "value": 1, "gas": 21000, "maxFeePerGas": 10**10,
          "maxPriorityFeePerGas": 10**9, "nonce": 0, "chainId": CHAIN_ID, "type": 2, **fields}  # fmt: skip
    raw = bytes(Account.sign_transaction(tx, key.to_bytes()).raw_transaction)
    return chain.get_vm().get_transaction_builder().decode(raw)


def test_gas_formulas() -> None:
    assert calldata_tokens(b"\0\0\1\xff") == 2 + 2 * 4
    assert calldata_floor_gas(b"") == 21_000 and calldata_floor_gas(b"\0" * 10_000) == 121_000
    chain = _chain()
    # a creation: py-evm's intrinsic (21000 + 32000 + 4 * 33) plus two initcode words
    create = _tx(chain, SPONSOR_KEY, to=None, data=b"\0" * 33, gas=100_000)
    assert intrinsic_gas(create) == int(create.intrinsic_gas) + 4 == 53_136
    assert is_delegation(b"\xef\x01\x00" + TARGET) and not is_delegation(b"\xef\x01\x00" + TARGET[:19])


def test_sender_with_code_is_invalid_but_a_delegated_sender_is_not() -> None:
    chain = _chain()
    with pytest.raises(SenderNotEOA, match=r"^sender not an eoa: address 0x[0-9a-f]{40}, len\(code\): 2$"):
        chain.mine_all([_tx(chain, CONTRACT_KEY)], timestamp=1_700_000_001)
    chain = _chain()
    state = chain.get_vm().state
    limits = PoolLimits(CHAIN_ID, 30_000_000, 10**9)
    with pytest.raises(TransactionRejected, match="sender not an eoa"):
        TxPool().check(_tx(chain, CONTRACT_KEY), state, limits, lambda h: False)
    delegated = _tx(chain, DELEGATED_KEY)
    TxPool().check(delegated, state, limits, lambda h: False)
    _, receipts, _ = chain.mine_all([delegated], timestamp=1_700_000_001)
    assert receipts[0].gas_used == 21_000


def test_an_authority_with_code_is_skipped() -> None:
    """EIP-7702: an authorization signed by an account that has (non-delegation) code changes
    nothing, and the transaction carrying it is still valid."""
    chain = _chain()
    auth = Account.sign_authorization(
        {"chainId": CHAIN_ID, "address": "0x" + TARGET.hex(), "nonce": 0}, CONTRACT_KEY.to_bytes()
    )
    tx = _tx(chain, SPONSOR_KEY, type=4, gas=100_000, authorizationList=[auth],
             to=CONTRACT_KEY.public_key.to_checksum_address())  # fmt: skip
    _, receipts, computations = chain.mine_all([tx], timestamp=1_700_000_001)
    state = chain.get_vm().state
    authority = CONTRACT_KEY.public_key.to_canonical_address()
    assert computations[0].is_success and state.get_code(authority) == b"\x60\x00"
    assert state.get_nonce(authority) == 0
