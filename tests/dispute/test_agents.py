"""Any agents as separate processes (``aievm dispute ...``) playing on anvil.

Honest claimant against a dishonest challenger and the reverse, on digits_mlp: the honest party
wins, the game pins the same node and step as the Python referee, the bonds end with the honest
party (balances, net of the gas each paid). A party that stops moving loses by the clock; an agent
killed mid-game (SIGKILL) and restarted finishes the game with the same outcome.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any

import pytest
from web3 import Web3

from ai_evm.dispute.client import L1, read_game
from fraud_vm.game import Outcome, Role

AGENT_TIMEOUT = 240.0


class AgentProc:
    """One ``aievm dispute`` process with its output collected by a thread."""

    def __init__(self, aievm: str, args: list[str]) -> None:
        self.args = args
        self.proc = subprocess.Popen([aievm, "dispute", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, prefix: str, timeout: float = AGENT_TIMEOUT) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader drain
                if not any(x.startswith(prefix) for x in self.lines):
                    raise AssertionError(f"agent exited {self.proc.returncode} without {prefix!r}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"no {prefix!r} within {timeout} s:\n{self.output}")

    def wait(self, timeout: float = AGENT_TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"agent {self.args[:1]} did not finish in {timeout} s:\n{self.output}") from None
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=5)


def common(d: Any, acct: Any) -> list[str]:
    return ["--l1", d.url, "--factory", d.factory.address, "--key", acct.key.hex(), "--poll", "0.1"]


def player(d: Any, strategy: str) -> list[str]:
    return ["--bundle", d.bundle_path, "--input", str(d.input_path), "--strategy", strategy]


def fees_paid(w3: Web3, address: str, first_block: int) -> int:
    """Gas fees paid by ``address`` in blocks ``first_block..latest``."""
    total = 0
    for n in range(first_block, w3.eth.block_number + 1):
        for tx in w3.eth.get_block(n, full_transactions=True)["transactions"]:
            if tx["from"].lower() == address.lower():  # type: ignore[index]
                r = w3.eth.get_transaction_receipt(tx["hash"])  # type: ignore[index]
                total += r["gasUsed"] * r["effectiveGasPrice"]
    return total


def game_of(d: Any, claim_id: int, timeout: float = AGENT_TIMEOUT) -> str:
    """The one game on a claim, once it is opened."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        games = d.factory.functions.gamesOf(claim_id).call()
        if games:
            assert len(games) == 1
            return str(games[0])
        time.sleep(0.1)
    raise AssertionError(f"no game on claim {claim_id}")


def game_state(d: Any, game: str) -> Any:
    l1 = L1(d.url)
    return read_game(l1, l1.contract("InferenceDisputeGame", game))


def wait_moves(d: Any, game: str, moves: int, timeout: float = AGENT_TIMEOUT) -> None:
    g = L1(d.url).contract("InferenceDisputeGame", game)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if g.functions.moves().call() >= moves:
            return
        time.sleep(0.1)
    raise AssertionError(f"game {game} did not reach {moves} moves")


