"""The referee rejects every move the rules forbid, and a rejected move changes nothing."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from standin_vm import StandinBackend

from fraud_vm import phase1 as p1
from fraud_vm.game import Bisect, GameError, OpenSteps, Outcome, Phase, Role, Rules, Step, open_game
from fraud_vm.strategies import Lie, Player


@pytest.fixture(scope="module", params=["fraudvm", "standin"])
def setup(game_models, request):
    from fraud_vm.strategies import FraudVMBackend

    bundle, x = game_models["digits_cnn"]
    backend = FraudVMBackend() if request.param == "fraudvm" else StandinBackend()
    honest = Player(bundle, [x], backend)
    liar = Player(bundle, [x], backend, Lie("node", 2))
    return bundle, backend, honest, liar


def _snapshot(g):
    return (g.moves, g.mover, g.phase, g.outcome, copy.deepcopy(g.bisection), dict(g.bonds), dict(g.clock_used))


def _rejected(g, role, mv, now=None) -> None:
    before = _snapshot(g)
    with pytest.raises(GameError):
        g.play(role, mv, g.now + 1 if now is None else now)
    assert _snapshot(g) == before


def test_bad_claims(setup) -> None:
    bundle, backend, honest, liar = setup
    claim = liar.make_claim()
    with pytest.raises(GameError, match="final tensor table"):
        open_game(bundle, replace(claim, final_tensors_root=bytes(32)), backend)
    with pytest.raises(GameError, match="does not open"):
        open_game(bundle, replace(claim, output_roots=(bytes(32),)), backend)
    with pytest.raises(GameError, match="another model"):
        open_game(bundle, replace(claim, model_address=bytes(32)), backend)
    with pytest.raises(GameError, match="batch"):
        open_game(bundle, replace(claim, batch=0), backend)


def test_move_checks(setup) -> None:
    bundle, backend, honest, liar = setup
    g = open_game(bundle, liar.make_claim(), backend)
    mv = honest.respond(g)
    assert isinstance(mv, Bisect) and mv.parent == 1 and mv.is_attack
    _rejected(g, Role.CLAIMANT, mv)  # not its turn
    _rejected(g, Role.CHALLENGER, replace(mv, parent=2))  # must answer the last claim
    _rejected(g, Role.CHALLENGER, replace(mv, is_attack=False))  # the root can only be attacked
    _rejected(g, Role.CHALLENGER, replace(mv, claim=b"short"))
    _rejected(g, Role.CHALLENGER, OpenSteps(1, True))  # not at a leaf yet
    _rejected(g, Role.CHALLENGER, Step(1, True))
    _rejected(g, Role.CHALLENGER, mv, now=g.deadline() + 1)  # too late
    with pytest.raises(GameError, match="still has time"):
        g.claim_timeout(g.deadline() - 1)
    g.play(Role.CHALLENGER, mv, g.now + 5)
    assert g.moves == 1 and g.mover == Role.CLAIMANT and g.clock_used[Role.CHALLENGER] == 5
    assert g.bisection.last == 2 and g.bonds[Role.CHALLENGER] == g.rules.bond(1)


def _play_until(g, players, pred) -> None:
    while not pred(g):
        g.play(g.mover, players[g.mover].respond(g), g.now + 1)


def test_open_steps_checks(setup) -> None:
    bundle, backend, honest, liar = setup
    g = open_game(bundle, liar.make_claim(), backend)
    players = {Role.CLAIMANT: liar, Role.CHALLENGER: honest}
    _play_until(g, players, lambda g: isinstance(players[g.mover].respond(g), OpenSteps))
    role = g.mover
    mv = players[role].respond(g)
    _rejected(g, role, replace(mv, pre_tensors_root=bytes(32)))
    _rejected(g, role, replace(mv, input_roots=(bytes(32),) * len(mv.input_roots)))
    _rejected(g, role, replace(mv, output_roots=(bytes(32),) * len(mv.output_roots)))
    fs = bytearray(mv.final_state)
    fs[63] ^= 1  # word 1: the memory root (stand-in: the node index)
    _rejected(g, role, replace(mv, final_state=bytes(fs)))
    _rejected(g, role, replace(mv, final_proof=b"x"))
    _rejected(g, role, replace(mv, is_attack=not mv.is_attack))
    g.play(role, mv, g.now + 1)
    assert g.phase == Phase.STEPS and g.node_index == 2 and g.bisection.last == 1


def test_step_checks_and_payout(setup) -> None:
    bundle, backend, honest, liar = setup
    g = open_game(bundle, liar.make_claim(), backend, Rules(clock_s=100, claim_bond=7, bond_increment=3))
    players = {Role.CLAIMANT: liar, Role.CHALLENGER: honest}
    _play_until(g, players, lambda g: isinstance(players[g.mover].respond(g), Step))
    role = g.mover
    mv = players[role].respond(g)
    field = "pre_state" if hasattr(mv.witness, "pre_state") else "pre"
    pre = getattr(mv.witness, field)
    other = replace(mv.witness, **{field: pre[:-1] + b"\x01"})
    _rejected(g, role, replace(mv, witness=other))
    _rejected(g, role, replace(mv, witness=None))
    g.play(role, mv, g.now + 1)
    assert g.outcome == Outcome.CHALLENGER_WINS and g.final_witness_bytes == mv.witness.size_bytes()
    with pytest.raises(GameError, match="over"):
        g.play(g.mover, mv, g.now + 1)
    bonds = [Rules(1, 7, 3).bond(m) for m in range(g.moves + 1)]
    assert bonds == sorted(bonds) and sum(bonds) == sum(g.bonds.values())
    assert g.payouts() == {Role.CHALLENGER: sum(bonds), Role.CLAIMANT: 0}


def test_chess_clock(setup) -> None:
    bundle, backend, honest, liar = setup
    g = open_game(bundle, liar.make_claim(), backend, Rules(clock_s=100))
    g.play(Role.CHALLENGER, honest.respond(g), 60)
    # the claimant's clock started at the challenger's move: 100 s of its own
    assert g.deadline() == 160
    g.play(Role.CLAIMANT, liar.respond(g), 150)
    # the challenger has 40 s left of its 100
    assert g.deadline() == 190
    with pytest.raises(GameError):
        g.claim_timeout(189)
    g.claim_timeout(190)
    assert g.outcome == Outcome.CLAIMANT_WINS and "challenger ran out of time" in g.reason
    with pytest.raises(GameError, match="over"):
        g.claim_timeout(500)


def test_phase1_helpers(setup) -> None:
    bundle, backend, honest, liar = setup
    tr = honest.trace
    assert p1.initial_state(bundle, tr.input_roots()) == tr.state(0)
    for k in range(len(bundle.nodes)):
        out = bundle.nodes[k].outputs
        root = p1.apply_node_outputs(bundle, k, tr.tensors_root(k), [tr.roots[t] for t in out],
                                     [tr.leaf_proof(k, t) for t in out])
        assert p1.state_hash(bundle.address, k + 1, root) == tr.state(k + 1)
    with pytest.raises(p1.Phase1Error):
        p1.apply_node_outputs(bundle, 1, tr.tensors_root(2), [tr.roots[t] for t in bundle.nodes[1].outputs],
                              [tr.leaf_proof(2, t) for t in bundle.nodes[1].outputs])  # already written
    assert tr.state(len(bundle.nodes) + 5) == tr.state(len(bundle.nodes))


def test_real_vm_rejects_tampered_witness(game_models) -> None:
    from fraud_vm.strategies import FraudVMBackend

    bundle, x = game_models["digits_mlp"]
    backend = FraudVMBackend()
    honest, liar = Player(bundle, [x], backend), Player(bundle, [x], backend, Lie("node", 1))
    g = open_game(bundle, liar.make_claim(), backend)
    players = {Role.CLAIMANT: liar, Role.CHALLENGER: honest}
    _play_until(g, players, lambda g: isinstance(players[g.mover].respond(g), Step))
    role = g.mover
    mv = players[role].respond(g)
    w = mv.witness
    r, i, v = w.words[0]
    bad_word = replace(w, words=((r, i, bytes([v[0] ^ 1]) + v[1:]),) + w.words[1:])
    _rejected(g, role, replace(mv, witness=bad_word))
    _rejected(g, role, replace(mv, witness=replace(w, pre_state=w.pre_state[:-1] + b"\x01")))
    _rejected(g, role, replace(mv, witness=b"not a witness"))
    g.play(role, mv, g.now + 1)
    assert g.outcome == Outcome.CHALLENGER_WINS and 0 < g.final_witness_bytes < 8192


def test_phase1_tables_match_full_merkle_roots(game_models) -> None:
    from opml.merkle import merkle_root

    for bundle, x in game_models.values():
        tr = Player(bundle, [x], StandinBackend()).trace
        for i in range(len(bundle.nodes) + 1):
            assert tr.tensors_roots[i] == merkle_root(list(tr.leaves[i]), p1.table_depth(bundle))
            assert tr.states[i] == p1.state_hash(bundle.address, i, tr.tensors_roots[i])


def test_table_paths_match_reference_proofs(game_models) -> None:
    """OpenSteps' paths (one hashed table, path updates) equal reference merkle proofs."""
    from opml.merkle import merkle_proof

    for bundle, x in game_models.values():
        tr = Player(bundle, [x], StandinBackend()).trace
        d = p1.table_depth(bundle)
        for k, node in enumerate(bundle.nodes):
            reads = [t for t in node.inputs if not bundle.tensors[t].is_const]
            got_r, got_w = tr.table_paths(k, reads, node.outputs)
            leaves = list(tr.leaves[k])
            assert got_r == [merkle_proof(leaves, t, d) for t in reads]
            for t, path in zip(node.outputs, got_w, strict=True):
                assert path == merkle_proof(leaves, t, d)
                leaves[t] = tr.roots[t]
        with pytest.raises(p1.Phase1Error):
            tr.table_paths(0, [len(bundle.tensors)], [])
