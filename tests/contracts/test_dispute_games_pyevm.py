"""Whole dispute games on the compiled contracts in py-evm (no processes): every dishonest strategy
of ``fraud_vm.strategies`` against the honest player on digits_mlp, in both roles.

Each game goes through the factory as on L1 (propose, challenge, moves, ``claimTimeout``,
``claimCredit``, ``finalize``), driven by ``ai_evm.dispute.pyevm_game.play``, which runs the Python
referee in lockstep and fails with ``Divergence`` if the contract's verdict on any move (accepted,
or rejected with which error) or its state after any move differs from ``fraud_vm.game``'s. The
honest party must win, and the money must end with it: its net gain is exactly the liar's bonds
(the liar's move bonds, and the claim bond when the liar claimed), measured from balances with the
gas paid added back; the game and the factory hold nothing afterwards.

The contracts are the ones L1 gets (``ai_evm.dispute.deploy``: ``FraudVMStepVerifier`` over the
``VMProgram`` router, ``BundlePhaseLink``, the game, the factory), so every ``openSteps`` derives the
program length on chain and every final ``step`` is re-executed by the Solidity verifier from the
witness the honest player's ``fraud_vm`` trace produced.
"""

from __future__ import annotations

import numpy as np
import pytest

from ai_evm.contracts import CONTRACTS_DIR
from ai_evm.dispute.pyevm import PragueChain
from ai_evm.dispute.pyevm_game import Deployment, deploy, play
from fraud_vm.game import Role
from fraud_vm.strategies import FraudVMBackend, Lie, Player
from opml.bundle import Bundle, load_bundle

MODELS = CONTRACTS_DIR.parent / "models"


@pytest.fixture(scope="module")
def model() -> tuple[Bundle, np.ndarray]:
    d = MODELS / "digits_mlp"
    return load_bundle(d / "model.bundle"), np.load(d / "test_x.npy")[:1]


@pytest.fixture(scope="module")
def backend() -> FraudVMBackend:
    return FraudVMBackend()


@pytest.fixture(scope="module")
def dep() -> Deployment:
    return deploy(PragueChain())


