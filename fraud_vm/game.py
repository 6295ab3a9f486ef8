"""The off-chain referee of the two-phase dispute game (``docs/dispute_game.md`` is the spec).

A claimant claims ``(model address, input hash) -> output hash`` with a bond; a challenger disputes
it. Phase 1 bisects over the phase-1 states (``fraud_vm.phase1``) until one graph node ``k`` is
left whose pre-state both agree on and whose post-state they dispute; phase 2 bisects over the VM
steps of node ``k``, whose start state the referee derives itself from the agreed phase-1 state
and descriptors proven against the model address; the referee then executes the single disputed
step from its witness. Every move answers the last claim with an attack or a defense
(``fraud_vm.position.move``), has a deadline (chess clock, topped up to ``clock_extension_s`` when a
move leaves the responder less) and posts a bond that grows geometrically with the move number; the
loser's bonds go to the winner.

The referee sees exactly what an L1 contract sees: the model address, the graph header proven
against it (``opml.commitment.HeaderProof``), and in ``OpenSteps`` the node's and its tensors'
descriptors with their Merkle proofs (``NodeProof`` / ``TensorProof``); never a ``Bundle``. Every
rejected move raises a named error (``fraud_vm.errors``) and changes nothing. This module is the
rule book: the Solidity game implements the same state machine, checks and errors, in this order.
Several challengers on one claim are handled by ``fraud_vm.registry``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from opml.commitment import (
    GraphHeader,
    HeaderProof,
    NodeProof,
    TensorProof,
    node_words_ok,
    verify_header,
    verify_node,
    verify_tensor,
)
from opml.merkle import keccak

from . import phase1 as p1
from . import position as P
from .context import NodeContext
from .errors import (
    CannotDefendRoot,
    ClockExpired,
    ClockNotExpired,
    ContextHashMismatch,
    FinalStateMismatch,
    FraudVMError,
    GameError,
    GameNotOver,
    GameOver,
    IncorrectBond,
    InputCountMismatch,
    InvalidDescriptorProof,
    MalformedContext,
    MalformedMove,
    NotYourTurn,
    OutputsContradictClaim,
    ParentNotLast,
    PreTensorsMismatch,
    TimeNotMonotonic,
    WrongMoveKind,
    is_named,
)
from .tensors import region_root

__all__ = [
    "Bisect", "Bisection", "Game", "GameError", "Move", "MoveRecord", "OpenSteps", "Outcome", "Phase", "Role",
    "Rules", "Step", "VMBackend", "node_context", "open_game",
]


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
    """Game parameters (``docs/dispute_game.md`` §5).

    ``clock_s``: each player's chess clock for the whole game; ``clock_extension_s``: a move that
    leaves the responder less than this tops the responder's clock up to it; ``challenge_window_s``:
    how long after a claim new challenges may open (``fraud_vm.registry``); bonds: ``bond(0) =
    claim_bond`` and ``bond(m) = bond(m - 1) * bond_growth_num // bond_growth_den``.
    """

    clock_s: int = 3 * 24 * 3600
    clock_extension_s: int = 3 * 3600
    challenge_window_s: int = 7 * 24 * 3600
    claim_bond: int = 10**18
    bond_growth_num: int = 11
    bond_growth_den: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.clock_extension_s <= self.clock_s or self.challenge_window_s < 0:
            raise ValueError("rules need 0 <= clock_extension_s <= clock_s and challenge_window_s >= 0")
        if self.claim_bond < 0 or not 0 < self.bond_growth_den <= self.bond_growth_num:
            raise ValueError("rules need claim_bond >= 0 and 0 < bond_growth_den <= bond_growth_num")

    def bond(self, move_number: int) -> int:
        """Bond of the ``move_number``-th move (the claim is move 0): geometric growth, floored per move.

        ``bond(0) = claim_bond``, ``bond(m) = bond(m - 1) * num // den``: integer arithmetic a contract
        repeats in a loop of ``m`` iterations (``m`` <= 2 x 126 + 2).
        """
        if not 0 <= move_number <= 2 * P.MAX_DEPTH + 2:
            raise ValueError(f"move number {move_number} is outside 0..{2 * P.MAX_DEPTH + 2}")
        b = self.claim_bond
        for _ in range(move_number):
            b = b * self.bond_growth_num // self.bond_growth_den
        return b


class VMBackend(Protocol):
    """What the referee needs from the fraud VM (``fraud_vm.trace`` / ``fraud_vm.vm``), per node context."""

    def num_steps(self, context: NodeContext) -> int:
        """Number of instructions of the context's program (>= 1)."""

    def start_state_hash(self, context: NodeContext, input_roots: Sequence[bytes]) -> bytes:
        """Hash of the derived start state; ``input_roots`` of every node input (constants included)."""

    def final_output_root(self, context: NodeContext, final_state: bytes, proof: Any) -> bytes:
        """The output root held by a HALTED end state of the context's run (raises a named error if not)."""

    def witness_context_hash(self, witness: Any) -> bytes:
        """keccak256 of the node context a step witness carries."""

    def verify_step(self, pre_state_hash: bytes, witness: Any) -> bytes:
        """One instruction from its witness; returns the post-state hash (raises a named error if invalid)."""

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

    ``node_proof``: node ``k``'s descriptor words proven against the model address;
    ``tensor_proofs``: the descriptor (and data root) of each of its inputs, in input order, then of
    its output, each proven against the address. ``pre_tensors_root``: the agreed ``state_k``'s
    tensor table; ``input_roots``/``input_proofs``: node ``k``'s non-constant inputs in that table;
    ``output_roots``/``output_proofs``: its outputs as the mover computes them (their paths in the
    table, zero before); ``final_state`` (an encoded HALTED VM state) and ``final_proof``: the
    mover's end of node ``k``'s execution. For a leaf past the last node (padding) only
    ``parent``/``is_attack`` are read.
    """

    parent: int
    is_attack: bool
    node_proof: NodeProof | None = None
    tensor_proofs: tuple[TensorProof, ...] = ()
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
    """One accepted move, for the game log."""

    number: int
    role: Role
    kind: str
    position: int
    phase: Phase
    time: int
    note: str = ""


class ClockedGame:
    """The clocks and bonds every dispute game shares (this inference game, ``ai_evm.fraudproof``'s EVM game):
    chess clocks (``deadline``, ``claim_timeout``) and winner-takes-all bonds. The game class provides the
    state these read (``turn_started``, ``rules``, ``clock_used``, ``mover``, ``outcome``, ``bonds``, ``now``)
    and ``_finish``."""

    turn_started: int
    rules: Rules
    clock_used: dict[Role, int]
    mover: Role
    outcome: Outcome
    bonds: dict[Role, int]
    now: int

    def _finish(self, winner: Role, reason: str) -> None:
        raise NotImplementedError

    def deadline(self) -> int:
        """Time by which the player to move must move."""
        return self.turn_started + self.rules.clock_s - self.clock_used[self.mover]

    def claim_timeout(self, now: int) -> None:
        """Anyone may end the game once the mover's clock ran out: the mover loses."""
        self._require_open()
        if now < self.deadline():
            raise ClockNotExpired(f"the {self.mover.name.lower()} still has time until {self.deadline()}")
        self.now = now
        self._finish(self.mover.other, f"{self.mover.name.lower()} ran out of time")

    @property
    def winner(self) -> Role | None:
        return {Outcome.CLAIMANT_WINS: Role.CLAIMANT, Outcome.CHALLENGER_WINS: Role.CHALLENGER}.get(self.outcome)

    def payouts(self) -> dict[Role, int]:
        """What each player is paid once the game is over: the winner takes every bond of the game."""
        winner = self.winner
        if winner is None:
            raise GameNotOver("the game is not over")
        return {winner: sum(self.bonds.values()), winner.other: 0}

    def _require_open(self) -> None:
        if self.outcome != Outcome.IN_PROGRESS:
            raise GameOver("the game is over")


@dataclass
class Game(ClockedGame):
    """A game in progress: the claim, the current phase and bisection, clocks and bonds.

    ``header`` is the graph header proven against ``model_address`` at the opening; phase 2 keeps
    only ``node_index``, ``context_hash`` and ``num_steps`` of node ``k`` (the contract's two slots).
    ``stake_claim_bond``: the claim's bond is part of this game's pot (a lone game); a registry game
    leaves it with the registry (``fraud_vm.registry``). ``on_resolved`` is called once when the
    game ends (the registry's hook).
    """

    model_address: bytes
    header: GraphHeader
    claim: p1.Claim
    rules: Rules
    backend: VMBackend
    phase: Phase = Phase.NODES
    outcome: Outcome = Outcome.IN_PROGRESS
    bisection: Bisection | None = None
    node_index: int = -1
    context_hash: bytes = b""
    num_steps: int = 0
    pinned_step: int = -1
    mover: Role = Role.CHALLENGER
    now: int = 0
    turn_started: int = 0
    resolved_at: int = -1
    clock_used: dict[Role, int] = field(default_factory=lambda: {Role.CLAIMANT: 0, Role.CHALLENGER: 0})
    bonds: dict[Role, int] = field(default_factory=lambda: {Role.CLAIMANT: 0, Role.CHALLENGER: 0})
    moves: int = 0
    log: list[MoveRecord] = field(default_factory=list)
    final_witness_bytes: int = 0
    reason: str = ""
    stake_claim_bond: bool = True
    on_resolved: Callable[[Game], None] | None = None

    # -------------------------------------------------------------------------- clock and bonds

    def _finish(self, winner: Role, reason: str) -> None:
        self.outcome = Outcome.CLAIMANT_WINS if winner == Role.CLAIMANT else Outcome.CHALLENGER_WINS
        self.phase = Phase.RESOLVED
        self.reason = reason
        self.resolved_at = self.now
        if self.on_resolved is not None:
            self.on_resolved(self)

    # -------------------------------------------------------------------------- moves

    def play(self, role: Role, mv: Move, now: int, bond: int | None = None) -> None:
        """Apply ``role``'s move at time ``now`` with ``bond`` (None: the required one).

        Raises a named error (``fraud_vm.errors``) and changes nothing if the move is invalid.
        """
        self._require_open()
        # INVARIANT: only the player to move moves, time runs forward, and not past its deadline.
        if role != self.mover:
            raise NotYourTurn(f"it is the {self.mover.name.lower()}'s turn")
        if now < self.now:
            raise TimeNotMonotonic(f"time {now} is before the last move's {self.now}")
        if now > self.deadline():
            raise ClockExpired(f"the deadline was {self.deadline()}")
        if not isinstance(mv, Bisect | OpenSteps | Step):
            raise MalformedMove(f"unknown move {type(mv).__name__}")
        required = self.rules.bond(self.moves + 1)
        if bond is not None and bond != required:
            raise IncorrectBond(f"move {self.moves + 1} needs a bond of {required}, got {bond}")
        b = self.bisection
        assert b is not None
        # INVARIANT: a move answers the last claim, and only the root may not be defended.
        if mv.parent != b.last:
            raise ParentNotLast(f"a move must answer the last claim (position {b.last}), not {mv.parent}")
        if not mv.is_attack and b.last == 1:
            raise CannotDefendRoot("the root claim of a phase can only be attacked")
        # INVARIANT: the move's kind fits the position.
        at_leaf = P.depth(b.last) == b.max_depth
        if isinstance(mv, Bisect):
            if at_leaf:
                raise WrongMoveKind("a bisection move needs a claim above the maximum depth")
            if not isinstance(mv.claim, bytes) or len(mv.claim) != 32:
                raise MalformedMove("a claim is 32 bytes")
        elif isinstance(mv, OpenSteps):
            if not at_leaf or self.phase != Phase.NODES:
                raise WrongMoveKind("phase 2 opens only when the last phase-1 claim is at the maximum depth")
        elif not at_leaf or self.phase != Phase.STEPS:
            raise WrongMoveKind("a step needs the last phase-2 claim at the maximum depth")
        # an attack disputes the last claim (it becomes hi); a defense agrees with it (it becomes lo)
        if mv.is_attack:
            lo, hi, hi_owner = b.lo_hash, b.last_hash, b.last_owner
        else:
            lo, hi, hi_owner = b.last_hash, b.hi_hash, b.hi_owner
        interval = b.last if mv.is_attack else b.last | 1
        # the resolutions check everything before changing anything; a check that fails raises
        opened: tuple[Bisection, int, bytes, int] | None = None
        verdict: tuple[Role, str] | None = None
        if isinstance(mv, OpenSteps):
            k = P.index_at_depth(interval)
            if k >= self.header.n_nodes:
                # past the last node the trace is padded with the final state: hi must equal lo
                verdict = (hi_owner if hi == lo else hi_owner.other, f"padding leaf {k}: the disputed state "
                           + ("equals" if hi == lo else "differs from") + " the agreed one")
            else:
                opened = self._open_steps(role, mv, k, lo, hi, hi_owner)
        elif isinstance(mv, Step):
            verdict = self._step(mv, P.index_at_depth(interval), lo, hi, hi_owner)
        # the move is valid: charge the clock, take the bond, update the bisection
        self.clock_used[role] += now - self.turn_started
        self.now = self.turn_started = now
        # INVARIANT: the responder has at least clock_extension_s to answer (clock extension).
        left = self.rules.clock_s - self.clock_used[role.other]
        if left < self.rules.clock_extension_s:
            self.clock_used[role.other] = self.rules.clock_s - self.rules.clock_extension_s
        self.moves += 1
        self.bonds[role] += required
        position = P.move(b.last, mv.is_attack) if isinstance(mv, Bisect) else interval
        self.log.append(MoveRecord(self.moves, role, type(mv).__name__, position, self.phase, now))
        self.mover = role.other
        if isinstance(mv, Bisect):
            b.lo_hash, b.hi_hash, b.hi_owner = lo, hi, hi_owner
            b.last, b.last_hash, b.last_owner = P.move(b.last, mv.is_attack), mv.claim, role
        elif opened is not None:
            self.bisection, self.node_index, self.context_hash, self.num_steps = opened
            self.phase = Phase.STEPS
        else:
            assert verdict is not None
            if isinstance(mv, OpenSteps):
                self.node_index = P.index_at_depth(interval)
            self._finish(*verdict)

    def _open_steps(self, role: Role, mv: OpenSteps, k: int, lo: bytes, hi: bytes,
                    hi_owner: Role) -> tuple[Bisection, int, bytes, int]:
        """Check an ``OpenSteps`` on node ``k``; return phase 2's bisection, ``k``, context hash, steps."""
        address, header = self.model_address, self.header
        # INVARIANT: the node's and its tensors' descriptors are proven against the model address.
        ctx, const_roots = node_context(address, k, self.claim.batch, mv.node_proof, mv.tensor_proofs)
        n_in = len(ctx.descs) - 1  # node_context checked: one output, one descriptor per tensor id
        # INVARIANT: the agreed pre-state is opened to its tensor table.
        if not isinstance(mv.pre_tensors_root, bytes) or len(mv.pre_tensors_root) != 32:
            raise MalformedMove("pre_tensors_root is 32 bytes")
        if p1.state_hash(address, k, mv.pre_tensors_root) != lo:
            raise PreTensorsMismatch("pre_tensors_root does not hash to the agreed phase-1 state")
        # INVARIANT: the start state's inputs are the agreed tensors (proven in the agreed table).
        ids = _node_tensor_ids(mv.node_proof)
        dyn = [t for i, t in enumerate(ids[:n_in]) if const_roots[i] is None]
        if len(mv.input_roots) != len(dyn) or len(mv.input_proofs) != len(dyn):
            raise InputCountMismatch(f"node {k} has {len(dyn)} non-constant inputs")
        for t, r, pr in zip(dyn, mv.input_roots, mv.input_proofs, strict=True):
            p1.check_leaf(header, mv.pre_tensors_root, t, r, pr)
        # INVARIANT: the mover's post-state follows from the agreed table and its output roots;
        # it equals the disputed claim iff the mover owns that claim.
        post_root = p1.apply_outputs(header, mv.pre_tensors_root, ids[n_in:], mv.output_roots, mv.output_proofs)
        post = p1.state_hash(address, k + 1, post_root)
        if (post == hi) != (role == hi_owner):
            raise OutputsContradictClaim("the mover's node outputs " + ("do not give" if role == hi_owner else "give")
                                         + " the disputed phase-1 state")
        # INVARIANT: the mover's final VM state is HALTED and holds those output roots.
        if not isinstance(mv.final_state, bytes):
            raise MalformedMove("a final VM state is its byte encoding")
        if self.backend.final_output_root(ctx, mv.final_state, mv.final_proof) != mv.output_roots[0]:
            raise FinalStateMismatch("the final VM state's output root differs from the mover's node output")
        # SAFETY: the phase-2 start state and length are derived here from proven data, never taken
        # from a player: constants' roots from their proven descriptors, activations from the table.
        dyn_roots = iter(mv.input_roots)
        roots = [r if r is not None else next(dyn_roots) for r in const_roots[:n_in]]
        start = self.backend.start_state_hash(ctx, roots)
        steps = self.backend.num_steps(ctx)
        final_hash = keccak(mv.final_state)
        depth = max(0, (steps - 1).bit_length())
        return Bisection(depth, steps, start, final_hash, role, 1, final_hash, role), k, ctx.hash, steps

    def _step(self, mv: Step, j: int, lo: bytes, hi: bytes, hi_owner: Role) -> tuple[Role, str]:
        """Check a ``Step`` on leaf ``j``; return the winner and the reason."""
        if j >= self.num_steps:
            post = lo  # a HALTED VM does not change: the trace is padded with the final state
        else:
            # INVARIANT: the witness is about node k's context (a cheap early reject), and the
            # one-step check uses only the agreed pre-state hash and the witness.
            try:
                ctx_hash = self.backend.witness_context_hash(mv.witness)
            except (AttributeError, TypeError):
                raise MalformedMove("a step needs a step witness") from None
            if ctx_hash != self.context_hash:
                raise ContextHashMismatch("the witness's context is not the disputed node's")
            post = self.backend.verify_step(lo, mv.witness)
            self.final_witness_bytes = self.backend.witness_size(mv.witness)
        self.pinned_step = j
        verdict = "right" if post == hi else "wrong"
        return (hi_owner if post == hi else hi_owner.other,
                f"step {j} of node {self.node_index}: the disputed post-state is {verdict}")


def _node_tensor_ids(proof: NodeProof | None) -> list[int]:
    """The tensor ids a (checked) node descriptor names: its inputs, then its outputs."""
    assert proof is not None
    w = proof.node_words
    n_in = w[1]
    n_out = w[2 + n_in]
    return [*w[2 : 2 + n_in], *w[3 + n_in : 3 + n_in + n_out]]


def node_context(address: bytes, k: int, batch: int, node_proof: NodeProof | None,
                 tensor_proofs: Sequence[TensorProof]) -> tuple[NodeContext, list[bytes | None]]:
    """Node ``k``'s context rebuilt from descriptors proven against ``address``.

    Returns the context and, per tensor of the node (inputs, then output), the constant's
    ``commit_tensor`` root from its proven descriptor and data root, or None for an activation.
    Raises InvalidDescriptorProof if a proof does not verify, InputCountMismatch if the number of
    tensor proofs is not the node's tensor count.
    """
    if not isinstance(node_proof, NodeProof) or not isinstance(node_proof.node_words, tuple):
        raise MalformedMove("OpenSteps needs the node's descriptor proof")
    words = node_proof.node_words
    if node_proof.node_index != k or not node_words_ok(words) or not verify_node(address, k, words, node_proof):
        raise InvalidDescriptorProof(f"node {k}'s descriptor is not proven against the model address")
    ids = _node_tensor_ids(node_proof)
    if words[2 + words[1]] != 1:
        raise MalformedContext(f"node {k} has {words[2 + words[1]]} outputs; the VM runs single-output nodes")
    if len(tensor_proofs) != len(ids):
        raise InputCountMismatch(f"node {k} names {len(ids)} tensors, got {len(tensor_proofs)} descriptor proofs")
    for t, tp in zip(ids, tensor_proofs, strict=True):
        if not isinstance(tp, TensorProof) or not verify_tensor(address, t, tp):
            raise InvalidDescriptorProof(f"tensor {t}'s descriptor is not proven against the model address")
    ctx = NodeContext(address, k, batch, tuple(words), tuple(tuple(tp.tensor_desc) for tp in tensor_proofs))
    try:
        infos = ctx.tensors
    except FraudVMError as e:  # a proven but unusable descriptor (unknown dtype...)
        raise e if is_named(e) else MalformedContext(str(e)) from None
    roots: list[bytes | None] = []
    for info, tp in zip(infos, tensor_proofs, strict=True):
        roots.append(region_root(info.region.header, tp.data_root) if info.is_const else None)
    return ctx, roots


def open_game(model_address: bytes, header_proof: HeaderProof, claim: p1.Claim, backend: VMBackend,
              rules: Rules | None = None, now: int = 0, *, stake_claim_bond: bool = True,
              on_resolved: Callable[[Game], None] | None = None) -> Game:
    """Start a game on a claim: check the graph header against the address and the claim's links.

    The claimant's bond ``bond(0)`` is part of the game's pot when ``stake_claim_bond`` (a lone game).
    The challenger moves first: it must attack the root claim (the claimant's final phase-1 state).
    Raises InvalidDescriptorProof (header) or InvalidClaim.
    """
    if not isinstance(header_proof, HeaderProof):
        raise MalformedMove("open_game needs the graph header's proof")
    header = verify_header(model_address, header_proof)
    if header is None:
        raise InvalidDescriptorProof("the graph header is not proven against the model address")
    start = p1.check_claim(model_address, header, claim)
    r = rules or Rules()
    n = header.n_nodes
    depth = max(0, (n - 1).bit_length())
    g = Game(model_address, header, claim, r, backend, now=now, turn_started=now,
             stake_claim_bond=stake_claim_bond, on_resolved=on_resolved)
    if stake_claim_bond:
        g.bonds[Role.CLAIMANT] = r.bond(0)
    g.bisection = Bisection(depth, n, start, claim.final_state, Role.CLAIMANT, 1, claim.final_state, Role.CLAIMANT)
    return g

