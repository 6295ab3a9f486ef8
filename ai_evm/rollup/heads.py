"""The ``safe`` and ``finalized`` L2 heads of a rollup node, and the outputs before a block, from L1.

Ethereum clients expect the block tags ``safe`` and ``finalized``; on the rollup (as op-node defines
them for the OP Stack) they mean:

- **safe**: the last L2 block that L1 data alone produces. A deriving node (``--derive``): its
  derived head (:attr:`~ai_evm.rollup.node.Derivation.safe`). The sequencer: it reads the batch
  inbox like a validator (:class:`~ai_evm.rollup.derive.Deriver`), without executing anything, and
  matches each derived batch with the block it built at that height (:class:`BatchMatcher`): the
  safe head is the last block whose batch L1 holds, in order, as built.
- **finalized**: the L2 block of the latest finalized output in the ``OutputOracle`` (0 before the
  first one); outputs ``[0, finalizedCount)`` can no longer be deleted, so it only moves forward.

:class:`L1Heads` keeps both current in a polling thread (the RPC reads them without touching L1)
and answers :meth:`L1Heads.previous_output`, the L2 block of the latest live output before a block
(``aievm_outputAtBlock``), with a binary search over the oracle's outputs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from eth.abc import SignedTransactionAPI
from eth_utils import keccak
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.node.chain import L1Origin, NoL1Origin, Sequencer, origin_of

from .codec import Batch
from .config import RollupDeployment
from .derive import Deriver, L1Block, L1Reorg, SafeHead, catch_up_margin, forced_batch
from .l1 import L1Reader, common_ancestor
from .node import Derivation

log = logging.getLogger(__name__)


class BatchMatcher:
    """The sequencer's safe head: its own batches derived from L1, each matched to its block.

    A derived batch matches L2 block ``safe + 1`` when it has that block's parent hash, epoch,
    timestamp and transactions (by hash); a batch that does not match is dropped and reported, since
    then L1 says something else than what the sequencer built (it never advances the safe head).

    A **forced block** (the sequencing window expired, ``ai_evm.rollup.derive.forced_batch``) is L1's
    word, not the sequencer's: when the sequencer's block at that height differs, the sequencer
    rewinds to the safe head, builds the forced block itself (the same block every deriving node
    builds) and sends the transactions of the blocks it forgot again; the batcher then posts from its
    new head. Building waits (retried on the next poll) until the sequencer's L1 follower has read the
    forced block's epoch.

    **Catch-up.** A sequencer back after a silence (or rewound onto forced blocks) has its head's epoch
    near the end of its sequencing window: a block of its own there would have to reach L1 within a
    block or two, else every node forces that epoch's block anyway. So while the window of the epoch
    after its head closes within :func:`~ai_evm.rollup.derive.catch_up_margin` L1 blocks of the last one
    read, the sequencer makes that epoch's forced block its next block itself (the block every node
    derives if no batch comes, and a valid batch if one does) and mines its own blocks after them,
    on epochs whose windows leave the batcher time."""

    def __init__(self, seq: Sequencer, deployment: RollupDeployment) -> None:
        self.seq = seq
        genesis = seq.header_by_number(0)
        if genesis is None:
            raise ValueError("the node has no genesis block")
        self.deriver = Deriver(deployment.rollup_config, SafeHead(bytes(genesis.hash), 0, int(genesis.timestamp),
                                                                  deployment.genesis_l1_number))
        self.mismatches = 0
        #: Forced blocks the sequencer built in place of its own blocks.
        self.replaced = 0
        #: Forced blocks the sequencer built ahead of derivation, to catch up with L1.
        self.caught_up = 0
        self._genesis_l1 = deployment.genesis_l1_number
        self._pending: Batch | None = None  # a forced block waiting for the follower's L1 blocks
        self._waiting = ""

    @property
    def safe(self) -> int:
        """The last L2 block whose batch L1 holds (or that L1 forced)."""
        return self.deriver.safe.number

    def add_l1_block(self, block: L1Block) -> None:
        """Read one L1 block (in order) and advance over the batches that match built blocks."""
        self.deriver.add_l1_block(block)
        self.match()

    def rewind_l1(self, ancestor: int) -> None:
        """An L1 reorg kept L1 blocks up to ``ancestor``: back to the deriver's state then."""
        self.deriver.rewind_l1(ancestor)
        self._pending = None

    def match(self) -> None:
        """Advance the safe head over the derived batches (class docstring); a forced block that cannot
        be built yet stays pending until the next call."""
        forgotten: list[SignedTransactionAPI] = []
        with self.seq.lock:  # the sequencer mines nothing between a rewind and the forced block
            try:
                while (batch := self._pending or self.deriver.next_batch()) is not None:
                    self._pending = None
                    number = self.deriver.safe.number + 1
                    record = self.seq.record(number)
                    why = self._difference(batch, record)
                    if why is None:
                        assert record is not None
                        self.deriver.advance(_b(record["block"]["hash"]))
                    elif self.deriver.pending_forced:
                        built = self._build_forced(batch, self.deriver.safe.number, forgotten)
                        if built is None:
                            self._pending = batch
                            return
                        self.deriver.advance(built)
                    else:
                        self.mismatches += 1
                        log.warning("L1 holds a batch for L2 block %d that is not the block this sequencer built: %s",
                                    number, why)
                        self.deriver.reject(why)
                self._keep_in_window()
            finally:
                if forgotten:
                    refused = [r for r in self.seq.submit(forgotten) if r is not None]
                    log.warning("sequencing window: %d transaction(s) of the replaced blocks sent again%s",
                                len(forgotten) - len(refused),
                                f" ({len(refused)} refused: {refused[0]})" if refused else "")

    def _keep_in_window(self) -> None:
        """While the sequencing window of the epoch after the sequencer's head closes within
        :func:`catch_up_margin` L1 blocks of the last one read, make that epoch's forced block the
        sequencer's next block (class docstring, "catch-up")."""
        last, config = self.deriver.last_l1, self.deriver.config
        while last is not None:
            head = self.seq.head()
            origin = origin_of(head)
            head_at = SafeHead(bytes(head.hash), int(head.block_number), int(head.timestamp),
                               origin.number if origin is not None else self._genesis_l1)
            batch = forced_batch(head_at, self.deriver.l1, last + catch_up_margin(config), config)
            if batch is None or self._build_forced(batch, head_at.number, []) is None:
                return
            self.caught_up += 1
            log.info("sequencing window: built the forced L2 block %d (epoch %d) to catch up with L1",
                     head_at.number + 1, batch.epoch_number)

    def _build_forced(self, batch: Batch, safe: int, forgotten: list[SignedTransactionAPI]) -> bytes | None:
        """Make the forced ``batch`` the sequencer's next block after its block ``safe`` (rewinding its
        later blocks into ``forgotten``); its hash, or None if it cannot be built yet (said once)."""
        parent = self.seq.header_by_number(safe)
        origin = L1Origin(batch.epoch_number, batch.epoch_hash)
        try:
            if parent is None:
                raise NoL1Origin(f"the sequencer has no L2 block {safe}")
            if self.seq.deposits_for is not None:
                self.seq.deposits_for(parent, origin)  # its L1 blocks read? (before anything is rewound)
            if int(self.seq.head().block_number) > safe:
                forgotten += self.seq.rewind(safe)
                self.replaced += 1
                log.warning("sequencing window: L1 forced L2 block %d (deposits only, epoch %d); the sequencer's "
                            "blocks after %d are replaced", safe + 1, batch.epoch_number, safe)
            built = self.seq.build_from_batch(batch.transactions, batch.timestamp, origin)
        except Exception as e:  # NoL1Origin (the follower has not read that far yet: usual after a restart,
            if str(e) != self._waiting:  # said at INFO); a failure to build: retried
                log.log(logging.INFO if isinstance(e, NoL1Origin) else logging.WARNING,
                        "sequencing window: the forced L2 block %d waits: %s", safe + 1, e)
            self._waiting = str(e)
            return None
        self._waiting = ""
        return built

    @staticmethod
    def _difference(batch: Batch, record: dict[str, Any] | None) -> str | None:
        if record is None:
            return "the sequencer has no block at that height"
        blk = record["block"]
        if _b(blk["parentHash"]) != batch.parent_hash:
            return "another parent hash"
        if _b(blk["extraData"]) != batch.epoch_number.to_bytes(8, "big") or _b(blk["mixHash"]) != batch.epoch_hash:
            return "another epoch"
        if int(blk["timestamp"], 16) != batch.timestamp:
            return "another timestamp"
        built = [_b(t["hash"]) for t in record["txs"] if t["type"] != "0x7e"]  # deposits come from L1, not batches
        if built != [keccak(t) for t in batch.transactions]:
            return "other transactions"
        return None


