"""The bridge demo: ETH from L1 to L2 and back, on the whole rollup devnet.

Starts ``ai_evm.rollup.devnet.RollupDevnet`` (anvil L1 with the contracts and the Portal, model hub,
sequencer, batcher, honest proposer and validator; a 20 s challenge window) and, with one dev account:

1. deposits 2 ETH through the L1 Portal and follows it onto L2 (``aievm bridge deposit``'s library);
2. withdraws 1 ETH on L2 to an L1 address (``L2ToL1MessagePasser``, ``aievm bridge withdraw``);
3. proves it on L1 once the proposer's output covers its L2 block, with the sequencer's
   ``eth_getProof`` (``aievm bridge prove``);
4. waits for the output's challenge window and finalizes it (``aievm bridge finalize``): the ETH
   arrives on L1, paid from the Portal's deposits.

Every step prints what it waits for. Exits 0 and stops everything (a few minutes at most).
Usage: ``python scripts/bridge_demo.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from eth_account import Account
from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ai_evm.bridge.client import Bridge  # noqa: E402
from ai_evm.bridge.deposit import make_deposit, wait_on_l2  # noqa: E402
from ai_evm.bridge.withdrawal import withdrawal_hash  # noqa: E402
from ai_evm.rollup.config import RollupDeployment  # noqa: E402
from ai_evm.rollup.devnet import RollupDevnet  # noqa: E402

USER_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"  # anvil dev account 5
RECIPIENT = "0x000000000000000000000000000000000000bEEF"
ETH = 10**18
WINDOW_S = 20


def main() -> int:
    t0 = time.monotonic()
    user = Account.from_key(USER_KEY)
    print("AI EVM bridge demo: 2 ETH from L1 to L2, 1 ETH back to L1\n")
    with tempfile.TemporaryDirectory(prefix="aievm-bridge-demo-") as tmp, \
            RollupDevnet(Path(tmp), challenge_window=WINDOW_S, output_interval=2) as net:
        info = net.info
        d = RollupDeployment.load(Path(info["rollup"]))
        print(f"L1 (anvil) {info['l1']}, L2 sequencer {info['l2']}, Portal {d.portal}, oracle {d.oracle}\n")
        l1 = Web3(Web3.HTTPProvider(info["l1"]))
        l2 = Web3(Web3.HTTPProvider(info["l2"], request_kwargs={"timeout": 60}))

        print(f"1. deposit 2 ETH from {user.address} (L1) to itself on L2")
        l2_before = l2.eth.get_balance(user.address)
        result = make_deposit(l1, d, USER_KEY, user.address, 2 * ETH, out=lambda m: print("   " + m))
        wait_on_l2(l2, result, timeout=120, out=lambda m: print("   " + m))
        print(f"   L2 balance {l2_before / ETH:.4f} -> {l2.eth.get_balance(user.address) / ETH:.4f} ETH; "
              f"the Portal holds {l1.eth.get_balance(d.portal) / ETH:.4f} ETH on L1\n")

        bridge = Bridge(d, l1, l2, bytes.fromhex(USER_KEY[2:]), echo=lambda m: print("   " + m), poll=2.0)
        print(f"2. withdraw 1 ETH on L2 to {RECIPIENT} on L1")
        l2_tx, w = bridge.withdraw(RECIPIENT, ETH, 100_000, b"")
        print(f"   withdrawal hash 0x{withdrawal_hash(w).hex()}\n")

        print("3. prove it on L1 against an output (the proposer posts one every 2 L2 blocks)")
        index = bridge.prove(l2_tx, wait=True, timeout=240)
        print(f"   {bridge.status(l2_tx).describe()}\n")

        print(f"4. finalize after the output's {WINDOW_S} s challenge window")
        l1_before = l1.eth.get_balance(RECIPIENT)
        bridge.finalize(l2_tx, wait=True, timeout=240)
        print(f"   {RECIPIENT} on L1: {l1_before / ETH:.4f} -> {l1.eth.get_balance(RECIPIENT) / ETH:.4f} ETH; "
              f"the Portal holds {l1.eth.get_balance(d.portal) / ETH:.4f} ETH (output {index})")
        print(f"\ndemo finished in {time.monotonic() - t0:.0f} s; stopping the devnet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
