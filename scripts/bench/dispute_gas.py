"""Gas of the dispute on L1: the one-step verifier per instruction kind, each move kind, whole games,
and the contracts' sizes, measured with the compiled contracts (``contracts/build``) in py-evm (Prague).

Prints, against the targets of the issue (ratios to them in the same table):

- **contract sizes**: runtime bytes of every contract under ``contracts/dispute`` against EIP-170's
  24,576 (test-only harnesses flagged);
- **step per instruction kind** (real verifier only): the receipt gas of a transaction calling
  ``FraudVMStepVerifier.step(pre, witness)`` (21,000 + calldata, or its EIP-7623 floor, + execution),
  the execution gas alone, the calldata bytes and the EIP-7623 floor (``StepWitness.calldata_cost``);
  max over every committed vector (``tests/vectors/fraud_vm``) and over sampled steps of every node
  of the example models (per node and kind: the first, middle and last ``pc`` of that kind), each
  checked to return the Python post-state; target 200,000 gas;
- **moves**: receipt gas and calldata bytes of every transaction kind (propose, challenge, bisect in
  each phase, openSteps, step, claimTimeout, claimCredit, finalize) over whole games on each example
  model: the honest player against every dishonest strategy of ``fraud_vm.strategies`` in both roles,
  played through the factory by ``ai_evm.dispute.pyevm_game.play`` (the Python referee in lockstep;
  any disagreement aborts the benchmark);
- **whole games**: total receipt gas per game (every transaction of both players, the claim and the
  settlement included), max per model; target 5,000,000 on the encoder.

The real step verifier (``VMProgram`` + ``FraudVMStepVerifier``) is required; without its artifacts
the benchmark stops with an error. ``--oracle-verifier`` plays the games with the test-only
``OracleStepVerifier`` instead (Python's verdicts registered in a table), skips the per-kind step
table, and labels the step and openSteps rows as oracle numbers (not the real verifier's cost).

Gas is deterministic: the numbers do not depend on the machine, which is printed anyway with the
wall time of each section. Usage:
``python scripts/bench/dispute_gas.py [--models a,b] [--samples 3] [--oracle-verifier] [--no-steps | --no-games]
[--json out.json]``.
No assertions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for _p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from dispute import lies_for  # noqa: E402

from ai_evm.contracts import artifact, available  # noqa: E402
from ai_evm.dispute.pyevm import PragueChain  # noqa: E402
from ai_evm.dispute.pyevm_game import REAL_VERIFIER, Deployment, VerifierMissing, deploy, play  # noqa: E402
from fraud_vm import phase1, stepper  # noqa: E402
from fraud_vm.context import context_for  # noqa: E402
from fraud_vm.errors import FraudVMError  # noqa: E402
from fraud_vm.game import Role  # noqa: E402
from fraud_vm.isa import Kind  # noqa: E402
from fraud_vm.strategies import FraudVMBackend, Player  # noqa: E402
from fraud_vm.trace import NodeTrace  # noqa: E402
from fraud_vm.vm import StepWitness  # noqa: E402
from opml.bundle import Bundle, load_bundle  # noqa: E402

EIP170 = 24_576
STEP_TARGET = 200_000
GAME_TARGET = 5_000_000
TX_BASE = 21_000
VECTORS = ROOT / "tests" / "vectors" / "fraud_vm"
MODELS = ("digits_mlp", "digits_cnn", "encoder")
MOVE_ORDER = ("propose", "challenge", "bisect (nodes)", "openSteps", "openSteps (padding)", "bisect (steps)", "step",
              "step (padding)", "claimTimeout", "claimCredit (game)", "finalize", "claimCredit (factory)")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_model(name: str) -> tuple[Bundle, np.ndarray]:
    d = ROOT / "models" / name
    return load_bundle(d / "model.bundle"), np.load(d / "test_x.npy")[:1]


# ------------------------------------------------------------------------------------------------ sizes


def sizes() -> list[dict[str, Any]]:
    rows = []
    for name in available():
        art = artifact(name)
        if not art.source_name.startswith("contracts/dispute/") or not art.deployed_bytecode:
            continue
        n = len(art.deployed_bytecode)
        rows.append({"contract": name, "source": art.source_name, "bytes": n, "of_limit": n / EIP170,
                     "test_only": "/harness/" in art.source_name})
    return sorted(rows, key=lambda r: -r["bytes"])


def print_sizes(rows: list[dict[str, Any]]) -> None:
    print(f"{'contract':<28}{'runtime B':>10}{'/ 24,576':>10}  source")
    for r in rows:
        flag = "  (test-only harness)" if r["test_only"] else ""
        over = "  OVER" if r["bytes"] > EIP170 else ""
        print(f"{r['contract']:<28}{r['bytes']:>10,}{r['of_limit']:>10.2f}  {r['source']}{flag}{over}")


# ------------------------------------------------------------------------------------------------ steps


def step_gas(dep: Deployment, pre: bytes, witness: bytes, post: bytes, where: str) -> dict[str, Any]:
    """One verifier step as a call (execution gas) and as a mined transaction (receipt gas)."""
    v = dep.verifier
    call = v.call("step", pre, witness)
    wrong = None
    if not call.ok or call.values[0] != post:
        wrong = call.error if not call.ok else "post-state 0x" + bytes(call.values[0]).hex()[:16] + ".."
    tx = v.transact("step", pre, witness)
    w = StepWitness.decode(witness)
    cost = w.calldata_cost()
    # the share of the execution spent deriving the instruction (VMProgram.program: context decode,
    # regions, instr_at), measured as a call of its own
    pc = int.from_bytes(w.pre_state[64:96], "big")
    derive = dep.extra["VMProgram"].call("program", w.context, pc).gas_used
    return {"where": where, "exec_gas": call.gas_used, "tx_gas": tx.gas_used, "calldata_bytes": tx.calldata_bytes,
            "floor_gas": TX_BASE + cost.floor_gas, "standard_gas": TX_BASE + cost.standard_gas, "wrong": wrong,
            "derive_gas": derive}


def vector_steps(dep: Deployment) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(VECTORS.glob("*.json")):
        doc = json.loads(path.read_text())
        for v in doc["vectors"]:
            kind = str(v["instruction"]["kind"])
            w = bytes.fromhex(v["witness_calldata"][2:])
            pre, post = (bytes.fromhex(v[k][2:]) for k in ("pre_state_hash", "post_state_hash"))
            out.append((kind, step_gas(dep, pre, w, post, f"vector {path.stem}:{v['step']}")))
    return out


def sampled_pcs(ctx: Any, n: int, samples: int) -> dict[str, list[int]]:
    """Per instruction kind of a program: its first, middle and last pc (``samples`` of them at most)."""
    by_kind: dict[str, list[int]] = defaultdict(list)
    for pc in range(n):
        by_kind[Kind(stepper.instr_at(ctx, pc).kind).name].append(pc)
    out = {}
    for kind, pcs in by_kind.items():
        picks = [pcs[0], pcs[len(pcs) // 2], pcs[-1]][:samples]
        out[kind] = sorted(set(picks))
    return out


def model_steps(dep: Deployment, name: str, samples: int) -> list[tuple[str, dict[str, Any]]]:
    bundle, x = load_model(name)
    env = phase1.intermediate_tensors(bundle, [x])
    out = []
    for k in range(len(bundle.nodes)):
        try:
            ctx = context_for(bundle, k, 1)
            n = stepper.num_steps(ctx)
        except FraudVMError:
            continue
        trace = NodeTrace(bundle, k, env)
        for kind, pcs in sampled_pcs(ctx, n, samples).items():
            for pc in pcs:
                w = trace.witness_at(pc)
                out.append((kind, step_gas(dep, trace.state_hash_at(pc), w.encode(), trace.state_hash_at(pc + 1),
                                           f"{name} node {k} ({bundle.nodes[k].op}) pc {pc}")))
    return out


def print_steps(samples: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The per-kind table over the steps the verifier got right; the others are listed after it."""
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for kind, s in samples:
        if s["wrong"] is None:
            by_kind[kind].append(s)
    rows = []
    print(f"{'kind':<9}{'samples':>8}{'tx gas':>10}{'/ 200k':>8}{'exec gas':>10}{'derive':>9}{'calldata B':>11}"
          f"{'7623 floor':>11}  max at (derive: VMProgram.program's share of exec, at the max)")
    for kind in [k.name for k in Kind if k.name in by_kind]:
        ss = by_kind[kind]
        top = max(ss, key=lambda s: s["tx_gas"])
        row = {"kind": kind, "samples": len(ss), "tx_gas": top["tx_gas"], "exec_gas": max(s["exec_gas"] for s in ss),
               "calldata_bytes": max(s["calldata_bytes"] for s in ss), "floor_gas": max(s["floor_gas"] for s in ss),
               "derive_gas": top["derive_gas"], "where": top["where"]}
        rows.append(row)
        over = "  OVER" if row["tx_gas"] > STEP_TARGET else ""
        print(f"{kind:<9}{row['samples']:>8}{row['tx_gas']:>10,}{row['tx_gas'] / STEP_TARGET:>8.2f}"
              f"{row['exec_gas']:>10,}{row['derive_gas']:>9,}{row['calldata_bytes']:>11,}{row['floor_gas']:>11,}"
              f"  {row['where']}{over}")
    missing = [k.name for k in Kind if k.name not in by_kind]
    if missing:
        print(f"kinds with no sample: {', '.join(missing)}")
    wrong = [(kind, s) for kind, s in samples if s["wrong"] is not None]
    if wrong:
        print(f"THE VERIFIER DISAGREES WITH fraud_vm ON {len(wrong)} of {len(samples)} STEPS (left out above):")
        for kind, s in wrong[:20]:
            print(f"  {kind:<9}{s['where']}: {s['wrong']}")
    return rows


