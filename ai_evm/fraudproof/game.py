"""The referee of the EVM state-transition game, levels 1 and 2 (``docs/evm_fraud_proof.md`` is the spec).

A proposer's output at L2 block ``n`` is disputed from an agreed output at block ``m < n``; the
proposer opens it to its header first (:class:`OpenOutput`). Level 1 bisects over the blocks
``m+1 .. n`` (claims are block claims, :func:`~ai_evm.fraudproof.commitments.block_claim`, posted
with the header, record count and fault they hash); at a leaf one block ``k`` is left whose parent
claim both agree on and whose claim they dispute. :class:`OpenBlock` opens level 2 on it: the
referee checks the disputed header against the agreed parent (parent hash, timestamp, the fields
the node derives from the parent, record counts and fault) and the transactions against its
transactions root, and derives state 0 itself. Level 2 bisects over the ``T`` transactions plus
one **seal** leaf; a :class:`StepTx` on leaf ``j < T`` hands the agreed state and transaction
``j`` to the :class:`TransactionVerifier` (level 3; here any object with that method, e.g.
:class:`~ai_evm.fraudproof.verifier.ReexecutionVerifier` or
:class:`~ai_evm.fraudproof.transfer.StepVerifiers`), and on the seal leaf the referee itself seals
the agreed last state into the block's header.

Positions, clocks, bonds and turn rules are the inference game's (``fraud_vm.position``,
``fraud_vm.game.Rules``/``Role``/``Outcome``/``Bisection``, ``docs/dispute_game.md`` §3-§5),
unchanged, with one addition: after :class:`OpenBlock` the player who disputes the block moves
next (it may be the opener). Every rejected move raises a named error and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ai_evm.evm.call import InferenceRecord
from ai_evm.rollup.outputs import Output
from fraud_vm import position as P
from fraud_vm.errors import (
    CannotDefendRoot,
    ClockExpired,
    IncorrectBond,
    MalformedMove,
    NotYourTurn,
    ParentNotLast,
    TimeNotMonotonic,
    WrongMoveKind,
)
from fraud_vm.game import Bisection, ClockedGame, Outcome, Role, Rules
from opml.merkle import keccak

from .commitments import TxState, block_claim, decode_header, derived_fields_differ, encode_header, seal, start_state
from .errors import (
    AgreedClaimMismatch,
    DisputedClaimMismatch,
    InvalidRecordCount,
    OutputMismatch,
    PreStateMismatch,
    TransactionsMismatch,
    WrongBlockNumber,
)
from .moves import (
    INVALID_TRANSITION,
    BisectBlocks,
    BisectTxs,
    BlockContext,
    HeaderRules,
    Level,
    Move,
    MoveRecord,
    OpenBlock,
    OpenOutput,
    StepTx,
    TransactionVerifier,
)
from .trace import decode_transactions, transactions_root


@dataclass
class EvmGame(ClockedGame):
    """A game on one output: the agreed block ``m``, the disputed output (block ``n``), the current level's
    bisection, clocks and bonds, and once decided the pinned leaf (``pinned``: ``(block, tx)``; tx
    ``T`` is the seal, ``-1`` a verdict at :class:`OpenBlock` or a padding leaf of level 1)."""

    agreed_number: int
    disputed: Output
    records: tuple[InferenceRecord, ...]
    rules: Rules
    verifier: TransactionVerifier
    header_rules: HeaderRules
    bisection: Bisection
    level: Level = Level.OPENING
    outcome: Outcome = Outcome.IN_PROGRESS
    block: BlockContext | None = None
    pinned: tuple[int, int] | None = None
    mover: Role = Role.CLAIMANT
    now: int = 0
    turn_started: int = 0
    clock_used: dict[Role, int] = field(default_factory=lambda: {Role.CLAIMANT: 0, Role.CHALLENGER: 0})
    bonds: dict[Role, int] = field(default_factory=lambda: {Role.CLAIMANT: 0, Role.CHALLENGER: 0})
    moves: int = 0
    log: list[MoveRecord] = field(default_factory=list)
    #: Published block claims: claim hash -> (header RLP, record count, record fault) (on L1: the
    #: calldata of the moves that posted them, and of the game's creation).
    published: dict[bytes, tuple[bytes, int, bool]] = field(default_factory=dict)
    reason: str = ""

    # -------------------------------------------------------------------------- clock and bonds

    @property
    def disputed_number(self) -> int:
        return self.disputed.l2_block_number

    @property
    def length(self) -> int:
        """Blocks of level 1 (``n - m``)."""
        return self.disputed_number - self.agreed_number

    def _finish(self, winner: Role, reason: str) -> None:
        self.outcome = Outcome.CLAIMANT_WINS if winner == Role.CLAIMANT else Outcome.CHALLENGER_WINS
        self.level = Level.RESOLVED
        self.reason = reason

    # -------------------------------------------------------------------------- moves

    def play(self, role: Role, mv: Move, now: int, bond: int | None = None) -> None:
        """Apply ``role``'s move at time ``now`` with ``bond`` (None: the required one).

        Raises a named error and changes nothing if the move is invalid."""
        self._require_open()
        # INVARIANT: only the player to move moves, time runs forward, and not past its deadline.
        if role != self.mover:
            raise NotYourTurn(f"it is the {self.mover.name.lower()}'s turn")
        if now < self.now:
            raise TimeNotMonotonic(f"time {now} is before the last move's {self.now}")
        if now > self.deadline():
            raise ClockExpired(f"the deadline was {self.deadline()}")
        if not isinstance(mv, OpenOutput | BisectBlocks | OpenBlock | BisectTxs | StepTx):
            raise MalformedMove(f"unknown move {type(mv).__name__}")
        if self.level == Level.OPENING or isinstance(mv, OpenOutput):
            self._open_output(role, mv, now, bond)
            return
        required = self.rules.bond(self.moves + 1)
        if bond is not None and bond != required:
            raise IncorrectBond(f"move {self.moves + 1} needs a bond of {required}, got {bond}")
        b = self.bisection
        # INVARIANT: a move answers the last claim, and only the root may not be defended.
        if not isinstance(mv.parent, int) or mv.parent != b.last:
            raise ParentNotLast(f"a move must answer the last claim (position {b.last}), not {mv.parent!r}")
        if not isinstance(mv.is_attack, bool):
            raise MalformedMove("is_attack is a bool")
        if not mv.is_attack and b.last == 1:
            raise CannotDefendRoot("the root claim of a level can only be attacked")
        # INVARIANT: the move's kind fits the level and the position.
        at_leaf = P.depth(b.last) == b.max_depth
        want: type = {(Level.BLOCKS, False): BisectBlocks, (Level.BLOCKS, True): OpenBlock,
                      (Level.TRANSACTIONS, False): BisectTxs, (Level.TRANSACTIONS, True): StepTx}[(self.level, at_leaf)]
        if not isinstance(mv, want):
            raise WrongMoveKind(f"the last claim (position {b.last}, level {self.level.name.lower()}) needs "
                                f"{want.__name__}, not {type(mv).__name__}")
        # an attack disputes the last claim (it becomes hi); a defense agrees with it (it becomes lo)
        if mv.is_attack:
            lo, hi, hi_owner = b.lo_hash, b.last_hash, b.last_owner
        else:
            lo, hi, hi_owner = b.last_hash, b.hi_hash, b.hi_owner
        interval = b.last if mv.is_attack else b.last | 1
        # the resolutions check everything before changing anything; a check that fails raises
        claim = b""
        opened: tuple[Bisection, BlockContext] | None = None
        verdict: tuple[Role, str] | None = None
        if isinstance(mv, BisectBlocks):
            claim = self._check_block_claim(P.move(b.last, mv.is_attack), mv.header, mv.record_count, mv.record_fault)
        elif isinstance(mv, BisectTxs):
            if not isinstance(mv.claim, bytes) or len(mv.claim) != 32:
                raise MalformedMove("a claim is 32 bytes")
            claim = mv.claim
        elif isinstance(mv, OpenBlock):
            i = P.index_at_depth(interval)
            if i >= self.length:  # past block n the trace is padded with block n's claim
                verdict = self._padding(lo, hi, hi_owner, f"padding leaf {i} of level 1")
                self.pinned = (self.disputed_number, -1)
            else:
                opened, verdict = self._open_block(mv, self.agreed_number + i + 1, lo, hi, hi_owner)
        else:
            assert isinstance(mv, StepTx)
            verdict = self._step(mv, P.index_at_depth(interval), lo, hi, hi_owner)
        # the move is valid: charge the clock, take the bond, update the bisection
        self.clock_used[role] += now - self.turn_started
        self.now = self.turn_started = now
        self.moves += 1
        self.bonds[role] += required
        position = P.move(b.last, mv.is_attack) if isinstance(mv, BisectBlocks | BisectTxs) else interval
        self.log.append(MoveRecord(self.moves, role, type(mv).__name__, position, self.level, now))
        self.mover = role.other
        if isinstance(mv, BisectBlocks | BisectTxs):
            b.lo_hash, b.hi_hash, b.hi_owner = lo, hi, hi_owner
            b.last, b.last_hash, b.last_owner = position, claim, role
        elif opened is not None:
            self.bisection, self.block = opened
            self.level = Level.TRANSACTIONS
            # the player disputing the block attacks level 2's root (the disputed block claim) next
            self.mover = hi_owner.other
        else:
            assert verdict is not None
            self._finish(*verdict)
        # INVARIANT: the responder has at least clock_extension_s to answer (clock extension).
        left = self.rules.clock_s - self.clock_used[self.mover]
        if self.outcome == Outcome.IN_PROGRESS and left < self.rules.clock_extension_s:
            self.clock_used[self.mover] = self.rules.clock_s - self.rules.clock_extension_s

    def _open_output(self, role: Role, mv: Move, now: int, bond: int | None) -> None:
        """The claimant's :class:`OpenOutput`: the root claim is the disputed header's block claim."""
        # INVARIANT: the opening is the claimant's first move, and only then.
        if self.level != Level.OPENING or not isinstance(mv, OpenOutput):
            raise WrongMoveKind("the game opens with the claimant's OpenOutput, and only then")
        if bond not in (None, 0):
            raise IncorrectBond(f"the opening takes no bond (the output's bond is the claim's), got {bond}")
        _check_output_header(self.disputed, mv.header, "disputed")
        # SAFETY: the root claim's record count is the output's own, and it claims no record fault.
        root = block_claim(mv.header, len(self.records), False)
        self.clock_used[role] += now - self.turn_started
        self.now = self.turn_started = now
        b = self.bisection
        b.hi_hash = b.last_hash = root
        self.published[root] = (mv.header, len(self.records), False)
        self.log.append(MoveRecord(0, role, "OpenOutput", 1, self.level, now))
        self.level = Level.BLOCKS
        self.mover = role.other
        if self.rules.clock_s - self.clock_used[self.mover] < self.rules.clock_extension_s:
            self.clock_used[self.mover] = self.rules.clock_s - self.rules.clock_extension_s

    def block_at(self, position: int) -> int:
        """The block a level-1 claim at ``position`` commits to (block ``n`` on padding positions)."""
        t = P.trace_index(position, self.bisection.max_depth)
        return min(self.agreed_number + t + 1, self.disputed_number)

    def _check_block_claim(self, position: int, header_rlp: bytes, record_count: int, record_fault: bool) -> bytes:
        """The block claim of a :class:`BisectBlocks` at ``position`` (checked and published)."""
        header = decode_header(header_rlp)
        # INVARIANT: a claim at a position is a header of the block that position commits to.
        if header.block_number != self.block_at(position):
            raise WrongBlockNumber(f"position {position} commits to block {self.block_at(position)}, "
                                   f"the header is block {header.block_number}")
        _check_count(record_count, len(self.records))
        _check_fault(record_fault)
        claim = block_claim(header_rlp, record_count, record_fault)
        self.published[claim] = (header_rlp, record_count, record_fault)
        return claim

    @staticmethod
    def _padding(lo: bytes, hi: bytes, hi_owner: Role, what: str) -> tuple[Role, str]:
        same = hi == lo
        return (hi_owner if same else hi_owner.other,
                f"{what}: the disputed state {'equals' if same else 'differs from'} the agreed one")

    def _open_block(self, mv: OpenBlock, k: int, lo: bytes, hi: bytes,
                    hi_owner: Role) -> tuple[tuple[Bisection, BlockContext] | None, tuple[Role, str] | None]:
        """Check an :class:`OpenBlock` on block ``k``: level 2's bisection, or a verdict on the header."""
        parent, header = decode_header(mv.parent_header), decode_header(mv.header)
        _check_count(mv.parent_record_count, len(self.records))
        _check_count(mv.record_count, len(self.records))
        _check_fault(mv.parent_record_fault)
        _check_fault(mv.record_fault)
        # INVARIANT: both claims are opened to the data their posters published.
        if block_claim(mv.parent_header, mv.parent_record_count, mv.parent_record_fault) != lo:
            raise AgreedClaimMismatch(f"the parent header and count do not give the agreed claim of block {k - 1}")
        if block_claim(mv.header, mv.record_count, mv.record_fault) != hi:
            raise DisputedClaimMismatch(f"the header and count do not give the disputed claim of block {k}")
        if parent.block_number != k - 1 or header.block_number != k:
            raise WrongBlockNumber(f"the leaf is block {k}: got blocks {parent.block_number} and {header.block_number}")
        self.pinned = (k, -1)
        # SAFETY: a disputed header that does not follow its agreed parent loses here: its parent hash,
        # a timestamp not after the parent's, a record count going down or a record fault cleared, or
        # an input field other than the node derives from the parent.
        if header.parent_hash != keccak(mv.parent_header):
            return None, (hi_owner.other, f"block {k}'s parent hash is not the agreed block {k - 1}'s hash")
        if header.timestamp <= parent.timestamp:
            return None, (hi_owner.other, f"block {k}'s timestamp is not after its parent's")
        if mv.record_count < mv.parent_record_count:
            return None, (hi_owner.other, f"block {k}'s record count goes down")
        if mv.parent_record_fault and not mv.record_fault:
            return None, (hi_owner.other, f"block {k} clears the record fault of its parent")
        wrong = derived_fields_differ(parent, header, self.header_rules(parent, header))
        if wrong:
            return None, (hi_owner.other, f"block {k}'s header fields {', '.join(wrong)} do not follow its parent")
        # INVARIANT: the transactions are the ones the disputed header commits to.
        if not isinstance(mv.transactions, tuple) or not all(isinstance(t, bytes) for t in mv.transactions):
            raise MalformedMove("transactions are a tuple of encoded transactions")
        try:
            txs = decode_transactions(mv.transactions)
        except Exception as e:
            raise MalformedMove(f"a transaction does not decode: {e}") from None
        if transactions_root(txs) != bytes(header.transaction_root):
            raise TransactionsMismatch(f"{len(txs)} transactions do not have block {k}'s transactions root")
        # SAFETY: level 2's start state is derived here from the agreed parent, never taken from a player.
        start = start_state(parent, mv.parent_record_count, header, mv.parent_record_fault).hash
        leaves = len(txs) + 1  # one leaf per transaction, then the seal
        depth = max(0, (leaves - 1).bit_length())
        ctx = BlockContext(parent, header, mv.parent_record_count, mv.record_count, mv.transactions, self.records,
                           mv.parent_record_fault)
        return (Bisection(depth, leaves, start, hi, hi_owner, 1, hi, hi_owner), ctx), None

    def _step(self, mv: StepTx, j: int, lo: bytes, hi: bytes, hi_owner: Role) -> tuple[Role, str]:
        """Check a :class:`StepTx` on leaf ``j`` of level 2; return the winner and the reason."""
        block = self.block
        assert block is not None
        count = len(block.transactions)
        self.pinned = (block.number, min(j, count))
        if j > count:
            return self._padding(lo, hi, hi_owner, f"padding leaf {j} of block {block.number}")
        if lo == INVALID_TRANSITION:
            # both agree that an earlier transaction cannot be applied: the block stays invalid
            right = hi == INVALID_TRANSITION
            return (hi_owner if right else hi_owner.other,
                    f"leaf {j} of block {block.number} after an invalid transaction: the disputed state is "
                    + ("right" if right else "wrong"))
        if not isinstance(mv.pre, bytes):
            raise MalformedMove("pre is an encoded intermediate state")
        try:
            pre = TxState.decode(mv.pre)
        except ValueError as e:
            raise MalformedMove(str(e)) from None
        # INVARIANT: the step starts from the agreed state.
        if pre.hash != lo:
            raise PreStateMismatch(f"the state does not hash to the agreed state before leaf {j} "
                                   f"of block {block.number}")
        if j == count:
            # the seal: the agreed last state, sealed into the block's template, must give the disputed claim
            if pre.tx_index != count or pre.record_count > len(self.records):
                post = INVALID_TRANSITION
            else:
                post = block_claim(encode_header(seal(block.header, pre)), pre.record_count, pre.record_fault)
            what = f"the seal of block {block.number}"
        else:
            post = self.verifier.verify_transaction(block, pre, j, mv.witness)
            what = f"transaction {j} of block {block.number}"
        right = post == hi
        return (hi_owner if right else hi_owner.other,
                f"{what}: the disputed post-state is {'right' if right else 'wrong'}")