def play(d: Any, claimant_strategy: str, challenger_strategy: str) -> tuple[str, Any]:
    """A whole game between two agent processes; checks winner, pinned step and balances.

    The game must end as the Python referee ends it between the same players. When the liar stops
    moving there (a ``timeout`` liar, or one whose move is rejected), the test waits until the L1
    game reaches that point and moves anvil's clock past the liar's deadline; the honest agent then
    ends the game with ``claimTimeout``.
    """
    w3 = d.w3
    expected = d.register_game(claimant_strategy, challenger_strategy)
    honest_claimant = claimant_strategy == "honest"
    liar_role = Role.CHALLENGER if honest_claimant else Role.CLAIMANT
    a, b = d.new_key("claimant"), d.new_key("challenger")
    start = w3.eth.block_number + 1
    before = {a.address: w3.eth.get_balance(a.address), b.address: w3.eth.get_balance(b.address)}
    claimant = AgentProc(d.aievm, ["claim", *common(d, a), *player(d, claimant_strategy)])
    claim_id = int(claimant.wait_line("CLAIM_ID").split()[1])
    challenger = AgentProc(d.aievm, ["challenge", str(claim_id), *common(d, b), *player(d, challenger_strategy)])
    game = game_of(d, claim_id)
    if "ran out of time" in expected.reason:
        wait_moves(d, game, expected.rounds)
        st = game_state(d, game)
        assert st.moves == expected.rounds and st.mover == liar_role
        d.increase_time(d.clock + 1)
    assert challenger.wait() == (1 if honest_claimant else 0), challenger.output
    st = game_state(d, game)
    assert st.outcome == (Outcome.CLAIMANT_WINS if honest_claimant else Outcome.CHALLENGER_WINS)
    assert st.outcome == expected.outcome
    assert st.moves == expected.rounds
    if "ran out of time" not in expected.reason:
        assert (st.node_index, st.pinned_step) == (expected.node_index, expected.pinned_step)
    if honest_claimant:
        d.increase_time(d.window + 1)  # the claimant finalizes once the window has passed
    assert claimant.wait() == (0 if honest_claimant else 1), claimant.output
    if "ran out of time" in expected.reason:
        assert "claimTimeout" in (claimant if honest_claimant else challenger).output
    # every bond has been paid out: the game and the factory hold nothing
    assert w3.eth.get_balance(game) == 0, claimant.output + "\n" + challenger.output
    assert w3.eth.get_balance(d.factory.address) == 0, claimant.output + "\n" + challenger.output
    liar_bonds = st.bonds[1] if honest_claimant else st.bonds[0] + d.claim_bond
    honest, liar = (a, b) if honest_claimant else (b, a)
    for acct, sign in ((honest, 1), (liar, -1)):
        delta = w3.eth.get_balance(acct.address) - before[acct.address] + fees_paid(w3, acct.address, start)
        assert delta == sign * liar_bonds, (acct.address, delta, liar_bonds)
    return game, expected


