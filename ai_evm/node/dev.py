"""Test helpers as anvil names them (``evm_snapshot``, ``evm_revert``, time travel, mining, state
setters), on only when the node runs with ``--dev-methods`` (``ServeOptions(dev_methods=True)``).

A mixin of :class:`ai_evm.node.methods.EthApi`. These methods rewrite history or state outside of
any transaction, so a block they produce cannot be derived from L1: on a rollup node (a sequencer
following L1, a deriving validator) every one of them is refused with :class:`DevMethodsDisabled`,
whatever the flags. Only a plain ``evm_mine`` (an empty block now, which any node could have
mined) stays available everywhere, as before.

How they work on this node:

* **Snapshots** record the head (number and hash) and the clock offset. ``evm_revert`` makes that
  block the head again in one database commit (:meth:`~ai_evm.node.chain.Sequencer.rewind`): the later blocks' canonical
  number -> hash entries, their transaction lookups and their node records (receipts, logs,
  inference records) are deleted, so a reverted transaction is not found afterwards and its number
  is free for the next block; installed filters report the new blocks at those numbers. As anvil,
  reverting drops that snapshot and every later one.
* **Time**: block timestamps are ``max(now + offset, parent + 1)``; ``evm_increaseTime`` adds to the
  offset, ``evm_setNextBlockTimestamp`` fixes the next block's timestamp exactly and moves the
  offset so later blocks continue from it. The clock only moves forward of the wall clock: a
  timestamp before the wall clock is refused (the node has no hook to go below it).
* **State setters** (``anvil_setBalance``, ``anvil_setCode``, ``anvil_setNonce``,
  ``anvil_setStorageAt``) change the head's state into the next block's pre-state and mine that
  block at once (an empty block, or the pending transactions), so ``latest`` shows the change
  right away; each call therefore adds one block (anvil changes its pending state without one).
* **Impersonation**: ``eth_sendTransaction`` from an account given to ``anvil_impersonateAccount``
  signs the transaction with a throwaway key derived from the address and sends it as an
  :class:`ImpersonatedTransaction`, py-evm's ``SpoofTransaction`` whose sender is the impersonated
  account: admitted, executed and recorded (receipt, ``from``) as that account's, and stored in the
  block with the throwaway signature (whose recovered sender is another address: such a block can
  never be re-executed from its bytes, one more reason these methods stay off rollup nodes). As in
  geth (EIP-3607), the sender must not have code: a contract cannot be impersonated here. Under
  ``--block-time`` the pool journal keeps only the signed bytes, so an impersonated transaction
  pending at a crash is dropped at restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from eth.abc import BlockHeaderAPI, SignedTransactionAPI, StateAPI
from eth.vm.spoof import SpoofTransaction
from eth_typing import Address
from eth_utils import keccak

from .encoding import parse_address, parse_data, parse_quantity, parse_storage_slot, quantity
from .errors import InvalidParams, MethodNotFound
from .filters import FilterRegistry

#: Most blocks one ``evm_mine``/``anvil_mine`` call mines.
MAX_MINE = 10_000


class DevMethodsDisabled(MethodNotFound):
    """A test method on a node that does not serve them (-32601, with the reason)."""


@dataclass(frozen=True)
class Snapshot:
    """What ``evm_revert`` goes back to."""

    number: int
    block_hash: bytes
    offset: int


@dataclass
class DevClock:
    """The dev node's block clock: wall clock + ``offset``, or an exact next timestamp."""

    offset: int = 0
    #: (timestamp, hash of the head it follows): the next block's exact timestamp, until mined
    next_block: tuple[int, bytes] | None = None

    def floor(self, head: BlockHeaderAPI) -> int:
        """The least timestamp of the block after ``head`` (the sequencer's ``min_timestamp``)."""
        if self.next_block is not None and self.next_block[1] == bytes(head.hash):
            return self.next_block[0]
        return int(time.time()) + self.offset


@dataclass
class DevState:
    """Snapshots and the clock of one API."""

    clock: DevClock = field(default_factory=DevClock)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)
    next_id: int = 0
    #: accounts ``eth_sendTransaction`` may send from without their key
    impersonated: set[bytes] = field(default_factory=set)


class ImpersonatedTransaction(SpoofTransaction):
    """A signed transaction sent as another account (``anvil_impersonateAccount``): every attribute
    is the signed transaction's except ``sender``. It passes py-evm's type checks as the signed
    transaction's class (block encoding, ``isinstance``) and is its own deep copy (py-evm copies
    blocks; the wrapped transaction is immutable)."""

    def __init__(self, signed: SignedTransactionAPI, sender: bytes) -> None:
        super().__init__(signed, sender=Address(sender), get_sender=lambda: Address(sender))

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: D105
        return type(self.spoof_target)

    def __deepcopy__(self, memo: dict[int, Any]) -> ImpersonatedTransaction:
        return self


