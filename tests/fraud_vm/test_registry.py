"""Several challengers on one claim (``fraud_vm.registry``): parallel two-party games, rejection on the
first lost game, finality after the window with every game won, bonds as pull payments."""

from __future__ import annotations

import pytest
from standin_vm import StandinBackend

from fraud_vm import errors as E
from fraud_vm.game import Game, Outcome, Role, Rules
from fraud_vm.registry import ClaimRegistry, ClaimStatus
from fraud_vm.strategies import Lie, Player
from opml.commitment import prove_header

RULES = Rules(clock_s=1000, clock_extension_s=100, challenge_window_s=5000, claim_bond=100,
              bond_growth_num=11, bond_growth_den=10)


@pytest.fixture(scope="module")
def model(game_models):
    bundle, x = game_models["digits_mlp"]
    backend = StandinBackend()
    return bundle, x, backend


def _move(game: Game, players: dict[Role, Player], now: int) -> None:
    """The player to move answers (a player that returns None does not move)."""
    mv = players[game.mover].respond(game)
    if mv is not None:
        game.play(game.mover, mv, now)


def _run(games: list[tuple[Game, dict[Role, Player]]], now: int) -> int:
    """Play the games in parallel, one move of each in turn, until every game is over."""
    while any(g.outcome == Outcome.IN_PROGRESS for g, _ in games):
        now += 10
        for g, players in games:
            if g.outcome != Outcome.IN_PROGRESS:
                continue
            if players[g.mover].lie.kind == "timeout":
                if now >= g.deadline():
                    g.claim_timeout(now)
                continue
            _move(g, players, now)
    return now


def test_honest_claim_survives_two_challengers(model) -> None:
    bundle, x, backend = model
    reg = ClaimRegistry(backend, RULES)
    honest = Player(bundle, [x], backend)
    cid = reg.propose("alice", honest.make_claim(), prove_header(bundle), now=0)
    liars = [Player(bundle, [x], backend, Lie("node", 1)), Player(bundle, [x], backend, Lie("output"))]
    games = [(reg.challenge(cid, name, now=10 + i), {Role.CLAIMANT: honest, Role.CHALLENGER: liar})
             for i, (name, liar) in enumerate(zip(("bob", "carol"), liars, strict=True))]
    with pytest.raises(E.DuplicateChallenge):
        reg.challenge(cid, "bob", now=20)
    # the games run in parallel; the claim stays pending while any of them is open
    _move(games[0][0], games[0][1], 30)
    with pytest.raises(E.ChallengeWindowOpen):
        reg.finalize(cid, now=100)
    with pytest.raises(E.GamesInProgress):
        reg.finalize(cid, now=reg.window_end(cid))
    assert reg.status(cid) == ClaimStatus.PENDING
    now = _run(games, 40)
    assert all(g.outcome == Outcome.CLAIMANT_WINS for g, _ in games)
    assert reg.status(cid) == ClaimStatus.PENDING  # the window is still open
    with pytest.raises(E.ChallengeWindowOpen):
        reg.finalize(cid, now=reg.window_end(cid) - 1)
    reg.finalize(cid, now=max(now, reg.window_end(cid)))
    assert reg.status(cid) == ClaimStatus.FINAL
    with pytest.raises(E.ClaimAlreadyFinal):
        reg.finalize(cid, now=reg.window_end(cid) + 1)
    with pytest.raises(E.ClaimAlreadyFinal):
        reg.challenge(cid, "dave", now=reg.window_end(cid) + 1)
    # the claimant gets its claim bond back and every bond of both games (pull payments, once)
    assert reg.claim_credit("alice") == RULES.bond(0) + sum(sum(g.bonds.values()) for g, _ in games)
    for name in ("alice", "bob", "carol"):
        with pytest.raises(E.NoCredit):
            reg.claim_credit(name)


