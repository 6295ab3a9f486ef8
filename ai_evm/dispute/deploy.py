"""Deploy the L1 contracts of the inference dispute game, wired to the real fraud-VM verifier.

Order and wiring (every constructor argument is an address deployed just before):

    VMProgramBlocked, VMProgramStream         the program derivation (``fraud_vm.stepper``) by family
    VMProgram(blocked, stream)                its router (one contract would exceed EIP-170)
    FraudVMStepVerifier(program)              the one-step verifier (``fraud_vm.vm.verify_step``)
    BundlePhaseLink(program)                  phase links; program lengths from the same derivation
    InferenceDisputeGame(verifier, link, rules)   the game implementation (cloned per challenge)
    DisputeGameFactory(game, challenge window)    the claim registry

``deploy_dispute_contracts(deployer, rules)`` works with anything that can deploy a compiled
artifact by name: the in-process py-evm chains of the tests (``deploy(name, *args)`` returning an
object with an ``address``) or a JSON-RPC node through :class:`Web3Deployer` (anvil, any L1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ai_evm.contracts import artifact
from fraud_vm.game import Rules

__all__ = ["DeploymentError", "Deployed", "Deployer", "DisputeContracts", "Web3Deployer", "deploy_dispute_contracts"]


class DeploymentError(Exception):
    """A contract creation failed (reverted, ran out of gas, or returned no address)."""


class Deployed(Protocol):
    """A deployed contract: only its address is needed to wire the next one."""

    @property
    def address(self) -> Any: ...


class Deployer(Protocol):
    """Deploys the compiled artifact ``name`` (``contracts/build/<name>.json``) with constructor args."""

    def deploy(self, name: str, *args: Any) -> Deployed: ...


@dataclass(frozen=True)
class DisputeContracts:
    """The deployed contracts, as the deployer returned them (in deployment order)."""

    program: Any
    verifier: Any
    phase_link: Any
    game: Any
    factory: Any
    program_families: tuple[Any, ...]


def deploy_dispute_contracts(deployer: Deployer, rules: Rules | None = None) -> DisputeContracts:
    """Deploy and wire the dispute contracts (module docstring) under ``rules`` (``fraud_vm.game.Rules``:
    clocks, bonds, challenge window; the defaults when omitted)."""
    r = Rules() if rules is None else rules
    blocked = deployer.deploy("VMProgramBlocked")
    stream = deployer.deploy("VMProgramStream")
    program = deployer.deploy("VMProgram", blocked.address, stream.address)
    verifier = deployer.deploy("FraudVMStepVerifier", program.address)
    phase_link = deployer.deploy("BundlePhaseLink", program.address)
    game = deployer.deploy("InferenceDisputeGame", verifier.address, phase_link.address, r.clock_s,
                           r.clock_extension_s, r.claim_bond, r.bond_growth_num, r.bond_growth_den)
    factory = deployer.deploy("DisputeGameFactory", game.address, r.challenge_window_s)
    return DisputeContracts(program, verifier, phase_link, game, factory, (blocked, stream))


@dataclass(frozen=True)
class Web3Contract:
    """A contract deployed through :class:`Web3Deployer`: name, checksum address, bound web3 contract."""

    name: str
    address: str
    contract: Any


class Web3Deployer:
    """Deploys artifacts over JSON-RPC with web3.py: ``sender`` is an unlocked account of the node
    (anvil's) or, with ``private_key``, the account that key signs for."""

    def __init__(self, w3: Any, sender: str, private_key: bytes | None = None, gas: int = 12_000_000) -> None:
        self.w3, self.sender, self.key, self.gas = w3, sender, private_key, gas

    def deploy(self, name: str, *args: Any) -> Web3Contract:
        art = artifact(name)
        factory = self.w3.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
        tx = factory.constructor(*args).build_transaction({"from": self.sender, "gas": self.gas})
        if self.key is None:
            tx_hash = self.w3.eth.send_transaction(tx)
        else:
            tx["nonce"] = self.w3.eth.get_transaction_count(self.sender)
            signed = self.w3.eth.account.sign_transaction(tx, self.key)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1 or not receipt.get("contractAddress"):
            raise DeploymentError(f"deploying {name} failed (transaction {tx_hash.hex()})")
        address = receipt["contractAddress"]
        return Web3Contract(name, address, self.w3.eth.contract(address=address, abi=list(art.abi)))
