"""A node of the rollup: the sequencer following L1, or a validator deriving its chain from L1.

:class:`L1Follower` polls L1 (headers, the model registry's events) in a thread. Attached to a
:class:`~ai_evm.node.chain.Sequencer`:

- as the **sequencer** (:func:`attach_sequencer`): each new block's L1 origin comes from
  :func:`~ai_evm.rollup.sequencing.choose_origin` over the followed headers, the resolver checks
  registrations with the :class:`~ai_evm.rollup.registry.RegistryView`, and a registration starts a
  background fetch of the model;
- as a **validator** (:class:`Derivation`): blocks come only from L1: the inbox posts of every L1
  block are derived (:class:`~ai_evm.rollup.derive.Deriver`) and each valid batch is built with
  ``Sequencer.build_from_batch``; the derived head is the node's safe head. Once the sequencing
  window of the safe head's next epoch is over the deriver yields a forced deposit-only block
  (``docs/rollup.md`` "Forced blocks"), built the same way and never dropped (it stalls and is
  retried if it cannot be built).

Both put the same deposits first in every block (``Sequencer.deposits_for`` is
:func:`~ai_evm.rollup.deposits.deposits_hook` over the followed L1 blocks, whose deposits the
follower checks consecutive).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from web3 import Web3

from ai_evm.node.chain import RETRY_LATER, L1Origin, Sequencer, origin_of

from .codec import Batch
from .config import RollupDeployment
from .deposits import check_nonces, deposits_hook
from .derive import MAX_REORG_DEPTH, Deriver, L1Block, SafeHead
from .l1 import L1Reader, common_ancestor
from .registry import RegistryView
from .sequencing import choose_origin

log = logging.getLogger(__name__)

#: A batch dropped for naming another parent than the safe head (ai_evm.rollup.derive.check_batch).
_NOT_SAFE_HEAD = re.compile(r"parent ([0-9a-f]{64}) is not the safe head")
#: How often a derivation stalled on the same block and cause says so again (seconds).
STALL_REPEAT_S = 30.0


class L1Follower:
    """L1 headers from the rollup's genesis origin on, and the registry view, kept current by polling."""

    def __init__(self, w3: Web3, deployment: RollupDeployment, poll_s: float = 0.5,
                 on_block: Callable[[L1Block], None] | None = None, confirmations: int = 0) -> None:
        if confirmations < 0:
            raise ValueError(f"L1 confirmations must be >= 0, got {confirmations}")
        self.deployment = deployment
        self.reader = L1Reader(w3, deployment.inbox, deployment.batcher, portal=deployment.portal)
        #: Follow L1 this many blocks behind its head (a reorg shallower than that is never seen).
        self.confirmations = confirmations
        #: The nonce the next deposit read must carry (deposits are checked consecutive from 0).
        self.deposit_nonce = 0
        self._nonce_after: dict[int, int] = {}  # L1 number -> the deposit nonce after it (for reorgs)
        #: Called with the common ancestor's number after an L1 reorg, before the new blocks are read.
        self.on_reorg: list[Callable[[int], None]] = []
        self.reorgs = 0
        self.registry = RegistryView(w3, deployment.registry)
        self.blocks: dict[int, L1Block] = {}
        self.next = deployment.genesis_l1_number
        self.poll_s = poll_s
        self.on_block = on_block
        self.error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def block(self, number: int) -> L1Block | None:
        with self._lock:
            return self.blocks.get(number)

    def poll_once(self, full: bool = False) -> int:
        """Read the L1 blocks up to the head (with inbox data if ``full``); returns how many."""
        head = self.reader.head() - self.confirmations
        n = 0
        while self.next <= head and not self._stop.is_set():
            b = self.reader.block(self.next) if full else self.reader.header(self.next)
            prev = self.block(b.number - 1)
            if prev is not None and prev.hash != b.parent_hash:
                self._reorg(b.number - 1)
                continue
            next_nonce = check_nonces(b.deposits, self.deposit_nonce)  # DepositNonceGap: not stored, retried
            with self._lock:
                self.blocks[b.number] = b
                self.deposit_nonce = next_nonce
                self._nonce_after[b.number] = next_nonce
                self._nonce_after.pop(b.number - MAX_REORG_DEPTH - 1, None)
            self.registry.note_l1_block(b.number, b.hash)
            self.next += 1
            n += 1
            if self.on_block is not None:
                self.on_block(b)
        self.registry.sync(head)
        return n

    def _reorg(self, below: int) -> None:
        """L1 block ``below + 1`` does not extend the block ``below`` we read: find the common ancestor
        (the last block we read that L1 still has), forget what came after it and tell ``on_reorg``."""
        ancestor = common_ancestor(self.reader, lambda n: b.hash if (b := self.block(n)) is not None else None,
                                   below, self.deployment.genesis_l1_number)
        with self._lock:
            removed = [b for n, b in self.blocks.items() if n > ancestor]
            for b in removed:
                del self.blocks[b.number]
            self.deposit_nonce = self._nonce_after.get(ancestor, 0)
            for n in [n for n in self._nonce_after if n > ancestor]:
                del self._nonce_after[n]
            self.next = ancestor + 1
        self.registry.rewind(ancestor, [b.hash for b in removed])
        self.reorgs += 1
        log.warning("L1 reorg: %d block(s) after L1 block %d replaced; following the new chain", len(removed), ancestor)
        for callback in self.on_reorg:
            callback(ancestor)

    def start(self, full: bool = False) -> None:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.poll_once(full)
                    self.error = ""
                except Exception as e:  # L1 down or misbehaving: say so, keep trying
                    if str(e) != self.error:
                        log.warning("L1: %s", e)
                    self.error = str(e)
                self._stop.wait(self.poll_s)

        self._thread = threading.Thread(target=run, name="l1-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def attach_sequencer(seq: Sequencer, follower: L1Follower) -> None:
    """Make ``seq`` the rollup's sequencer (module docstring); call before ``follower.start()``."""
    d = follower.deployment
    genesis = d.genesis_origin
    drift = d.rollup_config.max_sequencer_drift

    def origin_for(parent: object, timestamp: int) -> L1Origin:
        return choose_origin(origin_of(parent) or genesis, timestamp, follower.block, drift)  # type: ignore[arg-type]

    def min_timestamp(parent: object) -> int:
        origin = origin_of(parent) or genesis  # type: ignore[arg-type]
        known = follower.block(origin.number)
        return known.timestamp if known is not None else origin.timestamp

    def max_timestamp(parent: object, timestamp: int) -> int:
        try:
            return origin_for(parent, timestamp).timestamp + drift
        except RETRY_LATER:  # no origin fits (yet): mining waits for L1 anyway
            return timestamp

    seq.origin_for = origin_for
    seq.min_timestamp = min_timestamp
    seq.max_timestamp = max_timestamp
    seq.deposits_for = deposits_hook(d.portal, d.genesis_l1_number, follower.block)

    def deposits_pending(parent: object) -> bool:
        after = origin.number if (origin := origin_of(parent)) is not None else d.genesis_l1_number - 1  # type: ignore[arg-type]
        return any(b is not None and b.deposits for b in map(follower.block, range(after + 1, follower.next)))

    seq.deposits_pending = deposits_pending
    seq.origin_lag = lambda parent: follower.next - 1 - (origin_of(parent) or genesis).number  # type: ignore[arg-type]
    seq.resolver.is_registered = follower.registry.is_registered
    fetcher = seq.resolver.fetcher
    if fetcher is not None:
        def fetch(model: bytes, uri: str) -> None:  # off the execution path, at registration
            fetcher.request(model)

        follower.registry.on_registered = fetch
    previous = follower.on_block

    def on_block(b: L1Block) -> None:
        if previous is not None:
            previous(b)
        seq.l1_advanced()

    follower.on_block = on_block

    def on_reorg(ancestor: int) -> None:
        rewind_to_l1(seq, ancestor)

    follower.on_reorg.append(on_reorg)


def rewind_to_l1(seq: Sequencer, ancestor: int) -> int:
    """An L1 reorg kept L1 blocks up to ``ancestor``: rewind the sequencer's chain to its last block whose
    L1 origin is at most ``ancestor`` (the later blocks name origins L1 no longer has) and send the
    forgotten blocks' transactions again (deposits come back from L1). Returns the new head's number."""
    with seq.lock:
        head = seq.head()
        keep = int(head.block_number)
        while keep > 0:
            header = seq.header_by_number(keep)
            origin = origin_of(header) if header is not None else None
            if origin is None or origin.number <= ancestor:
                break
            keep -= 1
        if keep == int(head.block_number):
            return keep
        dropped = seq.rewind(keep)
        refused = [r for r in seq.submit(dropped) if r is not None] if dropped else []
    log.warning("L1 reorg: L2 blocks after %d named L1 origins after block %d; rewound to L2 block %d, "
                "%d transaction(s) sent again%s", keep, ancestor, keep, len(dropped) - len(refused),
                f" ({len(refused)} refused: {refused[0]})" if refused else "")
    return keep  # mined again as the follower reads the new L1 blocks (on_block -> l1_advanced)


class Derivation:
    """Builds ``seq``'s chain from L1 alone (module docstring); its :attr:`safe` is the derived head."""

    def __init__(self, seq: Sequencer, follower: L1Follower) -> None:
        self.seq, self.follower = seq, follower
        d = follower.deployment
        seq.resolver.is_registered = follower.registry.is_registered
        seq.deposits_for = deposits_hook(d.portal, d.genesis_l1_number, follower.block)  # as the sequencer's
        head = seq.head()
        origin = origin_of(head) or d.genesis_origin
        self.deriver = Deriver(d.rollup_config, SafeHead(bytes(head.hash), int(head.block_number), int(head.timestamp),
                                                         origin.number))
        self.rejected = 0
        #: The safe head number at which batches not extending the derived chain were last reported.
        self._forked_at = -1
        self.stalled = ""
        self._stall_key: tuple[int, str, bytes] | None = None
        self._stall_said = 0.0
        self._pending: Batch | None = None
        fetcher = seq.resolver.fetcher
        if fetcher is not None:
            def fetch(model: bytes, uri: str) -> None:  # off the execution path, at registration
                fetcher.request(model)

            follower.registry.on_registered = fetch
        follower.on_block = self._on_block
        follower.on_reorg.append(self._on_reorg)

    def _on_reorg(self, ancestor: int) -> None:
        """Back to the derivation's state with ``ancestor`` as its last L1 block and the L2 chain to that
        state's safe head; the follower then feeds the new L1 blocks (derivation is a function of L1)."""
        safe = self.deriver.rewind_l1(ancestor)
        self._pending, self.stalled, self._stall_key = None, "", None
        self._forked_at = -1
        with self.seq.lock:
            if int(self.seq.head().block_number) > safe.number:
                self.seq.rewind(safe.number)

    def _on_block(self, block: L1Block) -> None:
        self.deriver.add_l1_block(block)
        while True:
            dropped = len(self.deriver.dropped)
            batch = self._pending or self.deriver.next_batch()
            self._report_fork(self.deriver.dropped[dropped:])
            if batch is None:
                return
            try:
                h = self.seq.build_from_batch(batch.transactions, batch.timestamp,
                                              L1Origin(batch.epoch_number, batch.epoch_hash))
            except RETRY_LATER as e:  # a registered model not fetched yet: stall (never skip), retry
                self._stall(batch, e)
                return
            except Exception as e:  # BatchRejected: the batch is dropped, the next one may fit
                if self.deriver.pending_forced:  # deposits only, never dropped: stall, retry on the next L1 block
                    self._stall(batch, e)
                    return
                self._pending = None
                self.deriver.reject(str(e))
                self.rejected += 1
                continue
            if self._stall_key is not None:
                log.warning("derivation resumed at L2 block %d", self.deriver.safe.number + 1)
            self._pending, self.stalled, self._stall_key = None, "", None
            self.deriver.advance(h)

    def _stall(self, batch: Batch, e: Exception) -> None:
        """Keep ``batch`` pending (retried on the next L1 block) and say why: when the stall starts or
        its cause changes, then every STALL_REPEAT_S (the detail's fetch age and attempt count change on
        every retry: not a reason to say it again)."""
        self._pending = batch
        key = (self.deriver.safe.number + 1, type(e).__name__, bytes(getattr(e, "address", b"")))
        now = time.monotonic()
        if key != self._stall_key or now - self._stall_said >= STALL_REPEAT_S:
            log.warning("derivation stalled at L2 block %d: %s (retrying)", key[0], e)
            self._stall_key, self._stall_said = key, now
        self.stalled = str(e)

    def _report_fork(self, drops: list[str]) -> None:
        """Say once per safe head when L1 holds batches that name another parent than the derived head:
        the sequencer built a chain L1 does not define (for instance, it left a deposit out)."""
        n = self.deriver.safe.number
        if n == self._forked_at:
            return
        parents = [bytes.fromhex(m.group(1)) for why in drops if (m := _NOT_SAFE_HEAD.search(why))]
        with self.seq.lock:  # a parent we know is a stale repost, not a fork
            unknown = any(self.seq.header_by_hash(p) is None for p in parents)
        if unknown:
            self._forked_at = n
            why = ("blocks posted after their sequencing window, which forced blocks replaced? the sequencer "
                   "rewinds to them" if self.deriver.forced else "a deposit left out?")
            log.warning("derivation: L1 holds batches that do not extend the derived L2 block %d: the sequencer's "
                        "chain differs from the one L1 defines from there (%s); its outputs from block %d on are "
                        "wrong", n, why, n)

    @property
    def safe(self) -> SafeHead:
        return self.deriver.safe

    def start(self) -> None:
        self.follower.start(full=True)


__all__ = ["Derivation", "L1Follower", "attach_sequencer", "rewind_to_l1"]
