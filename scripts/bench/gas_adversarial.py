#!/usr/bin/env python3
"""Gas per second of adversarial-but-valid bundles against ordinary EVM execution, in the same run.

The bundles (``opml/adversarial.py``) pass validation but put as much engine work behind as little
gas as the schedule allows: broadcasting-heavy elementwise ops, huge reductions, wide gathers,
table lookups over large tensors, many tiny nodes, long softmax rows, many-group convolutions,
whole-image pooling windows, layernorms that fall back to Python integers, ... Each runs as a 0xa1
frame on the AI EVM; the EVM side is ``gas_calibration.py``'s contract mix, measured interleaved.

Prints each case's ratio (inference gas/s) / (EVM gas/s) and the worst (lowest) one. A ratio below
0.5 means a block full of that call takes more than twice as long as a block of ordinary
transactions: the cost model underprices it (DESIGN §5). Ratios far above 2 are overpricing, which
costs users money but not the chain its liveness.

Usage: .venv/bin/python scripts/bench/gas_adversarial.py [--scale 16] [--repeats 3] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts" / "bench")]

import gas_calibration as calib  # noqa: E402

from ai_evm.evm import INFERENCE_ADDRESS, encode_call  # noqa: E402
from ai_evm.evm.devchain import DevChain, apply_message  # noqa: E402
from opml.adversarial import CASES  # noqa: E402
from opml.engine import output_length  # noqa: E402
from opml.store import MemoryCache  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=16, help="size of the cases (opml.adversarial)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per case (the best counts)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                    help="cpu (default): process CPU time, what a block's execution consumes; wall: elapsed")
    args = ap.parse_args(argv)
    calib.CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    cases = [f(args.scale, 1) for f in CASES.values()]
    store = MemoryCache()
    for c in cases:
        store.put(c.bundle)
    chain = DevChain(store)
    contract = chain.deploy(calib.compile_gas_mix())
    rows = []
    with chain.head_state() as state:
        def frame(to: bytes, data: bytes, gas: int = 2_000_000_000):  # type: ignore[no-untyped-def]
            def go() -> int:
                comp = apply_message(state, chain.sender, to, data, gas)
                if not comp.is_success:
                    raise SystemExit(f"benchmark call failed: {comp.error}")
                return int(comp.get_gas_used())
            return go

        evm = [frame(contract, data) for _, data in calib.evm_workloads(quick=True)]
        for fn in evm:
            fn()
        evm_gas = evm_time = 0.0
        for c in cases:
            x = b"".join(a.astype(a.dtype.newbyteorder("<")).tobytes() for a in c.inputs)
            inf = frame(INFERENCE_ADDRESS, encode_call(c.bundle.address, output_length(c.bundle, len(x)), x))
            inf()  # plan cache warm, as on a running node
            t, g = calib.timed(inf, args.repeats)
            for fn in evm:  # interleaved with the inference measurements (the machine is shared)
                te, ge = calib.timed(fn, 1)
                evm_gas += ge
                evm_time += te
            rows.append((c.name, g, t))
    evm_rate = evm_gas / evm_time
    print(f"clock: {args.clock} time; scale {args.scale}; EVM mix {evm_rate / 1e6:.2f} Mgas/s\n")
    print(f"{'case':<24} {'gas':>10} {'ms':>9} {'Mgas/s':>8} {'ratio':>7}")
    ratios = []
    for name, g, t in rows:
        r = g / t / evm_rate
        ratios.append((r, name))
        print(f"{name:<24} {g:>10,} {t * 1e3:>9.2f} {g / t / 1e6:>8.2f} {r:>7.2f}{'  UNDERPRICED' if r < 0.5 else ''}")
    worst, name = min(ratios)
    print(f"\nworst ratio {worst:.2f} ({name}); {'none' if worst >= 0.5 else 'some'} below 0.5")
    return 0 if worst >= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
