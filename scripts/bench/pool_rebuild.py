"""Block building with invalid transactions in the batch: linear, not quadratic.

Issue 17 measured one batch of 490 EIP-7623 floor violators stalling the node 52-58 s (control:
0.7 s), because a failed ``mine_all`` was retried transaction by transaction on a growing prefix.
This script measures, in-process on one :class:`~ai_evm.node.chain.Sequencer` (no fsync):

- **admission**: ``submit`` of N floor violators (all refused up front) against ``submit`` of N
  valid transfers (the reference);
- **rebuild**: ``mine_pending`` of a pool holding N valid transfers interleaved with N floor
  violators that bypassed admission (a stale or replayed pool) against ``mine_pending`` of the N
  valid transfers alone (the reference). Linear building keeps this ratio a small constant (one
  failed ``mine_all``, one scratch pass, one ``mine_all``), whatever N is.

Rounds alternate reference and measured runs on fresh chains; best times are compared.
Usage: ``python scripts/bench/pool_rebuild.py [--n 490] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SINK = "0x000000000000000000000000000000000000dEaD"


def _signed(n: int) -> tuple[list[bytes], list[bytes]]:
    from eth_account import Account
    from eth_keys import keys
    from eth_utils import keccak

    from ai_evm.node.accounts import dev_accounts

    accounts = dev_accounts()
    valid = [
        bytes(Account.sign_transaction(
            {"to": SINK, "value": 1, "gas": 21000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
             "nonce": i // 10, "chainId": 31337, "type": 2}, accounts[i % 10].private_key).raw_transaction)
        for i in range(n)
    ]  # fmt: skip
    invalid = [
        bytes(Account.sign_transaction(
            {"to": SINK, "value": 0, "gas": 61_000, "data": b"\0" * 10_000, "maxFeePerGas": 10**10,
             "maxPriorityFeePerGas": 10**9, "nonce": 0, "chainId": 31337, "type": 2},
            keys.PrivateKey(keccak(b"pool-rebuild bench %d" % i)).to_bytes()).raw_transaction)
        for i in range(n)
    ]  # fmt: skip
    return valid, invalid


def _sequencer(root: Path) -> Any:
    from ai_evm.node.chain import NodeConfig, Sequencer
    from ai_evm.node.vm import make_resolver

    return Sequencer(NodeConfig(Path(tempfile.mkdtemp(dir=root)) / "node", sync=False), make_resolver(None))


def _admission(root: Path, raws: list[bytes]) -> tuple[float, int]:
    seq = _sequencer(root)
    txs = [seq.decode_raw(r) for r in raws]
    start = time.perf_counter()
    refused = sum(e is not None for e in seq.submit(txs))
    elapsed = time.perf_counter() - start
    seq.close()
    return elapsed, refused


def _rebuild(root: Path, valid: list[bytes], invalid: list[bytes]) -> tuple[float, int]:
    seq = _sequencer(root)
    txs = [seq.decode_raw(r) for r in valid]
    assert all(e is None for e in seq.submit(txs))
    for i, raw in enumerate(invalid):  # bypass admission, interleaved with the valid ones
        tx = seq.decode_raw(raw)
        seq.pool.add(tx)
        seq.pool.pending.move_to_end(bytes(tx.hash), last=(i % 2 == 0))
    start = time.perf_counter()
    blocks = seq.mine_pending()
    elapsed = time.perf_counter() - start
    mined = sum(len(b.tx_hashes) for b in blocks)
    seq.close()
    return elapsed, mined


def main() -> None:
    """Run the comparison and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=490)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import ai_evm.node  # noqa: F401  (fast keccak backend)

    valid, invalid = _signed(args.n)
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for _ in range(args.rounds):
            runs = {
                "admit valid": _admission(root, valid),
                "admit violators": _admission(root, invalid),
                "mine valid": _rebuild(root, valid, []),
                "mine valid + violators": _rebuild(root, valid, invalid),
            }
            assert runs["admit violators"][1] == args.n and runs["admit valid"][1] == 0
            assert runs["mine valid"][1] == args.n and runs["mine valid + violators"][1] == args.n
            for name, (seconds, _) in runs.items():
                best[name] = min(best.get(name, float("inf")), seconds)
    print(f"n = {args.n} valid transfers, {args.n} EIP-7623 floor violators (10,000 zero bytes, gas 61,000)")
    for name, seconds in best.items():
        print(f"  {name:<24} {seconds * 1000:9.1f} ms (best of {args.rounds})")
    print(f"admission ratio (violators / valid):        {best['admit violators'] / best['admit valid']:.2f}")
    print(f"rebuild ratio (valid + violators / valid):  {best['mine valid + violators'] / best['mine valid']:.2f}")


if __name__ == "__main__":
    main()
