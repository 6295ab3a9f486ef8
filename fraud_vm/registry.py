"""Several challengers on one claim: the claim registry (the L1 game factory mirrors it).

A claim is posted once, with the claimant's bond ``bond(0)``; during its challenge window anyone
may open a challenge, and each challenge is its own two-party game (``fraud_vm.game``) between the
claimant and that challenger, with its own clocks and move bonds; the games run in parallel. The
claim is **rejected** as soon as the claimant loses any game (the claim bond goes to that game's
challenger) and **final** only once its window has passed and every game on it was resolved in the
claimant's favour (the claim bond goes back to the claimant). Each game's move bonds go to that
game's winner. Payments are credits the owner pulls (``claim_credit``). ``docs/dispute_game.md``
§8 is the spec; every refused call raises a named error and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from opml.commitment import HeaderProof

from . import phase1 as p1
from .errors import (
    ChallengeWindowClosed,
    ChallengeWindowOpen,
    ClaimAlreadyFinal,
    ClaimAlreadyRejected,
    DuplicateChallenge,
    GamesInProgress,
    IncorrectBond,
    NoCredit,
    UnknownClaim,
)
from .game import Game, Outcome, Role, Rules, VMBackend, open_game


class ClaimStatus(IntEnum):
    """Where a claim stands."""

    PENDING = 0
    REJECTED = 1
    FINAL = 2


@dataclass
class ClaimRecord:
    """One posted claim: who posted it and when, its bond, its games and its status."""

    claim_id: int
    claim: p1.Claim
    header_proof: HeaderProof
    claimant: str
    created_at: int
    bond: int
    game_ids: list[int] = field(default_factory=list)
    challengers: set[str] = field(default_factory=set)
    status: ClaimStatus = ClaimStatus.PENDING
    rejected_by: int = -1  # the game that rejected it


class ClaimRegistry:
    """Claims, their games and the credits they leave (pull payments)."""

    def __init__(self, backend: VMBackend, rules: Rules | None = None) -> None:
        self.backend = backend
        self.rules = rules or Rules()
        self.claims: list[ClaimRecord] = []
        self.games: list[Game] = []
        self.game_players: list[tuple[str, str]] = []  # per game: (claimant, challenger) accounts
        self.game_claim: list[int] = []  # per game: its claim id
        self.credit: dict[str, int] = {}

    # ------------------------------------------------------------------------------ claims

    def propose(self, claimant: str, claim: p1.Claim, header_proof: HeaderProof, now: int,
                bond: int | None = None) -> int:
        """Post a claim with its bond (None: the required ``bond(0)``); returns its id.

        The claim's links are checked as a game's opening checks them (InvalidDescriptorProof,
        InvalidClaim). A rejected claim's content may be proposed again (a new claim, a new id).
        """
        if bond is not None and bond != self.rules.bond(0):
            raise IncorrectBond(f"a claim needs a bond of {self.rules.bond(0)}, got {bond}")
        # the same checks a game's opening makes (a probe game that is dropped again)
        open_game(claim.model_address, header_proof, claim, self.backend, self.rules, now, stake_claim_bond=False)
        rec = ClaimRecord(len(self.claims), claim, header_proof, claimant, now, self.rules.bond(0))
        self.claims.append(rec)
        return rec.claim_id

    def record(self, claim_id: int) -> ClaimRecord:
        """The record of claim ``claim_id`` (UnknownClaim if there is none)."""
        if not isinstance(claim_id, int) or not 0 <= claim_id < len(self.claims):
            raise UnknownClaim(f"no claim {claim_id!r}")
        return self.claims[claim_id]

    def status(self, claim_id: int) -> ClaimStatus:
        return self.record(claim_id).status

    def window_end(self, claim_id: int) -> int:
        """The first time at which claim ``claim_id`` can no longer be challenged."""
        return self.record(claim_id).created_at + self.rules.challenge_window_s

    def challenge(self, claim_id: int, challenger: str, now: int) -> Game:
        """Open a game between the claimant and ``challenger`` on a claim that is still open.

        The challenger moves first (it must attack the claim). Raises UnknownClaim,
        ClaimAlreadyRejected, ClaimAlreadyFinal, ChallengeWindowClosed or DuplicateChallenge.
        """
        rec = self.record(claim_id)
        # INVARIANT: only a pending claim inside its window can be challenged, once per challenger.
        if rec.status == ClaimStatus.REJECTED:
            raise ClaimAlreadyRejected(f"claim {claim_id} was rejected by game {rec.rejected_by}")
        if rec.status == ClaimStatus.FINAL:
            raise ClaimAlreadyFinal(f"claim {claim_id} is final")
        if now >= self.window_end(claim_id):
            raise ChallengeWindowClosed(f"claim {claim_id}'s window ended at {self.window_end(claim_id)}")
        if challenger in rec.challengers:
            raise DuplicateChallenge(f"{challenger} already challenges claim {claim_id}")
        gid = len(self.games)
        game = open_game(rec.claim.model_address, rec.header_proof, rec.claim, self.backend, self.rules, now,
                         stake_claim_bond=False, on_resolved=lambda g: self._game_resolved(gid, g))
        rec.challengers.add(challenger)
        rec.game_ids.append(gid)
        self.games.append(game)
        self.game_players.append((rec.claimant, challenger))
        self.game_claim.append(claim_id)
        return game

    def finalize(self, claim_id: int, now: int) -> None:
        """Make a claim final (anyone may call): its window has passed and it won every game.

        The claim bond is credited back to the claimant. Raises ClaimAlreadyRejected,
        ClaimAlreadyFinal, ChallengeWindowOpen or GamesInProgress.
        """
        rec = self.record(claim_id)
        if rec.status == ClaimStatus.REJECTED:
            raise ClaimAlreadyRejected(f"claim {claim_id} was rejected by game {rec.rejected_by}")
        if rec.status == ClaimStatus.FINAL:
            raise ClaimAlreadyFinal(f"claim {claim_id} is final")
        if now < self.window_end(claim_id):
            raise ChallengeWindowOpen(f"claim {claim_id}'s window ends at {self.window_end(claim_id)}")
        # INVARIANT: a game lost by the claimant rejects the claim at once, so here every resolved
        # game went to the claimant; what is left to check is that none is still running.
        open_games = [g for g in rec.game_ids if self.games[g].outcome == Outcome.IN_PROGRESS]
        if open_games:
            raise GamesInProgress(f"claim {claim_id} still has games {open_games} in progress")
        rec.status = ClaimStatus.FINAL
        self._credit(rec.claimant, rec.bond)

    # ------------------------------------------------------------------------------ payments

    def claim_credit(self, account: str) -> int:
        """Pay out ``account``'s credit (pull payment; the balance is zeroed before paying)."""
        amount = self.credit.get(account, 0)
        if amount == 0:
            raise NoCredit(f"{account} has no credit")
        self.credit[account] = 0  # SAFETY: zeroed before the transfer (re-entrancy on chain)
        return amount

    def _credit(self, account: str, amount: int) -> None:
        self.credit[account] = self.credit.get(account, 0) + amount

    def _game_resolved(self, gid: int, game: Game) -> None:
        """Game ``gid``'s hook: credit its bonds to its winner; a claimant's loss rejects the claim."""
        claimant, challenger = self.game_players[gid]
        winner = game.winner
        account = claimant if winner == Role.CLAIMANT else challenger
        self._credit(account, sum(game.bonds.values()))
        rec = self.claims[self.game_claim[gid]]
        if winner == Role.CHALLENGER and rec.status == ClaimStatus.PENDING:
            rec.status, rec.rejected_by = ClaimStatus.REJECTED, gid
            self._credit(challenger, rec.bond)  # the claim bond goes to the first challenger to win
