"""The commitment vectors (``tests/vectors/evm_fraud/commitments.json``) are fresh, and they verify
from their bytes alone, as a Solidity implementation would check them: keccak over the documented
layouts, the header's RLP list, nothing from ``ai_evm.fraudproof``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import rlp
from eth_hash.auto import keccak

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "tests" / "vectors" / "evm_fraud" / "commitments.json"
#: Positions in a Prague header's RLP list of the fields execution produces.
STATE_ROOT, RECEIPTS_ROOT, BLOOM, GAS_USED, BLOB_GAS_USED = 3, 5, 6, 10, 17


def _b(h: str) -> bytes:
    return bytes.fromhex(h[2:])


def _u256(v: int) -> bytes:
    return v.to_bytes(32, "big")


def _vectors() -> dict[str, Any]:
    return dict(json.loads(VECTORS.read_text()))


def test_vectors_are_fresh() -> None:
    script = ROOT / "scripts" / "gen_evm_fraud_vectors.py"
    spec = importlib.util.spec_from_file_location("gen_evm_fraud_vectors", script)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.main(["--check"]) == 0, "run scripts/gen_evm_fraud_vectors.py"


def test_vectors_verify_from_their_bytes() -> None:
    blocks = _vectors()["blocks"]
    assert [b["number"] for b in blocks] == [1, 2, 3] and [len(b["transactions"]) for b in blocks] == [3, 3, 3]
    for b in blocks:
        header, parent = rlp.decode(_b(b["headerRlp"])), rlp.decode(_b(b["parentHeaderRlp"]))
        assert keccak(_b(b["headerRlp"])) == _b(b["blockHash"]) and header[0] == keccak(_b(b["parentHeaderRlp"]))
        # the template: the header with its five results zeroed; the context hash is its keccak
        zeroed = list(header)
        zeroed[STATE_ROOT] = zeroed[RECEIPTS_ROOT] = bytes(32)
        zeroed[BLOOM], zeroed[GAS_USED], zeroed[BLOB_GAS_USED] = bytes(256), b"", b""
        assert rlp.encode(zeroed) == _b(b["templateRlp"]) and keccak(_b(b["templateRlp"])) == _b(b["contextHash"])
        states = b["states"]
        assert len(states) == len(b["transactions"]) + 1
        for i, s in enumerate(states):
            enc = _b(s["encoded"])
            assert len(enc) == 512 and keccak(enc) == _b(s["hash"])
            words = [enc[k:k + 32] for k in range(0, 256, 32)]
            assert words[0] == _b(b["contextHash"]) and int.from_bytes(words[1], "big") == i == s["txIndex"]
            assert words[2] == _b(s["stateRoot"]) and int.from_bytes(words[3], "big") == s["gasUsed"]
            assert words[5] == _b(s["receiptsRoot"]) and int.from_bytes(words[6], "big") == s["recordCount"] == 0
            assert words[7] == bytes(32) and not s["recordFault"]
        first, last = _b(states[0]["encoded"]), _b(states[-1]["encoded"])
        # state 0: the parent's state root, nothing executed; the last: exactly the header's results
        assert first[64:96] == parent[STATE_ROOT] and first[96:128] == bytes(32) and first[256:] == bytes(256)
        assert last[64:96] == header[STATE_ROOT] and last[160:192] == header[RECEIPTS_ROOT]
        assert last[256:] == header[BLOOM] and int.from_bytes(last[96:128], "big") == int.from_bytes(
            header[GAS_USED], "big")
        for c in b["blockClaims"]:
            want = keccak(keccak(_b(b["headerRlp"])) + _u256(c["recordCount"]) + _u256(int(c["recordFault"])))
            assert want == _b(c["claim"])
    assert any(int.from_bytes(_b(s["encoded"])[256:], "big") for b in blocks for s in b["states"])  # a log


def test_transfer_step_vectors_verify() -> None:
    from ai_evm.fraudproof.commitments import TxState
    from ai_evm.fraudproof.transfer import TransferWitness, verify_transfer

    steps = _vectors()["transferSteps"]
    assert [(s["block"], s["index"]) for s in steps] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 2), (3, 2)]
    for s in steps:
        w = TransferWitness(_b(s["template"]), _b(s["transaction"]), tuple(map(_b, s["txProof"])),
                            tuple(map(_b, s["stateProof"])), tuple(map(_b, s["receiptsProof"])))
        pre = TxState.decode(_b(s["pre"]))
        assert keccak(_b(s["template"])) == pre.context_hash
        assert verify_transfer(pre, s["index"], w, s["chainId"]) == _b(s["postHash"])
