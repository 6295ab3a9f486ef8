"""Benchmark of the dispute game on the real fraud VM: rounds, final witness size, honest cost.

For every example model (and the BERT-like encoder with ``--bert``) it plays the honest player
against every dishonest strategy, in both roles, and prints per game:

- rounds (moves after the claim) against the target ``log2(nodes) + log2(steps of the node) + 2``
  (and the same with ceilings, which is what a power-of-two bisection can reach);
- the final step's witness bytes (target: under 8 KB);
- the honest player's total compute time (inference, commitments, node trace, answers) relative to
  one plain inference of the same input timed just before each play (target: at most 10x). Each
  game is played ``--repeats`` times with fresh players (no per-game state survives between plays;
  only per-model work such as compiled programs, node contexts and constants' roots is cached, and
  one untimed game per model warms it) and the median ratio over the plays is reported.

Usage: ``python scripts/bench/dispute.py [--models a,b] [--bert] [--repeats R] [--cpu-time] [--json out.json]``.
No assertions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for _p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from fraud_vm.game import Role  # noqa: E402
from fraud_vm.strategies import FraudVMBackend, Lie, Player, play_game  # noqa: E402
from opml.bundle import Bundle, load_bundle  # noqa: E402
from opml.engine import run  # noqa: E402


def load_models(names: list[str], bert: bool) -> dict[str, tuple[Bundle, np.ndarray]]:
    out = {}
    for name in names:
        d = ROOT / "models" / name
        out[name] = (load_bundle(str(d / "model.bundle")), np.load(d / "test_x.npy")[:1])
    if bert:
        from opml.convert import convert

        d = ROOT / "models" / "bert_like"
        calib = np.load(d / "calib.npy")
        t0 = time.perf_counter()
        out["bert_like"] = (convert(d / "model.onnx", calib, name="bert_like"), calib[:1])
        print(f"(bert_like converted in {time.perf_counter() - t0:.1f} s)")
    return out


def lies_for(bundle: Bundle, backend: FraudVMBackend) -> list[Lie]:
    n = len(bundle.nodes)
    mid = n // 2
    steps_mid = backend.node_steps(bundle, mid, 1)
    return [Lie("output"), Lie("node", 1 % n), Lie("node", mid), Lie("intermediate", mid),
            Lie("step", mid, steps_mid // 2), Lie("timeout", mid)]


def time_inference(bundle: Bundle, x: np.ndarray, clock: Callable[[], float], runs: int) -> float:
    """Median time of one plain inference (``opml.engine.run``) over ``runs`` runs, by ``clock``."""
    times = []
    for _ in range(runs):
        t0 = clock()
        run(bundle, [x])
        times.append(clock() - t0)
    return sorted(times)[len(times) // 2]


def _median(v: list[float]) -> float:
    return sorted(v)[len(v) // 2]


def bench_model(name: str, bundle: Bundle, x: np.ndarray, backend: FraudVMBackend, repeats: int = 5,
                clock: Callable[[], float] = time.perf_counter) -> list[dict]:
    """Play every game ``repeats`` times (all games once per round, so a burst of machine load is
    spread over the games); each play's honest time is divided by one inference (median of 3 runs)
    timed right before it, and the row reports the medians over the plays."""
    n = len(bundle.nodes)
    run(bundle, [x])
    # one untimed game first: per-model one-off work (program compilation caches) is not per game
    play_game(bundle, Player(bundle, [x], backend, Lie("node", n // 2)), Player(bundle, [x], backend), backend)
    games = [(lie, role) for lie in lies_for(bundle, backend) for role in Role]
    secs: dict[int, list[float]] = {g: [] for g in range(len(games))}
    infs: dict[int, list[float]] = {g: [] for g in range(len(games))}
    ratios: dict[int, list[float]] = {g: [] for g in range(len(games))}
    results = {}
    for _ in range(repeats):  # fresh players every play: nothing of one play survives into the next
        for g, (lie, honest_role) in enumerate(games):
            t_inf = time_inference(bundle, x, clock, 3)
            honest, liar = Player(bundle, [x], backend, clock=clock), Player(bundle, [x], backend, lie)
            claimant, challenger = (honest, liar) if honest_role == Role.CLAIMANT else (liar, honest)
            res = play_game(bundle, claimant, challenger, backend)
            assert res is not None
            results[g] = res
            secs[g].append(res.seconds[honest_role])
            infs[g].append(t_inf)
            ratios[g].append(res.seconds[honest_role] / t_inf)
    rows = []
    for g, (lie, honest_role) in enumerate(games):
        res = results[g]
        k = res.node_index
        steps = backend.node_steps(bundle, k, 1) if 0 <= k < n else 0
        target = math.log2(n) + (math.log2(steps) if steps else 0) + 2
        ceil_target = math.ceil(math.log2(n)) + (math.ceil(math.log2(steps)) if steps else 0) + 2
        rows.append({
            "model": name, "nodes": n, "lie": lie.kind, "lie_node": lie.node, "lie_step": lie.step,
            "honest_role": honest_role.name.lower(), "honest_won": res.winner == honest_role,
            "rounds": res.rounds, "target": round(target, 2), "ceil_target": ceil_target, "node": k,
            "node_steps": steps, "pinned_step": res.pinned_step, "witness_bytes": res.final_witness_bytes,
            "honest_s": _median(secs[g]), "inference_s": _median(infs[g]),
            "honest_x_inference": _median(ratios[g]), "reason": res.reason,
        })
    return rows


def print_rows(rows: list[dict]) -> None:
    hdr = (f"{'model':<11}{'lie':<16}{'honest':<11}{'won':<5}{'rounds':>7}{'target':>8}{'ceil':>5}"
           f"{'node':>6}{'steps':>7}{'pinned':>8}{'witness B':>10}{'honest ms':>10}{'x infer':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        lie = r["lie"] + (f"@{r['lie_node']}" if r["lie_node"] >= 0 else "") + (
            f".{r['lie_step']}" if r["lie_step"] >= 0 else "")
        print(f"{r['model']:<11}{lie:<16}{r['honest_role']:<11}{'yes' if r['honest_won'] else 'NO':<5}"
              f"{r['rounds']:>7}{r['target']:>8.2f}{r['ceil_target']:>5}{r['node']:>6}{r['node_steps']:>7}"
              f"{r['pinned_step']:>8}{r['witness_bytes']:>10}{r['honest_s'] * 1e3:>10.1f}"
              f"{r['honest_x_inference']:>9.1f}")


def summary(rows: list[dict]) -> None:
    stepped = [r for r in rows if r["pinned_step"] >= 0]
    print()
    print(f"games: {len(rows)}, honest won {sum(r['honest_won'] for r in rows)}")
    if stepped:
        over = [r for r in stepped if r["rounds"] > r["target"]]
        over_ceil = [r for r in stepped if r["rounds"] > r["ceil_target"]]
        print(f"games ending in a step: {len(stepped)}; rounds over log2 target: {len(over)}, "
              f"over ceil target: {len(over_ceil)}")
        print(f"final witness bytes: max {max(r['witness_bytes'] for r in stepped)} (target < 8192)")
    for model in dict.fromkeys(r["model"] for r in rows):
        xs = [r["honest_x_inference"] for r in rows if r["model"] == model]
        inf = _median([r["inference_s"] for r in rows if r["model"] == model])
        print(f"{model}: one inference {inf * 1e3:.2f} ms; honest total x inference: min {min(xs):.1f}, "
              f"median {sorted(xs)[len(xs) // 2]:.1f}, max {max(xs):.1f} (target <= 10)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="digits_mlp,digits_cnn,encoder")
    ap.add_argument("--bert", action="store_true", help="also the BERT-like encoder (converted first)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--repeats", type=int, default=5, help="plays of each game; rows report medians over them")
    ap.add_argument("--cpu-time", action="store_true",
                    help="one thread everywhere (engine passes, BLAS) and times by the thread's CPU time: steadier "
                         "on a busy shared machine (time spent descheduled is not counted)")
    args = ap.parse_args()
    clock = time.perf_counter
    if args.cpu_time:
        clock = time.thread_time
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
        try:
            from opml.parallel import set_worker_count
        except ImportError:  # an engine without threaded passes
            pass
        else:
            set_worker_count(1)
    print(f"timing: {'thread CPU' if args.cpu_time else 'wall'} time; per game the median over {args.repeats} plays "
          f"of honest time / one inference (median of 3 runs just before the play)")
    backend = FraudVMBackend()
    rows: list[dict] = []
    for name, (bundle, x) in load_models([m for m in args.models.split(",") if m], args.bert).items():
        rows += bench_model(name, bundle, x, backend, max(1, args.repeats), clock)
    print_rows(rows)
    summary(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