# ------------------------------------------------------------------------------------------------ games


def games(dep: Deployment, name: str, backend: FraudVMBackend) -> list[dict[str, Any]]:
    bundle, x = load_model(name)
    out = []
    for lie in lies_for(bundle, backend):
        for honest_role in Role:
            honest, liar = Player(bundle, [x], backend), Player(bundle, [x], backend, lie)
            claimant, challenger = (honest, liar) if honest_role == Role.CLAIMANT else (liar, honest)
            res = play(dep, bundle, claimant, challenger, backend)
            if res is None:
                continue
            txs = [(t.kind, t.gas, t.calldata_bytes, t.ok) for t in res.txs]
            out.append({"model": name, "lie": lie.kind, "lie_node": lie.node, "honest_role": honest_role.name.lower(),
                        "honest_won": res.winner == honest_role, "moves": res.game.moves, "node": res.game.node_index,
                        "total_gas": res.total_gas(), "txs": txs})
    return out


def print_moves(rows: list[dict[str, Any]], oracle: bool) -> list[dict[str, Any]]:
    gas: dict[str, list[int]] = defaultdict(list)
    data: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        for kind, g, b, ok in r["txs"]:
            if ok:
                gas[kind].append(g)
                data[kind].append(b)
    out = []
    print(f"{'move':<24}{'count':>6}{'median gas':>12}{'max gas':>10}{'max calldata B':>16}")
    for kind in [k for k in MOVE_ORDER if k in gas]:
        note = "  (oracle verifier)" if oracle and kind in ("step", "openSteps") else ""
        out.append({"move": kind, "count": len(gas[kind]), "median_gas": int(statistics.median(gas[kind])),
                    "max_gas": max(gas[kind]), "max_calldata_bytes": max(data[kind])})
        print(f"{kind:<24}{len(gas[kind]):>6}{int(statistics.median(gas[kind])):>12,}{max(gas[kind]):>10,}"
              f"{max(data[kind]):>16,}{note}")
    return out


