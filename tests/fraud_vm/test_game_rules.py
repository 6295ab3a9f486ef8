"""The referee rejects every move the rules forbid with its named error, and a rejected move changes
nothing; it works from the model address and proven descriptors only (never a bundle)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from standin_vm import StandinBackend

from fraud_vm import errors as E
from fraud_vm import phase1 as p1
from fraud_vm.game import Bisect, OpenSteps, Outcome, Phase, Role, Rules, Step, open_game
from fraud_vm.strategies import Lie, Player
from opml.commitment import HeaderProof, prove_header, prove_node, prove_tensor


@pytest.fixture(scope="module", params=["fraudvm", "standin"])
def setup(game_models, request):
    from fraud_vm.strategies import FraudVMBackend

    bundle, x = game_models["digits_cnn"]
    backend = FraudVMBackend() if request.param == "fraudvm" else StandinBackend()
    honest = Player(bundle, [x], backend)
    liar = Player(bundle, [x], backend, Lie("node", 2))
    return bundle, backend, honest, liar


def _open(bundle, claim, backend, rules=None, now=0):
    return open_game(bundle.address, prove_header(bundle), claim, backend, rules, now)


def _snapshot(g):
    return (g.moves, g.mover, g.phase, g.outcome, copy.deepcopy(g.bisection), dict(g.bonds), dict(g.clock_used),
            g.node_index, g.context_hash, g.num_steps, g.now, g.turn_started)


def _rejected(g, role, mv, error=E.FraudVMError, now=None, bond=None) -> None:
    before = _snapshot(g)
    with pytest.raises(error) as info:
        g.play(role, mv, g.now + 1 if now is None else now, bond)
    assert E.is_named(info.value), f"{type(info.value).__name__} is not a named error"
    assert _snapshot(g) == before


def test_bad_claims(setup, game_models) -> None:
    bundle, backend, honest, liar = setup
    claim = liar.make_claim()
    with pytest.raises(E.InvalidClaim, match="final tensor table"):
        _open(bundle, replace(claim, final_tensors_root=bytes(32)), backend)
    with pytest.raises(E.InvalidClaim, match="does not open"):
        _open(bundle, replace(claim, output_roots=(bytes(32),)), backend)
    with pytest.raises(E.InvalidClaim, match="another model"):
        _open(bundle, replace(claim, model_address=bytes(32)), backend)
    with pytest.raises(E.InvalidClaim, match="batch"):
        _open(bundle, replace(claim, batch=0), backend)
    with pytest.raises(E.InvalidClaim, match="inputs"):
        _open(bundle, replace(claim, input_roots=()), backend)
    # the graph header must be proven against the claim's model address
    other = game_models["digits_mlp"][0]
    with pytest.raises(E.InvalidDescriptorProof):
        open_game(bundle.address, prove_header(other), claim, backend)
    hp = prove_header(bundle)
    forged = bytearray(hp.meta)
    forged[2 * 32 + 31] += 1  # one more node
    with pytest.raises(E.InvalidDescriptorProof):
        open_game(bundle.address, HeaderProof(bytes(forged), hp.nodes_root, hp.tensors_root), claim, backend)
    with pytest.raises(E.MalformedMove):
        open_game(bundle.address, "not a proof", claim, backend)  # type: ignore[arg-type]


def test_move_checks(setup) -> None:
    bundle, backend, honest, liar = setup
    g = _open(bundle, liar.make_claim(), backend)
    mv = honest.respond(g)
    assert isinstance(mv, Bisect) and mv.parent == 1 and mv.is_attack
    _rejected(g, Role.CLAIMANT, mv, E.NotYourTurn)
    _rejected(g, Role.CHALLENGER, replace(mv, parent=2), E.ParentNotLast)
    _rejected(g, Role.CHALLENGER, replace(mv, is_attack=False), E.CannotDefendRoot)
    _rejected(g, Role.CHALLENGER, replace(mv, claim=b"short"), E.MalformedMove)
    _rejected(g, Role.CHALLENGER, OpenSteps(1, True), E.WrongMoveKind)  # not at a leaf yet
    _rejected(g, Role.CHALLENGER, Step(1, True), E.WrongMoveKind)
    _rejected(g, Role.CHALLENGER, mv, E.ClockExpired, now=g.deadline() + 1)
    _rejected(g, Role.CHALLENGER, mv, E.IncorrectBond, bond=g.rules.bond(1) - 1)
    _rejected(g, Role.CHALLENGER, "not a move", E.FraudVMError)  # type: ignore[arg-type]
    with pytest.raises(E.ClockNotExpired):
        g.claim_timeout(g.deadline() - 1)
    g.play(Role.CHALLENGER, mv, g.now + 5, g.rules.bond(1))
    assert g.moves == 1 and g.mover == Role.CLAIMANT and g.clock_used[Role.CHALLENGER] == 5
    assert g.bisection.last == 2 and g.bonds[Role.CHALLENGER] == g.rules.bond(1)
    _rejected(g, Role.CLAIMANT, liar.respond(g), E.TimeNotMonotonic, now=g.now - 1)
    with pytest.raises(E.GameNotOver):
        g.payouts()


def _play_until(g, players, pred) -> None:
    while not pred(g):
        g.play(g.mover, players[g.mover].respond(g), g.now + 1)


def test_open_steps_checks(setup, game_models) -> None:
    bundle, backend, honest, liar = setup
    g = _open(bundle, liar.make_claim(), backend)
    players = {Role.CLAIMANT: liar, Role.CHALLENGER: honest}
    _play_until(g, players, lambda g: isinstance(players[g.mover].respond(g), OpenSteps))
    role = g.mover
    mv = players[role].respond(g)
    k = 2
    node = bundle.nodes[k]
    _rejected(g, role, replace(mv, pre_tensors_root=bytes(32)), E.PreTensorsMismatch)
    _rejected(g, role, replace(mv, input_roots=(bytes(32),) * len(mv.input_roots)), E.InvalidTableProof)
    _rejected(g, role, replace(mv, input_roots=()), E.InputCountMismatch)
    _rejected(g, role, replace(mv, output_roots=(bytes(32),) * len(mv.output_roots)),
              (E.OutputsContradictClaim, E.FinalStateMismatch))
    fs = bytearray(mv.final_state)
    fs[63] ^= 1  # word 1: the memory root (stand-in: the node index)
    _rejected(g, role, replace(mv, final_state=bytes(fs)), E.FinalStateMismatch)
    _rejected(g, role, replace(mv, final_proof=b"x"), E.FinalStateMismatch)
    _rejected(g, role, replace(mv, is_attack=not mv.is_attack))
    # descriptors not proven against the model address are rejected
    _rejected(g, role, replace(mv, node_proof=prove_node(bundle, k + 1)), E.InvalidDescriptorProof)
    _rejected(g, role, replace(mv, node_proof=None), E.MalformedMove)
    other = game_models["digits_mlp"][0]
    _rejected(g, role, replace(mv, tensor_proofs=tuple(prove_tensor(other, 0) for _ in mv.tensor_proofs)),
              E.InvalidDescriptorProof)
    tp = mv.tensor_proofs[0]
    nd = tp.tensor_desc[1]
    for i, delta in ((2, 1), (nd + 2, 1), (nd + 5, 32)):  # a dimension, is_const, byte length
        desc = list(tp.tensor_desc)
        desc[i] += delta
        forged = replace(tp, tensor_desc=tuple(desc))
        _rejected(g, role, replace(mv, tensor_proofs=(forged, *mv.tensor_proofs[1:])), E.InvalidDescriptorProof)
    const = [i for i, t in enumerate(node.inputs) if bundle.tensors[t].is_const]
    swapped = list(mv.tensor_proofs)
    swapped[const[0]] = prove_tensor(bundle, (node.inputs[const[0]] + 1) % len(bundle.tensors))  # another id's
    _rejected(g, role, replace(mv, tensor_proofs=tuple(swapped)), E.InvalidDescriptorProof)
    _rejected(g, role, replace(mv, tensor_proofs=mv.tensor_proofs[:-1]), E.InputCountMismatch)
    g.play(role, mv, g.now + 1)
    assert g.phase == Phase.STEPS and g.node_index == k and g.bisection.last == 1
    # the referee stored the context hash and the step count it derived from the proven descriptors
    from fraud_vm.compiler import context_for

    ctx = context_for(bundle, k, 1)
    assert g.context_hash == ctx.hash and g.num_steps == backend.node_steps(bundle, k, 1) == g.bisection.length


def test_phase2_start_is_derived(setup) -> None:
    """The phase-2 start state is the referee's own derivation: no move field can set it."""
    bundle, backend, honest, liar = setup
    for claimant, challenger in ((liar, honest), (honest, liar)):
        g = _open(bundle, claimant.make_claim(), backend)
        players = {Role.CLAIMANT: claimant, Role.CHALLENGER: challenger}
        _play_until(g, players, lambda g: g.phase != Phase.NODES)
        assert g.phase == Phase.STEPS
        # the start state the honest player's own trace of node k begins with
        assert g.bisection.lo_hash == honest.node_trace(g.node_index).state_hash_at(0)
        assert g.bisection.hi_owner == g.log[-1].role


