"""The devnet's set-up: example models in the node's store, example contracts deployed at genesis.

:func:`prepare_devnet` is idempotent: on a fresh datadir it adds every ``models/*/model.bundle``
to ``DATADIR/models`` and deploys ``AIContract`` and ``DigitsClassifier`` (bound to the
``digits_mlp`` model) from dev account 0 in one block; on a restart it reuses what
``DATADIR/devnet.json`` recorded. That file (also printed at start) lists the RPC URL, chain id,
accounts, model addresses and contract addresses for scripts such as ``scripts/demo.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_typing import Address

from .chain import Sequencer

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
INFO_FILE = "devnet.json"
CLASSIFIER_MODEL = "digits_mlp"


class DevnetError(Exception):
    """The devnet could not be prepared (missing bundles, deployment failed...)."""


def add_example_models(datadir: Path, models_dir: Path = MODELS_DIR) -> dict[str, str]:
    """Put every ``models_dir/*/model.bundle`` into ``DATADIR/models``; name -> 0x address."""
    from opml.store import LocalStore

    store = LocalStore(datadir / "models")
    out = {}
    for bundle in sorted(models_dir.glob("*/model.bundle")):
        out[bundle.parent.name] = "0x" + store.put(bundle.read_bytes()).hex()
    return out


def _deploy(seq: Sequencer, contracts: list[tuple[str, bytes]]) -> dict[str, str]:
    """Deploy creation codes from dev account 0 in one block; name -> address."""
    acct = seq.config.accounts[0]
    with seq.lock:
        nonce = seq.pool.pending_nonce(acct.address_bytes, seq.head_state().get_nonce(Address(acct.address_bytes)))
        base_fee = seq.limits().base_fee
    txs = []
    for i, (_, code) in enumerate(contracts):
        fields = {"nonce": nonce + i, "gas": 5_000_000, "value": 0, "data": code, "chainId": seq.config.chain_id,
                  "maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9, "type": 2}  # fmt: skip
        txs.append(seq.decode_raw(bytes(Account.sign_transaction(fields, acct.private_key).raw_transaction)))
    errors = [e for e in seq.submit(txs) if e is not None]
    if errors:
        raise DevnetError(f"deploying the example contracts failed: {errors[0]}")
    seq.mine_pending()
    out = {}
    for (name, _), tx in zip(contracts, txs, strict=True):
        loc = seq.tx_location(bytes(tx.hash))
        record = seq.record(loc[0]) if loc else None
        receipt = record["receipts"][loc[1]] if record and loc else None
        if receipt is None or receipt["status"] != "0x1":
            raise DevnetError(f"deploying {name} failed (receipt {receipt})")
        out[name] = receipt["contractAddress"]
    return out


def prepare_devnet(seq: Sequencer, datadir: Path, url: str) -> dict[str, Any]:
    """Models and contracts for a devnet on ``seq``; returns (and writes) the devnet info."""
    info_path = datadir / INFO_FILE
    models = add_example_models(datadir)
    contracts: dict[str, str] = {}
    notes: list[str] = []
    if info_path.exists():
        contracts = json.loads(info_path.read_text()).get("contracts", {})
    elif seq.head().block_number == 0:
        contracts, notes = _deploy_examples(seq, models)
    info = {
        "rpcUrl": url,
        "chainId": seq.config.chain_id,
        "accounts": [{"address": a.address, "privateKey": "0x" + a.private_key.hex()} for a in seq.config.accounts],
        "models": models,
        "contracts": contracts,
        "notes": notes,
    }
    _write(info_path, info)
    return info


def _write(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(path)


def update_rpc_url(datadir: Path, url: str) -> None:
    """Record the URL the server actually listens on (``--port 0``) in ``DATADIR/devnet.json``."""
    path = datadir / INFO_FILE
    info = json.loads(path.read_text())
    info["rpcUrl"] = url
    _write(path, info)


def _deploy_examples(seq: Sequencer, models: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    try:
        from ai_evm.contracts import artifact

        ai_contract = artifact("AIContract").bytecode
        classifier = artifact("DigitsClassifier").bytecode
    except Exception as e:  # artifacts not built yet
        return {}, [f"example contracts not deployed: {e}"]
    if CLASSIFIER_MODEL not in models:
        return {}, [f"example contracts not deployed: models/{CLASSIFIER_MODEL}/model.bundle is missing"]
    model = bytes.fromhex(models[CLASSIFIER_MODEL][2:])
    contracts = _deploy(seq, [("AIContract", ai_contract),
                              ("DigitsClassifier", classifier + abi_encode(["bytes32"], [model]))])  # fmt: skip
    return contracts, []