def print_games(rows: list[dict[str, Any]]) -> None:
    print(f"{'model':<12}{'lie':<17}{'honest':<11}{'won':<5}{'moves':>6}{'node':>6}{'total gas':>12}{'/ 5M':>7}")
    for r in rows:
        lie = r["lie"] + (f"@{r['lie_node']}" if r["lie_node"] >= 0 else "")
        print(f"{r['model']:<12}{lie:<17}{r['honest_role']:<11}{'yes' if r['honest_won'] else 'NO':<5}{r['moves']:>6}"
              f"{r['node']:>6}{r['total_gas']:>12,}{r['total_gas'] / GAME_TARGET:>7.2f}")
    for model in dict.fromkeys(r["model"] for r in rows):
        totals = [r["total_gas"] for r in rows if r["model"] == model]
        won = sum(r["honest_won"] for r in rows if r["model"] == model)
        print(f"{model}: whole game max {max(totals):,} gas ({max(totals) / GAME_TARGET:.2f} of 5M), "
              f"median {int(statistics.median(totals)):,}; honest won {won}/{len(totals)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--samples", type=int, default=3, help="steps per node and instruction kind (first, middle, last)")
    ap.add_argument("--oracle-verifier", action="store_true",
                    help="play the games with the test-only OracleStepVerifier (no per-kind step table)")
    ap.add_argument("--no-games", action="store_true", help="sizes and steps only")
    ap.add_argument("--no-steps", action="store_true", help="sizes and games only")
    ap.add_argument("--json", help="write every table here")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    print(f"dispute gas, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, py-evm Prague in process; "
          f"CPU: {cpu_name()} (gas does not depend on it)")
    chain = PragueChain()
    try:
        dep = deploy(chain, oracle=args.oracle_verifier)
    except VerifierMissing as e:
        raise SystemExit(f"error: {e}\n(the benchmark measures the real verifier {' + '.join(REAL_VERIFIER)}; "
                         "--oracle-verifier measures the game with a stand-in)") from None
    what = "OracleStepVerifier (test-only stand-in: step/openSteps rows are not the real cost)"
    print(f"verifier: {what if dep.oracle else ' + '.join(REAL_VERIFIER)}")
    report: dict[str, Any] = {}
    print("\n== runtime size of the dispute contracts (EIP-170 limit 24,576 bytes)")
    report["sizes"] = sizes()
    print_sizes(report["sizes"])
    if not dep.oracle and not args.no_steps:
        t0 = time.perf_counter()
        print(f"\n== step per instruction kind (max over vectors and sampled model steps; target {STEP_TARGET:,})")
        samples = vector_steps(dep)
        for m in models:
            samples += model_steps(dep, m, args.samples)
        report["steps"] = print_steps(samples)
        report["wrong_steps"] = [(k, s["where"], s["wrong"]) for k, s in samples if s["wrong"] is not None]
        print(f"({len(samples)} steps, {time.perf_counter() - t0:.0f} s)")
    if not args.no_games:
        t0 = time.perf_counter()
        backend = FraudVMBackend()
        rows: list[dict[str, Any]] = []
        for m in models:
            rows += games(dep, m, backend)
        print("\n== gas per transaction kind over whole games (receipt gas: 21,000 + calldata + execution)")
        report["moves"] = print_moves(rows, dep.oracle)
        print(f"\n== whole games (every transaction of both players; target {GAME_TARGET:,} on the encoder)")
        print_games(rows)
        report["games"] = [{k: v for k, v in r.items() if k != "txs"} for r in rows]
        print(f"({len(rows)} games, {time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if report.get("wrong_steps"):
        raise SystemExit(f"error: the step verifier disagrees with fraud_vm on {len(report['wrong_steps'])} steps")


if __name__ == "__main__":
    main()
