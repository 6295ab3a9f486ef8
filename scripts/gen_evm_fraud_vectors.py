#!/usr/bin/env python3
"""Write the EVM fraud proof's commitment vectors: ``tests/vectors/evm_fraud/commitments.json``.

A small chain is built by the node's own ``Sequencer`` at fixed timestamps (deterministic: dev
keys, RFC 6979 signatures): three value transfers; a deposit from L1, a contract creation and a
transfer; two calls of the contract (SSTORE and LOG0) and a transfer. Every block is re-executed
transaction by transaction (``ai_evm.fraudproof.trace``) and recorded with what a Solidity
implementation of ``docs/evm_fraud_proof.md`` §2-§3 must reproduce byte for byte: the header RLP
and hash, the template RLP and context hash, each intermediate state's 512-byte encoding and hash,
and the block claim (with record counts and faults, including synthetic ones); and for every value
transfer (the deposit included) the one-step proof's witness (``ai_evm.fraudproof.transfer``) with
its pre- and post-state hashes. ``--check`` fails when the committed file differs from a fresh run.

Usage: .venv/bin/python scripts/gen_evm_fraud_vectors.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from eth_utils import to_checksum_address  # noqa: E402

from ai_evm.evm.deposit import deposit_source_hash, new_deposit  # noqa: E402
from ai_evm.fraudproof.commitments import block_claim, context_hash, encode_header, template  # noqa: E402
from ai_evm.fraudproof.moves import BlockContext  # noqa: E402
from ai_evm.fraudproof.trace import ChainView, honest_chain  # noqa: E402
from ai_evm.fraudproof.transfer import UnsupportedTransaction, transfer_witness, verify_transfer  # noqa: E402
from ai_evm.node.chain import NodeConfig, Sequencer  # noqa: E402
from ai_evm.node.origin import L1Origin  # noqa: E402
from ai_evm.node.vm import make_resolver  # noqa: E402
from opml.merkle import keccak  # noqa: E402

OUT = ROOT / "tests" / "vectors" / "evm_fraud" / "commitments.json"
SINK = bytes.fromhex("000000000000000000000000000000000000dEaD")
PORTAL = bytes.fromhex("0000000000000000000000000000000000000b0b")
DEPOSITOR = bytes.fromhex("00000000000000000000000000000000000d0517")
#: SSTORE(0, CALLDATALOAD(0)); LOG0(0, 0); STOP, and its creation code
RUNTIME = bytes([0x60, 0, 0x35, 0x60, 0, 0x55, 0x60, 0, 0x60, 0, 0xA0, 0x00])
CREATION = bytes([0x60, len(RUNTIME), 0x60, 12, 0x60, 0, 0x39, 0x60, len(RUNTIME), 0x60, 0, 0xF3]) + RUNTIME
#: The wall clock the sequencer reads (every block is then its parent's timestamp + 1).
CLOCK = 1_600_000_000


def _sign(key: bytes, nonce: int, to: bytes | None, value: int = 1, data: bytes = b"", gas: int = 21000) -> bytes:
    fields = {"value": value, "gas": gas, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "nonce": nonce,
              "chainId": 31337, "type": 2, "data": data}  # fmt: skip
    if to is not None:
        fields["to"] = to_checksum_address(to)
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def build() -> dict[str, Any]:
    """The vectors (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch("ai_evm.node.chain.time.time", return_value=CLOCK):
        seq = Sequencer(NodeConfig(Path(tmp) / "node", sync=False), make_resolver(None))
        seq.origin_for = lambda head, ts: L1Origin(head.block_number + 1, keccak(b"l1%d" % head.block_number), ts)
        deposit = new_deposit(deposit_source_hash(PORTAL, 0), DEPOSITOR, SINK, 5 * 10**18, 1, 100_000, b"")
        seq.deposits_for = lambda parent, origin: [deposit] if parent.block_number == 1 else []
        keys = [a.private_key for a in seq.config.accounts[:3]]
        from eth._utils.address import generate_contract_address
        from eth_typing import Address

        contract = bytes(generate_contract_address(Address(bytes.fromhex(seq.config.accounts[0].address[2:])), 1))
        blocks = [
            [_sign(keys[0], 0, SINK), _sign(keys[1], 0, SINK, 2), _sign(keys[2], 0, SINK, 3)],
            [_sign(keys[0], 1, None, 0, CREATION, 200_000), _sign(keys[1], 1, SINK)],
            [_sign(keys[0], 2, contract, 0, (7).to_bytes(32, "big"), 100_000),
             _sign(keys[2], 1, contract, 0, (9).to_bytes(32, "big"), 100_000), _sign(keys[1], 2, SINK)],
        ]
        for raws in blocks:
            assert seq.submit([seq.decode_raw(r) for r in raws]) == [None] * len(raws)
            seq.mine_pending()
        view = ChainView.of(seq)
        traces = honest_chain(view, 1, len(blocks))
        out_blocks = []
        transfers = []
        for t in traces:
            block = BlockContext(t.parent, t.header, 0, 0, t.raw_transactions, ())
            for j in range(len(t.transactions)):
                w = transfer_witness(ChainView.of(seq), block, j)
                try:
                    post = verify_transfer(t.states[j], j, w, 31337)
                except UnsupportedTransaction:
                    continue
                assert post == t.states[j + 1].hash
                transfers.append({"block": t.number, "index": j, "chainId": 31337,
                                  "pre": _hex(t.states[j].encode()), "postHash": _hex(post),
                                  "template": _hex(w.template), "transaction": _hex(w.transaction),
                                  "txProof": [_hex(n) for n in w.tx_proof],
                                  "stateProof": [_hex(n) for n in w.state_proof],
                                  "receiptsProof": [_hex(n) for n in w.receipts_proof]})
            out_blocks.append({
                "number": t.number,
                "headerRlp": _hex(t.header_rlp),
                "blockHash": _hex(keccak(t.header_rlp)),
                "parentHeaderRlp": _hex(encode_header(t.parent)),
                "templateRlp": _hex(encode_header(template(t.header))),
                "contextHash": _hex(context_hash(t.header)),
                "transactions": [_hex(r) for r in t.raw_transactions],
                "states": [{"encoded": _hex(s.encode()), "hash": _hex(s.hash), "txIndex": s.tx_index,
                            "stateRoot": _hex(s.state_root), "gasUsed": s.gas_used,
                            "receiptsRoot": _hex(s.receipts_root), "recordCount": s.record_count,
                            "recordFault": s.record_fault} for s in t.states],
                "blockClaims": [{"recordCount": c, "recordFault": f, "claim": _hex(block_claim(t.header_rlp, c, f))}
                                for c, f in ((0, False), (0, True), (4096, False))],
            })
        seq.close()
    return {
        "spec": "docs/evm_fraud_proof.md §2-§3; generated by scripts/gen_evm_fraud_vectors.py",
        "txStateLayout": "contextHash | u256 txIndex | stateRoot | u256 gasUsed | u256 blobGasUsed | receiptsRoot"
                         " | u256 recordCount | u256 recordFault | bloom[256]",
        "blockClaim": "keccak256(keccak256(headerRlp) | u256 recordCount | u256 recordFault)",
        "blocks": out_blocks,
        "transferSteps": transfers,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed vectors are stale")
    args = ap.parse_args(argv)
    text = json.dumps(build(), indent=1) + "\n"
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run scripts/gen_evm_fraud_vectors.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
