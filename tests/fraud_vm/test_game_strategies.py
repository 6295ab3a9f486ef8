"""Honest play wins every game against every dishonest strategy, in both roles, on every example model.

Each game's pinned node and step are checked against the liar's own trace: the pinned step is the
first one whose pre-state the liar has right and whose post-state it has wrong.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standin_vm import StandinBackend

from fraud_vm.game import Phase, Role
from fraud_vm.strategies import FraudVMBackend, Lie, LyingTrace, Player, play_game

BACKENDS = {"standin": StandinBackend, "fraudvm": FraudVMBackend}


def _lies(n: int) -> list[Lie]:
    return [Lie("output"), Lie("node", 0), Lie("node", n // 2), Lie("intermediate", n // 2),
            Lie("step", n // 2, 1), Lie("step", 1, 37), Lie("timeout", n // 3)]


def _cases() -> list[tuple[str, str, int, Role]]:
    out = []
    for backend in BACKENDS:
        for model in ("digits_mlp", "digits_cnn", "encoder"):
            for li in range(7):
                for role in Role:
                    out.append((backend, model, li, role))
    return out


@pytest.mark.parametrize(("backend_name", "model", "lie_index", "honest_role"), _cases())
def test_honest_wins(game_models, backend_name: str, model: str, lie_index: int, honest_role: Role) -> None:
    bundle, x = game_models[model]
    backend = BACKENDS[backend_name]()
    lie = _lies(len(bundle.nodes))[lie_index]
    honest, liar = Player(bundle, [x], backend), Player(bundle, [x], backend, lie)
    claimant, challenger = (honest, liar) if honest_role == Role.CLAIMANT else (liar, honest)
    res = play_game(bundle, claimant, challenger, backend)
    assert res is not None
    assert res.winner == honest_role, res.reason
    assert res.payouts[honest_role] == sum(res.game.bonds.values()) and res.payouts[honest_role.other] == 0
    n = len(bundle.nodes)
    d1 = max(0, (n - 1).bit_length())
    if lie.kind == "timeout":
        assert "ran out of time" in res.reason and res.rounds <= 1
        return
    if res.pinned_step < 0:
        # the liar could not open a state it made up: it lost on the clock
        assert lie.kind == "intermediate" and "ran out of time" in res.reason and res.rejected
        return
    k = res.node_index
    steps = backend.node_steps(bundle, k, 1)
    d2 = max(0, (steps - 1).bit_length())
    assert res.rounds == d1 + d2 + 2
    assert res.final_witness_bytes > 0
    # phase 1 pinned a real divergence of the liar's states: agreed before node k, wrong after it
    assert liar.phase1_state(k) == honest.phase1_state(k) != liar.phase1_state(k + 1)
    if lie.kind == "intermediate":
        assert k == 0  # every later state of the liar is made up
        return
    # phase 2 pinned the first wrong step of the liar's trace of the node it corrupted
    assert k == liar.lie_node
    honest_trace, liar_trace = honest.node_trace(k), liar.node_trace(k)
    assert isinstance(liar_trace, LyingTrace)
    j = res.pinned_step
    assert j == (min(lie.step, steps - 1) if lie.kind == "step" else steps - 1) == liar_trace.good_until
    assert all(liar_trace.state_hash_at(i) == honest_trace.state_hash_at(i) for i in range(j + 1))
    assert liar_trace.state_hash_at(j + 1) != honest_trace.state_hash_at(j + 1)
    assert res.game.phase == Phase.RESOLVED


@pytest.mark.parametrize("model", ["digits_mlp", "encoder"])
def test_honest_claim_is_not_disputed(game_models, model: str) -> None:
    bundle, x = game_models[model]
    backend = StandinBackend()
    assert play_game(bundle, Player(bundle, [x], backend), Player(bundle, [x], backend), backend) is None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_pins_first_wrong_step_anywhere(game_models, data: st.DataObject) -> None:
    """A liar whose VM trace of node k goes wrong at step s is pinned at exactly (k, s), in both roles."""
    model = data.draw(st.sampled_from(["digits_mlp", "digits_cnn", "encoder"]))
    bundle, x = game_models[model]
    backend = FraudVMBackend()
    k = data.draw(st.integers(0, len(bundle.nodes) - 1))
    s = data.draw(st.integers(0, backend.node_steps(bundle, k, 1) - 1))
    honest_role = data.draw(st.sampled_from(list(Role)))
    honest, liar = Player(bundle, [x], backend), Player(bundle, [x], backend, Lie("step", k, s))
    claimant, challenger = (honest, liar) if honest_role == Role.CLAIMANT else (liar, honest)
    res = play_game(bundle, claimant, challenger, backend)
    assert res is not None and res.winner == honest_role
    assert (res.node_index, res.pinned_step) == (k, s)
    assert 0 < res.final_witness_bytes < 8192


def test_corrupt_changes_fortran_ordered_arrays() -> None:
    """The engine may return F-ordered outputs; a corruption must still change the value."""
    import numpy as np

    from fraud_vm.strategies import corrupt

    for a in (np.asfortranarray(np.arange(24, dtype=np.int8).reshape(2, 3, 4)), np.ones((3, 2), np.float32).T):
        b = corrupt(a)
        assert b.shape == a.shape and b.dtype == a.dtype and int((a != b).sum()) == 1
