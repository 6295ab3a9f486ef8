"""``ai_evm.bridge.withdrawal`` and ``ai_evm.bridge.proofs`` against the contracts and on bad input:
the Python withdrawal hash and slot equal the message passer's and the Portal's (py-evm, random
withdrawals), a ``MessagePassed`` log from the predeploy becomes the same withdrawal, and malformed
fields, logs and ``eth_getProof`` results raise the named errors."""

from __future__ import annotations

import random

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from ai_evm.bridge.proofs import AccountProof, ProofError
from ai_evm.bridge.withdrawal import (
    MESSAGE_PASSED_TOPIC,
    MESSAGE_PASSER,
    Withdrawal,
    WithdrawalError,
    from_message_passed,
    storage_slot,
    withdrawal_hash,
)
from ai_evm.dispute.pyevm import PragueChain


def random_withdrawal(rng: random.Random) -> Withdrawal:
    return Withdrawal(rng.getrandbits(rng.choice([8, 64, 256])), to_checksum_address(rng.randbytes(20)),
                      to_checksum_address(rng.randbytes(20)), rng.getrandbits(rng.choice([1, 80, 256])),
                      rng.getrandbits(rng.choice([17, 64, 256])), rng.randbytes(rng.randint(0, 100)))


def test_hash_and_slot_equal_the_contracts() -> None:
    chain = PragueChain(accounts=1)
    passer = chain.deploy("L2ToL1MessagePasser")
    portal = chain.deploy("Portal", "0x" + "00" * 19 + "01")
    rng = random.Random(14)
    for _ in range(25):
        w = random_withdrawal(rng)
        h = withdrawal_hash(w)
        assert passer.value("hashWithdrawal", *w.as_tuple()) == h
        assert portal.value("hashWithdrawal", w.as_tuple()) == h
        assert portal.value("storageSlot", h) == storage_slot(h)


def test_message_passed_log_round_trip() -> None:
    w = Withdrawal(3, "0x" + "aa" * 20, "0x" + "bb" * 20, 5, 100_000, b"hi")
    log = {"address": MESSAGE_PASSER.lower(),
           "topics": [MESSAGE_PASSED_TOPIC, w.nonce.to_bytes(32, "big"), bytes(12) + bytes.fromhex(w.sender[2:]),
                      "0x" + (bytes(12) + bytes.fromhex(w.target[2:])).hex()],
           "data": encode(["uint256", "uint256", "bytes", "bytes32"],
                          [w.value, w.gas_limit, w.data, withdrawal_hash(w)])}
    assert from_message_passed(log) == w
    with pytest.raises(WithdrawalError, match="does not match"):
        from_message_passed({**log, "data": encode(["uint256", "uint256", "bytes", "bytes32"],
                                                   [w.value + 1, w.gas_limit, w.data, withdrawal_hash(w)])})
    with pytest.raises(WithdrawalError, match="not the message passer"):
        from_message_passed({**log, "address": "0x" + "11" * 20})
    with pytest.raises(WithdrawalError, match="not a MessagePassed log"):
        from_message_passed({**log, "topics": [keccak(b"x")]})
    assert Withdrawal.from_json(w.to_json()) == w


@pytest.mark.parametrize("bad, match", [
    ({"nonce": -1}, "uint256"), ({"value": 2**256}, "uint256"), ({"sender": "0x12"}, "not an address"),
])
def test_bad_fields_are_named(bad: dict[str, object], match: str) -> None:
    fields = {"nonce": 0, "sender": "0x" + "11" * 20, "target": "0x" + "22" * 20, "value": 0, "gas_limit": 0,
              "data": b""}
    with pytest.raises(WithdrawalError, match=match):
        Withdrawal(**{**fields, **bad})  # type: ignore[arg-type]


def test_bad_json_is_named() -> None:
    good = Withdrawal(0, "0x" + "11" * 20, "0x" + "22" * 20, 0, 0, b"").to_json()
    with pytest.raises(WithdrawalError, match="lacks field 'gasLimit'"):
        Withdrawal.from_json({k: v for k, v in good.items() if k != "gasLimit"})
    with pytest.raises(WithdrawalError, match="0x-prefixed"):
        Withdrawal.from_json({**good, "data": "12"})
    with pytest.raises(WithdrawalError, match="JSON object"):
        Withdrawal.from_json([])
    with pytest.raises(WithdrawalError, match="32 bytes"):
        storage_slot(b"\x01")


def test_bad_get_proof_results_are_named() -> None:
    good = {"address": "0x" + "11" * 20, "nonce": "0x0", "balance": "0x1", "storageHash": "0x" + "00" * 32,
            "codeHash": "0x" + "00" * 32, "accountProof": ["0xc0"],
            "storageProof": [{"key": "0x01", "value": "0x0", "proof": []}]}
    p = AccountProof.from_json(good)
    assert p.storage_proof[0].key == (1).to_bytes(32, "big") and AccountProof.from_json(p.to_json()) == p
    with pytest.raises(ProofError, match="missing or bad field"):
        AccountProof.from_json({k: v for k, v in good.items() if k != "accountProof"})
    with pytest.raises(ProofError, match="hex quantity"):
        AccountProof.from_json({**good, "balance": 5})
    with pytest.raises(ProofError, match="at most 32 bytes"):
        AccountProof.from_json({**good, "storageHash": "0x" + "00" * 33})
    with pytest.raises(ProofError, match="malformed"):
        AccountProof.from_json({**good, "accountProof": ["0xzz"]})


def test_bridge_refuses_a_rollup_without_portal() -> None:
    from web3 import Web3

    from ai_evm.bridge.client import Bridge, BridgeError
    from ai_evm.rollup.config import RollupDeployment

    a = "0x" + "11" * 20
    d = RollupDeployment(1, 31337, a, a, a, a, a, a, a, a, a, a, a, 0, "0x" + "01" * 32, 0)
    with pytest.raises(BridgeError, match="no portal"):
        Bridge(d, Web3(), Web3())
