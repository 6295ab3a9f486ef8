"""``aievm dispute`` on bad external input: clear messages, exit code 2, nothing sent.

Bad addresses and keys, an unreachable L1, an address without code, an unknown claim, a move the
contract rejects (reported by its custom error's name), a claim about other inputs. Also: an honest
challenger does not challenge a true claim, and ``status`` shows claims and games.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from click.testing import CliRunner

from ai_evm.cli import main
from ai_evm.dispute.agent import Agent
from ai_evm.dispute.client import L1, TxReverted, decode_revert
from ai_evm.rollup.anvil import free_port
from fraud_vm.errors import selector_of


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["dispute", *args])


def l1_args(d: Any, acct: Any, factory: str | None = None) -> list[str]:
    return ["--l1", d.url, "--factory", factory or d.factory.address, "--key", acct.key.hex(), "--poll", "0.05"]


def honest(d: Any) -> list[str]:
    return ["--bundle", d.bundle_path, "--input", str(d.input_path)]


def test_decode_revert_names_custom_errors() -> None:
    assert decode_revert(selector_of("UnknownClaim"))[0] == "UnknownClaim"
    assert decode_revert(selector_of("InvalidDescriptorProof"))[0] == "InvalidDescriptorProof"
    assert decode_revert(b"\x12\x34\x56\x78")[0] == "unknown"
    assert decode_revert(b"")[0] == "empty revert"


def test_bad_inputs_give_clear_errors(dispute: Any, tmp_path: Any) -> None:
    d = dispute
    acct = d.new_key("user")
    r = run("status", "0x123", "--l1", d.url)
    assert r.exit_code == 2 and "is not an address" in r.output
    r = run("status", "abc", "--l1", d.url)
    assert r.exit_code == 2 and "neither a game address nor a claim id" in r.output
    r = run("status", "0", "--l1", d.url)
    assert r.exit_code == 2 and "needs --factory" in r.output
    r = run("status", "0", "--l1", f"http://127.0.0.1:{free_port()}", "--factory", d.factory.address)
    assert r.exit_code == 2 and "cannot reach" in r.output
    r = run("claim", "--l1", d.url, "--factory", d.factory.address, "--key", "zz", *honest(d))
    assert r.exit_code == 2 and "not a private key" in r.output
    r = run("claim", *l1_args(d, acct, acct.address), *honest(d))
    assert r.exit_code == 2 and "there is no contract at" in r.output
    r = CliRunner().invoke(main, ["replay", "--game", d.factory.address, "--l1", d.url])
    assert r.exit_code != 0 and "does not answer as an InferenceDisputeGame" in r.output, r.output
    r = CliRunner().invoke(main, ["replay", "--game", "0x12", "--l1", d.url])
    assert r.exit_code != 0 and "is not an address" in r.output
    r = run("status", "5", "--l1", d.url, "--factory", d.factory.address)
    assert r.exit_code == 2 and "reverted with UnknownClaim" in r.output
    r = run("challenge", "5", *l1_args(d, acct), *honest(d))
    assert r.exit_code == 2 and "reverted with UnknownClaim" in r.output
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 3), np.float32))
    r = run("claim", *l1_args(d, acct), "--bundle", d.bundle_path, "--input", str(bad))
    assert r.exit_code == 2 and "cannot run the model" in r.output
    garbage = tmp_path / "garbage.npy"
    garbage.write_text("not an array")
    r = run("claim", *l1_args(d, acct), "--bundle", d.bundle_path, "--input", str(garbage))
    assert r.exit_code == 2 and "cannot read" in r.output
    r = run("claim", *l1_args(d, acct), "--bundle", str(garbage), "--input", str(d.input_path))
    assert r.exit_code == 2 and "cannot load bundle" in r.output
    assert d.factory.functions.claimCount().call() == 0  # nothing was proposed


def test_challenge_checks_the_claim_first(dispute: Any, tmp_path: Any) -> None:
    d = dispute
    a, b, c = d.new_key("claimant"), d.new_key("challenger"), d.new_key("late")
    first = d.w3.eth.block_number
    r = run("claim", *l1_args(d, a), *honest(d), "--no-wait")
    assert r.exit_code == 0, r.output
    claim_id = int(next(x for x in r.output.splitlines() if x.startswith("CLAIM_ID")).split()[1])
    # an honest challenger agrees with a true claim and does not open a game
    r = run("challenge", str(claim_id), *l1_args(d, b), *honest(d))
    assert r.exit_code == 0 and "agrees with our result" in r.output
    assert d.factory.functions.gamesOf(claim_id).call() == []
    # its own claim cannot be challenged; a claim about other inputs is refused before any transaction
    r = run("challenge", str(claim_id), *l1_args(d, a), *honest(d), "--force")
    assert r.exit_code == 2 and "own claim" in r.output
    other = tmp_path / "other.npy"
    np.save(other, d.x + np.float32(1.0))
    r = run("challenge", str(claim_id), *l1_args(d, b), "--bundle", d.bundle_path, "--input", str(other), "--force")
    assert r.exit_code == 2 and "other inputs" in r.output
    r = run("status", str(claim_id), "--l1", d.url, "--factory", d.factory.address)
    assert r.exit_code == 0 and f"claim {claim_id}: claimant {a.address}, pending" in r.output
    # a game about other inputs than the watcher holds is reported and not played
    l1b = L1(d.url, b.key.hex())
    agent_b = Agent(l1b, l1b.contract("DisputeGameFactory", d.factory.address), None)
    game = agent_b.challenge(agent_b.claim_info(claim_id))
    r = run("watch", *l1_args(d, b), "--bundle", d.bundle_path, "--input", str(other))
    assert r.exit_code == 2 and f"game {game}: not played" in r.output, r.output
    assert l1b.contract("InferenceDisputeGame", game).functions.moves().call() == 0
    # after the window a forced challenge is rejected by the factory, by name
    d.increase_time(d.window + 1)
    r = run("challenge", str(claim_id), *l1_args(d, c), *honest(d), "--force")
    assert r.exit_code == 2 and "challenge reverted with ChallengeWindowClosed" in r.output, r.output
    # watch searches the factory's events from --from-block: past the claim it sees nothing to do
    r = run("watch", *l1_args(d, a), "--from-block", str(d.w3.eth.block_number))
    assert r.exit_code == 0 and "0 won, 0 lost" in r.output, r.output
    r = run("watch", *l1_args(d, a), "--from-block", str(d.w3.eth.block_number + 100))
    assert r.exit_code == 2 and "L1 request failed" in r.output, r.output
    assert d.factory.functions.claimRecord(claim_id).call()[3] == 0  # still pending
    # from the test's first block, the claimant's watch ends the idle game by the clock, finalizes
    # the claim and collects its bond
    r = run("watch", *l1_args(d, a), "--from-block", str(first))
    assert "claimTimeout" in r.output and "1 won, 0 lost" in r.output, r.output
    assert r.exit_code == 0 and f"claim {claim_id} finalized" in r.output, r.output
    assert d.factory.functions.credit(a.address).call() == 0
    l1 = L1(d.url, a.key.hex())
    try:
        l1.send(d.factory.functions.finalize(claim_id))
        raise AssertionError("finalize twice was accepted")
    except TxReverted as e:
        assert e.error == "ClaimAlreadyFinal"
