"""Benchmark of the rollup: L1 cost per L2 transaction, derivation speed, time from a lie to its deletion.

1. **L1 gas and bytes per L2 transaction**, calldata vs blobs: N simple transfers, and N inference
   calls (digits_mlp, one image each, straight to the precompile), mined by an in-process sequencer
   in blocks of ``--per-block`` transactions, packed into one channel as the batcher does and
   posted to a ``BatchInbox`` on anvil (calldata frames of 100 kB; blobs); the posts are read back
   with ``L1Reader`` and derived into the same batches. Reference, measured in the same run: a
   plain L1 transfer's gas, and the signed transactions' own bytes.
2. **Derivation speed**: a fresh node derives the same chain from those L1 blocks and re-executes
   every block (``Deriver`` + ``Sequencer.build_from_batch``), against the sequencer's own block
   building (admission + ``mine_pending``) of the same transactions, same machine; block hashes
   are checked equal.
3. **Bridge gas** (docs/bridge.md): one ``Portal.depositTransaction``, one ``proveWithdrawal`` and
   one ``finalizeWithdrawal`` on anvil, the proof taken from a synthetic L2 state of 10,000 accounts
   whose message passer holds 1,000 withdrawals (py-trie; trie depths of a busy L2).
4. **A lie to its deletion** (skipped by ``--quick``): ``RollupDevnet`` with a proposer that lies
   once (``faulty_rate 1, faulty_max 1``); one inference on L2; the L1 time from the faulty
   output's proposal to ``OutputsDeleted``, against the challenge window. On the same devnet the
   sequencer's ``safe``/``finalized`` tags and ``aievm_outputAtBlock`` are checked against L1.

Usage: ``python scripts/bench/rollup.py [--quick] [--txs N] [--per-block K]``. ``--quick`` (parts
1 and 2 with 40 transactions) takes well under 2 minutes. No assertions on time: read the numbers.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account
from eth_typing import BlockNumber
from eth_utils import to_checksum_address
from web3 import Web3

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ai_evm.contracts import artifact  # noqa: E402
from ai_evm.evm import encode_call  # noqa: E402
from ai_evm.node.chain import L1Origin, NodeConfig, Sequencer, origin_of  # noqa: E402
from ai_evm.node.vm import make_resolver  # noqa: E402
from ai_evm.rollup import blobs, codec  # noqa: E402
from ai_evm.rollup.anvil import Anvil  # noqa: E402
from ai_evm.rollup.batcher import CALLDATA_FRAME_BYTES  # noqa: E402
from ai_evm.rollup.derive import Deriver, L1Block, RollupConfig, SafeHead  # noqa: E402
from ai_evm.rollup.l1 import L1Reader  # noqa: E402
from ai_evm.rollup.sequencing import batch_of_block, choose_origin  # noqa: E402
from opml.store import LocalStore  # noqa: E402

SINK = "0x000000000000000000000000000000000000dEaD"
PRECOMPILE = to_checksum_address("0x00000000000000000000000000000000000000a1")
DIGITS = ROOT / "models" / "digits_mlp"
CFG = RollupConfig(seq_window=10_000, channel_timeout=10_000, max_sequencer_drift=3_600)
BATCHER = Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
L2_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"  # L2 dev account 5


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- an L2 chain built by an in-process sequencer ---------------------------------------------------
def scripted_l1(n: int, start: int) -> list[L1Block]:
    out, parent = [], b"\xee" * 32
    for i in range(n):
        h = bytes([i + 1]) * 32
        out.append(L1Block(i, h, parent, start + 12 * i))
        parent = h
    return out


def new_node(path: Path, l1: list[L1Block]) -> Sequencer:
    store = LocalStore(path.parent / "extra")
    store.put((DIGITS / "model.bundle").read_bytes())
    from ai_evm.cli.node import open_model_store

    seq = Sequencer(NodeConfig(path, sync=False),
                    make_resolver(open_model_store((str(path.parent / "extra"),), path.parent / "data")))  # type: ignore[arg-type]
    by_number = {b.number: b for b in l1}
    genesis = L1Origin(0, l1[0].hash, l1[0].timestamp)
    seq.origin_for = lambda parent, ts: choose_origin(origin_of(parent) or genesis, ts, by_number.get,
                                                      CFG.max_sequencer_drift)
    return seq


def signed_txs(kind: str, n: int, chain_id: int = 31337) -> list[bytes]:
    """``n`` signed L2 transactions from dev accounts 0..3: transfers, or one-image inferences."""
    from ai_evm.node.accounts import dev_accounts

    keys = [a.private_key for a in dev_accounts()[:4]]
    model = LocalStore(Path(tempfile.mkdtemp(prefix="bench-rollup-"))).put((DIGITS / "model.bundle").read_bytes())
    images = np.load(DIGITS / "test_x.npy").astype("<f4")
    out = []
    for i in range(n):
        key, nonce = keys[i % len(keys)], i // len(keys)
        tx: dict[str, Any] = {"maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "nonce": nonce,
                              "chainId": chain_id, "type": 2}
        if kind == "transfer":
            tx.update(to=SINK, value=1 + i, gas=21_000)
        else:
            tx.update(to=PRECOMPILE, value=0, gas=2_000_000,
                      data=encode_call(model, 40, images[i % len(images)].tobytes()))
        out.append(bytes(Account.sign_transaction(tx, key).raw_transaction))
    return out


def sequence(seq: Sequencer, txs: list[bytes], per_block: int) -> float:
    """Admit and mine ``txs`` in blocks of ``per_block``; returns the seconds it took."""
    t = time.perf_counter()
    for i in range(0, len(txs), per_block):
        decoded = [seq.decode_raw(r) for r in txs[i : i + per_block]]
        errors = seq.submit(decoded)
        if any(e is not None for e in errors):
            raise RuntimeError(f"the sequencer refused a benchmark transaction: {errors}")
        seq.mine_pending()
    return time.perf_counter() - t


# -- L1 posts ----------------------------------------------------------------------------------------
def send(w3: Web3, tx: dict[str, Any], blob_list: list[bytes] | None = None) -> Any:
    tx = {"chainId": w3.eth.chain_id, "nonce": w3.eth.get_transaction_count(BATCHER.address), "value": 0,
          "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, **tx}
    if blob_list:
        tx.update(type=3, maxFeePerBlobGas=10**10)
        signed = BATCHER.sign_transaction(tx, blobs=blob_list)
    else:
        signed = BATCHER.sign_transaction(tx)
    r = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    if r["status"] != 1:
        raise RuntimeError("a benchmark L1 transaction reverted")
    return r


def post(w3: Web3, inbox: str, channel: bytes, da: str) -> dict[str, int]:
    """Post one channel as the batcher does; L1 gas, blob gas, L1 bytes and the L1 blocks used."""
    frame_bytes = blobs.max_payload() - 100 if da == "blobs" else CALLDATA_FRAME_BYTES
    frames = codec.split_frames(codec.new_channel_id(), channel, frame_bytes)
    gas = blob_gas = l1_bytes = 0
    first = last = 0
    for frame in frames:
        data = codec.encode_batcher_data([frame])
        if da == "blobs":
            found = blobs.encode_blobs(data)
            r = send(w3, {"to": inbox, "data": b"", "gas": 100_000}, found)
            blob_gas += int(r["blobGasUsed"])
            l1_bytes += len(found) * blobs.BLOB_BYTES
        else:
            r = send(w3, {"to": inbox, "data": data, "gas": 21_000 + 40 * len(data) + 50_000})
            l1_bytes += len(data)
        gas += int(r["gasUsed"])
        first, last = first or int(r["blockNumber"]), int(r["blockNumber"])
    return {"gas": gas, "blob_gas": blob_gas, "l1_bytes": l1_bytes, "txs": len(frames), "first": first, "last": last}


def derive_back(w3: Web3, inbox: str, first: int, last: int, expect: int) -> None:
    """Read the posts back from L1 and derive them: the channel's batches, all of them."""
    reader = L1Reader(w3, inbox, BATCHER.address)
    d = Deriver(CFG, SafeHead(b"\0" * 32, 0, 0, 0), [])
    found = 0
    for n in range(first, last + 1):
        for data in reader.block(n).batcher_data:
            for frame in codec.decode_batcher_data(data):
                ch = d.bank.add(n, frame)
                if ch is not None:
                    found += len(codec.decode_channel(ch))
    if found != expect:
        raise RuntimeError(f"derived {found} batches back from L1, posted {expect}")