def test_step_checks_and_payout(setup) -> None:
    bundle, backend, honest, liar = setup
    rules = Rules(clock_s=100, clock_extension_s=10, claim_bond=7, bond_growth_num=3, bond_growth_den=2)
    g = _open(bundle, liar.make_claim(), backend, rules)
    players = {Role.CLAIMANT: liar, Role.CHALLENGER: honest}
    _play_until(g, players, lambda g: isinstance(players[g.mover].respond(g), Step))
    role = g.mover
    mv = players[role].respond(g)
    field = "pre_state" if hasattr(mv.witness, "pre_state") else "pre"
    pre = getattr(mv.witness, field)
    other = replace(mv.witness, **{field: pre[:-1] + b"\x01"})
    _rejected(g, role, replace(mv, witness=other), (E.PreStateHashMismatch, E.MalformedState))
    _rejected(g, role, replace(mv, witness=None), E.MalformedMove)
    ctx = bytearray(mv.witness.context)
    ctx[-1] ^= 1
    _rejected(g, role, replace(mv, witness=replace(mv.witness, context=bytes(ctx))), E.ContextHashMismatch)
    g.play(role, mv, g.now + 1)
    assert g.outcome == Outcome.CHALLENGER_WINS and g.final_witness_bytes == mv.witness.size_bytes()
    with pytest.raises(E.GameOver):
        g.play(g.mover, mv, g.now + 1)
    bonds = [rules.bond(m) for m in range(g.moves + 1)]
    assert bonds == sorted(bonds) and sum(bonds) == sum(g.bonds.values())
    assert g.payouts() == {Role.CHALLENGER: sum(bonds), Role.CLAIMANT: 0}