def _check_fault(fault: Any) -> None:
    if not isinstance(fault, bool):
        raise MalformedMove(f"a record fault is a bool, got {fault!r}")


def _check_count(count: Any, limit: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= limit:
        raise InvalidRecordCount(f"a record count is in 0..{limit} (the output's records), got {count!r}")


def _check_output_header(out: Output, raw: bytes, what: str) -> None:
    header = decode_header(raw)
    if keccak(raw) != out.l2_block_hash:
        raise OutputMismatch(f"the {what} header does not hash to the output's block hash")
    if (header.block_number, header.timestamp, bytes(header.state_root)) != (
            out.l2_block_number, out.l2_timestamp, out.state_root):
        raise OutputMismatch(f"the {what} header's number, timestamp or state root differ from the output's")


def create_game(agreed: Output, agreed_header: bytes, disputed: Output, rules: Rules, verifier: TransactionVerifier,
                header_rules: HeaderRules, now: int) -> EvmGame:
    """A challenger disputes output ``disputed`` from the agreed output ``agreed`` (the previous one).

    The agreed output is opened to its header now (block hash, number, timestamp, state root); the
    claimant (the disputed output's proposer, whose output bond is the claim bond) moves first and
    must open the disputed output with :class:`OpenOutput` within its clock."""
    _check_output_header(agreed, agreed_header, "agreed")
    if disputed.l2_block_number <= agreed.l2_block_number:
        raise OutputMismatch(f"the disputed output (block {disputed.l2_block_number}) is not after the agreed one "
                             f"(block {agreed.l2_block_number})")
    length = disputed.l2_block_number - agreed.l2_block_number
    start = block_claim(agreed_header, 0, False)
    unopened = bytes(32)  # the root claim until the claimant opens its output
    bisection = Bisection(max(0, (length - 1).bit_length()), length, start, unopened, Role.CLAIMANT, 1, unopened,
                          Role.CLAIMANT)
    game = EvmGame(agreed.l2_block_number, disputed, disputed.records, rules, verifier, header_rules, bisection,
                   now=now, turn_started=now)
    game.bonds[Role.CLAIMANT] = rules.bond(0)
    game.published[start] = (agreed_header, 0, False)
    return game


def open_game(agreed: Output, agreed_header: bytes, disputed: Output, disputed_header: bytes, rules: Rules,
              verifier: TransactionVerifier, header_rules: HeaderRules, now: int) -> EvmGame:
    """:func:`create_game` and the claimant's :class:`OpenOutput` with ``disputed_header`` at ``now``."""
    game = create_game(agreed, agreed_header, disputed, rules, verifier, header_rules, now)
    game.play(Role.CLAIMANT, OpenOutput(disputed_header), now)
    return game


__all__ = [
    "INVALID_TRANSITION", "BisectBlocks", "BisectTxs", "BlockContext", "EvmGame", "HeaderRules", "Level", "Move",
    "MoveRecord", "OpenBlock", "OpenOutput", "StepTx", "TransactionVerifier", "create_game", "open_game",
]
