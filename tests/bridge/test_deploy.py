"""The bridge's L1 Portal in a rollup deployment: ``deploy_rollup`` deploys it wired to the output
oracle and records it in rollup.json; older rollup.json files (no ``portal``) still load; a deposit
on anvil locks its ETH in the Portal and emits ``TransactionDeposited`` with the spec's fields."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from ai_evm.contracts import artifact
from ai_evm.dispute.deploy import Web3Deployer
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.config import RollupDeployment
from ai_evm.rollup.deploy import RollupParams, deploy_rollup
from ai_evm.rollup.devnet import DEV_KEYS

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

DEPLOYER = Account.from_key(DEV_KEYS[0])
USER = Account.from_key(DEV_KEYS[3])


def test_deploy_records_the_portal_and_a_deposit_locks_eth(tmp_path: Path) -> None:
    with Anvil(tmp_path / "anvil.log") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        d = deploy_rollup(Web3Deployer(w3, DEPLOYER.address, DEPLOYER.key), DEPLOYER.address, DEPLOYER.address,
                          RollupParams())
        assert d.portal is not None and w3.eth.get_code(d.portal)
        portal = w3.eth.contract(address=d.portal, abi=artifact("Portal").abi)
        assert portal.functions.ORACLE().call() == d.oracle
        rollup = tmp_path / "rollup.json"
        d.save(rollup)
        assert RollupDeployment.load(rollup) == d
        # A deposit from an EOA: from = the EOA itself, the ETH stays in the Portal.
        tx = portal.functions.depositTransaction(USER.address, 5, 100_000, b"\x01\x02").build_transaction(
            {"from": USER.address, "value": 7, "nonce": w3.eth.get_transaction_count(USER.address),
             "gas": 200_000})
        h = w3.eth.send_raw_transaction(USER.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(h)
        assert receipt["status"] == 1
        (event,) = portal.events.TransactionDeposited().process_receipt(receipt)
        assert dict(event["args"]) == {"nonce": 0, "from": USER.address, "to": USER.address, "mint": 7, "value": 5,
                                       "gasLimit": 100_000, "data": b"\x01\x02"}
        assert w3.eth.get_balance(d.portal) == 7 and portal.functions.depositCount().call() == 1


def test_a_rollup_json_without_portal_still_loads(tmp_path: Path) -> None:
    a = "0x" + "11" * 20
    d = RollupDeployment(1, 31337, a, a, a, a, a, a, a, a, a, a, a, 0, "0x" + "01" * 32, 0)
    raw = asdict(d)
    del raw["portal"]
    path = tmp_path / "rollup.json"
    path.write_text(json.dumps(raw))
    assert RollupDeployment.load(path).portal is None


def test_bridge_contracts_fit_eip170() -> None:
    from ai_evm.dispute.pyevm import runtime_sizes

    sizes = runtime_sizes(["Portal", "L2ToL1MessagePasser"])
    assert all(0 < n <= 24_576 for n in sizes.values()), sizes