# -- derivation --------------------------------------------------------------------------------------
def derive(path: Path, l1: list[L1Block], batches: list[codec.Batch]) -> tuple[Sequencer, float]:
    """A fresh node derives and re-executes ``batches`` posted in the L1 block after their origins."""
    node = new_node(path, l1)
    genesis = node.head()
    inclusion = max(b.epoch_number for b in batches) + 1
    frames = codec.split_frames(b"d" * 16, codec.encode_channel(batches), CALLDATA_FRAME_BYTES)
    posted = L1Block(inclusion, l1[inclusion].hash, l1[inclusion - 1].hash, l1[inclusion].timestamp,
                     tuple(codec.encode_batcher_data([f]) for f in frames))
    t = time.perf_counter()
    d = Deriver(CFG, SafeHead(bytes(genesis.hash), 0, int(genesis.timestamp), 0), l1[:inclusion])
    d.add_l1_block(posted)
    for b in d.batches():
        d.advance(node.build_from_batch(b.transactions, b.timestamp, L1Origin(b.epoch_number, b.epoch_hash)))
    return node, time.perf_counter() - t


def bench_chain(tmp: Path, w3: Web3, inbox: str, kind: str, n: int, per_block: int, ref_gas: int) -> None:
    l1 = scripted_l1(64, int(time.time()) - 12 * 60)
    txs = signed_txs(kind, n)
    seq = new_node(tmp / f"{kind}-seq" / "node", l1)
    seq_s = sequence(seq, txs, per_block)
    head = int(seq.head().block_number)
    blocks = [seq.chain.get_canonical_block_by_number(BlockNumber(i)) for i in range(1, head + 1)]
    failed = sum(1 for i in range(1, head + 1) for r in (seq.record(i) or {}).get("receipts", [])
                 if r["status"] != "0x1")
    batches = [batch_of_block(b) for b in blocks]
    channel = codec.encode_channel(batches)
    raw = sum(len(t) for t in txs)
    print(f"\n{n} {kind} transactions in {head} L2 blocks ({per_block} per block; {failed} failed on L2): "
          f"{raw / n:.0f} B per signed transaction, channel {len(channel):,} B compressed "
          f"({len(channel) / raw:.2f}x the signed bytes)")
    print(f"  {'DA':<9} {'L1 txs':>6} {'L1 gas/L2 tx':>13} {'x L1 transfer':>14} {'blob gas/L2 tx':>15} "
          f"{'L1 bytes/L2 tx':>15}")
    for da in ("calldata", "blobs"):
        p = post(w3, inbox, channel, da)
        derive_back(w3, inbox, p["first"], p["last"], len(batches))
        print(f"  {da:<9} {p['txs']:>6} {p['gas'] / n:>13,.0f} {p['gas'] / n / ref_gas:>13.3f}x "
              f"{p['blob_gas'] / n:>15,.0f} {p['l1_bytes'] / n:>15,.0f}")
    node, derive_s = derive(tmp / f"{kind}-derive" / "node", l1, batches)
    same = all(bytes(node.header_by_number(i).hash) == bytes(blocks[i - 1].hash)  # type: ignore[union-attr]
               for i in range(1, head + 1))
    print(f"  sequencer builds {head / seq_s:8.1f} L2 blocks/s ({n / seq_s:7.1f} tx/s)   reference")
    print(f"  derivation       {head / derive_s:8.1f} L2 blocks/s ({n / derive_s:7.1f} tx/s)   "
          f"{seq_s / derive_s:.2f}x the sequencer; block hashes {'equal' if same else 'DIFFER'}")


