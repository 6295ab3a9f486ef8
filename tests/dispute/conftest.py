"""Fixtures for the dispute agents: anvil, the dispute contracts deployed on it, funded keys.

The contracts are the real ones (``ai_evm.dispute.deploy``: ``VMProgram``, ``FraudVMStepVerifier``,
``BundlePhaseLink``, the game, the factory) when their artifacts are built. Without them (or with
``AIEVM_TEST_ORACLE_VERIFIER=1``) the game runs with ``OracleStepVerifier`` instead, a test-only
``IStepVerifier`` + ``IProgramLength`` answering from tables this fixture fills from ``fraud_vm``:
the program length of every node context of the model, and ``verify_step`` of the witness each game
pins, found by refereeing the same two players in Python first. Either way every game is also
refereed in Python, and the L1 game must end the same way.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from ai_evm.contracts import CONTRACTS_DIR, artifact, available
from ai_evm.dispute.agent import make_player
from ai_evm.rollup.anvil import Anvil
from fraud_vm.context import context_for
from fraud_vm.game import Role
from fraud_vm.stepper import num_steps
from fraud_vm.strategies import FraudVMBackend, play_game
from fraud_vm.vm import verify_step
from opml.bundle import Bundle, load_bundle

#: Whether the games run with the real step verifier (else with OracleStepVerifier).
REAL_VERIFIER = (os.environ.get("AIEVM_TEST_ORACLE_VERIFIER") != "1"
                 and {"VMProgram", "FraudVMStepVerifier"} <= set(available())
                 and importlib.util.find_spec("ai_evm.dispute.deploy") is not None)
ROOT = CONTRACTS_DIR.parent
AIEVM = str(Path(sys.executable).parent / "aievm")
CLOCK = 3 * 24 * 3600
EXTENSION = 3 * 3600
WINDOW = 7 * 24 * 3600
CLAIM_BOND = 10**18

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An anvil L1 (Prague, default code-size limit) on a free loopback port."""
    with Anvil(Path(tmp_path_factory.mktemp("anvil")) / "anvil.log") as url:
        yield url


def new_key(w3: Web3, label: str) -> Any:
    """A fresh account (from ``label`` and a counter) funded with 1000 ETH on anvil."""
    new_key.counter += 1  # type: ignore[attr-defined]
    acct = Account.from_key(keccak(f"{label} {new_key.counter}".encode()))  # type: ignore[attr-defined]
    w3.provider.make_request("anvil_setBalance", [acct.address, hex(1000 * 10**18)])  # type: ignore[arg-type]
    return acct


new_key.counter = 0  # type: ignore[attr-defined]


def transact(w3: Web3, acct: Any, tx: dict[str, Any]) -> Any:
    tx = {**tx, "from": acct.address, "nonce": w3.eth.get_transaction_count(acct.address), "chainId": w3.eth.chain_id}
    tx["gas"] = w3.eth.estimate_gas(tx) * 5 // 4  # type: ignore[arg-type]
    tx.setdefault("maxFeePerGas", 2 * 10**10)
    tx.setdefault("maxPriorityFeePerGas", 10**9)
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(
        acct.sign_transaction(tx).raw_transaction))
    assert receipt["status"] == 1, receipt
    return receipt


def deploy(w3: Web3, acct: Any, name: str, *args: Any) -> Any:
    art = artifact(name)
    c = w3.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
    tx = c.constructor(*args).build_transaction({"from": acct.address, "gas": 10_000_000})
    receipt = transact(w3, acct, {"data": tx["data"]})
    return w3.eth.contract(address=receipt["contractAddress"], abi=list(art.abi))