def impersonation_key(address: bytes) -> bytes:
    """The throwaway key that signs the transactions sent as ``address``."""
    return keccak(b"aievm impersonation key" + address)


def is_rollup(seq: Any) -> bool:
    """Whether the node follows a rollup's L1 (sequencer or deriving validator)."""
    return bool(seq.origin_for is not None or seq.derives_from_l1 or seq.heads is not None)


def change_state(seq: Any, change: Callable[[StateAPI], None]) -> None:
    """Apply ``change`` to the head's state and mine it in the next block (see the module docstring)."""
    with seq.lock:
        pending = seq.chain.header
        state = seq.chain.get_vm(pending).state
        change(state)
        state.persist()  # trie nodes into the database overlay: committed with the block, or discarded
        seq.chain.header = pending.copy(state_root=state.state_root)
        seq.mine_pending(allow_empty=True)


class DevApi:
    """The anvil/hardhat test methods (see the module docstring)."""

    seq: Any
    filters: FilterRegistry
    dev_methods: bool
    dev: DevState
    _local: threading.local

    def eth_sendTransaction(self, obj: Any) -> str:
        """As :class:`~ai_evm.node.signing.SigningApi`'s, and from impersonated accounts too."""
        sender = parse_address(obj.get("from"), "from") if isinstance(obj, dict) and obj.get("from") else None
        if sender is None or sender not in self.dev.impersonated:
            return super().eth_sendTransaction(obj)  # type: ignore[misc,no-any-return]
        self._local.impersonating = sender
        try:
            return super().eth_sendTransaction(obj)  # type: ignore[misc,no-any-return]
        finally:
            self._local.impersonating = None

    def _key(self, address: Any, name: str = "address") -> bytes:
        impersonating = getattr(self._local, "impersonating", None)
        if impersonating is not None and parse_address(address, name) == impersonating:
            return impersonation_key(impersonating)
        return super()._key(address, name)  # type: ignore[misc,no-any-return]

    def _admitted_as(self, tx: SignedTransactionAPI) -> SignedTransactionAPI:
        """``tx`` as the impersonated account's, while :meth:`eth_sendTransaction` sends as one."""
        impersonating = getattr(self._local, "impersonating", None)
        if impersonating is None:
            return tx
        return cast(SignedTransactionAPI, ImpersonatedTransaction(tx, impersonating))

    def anvil_impersonateAccount(self, address: Any) -> None:
        """Let ``eth_sendTransaction`` send from ``address`` without its key."""
        self._require_dev("anvil_impersonateAccount")
        self.dev.impersonated.add(parse_address(address))

    def anvil_stopImpersonatingAccount(self, address: Any) -> None:
        """Undo :meth:`anvil_impersonateAccount`."""
        self._require_dev("anvil_stopImpersonatingAccount")
        self.dev.impersonated.discard(parse_address(address))

    def _init_dev(self, enabled: bool) -> None:
        self.dev = DevState()
        self.dev_methods = enabled and not is_rollup(self.seq)
        if self.dev_methods and self.seq.min_timestamp is None:
            self.seq.min_timestamp = self.dev.clock.floor

    def _require_dev(self, method: str) -> None:
        if is_rollup(self.seq):
            raise DevMethodsDisabled(f"{method} is refused on a rollup node: a block it changed could not be "
                                     "derived from L1 (use a node without --rollup, started with --dev-methods)")
        if not self.dev_methods:
            raise DevMethodsDisabled(f"{method} is a test method: start the node with --dev-methods")

    # -- snapshots --------------------------------------------------------------------------------
    def evm_snapshot(self) -> str:
        """Record the head; returns the snapshot id for ``evm_revert``."""
        self._require_dev("evm_snapshot")
        with self.seq.lock:
            head = self.seq.head()
            sid = self.dev.next_id
            self.dev.next_id += 1
            self.dev.snapshots[sid] = Snapshot(int(head.block_number), bytes(head.hash), self.dev.clock.offset)
        return quantity(sid)

    def evm_revert(self, snapshot_id: Any) -> bool:
        """Go back to a snapshot (false if unknown); drops it and every later snapshot."""
        self._require_dev("evm_revert")
        sid = parse_quantity(snapshot_id, "snapshot id", 1 << 64)
        with self.seq.lock:
            snap = self.dev.snapshots.get(sid)
            if snap is None:
                return False
            for later in [s for s in self.dev.snapshots if s >= sid]:
                del self.dev.snapshots[later]
            header = self.seq.header_by_number(snap.number)
            if header is None or bytes(header.hash) != snap.block_hash:
                return False
            self.seq.rewind(snap.number)  # the filters listen (EthApi)
            self.dev.clock.offset = snap.offset
            self.dev.clock.next_block = None
        return True

    # -- time -------------------------------------------------------------------------------------
    def evm_increaseTime(self, seconds: Any) -> str:
        """Move the block clock forward by ``seconds``; returns the total offset."""
        self._require_dev("evm_increaseTime")
        self.dev.clock.offset += parse_quantity(seconds, "seconds", 1 << 40)
        return quantity(self.dev.clock.offset)

    def evm_setNextBlockTimestamp(self, timestamp: Any) -> None:
        """The next block's exact timestamp (after the head's, not before the wall clock)."""
        self._require_dev("evm_setNextBlockTimestamp")
        self._set_next_timestamp(parse_quantity(timestamp, "timestamp", 1 << 63))

    def _set_next_timestamp(self, ts: int) -> None:
        with self.seq.lock:
            head = self.seq.head()
            now = int(time.time())
            if ts <= head.timestamp:
                raise InvalidParams(f"timestamp {ts} is not after the head block's timestamp {head.timestamp}")
            if ts < now:
                raise InvalidParams(f"timestamp {ts} is before this node's wall clock ({now}): block time only "
                                    "moves forward from it here")
            self.dev.clock.next_block = (ts, bytes(head.hash))
            self.dev.clock.offset = ts - now

    # -- mining -----------------------------------------------------------------------------------
    def evm_mine(self, options: Any = None) -> str:
        """Mine a block now (empty if nothing is pending); anvil's ``{timestamp, blocks}`` (or a
        timestamp) are test methods: with them, ``blocks`` blocks, the first at ``timestamp``."""
        if options is None:
            self.seq.mine_pending(allow_empty=True)
            return "0x0"
        self._require_dev("evm_mine with options")
        if isinstance(options, dict):
            blocks = parse_quantity(options["blocks"], "blocks", MAX_MINE) if options.get("blocks") is not None else 1
            ts = parse_quantity(options["timestamp"], "timestamp", 1 << 63) \
                if options.get("timestamp") is not None else None
        else:
            blocks, ts = 1, parse_quantity(options, "timestamp", 1 << 63)
        with self.seq.lock:
            if ts is not None:
                self._set_next_timestamp(ts)
            for _ in range(blocks):
                self.seq.mine_pending(allow_empty=True)
        return "0x0"

    def anvil_mine(self, blocks: Any = None, interval: Any = None) -> None:
        """Mine ``blocks`` blocks (default 1), at least ``interval`` seconds apart."""
        self._require_dev("anvil_mine")
        count = parse_quantity(blocks, "blocks", MAX_MINE) if blocks is not None else 1
        step = parse_quantity(interval, "interval", 1 << 32) if interval is not None else None
        with self.seq.lock:
            for i in range(count):
                head = self.seq.head()
                if step is not None and i > 0:
                    self.dev.clock.next_block = (max(head.timestamp + step, int(time.time())), bytes(head.hash))
                self.seq.mine_pending(allow_empty=True)
            if step is not None:
                self.dev.clock.offset = max(0, int(self.seq.head().timestamp) - int(time.time()))

    # -- state ------------------------------------------------------------------------------------
    def anvil_setBalance(self, address: Any, balance: Any) -> None:
        """Set an account's balance (mined into a block at once)."""
        self._require_dev("anvil_setBalance")
        addr, value = Address(parse_address(address)), parse_quantity(balance, "balance")
        change_state(self.seq, lambda s: s.set_balance(addr, value))

    def anvil_setCode(self, address: Any, code: Any) -> None:
        """Set an account's code (mined into a block at once)."""
        self._require_dev("anvil_setCode")
        addr, payload = Address(parse_address(address)), parse_data(code, "code", max_bytes=1 << 20)
        change_state(self.seq, lambda s: s.set_code(addr, payload))

    def anvil_setNonce(self, address: Any, nonce: Any) -> None:
        """Set an account's nonce (mined into a block at once)."""
        self._require_dev("anvil_setNonce")
        addr, value = Address(parse_address(address)), parse_quantity(nonce, "nonce", (1 << 64) - 1)
        change_state(self.seq, lambda s: s.set_nonce(addr, value))

    def anvil_setStorageAt(self, address: Any, slot: Any, value: Any) -> bool:
        """Set one storage word of an account (mined into a block at once)."""
        self._require_dev("anvil_setStorageAt")
        addr, key = Address(parse_address(address)), parse_storage_slot(slot)
        word = parse_storage_slot(value, "value")
        change_state(self.seq, lambda s: s.set_storage(addr, key, word))
        return True

    # -- the other names anvil answers to (its own, hardhat's, ganache's) ---------------------------
    anvil_snapshot = evm_snapshot
    anvil_revert = evm_revert
    anvil_increaseTime = evm_increaseTime
    anvil_setNextBlockTimestamp = evm_setNextBlockTimestamp
    hardhat_mine = anvil_mine
    hardhat_setBalance = anvil_setBalance
    hardhat_setCode = anvil_setCode
    hardhat_setNonce = evm_setAccountNonce = anvil_setNonce
    hardhat_setStorageAt = anvil_setStorageAt
    hardhat_impersonateAccount = anvil_impersonateAccount
    hardhat_stopImpersonatingAccount = anvil_stopImpersonatingAccount