# -- the devnet: a lie and its deletion --------------------------------------------------------------
def bench_lie(deadline_s: float) -> None:
    from ai_evm.rollup.devnet import RollupDevnet

    window = 45
    print(f"\ndevnet: a proposer lying once (faulty_rate 1, faulty_max 1), challenge window {window} s")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-rollup-devnet-") as tmp, \
            RollupDevnet(Path(tmp), faulty_rate=1.0, faulty_max=1, challenge_window=window,
                         output_interval=10) as net:
        info = net.info
        print(f"  started in {time.monotonic() - t0:.0f} s")
        l1 = Web3(Web3.HTTPProvider(info["l1"]))
        l2 = Web3(Web3.HTTPProvider(info["l2"], request_kwargs={"timeout": 120}))
        oracle = l1.eth.contract(address=to_checksum_address(info["contracts"]["oracle"]),
                                 abi=list(artifact("OutputOracle").abi))
        wait(lambda: origin_number(l2) >= info["modelsRegisteredAtL1Block"], deadline_s, t0, "L1 origin")
        acct = Account.from_key(L2_KEY)
        model = bytes.fromhex(info["models"]["digits_mlp"][2:])
        x = np.load(DIGITS / "test_x.npy")[0].astype("<f4").tobytes()
        tx = {"chainId": l2.eth.chain_id, "nonce": l2.eth.get_transaction_count(acct.address, "pending"),
              "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "value": 0, "gas": 2_000_000,
              "to": PRECOMPILE, "data": encode_call(model, 40, x)}
        h = l2.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
        block = int(l2.eth.wait_for_transaction_receipt(h, timeout=120)["blockNumber"])
        print(f"  inference in L2 block {block} at {time.monotonic() - t0:.0f} s")

        def proposed() -> Any:
            evs = [e for e in oracle.events.OutputProposed().get_logs(from_block=0)
                   if e["args"]["l2BlockNumber"] >= block]
            return evs[0] if evs else None

        lie = wait(proposed, deadline_s, t0, "the faulty output")
        deleted = wait(lambda: next(iter(oracle.events.OutputsDeleted().get_logs(from_block=0)), None),
                       deadline_s, t0, "the deletion")
        t_lie = int(l1.eth.get_block(lie["blockNumber"])["timestamp"])
        t_del = int(l1.eth.get_block(deleted["blockNumber"])["timestamp"])
        print(f"  faulty output {lie['args']['index']} (L2 block {lie['args']['l2BlockNumber']}) proposed at L1 block "
              f"{lie['blockNumber']}, deleted at L1 block {deleted['blockNumber']}")
        print(f"  lie -> deleted: {t_del - t_lie} s of L1 time, {deleted['blockNumber'] - lie['blockNumber']} L1 "
              f"blocks, {(t_del - t_lie) / window:.2f}x the challenge window")
        check_tags(l1, l2, oracle, deadline_s, t0)
    print(f"  devnet run {time.monotonic() - t0:.0f} s in all")


