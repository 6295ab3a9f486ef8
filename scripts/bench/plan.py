"""Benchmark the engine's batch plans (``opml/plan.py``) against its per-node path, in one process.

For a bundle (the BERT-like encoder of ``models/bert_like.py`` by default: 6 layers, hidden 384, 12
heads, FFN 1536, sequence 32, random weights, converted here; or ``--bundle PATH``), at each batch size:
time ``opml.engine.run`` with batch plans off and on, alternating in blocks over several rounds, each
call timed by its thread's CPU time (``--wall``: wall clock); report the best and median of each, their
ratio, and the time the plan saves per node it runs natively (the per-node overhead it removes). The
outputs of both paths are compared byte for byte first.

Usage: ``python scripts/bench/plan.py [--bundle PATH] [--batches 1,32] [--rounds 5] [--calls 20] [--wall]``
(run with ``OPML_THREADS=1`` for one thread, as ``scripts/bench/engine.py --cpu-time`` does).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for _p in (str(ROOT), str(ROOT / "models")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from opml import engine  # noqa: E402
from opml.bundle import Bundle, load_bundle  # noqa: E402


def bert_like() -> tuple[Bundle, np.ndarray]:
    from bert_like import build_bert_like, make_token_inputs

    from opml.convert import convert

    model = build_bert_like(layers=6, hidden=384, heads=12, ffn=1536, seq=32)
    return convert(model, make_token_inputs(64, 32, 1000, seed=1)), make_token_inputs(64, 32, 1000, seed=2)


def inputs_for(b: Bundle, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for s in b.input_specs():
        shape = s.concrete_shape(batch)
        if s.dtype.np.kind == "f":
            out.append(rng.standard_normal(shape).astype(s.dtype.np))
        else:
            out.append(rng.integers(0, 100, size=shape).astype(s.dtype.np))
    return out


def time_calls(b: Bundle, xs: list[np.ndarray], calls: int, wall: bool) -> list[float]:
    clock = time.perf_counter if wall else time.thread_time
    engine.run(b, xs)  # warm-up (and the plan's build)
    out = []
    for _ in range(calls):
        t = clock()
        engine.run(b, xs)
        out.append(clock() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", help="a bundle file (default: convert the BERT-like encoder)")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--wall", action="store_true", help="wall clock instead of thread CPU time")
    args = ap.parse_args()
    if args.bundle:
        b = load_bundle(Path(args.bundle).read_bytes())
        data = None
    else:
        b, data = bert_like()
    rng = np.random.default_rng(0)
    plan = engine.get_plan(b)
    from opml import native

    print(f"{len(b.nodes)} nodes; {native.describe()}; threads {engine.batch_plan.worker_count()}")
    for batch in (int(v) for v in args.batches.split(",")):
        xs = [data[:batch]] if data is not None and batch <= len(data) else inputs_for(b, batch, rng)
        engine.set_batch_plans(False)
        ref = engine.run(b, xs)
        engine.set_batch_plans(True)
        got = engine.run(b, xs)
        assert all(r.tobytes() == g.tobytes() for r, g in zip(ref, got, strict=True)), "plan != per-node path"
        bp = engine.batch_plan_for(plan, batch)
        if bp is None:
            print(f"batch {batch}: no plan (no node with a native form, or the arena is too large)")
            continue
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for on in (False, True):
                engine.set_batch_plans(on)
                times[on] += time_calls(b, xs, args.calls, args.wall)
        engine.set_batch_plans(None)
        off, on_ = min(times[False]), min(times[True])
        saved = (off - on_) / bp.native_nodes
        print(f"batch {batch}: per-node {off * 1e3:.3f} ms (median {statistics.median(times[False]) * 1e3:.3f}), "
              f"plan {on_ * 1e3:.3f} ms (median {statistics.median(times[True]) * 1e3:.3f}); "
              f"{off / on_:.3f}x; {bp.native_nodes} native nodes in {sum(not isinstance(s, int) for s in bp.steps)} "
              f"C calls, {sum(isinstance(s, int) for s in bp.steps)} Python nodes; saves {saved * 1e6:.2f} us "
              f"per native node; arena {bp.arena_bytes / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
