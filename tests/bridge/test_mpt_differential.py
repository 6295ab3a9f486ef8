"""``LibMPT``/``LibSecureTrie`` (through ``BridgeLibHarness`` in py-evm) against py-trie: random tries
(hypothesis) with short keys (so that nodes under 32 bytes are embedded in their parents) and keys
that are prefixes of others; for present and absent keys, with the embedded nodes listed (py-trie's
``get_proof``) or left out (geth's ``eth_getProof``), the Solidity verifier says what ``trie`` says.
Tampered proofs revert with ``MPTInvalidNodeHash``; random secure-trie storage matches too."""

from __future__ import annotations

from typing import Any

import rlp
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from ai_evm.bridge.proofs import account_proof
from ai_evm.dispute.pyevm import Contract, PragueChain

CHAIN = PragueChain(accounts=1)
HARNESS: Contract = CHAIN.deploy("BridgeLibHarness")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.binary(min_size=1, max_size=4)
values = st.binary(min_size=1, max_size=40)


def proof_of(t: HexaryTrie, key: bytes, embedded: bool) -> list[bytes]:
    nodes = [rlp.encode(n) for n in t.get_proof(key)]
    return nodes if embedded else [nodes[0]] + [n for n in nodes[1:] if len(n) >= 32]


def solidity_get(key: bytes, proof: list[bytes], root: bytes) -> Any:
    r = HARNESS.call("get", key, proof, root)
    return r.values if r.ok else r.error


@SETTINGS
@given(st.dictionaries(keys, values, min_size=1, max_size=24), st.lists(keys, min_size=1, max_size=6),
       st.booleans())
def test_lib_mpt_says_what_trie_says(entries: dict[bytes, bytes], probes: list[bytes], embedded: bool) -> None:
    t = HexaryTrie({})
    for k, v in entries.items():
        t[k] = v
    for key in [*list(entries)[:4], *probes]:
        expected = t.get(key)
        proof = proof_of(t, key, embedded)
        got = solidity_get(key, proof, t.root_hash)
        assert got == (bool(expected), expected), (key.hex(), [p.hex() for p in proof], got)
        assert HexaryTrie.get_from_proof(t.root_hash, key, [rlp.decode(p) for p in proof]) == expected


@SETTINGS
@given(st.dictionaries(keys, values, min_size=2, max_size=24), st.data())
def test_tampered_proofs_are_rejected(entries: dict[bytes, bytes], data: st.DataObject) -> None:
    t = HexaryTrie({})
    for k, v in entries.items():
        t[k] = v
    key = data.draw(st.sampled_from(sorted(entries)))
    proof = proof_of(t, key, False)
    i = data.draw(st.integers(0, len(proof) - 1))
    at = data.draw(st.integers(0, len(proof[i]) - 1))
    node = bytearray(proof[i])
    node[at] ^= data.draw(st.integers(1, 255))
    forged = [*proof[:i], bytes(node), *proof[i + 1:]]
    assert solidity_get(key, forged, t.root_hash) == "MPTInvalidNodeHash"
    # A wrong root and a truncated proof are named too.
    assert solidity_get(key, proof, keccak(t.root_hash)) == "MPTInvalidNodeHash"
    if len(proof) > 1:
        assert solidity_get(key, proof[:-1], t.root_hash) == "MPTProofTooShort"


@SETTINGS
@given(st.dictionaries(st.integers(0, 2**256 - 1), st.integers(1, 2**256 - 1), max_size=16),
       st.lists(st.integers(0, 2**256 - 1), min_size=1, max_size=4))
def test_secure_storage_matches(slots: dict[int, int], probes: list[int]) -> None:
    db: dict[bytes, bytes] = {}
    storage = HexaryTrie(db)
    for slot, value in slots.items():
        storage[keccak(slot.to_bytes(32, "big"))] = rlp.encode(value)
    state = HexaryTrie(db)
    address = b"\x42" * 20
    state[keccak(address)] = rlp.encode([1, 5, storage.root_hash, keccak(b"")])
    p = account_proof(db, state.root_hash, address, [*list(slots)[:3], *probes])
    ok, account = HARNESS.call("getAccount", state.root_hash, address, list(p.account_proof)).values
    assert ok and account == (1, 5, storage.root_hash, keccak(b""))
    for s in p.storage_proof:
        assert HARNESS.value("getStorage", storage.root_hash, s.key, list(s.proof)) == s.value
        assert s.value == slots.get(int.from_bytes(s.key, "big"), 0)