def origin_number(l2: Web3) -> int:
    extra = bytes(l2.eth.get_block("latest")["extraData"])
    return int.from_bytes(extra, "big") if len(extra) == 8 else -1


def wait(cond: Callable[[], Any], deadline_s: float, t0: float, what: str) -> Any:
    while time.monotonic() - t0 < deadline_s:
        got = cond()
        if got:
            return got
        time.sleep(1)
    raise TimeoutError(f"{what} not seen within {deadline_s:.0f} s")


def check_tags(l1: Web3, l2: Web3, oracle: Any, deadline_s: float, t0: float) -> None:
    """The sequencer's safe/finalized tags and aievm_outputAtBlock, against L1."""
    wait(lambda: int(oracle.functions.finalizedCount().call()) > 0, deadline_s, t0, "a finalized output")
    count = int(oracle.functions.finalizedCount().call())
    final_block = int(oracle.functions.output(count - 1).call()[3])
    root = "0x" + bytes(oracle.functions.outputRoot(count - 1).call()).hex()
    wait(lambda: int(l2.eth.get_block("finalized")["number"]) >= final_block, deadline_s, t0, "the finalized tag")
    got = l2.provider.make_request("aievm_outputAtBlock", [hex(final_block)])["result"]  # type: ignore[arg-type]
    safe, latest = int(l2.eth.get_block("safe")["number"]), int(l2.eth.block_number)
    print(f"  sequencer tags: latest {latest}, safe {safe}, finalized {int(l2.eth.get_block('finalized')['number'])} "
          f"(L1: output {count - 1} at L2 block {final_block} final); aievm_outputAtBlock({final_block}) "
          f"{'equals' if got['outputRoot'] == root else 'DIFFERS FROM'} the oracle's output root")


