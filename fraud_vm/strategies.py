"""Players of the dispute game: the honest strategy, the dishonest ones, and the game driver.

Every player holds a *belief*: a phase-1 trace (the roots of the tensors it says the inference
produces) and, once phase 2 opens on node ``k``, a VM trace of node ``k``. It answers each claim by
attacking it when it differs from its belief and defending it otherwise, and posts its belief at the
new position. The honest player's belief is the engine's inference and the fraud VM's trace; the
dishonest players corrupt it (``Lie``): a wrong graph output, a wrong output of node ``k`` with
every later node computed from it, garbage intermediate commitments, a VM trace that goes wrong at a
chosen step, or no moves at all. :func:`play_game` referees a game between two players.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from opml.bundle import Bundle
from opml.commitment import prove_header, prove_node, prove_tensor
from opml.engine import get_plan
from opml.merkle import keccak

from . import phase1 as p1
from . import position as P
from .context import NodeContext
from .errors import FinalStateMismatch, FraudVMError, GameError, MalformedMove
from .game import Bisect, Game, Move, OpenSteps, Outcome, Phase, Role, Rules, Step, VMBackend, open_game


class NodeTraceLike(Protocol):
    """What a player needs of one node's VM trace (``fraud_vm.trace.NodeTrace`` via the backend)."""

    num_steps: int

    def state_hash_at(self, k: int) -> bytes: ...

    def witness_at(self, k: int) -> Any: ...


class PlayerBackend(VMBackend, Protocol):
    """The referee's backend plus what players need: tensor commitments and node traces."""

    def commit_tensor(self, array: np.ndarray, dtype_code: int) -> bytes: ...

    def node_steps(self, bundle: Bundle, node_index: int, batch: int) -> int:
        """Number of steps of a node's program (a player reads it from its own bundle)."""

    def node_trace(self, bundle: Bundle, node_index: int, env: dict[int, np.ndarray],
                   roots: Mapping[int, bytes] | None = None, env_has_output: bool = False) -> NodeTraceLike:
        """The VM trace of a node; ``roots`` (non-constant tensor roots by id) and the output in
        ``env`` (when ``env_has_output``) may be reused instead of being computed again."""

    def final_opening(self, trace: NodeTraceLike) -> tuple[bytes, Any]:
        """The encoded final (HALTED) state of a trace and the proof of its output roots."""

    def forge_final(self, trace: NodeTraceLike, outputs: Sequence[np.ndarray]) -> tuple[bytes, Any]:
        """A HALTED state of ``trace``'s node claiming ``outputs`` instead (what a liar posts), and its proof."""


@dataclass(frozen=True)
class Lie:
    """How a dishonest player departs from the truth (``kind`` names the strategy).

    ``honest``; ``output`` (wrong graph output); ``node`` (wrong output of ``node``, later nodes
    consistent with it); ``intermediate`` (like ``node``, plus garbage phase-1 states between);
    ``step`` (like ``node``, with the VM trace of that node going wrong after step ``step``);
    ``timeout`` (never moves after the claim/challenge).
    """

    kind: str = "honest"
    node: int = -1
    step: int = -1

    def __post_init__(self) -> None:
        if self.kind not in ("honest", "output", "node", "intermediate", "step", "timeout"):
            raise ValueError(f"unknown lie {self.kind!r}")


def corrupt(a: np.ndarray) -> np.ndarray:
    """A deterministic, different value of the same dtype and shape (one element changed)."""
    out = np.array(a, copy=True, order="C")  # engine outputs may be F-ordered: reshape must be a view
    flat = out.reshape(-1)
    if flat.size == 0:
        raise ValueError("an empty tensor cannot be corrupted")
    if flat.dtype.kind == "f":
        flat[0] = flat[0] + np.float32(1.0) if np.isfinite(flat[0]) else np.float32(0.0)
    elif flat.dtype.kind == "b":
        flat[0] = not flat[0]
    else:
        flat.view(np.uint8)[0] ^= 1
    return out


def rerun_from(bundle: Bundle, env: dict[int, np.ndarray], start: int) -> dict[int, np.ndarray]:
    """Recompute the outputs of nodes ``start..n-1`` from ``env`` (consistent after a corruption)."""
    plan = get_plan(bundle)
    out = dict(env)
    for node, kernel in list(zip(bundle.nodes, plan.kernels, strict=True))[start:]:
        out[node.outputs[0]] = kernel([out[i] if i in out else bundle.tensors[i].array() for i in node.inputs])
    return out


