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

from eth_utils import keccak
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.node.chain import Sequencer

from .config import RollupDeployment
from .derive import Deriver, L1Block, L1Reorg, SafeHead
from .l1 import L1Reader, common_ancestor
from .node import Derivation

log = logging.getLogger(__name__)


class BatchMatcher:
    """The sequencer's safe head: its own batches derived from L1, each matched to its block.

    A derived batch matches L2 block ``safe + 1`` when it has that block's parent hash, timestamp
    and transactions (by hash); a batch that does not match is dropped and reported, since then L1
    says something else than what the sequencer built (it never advances the safe head)."""

    def __init__(self, seq: Sequencer, deployment: RollupDeployment) -> None:
        self.seq = seq
        genesis = seq.header_by_number(0)
        if genesis is None:
            raise ValueError("the node has no genesis block")
        self.deriver = Deriver(deployment.rollup_config, SafeHead(bytes(genesis.hash), 0, int(genesis.timestamp),
                                                                  deployment.genesis_l1_number))
        self.mismatches = 0

    @property
    def safe(self) -> int:
        """The last L2 block whose batch L1 holds."""
        return self.deriver.safe.number

    def add_l1_block(self, block: L1Block) -> None:
        """Read one L1 block (in order) and advance over the batches that match built blocks."""
        self.deriver.add_l1_block(block)
        for batch in self.deriver.batches():
            number = self.deriver.safe.number + 1
            with self.seq.lock:
                record = self.seq.record(number)
            why = self._difference(batch.parent_hash, batch.timestamp, batch.transactions, record)
            if why is None:
                assert record is not None
                self.deriver.advance(_b(record["block"]["hash"]))
            else:
                self.mismatches += 1
                log.warning("L1 holds a batch for L2 block %d that is not the block this sequencer built: %s",
                            number, why)
                self.deriver.reject(why)

    @staticmethod
    def _difference(parent: bytes, timestamp: int, txs: tuple[bytes, ...], record: dict[str, Any] | None) -> str | None:
        if record is None:
            return "the sequencer has no block at that height"
        blk = record["block"]
        if _b(blk["parentHash"]) != parent:
            return "another parent hash"
        if int(blk["timestamp"], 16) != timestamp:
            return "another timestamp"
        built = [_b(t["hash"]) for t in record["txs"] if t["type"] != "0x7e"]  # deposits come from L1, not batches
        if built != [keccak(t) for t in txs]:
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
                    self.matcher.deriver.rewind_l1(ancestor)
                    self.next_l1 = ancestor + 1
                    continue
                self.next_l1 += 1
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