def lies(bundle: Bundle, backend: FraudVMBackend) -> list[Lie]:
    """Every dishonest strategy, at the first node, the middle node and the middle of its program."""
    n = len(bundle.nodes)
    mid = n // 2
    steps = backend.node_steps(bundle, mid, 1)
    return [Lie("output"), Lie("node", 0), Lie("node", mid), Lie("intermediate", mid), Lie("step", mid, steps // 2),
            Lie("step", mid, 0), Lie("timeout", mid)]


LIE_IDS = ["output", "node0", "node-mid", "intermediate", "step-mid", "step0", "timeout"]


@pytest.mark.parametrize("honest_role", list(Role), ids=lambda r: f"honest-{r.name.lower()}")
@pytest.mark.parametrize("lie_index", range(len(LIE_IDS)), ids=LIE_IDS)
def test_honest_player_wins_on_chain(dep: Deployment, model: tuple[Bundle, np.ndarray], backend: FraudVMBackend,
                                     honest_role: Role, lie_index: int) -> None:
    bundle, x = model
    lie = lies(bundle, backend)[lie_index]
    honest, liar = Player(bundle, [x], backend), Player(bundle, [x], backend, lie)
    claimant, challenger = (honest, liar) if honest_role == Role.CLAIMANT else (liar, honest)
    result = play(dep, bundle, claimant, challenger, backend)
    assert result is not None, "a liar always disputes, and an honest challenger disputes a lie"
    g = result.game
    assert result.winner == honest_role, (result.outcome, g.reason, result.rejected)
    loser = honest_role.other
    # the money: the winner gains exactly the loser's bonds, the loser loses them
    rules = dep.rules
    loser_bonds = g.bonds[loser] + (rules.bond(0) if loser == Role.CLAIMANT else 0)
    assert result.net[honest_role] == loser_bonds
    assert result.net[loser] == -loser_bonds
    chain = dep.chain
    assert chain.balance(result.address) == 0, "the game paid out everything"
    assert chain.balance(dep.factory.address) == 0, "the factory paid out the claim bond"
    game = chain.at("InferenceDisputeGame", result.address)
    assert game.value("credit", chain.accounts[1]) == game.value("credit", chain.accounts[2]) == 0
    status = dep.factory.value("claimRecord", result.claim_id)[3]  # (hash, claimant, createdAt, status, ..)
    assert status == (2 if honest_role == Role.CLAIMANT else 1), "final when the claimant won, else rejected"
    # how it ended
    moves = [t for t in result.txs if t.kind not in ("propose", "challenge", "claimCredit (game)", "finalize",
                                                       "claimCredit (factory)")]
    if lie.kind == "timeout":
        assert [t.kind for t in moves][-1] == "claimTimeout" and moves[-1].role == honest_role
        assert all(t.kind == "bisect (nodes)" for t in moves[:-1]), "a silent liar never moves"
    elif lie.kind == "intermediate" and honest_role == Role.CHALLENGER:
        # the liar's made-up phase-1 states: its own outputs contradict the state it claimed
        assert [(t.kind, t.error) for t in moves if not t.ok] == [("openSteps", "OutputsContradictClaim")]
        assert moves[-1].kind == "claimTimeout" and moves[-1].role == honest_role
    else:
        assert all(t.ok for t in moves) and moves[-1].kind == "step", [(t.kind, t.error) for t in moves]
        if lie.kind in ("output", "node", "step"):
            # the first wrong node, and the first wrong step of its program
            assert g.node_index == liar.lie_node
            last = backend.node_steps(bundle, g.node_index, 1) - 1
            assert g.pinned_step == (lie.step if lie.kind == "step" else last)


def test_chain_keeps_block_time_and_gas_limit() -> None:
    """Transactions execute at the block time asked for (the game's clocks read it), and the block gas
    limit does not drift down over many near-empty blocks (a whole benchmark run mines thousands)."""
    chain = PragueChain()
    d = deploy(chain, oracle=True)
    limit = chain.chain.get_canonical_head().gas_limit
    for _ in range(50):
        assert d.factory.transact("claimCount").ok
    assert chain.chain.get_canonical_head().gas_limit == limit
    t = chain.timestamp + 1000
    tx = d.game_impl.transact("claimTimeout", timestamp=t)  # the implementation is resolved: GameOver
    assert (tx.ok, tx.error, tx.timestamp, chain.timestamp) == (False, "GameOver", t, t)


#: Issue 12's bound on a whole game on the encoder (every transaction of both players).
ENCODER_GAME_GAS = 5_000_000


def test_encoder_game_within_5m_gas(dep: Deployment, backend: FraudVMBackend) -> None:
    """The encoder's costliest game shape: the lie at the node with the longest program (the most
    phase-2 bisection moves) with a final ``step``; the whole game, claim to settlement, stays below
    5M gas (docs/dispute_game.md §10 measures ~3.0M for the mid node)."""
    d = MODELS / "encoder"
    bundle, x = load_bundle(d / "model.bundle"), np.load(d / "test_x.npy")[:1]
    lengths = {k: backend.node_steps(bundle, k, 1) for k in range(len(bundle.nodes))}
    node = max(lengths, key=lambda k: lengths[k])
    honest, liar = Player(bundle, [x], backend), Player(bundle, [x], backend, Lie("node", node))
    result = play(dep, bundle, honest, liar, backend)
    assert result is not None and result.winner == Role.CLAIMANT, result and result.outcome
    assert result.game.node_index == node and [t.kind for t in result.txs if t.ok].count("step") == 1
    assert result.total_gas() < ENCODER_GAME_GAS, result.total_gas()
    print(f"encoder node {node} ({lengths[node]} steps): {len(result.txs)} transactions, {result.total_gas():,} gas")