def test_false_claim_rejected_by_first_lost_game(model) -> None:
    bundle, x, backend = model
    reg = ClaimRegistry(backend, RULES)
    liar = Player(bundle, [x], backend, Lie("node", 2))
    cid = reg.propose("mallory", liar.make_claim(), prove_header(bundle), now=0, bond=RULES.bond(0))
    honest = Player(bundle, [x], backend)
    idle = Player(bundle, [x], backend, Lie("timeout", 0))  # a challenger that never moves
    g_idle = reg.challenge(cid, "idle", now=5)
    g_honest = reg.challenge(cid, "bob", now=6)
    _run([(g_honest, {Role.CLAIMANT: liar, Role.CHALLENGER: honest})], 10)
    # rejected at once, although the other game is still running
    assert g_honest.outcome == Outcome.CHALLENGER_WINS and g_idle.outcome == Outcome.IN_PROGRESS
    assert reg.status(cid) == ClaimStatus.REJECTED and reg.record(cid).rejected_by == 1
    with pytest.raises(E.ClaimAlreadyRejected):
        reg.challenge(cid, "carol", now=50)
    with pytest.raises(E.ClaimAlreadyRejected):
        reg.finalize(cid, now=reg.window_end(cid))
    # the other game goes on and settles its own bonds; the claim stays rejected
    _run([(g_idle, {Role.CLAIMANT: liar, Role.CHALLENGER: idle})], 10)
    assert g_idle.outcome == Outcome.CLAIMANT_WINS and reg.status(cid) == ClaimStatus.REJECTED
    assert reg.claim_credit("bob") == RULES.bond(0) + sum(g_honest.bonds.values())
    # the idle challenger never moved, so its game holds no bond: nothing for anyone
    assert sum(g_idle.bonds.values()) == 0
    for name in ("mallory", "idle"):
        with pytest.raises(E.NoCredit):
            reg.claim_credit(name)


def test_absent_claimant_loses_its_bond_and_the_truth_is_reproposed(model) -> None:
    bundle, x, backend = model
    reg = ClaimRegistry(backend, RULES)
    honest = Player(bundle, [x], backend)
    cid = reg.propose("alice", honest.make_claim(), prove_header(bundle), now=0)
    liar = Player(bundle, [x], backend, Lie("node", 1))
    g = reg.challenge(cid, "mallory", now=1)
    g.play(Role.CHALLENGER, liar.respond(g), 2)
    # alice never answers: anyone ends the game at her deadline, the true claim is rejected
    with pytest.raises(E.ClockNotExpired):
        g.claim_timeout(g.deadline() - 1)
    g.claim_timeout(g.deadline())
    assert reg.status(cid) == ClaimStatus.REJECTED
    assert reg.claim_credit("mallory") == RULES.bond(0) + sum(g.bonds.values())
    with pytest.raises(E.NoCredit):
        reg.claim_credit("alice")
    # any bonded proposer re-proposes the truth; unchallenged, it is final after its window
    cid2 = reg.propose("bob", honest.make_claim(), prove_header(bundle), now=2000)
    assert cid2 != cid and reg.status(cid2) == ClaimStatus.PENDING
    with pytest.raises(E.ChallengeWindowClosed):
        reg.challenge(cid2, "mallory", now=reg.window_end(cid2))
    reg.finalize(cid2, now=reg.window_end(cid2))
    assert reg.status(cid2) == ClaimStatus.FINAL and reg.claim_credit("bob") == RULES.bond(0)


def test_refused_calls(model, game_models) -> None:
    bundle, x, backend = model
    reg = ClaimRegistry(backend, RULES)
    claim = Player(bundle, [x], backend).make_claim()
    with pytest.raises(E.IncorrectBond):
        reg.propose("alice", claim, prove_header(bundle), now=0, bond=1)
    with pytest.raises(E.InvalidDescriptorProof):
        reg.propose("alice", claim, prove_header(game_models["encoder"][0]), now=0)
    assert reg.claims == []
    for bad in (0, -1, "0"):
        with pytest.raises(E.UnknownClaim):
            reg.challenge(bad, "bob", now=0)  # type: ignore[arg-type]
        with pytest.raises(E.UnknownClaim):
            reg.finalize(bad, now=0)  # type: ignore[arg-type]
