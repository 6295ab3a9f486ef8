"""Reading L1 for derivation: blocks, and the batcher's successful posts to the batch inbox.

:class:`L1Reader` turns an L1 block (any Ethereum JSON-RPC endpoint, through web3.py) into the
:class:`~ai_evm.rollup.derive.L1Block` the deriver reads: identity, timestamp and, in transaction
order, the data of every **successful** transaction from the batcher to the inbox: its calldata,
or for a blob transaction the payload of its blobs (:mod:`ai_evm.rollup.blobs`), fetched through a
:data:`BlobSource` and checked against the transaction's versioned hashes. A post whose blobs are
unavailable is an error (the deriver must not skip data it cannot see); a post whose blobs decode
badly is passed on as empty data, which the deriver drops like any malformed post.

With the rollup's Portal address, both :meth:`L1Reader.header` and :meth:`L1Reader.block` also carry
the block's deposits: the Portal's ``TransactionDeposited`` logs (``eth_getLogs`` by block hash), in
log order, each checked by :func:`~ai_evm.rollup.deposits.decode_deposit_log` (a malformed one is a
:class:`~ai_evm.rollup.deposits.DepositError`: the block is not returned, nothing is skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import BlockNotFound

from . import blobs
from .codec import CodecError
from .deposits import TRANSACTION_DEPOSITED, Deposit, decode_deposit_log
from .derive import MAX_REORG_DEPTH, L1Block, ReorgTooDeep

BlobSource = Callable[[bytes], list[bytes]]
"""Blobs of a transaction by its hash, in the order of its versioned hashes."""


class L1ReadError(RuntimeError):
    """L1 data the deriver needs could not be read (endpoint down, blobs unavailable)."""


def anvil_blob_source(w3: Web3) -> BlobSource:
    """Blobs from anvil's ``anvil_getBlobsByTransactionHash`` (a real L1 serves them from the
    beacon API's blob sidecars; not implemented yet)."""

    def fetch(tx_hash: bytes) -> list[bytes]:
        resp = w3.provider.make_request("anvil_getBlobsByTransactionHash", ["0x" + tx_hash.hex()])  # type: ignore[arg-type]
        result = resp.get("result")
        if not isinstance(result, list):
            raise L1ReadError(f"no blobs for transaction 0x{tx_hash.hex()}: {resp.get('error')}")
        return [bytes.fromhex(b[2:] if b.startswith("0x") else b) for b in result]

    return fetch


def _b(v: Any) -> bytes:
    return bytes(v) if not isinstance(v, str) else bytes.fromhex(v[2:] if v.startswith("0x") else v)


class L1Reader:
    """L1 blocks with the batcher's inbox data (module docstring)."""

    def __init__(self, w3: Web3, inbox: str, batcher: str, blob_source: BlobSource | None = None,
                 portal: str | None = None) -> None:
        self.w3 = w3
        self.inbox = Web3.to_checksum_address(inbox)
        self.batcher = Web3.to_checksum_address(batcher)
        self.blob_source = blob_source or anvil_blob_source(w3)
        self.portal = Web3.to_checksum_address(portal) if portal is not None else None

    def deposits(self, number: int, block_hash: bytes) -> tuple[Deposit, ...]:
        """The Portal's deposits in L1 block ``number`` (hash ``block_hash``), in log order."""
        if self.portal is None:
            return ()
        try:
            logs = self.w3.eth.get_logs({"blockHash": HexBytes(block_hash), "address": self.portal,
                                         "topics": [HexBytes(TRANSACTION_DEPOSITED)]})
        except Exception as e:
            raise L1ReadError(f"Portal logs of L1 block {number}: {e}") from e
        ordered = sorted((log for log in logs if not log.get("removed")), key=lambda log: int(log["logIndex"]))
        found = tuple(decode_deposit_log(log) for log in ordered)
        if any(d.l1_block != number for d in found):
            raise L1ReadError(f"L1 endpoint returned logs of another block for block {number}")
        return found

    def head(self) -> int:
        """The L1 head's number."""
        return int(self.w3.eth.block_number)

    def header_hash(self, number: int) -> bytes | None:
        """The hash of canonical L1 block ``number`` (None if L1 has no such block)."""
        try:
            blk = self.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        except Exception as e:
            raise L1ReadError(f"L1 block {number}: {e}") from e
        return _b(blk["hash"])

    def header(self, number: int) -> L1Block:
        """L1 block ``number`` without its inbox data (identity and time only)."""
        try:
            blk = self.w3.eth.get_block(number)
        except Exception as e:
            raise L1ReadError(f"L1 block {number}: {e}") from e
        h = _b(blk["hash"])
        return L1Block(int(blk["number"]), h, _b(blk["parentHash"]), int(blk["timestamp"]),
                       deposits=self.deposits(number, h))

    def block(self, number: int) -> L1Block:
        """L1 block ``number`` with the inbox data of its successful batcher transactions."""
        try:
            blk = self.w3.eth.get_block(number, full_transactions=True)
        except Exception as e:
            raise L1ReadError(f"L1 block {number}: {e}") from e
        data: list[bytes] = []
        for item in blk["transactions"]:
            tx = cast(dict[str, Any], item)
            to = tx.get("to")
            if to is None or Web3.to_checksum_address(to) != self.inbox or \
                    Web3.to_checksum_address(tx["from"]) != self.batcher:
                continue
            h = _b(tx["hash"])
            if int(self.w3.eth.get_transaction_receipt(HexBytes(h))["status"]) != 1:
                continue  # a reverted post is not part of the chain
            hashes = [_b(v) for v in tx.get("blobVersionedHashes") or []]
            data.append(self._blob_data(h, hashes) if hashes else _b(tx["input"]))
        h = _b(blk["hash"])
        return L1Block(int(blk["number"]), h, _b(blk["parentHash"]), int(blk["timestamp"]), tuple(data),
                       self.deposits(number, h))

    def _blob_data(self, tx_hash: bytes, hashes: list[bytes]) -> bytes:
        found = self.blob_source(tx_hash)
        if len(found) != len(hashes):
            raise L1ReadError(f"transaction 0x{tx_hash.hex()} has {len(hashes)} blobs, the source gave {len(found)}")
        for blob, vh in zip(found, hashes, strict=True):
            if len(blob) != blobs.BLOB_BYTES or blobs.versioned_hash(blobs.commitment(blob)) != vh:
                raise L1ReadError(f"a blob of transaction 0x{tx_hash.hex()} does not match its versioned hash")
        try:
            return blobs.decode_blobs(found)
        except CodecError:
            return b""  # malformed payload: the deriver drops it like any malformed post




def common_ancestor(reader: L1Reader, known: Callable[[int], bytes | None], below: int, genesis: int) -> int:
    """After an L1 reorg (block ``below + 1`` does not extend the ``below`` we read): the highest block
    number at most ``below`` whose hash we read (``known``) is still L1's. Raises :class:`ReorgTooDeep`
    when none is, down to the rollup's genesis L1 block or :data:`MAX_REORG_DEPTH` blocks back."""
    floor = max(genesis, below - MAX_REORG_DEPTH + 1)
    for n in range(below, floor - 1, -1):
        h = known(n)
        if h is not None and reader.header_hash(n) == h:
            return n
    raise ReorgTooDeep(f"L1 reorg below block {floor} (the rollup's genesis L1 block is {genesis}; at most "
                       f"{MAX_REORG_DEPTH} blocks are followed): this node cannot follow it; restart it from a "
                       "fresh data directory")


__all__ = ["BlobSource", "L1ReadError", "L1Reader", "anvil_blob_source", "common_ancestor"]
