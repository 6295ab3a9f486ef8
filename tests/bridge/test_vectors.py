"""The bridge's proof vectors: the committed ``BridgeVectors.t.sol`` is what ``bridge_vectors.py``
generates (not stale), and its proofs verify with py-trie's own proof check (present account,
recorded withdrawal's slot = 1, unrecorded slot absent) and fail it when tampered."""

from __future__ import annotations

from dataclasses import replace

import pytest
from bridge_vectors import OUT, RECORDED, UNRECORDED, proofs, solidity

from ai_evm.bridge.proofs import ProofError, StorageProof, verify_account_proof
from ai_evm.bridge.withdrawal import storage_slot, withdrawal_hash


def test_committed_vectors_are_current() -> None:
    assert OUT.read_text() == solidity(), "regenerate: .venv/bin/python tests/bridge/bridge_vectors.py"


def test_vector_proofs_verify_independently() -> None:
    root, p = proofs()
    verify_account_proof(root, p)
    recorded, unrecorded = p.storage_proof
    assert recorded.key == storage_slot(withdrawal_hash(RECORDED)) and recorded.value == 1
    assert unrecorded.key == storage_slot(withdrawal_hash(UNRECORDED)) and unrecorded.value == 0


def test_forged_claims_fail_independently() -> None:
    root, p = proofs()
    recorded, unrecorded = p.storage_proof
    with pytest.raises(ProofError, match="claimed"):
        verify_account_proof(root, replace(p, storage_proof=(StorageProof(unrecorded.key, 1, unrecorded.proof),)))
    with pytest.raises(ProofError, match="not the one claimed"):
        verify_account_proof(root, replace(p, balance=p.balance + 1))
    node = bytearray(p.account_proof[-1])
    node[-1] ^= 1
    with pytest.raises(ProofError):
        verify_account_proof(root, replace(p, account_proof=(*p.account_proof[:-1], bytes(node))))
    with pytest.raises(ProofError):
        verify_account_proof(bytes(32), p)
