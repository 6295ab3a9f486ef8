"""The off-chain referee of the two-phase dispute game (``docs/dispute_game.md`` is the spec).

A claimant claims ``(model address, input hash) -> output hash`` with a bond; a challenger disputes
it. Phase 1 bisects over the phase-1 states (``fraud_vm.phase1``) until one graph node ``k`` is
left whose pre-state both agree on and whose post-state they dispute; phase 2 bisects over the VM
steps of node ``k``, whose start state the referee derives itself from the agreed phase-1 state
and the model address; the referee then executes the single disputed step from its witness. Every
move answers the last claim with an attack or a defense (``fraud_vm.position.move``), has a
deadline (chess clock) and posts a bond that grows with the move number; the loser's bonds go to
the winner. This module is the rule book: the Solidity game implements the same state machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from opml.bundle import Bundle

from . import phase1 as p1
from . import position as P
from .errors import FraudVMError


class GameError(FraudVMError):
    """A move that the rules reject (the move is void, as if it had never been sent)."""


class Role(IntEnum):
    """The two players."""

    CLAIMANT = 0
    CHALLENGER = 1

    @property
    def other(self) -> Role:
        return Role(1 - self)


class Outcome(IntEnum):
    """State of a game."""

    IN_PROGRESS = 0
    CLAIMANT_WINS = 1
    CHALLENGER_WINS = 2


class Phase(IntEnum):
    """Which trace the bisection is over."""

    NODES = 1
    STEPS = 2
    RESOLVED = 3


@dataclass(frozen=True)
class Rules:
    """Game parameters: chess clock per player (seconds), bond of the claim and of move ``m``."""

    clock_s: int = 3 * 24 * 3600
    claim_bond: int = 10**18
    bond_increment: int = 10**17

    def bond(self, move_number: int) -> int:
        """Bond of the ``move_number``-th move (the claim is move 0): grows linearly with depth."""
        return self.claim_bond + move_number * self.bond_increment


class VMBackend(Protocol):
    """What the referee needs from the fraud VM (``fraud_vm.trace`` / ``fraud_vm.vm``)."""

    def node_steps(self, bundle: Bundle, node_index: int, batch: int) -> int:
        """Number of instructions of node ``node_index``'s program (>= 1)."""

    def start_state_hash(self, bundle: Bundle, node_index: int, batch: int, input_roots: Sequence[bytes]) -> bytes:
        """Hash of the derived start state; ``input_roots`` of the node's non-constant inputs, in order."""

    def verify_step(self, pre_state_hash: bytes, witness: Any) -> bytes:
        """One instruction from its witness; returns the post-state hash."""

    def final_output_roots(self, bundle: Bundle, node_index: int, batch: int, final_state: bytes,
                           proof: Any) -> list[bytes]:
        """Output roots of a HALTED final state (its encoding) with their memory proof."""

    def witness_size(self, witness: Any) -> int:
        """Bytes of the witness as an L1 contract would receive it."""


# ------------------------------------------------------------------------------------------------
# Moves


@dataclass(frozen=True)
class Bisect:
    """Answer the claim at ``parent`` (attack or defend) and post ``claim`` at ``move(parent)``."""

    parent: int
    is_attack: bool
    claim: bytes


@dataclass(frozen=True)
class OpenSteps:
    """Answer the last phase-1 claim, leaving a leaf (node ``k``), and open phase 2.

    ``pre_tensors_root``: the agreed ``state_k``'s tensor table; ``input_roots``/``input_proofs``:
    node ``k``'s non-constant inputs in that table; ``output_roots``/``output_proofs``: node ``k``'s
    outputs as the mover computes them (their paths in the table, zero before); ``final_state``
    (an encoded HALTED VM state) and ``final_proof``: the mover's end of node ``k``'s execution.
    For a leaf past the last node (padding) only ``parent``/``is_attack`` are read.
    """

    parent: int
    is_attack: bool
    pre_tensors_root: bytes = b""
    input_roots: tuple[bytes, ...] = ()
    input_proofs: tuple[tuple[bytes, ...], ...] = ()
    output_roots: tuple[bytes, ...] = ()
    output_proofs: tuple[tuple[bytes, ...], ...] = ()
    final_state: bytes = b""
    final_proof: Any = None


@dataclass(frozen=True)
class Step:
    """Answer the last phase-2 claim, leaving a leaf (step ``j``), and execute it from ``witness``."""

    parent: int
    is_attack: bool
    witness: Any = None


Move = Bisect | OpenSteps | Step


@dataclass
class Bisection:
    """The referee's record of one phase: the agreed state at ``lo``, the disputed one at ``hi``."""

    max_depth: int
    length: int
    lo_hash: bytes
    hi_hash: bytes
    hi_owner: Role
    last: int = 1  # position of the last claim (the root claim at first)
    last_hash: bytes = b""
    last_owner: Role = Role.CLAIMANT


@dataclass
class MoveRecord:
    """One accepted or rejected move, for the game log."""

    number: int
    role: Role
    kind: str
    position: int
    phase: Phase
    time: int
    note: str = ""


