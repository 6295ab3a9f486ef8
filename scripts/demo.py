"""The L2-only demo (``make demo-l2``): a devnet, the digits classifier, real inference transactions.

Starts ``aievm devnet --l2-only`` as a subprocess on a free port (``--port 0``, temporary datadir), then with web3.py:
deploys a fresh ``DigitsClassifier`` bound to the ``digits_mlp`` model, asks it for predictions
with ``eth_call``, classifies a few test images (models/digits_mlp/test_x.npy) through real
transactions, and prints each prediction against its label with the gas used and the inference
record the node stored. Finally it stops the node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
N_IMAGES = 6


def start_devnet(datadir: Path) -> subprocess.Popen[bytes]:
    """``aievm devnet --l2-only`` in a subprocess; returns once it listens (``DATADIR/node.json`` has its pid)."""
    cmd = [sys.executable, "-c", "from ai_evm.cli import main; main()", "devnet", "--l2-only",
           "--datadir", str(datadir), "--port", "0"]  # fmt: skip  (the OS picks a free port)
    log = open(datadir.parent / "devnet.log", "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"devnet exited: {(datadir.parent / 'devnet.log').read_text()[-2000:]}")
        try:  # the devnet writes node.json with its pid once it listens
            if json.loads((datadir / "node.json").read_text())["pid"] == proc.pid:
                return proc
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("devnet did not start within 120 s")


def run_session(info: dict[str, Any]) -> None:
    """The web3.py part of the demo."""
    from web3 import Web3

    from ai_evm.contracts import artifact

    w3 = Web3(Web3.HTTPProvider(info["rpcUrl"], request_kwargs={"timeout": 120}))
    account = w3.eth.accounts[1]
    model = info["models"]["digits_mlp"]
    print(f"devnet at {info['rpcUrl']} (chain id {w3.eth.chain_id}), head block {w3.eth.block_number}")
    print(f"models in the node's store: {', '.join(f'{k} {v[:10]}...' for k, v in info['models'].items())}")
    print(f"contracts deployed by the devnet: {info['contracts'] or 'none'}")
    meta = w3.provider.make_request("aievm_getModel", [model])["result"]
    print(f"digits_mlp: input {meta['inputs'][0]['dtype']}{meta['inputs'][0]['shape']}, "
          f"{int(meta['cost']['macs'], 16)} MACs, {int(meta['gasPerSample'], 16)} inference gas per sample\n")

    art = artifact("DigitsClassifier")
    factory = w3.eth.contract(abi=list(art.abi), bytecode=art.bytecode)
    deploy_hash = factory.constructor(bytes.fromhex(model[2:])).transact({"from": account})
    receipt = w3.eth.wait_for_transaction_receipt(deploy_hash)
    clf = w3.eth.contract(address=receipt.contractAddress, abi=list(art.abi))
    print(f"deployed DigitsClassifier at {receipt.contractAddress} "
          f"(block {receipt.blockNumber}, gas {receipt.gasUsed})\n")

    x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
    y = np.load(ROOT / "models" / "digits_mlp" / "test_y.npy")
    correct = 0
    print(f"{'image':>5} {'label':>5} {'eth_call':>8} {'tx':>3} {'block':>5} {'gas used':>9}  inference record")
    for i in range(N_IMAGES):
        image = bytes(int(round(float(v) * 16)) for v in x[i])
        predicted_call = clf.functions.predict(image).call()
        tx_hash = clf.functions.classify(image).transact({"from": account})
        rec = w3.eth.wait_for_transaction_receipt(tx_hash)
        (event,) = clf.events.Classified().process_receipt(rec)
        records = w3.provider.make_request("aievm_getInferences", [tx_hash.to_0x_hex()])["result"]
        correct += int(event.args.digit == int(y[i]))
        print(f"{i:>5} {int(y[i]):>5} {predicted_call:>8} {event.args.digit:>3} {rec.blockNumber:>5} {rec.gasUsed:>9}  "
              f"output {records[0]['outputHash'][:12]}... ({records[0]['gas']} gas in the precompile)")
    print(f"\n{correct}/{N_IMAGES} correct; lastPrediction() = {clf.functions.lastPrediction().call()}")


def main() -> None:
    print("AI EVM demo: the digits classifier on a devnet, through real transactions\n")
    with tempfile.TemporaryDirectory(prefix="aievm-demo-") as tmp:
        datadir = Path(tmp) / "data"
        datadir.mkdir()
        proc = start_devnet(datadir)
        try:
            run_session(json.loads((datadir / "devnet.json").read_text()))
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            print(f"\ndevnet stopped (exit status {proc.returncode})")


if __name__ == "__main__":
    main()