def bench_bridge(w3: Web3, ref_gas: int, accounts: int = 10_000, withdrawals: int = 1_000) -> None:
    """Gas of a deposit, a withdrawal's proof and its finalization (module docstring, part 3)."""
    import random

    import rlp
    from eth_abi import encode
    from eth_utils import keccak
    from trie import HexaryTrie

    from ai_evm.bridge import MESSAGE_PASSER, Withdrawal, account_proof, storage_slot, withdrawal_hash

    rng = random.Random(14)
    w = Withdrawal(0, BATCHER.address, SINK, 10**15, 100_000, b"")
    db: dict[bytes, bytes] = {}
    storage = HexaryTrie(db)
    for h in [withdrawal_hash(w)] + [rng.randbytes(32) for _ in range(withdrawals - 1)]:
        storage[keccak(storage_slot(h))] = rlp.encode(1)
    state = HexaryTrie(db)
    state[keccak(bytes.fromhex(MESSAGE_PASSER[2:]))] = rlp.encode([0, 10**18, storage.root_hash, keccak(b"code")])
    for _ in range(accounts - 1):
        state[keccak(rng.randbytes(20))] = rlp.encode([1, rng.randint(1, 10**20), keccak(rlp.encode(b"")), keccak(b"")])
    proof = account_proof(db, state.root_hash, MESSAGE_PASSER, [storage_slot(withdrawal_hash(w))])

    def deploy(name: str, types: list[str], args: list[Any]) -> Any:
        r = send(w3, {"data": artifact(name).bytecode + encode(types, args), "gas": 8_000_000})
        return w3.eth.contract(address=r["contractAddress"], abi=artifact(name).abi)

    oracle = deploy("OutputOracle", ["address", "uint256", "uint64"], [BATCHER.address, 0, 1])
    portal = deploy("Portal", ["address"], [oracle.address])

    def gas(fn: Any, value: int = 0) -> int:
        tx = fn.build_transaction({"from": BATCHER.address, "value": value, "gas": 2_000_000,
                                   "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9})
        return int(send(w3, tx)["gasUsed"])

    deposit = gas(portal.functions.depositTransaction(BATCHER.address, 0, 100_000, b""), value=10**16)
    ts = int(w3.eth.get_block("latest")["timestamp"])
    gas(oracle.functions.propose(1, ts, keccak(b"l2 block"), state.root_hash, b""))
    prove = gas(portal.functions.proveWithdrawal(w.as_tuple(), 0, list(proof.account_proof),
                                                 list(proof.storage_proof[0].proof)))
    w3.provider.make_request("evm_increaseTime", [2])  # type: ignore[arg-type]
    gas(oracle.functions.finalize(0))
    finalize = gas(portal.functions.finalizeWithdrawal(w.as_tuple()))
    nodes = len(proof.account_proof) + len(proof.storage_proof[0].proof)
    size = sum(map(len, proof.account_proof)) + sum(map(len, proof.storage_proof[0].proof))
    print(f"\nbridge on anvil (proof from a state of {accounts:,} accounts, {withdrawals:,} withdrawals: "
          f"{nodes} nodes, {size:,} bytes)")
    for name, g in (("deposit", deposit), ("proveWithdrawal", prove), ("finalizeWithdrawal", finalize)):
        print(f"  {name:<19} {g:>9,} gas  {g / ref_gas:6.1f}x an L1 transfer")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="40 transactions, no devnet (well under 2 minutes)")
    ap.add_argument("--txs", type=int, default=None, help="L2 transactions per kind (default 200, quick 40)")
    ap.add_argument("--per-block", type=int, default=10, help="L2 transactions per block (default 10)")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds allowed for the devnet part")
    args = ap.parse_args()
    n = args.txs or (40 if args.quick else 200)
    print(f"rollup benchmark on {cpu_name()} ({platform.python_implementation()} {platform.python_version()})")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-rollup-") as tmp, Anvil(Path(tmp) / "anvil.log") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        ctor_arg = bytes(12) + bytes.fromhex(BATCHER.address[2:])
        inbox = send(w3, {"data": artifact("BatchInbox").bytecode + ctor_arg, "gas": 3_000_000})["contractAddress"]
        ref_gas = int(send(w3, {"to": SINK, "value": 1, "gas": 21_000})["gasUsed"])
        print(f"reference: a plain L1 transfer on anvil uses {ref_gas:,} gas")
        for kind in ("transfer", "inference"):
            bench_chain(Path(tmp), w3, inbox, kind, n, args.per_block, ref_gas)
        bench_bridge(w3, ref_gas)
    print(f"\nparts 1-3 took {time.monotonic() - t0:.0f} s")
    if not args.quick:
        bench_lie(args.deadline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