class LyingTrace:
    """A node trace that follows the honest one up to step ``good_until`` and then lies.

    States after ``good_until`` are garbage hashes; the final state is a forged HALTED state with
    the liar's output roots. The first wrong step is ``good_until`` (pre honest, post wrong).
    """

    def __init__(self, honest: NodeTraceLike, good_until: int, final_hash: bytes) -> None:
        self.honest, self.good_until, self.final_hash = honest, good_until, final_hash
        self.num_steps = honest.num_steps

    def state_hash_at(self, k: int) -> bytes:
        if k <= self.good_until:
            return self.honest.state_hash_at(k)
        if k >= self.num_steps:
            return self.final_hash
        return keccak(b"lie" + self.honest.state_hash_at(k))

    def witness_at(self, k: int) -> Any:
        return self.honest.witness_at(k)


class Player:
    """One player: a belief (honest or corrupted by ``lie``) and the moves it implies."""

    def __init__(self, bundle: Bundle, inputs: Sequence[np.ndarray], backend: PlayerBackend, lie: Lie = Lie(),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        """``clock`` times this player's own work (``seconds``): wall time by default."""
        self.clock = clock
        t0 = clock()
        self.bundle, self.backend, self.lie = bundle, backend, lie
        self.batch = _batch_of(bundle, inputs)
        self.honest_env = p1.intermediate_tensors(bundle, inputs)
        env = dict(self.honest_env)
        n = len(bundle.nodes)
        if lie.kind == "output":
            k = max(j for j, nd in enumerate(bundle.nodes) if set(nd.outputs) & set(bundle.outputs))
            env[bundle.nodes[k].outputs[0]] = corrupt(env[bundle.nodes[k].outputs[0]])
            self.lie_node = k
        elif lie.kind in ("node", "intermediate", "step", "timeout"):
            k = lie.node % n
            env[bundle.nodes[k].outputs[0]] = corrupt(env[bundle.nodes[k].outputs[0]])
            env = rerun_from(bundle, env, k + 1)
            self.lie_node = k
        else:
            self.lie_node = -1
        self.env = env
        roots = p1.commit_env(bundle, env, backend.commit_tensor)
        self.trace = p1.build_phase1(bundle, roots)
        self.garbage: set[int] = set()
        if lie.kind == "intermediate":
            self.garbage = set(range(1, n))  # every intermediate state is made up
        self.node_traces: dict[int, NodeTraceLike] = {}
        self.seconds = clock() - t0

    # -------------------------------------------------------------------------- beliefs

    def phase1_state(self, i: int) -> bytes:
        if i in self.garbage:
            return keccak(b"garbage" + i.to_bytes(32, "big"))
        return self.trace.state(i)

    def node_trace(self, k: int) -> NodeTraceLike:
        """This player's VM trace of node ``k`` (a lying one on its lie node).

        The player's own engine pass and phase-1 roots are reused (its inputs to node ``k`` are its
        belief); on its lie node the trace's output is the kernel's, computed afresh.
        """
        if k not in self.node_traces:
            honest = self.backend.node_trace(self.bundle, k, self.env, self.trace.roots, k != self.lie_node)
            if k == self.lie_node:
                final, _ = self.backend.forge_final(honest, [self.env[t] for t in self.bundle.nodes[k].outputs])
                good = self.lie.step if self.lie.kind == "step" else honest.num_steps - 1
                good = min(max(good, 0), honest.num_steps - 1)
                self.node_traces[k] = LyingTrace(honest, good, keccak(final))
            else:
                self.node_traces[k] = honest
        return self.node_traces[k]

    def believes(self, game: Game, index: int) -> bytes:
        """The state this player believes at trace index ``index`` of the current phase."""
        if game.phase == Phase.NODES:
            return self.phase1_state(index)
        return self.node_trace(game.node_index).state_hash_at(min(index, game.bisection.length))  # type: ignore[union-attr]

    # -------------------------------------------------------------------------- moves

    def make_claim(self) -> p1.Claim:
        return p1.make_claim(self.trace, self.batch)

    def disputes(self, claim: p1.Claim) -> bool:
        """Whether this player challenges ``claim`` (the honest one: iff its output is wrong)."""
        if self.lie.kind != "honest":
            return True
        return claim.output_hash != p1.io_hash(self.trace.output_roots()) or claim.final_state != self.trace.state(
            len(self.bundle.nodes))

    def respond(self, game: Game) -> Move | None:
        """This player's move in ``game`` (None: it does not move)."""
        t0 = self.clock()
        try:
            if self.lie.kind == "timeout":
                return None
            return self._respond(game)
        finally:
            self.seconds += self.clock() - t0

    def _respond(self, game: Game) -> Move | None:
        b = game.bisection
        assert b is not None
        c, d = b.last, b.max_depth
        agree = c != 1 and b.last_hash == self.believes(game, P.trace_index(c, d) + 1)
        is_attack = not agree
        if P.depth(c) < d:
            pos = P.move(c, is_attack)
            return Bisect(c, is_attack, self.believes(game, P.trace_index(pos, d) + 1))
        idx = P.index_at_depth(c if is_attack else c | 1)
        if game.phase == Phase.STEPS:
            return Step(c, is_attack, None if idx >= b.length else self.node_trace(game.node_index).witness_at(idx))
        return self._open_steps(c, is_attack, idx)

    def _open_steps(self, c: int, is_attack: bool, k: int) -> OpenSteps | None:
        bundle, tr = self.bundle, self.trace
        if k >= len(bundle.nodes):
            return OpenSteps(c, is_attack)
        if k in self.garbage:
            return None  # it cannot open a state it made up
        node = bundle.nodes[k]
        dyn = [t for t in node.inputs if not bundle.tensors[t].is_const]
        in_proofs, out_proofs = tr.table_paths(k, dyn, node.outputs)
        # the descriptors the referee rebuilds node k's context from, each proven against the address
        node_proof = prove_node(bundle, k)
        tensor_proofs = tuple(prove_tensor(bundle, t) for t in (*node.inputs, *node.outputs))
        ntrace = self.node_trace(k)
        if isinstance(ntrace, LyingTrace):
            final, proof = self.backend.forge_final(ntrace.honest, [self.env[t] for t in node.outputs])
        else:
            final, proof = self.backend.final_opening(ntrace)
        return OpenSteps(
            c, is_attack, node_proof, tensor_proofs, tr.tensors_root(k), tuple(tr.roots[t] for t in dyn),
            tuple(tuple(p) for p in in_proofs), tuple(tr.roots[t] for t in node.outputs),
            tuple(tuple(p) for p in out_proofs), final, proof,
        )


class FraudVMBackend:
    """The fraud VM (``fraud_vm.trace`` / ``fraud_vm.vm``) as the referee's and the players' backend.

    The referee side works from a node context rebuilt from proven descriptors (``game.node_context``):
    step counts, start states, final-state checks, one-step verification. The players side builds
    fast-forward node traces from its own bundle.
    """

    def __init__(self) -> None:
        from .tensors import commit_tensor

        self.commit_tensor = commit_tensor

    # ------------------------------------------------------------------ referee side (VMBackend)

    def num_steps(self, context: NodeContext) -> int:
        from .stepper import num_steps

        return num_steps(context)  # closed form, numpy-free (what the contract computes)

    def start_state_hash(self, context: NodeContext, input_roots: Sequence[bytes]) -> bytes:
        from .trace import initial_state

        return initial_state(context.address, context.node_index, input_roots, context).hash()

    def final_output_root(self, context: NodeContext, final_state: bytes, proof: Any) -> bytes:
        from .state import decode_state
        from .trace import node_final_check

        try:
            out_root, path = proof
            ok = node_final_check(decode_state(final_state), context, out_root, path)
        except (TypeError, ValueError, FraudVMError) as e:
            raise FinalStateMismatch(f"malformed final state or proof: {e}") from None
        if not ok:
            raise FinalStateMismatch("the final state is not the HALTED end of this node holding that output root")
        return bytes(out_root)

    def witness_context_hash(self, witness: Any) -> bytes:
        from .vm import StepWitness

        if not isinstance(witness, StepWitness):
            raise MalformedMove("a step needs a StepWitness")
        return keccak(witness.context)

    def verify_step(self, pre_state_hash: bytes, witness: Any) -> bytes:
        from .vm import StepWitness, verify_step

        if not isinstance(witness, StepWitness):
            raise MalformedMove("a step needs a StepWitness")
        return verify_step(pre_state_hash, witness)

    def witness_size(self, witness: Any) -> int:
        return int(witness.size_bytes())

    # ------------------------------------------------------------------ players side

    def node_steps(self, bundle: Bundle, node_index: int, batch: int) -> int:
        from .context import context_for

        return self.num_steps(context_for(bundle, node_index, batch))

    def node_trace(self, bundle: Bundle, node_index: int, env: dict[int, np.ndarray],
                   roots: Mapping[int, bytes] | None = None, env_has_output: bool = False) -> NodeTraceLike:
        from .tensors import constant_root
        from .trace import NodeTrace

        node = bundle.nodes[node_index]
        in_roots = None
        if roots is not None:
            in_roots = [constant_root(bundle, t) if bundle.tensors[t].is_const else roots[t] for t in node.inputs]
        output = env[node.outputs[0]] if env_has_output else None
        return NodeTrace(bundle, node_index, env, output=output, input_roots=in_roots)

    def final_opening(self, trace: Any) -> tuple[bytes, Any]:
        return trace.state_at(trace.num_steps).encode(), (trace.output_roots()[0], tuple(trace.final_region_proof()))

    def forge_final(self, trace: Any, outputs: Sequence[np.ndarray]) -> tuple[bytes, Any]:
        from opml.merkle import merkle_root

        from .memory import region_depth
        from .trace import region_proof

        out_root = self.commit_tensor(outputs[0], int(trace.context.output.dtype))
        roots = [*trace.input_roots, out_root]
        final = trace.state_at(trace.num_steps).with_(memory_root=merkle_root(roots, region_depth(len(roots))))
        return final.encode(), (out_root, tuple(region_proof(roots, len(trace.input_roots))))


def _batch_of(bundle: Bundle, inputs: Sequence[np.ndarray]) -> int:
    for spec, x in zip(bundle.input_specs(), inputs, strict=True):
        if spec.shape and spec.shape[0] < 0:
            return int(np.asarray(x).shape[0]) // -spec.shape[0]
    return 1


@dataclass
class GameResult:
    """What one game produced: who won, where it ended, its cost."""

    outcome: Outcome
    reason: str
    rounds: int
    node_index: int
    pinned_step: int
    final_witness_bytes: int
    seconds: dict[Role, float]
    payouts: dict[Role, int]
    rejected: list[str] = field(default_factory=list)
    game: Game | None = None

    @property
    def winner(self) -> Role | None:
        return {Outcome.CLAIMANT_WINS: Role.CLAIMANT, Outcome.CHALLENGER_WINS: Role.CHALLENGER}.get(self.outcome)


def play_game(bundle: Bundle, claimant: Player, challenger: Player, backend: VMBackend,
              rules: Rules | None = None, move_seconds: int = 60, max_moves: int = 1000) -> GameResult | None:
    """Referee a game: the claimant claims, the challenger disputes (or not: returns None), both move.

    The referee gets what a contract gets: the model address, the graph header's proof (here made
    from ``bundle``; on chain the model registry holds it) and the players' moves. A player that
    returns no move, or a move the referee rejects, loses when its clock runs out.
    """
    claim = claimant.make_claim()
    if not challenger.disputes(claim):
        return None
    game = open_game(bundle.address, prove_header(bundle), claim, backend, rules)
    players = {Role.CLAIMANT: claimant, Role.CHALLENGER: challenger}
    rejected: list[str] = []
    while game.outcome == Outcome.IN_PROGRESS and game.moves < max_moves:
        role = game.mover
        mv = players[role].respond(game)
        if mv is not None:
            try:
                game.play(role, mv, game.now + move_seconds)
                continue
            except FraudVMError as e:
                rejected.append(f"{role.name.lower()} move {game.moves + 1}: {e}")
        game.claim_timeout(game.deadline())
    if game.outcome == Outcome.IN_PROGRESS:
        raise GameError(f"the game did not end within {max_moves} moves")
    return GameResult(game.outcome, game.reason, game.moves, game.node_index, game.pinned_step,
                      game.final_witness_bytes, {r: p.seconds for r, p in players.items()}, game.payouts(),
                      rejected, game)