def _b(v: Any) -> bytes:
    s = str(v)
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


class L1Heads:
    """The safe and finalized L2 heads of a rollup node, kept current from L1 (module docstring).

    ``derivation`` is the node's :class:`~ai_evm.rollup.node.Derivation` (a ``--derive`` node);
    without it the node is the sequencer and a :class:`BatchMatcher` reads the inbox."""

    def __init__(self, w3: Web3, deployment: RollupDeployment, seq: Sequencer,
                 derivation: Derivation | None = None, poll_s: float = 1.0) -> None:
        self.deployment = deployment
        self.derivation = derivation
        self.matcher = None if derivation is not None else BatchMatcher(seq, deployment)
        self.reader = L1Reader(w3, deployment.inbox, deployment.batcher)
        self.oracle = w3.eth.contract(address=Web3.to_checksum_address(deployment.oracle),
                                      abi=list(artifact("OutputOracle").abi))
        self.next_l1 = deployment.genesis_l1_number
        self.poll_s = poll_s
        self.error = ""
        self._finalized = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def safe(self) -> int:
        """The safe L2 head's number."""
        if self.derivation is not None:
            return self.derivation.safe.number
        assert self.matcher is not None
        return self.matcher.safe

    def finalized(self) -> int:
        """The finalized L2 head's number (as of the last poll)."""
        return self._finalized

    def _output_block(self, index: int) -> int:
        return int(self.oracle.functions.output(index).call()[3])

    def previous_output(self, number: int) -> int:
        """The L2 block of the latest live output on L1 at a block before ``number`` (0 if none).

        Raises whatever web3 raises when L1 cannot be read."""
        lo, hi = 0, int(self.oracle.functions.outputCount().call())  # outputs' blocks increase
        while lo < hi:
            mid = (lo + hi) // 2
            if self._output_block(mid) < number:
                lo = mid + 1
            else:
                hi = mid
        return self._output_block(lo - 1) if lo else 0

    def poll_once(self) -> None:
        """Read the new L1 blocks (sequencer) and the oracle's finalized output."""
        if self.matcher is not None:
            head = self.reader.head()
            while self.next_l1 <= head and not self._stop.is_set():
                try:
                    self.matcher.add_l1_block(self.reader.block(self.next_l1))
                except L1Reorg:  # back to the common ancestor's state, then read the new blocks
                    ancestor = common_ancestor(self.reader, self.matcher.deriver.l1_hash, self.next_l1 - 1,
                                               self.deployment.genesis_l1_number)
                    self.matcher.rewind_l1(ancestor)
                    self.next_l1 = ancestor + 1
                    continue
                self.next_l1 += 1
            self.matcher.match()  # a forced block that waited for the sequencer's L1 follower
        count = int(self.oracle.functions.finalizedCount().call())
        if count:
            self._finalized = max(self._finalized, self._output_block(count - 1))

    def start(self) -> None:
        """Poll in a daemon thread until :meth:`stop`."""
        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.poll_once()
                    self.error = ""
                except Exception as e:  # L1 down or misbehaving: say so once, keep the last heads
                    if str(e) != self.error:
                        log.warning("L1 heads: %s", e)
                    self.error = str(e)
                self._stop.wait(self.poll_s)

        self._thread = threading.Thread(target=run, name="l1-heads", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the polling thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


__all__ = ["BatchMatcher", "L1Heads"]