def test_bonds_grow_geometrically() -> None:
    r = Rules(claim_bond=10**18, bond_growth_num=11, bond_growth_den=10)
    b = [r.bond(m) for m in range(40)]
    assert b[0] == 10**18 and b[1] == 11 * 10**17 and b[2] == 121 * 10**16
    assert all(b[m + 1] == b[m] * 11 // 10 for m in range(39))
    assert 41 * 10**18 < b[39] < 42 * 10**18  # ~1.1^39 = 41.1
    with pytest.raises(ValueError):
        r.bond(-1)
    with pytest.raises(ValueError):
        Rules(bond_growth_num=9, bond_growth_den=10)  # bonds must not shrink
    with pytest.raises(ValueError):
        Rules(clock_s=10, clock_extension_s=11)


def test_chess_clock(setup) -> None:
    bundle, backend, honest, liar = setup
    g = _open(bundle, liar.make_claim(), backend, Rules(clock_s=100, clock_extension_s=0))
    g.play(Role.CHALLENGER, honest.respond(g), 60)
    # the claimant's clock started at the challenger's move: 100 s of its own
    assert g.deadline() == 160
    g.play(Role.CLAIMANT, liar.respond(g), 150)
    # the challenger has 40 s left of its 100
    assert g.deadline() == 190
    with pytest.raises(E.ClockNotExpired):
        g.claim_timeout(189)
    g.claim_timeout(190)
    assert g.outcome == Outcome.CLAIMANT_WINS and "challenger ran out of time" in g.reason
    with pytest.raises(E.GameOver):
        g.claim_timeout(500)


def test_clock_extension(setup) -> None:
    """A move that leaves the responder less than clock_extension_s tops the responder up to it."""
    bundle, backend, honest, liar = setup
    g = _open(bundle, liar.make_claim(), backend, Rules(clock_s=100, clock_extension_s=30))
    players = {Role.CLAIMANT: liar, Role.CHALLENGER: honest}
    g.play(Role.CHALLENGER, honest.respond(g), 60)  # claimant has 100 left: no extension
    assert g.deadline() == 160
    g.play(Role.CLAIMANT, liar.respond(g), 150)  # claimant used 90; challenger has 40 left
    assert g.deadline() == 190 and g.clock_used == {Role.CLAIMANT: 90, Role.CHALLENGER: 60}
    g.play(Role.CHALLENGER, honest.respond(g), 185)  # challenger used 95; claimant had 10 left -> 30
    assert g.clock_used == {Role.CLAIMANT: 70, Role.CHALLENGER: 95} and g.deadline() == 215
    g.play(Role.CLAIMANT, players[Role.CLAIMANT].respond(g), 214)  # a last-second move: challenger 5 -> 30
    assert g.clock_used == {Role.CLAIMANT: 99, Role.CHALLENGER: 70} and g.deadline() == 244
    with pytest.raises(E.ClockNotExpired):
        g.claim_timeout(243)
    g.claim_timeout(244)
    assert g.outcome == Outcome.CLAIMANT_WINS


def test_phase1_helpers(setup) -> None:
    bundle, backend, honest, liar = setup
    tr = honest.trace
    header = p1.graph_header(bundle)
    assert p1.initial_state(bundle.address, header, tr.input_roots()) == tr.state(0)
    for k in range(len(bundle.nodes)):
        out = bundle.nodes[k].outputs
        root = p1.apply_outputs(header, tr.tensors_root(k), out, [tr.roots[t] for t in out],
                                [tr.leaf_proof(k, t) for t in out])
        assert p1.state_hash(bundle.address, k + 1, root) == tr.state(k + 1)
    with pytest.raises(E.InvalidTableProof):
        out = bundle.nodes[1].outputs
        p1.apply_outputs(header, tr.tensors_root(2), out, [tr.roots[t] for t in out],
                         [tr.leaf_proof(2, t) for t in out])  # already written
    assert tr.state(len(bundle.nodes) + 5) == tr.state(len(bundle.nodes))


def test_real_vm_rejects_tampered_witness(game_models) -> None:
    from fraud_vm.strategies import FraudVMBackend

    bundle, x = game_models["digits_mlp"]
    backend = FraudVMBackend()
    honest, liar = Player(bundle, [x], backend), Player(bundle, [x], backend, Lie("node", 1))
    g = _open(bundle, liar.make_claim(), backend)
    players = {Role.CLAIMANT: liar, Role.CHALLENGER: honest}
    _play_until(g, players, lambda g: isinstance(players[g.mover].respond(g), Step))
    role = g.mover
    mv = players[role].respond(g)
    w = mv.witness
    r, i, v = w.words[0]
    bad_word = replace(w, words=((r, i, bytes([v[0] ^ 1]) + v[1:]),) + w.words[1:])
    _rejected(g, role, replace(mv, witness=bad_word), E.InvalidWitness)
    _rejected(g, role, replace(mv, witness=replace(w, pre_state=w.pre_state[:-1] + b"\x01")), E.InvalidWitness)
    _rejected(g, role, replace(mv, witness=b"not a witness"), E.MalformedMove)
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
