"""The withdrawal client (``ai_evm.bridge.client``) end to end on two anvils: the L1 with the rollup's
contracts (``deploy_rollup``, a 3 s challenge window) and a stand-in L2 (anvil with the
``L2ToL1MessagePasser`` code at its predeploy address), whose ``eth_getProof`` is an implementation
independent of ours (foundry's). Withdraw on L2, prove against an output holding the L2 block's state
root, wait for the window, finalize (ETH released from the Portal's deposits); proving before any
output, finalizing before the window and twice fail with messages; an output deleted by a dispute
makes the proof stale until it is proven again against a new output."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from ai_evm.bridge.client import Bridge, BridgeError
from ai_evm.bridge.withdrawal import MESSAGE_PASSER
from ai_evm.contracts import artifact
from ai_evm.dispute.deploy import Web3Deployer
from ai_evm.rollup.anvil import Anvil
from ai_evm.rollup.config import RollupDeployment
from ai_evm.rollup.deploy import RollupParams, deploy_rollup
from ai_evm.rollup.devnet import DEV_KEYS

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")

DEPLOYER = Account.from_key(DEV_KEYS[0])
PROPOSER = Account.from_key(DEV_KEYS[2])
USER = Account.from_key(DEV_KEYS[3])
RECIPIENT = "0x000000000000000000000000000000000000bEEF"
WINDOW = 3


@pytest.fixture
def chains(tmp_path: Path) -> Iterator[tuple[Web3, Web3, RollupDeployment]]:
    with Anvil(tmp_path / "l1.log") as l1_url, Anvil(tmp_path / "l2.log") as l2_url:
        l1, l2 = Web3(Web3.HTTPProvider(l1_url)), Web3(Web3.HTTPProvider(l2_url))
        d = deploy_rollup(Web3Deployer(l1, DEPLOYER.address, DEPLOYER.key), DEPLOYER.address, PROPOSER.address,
                          RollupParams(challenge_window=WINDOW))
        code = artifact("L2ToL1MessagePasser").deployed_bytecode
        l2.provider.make_request("anvil_setCode", [MESSAGE_PASSER, "0x" + code.hex()])  # type: ignore[arg-type]
        yield l1, l2, d


def send(w3: Web3, account: object, fn: object, value: int = 0) -> None:
    acct: object = account
    tx = fn.build_transaction({"from": acct.address, "value": value,  # type: ignore[attr-defined]
                               "nonce": w3.eth.get_transaction_count(acct.address)})  # type: ignore[attr-defined]
    h = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)  # type: ignore[attr-defined]
    assert w3.eth.wait_for_transaction_receipt(h)["status"] == 1


def propose(l1: Web3, l2: Web3, d: RollupDeployment) -> int:
    """Propose the L2 head as the next output (its state root from the L2 node); returns its index."""
    oracle = l1.eth.contract(address=d.oracle, abi=artifact("OutputOracle").abi)
    head = l2.eth.get_block("latest")
    ts = min(int(head["timestamp"]), int(l1.eth.get_block("latest")["timestamp"]))
    fn = oracle.functions.propose(int(head["number"]), ts, bytes(head["hash"]), bytes(head["stateRoot"]), b"")
    send(l1, PROPOSER, fn, value=10**18)
    return int(oracle.functions.outputCount().call()) - 1


def pass_window(l1: Web3) -> None:
    l1.provider.make_request("evm_increaseTime", [WINDOW + 1])  # type: ignore[arg-type]
    l1.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def test_withdrawal_round_trip_with_anvils_proofs(chains: tuple[Web3, Web3, RollupDeployment]) -> None:
    l1, l2, d = chains
    portal = l1.eth.contract(address=d.portal, abi=artifact("Portal").abi)
    send(l1, USER, portal.functions.depositTransaction(USER.address, 0, 100_000, b""), value=5 * 10**18)
    said: list[str] = []
    bridge = Bridge(d, l1, l2, USER.key, echo=said.append, poll=0.2)
    tx, w = bridge.withdraw(RECIPIENT, 10**18, 100_000, b"")
    assert w.sender == USER.address and w.value == 10**18
    assert l2.eth.get_balance(MESSAGE_PASSER) == 10**18  # the ETH stays in the predeploy on L2
    with pytest.raises(BridgeError, match="waiting for an output covering L2 block"):
        bridge.prove(tx, wait=False)
    index = propose(l1, l2, d)
    assert bridge.prove(tx) == index
    with pytest.raises(BridgeError, match="AlreadyProven"):
        bridge.prove(tx)
    assert "final in" in bridge.status(tx).describe()
    with pytest.raises(BridgeError, match="s to go"):
        bridge.finalize(tx, wait=False)
    pass_window(l1)
    before = l1.eth.get_balance(RECIPIENT)
    assert bridge.finalize(tx) is True  # finalizes the oracle's output itself, then the withdrawal
    assert l1.eth.get_balance(RECIPIENT) - before == 10**18
    assert l1.eth.get_balance(d.portal) == 4 * 10**18
    assert bridge.status(tx).finalized
    with pytest.raises(BridgeError, match="finalized"):
        bridge.finalize(tx)
    assert any("proven against output" in m for m in said) and any("finalized" in m for m in said)


def test_deleted_output_makes_the_proof_stale(chains: tuple[Web3, Web3, RollupDeployment]) -> None:
    l1, l2, d = chains
    portal = l1.eth.contract(address=d.portal, abi=artifact("Portal").abi)
    oracle = l1.eth.contract(address=d.oracle, abi=artifact("OutputOracle").abi)
    send(l1, USER, portal.functions.depositTransaction(USER.address, 0, 100_000, b""), value=10**18)
    bridge = Bridge(d, l1, l2, USER.key, poll=0.2)
    tx, _ = bridge.withdraw(RECIPIENT, 10**17, 100_000, b"\x01")
    index = propose(l1, l2, d)
    bridge.prove(tx)
    # The dispute authority (the record-disputes contract) proves the output wrong: it is deleted.
    l1.provider.make_request("anvil_impersonateAccount", [d.disputes])  # type: ignore[arg-type]
    l1.provider.make_request("anvil_setBalance", [d.disputes, hex(10**18)])  # type: ignore[arg-type]
    nonce = oracle.functions.output(index).call()[6]
    for fn in (oracle.functions.openDispute(index, nonce), oracle.functions.closeDispute(index, nonce, True,
                                                                                         DEPLOYER.address)):
        h = fn.transact({"from": d.disputes})
        assert l1.eth.wait_for_transaction_receipt(h)["status"] == 1
    assert bridge.status(tx).proof_stale
    with pytest.raises(BridgeError, match="prove again"):
        bridge.finalize(tx)
    # Anyone may propose after a deletion; a new output at the same index, proven again, finalizes.
    assert propose(l1, l2, d) == index
    bridge.prove(tx)
    pass_window(l1)
    assert bridge.finalize(tx) is True


def test_cli_withdraw_prove_finalize_status(chains: tuple[Web3, Web3, RollupDeployment], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ai_evm.cli import main

    l1, l2, d = chains
    rollup = tmp_path / "rollup.json"
    d.save(rollup)
    portal = l1.eth.contract(address=d.portal, abi=artifact("Portal").abi)
    send(l1, USER, portal.functions.depositTransaction(USER.address, 0, 100_000, b""), value=10**18)
    ends = ["--rollup", str(rollup), "--l1", l1.provider.endpoint_uri, "--l2",  # type: ignore[attr-defined]
            l2.provider.endpoint_uri]  # type: ignore[attr-defined]
    key = ["--key", "0x" + USER.key.hex()]
    run = CliRunner().invoke
    out = run(main, ["bridge", "withdraw", *ends, *key, "--to", RECIPIENT, "--value", str(10**17)])
    assert out.exit_code == 0, out.output
    tx = out.output.strip().splitlines()[-1]
    out = run(main, ["bridge", "status", *ends, "--tx", tx])
    assert out.exit_code == 0 and "not proven (no output covers it yet)" in out.output, out.output
    out = run(main, ["bridge", "prove", *ends, *key, "--tx", tx, "--no-wait"])
    assert out.exit_code == 2 and "block(s) to go" in out.output, out.output
    propose(l1, l2, d)
    out = run(main, ["bridge", "status", *ends, "--tx", tx])
    assert "ready to prove against output 0" in out.output, out.output
    out = run(main, ["bridge", "prove", *ends, *key, "--tx", tx])
    assert out.exit_code == 0 and "proven against output 0" in out.output, out.output
    out = run(main, ["bridge", "finalize", *ends, *key, "--tx", tx, "--no-wait"])
    assert out.exit_code == 2 and "s to go" in out.output, out.output
    pass_window(l1)
    out = run(main, ["bridge", "finalize", *ends, *key, "--tx", tx])
    assert out.exit_code == 0 and "its call succeeded" in out.output, out.output
    out = run(main, ["bridge", "status", *ends, "--tx", tx])
    assert out.exit_code == 0 and "finalized" in out.output, out.output
    out = run(main, ["bridge", "status", *ends, "--tx", "0x1234"])
    assert out.exit_code == 2 and "32 bytes" in out.output, out.output
