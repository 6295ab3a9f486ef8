"""Agents that play dispute games on L1 with a ``fraud_vm.strategies.Player``.

A player computes its moves from its own view of the inference (the bundle and inputs it holds,
honest or corrupted by a ``Lie``) and from the game's state, which the agent reads from L1 at every
poll (:func:`ai_evm.dispute.client.read_game`): the agent keeps nothing between polls but the
player's (deterministic) belief, so a killed agent restarted on the same game continues it.

:class:`Agent` serves games one poll at a time (:meth:`Agent.tick`): it moves when it is its turn,
ends the game with ``claimTimeout`` when the opponent's clock ran out, and pulls its winnings
(``claimCredit``) once the game is over. The registry helpers propose a claim with its bond, find a
posted claim from its ``propose`` transaction, open (or resume) a challenge, and finalize claims.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fraud_vm import phase1 as p1
from fraud_vm import position as P
from fraud_vm.errors import FraudVMError
from fraud_vm.game import Bisection, Outcome, Phase, Role
from fraud_vm.strategies import FraudVMBackend, Lie, Player
from opml.bundle import Bundle
from opml.commitment import prove_header
from opml.errors import OpmlError

from .client import L1, DisputeError, GameState, TxReverted, read_game
from .encode import claim_from_abi, claim_to_abi, graph_proof, move_call

__all__ = ["STRATEGIES", "Agent", "ClaimInfo", "NotOurGame", "make_player"]

#: The ``--strategy`` values: ``honest`` and the dishonest strategies of ``fraud_vm.strategies.Lie``.
STRATEGIES = ("honest", "output", "node", "intermediate", "step", "timeout")
#: ``DisputeGameFactory.ClaimStatus``.
CLAIM_STATUS = ("pending", "rejected", "final")
WEI = 10**18


def make_player(bundle: Bundle, inputs: Sequence[np.ndarray], strategy: str = "honest", lie_node: int | None = None,
                lie_step: int = 1) -> Player:
    """The player of ``strategy`` on ``bundle`` and ``inputs`` (one inference, its phase-1 trace).

    ``lie_node`` (default: the middle node) is where ``node``/``intermediate``/``step``/``timeout``
    start lying, ``lie_step`` the VM step after which ``step`` goes wrong.
    """
    if strategy not in STRATEGIES:
        raise DisputeError(f"unknown strategy {strategy!r} (one of: {', '.join(STRATEGIES)})")
    n = len(bundle.nodes)
    node = n // 2 if lie_node is None else lie_node
    if not 0 <= node < n:
        raise DisputeError(f"--lie-node {node} is outside 0..{n - 1}")
    lie = Lie(strategy, node, lie_step) if strategy != "honest" else Lie()
    try:
        return Player(bundle, list(inputs), FraudVMBackend(), lie)
    except (FraudVMError, OpmlError, ValueError) as e:
        raise DisputeError(f"cannot run the model on these inputs: {e}") from None


class NotOurGame(DisputeError):
    """A game about another model, batch or input than the agent's player holds."""


@dataclass
class GameView:
    """What ``Player.respond`` reads of a game, filled from an L1 read."""

    phase: Phase
    bisection: Bisection
    node_index: int


def view_of(st: GameState) -> GameView:
    """The player's view of a game state read from L1."""
    b = Bisection(st.max_depth, st.length, st.lo_hash, st.hi_hash, st.hi_owner, st.last, st.last_hash,
                  st.last_owner)
    assert st.phase is not None
    return GameView(st.phase, b, st.node_index)


@dataclass(frozen=True)
class ClaimInfo:
    """A posted claim recovered from its ``propose`` transaction."""

    claim_id: int
    claim: p1.Claim
    graph_proof: bytes
    claimant: str
    created_at: int
    status: str
    window_end: int


def eth(wei: int) -> str:
    """``wei`` in ETH, for progress lines."""
    return f"{wei / WEI:.6g} ETH"