def aievm_run(d: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([d.aievm, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("claimant", "challenger"), [("honest", "node"), ("step", "honest")])
def test_honest_party_wins_against_agent_processes(dispute: Any, claimant: str, challenger: str) -> None:
    game, expected = play(dispute, claimant, challenger)
    # the auditor's replay from L1: every move, the pinned instruction, its re-execution, the outcome
    r = aievm_run(dispute, "replay", "--game", game, "--l1", dispute.url, "--bundle", dispute.bundle_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"{expected.rounds} moves" in out
    assert sum(line.startswith("move ") for line in out.splitlines()) == expected.rounds
    node = dispute.bundle.nodes[expected.node_index]
    assert f"phase 2 opens on node {expected.node_index} ({node.op}" in out
    assert f"pinned: node {expected.node_index} ({node.op}" in out and f"step {expected.pinned_step} of" in out
    assert "which matches the contract's" in out
    assert f"resolved by the one-step check: {expected.outcome.name.lower().replace('_', ' ')}" in out
    # the same without the bundle
    assert aievm_run(dispute, "replay", "--game", game, "--l1", dispute.url).returncode == 0
    r = aievm_run(dispute, "dispute", "status", game, "--l1", dispute.url)
    assert r.returncode == 0 and f"{expected.rounds} moves" in r.stdout
    assert f"phase 2 on node {expected.node_index}" in r.stdout


@pytest.mark.parametrize(("claimant", "challenger"), [("timeout", "honest"), ("honest", "timeout")])
def test_a_party_that_stops_moving_loses_by_the_clock(dispute: Any, claimant: str, challenger: str) -> None:
    game, expected = play(dispute, claimant, challenger)
    r = aievm_run(dispute, "replay", "--game", game, "--l1", dispute.url)
    assert r.returncode == 0, r.stderr
    assert f"{expected.rounds} moves" in r.stdout and "resolved by the clock (claimTimeout)" in r.stdout
    assert "pinned:" not in r.stdout


def test_killed_agents_resume_from_l1(dispute: Any) -> None:
    d, w3 = dispute, dispute.w3
    expected = d.register_game("honest", "node")
    a, b = d.new_key("claimant"), d.new_key("challenger")
    claimant = AgentProc(d.aievm, ["claim", *common(d, a), *player(d, "honest")])
    claim_id = int(claimant.wait_line("CLAIM_ID").split()[1])
    challenger = AgentProc(d.aievm, ["challenge", str(claim_id), *common(d, b), *player(d, "node")])
    game = game_of(d, claim_id)
    wait_moves(d, game, 2)
    claimant.kill()  # mid phase 1
    claimant = AgentProc(d.aievm, ["watch", *common(d, a), *player(d, "honest")])
    wait_moves(d, game, 6)
    challenger.kill()  # in phase 2
    challenger = AgentProc(d.aievm, ["challenge", str(claim_id), *common(d, b), *player(d, "node")])
    assert challenger.wait() == 1, challenger.output
    assert "resuming game" in challenger.output
    d.increase_time(d.window + 1)
    assert claimant.wait() == 0, claimant.output
    st = game_state(d, game)
    assert st.outcome == expected.outcome == Outcome.CLAIMANT_WINS
    assert (st.node_index, st.pinned_step, st.moves) == (expected.node_index, expected.pinned_step, expected.rounds)
    assert w3.eth.get_balance(game) == 0 and w3.eth.get_balance(d.factory.address) == 0


STRATEGIES = ("output", "node", "intermediate", "step", "timeout")


@pytest.mark.parametrize("model", ["digits_mlp", "digits_cnn", "encoder"])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("liar", ["claimant", "challenger"])
def test_full_matrix(make_dispute: Any, model: str, strategy: str, liar: str) -> None:
    """Every dishonest strategy, every example model, both roles: the honest agent wins every game."""
    d = make_dispute(model)
    play(d, strategy if liar == "claimant" else "honest", strategy if liar == "challenger" else "honest")


def test_an_honest_claimant_defends_against_two_challengers_at_once(dispute: Any) -> None:
    """Two dishonest challengers open games on one true claim; one claimant agent plays both."""
    d, w3 = dispute, dispute.w3
    expected = {s: d.register_game("honest", s) for s in ("node", "step")}
    a = d.new_key("claimant")
    liars = {s: d.new_key(f"challenger {s}") for s in expected}
    start = w3.eth.block_number + 1
    before = w3.eth.get_balance(a.address)
    claimant = AgentProc(d.aievm, ["claim", *common(d, a), *player(d, "honest")])
    claim_id = int(claimant.wait_line("CLAIM_ID").split()[1])
    procs = {s: AgentProc(d.aievm, ["challenge", str(claim_id), *common(d, k), *player(d, s)])
             for s, k in liars.items()}
    for p in procs.values():
        assert p.wait() == 1, p.output
    games = {str(g) for g in d.factory.functions.gamesOf(claim_id).call()}
    assert len(games) == 2
    won = 0
    for g in games:
        st = game_state(d, g)
        strategy = next(s for s, k in liars.items() if k.address.lower() == st.challenger.lower())
        e = expected[strategy]
        assert (st.outcome, st.node_index, st.pinned_step, st.moves) == (Outcome.CLAIMANT_WINS, e.node_index,
                                                                          e.pinned_step, e.rounds)
        won += st.bonds[1]
    d.increase_time(d.window + 1)
    assert claimant.wait() == 0, claimant.output
    assert all(w3.eth.get_balance(g) == 0 for g in games) and w3.eth.get_balance(d.factory.address) == 0
    assert w3.eth.get_balance(a.address) - before + fees_paid(w3, a.address, start) == won


def test_a_lying_claimant_loses_to_two_challengers(dispute: Any) -> None:
    """The claim is rejected by the first challenger to win (who gets the claim bond); the liar's
    agent still plays the other game to its end, which the second challenger wins too."""
    d, w3 = dispute, dispute.w3
    expected = d.register_game("node", "honest")
    a = d.new_key("claimant")
    honest = [d.new_key("challenger 1"), d.new_key("challenger 2")]
    claimant = AgentProc(d.aievm, ["claim", *common(d, a), *player(d, "node")])
    claim_id = int(claimant.wait_line("CLAIM_ID").split()[1])
    procs = [AgentProc(d.aievm, ["challenge", str(claim_id), *common(d, k), *player(d, "honest")]) for k in honest]
    for p in procs:
        assert p.wait() == 0, p.output
    assert claimant.wait() == 1, claimant.output
    games = [str(g) for g in d.factory.functions.gamesOf(claim_id).call()]
    assert len(games) == 2
    for g in games:
        st = game_state(d, g)
        assert (st.outcome, st.node_index, st.pinned_step, st.moves) == (
            Outcome.CHALLENGER_WINS, expected.node_index, expected.pinned_step, expected.rounds)
        assert w3.eth.get_balance(g) == 0
    rec = d.factory.functions.claimRecord(claim_id).call()
    assert rec[3] == 1 and str(rec[5]) in games  # rejected by one of the games
    assert w3.eth.get_balance(d.factory.address) == 0  # its challenger collected the claim bond
