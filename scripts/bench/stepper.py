"""Benchmark of the scalar stepper: deriving the instruction at ``pc`` and ``verify_step`` per step.

Prints, in one run on the same machine:

- derivation: microseconds per instruction of ``fraud_vm.stepper.instr_at`` against the numpy
  lowering's ``compile_context(ctx).instr`` (the reference), for sampled ``pc``s of every node of
  the example models, **warm** (program / plan already built for the context) and **cold** (the
  per-context work redone for every instruction, as a verifier that sees each context once does);
- ``verify_step`` per step (microseconds, median of ``--repeats``) over every committed vector
  witness and sampled witnesses of the example models' nodes, with the verifier's decoded-context
  cache kept (consecutive steps of one node) and cleared before every call; the reference is the
  same ``verify_step`` deriving the instruction with the numpy lowering (as it did before the
  stepper), measured interleaved with it.

Times are process CPU time (steadier than wall time on a shared machine).

Usage: ``python scripts/bench/stepper.py [--samples N] [--repeats R]``. No assertions.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fraud_vm import compiler, stepper, vm  # noqa: E402
from fraud_vm.context import NodeContext, context_for  # noqa: E402
from fraud_vm.trace import NodeTrace  # noqa: E402
from fraud_vm.vm import StepWitness, verify_step  # noqa: E402
from opml.bundle import load_bundle  # noqa: E402
from opml.engine import get_plan  # noqa: E402

MODELS = ("digits_mlp", "digits_cnn", "encoder")


def _per_call(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Median over ``repeats`` of the microseconds per call of ``fn`` run ``n`` times."""
    runs = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        runs.append((time.process_time() - t0) / n * 1e6)
    return statistics.median(runs)


def derivation(samples: int, repeats: int) -> None:
    rng = random.Random(0)
    cases: list[tuple[NodeContext, int]] = []
    for name in MODELS:
        b = load_bundle(str(ROOT / "models" / name / "model.bundle"))
        for j in range(len(b.nodes)):
            ctx = context_for(b, j, 1)
            n = stepper.num_steps(ctx)
            cases += [(ctx, rng.randrange(n)) for _ in range(max(1, samples // len(b.nodes)))]

    def warm(derive: Callable[[NodeContext, int], object]) -> Callable[[], object]:
        return lambda: [derive(c, pc) for c, pc in cases]

    def cold(derive: Callable[[NodeContext, int], object], clear: Callable[[], None]) -> Callable[[], object]:
        def run() -> None:
            for c, pc in cases:
                clear()
                derive(c, pc)
        return run

    lowering = lambda c, pc: compiler.compile_context(c).instr(pc)  # noqa: E731
    rows = [
        ("warm", warm(stepper.instr_at), warm(lowering)),
        ("cold", cold(stepper.instr_at, stepper._PLANS.clear), cold(lowering, compiler._CACHE.clear)),
    ]
    print(f"instruction derivation over {len(cases)} sampled pcs of {', '.join(MODELS)} (us per instruction)")
    for label, new, ref in rows:
        t_new = _per_call(new, 1, repeats) / len(cases)
        t_ref = _per_call(ref, 1, repeats) / len(cases)
        print(f"  {label}: stepper {t_new:8.1f}   lowering {t_ref:8.1f}   ratio {t_new / t_ref:5.2f}")


def _model_witnesses(samples: int) -> list[tuple[bytes, StepWitness]]:
    rng = random.Random(1)
    out = []
    for name in ("digits_cnn", "encoder"):
        b = load_bundle(str(ROOT / "models" / name / "model.bundle"))
        x = np.load(ROOT / "models" / name / "test_x.npy")[:1]
        env = {b.inputs[0]: x}
        for j, (node, kernel) in enumerate(zip(b.nodes, get_plan(b).kernels, strict=True)):
            tr = NodeTrace(b, j, dict(env))
            for k in sorted(rng.sample(range(tr.num_steps), min(samples, tr.num_steps))):
                out.append((tr.state_at(k).hash(), tr.witness_at(k)))
            env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
    return out


@contextmanager
def _lowering_in_verifier() -> Iterator[None]:
    """Make ``fraud_vm.vm`` derive instructions with the numpy lowering (the pre-stepper verifier)."""
    shim = SimpleNamespace(num_steps=lambda c: compiler.compile_context(c).num_steps,
                           instr_at=lambda c, pc: compiler.compile_context(c).instr(pc))
    vm.stepper, saved = shim, vm.stepper  # type: ignore[assignment]
    try:
        yield
    finally:
        vm.stepper = saved


def verification(samples: int, repeats: int) -> None:
    vectors = [(bytes.fromhex(v["pre_state_hash"][2:]), StepWitness.from_json(v["witness"]))
               for p in sorted((ROOT / "tests" / "vectors" / "fraud_vm").glob("*.json"))
               for v in json.loads(p.read_text())["vectors"]]
    print("verify_step per step (us CPU; median of the repeats): stepper / lowering (ratio)")
    for label, ws in (("vectors", vectors), ("digits_cnn+encoder", _model_witnesses(samples))):
        def kept(ws: list[tuple[bytes, StepWitness]] = ws) -> None:
            for h, w in ws:
                verify_step(h, w)

        def cleared(ws: list[tuple[bytes, StepWitness]] = ws) -> None:
            for h, w in ws:
                vm._DECODED.clear()
                stepper._PLANS.clear()
                compiler._CACHE.clear()
                verify_step(h, w)

        for mode, fn in (("context cache kept", kept), ("cleared per call", cleared)):
            new, ref = [], []
            for _ in range(repeats):
                new.append(_per_call(fn, 1, 1) / len(ws))
                with _lowering_in_verifier():
                    ref.append(_per_call(fn, 1, 1) / len(ws))
            t_new, t_ref = statistics.median(new), statistics.median(ref)
            print(f"  {label:20s} {len(ws):4d} steps, {mode:18s}: {t_new:7.1f} / {t_ref:7.1f} ({t_new / t_ref:4.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=300, help="sampled pcs (derivation) / steps per node (verify)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    derivation(args.samples, args.repeats)
    verification(max(1, args.samples // 60), args.repeats)


if __name__ == "__main__":
    main()