def describe(st: GameState, now: int) -> str:
    """Phase, depth, whose turn, clocks left and bonds of a game, in one line."""
    if st.outcome != Outcome.IN_PROGRESS:
        return f"{st.outcome.name.lower().replace('_', ' ')}; bonds {eth(st.bonds[0])} / {eth(st.bonds[1])}"
    phase = "nodes" if st.phase == Phase.NODES else f"steps of node {st.node_index}"
    return (f"phase {phase}, depth {P.depth(st.last)}/{st.max_depth}, {st.mover.name.lower()} to move, clocks left "
            f"claimant {st.clock_left(Role.CLAIMANT, now)} s / challenger {st.clock_left(Role.CHALLENGER, now)} s, "
            f"bonds {eth(st.bonds[0])} / {eth(st.bonds[1])}")


@dataclass
class Agent:
    """Plays the games of one account on one registry with one player (None: only settles)."""

    l1: L1
    factory: Any
    player: Player | None
    out: Callable[[str], None] = print
    #: the first L1 block searched for the factory's events (the factory's deployment block, say)
    from_block: int = 0
    _games: dict[str, Any] = field(default_factory=dict)
    _announced: set[str] = field(default_factory=set)
    _failures: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ registry

    def implementation(self) -> Any:
        """The game implementation (it holds the rules: clock, bonds)."""
        return self.l1.contract("InferenceDisputeGame", self.l1.call(self.factory.functions.IMPLEMENTATION()))

    def game(self, address: str) -> Any:
        """The game contract at ``address``."""
        if address not in self._games:
            self._games[address] = self.l1.contract("InferenceDisputeGame", address)
        return self._games[address]

    def propose(self) -> int:
        """Post this player's claim with the claim bond; return its id."""
        assert self.player is not None
        claim = self.player.make_claim()
        bond = int(self.l1.call(self.implementation().functions.bond(0)))
        proof = graph_proof(prove_header(self.player.bundle))
        receipt = self.l1.send(self.factory.functions.propose(claim_to_abi(claim), proof), bond, "propose")
        logs = self.factory.events.Proposed().process_receipt(receipt)
        claim_id = int(logs[0]["args"]["claimId"])
        self.out(f"claim {claim_id} proposed: model 0x{claim.model_address.hex()} output hash "
                 f"0x{claim.output_hash.hex()}, bond {eth(bond)}, gas {receipt['gasUsed']:,}")
        return claim_id

    def claim_info(self, claim_id: int) -> ClaimInfo:
        """A posted claim, recovered from its ``propose`` transaction (UnknownClaim if there is none)."""
        if claim_id < 0:
            raise DisputeError(f"claim id {claim_id} is negative")
        f = self.factory.functions
        rec = self.l1.call(f.claimRecord(claim_id), f"claim {claim_id}")
        logs = self.factory.events.Proposed().get_logs(argument_filters={"claimId": claim_id},
                                                       from_block=self.from_block)
        if not logs:
            raise DisputeError(f"no Proposed event for claim {claim_id}")
        tx = self.l1.w3.eth.get_transaction(logs[0]["transactionHash"])
        try:
            fn, args = self.factory.decode_function_input(tx["input"])
        except ValueError:
            raise DisputeError(f"claim {claim_id} was not proposed by a direct call to the factory; "
                               "its claim cannot be read from the transaction") from None
        if fn.fn_name != "propose":
            raise DisputeError(f"claim {claim_id}'s transaction calls {fn.fn_name}, not propose")
        return ClaimInfo(claim_id, claim_from_abi(args["_claim"]), bytes(args["_graphProof"]), str(rec[1]),
                         int(rec[2]), CLAIM_STATUS[int(rec[3])], int(self.l1.call(f.windowEnd(claim_id))))

    def check_belief(self, claim: p1.Claim) -> None:
        """DisputeError unless the claim is about this player's model, inputs and batch."""
        assert self.player is not None
        pl = self.player
        if claim.model_address != pl.bundle.address:
            raise DisputeError(f"the claim is about model 0x{claim.model_address.hex()}, the bundle is "
                               f"{pl.bundle.address_hex}")
        if claim.input_hash != p1.io_hash(pl.trace.input_roots()) or claim.batch != pl.batch:
            raise DisputeError("the claim is about other inputs than --input (its input hash differs)")

    def my_game_on(self, claim_id: int) -> str | None:
        """The game this account already has on a claim, if any."""
        f = self.factory.functions
        if not self.l1.call(f.hasChallenged(claim_id, self.l1.address)):
            return None
        for g in self.l1.call(f.gamesOf(claim_id)):
            if str(self.l1.call(self.game(g).functions.challenger())).lower() == self.l1.address.lower():
                return str(g)
        return None

    def challenge(self, info: ClaimInfo) -> str:
        """Open a game on a claim (or return the one this account already has); return its address."""
        existing = self.my_game_on(info.claim_id)
        if existing is not None:
            self.out(f"resuming game {existing} on claim {info.claim_id}")
            return existing
        receipt = self.l1.send(self.factory.functions.challenge(info.claim_id, claim_to_abi(info.claim),
                                                                info.graph_proof), 0, "challenge")
        game = str(self.factory.events.Challenged().process_receipt(receipt)[0]["args"]["game"])
        self.out(f"challenged claim {info.claim_id}: game {game}, gas {receipt['gasUsed']:,}")
        return game

    def claims_of_mine(self) -> list[int]:
        """Ids of the claims this account proposed."""
        logs = self.factory.events.Proposed().get_logs(argument_filters={"claimant": self.l1.address},
                                                       from_block=self.from_block)
        return [int(e["args"]["claimId"]) for e in logs]

    def games_of_mine(self) -> list[str]:
        """Every game this account is party to: the games on its claims and its challenges."""
        f = self.factory.functions
        games: list[str] = []
        for cid in self.claims_of_mine():
            games += [str(g) for g in self.l1.call(f.gamesOf(cid))]
        logs = self.factory.events.Challenged().get_logs(argument_filters={"challenger": self.l1.address},
                                                         from_block=self.from_block)
        games += [str(e["args"]["game"]) for e in logs]
        return list(dict.fromkeys(games))

    def settle_claim(self, claim_id: int) -> str:
        """Finalize a claim whose window passed with no game running; return its status."""
        f = self.factory.functions
        rec = self.l1.call(f.claimRecord(claim_id))
        status = CLAIM_STATUS[int(rec[3])]
        if status == "pending" and self.l1.now() >= int(self.l1.call(f.windowEnd(claim_id))):
            games = [self.game(str(g)) for g in self.l1.call(f.gamesOf(claim_id))]
            if all(int(self.l1.call(g.functions.outcome())) != Outcome.IN_PROGRESS for g in games):
                try:
                    r = self.l1.send(f.finalize(claim_id), 0, f"finalize claim {claim_id}")
                    self.out(f"claim {claim_id} finalized, gas {r['gasUsed']:,}")
                except TxReverted as e:
                    if e.error not in ("ClaimAlreadyFinal", "ClaimAlreadyRejected"):
                        raise
                status = CLAIM_STATUS[int(self.l1.call(f.claimRecord(claim_id))[3])]
        return status

    def collect_registry_credit(self) -> None:
        """Pull this account's claim-bond credit from the registry, if any."""
        f = self.factory.functions
        amount = int(self.l1.call(f.credit(self.l1.address)))
        if amount:
            r = self.l1.send(f.claimCredit(self.l1.address), 0, "claimCredit")
            self.out(f"registry paid {eth(amount)} of claim bonds, gas {r['gasUsed']:,}")

    # ------------------------------------------------------------------ games

    def tick(self, address: str) -> Outcome | None:
        """One poll of one game: move, claim a timeout, or settle. Returns the outcome once it is over."""
        game = self.game(address)
        st = read_game(self.l1, game)
        role = st.role_of(self.l1.address)
        if role is None:
            raise DisputeError(f"{self.l1.address} is not a party to game {address}")
        if address not in self._announced:
            self._announced.add(address)
            self.out(f"game {address}: playing as {role.name.lower()}; {describe(st, self.l1.now())}")
        if st.outcome != Outcome.IN_PROGRESS:
            self._settle_game(game, st, role)
            return st.outcome
        now = self.l1.now()
        if self._failures.get(address) == st.moves:
            return None  # our move at this point was rejected: we have no valid move (the clock decides)
        try:
            if st.mover == role:
                self._move(game, st, role)
            elif now >= st.deadline:
                r = self.l1.send(game.functions.claimTimeout(), 0, "claimTimeout")
                self.out(f"game {address}: the {st.mover.name.lower()}'s clock ran out; claimTimeout, gas "
                         f"{r['gasUsed']:,}")
        except TxReverted as e:
            self.out(f"game {address}: {e}")
            if st.mover == role:
                # the rules reject our move (the read is of one block and only we can move now): do not
                # resend it at this point of the game
                self._failures[address] = st.moves
        return None

    def _move(self, game: Any, st: GameState, role: Role) -> None:
        """Send the player's move for the state ``st`` (nothing if the strategy does not move)."""
        pl = self.player
        if pl is None:
            return
        if (st.model_address != pl.bundle.address or st.batch != pl.batch
                or st.input_hash != p1.io_hash(pl.trace.input_roots())):
            raise NotOurGame(f"game {game.address} is about model 0x{st.model_address.hex()} (batch {st.batch}, "
                               f"input hash 0x{st.input_hash.hex()}); this agent holds {pl.bundle.address_hex} (batch "
                               f"{pl.batch}, input hash 0x{p1.io_hash(pl.trace.input_roots()).hex()})")
        mv = pl.respond(view_of(st))  # type: ignore[arg-type]  # duck-typed: phase, bisection, node_index
        if mv is None:
            return  # this strategy does not move (it will lose by the clock)
        kind, fn = move_call(game, mv)
        receipt = self.l1.send(fn, st.next_bond, f"{kind} (move {st.moves + 1})")
        after = read_game(self.l1, game)
        side = "attack" if mv.is_attack else "defend"
        self.out(f"game {game.address} move {st.moves + 1} ({role.name.lower()}): {kind} {side} at position "
                 f"{mv.parent}; bond {eth(st.next_bond)}, gas {receipt['gasUsed']:,}; "
                 f"{describe(after, self.l1.now())}")

    def _settle_game(self, game: Any, st: GameState, role: Role) -> None:
        """Pull this account's credit (the pot it won) from an ended game."""
        credit = int(self.l1.call(game.functions.credit(self.l1.address)))
        if credit:
            r = self.l1.send(game.functions.claimCredit(self.l1.address), 0, "claimCredit")
            self.out(f"game {game.address}: {st.outcome.name.lower().replace('_', ' ')}; paid {eth(credit)}, "
                     f"gas {r['gasUsed']:,}")

    def role_in(self, address: str) -> Role:
        """This account's role in a game (DisputeError if it is not a party)."""
        f = self.game(address).functions
        me = self.l1.address.lower()
        if str(self.l1.call(f.claimant())).lower() == me:
            return Role.CLAIMANT
        if str(self.l1.call(f.challenger())).lower() == me:
            return Role.CHALLENGER
        raise DisputeError(f"{self.l1.address} is not a party to game {address}")

    @staticmethod
    def won(outcome: Outcome, role: Role) -> bool:
        """Whether ``role`` won a game that ended with ``outcome``."""
        return outcome == (Outcome.CLAIMANT_WINS if role == Role.CLAIMANT else Outcome.CHALLENGER_WINS)
