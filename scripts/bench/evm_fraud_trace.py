"""What level 2's intermediate states cost: re-executing a block transaction by transaction.

Builds one block of ``--txs`` value transfers (and ``--calls`` contract calls that store and log)
with the node's ``Sequencer``, then times, in the same process, best of ``--repeat``:

* ``plain``: the block's transactions applied on the parent state with the node's VM, one state
  root at the end (what a validator re-executing the block does);
* ``trace``: ``ai_evm.fraudproof.trace.trace_block``: the same plus a state root, the receipts trie
  root and a ``TxState`` after every transaction (what an honest player computes once per block).

Prints both and their ratio, and the sizes of a header and of a ``TxState``. With ``--accounts
1000,10000``: the size of an account's Merkle-Patricia proof, and of the node set a transfer step's
witness needs for three accounts (``ai_evm.fraudproof.transfer``), in a secure trie of that many
random accounts (200 samples each).
Run: ``.venv/bin/python scripts/bench/evm_fraud_trace.py --txs 200``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from eth.constants import BLANK_ROOT_HASH
from eth.vm.chain_context import ChainContext
from eth_account import Account
from eth_utils import to_checksum_address

from ai_evm.fraudproof.commitments import template
from ai_evm.fraudproof.trace import ChainView, trace_block
from ai_evm.node.chain import NodeConfig, Sequencer
from ai_evm.node.vm import make_resolver

SINK = "0x000000000000000000000000000000000000dEaD"
#: SSTORE(0, CALLDATALOAD(0)); LOG0(0, 0); STOP, and its creation code
RUNTIME = bytes([0x60, 0, 0x35, 0x60, 0, 0x55, 0x60, 0, 0x60, 0, 0xA0, 0x00])
CREATION = bytes([0x60, len(RUNTIME), 0x60, 12, 0x60, 0, 0x39, 0x60, len(RUNTIME), 0x60, 0, 0xF3]) + RUNTIME


def _sign(key: bytes, nonce: int, to: str | None, data: bytes = b"", gas: int = 21_000, value: int = 1) -> bytes:
    fields = {"value": value, "gas": gas, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "nonce": nonce,
              "chainId": 31337, "type": 2, "data": data}  # fmt: skip
    if to is not None:
        fields["to"] = to
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


def proof_sizes(counts: list[int]) -> None:
    """Account-proof and three-account node-set sizes in secure tries of ``counts`` random accounts."""
    import os
    import random

    import rlp
    from eth_hash.auto import keccak
    from trie import HexaryTrie

    rng = random.Random(1)
    for n in counts:
        trie = HexaryTrie({})
        keys = [keccak(os.urandom(20)) for _ in range(n)]
        with trie.squash_changes() as batch:
            for k in keys:
                batch[k] = rlp.encode([rng.randrange(1000), rng.randrange(10**21), keccak(b""), keccak(b"")])
        nodes, sizes, sets = [], [], []
        for _ in range(200):
            union: set[bytes] = set()
            for k in rng.sample(keys, 3):
                proof = [bytes(rlp.encode(node)) for node in trie.get_proof(k)]
                nodes.append(len(proof))
                sizes.append(sum(map(len, proof)))
                union.update(proof)
            sets.append(sum(map(len, union)))
        print(f"{n:>9} accounts: account proof {sum(nodes) / len(nodes):.1f} nodes {sum(sizes) / len(sizes):.0f} B, "
              f"3-account node set {sum(sets) / len(sets):.0f} B")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=200, help="value transfers in the block")
    ap.add_argument("--calls", type=int, default=50, help="contract calls (SSTORE + LOG0) in the block")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--accounts", default="", help="comma-separated trie sizes for the proof-size report")
    args = ap.parse_args()
    if args.accounts:
        proof_sizes([int(x) for x in args.accounts.split(",")])
        return
    with tempfile.TemporaryDirectory() as tmp:
        seq = Sequencer(NodeConfig(Path(tmp) / "node", sync=False), make_resolver(None))
        accounts = seq.config.accounts
        key0 = accounts[0].private_key
        seq.submit([seq.decode_raw(_sign(key0, 0, None, CREATION, gas=200_000, value=0))])
        seq.mine_pending()
        from eth._utils.address import generate_contract_address
        from eth_typing import Address

        contract = to_checksum_address(generate_contract_address(Address(bytes.fromhex(accounts[0].address[2:])), 0))
        nonces = [1] + [0] * (len(accounts) - 1)
        raws = []
        for i in range(args.txs + args.calls):
            a = i % len(accounts)
            if i < args.txs:
                raws.append(_sign(accounts[a].private_key, nonces[a], SINK))
            else:
                raws.append(_sign(accounts[a].private_key, nonces[a], contract, i.to_bytes(32, "big"), 100_000, 0))
            nonces[a] += 1
        seq.submit([seq.decode_raw(r) for r in raws])
        (mined,) = seq.mine_pending()
        view = ChainView.of(seq)
        header, parent = view.header(mined.number), view.header(mined.number - 1)
        txs = view.transactions(mined.number)
        assert len(txs) == args.txs + args.calls

        def plain() -> bytes:
            vm_class = view.chain_class.get_vm_class_for_block_number(header.block_number)
            exec_header = template(header).copy(state_root=parent.state_root, transaction_root=BLANK_ROOT_HASH,
                                                receipt_root=BLANK_ROOT_HASH)
            vm = vm_class(header=exec_header, chaindb=view.chaindb, chain_context=ChainContext(view.chain_id),
                          consensus_context=view.chain_class.consensus_context_class(view.overlay))
            current = exec_header
            for tx in txs:
                receipt, _ = vm.apply_transaction(current, tx)
                current = vm.add_receipt_to_header(current, receipt)
            return bytes(vm.state.make_state_root())

        def traced() -> bytes:
            return bytes(trace_block(view, parent, header, txs, 0).states[-1].state_root)

        times: dict[str, float] = {}
        for name, fn in (("plain", plain), ("trace", traced)):
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                root = fn()
                best = min(best, time.perf_counter() - start)
                assert root == bytes(header.state_root), f"{name} does not reproduce the block's state root"
            times[name] = best
        trace = trace_block(view, parent, header, txs, 0)
        seq.close()
    n = len(txs)
    print(f"block of {n} transactions ({args.txs} transfers, {args.calls} calls), best of {args.repeat}:")
    print(f"  plain re-execution   {times['plain'] * 1e3:9.1f} ms  ({times['plain'] / n * 1e3:.2f} ms/tx)")
    print(f"  per-tx TxState trace {times['trace'] * 1e3:9.1f} ms  ({times['trace'] / n * 1e3:.2f} ms/tx)")
    print(f"  ratio trace / plain  {times['trace'] / times['plain']:9.2f}x")
    print(f"  header {len(trace.header_rlp)} B RLP, TxState {len(trace.states[0].encode())} B, {n + 1} level-2 leaves, "
          f"depth {n.bit_length()}")


if __name__ == "__main__":
    main()
