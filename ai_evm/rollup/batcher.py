"""The batcher: posts the sequencer's L2 blocks to the L1 batch inbox (``aievm batcher``).

Each round it reads the L2 blocks after the last one posted from the sequencer's JSON-RPC
(headers with their L1 origin, ``debug_getRawTransaction`` for the signed transactions; the
deposit transactions are left out, every node derives them from L1), packs
them into one channel (:mod:`ai_evm.rollup.codec`) and posts its frames in one transaction to the
inbox: as calldata, or with ``da="blobs"`` as the blobs of a type-3 transaction (KZG commitments
from ``ckzg``). It keeps no state of its own: on start it derives from L1 which L2 block was posted
last (the batches already in the inbox, read like a validator reads them), so a killed batcher
resumes where L1 says it stopped. It derives that again whenever its last post left the canonical L1
chain (an L1 reorg) or the L2 block it posted last changed (the sequencer rewound after one). Forced
blocks (``docs/rollup.md`` "Forced blocks": L1 defines them once their sequencing window is over) are
never posted: they count as posted, in that walk and when they lead the blocks to post.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from eth_account import Account
from web3 import Web3
from web3.exceptions import BlockNotFound

from ai_evm.evm.deposit import DEPOSIT_TX_TYPE

from . import blobs, codec
from .codec import Batch
from .config import RollupDeployment
from .derive import ChannelBank
from .l1 import L1Reader

log = logging.getLogger(__name__)

MAX_BLOCKS_PER_CHANNEL = 200
CALLDATA_FRAME_BYTES = 100_000


class BatcherError(RuntimeError):
    """The L2 node or L1 answered something the batcher cannot use (the message says what)."""


@dataclass
class Posted:
    """One batcher transaction: the L2 blocks it carries, its L1 hash, its data size and gas."""

    first: int
    last: int
    tx_hash: str
    data_bytes: int
    gas_used: int
    da: str


def _hex(v: Any) -> bytes:
    s = str(v)
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


class Batcher:
    """Posts L2 blocks to L1 (module docstring)."""

    def __init__(self, l1: Web3, l2: Web3, deployment: RollupDeployment, key: bytes, da: str = "calldata") -> None:
        if da not in ("calldata", "blobs"):
            raise BatcherError(f"unknown data availability mode {da!r} (calldata or blobs)")
        self.l1, self.l2, self.d, self.da = l1, l2, deployment, da
        self.acct = Account.from_key(key)
        if self.acct.address != Web3.to_checksum_address(deployment.batcher):
            raise BatcherError(f"the key is {self.acct.address}, the rollup's batcher is {deployment.batcher}")
        self.posted_through = self._posted_on_l1()
        #: (L1 number, L1 hash) of the last post and the hash of L2 block ``posted_through`` then
        self._last_post: tuple[int, bytes] | None = None
        self._posted_hash = self._l2_hash(self.posted_through)
        self.resyncs = 0

    # -- where L1 says we are -------------------------------------------------------------------
    def _l2_hash(self, number: int) -> bytes | None:
        """The hash of the sequencer's L2 block ``number`` (None past its head)."""
        try:
            return bytes(self.l2.eth.get_block(number)["hash"])
        except BlockNotFound:
            return None

    def _posted_on_l1(self) -> int:
        """The last L2 block of the sequencer's chain whose batch the inbox holds in order (0: none):
        the batches read like a validator reads them, each extending the one before on this chain."""
        reader = L1Reader(self.l1, self.d.inbox, self.d.batcher)
        bank = ChannelBank(self.d.rollup_config)
        through, parent = 0, self._l2_hash(0)
        for n in range(self.d.genesis_l1_number, reader.head() + 1):
            for batch in bank.read(reader.block(n)):
                if parent is not None and batch.parent_hash == parent:
                    through += 1
                    parent = self._l2_hash(through)
            while parent is not None and self._forced(through + 1, n):  # forced once L1 block n was read
                through += 1
                parent = self._l2_hash(through)
        return through

    def _in_sync(self) -> bool:
        """Whether the last post is still on L1's chain and the last posted L2 block still the same."""
        if self._last_post is not None:
            number, block_hash = self._last_post
            try:
                now = bytes(self.l1.eth.get_block(number)["hash"])
            except BlockNotFound:
                return False
            if now != block_hash:
                return False
        return self._l2_hash(self.posted_through) == self._posted_hash

    # -- one round ------------------------------------------------------------------------------
    def batch_at(self, number: int) -> Batch:
        """The batch of L2 block ``number`` (read from the L2 node)."""
        blk = self.l2.eth.get_block(number)
        extra = bytes(blk["extraData"])
        if len(extra) != 8:
            raise BatcherError(f"L2 block {number} names no L1 origin (is the node running with --rollup?)")
        txs = []
        for item in blk["transactions"]:
            h = "0x" + bytes(cast(bytes, item)).hex()
            raw = self.l2.provider.make_request("debug_getRawTransaction", [h])  # type: ignore[arg-type]
            if not raw.get("result"):
                raise BatcherError(f"L2 node gave no raw transaction for {h}: {raw.get('error')}")
            tx = _hex(raw["result"])
            if tx[:1] != bytes([DEPOSIT_TX_TYPE]):  # deposits are derived from L1, never batched
                txs.append(tx)
        return Batch(bytes(blk["parentHash"]), int.from_bytes(extra, "big"), bytes(blk["mixHash"]),
                     int(blk["timestamp"]), tuple(txs))

    def _forced(self, number: int, l1_number: int | None = None) -> bool:
        """Whether L2 block ``number`` is the forced block that every deriving node builds once it has
        read L1 block ``l1_number`` (default: L1's head): ``ai_evm.rollup.derive.forced_batch``, its
        parent's next epoch, the rule's timestamp, deposits only, and that epoch's sequencing window
        over. Such a block is the same whether or not its batch is posted, and a batch posted now would
        be past its window."""
        try:
            blk = self.l2.eth.get_block(number, full_transactions=True)
        except BlockNotFound:
            return False
        types = [cast(Any, tx)["type"] for tx in blk["transactions"]]
        if any((int(t, 16) if isinstance(t, str) else int(t)) != DEPOSIT_TX_TYPE for t in types):
            return False
        parent = self.l2.eth.get_block(number - 1)
        extra, parent_extra = bytes(blk["extraData"]), bytes(parent["extraData"])
        if len(extra) != 8:
            return False
        epoch = int.from_bytes(extra, "big")
        parent_epoch = int.from_bytes(parent_extra, "big") if len(parent_extra) == 8 else self.d.genesis_l1_number
        l1_head = int(self.l1.eth.block_number) if l1_number is None else l1_number
        if epoch != parent_epoch + 1 or l1_head < epoch + self.d.rollup_config.seq_window:
            return False
        try:
            origin = self.l1.eth.get_block(epoch)
        except BlockNotFound:
            return False
        return bytes(origin["hash"]) == bytes(blk["mixHash"]) and \
            int(blk["timestamp"]) == max(int(parent["timestamp"]) + 1, int(origin["timestamp"]))

    def step(self) -> Posted | None:
        """Post the blocks after the last posted one, if any; returns what was posted."""
        if not self._in_sync():
            before = self.posted_through
            self.posted_through = self._posted_on_l1()
            self._posted_hash = self._l2_hash(self.posted_through)
            self._last_post = None
            self.resyncs += 1
            log.warning("batcher: L1 or L2 reorganized: L1 holds L2 blocks through %d (was %d); posting from there",
                        self.posted_through, before)
        head = int(self.l2.eth.block_number)
        while self.posted_through < head and self._forced(self.posted_through + 1):
            self.posted_through += 1  # L1 defines it already: its batch would only be dropped
            self._posted_hash = self._l2_hash(self.posted_through)
        first = self.posted_through + 1
        if first > head:
            return None
        last = min(head, first + MAX_BLOCKS_PER_CHANNEL - 1)
        last_hash = self._l2_hash(last)  # before reading: a rewind while posting shows as a change
        batches = [self.batch_at(n) for n in range(first, last + 1)]
        channel = codec.encode_channel(batches)
        if self.da == "blobs":
            frames = codec.split_frames(codec.new_channel_id(), channel, blobs.max_payload() - 100)
        else:
            frames = codec.split_frames(codec.new_channel_id(), channel, CALLDATA_FRAME_BYTES)
        receipt = None
        for i, frame in enumerate(frames):  # one frame per transaction, in order
            receipt = self._post(codec.encode_batcher_data([frame]))
            log.info("batcher: posted frame %d/%d of L2 blocks %d..%d (%s)", i + 1, len(frames), first, last, self.da)
        assert receipt is not None
        self.posted_through = last
        self._posted_hash = last_hash
        self._last_post = (int(receipt["blockNumber"]), bytes(receipt["blockHash"]))
        return Posted(first, last, "0x" + bytes(receipt["transactionHash"]).hex(), len(channel),
                      int(receipt["gasUsed"]), self.da)

    def _post(self, data: bytes) -> Any:
        tx: dict[str, Any] = {
            "chainId": self.d.l1_chain_id, "to": Web3.to_checksum_address(self.d.inbox), "value": 0,
            "nonce": self.l1.eth.get_transaction_count(self.acct.address, "pending"),
            "maxFeePerGas": 2 * int(self.l1.eth.get_block("latest")["baseFeePerGas"] or 0) + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
        if self.da == "blobs":
            tx.update(type=3, data=b"", gas=100_000, maxFeePerBlobGas=10**10)
            signed = self.acct.sign_transaction(tx, blobs=blobs.encode_blobs(data))
        else:
            tx.update(data=data, gas=21_000 + 40 * len(data) + 50_000)
            signed = self.acct.sign_transaction(tx)
        h = self.l1.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.l1.eth.wait_for_transaction_receipt(h, timeout=120)
        if receipt["status"] != 1:
            raise BatcherError(f"batch transaction 0x{bytes(h).hex()} reverted (is this key the inbox's batcher?)")
        return receipt

    def run(self, poll_s: float = 1.0, stop: Any = None) -> None:
        """Post forever (until ``stop.is_set()``), printing one line per post."""
        while stop is None or not stop.is_set():
            try:
                p = self.step()
            except Exception as e:  # L1 or L2 down: report and retry
                log.warning("batcher: %s", e)
                p = None
            if p is not None:
                print(f"batcher: L2 blocks {p.first}..{p.last} -> L1 {p.tx_hash} ({p.da}, {p.data_bytes} B, "
                      f"{p.gas_used} gas)", flush=True)
            time.sleep(poll_s) if stop is None else stop.wait(poll_s)


__all__ = ["Batcher", "BatcherError", "Posted"]
