"""L2 outputs: what a proposer posts to the ``OutputOracle`` and a validator checks.

The output at L2 block ``N`` after the previous output at block ``P`` (0 for the first) is the
block's hash, timestamp and state root, and the **inference root** of every inference record of
blocks ``P+1 .. N`` in block order: ``merkle_root(keccak(record.encode()) ...)``
(``ai_evm.evm.records.inference_root``; the per-block roots of the node's block records are the
same function over one block). The output root is
``keccak256(0^32 ‖ stateRoot ‖ inferenceRoot ‖ blockHash)`` (``OutputOracle.outputRoot``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ai_evm.evm.call import InferenceRecord
from ai_evm.evm.records import inference_root
from opml.merkle import keccak, merkle_proof

OUTPUT_VERSION = bytes(32)


def _b(v: Any) -> bytes:
    s = str(v)
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def record_from_json(r: dict[str, Any]) -> InferenceRecord:
    """An inference record from its JSON-RPC form (``aievm_getBlockInferences``)."""
    return InferenceRecord(_b(r["model"]), _b(r["inputHash"]), _b(r["outputHash"]), int(r["gas"]), _b(r["txHash"]),
                           int(r["callIndex"]), input=_b(r.get("input", "0x")), output=_b(r.get("output", "0x")))


@dataclass(frozen=True)
class Output:
    """One output and the records its inference root commits to."""

    l2_block_number: int
    l2_timestamp: int
    l2_block_hash: bytes
    state_root: bytes
    records: tuple[InferenceRecord, ...]

    @property
    def inference_root(self) -> bytes:
        return inference_root(self.records)

    @property
    def output_root(self) -> bytes:
        return keccak(OUTPUT_VERSION + self.state_root + self.inference_root + self.l2_block_hash)

    def record_proof(self, index: int) -> list[bytes]:
        """Record ``index``'s Merkle path (bottom first) in the inference root."""
        return merkle_proof([keccak(r.encode()) for r in self.records], index)


def output_at(rpc: Callable[..., Any], previous: int, number: int) -> Output:
    """The output at L2 block ``number`` after the output at ``previous`` (JSON-RPC ``rpc(method, *params)``)."""
    if not 0 <= previous < number:
        raise ValueError(f"an output at block {number} cannot follow one at {previous}")
    blk = rpc("eth_getBlockByNumber", hex(number), False)
    if blk is None:
        raise ValueError(f"L2 block {number} does not exist yet")
    records: list[InferenceRecord] = []
    for n in range(previous + 1, number + 1):
        got = rpc("aievm_getBlockInferences", hex(n))
        records += [record_from_json(r) for r in got["records"]]
    return Output(number, int(blk["timestamp"], 16), _b(blk["hash"]), _b(blk["stateRoot"]), tuple(records))


def first_difference(a: Sequence[InferenceRecord], b: Sequence[InferenceRecord]) -> int | None:
    """Index of the first record where two record lists differ (by their committed encoding)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x.encode() != y.encode():
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


__all__ = ["OUTPUT_VERSION", "Output", "first_difference", "output_at", "record_from_json"]
