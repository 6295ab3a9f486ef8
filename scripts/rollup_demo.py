"""The rollup demo (``make demo``): a lie about an inference is caught on L1.

Starts the whole rollup on 127.0.0.1 (``ai_evm.rollup.devnet.RollupDevnet``: anvil L1 with the
contracts, model hub, sequencer, batcher, a proposer that lies about one inference, an honest
validator), deploys the digits classifier on L2, sends inference transactions, and prints what
happens on L1: the faulty output, the validator's challenge of its inference record, the
proposer's defence, the dispute game, the output deleted with its bond paid to the validator, and
a corrected output becoming final. Exits 0 and stops everything; under 5 minutes.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account
from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ai_evm.contracts import artifact  # noqa: E402
from ai_evm.rollup.devnet import RollupDevnet  # noqa: E402

L2_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"  # L2 dev account 5
N_IMAGES = 4
DEADLINE_S = 270


def l2_send(w3: Web3, tx: dict[str, Any]) -> Any:
    acct = Account.from_key(L2_KEY)
    tx = {"chainId": w3.eth.chain_id, "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
          "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "value": 0, "gas": 3_000_000, **tx}
    h = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    return w3.eth.wait_for_transaction_receipt(h, timeout=120)


def main() -> int:
    t0 = time.monotonic()
    print("AI EVM rollup demo: a lie about an inference, caught and slashed on L1\n")
    with tempfile.TemporaryDirectory(prefix="aievm-demo-") as tmp, \
            RollupDevnet(Path(tmp), faulty_rate=1.0, faulty_max=1, challenge_window=45, output_interval=10) as net:
        info = net.info
        print(f"L1 (anvil)          {info['l1']}")
        print(f"L2 sequencer        {info['l2']}")
        print(f"model hub           {info['hub']}")
        for k, v in info["contracts"].items():
            print(f"L1 {k:<16} {v}")
        print(f"proposer (lies once) {info['accounts']['proposer']}, validator {info['accounts']['validator']}\n")
        l1 = Web3(Web3.HTTPProvider(info["l1"]))
        l2 = Web3(Web3.HTTPProvider(info["l2"], request_kwargs={"timeout": 120}))
        oracle = l1.eth.contract(address=Web3.to_checksum_address(info["contracts"]["oracle"]),
                                 abi=list(artifact("OutputOracle").abi))
        disputes = l1.eth.contract(address=Web3.to_checksum_address(info["contracts"]["disputes"]),
                                   abi=list(artifact("InferenceRecordDisputes").abi))
        validator = info["accounts"]["validator"]
        balance0 = l1.eth.get_balance(validator)

        print("waiting for the sequencer's L1 origin to reach the models' registration ...")
        while True:
            extra = bytes(l2.eth.get_block("latest")["extraData"])
            if len(extra) == 8 and int.from_bytes(extra, "big") >= info["modelsRegisteredAtL1Block"]:
                break
            time.sleep(0.5)
        art = artifact("DigitsClassifier")
        model = bytes.fromhex(info["models"]["digits_mlp"][2:])
        ctor = l2.eth.contract(abi=list(art.abi), bytecode=art.bytecode).constructor(model)
        clf_addr = l2_send(l2, {"data": ctor.data_in_transaction})["contractAddress"]
        clf = l2.eth.contract(address=clf_addr, abi=list(art.abi))
        print(f"L2: DigitsClassifier at {clf_addr}")
        x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")
        y = np.load(ROOT / "models" / "digits_mlp" / "test_y.npy")
        for i in range(N_IMAGES):
            image = bytes(int(round(float(v) * 16)) for v in x[i])
            r = l2_send(l2, {"to": clf_addr, "data": clf.encode_abi("classify", [image])})
            (ev,) = clf.events.Classified().process_receipt(r)
            print(f"L2 block {r['blockNumber']}: classify(image {i}) -> {ev['args']['digit']} (label {int(y[i])})")

        print("\nL1, as it happens:")
        seen: set[tuple[str, str, int]] = set()
        l1_txs: list[str] = []
        deleted_at: int | None = None
        done = False
        while not done:
            if time.monotonic() - t0 > DEADLINE_S:
                print("demo: timed out; logs in", info["logs"])
                return 1
            for ev_name, contract in (("OutputProposed", oracle), ("RecordChallenged", disputes),
                                      ("RecordDefended", disputes), ("RecordResolved", disputes),
                                      ("OutputsDeleted", oracle), ("OutputFinalized", oracle)):
                for ev in getattr(contract.events, ev_name)().get_logs(from_block=0):
                    key = (ev_name, ev["transactionHash"].hex(), ev["logIndex"])
                    if key in seen:
                        continue
                    seen.add(key)
                    a = ev["args"]
                    tx = "0x" + bytes(ev["transactionHash"]).hex()
                    l1_txs.append(f"{ev_name:<17} L1 block {ev['blockNumber']:>4}  {tx}")
                    if ev_name == "OutputProposed":
                        print(f"  output {a['index']} proposed for L2 block {a['l2BlockNumber']} "
                              f"by {a['proposer'][:10]}")
                    elif ev_name == "RecordChallenged":
                        print(f"  record challenge {a['id']}: the validator disputes an inference record of output "
                              f"{a['outputIndex']}")
                    elif ev_name == "RecordDefended":
                        print(f"  record challenge {a['id']}: the proposer defends with dispute claim {a['claimId']};"
                              " the inference dispute game runs on L1")
                    elif ev_name == "RecordResolved":
                        verdict = "DELETED" if a["outputDeleted"] else "upheld"
                        print(f"  record challenge {a['id']} resolved: output {verdict}")
                    elif ev_name == "OutputsDeleted":
                        deleted_at = int(a["index"])
                        print(f"  outputs {a['index']}..{a['index'] + a['count'] - 1} deleted; their bonds go to "
                              f"{a['challenger'][:10]} (the validator)")
                    elif ev_name == "OutputFinalized":
                        print(f"  output {a['index']} (L2 block {a['l2BlockNumber']}) is final")
                        if deleted_at is not None and int(a["index"]) >= deleted_at:
                            done = True
            time.sleep(1)
        gained = (l1.eth.get_balance(validator) - balance0) / 1e18
        print(f"\nThe validator's L1 balance changed by {gained:+.4f} ETH (bonds won, net of gas).")
        print("L1 transactions of the dispute:")
        for line in l1_txs:
            print("  " + line)
        print(f"\ndemo finished in {time.monotonic() - t0:.0f} s; stopping the devnet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