@dataclass
class Game:
    """A game in progress: the claim, the current phase and bisection, clocks and bonds."""

    bundle: Bundle
    claim: p1.Claim
    rules: Rules
    backend: VMBackend
    phase: Phase = Phase.NODES
    outcome: Outcome = Outcome.IN_PROGRESS
    bisection: Bisection | None = None
    node_index: int = -1
    pinned_step: int = -1
    mover: Role = Role.CHALLENGER
    now: int = 0
    turn_started: int = 0
    clock_used: dict[Role, int] = field(default_factory=lambda: {Role.CLAIMANT: 0, Role.CHALLENGER: 0})
    bonds: dict[Role, int] = field(default_factory=lambda: {Role.CLAIMANT: 0, Role.CHALLENGER: 0})
    moves: int = 0
    log: list[MoveRecord] = field(default_factory=list)
    final_witness_bytes: int = 0
    reason: str = ""

    # -------------------------------------------------------------------------- clock and bonds

    def deadline(self) -> int:
        """Time by which the player to move must move."""
        return self.turn_started + self.rules.clock_s - self.clock_used[self.mover]

    def claim_timeout(self, now: int) -> None:
        """Anyone may end the game once the mover's clock ran out: the mover loses."""
        self._require_open()
        if now < self.deadline():
            raise GameError(f"the {self.mover.name.lower()} still has time until {self.deadline()}")
        self.now = now
        self._finish(self.mover.other, f"{self.mover.name.lower()} ran out of time")

    def payouts(self) -> dict[Role, int]:
        """What each player is paid once the game is over: the winner takes every bond."""
        if self.outcome == Outcome.IN_PROGRESS:
            raise GameError("the game is not over")
        winner = Role.CLAIMANT if self.outcome == Outcome.CLAIMANT_WINS else Role.CHALLENGER
        total = sum(self.bonds.values())
        return {winner: total, winner.other: 0}

    def _require_open(self) -> None:
        if self.outcome != Outcome.IN_PROGRESS:
            raise GameError("the game is over")

    def _finish(self, winner: Role, reason: str) -> None:
        self.outcome = Outcome.CLAIMANT_WINS if winner == Role.CLAIMANT else Outcome.CHALLENGER_WINS
        self.phase = Phase.RESOLVED
        self.reason = reason

    # -------------------------------------------------------------------------- moves

    def play(self, role: Role, mv: Move, now: int) -> None:
        """Apply ``role``'s move at time ``now``; raises GameError (and changes nothing) if invalid."""
        self._require_open()
        if role != self.mover:
            raise GameError(f"it is the {self.mover.name.lower()}'s turn")
        if now < self.now:
            raise GameError("time runs forward")
        if now > self.deadline():
            raise GameError("the mover's clock has run out")
        b = self.bisection
        assert b is not None
        # INVARIANT: a move answers the last claim, and only the root may not be defended.
        if mv.parent != b.last:
            raise GameError(f"a move must answer the last claim (position {b.last}), not {mv.parent}")
        if not mv.is_attack and b.last == 1:
            raise GameError("the root claim of a phase can only be attacked")
        at_leaf = P.depth(b.last) == b.max_depth
        if isinstance(mv, Bisect):
            if at_leaf or self.phase not in (Phase.NODES, Phase.STEPS):
                raise GameError("a bisection move needs a claim above the maximum depth")
            if len(mv.claim) != 32:
                raise GameError("a claim is 32 bytes")
        elif isinstance(mv, OpenSteps):
            if not at_leaf or self.phase != Phase.NODES:
                raise GameError("phase 2 opens only when the last phase-1 claim is at the maximum depth")
        elif isinstance(mv, Step):
            if not at_leaf or self.phase != Phase.STEPS:
                raise GameError("a step needs the last phase-2 claim at the maximum depth")
        else:
            raise GameError(f"unknown move {type(mv).__name__}")
        # an attack disputes the last claim (it becomes hi); a defense agrees with it (it becomes lo)
        if mv.is_attack:
            lo, hi, hi_owner = b.lo_hash, b.last_hash, b.last_owner
        else:
            lo, hi, hi_owner = b.last_hash, b.hi_hash, b.hi_owner
        interval = b.last if mv.is_attack else b.last | 1
        if isinstance(mv, OpenSteps):
            self._open_steps(role, mv, P.index_at_depth(interval), lo, hi, hi_owner)
        elif isinstance(mv, Step):
            self._step(mv, P.index_at_depth(interval), lo, hi, hi_owner)
        # the move is valid: charge the clock, take the bond, update the bisection
        self.clock_used[role] += now - self.turn_started
        self.now = self.turn_started = now
        self.moves += 1
        self.bonds[role] += self.rules.bond(self.moves)
        self.log.append(MoveRecord(self.moves, role, type(mv).__name__, P.move(b.last, mv.is_attack)
                                   if isinstance(mv, Bisect) else interval, self.phase, now, self.reason))
        if isinstance(mv, Bisect):
            b.lo_hash, b.hi_hash, b.hi_owner = lo, hi, hi_owner
            b.last, b.last_hash, b.last_owner = P.move(b.last, mv.is_attack), mv.claim, role
        self.mover = role.other

    def _open_steps(self, role: Role, mv: OpenSteps, k: int, lo: bytes, hi: bytes, hi_owner: Role) -> None:
        bundle, n = self.bundle, len(self.bundle.nodes)
        if k >= n:
            # past the last node the trace is padded with the final state: hi must equal lo
            self.node_index = k
            self._finish(hi_owner if hi == lo else hi_owner.other, f"padding leaf {k}: the disputed state "
                         + ("equals" if hi == lo else "differs from") + " the agreed one")
            return
        node = bundle.nodes[k]
        try:
            # INVARIANT: the agreed pre-state is opened to its tensor table.
            if p1.state_hash(bundle.address, k, mv.pre_tensors_root) != lo:
                raise GameError("pre_tensors_root does not hash to the agreed phase-1 state")
            # INVARIANT: the start state's inputs are the agreed tensors (proven in the agreed table).
            dyn = [t for t in node.inputs if not bundle.tensors[t].is_const]
            if len(mv.input_roots) != len(dyn) or len(mv.input_proofs) != len(dyn):
                raise GameError(f"node {k} has {len(dyn)} non-constant inputs")
            for t, r, pr in zip(dyn, mv.input_roots, mv.input_proofs, strict=True):
                p1.check_leaf(bundle, mv.pre_tensors_root, t, r, pr)
            # INVARIANT: the mover's post-state follows from the agreed table and its output roots;
            # it equals the disputed claim iff the mover owns that claim.
            post_root = p1.apply_node_outputs(bundle, k, mv.pre_tensors_root, mv.output_roots, mv.output_proofs)
            post = p1.state_hash(bundle.address, k + 1, post_root)
            if (post == hi) != (role == hi_owner):
                raise GameError("the mover's node outputs " + ("do not give" if role == hi_owner else "give")
                                + " the disputed phase-1 state")
            # INVARIANT: the mover's final VM state is HALTED and holds those output roots.
            roots = self.backend.final_output_roots(bundle, k, self.claim.batch, mv.final_state, mv.final_proof)
            if list(roots) != list(mv.output_roots):
                raise GameError("the final VM state's output roots differ from the mover's node outputs")
            start = self.backend.start_state_hash(bundle, k, self.claim.batch, list(mv.input_roots))
            steps = self.backend.node_steps(bundle, k, self.claim.batch)
            final_hash = _keccak(mv.final_state)
        except GameError:
            raise
        except (FraudVMError, ValueError, TypeError, IndexError, KeyError) as e:  # a malformed opening
            raise GameError(f"phase 2 cannot open: {e}") from None
        self.node_index = k
        self.phase = Phase.STEPS
        depth = max(0, (steps - 1).bit_length())
        self.bisection = Bisection(depth, steps, start, final_hash, role, 1, final_hash, role)

    def _step(self, mv: Step, j: int, lo: bytes, hi: bytes, hi_owner: Role) -> None:
        b = self.bisection
        assert b is not None
        if j >= b.length:
            post = lo  # a HALTED VM does not change: the trace is padded with the final state
        else:
            try:
                # INVARIANT: the one-step check uses only the agreed pre-state hash and the witness.
                post = self.backend.verify_step(lo, mv.witness)
            except (FraudVMError, ValueError, TypeError, IndexError, KeyError, ArithmeticError) as e:
                raise GameError(f"the step witness does not verify: {e}") from None
            self.final_witness_bytes = self.backend.witness_size(mv.witness)
        self.pinned_step = j
        self._finish(hi_owner if post == hi else hi_owner.other,
                     f"step {j} of node {self.node_index}: the disputed post-state is "
                     + ("right" if post == hi else "wrong"))


def _keccak(data: bytes) -> bytes:
    from opml.merkle import keccak

    if not isinstance(data, bytes | bytearray):
        raise GameError("a final VM state is its byte encoding")
    return keccak(bytes(data))


def open_game(bundle: Bundle, claim: p1.Claim, backend: VMBackend, rules: Rules | None = None,
              now: int = 0) -> Game:
    """Start a game on a claim (checks its links; the claimant's bond is taken).

    The challenger moves first: it must attack the root claim (the claimant's final phase-1 state).
    """
    try:
        start = p1.check_claim(bundle, claim)
    except p1.Phase1Error as e:
        raise GameError(f"invalid claim: {e}") from None
    r = rules or Rules()
    n = len(bundle.nodes)
    depth = max(0, (n - 1).bit_length())
    g = Game(bundle, claim, r, backend, now=now, turn_started=now)
    g.bonds[Role.CLAIMANT] = r.bond(0)
    g.bisection = Bisection(depth, n, start, claim.final_state, Role.CLAIMANT, 1, claim.final_state, Role.CLAIMANT)
    return g
