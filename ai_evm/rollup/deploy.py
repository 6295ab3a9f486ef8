"""Deploy a rollup's L1 contracts (``aievm rollup deploy``) and write its ``rollup.json``.

Order: the dispute contracts (``ai_evm.dispute.deploy``: VMProgram, FraudVMStepVerifier,
BundlePhaseLink, InferenceDisputeGame, DisputeGameFactory), then ``BatchInbox(batcher)``,
``ModelRegistry(phaseLink, fee)``, ``OutputOracle(proposer, bond, window)``,
``InferenceRecordDisputes(oracle, registry, factory, challengeBond, responseWindow)``, the
oracle's ``setDisputeAuthority(disputes)`` and the bridge's ``Portal(oracle)`` (docs/bridge.md).
The L1 block of the last deployment is the rollup's genesis L1 origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3

from ai_evm.dispute.deploy import DeploymentError, Web3Deployer, deploy_dispute_contracts
from fraud_vm.game import Rules

from .config import RollupDeployment


@dataclass(frozen=True)
class RollupParams:
    """Economic and timing parameters of a deployment (wei, seconds)."""

    registration_fee: int = 10**16
    proposer_bond: int = 10**18
    challenge_window: int = 7 * 24 * 3600
    challenge_bond: int = 10**17
    response_window: int = 24 * 3600
    output_interval: int = 10
    l2_chain_id: int = 31337


def _transact(deployer: Web3Deployer, fn: Any) -> None:
    tx = fn.build_transaction({"from": deployer.sender, "gas": 200_000})
    if deployer.key is None:
        h = deployer.w3.eth.send_transaction(tx)
    else:
        tx["nonce"] = deployer.w3.eth.get_transaction_count(deployer.sender)
        signed = deployer.w3.eth.account.sign_transaction(tx, deployer.key)
        h = deployer.w3.eth.send_raw_transaction(signed.raw_transaction)
    if deployer.w3.eth.wait_for_transaction_receipt(h)["status"] != 1:
        raise DeploymentError(f"transaction {h.hex()} failed")


def deploy_rollup(deployer: Web3Deployer, batcher: str, proposer: str, params: RollupParams | None = None,
                  rules: Rules | None = None) -> RollupDeployment:
    """Deploy and wire every L1 contract of a rollup (module docstring)."""
    p = params or RollupParams()
    w3: Web3 = deployer.w3
    d = deploy_dispute_contracts(deployer, rules)
    inbox = deployer.deploy("BatchInbox", Web3.to_checksum_address(batcher))
    registry = deployer.deploy("ModelRegistry", d.phase_link.address, p.registration_fee)
    oracle = deployer.deploy("OutputOracle", Web3.to_checksum_address(proposer), p.proposer_bond, p.challenge_window)
    disputes = deployer.deploy("InferenceRecordDisputes", oracle.address, registry.address, d.factory.address,
                               p.challenge_bond, p.response_window)
    _transact(deployer, oracle.contract.functions.setDisputeAuthority(disputes.address))
    portal = deployer.deploy("Portal", oracle.address)
    genesis = w3.eth.get_block("latest")
    return RollupDeployment(
        l1_chain_id=int(w3.eth.chain_id), l2_chain_id=p.l2_chain_id,
        batcher=Web3.to_checksum_address(batcher), proposer=Web3.to_checksum_address(proposer),
        inbox=inbox.address, registry=registry.address, oracle=oracle.address, disputes=disputes.address,
        factory=d.factory.address, game=d.game.address, verifier=d.verifier.address, program=d.program.address,
        phase_link=d.phase_link.address, genesis_l1_number=int(genesis["number"]),
        genesis_l1_hash="0x" + bytes(genesis["hash"]).hex(), genesis_l1_timestamp=int(genesis["timestamp"]),
        output_interval=p.output_interval, portal=portal.address,
    )


__all__ = ["RollupParams", "deploy_rollup"]
