"""What the EVM fraud-proof game commits to (``docs/evm_fraud_proof.md`` §2-§4).

Level 1 (over L2 blocks): the state after block ``b`` is the **block claim**
``keccak256(keccak256(rlp(header_b)) ‖ uint256 recordCount_b ‖ uint256 recordFault_b)``: the
block's hash, how many inference records of the disputed output blocks ``m+1 .. b`` consumed, and
whether a call consumed a record that is not its own.

Level 2 (over the transactions of one block ``k``): the state after ``i`` transactions is a
:class:`TxState`: the state root, the cumulative gas and blob gas, the receipts trie root of the
``i`` receipts so far, the OR of their logs blooms, the records consumed so far (and the fault
flag), and the block's
**context hash**, ``keccak256(rlp(template))`` where the template is block ``k``'s header with its
five execution results (state root, receipts root, bloom, gas used, blob gas used) zeroed. State 0
is derived from the agreed parent header; the last state, sealed into the template
(:func:`seal`), gives block ``k``'s header and so its block claim: level 2 ends where level 1's
disputed state is.
"""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from eth.abc import BlockHeaderAPI
from eth.constants import BLANK_ROOT_HASH
from eth.vm.forks.prague.blocks import PragueBlockHeader

from opml.merkle import keccak

from .errors import MalformedHeader

ZERO32 = bytes(32)
BLOOM_BYTES = 256
#: Bytes of an encoded :class:`TxState` (eight words and the bloom).
TX_STATE_BYTES = 8 * 32 + BLOOM_BYTES
#: The header fields that execution produces; every other field is an input of the block.
RESULT_FIELDS = ("state_root", "receipt_root", "bloom", "gas_used", "blob_gas_used")


def _u256(v: int) -> bytes:
    return v.to_bytes(32, "big")


@dataclass(frozen=True)
class TxState:
    """The intermediate state of a block after ``tx_index`` of its transactions (level 2)."""

    context_hash: bytes
    tx_index: int
    state_root: bytes
    gas_used: int
    blob_gas_used: int
    receipts_root: bytes
    logs_bloom: int
    record_count: int
    #: A call so far consumed a record of the output that is not that call's (or none was left):
    #: the output is wrong whatever follows (docs/evm_fraud_proof.md §4.4). Never cleared.
    record_fault: bool = False

    def encode(self) -> bytes:
        """``contextHash ‖ txIndex ‖ stateRoot ‖ gasUsed ‖ blobGasUsed ‖ receiptsRoot ‖ recordCount ‖
        recordFault ‖ bloom``: words big-endian, the bloom its 256 bytes (what a Solidity verifier hashes)."""
        return (self.context_hash + _u256(self.tx_index) + self.state_root + _u256(self.gas_used)
                + _u256(self.blob_gas_used) + self.receipts_root + _u256(self.record_count)
                + _u256(int(self.record_fault)) + self.logs_bloom.to_bytes(BLOOM_BYTES, "big"))

    @property
    def hash(self) -> bytes:
        """``keccak256(encode())``: what a level-2 claim is."""
        return keccak(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> TxState:
        """The state :meth:`encode` wrote (``ValueError`` if ``data`` is not its length)."""
        if len(data) != TX_STATE_BYTES:
            raise ValueError(f"an intermediate state is {TX_STATE_BYTES} bytes, got {len(data)}")
        w = [data[i:i + 32] for i in range(0, 8 * 32, 32)]
        if int.from_bytes(w[7], "big") > 1:
            raise ValueError("recordFault is 0 or 1")
        return cls(context_hash=w[0], tx_index=int.from_bytes(w[1], "big"), state_root=w[2],
                   gas_used=int.from_bytes(w[3], "big"), blob_gas_used=int.from_bytes(w[4], "big"), receipts_root=w[5],
                   record_count=int.from_bytes(w[6], "big"), record_fault=w[7][-1] == 1,
                   logs_bloom=int.from_bytes(data[8 * 32:], "big"))


def decode_header(raw: bytes) -> BlockHeaderAPI:
    """The header an RLP encoding holds (``MalformedHeader`` if it is not a Prague header)."""
    if not isinstance(raw, bytes):
        raise MalformedHeader(f"a header is its RLP bytes, got {type(raw).__name__}")
    try:
        header = rlp.decode(raw, sedes=PragueBlockHeader)
    except Exception as e:  # rlp.DecodingError, DeserializationError, ValueError
        raise MalformedHeader(str(e) or type(e).__name__) from None
    if rlp.encode(header) != raw:
        raise MalformedHeader("the encoding is not canonical")
    return header


def encode_header(header: BlockHeaderAPI) -> bytes:
    """The header's RLP encoding (its hash is ``keccak256`` of it)."""
    return bytes(rlp.encode(header))


def block_claim(header_rlp: bytes, record_count: int, record_fault: bool = False) -> bytes:
    """Level-1 state after a block: ``keccak256(blockHash ‖ uint256 recordCount ‖ uint256 recordFault)``."""
    return keccak(keccak(header_rlp) + _u256(record_count) + _u256(int(record_fault)))


def template(header: BlockHeaderAPI) -> BlockHeaderAPI:
    """The header with its execution results zeroed: the block's inputs (and its parent hash)."""
    return header.copy(state_root=ZERO32, receipt_root=ZERO32, bloom=0, gas_used=0, blob_gas_used=0)


def context_hash(header: BlockHeaderAPI) -> bytes:
    """``keccak256(rlp(template(header)))``: binds every intermediate state to one block's inputs."""
    return keccak(encode_header(template(header)))


def start_state(parent: BlockHeaderAPI, parent_record_count: int, header: BlockHeaderAPI,
                parent_record_fault: bool = False) -> TxState:
    """State 0 of block ``header``: the parent's state root, nothing executed yet.

    The node builds blocks with py-evm's ``mine_all``, which runs no block pre-processing (no
    EIP-4788/EIP-2935 system writes) and, after Paris, no block reward: state 0 is the parent's
    post-state unchanged (``docs/evm_fraud_proof.md`` §3.2)."""
    return TxState(context_hash(header), 0, bytes(parent.state_root), 0, 0, BLANK_ROOT_HASH, 0, parent_record_count,
                   parent_record_fault)


def seal(header: BlockHeaderAPI, state: TxState) -> BlockHeaderAPI:
    """Block ``header``'s template with ``state``'s results: the header the last state implies."""
    return template(header).copy(state_root=state.state_root, receipt_root=state.receipts_root, bloom=state.logs_bloom,
                                 gas_used=state.gas_used, blob_gas_used=state.blob_gas_used)


def derived_fields_differ(parent: BlockHeaderAPI, header: BlockHeaderAPI, expected: BlockHeaderAPI) -> list[str]:
    """Names of the input fields of ``header`` that differ from ``expected`` (the header the node's
    VM derives from ``parent`` with ``header``'s timestamp, L1 origin and transactions root)."""
    ours = template(header).as_dict()
    theirs = template(expected.copy(transaction_root=header.transaction_root)).as_dict()
    return sorted(str(k) for k, v in ours.items() if theirs.get(k) != v)


__all__ = [
    "BLOOM_BYTES", "RESULT_FIELDS", "TX_STATE_BYTES", "TxState", "ZERO32", "block_claim", "context_hash",
    "decode_header", "derived_fields_differ", "encode_header", "seal", "start_state", "template",
]
