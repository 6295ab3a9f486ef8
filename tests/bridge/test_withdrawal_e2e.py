"""A withdrawal round trip on real components: anvil as L1 with the rollup deployed (3 s challenge
window, an output per L2 block), the sequencer node (whose ``eth_getProof`` the client proves with),
and the proposer agent. A deposit funds the Portal and the user's L2 account; the user withdraws on
L2 (``aievm bridge withdraw``'s client), the proposer posts outputs, the client proves the withdrawal
against the output holding its block (the node's proof checked by py-trie and by the Portal's
``LibMPT``), waits for the window and finalizes: the ETH arrives on L1. Proving before any output,
finalizing before the window and finalizing twice fail, and so does a forged withdrawal with the
real proof."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from ai_evm.bridge.client import Bridge, BridgeError
from ai_evm.bridge.withdrawal import MESSAGE_PASSER, Withdrawal
from ai_evm.contracts import artifact
from ai_evm.dispute.client import L1
from ai_evm.dispute.deploy import Web3Deployer
from ai_evm.rollup.agents import Proposer
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.deploy import RollupParams, deploy_rollup
from ai_evm.rollup.devnet import DEV_KEYS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ai_evm" / "node"))
from nodeproc import NodeProcess  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

DEPLOYER = Account.from_key(DEV_KEYS[0])
BATCHER = Account.from_key(DEV_KEYS[1])
PROPOSER = Account.from_key(DEV_KEYS[2])
USER = Account.from_key(DEV_KEYS[3])
RECIPIENT = "0x000000000000000000000000000000000000bEEF"
ETH = 10**18


@pytest.fixture
def l1(tmp_path: Path) -> Iterator[str]:
    with Anvil(tmp_path / "anvil.log", block_time=1) as url:
        yield url


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := cond():
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_withdrawal_round_trip_on_the_l2_node(l1: str, tmp_path: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(l1))
    d = deploy_rollup(Web3Deployer(w3, DEPLOYER.address, DEPLOYER.key), BATCHER.address, PROPOSER.address,
                      RollupParams(challenge_window=3, output_interval=1))
    assert d.portal is not None
    rollup = tmp_path / "rollup.json"
    d.save(rollup)
    (tmp_path / "seq").mkdir()
    seq = NodeProcess(tmp_path / "seq", args=("--rollup", str(rollup), "--l1", l1, "--no-fsync")).start()
    try:
        l2 = Web3(Web3.HTTPProvider(seq.url))
        # A deposit: 2 ETH locked in the Portal, minted to the user on L2.
        portal = w3.eth.contract(address=d.portal, abi=artifact("Portal").abi)
        before = l2.eth.get_balance(USER.address)
        tx = portal.functions.depositTransaction(USER.address, 0, 21_000, b"").build_transaction(
            {"from": USER.address, "value": 2 * ETH, "nonce": w3.eth.get_transaction_count(USER.address, "pending")})
        assert w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(USER.sign_transaction(tx).raw_transaction))["status"] == 1
        wait_for(lambda: l2.eth.get_balance(USER.address) >= before + 2 * ETH, 60, "the deposit on L2")

        said: list[str] = []
        bridge = Bridge(d, w3, l2, USER.key, echo=said.append, poll=0.5)
        l2_tx, w = bridge.withdraw(RECIPIENT, ETH, 100_000, b"")
        assert l2.eth.get_balance(MESSAGE_PASSER) == ETH
        with pytest.raises(BridgeError, match="waiting for an output covering L2 block"):
            bridge.prove(l2_tx, wait=False)

        proposer = Proposer(L1(l1, DEV_KEYS[2]), seq.rpc, d, lambda m: None,  # type: ignore[arg-type,return-value]
                            tmp_path / "proposer.json", out=said.append)
        _, block = bridge.find(l2_tx)
        wait_for(lambda: proposer.propose_due() or bridge.output_covering(block) is not None, 60,
                 "the proposer to post an output covering the withdrawal")
        index = bridge.prove(l2_tx)
        # The same proof does not prove another withdrawal (a forged value): refused before sending.
        forged = Withdrawal(w.nonce, w.sender, w.target, 2 * ETH, w.gas_limit, w.data)
        proof = bridge.proof_for(w, index)
        fn = bridge.portal.functions.proveWithdrawal(forged.as_tuple(), index, list(proof.account_proof),
                                                     list(proof.storage_proof[0].proof))
        with pytest.raises(BridgeError, match="proveWithdrawal would revert"):
            bridge._send(w3, fn, "proveWithdrawal")
        with pytest.raises(BridgeError, match="s to go"):
            bridge.finalize(l2_tx, wait=False)
        got = w3.eth.get_balance(RECIPIENT)
        assert bridge.finalize(l2_tx, timeout=60) is True
        assert w3.eth.get_balance(RECIPIENT) - got == ETH
        assert w3.eth.get_balance(d.portal) == ETH
        with pytest.raises(BridgeError, match="finalized"):
            bridge.finalize(l2_tx)
        assert any("waiting for output" in m or "final" in m for m in said), said
    finally:
        seq.stop()
