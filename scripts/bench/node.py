"""Node throughput: transfer and inference transactions per second through JSON-RPC.

Pre-signs N transfers (from the ten dev accounts) and M ``AIContract.inference`` calls on the
``digits_mlp`` model, then measures:

- **node**: an ``aievm node`` process (fsync per block, as deployed) receiving the raw transactions
  in JSON-RPC batches of ``--batch`` ``eth_sendRawTransaction`` requests; automine makes each
  batch one block, and a batch's response comes back once that block is committed. Timed from
  the first request to the last response.
- **reference**: py-evm in-process, the same chain class (AIVM), the same transactions decoded
  from the same raw bytes and mined with ``chain.mine_all`` in blocks of the same size, on an
  in-memory database.

Rounds alternate one node run and one reference run (``--rounds``, default 3), each on a fresh
chain; the best time of each side is compared, and the per-round ratios are printed too.

Prints tx/s of both and the ratio node / reference (target: >= 0.7, and >= 200 transfer tx/s).
Usage: ``python scripts/bench/node.py [--transfers 2000] [--inferences 400] [--batch 500] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")  # what the node uses (ai_evm.node)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "ai_evm" / "node"))

CHAIN_ID = 31337
SINK = "0x000000000000000000000000000000000000bEEF"
MAX_FEE = 100 * 10**9
TIP = 10**9
INFERENCE_GAS = 200_000
#: Untimed transfers (and a tenth as many inferences) each side runs first, so that neither pays
#: one-time costs (lazy imports, cold caches) inside the timing.
WARMUP = 300


def sign_workload(n_transfers: int, n_inferences: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(set-up txs, transfer txs, inference txs), raw and signed. Set-up (dev account 9): the
    AIContract deployment, then :data:`WARMUP` transfers and inferences that warm both sides up."""
    from eth_abi import encode
    from eth_account import Account
    from eth_utils import keccak

    from ai_evm.contracts import artifact
    from ai_evm.node.accounts import dev_accounts
    from opml.bundle import decode_bundle

    accts = dev_accounts()
    deployer = accts[9]
    code = artifact("AIContract").bytecode
    deploy = Account.sign_transaction({"nonce": 0, "gas": 3_000_000, "value": 0, "data": code, "chainId": CHAIN_ID,
                                       "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": TIP, "type": 2},
                                      deployer.private_key).raw_transaction  # fmt: skip
    from eth._utils.address import generate_contract_address

    contract = generate_contract_address(deployer.address_bytes, 0)
    nonces = {a.address: 0 for a in accts}
    model = decode_bundle((ROOT / "models" / "digits_mlp" / "model.bundle").read_bytes()).address
    x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy").astype("<f4")
    selector = keccak(text="inference(bytes32,bytes,uint256)")[:4]

    def transfer(a: Any, i: int) -> bytes:
        raw = Account.sign_transaction(
            {"nonce": nonces[a.address], "gas": 21000, "to": SINK, "value": 1 + i, "chainId": CHAIN_ID,
             "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": TIP, "type": 2}, a.private_key).raw_transaction
        nonces[a.address] += 1
        return bytes(raw)

    def inference(a: Any, i: int) -> bytes:
        data = selector + encode(["bytes32", "bytes", "uint256"], [model, x[i % len(x)].tobytes(), 40])
        raw = Account.sign_transaction(
            {"nonce": nonces[a.address], "gas": INFERENCE_GAS, "to": contract, "value": 0, "data": data,
             "chainId": CHAIN_ID, "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": TIP, "type": 2},
            a.private_key).raw_transaction  # fmt: skip
        nonces[a.address] += 1
        return bytes(raw)

    nonces[deployer.address] = 1
    setup = [bytes(deploy)] + [transfer(deployer, i) for i in range(WARMUP)] + \
        [inference(deployer, i) for i in range(WARMUP // 10)]
    transfers = [transfer(accts[i % 9], i) for i in range(n_transfers)]
    inferences = [inference(accts[i % 9], i) for i in range(n_inferences)]
    return setup, transfers, inferences


def reference(setup: list[bytes], groups: list[tuple[list[bytes], int]]) -> list[float]:
    """Seconds py-evm's mine_all needs for each (txs, block size) group (decode + mine)."""
    from eth.db.atomic import AtomicDB

    from ai_evm.evm import ModelResolver, make_chain_class
    from ai_evm.node.accounts import DEV_BALANCE, dev_accounts
    from ai_evm.node.chain import GENESIS_BASE_FEE, GENESIS_TIMESTAMP
    from opml.store import MemoryCache

    store = MemoryCache()
    store.put((ROOT / "models" / "digits_mlp" / "model.bundle").read_bytes())
    cls = make_chain_class(ModelResolver(store), CHAIN_ID)
    genesis = {a.address_bytes: {"balance": DEV_BALANCE, "nonce": 0, "code": b"", "storage": {}}
               for a in dev_accounts()}
    chain = cls.from_genesis(AtomicDB(), {"difficulty": 0, "gas_limit": 30_000_000, "timestamp": GENESIS_TIMESTAMP,
                                          "base_fee_per_gas": GENESIS_BASE_FEE, "coinbase": b"\0" * 20}, genesis)
    builder = chain.get_vm().get_transaction_builder()
    ts = [GENESIS_TIMESTAMP + 1]

    def mine(raws: list[bytes]) -> None:
        txs = [builder.decode(r) for r in raws]
        _, receipts, _ = chain.mine_all(txs, timestamp=ts[0])
        ts[0] += 1
        assert all(r.state_root == b"\x01" for r in receipts), "a reference transaction failed"

    mine(setup[:1])
    mine(setup[1:])
    out = []
    for raws, batch in groups:
        t0 = time.perf_counter()
        for i in range(0, len(raws), batch):
            mine(raws[i:i + batch])
        out.append(time.perf_counter() - t0)
    return out


def _post(url: str, payload: Any, body: bytes | None = None) -> Any:
    data = body if body is not None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return json.loads(resp.read())


def through_node(setup: list[bytes], groups: list[tuple[list[bytes], int]], no_fsync: bool) -> list[float]:
    """Seconds the node needs for each (txs, batch size) group, sent as JSON-RPC batches."""
    from nodeproc import DIGITS_BUNDLE, NodeProcess, add_models

    with tempfile.TemporaryDirectory() as tmp:
        datadir = Path(tmp) / "data"
        datadir.mkdir()
        add_models(datadir, [DIGITS_BUNDLE])
        node = NodeProcess(datadir, args=("--no-fsync",) if no_fsync else ()).start()
        try:
            node.rpc("eth_sendRawTransaction", "0x" + setup[0].hex())
            _post(node.url, [{"jsonrpc": "2.0", "id": j, "method": "eth_sendRawTransaction", "params": ["0x" + r.hex()]}
                             for j, r in enumerate(setup[1:])])  # fmt: skip
            out = []
            for raws, batch in groups:
                bodies = [json.dumps([{"jsonrpc": "2.0", "id": j, "method": "eth_sendRawTransaction",
                                       "params": ["0x" + r.hex()]} for j, r in enumerate(raws[i:i + batch])]).encode()
                          for i in range(0, len(raws), batch)]  # fmt: skip  (client work kept out of the timing)
                t0 = time.perf_counter()
                for body in bodies:
                    errors = [r["error"] for r in _post(node.url, None, body) if "error" in r]
                    assert not errors, errors[:3]
                out.append(time.perf_counter() - t0)
            last = _post(node.url, {"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt",
                                    "params": ["0x" + _tx_hash(groups[-1][0][-1]).hex()]})["result"]  # fmt: skip
            assert last is not None and last["status"] == "0x1", last
        finally:
            node.stop()
    return out


def _tx_hash(raw: bytes) -> bytes:
    from eth_utils import keccak

    return keccak(raw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transfers", type=int, default=2000)
    ap.add_argument("--inferences", type=int, default=400)
    ap.add_argument("--batch", type=int, default=500, help="transactions per JSON-RPC batch (= per block)")
    ap.add_argument("--no-fsync", action="store_true", help="run the node without fsync per block")
    ap.add_argument("--rounds", type=int, default=3, help="alternating node / reference rounds (best of each)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    batch_inf = min(args.batch, 30_000_000 // INFERENCE_GAS)
    t0 = time.perf_counter()
    setup, transfers, inferences = sign_workload(args.transfers, args.inferences)
    print(f"signed {len(transfers)} transfers + {len(inferences)} inference txs in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    groups = [(transfers, args.batch), (inferences, batch_inf)]
    # Rounds alternate a fresh node run and a fresh in-process run, so that load from other jobs on
    # the machine hits both alike; the best time of each side over the rounds is compared.
    reference(setup, [])  # warm-up of this process (imports)
    node_runs, ref_runs = [], []
    for _ in range(args.rounds):
        node_runs.append(through_node(setup, groups, args.no_fsync))
        ref_runs.append(reference(setup, groups))
    rows = []
    for g, (name, n) in enumerate((("transfer", len(transfers)), ("inference", len(inferences)))):
        tn, tr = min(r[g] for r in node_runs), min(r[g] for r in ref_runs)
        per_round = [round(r[g] / q[g], 2) for q, r in zip(node_runs, ref_runs, strict=True)]
        rows.append({"kind": name, "txs": n, "node_tx_per_s": n / tn, "reference_tx_per_s": n / tr,
                     "ratio": tr / tn, "round_ratios": per_round, "node_s": tn, "reference_s": tr})  # fmt: skip
    if args.json:
        print(json.dumps({"batch": args.batch, "fsync": not args.no_fsync, "rounds": args.rounds, "results": rows},
                         indent=2))
        return
    print(f"node (JSON-RPC batches of {args.batch}, {'no fsync' if args.no_fsync else 'fsync per block'}) "
          f"vs py-evm mine_all in-process, same transactions and block sizes")
    print(f"best of {args.rounds} alternating rounds each; ratio = node tx/s / mine_all tx/s")
    print(f"{'kind':<10} {'txs':>6} {'node tx/s':>10} {'mine_all tx/s':>14} {'ratio':>6}  per-round ratios")
    for r in rows:
        print(f"{r['kind']:<10} {r['txs']:>6} {r['node_tx_per_s']:>10.1f} {r['reference_tx_per_s']:>14.1f} "
              f"{r['ratio']:>6.2f}  {r['round_ratios']}")


if __name__ == "__main__":
    main()