@dataclass
class Dispute:
    """The dispute contracts on anvil for one test, and the model the games are about."""

    url: str
    w3: Web3
    owner: Any
    oracle: Any  # None with the real verifier
    factory: Any
    bundle: Bundle
    input_path: Path
    x: np.ndarray
    #: the bundle's file, for --bundle
    bundle_path: str
    #: the aievm executable of this venv
    aievm: str = AIEVM
    clock: int = CLOCK
    window: int = WINDOW
    claim_bond: int = CLAIM_BOND

    def new_key(self, label: str) -> Any:
        """A fresh account funded with 1000 ETH."""
        return new_key(self.w3, label)

    def increase_time(self, seconds: int) -> None:
        """Move anvil's clock forward and mine a block at the new time."""
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def register_game(self, claimant: str, challenger: str, lie_node: int | None = None, lie_step: int = 1) -> Any:
        """Referee the same two players in Python and register the step their game pins in the oracle.

        Returns the Python game result (winner, node, pinned step) for comparison.
        """
        players = {Role.CLAIMANT: make_player(self.bundle, [self.x], claimant, lie_node, lie_step),
                   Role.CHALLENGER: make_player(self.bundle, [self.x], challenger, lie_node, lie_step)}
        result = play_game(self.bundle, players[Role.CLAIMANT], players[Role.CHALLENGER], FraudVMBackend())
        assert result is not None and result.game is not None
        g = result.game
        if self.oracle is not None and g.num_steps and 0 <= g.pinned_step < g.num_steps:
            mover = g.log[-1].role
            w = players[mover].node_trace(g.node_index).witness_at(g.pinned_step)
            post = verify_step(keccak(w.pre_state), w)
            transact(self.w3, self.owner, {"to": self.oracle.address, "data": self.oracle.encode_abi(
                "setStep", [keccak(w.pre_state), keccak(w.encode()), post])})
        return result


@pytest.fixture(scope="session")
def example_inputs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Bundle, np.ndarray, Path]]:
    """model name -> (bundle, its first test sample, that sample saved as .npy), loaded once per name."""
    cache: dict[str, tuple[Bundle, np.ndarray, Path]] = {}

    def get(name: str) -> tuple[Bundle, np.ndarray, Path]:
        if name not in cache:
            bundle = load_bundle(ROOT / "models" / name / "model.bundle")
            x = np.load(ROOT / "models" / name / "test_x.npy")[:1]
            path = tmp_path_factory.mktemp("inputs") / f"{name}.npy"
            np.save(path, x)
            cache[name] = (bundle, x, path)
        return cache[name]

    return get


def deploy_dispute(url: str, name: str, bundle: Bundle, x: np.ndarray, input_path: Path) -> Dispute:
    """Deploy the dispute contracts (module docstring) for games about ``bundle``."""
    w3 = Web3(Web3.HTTPProvider(url))
    owner = new_key(w3, "deployer")
    bundle_path = str(ROOT / "models" / name / "model.bundle")
    if REAL_VERIFIER:
        from ai_evm.dispute.deploy import Web3Deployer, deploy_dispute_contracts
        from fraud_vm.game import Rules

        rules = Rules(CLOCK, EXTENSION, WINDOW, CLAIM_BOND, 11, 10)
        c = deploy_dispute_contracts(Web3Deployer(w3, owner.address, owner.key, gas=25_000_000), rules)
        return Dispute(url, w3, owner, None, c.factory.contract, bundle, input_path, x, bundle_path)
    oracle = deploy(w3, owner, "OracleStepVerifier")
    link = deploy(w3, owner, "BundlePhaseLink", oracle.address)
    impl = deploy(w3, owner, "InferenceDisputeGame", oracle.address, link.address, CLOCK, EXTENSION, CLAIM_BOND,
                  11, 10)
    factory = deploy(w3, owner, "DisputeGameFactory", impl.address, WINDOW)
    ctxs = [context_for(bundle, k, x.shape[0]) for k in range(len(bundle.nodes))]
    transact(w3, owner, {"to": oracle.address, "data": oracle.encode_abi(
        "setLengths", [[c.hash for c in ctxs], [num_steps(c) for c in ctxs]])})
    return Dispute(url, w3, owner, oracle, factory, bundle, input_path, x, bundle_path)


@pytest.fixture()
def make_dispute(anvil: str, example_inputs: Callable[[str], tuple[Bundle, np.ndarray, Path]]
                 ) -> Callable[[str], Dispute]:
    """model name -> fresh dispute contracts for games about that example model."""
    return lambda name: deploy_dispute(anvil, name, *example_inputs(name))


@pytest.fixture()
def dispute(make_dispute: Callable[[str], Dispute]) -> Dispute:
    """Fresh dispute contracts for one test, games about digits_mlp (games of different tests never meet)."""
    return make_dispute("digits_mlp")
