"""Benchmark the engine's batch plans (``opml/plan.py``) against its per-node path, in one process.

For a bundle (the BERT-like encoder of ``models/bert_like.py`` by default: 6 layers, hidden 384, 12
heads, FFN 1536, sequence 32, random weights, converted here; or ``--bundle PATH``), at each batch size:
time ``opml.engine.run`` with batch plans off and on, alternating in blocks over several rounds, each
call timed by its thread's CPU time (``--wall``: wall clock); report the best and median of each, their
ratio, and the time the plan saves per node it runs natively (the per-node overhead it removes). The
outputs of both paths are compared byte for byte first.

Usage: ``python scripts/bench/plan.py [--bundle PATH] [--batches 1,32] [--rounds 5] [--calls 20] [--wall]``
(run with ``OPML_THREADS=1`` for one thread, as ``scripts/bench/engine.py --cpu-time`` does).

``--models NAME,...`` instead times small models at batch 1 against onnxruntime float32 in the same process
(wall clock, best of alternating rounds, onnxruntime with as many threads as the engine): corpus models by a
substring of their name (``scripts/bench/corpus.py``: e.g. ``sklearn,lstm,gru,mobilenet_v2``), ``mlp`` (a
tiny MLP, 64 -> 128 -> 10, built here) and ``one-node`` (a single lookup node: the fixed cost of
``engine.run``). ``--records`` adds each op kind's share of the native run: the plan timed with that kind's
records turned into no-ops (code 0), per record.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

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


def _best(f: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def tiny_mlp() -> onnx.ModelProto:
    """A 64 -> 128 (ReLU) -> 10 MLP with random float weights (Gemm, Relu, Gemm)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal(s) / np.sqrt(s[-1])).astype(np.float32), n)
             for n, s in (("w1", (128, 64)), ("b1", (128,)), ("w2", (10, 128)), ("b2", (10,)))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def one_node_lut() -> tuple[Bundle, list[np.ndarray]]:
    from opml.bundle import DType, Node, TensorSpec

    table = TensorSpec("t", DType.INT8, (256,), 0.0, 0, np.arange(256, dtype=np.uint8).view(np.int8).tobytes())
    tensors = (TensorSpec("x", DType.INT8, (-1, 4), 0.1, 0), table, TensorSpec("y", DType.INT8, (-1, 4), 0.1, 0))
    b = Bundle(tensors, (Node("lut", (0, 1), (2,), (), name="lut"),), (0,), (2,), {})
    return b, [np.zeros((1, 4), np.int8)]


def small_models(names: list[str]) -> list[tuple[str, Bundle, list[np.ndarray], Callable[[], object] | None]]:
    """(name, bundle, batch-1 engine inputs, an onnxruntime float32 call on the same inputs) per name."""
    sys.path.insert(0, str(ROOT / "scripts" / "bench"))
    import corpus

    from opml.convert import convert

    threads = engine.batch_plan.worker_count()
    out: list[tuple[str, Bundle, list[np.ndarray], Callable[[], object] | None]] = []
    entries = None
    for name in names:
        if name == "one-node":
            b, xs = one_node_lut()
            out.append((name, b, xs, None))
            continue
        if name == "mlp":
            m = tiny_mlp()
            calib = [np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)]
            xs = [np.random.default_rng(2).standard_normal((1, 64)).astype(np.float32)]
            label = "tiny MLP 64-128-10"
        else:
            entries = corpus.corpus_entries() if entries is None else entries
            e = next((e for e in entries if name in e.name), None)
            if e is None:
                raise SystemExit(f"no corpus model matches {name!r}")
            m, label = e.load(), e.name
            calib = corpus.calibration(e, m)  # (as scripts/bench/corpus.py calibrates)
            xs = e.batch(1, 1) if corpus.fixed_batch(e) else [x[:1] for x in corpus.entry_inputs(e, 1, 1)]
        b = convert(m, calib, name=label)
        sess = corpus._ort(m, threads)
        feed = dict(zip(corpus._names(m), xs, strict=True))
        out.append((label, b, corpus._engine_feed(xs), lambda sess=sess, feed=feed: sess.run(None, feed)))
    return out


def record_costs(b: Bundle, xs: list[np.ndarray], calls: int) -> list[tuple[str, int, float]]:
    """(op, records, seconds per call) of each op kind in the batch-1 plan: the plan's time minus its time with
    that kind's records made no-ops (their outputs are then stale; later records run on them as they are)."""
    bp = engine.batch_plan_for(engine.get_plan(b), 1)
    assert bp is not None
    segs = [s for s in bp.steps if not isinstance(s, int)]
    kinds = sorted({b.nodes[j].op for s in segs for j in s.nodes})
    full = _best(lambda: engine.run(b, xs), calls)
    out = []
    for op in kinds:
        saved = [s.records.copy() for s in segs]
        count = 0
        for s in segs:
            rows = [k for k, j in enumerate(s.nodes) if b.nodes[j].op == op]
            s.records[rows, 0] = 0
            count += len(rows)
        try:
            without = _best(lambda: engine.run(b, xs), calls)
        except Exception:  # noqa: BLE001 (a later node refused the stale data: no number for this kind)
            without = float("nan")
        finally:
            for s, r in zip(segs, saved, strict=True):
                s.records[...] = r
        out.append((op, count, full - without))
    return out


def compare_small(names: list[str], rounds: int, calls: int, records: bool) -> None:
    print(f"batch 1, {native_describe()}; threads {engine.batch_plan.worker_count()}; wall clock, best of "
          f"{rounds} x {calls} alternating")
    for label, b, xs, ort_call in small_models(names):
        engine.set_batch_plans(False)
        ref = engine.run(b, xs)
        engine.set_batch_plans(True)
        got = engine.run(b, xs)
        assert all(r.tobytes() == g.tobytes() for r, g in zip(ref, got, strict=True)), "plan != per-node path"
        bp = engine.batch_plan_for(engine.get_plan(b), 1)
        best = {"plan": float("inf"), "per-node": float("inf"), "ort": float("inf")}

        def call(b: Bundle = b, xs: list[np.ndarray] = xs) -> object:
            return engine.run(b, xs)

        for _ in range(rounds):
            engine.set_batch_plans(False)
            best["per-node"] = min(best["per-node"], _best(call, calls))
            engine.set_batch_plans(True)
            best["plan"] = min(best["plan"], _best(call, calls))
            if ort_call is not None:
                best["ort"] = min(best["ort"], _best(ort_call, calls))
        py = sum(isinstance(s, int) for s in bp.steps) if bp is not None else len(b.nodes)
        recs = bp.native_nodes if bp is not None else 0
        ratio = f"{best['plan'] / best['ort']:.2f}x ort" if ort_call is not None else "(no ort)"
        print(f"{label[:44]:44s} {len(b.nodes):4d} nodes ({recs} records, {py} in Python): plan "
              f"{best['plan'] * 1e3:.4f} ms, per-node {best['per-node'] * 1e3:.4f} ms, ort fp32 "
              f"{best['ort'] * 1e3:.4f} ms: {ratio}")
        if records and bp is not None:
            for op, count, t in sorted(record_costs(b, xs, calls * rounds), key=lambda r: -r[2]):
                print(f"    {op:12s} {count:4d} records {t * 1e6:8.2f} us ({t / count * 1e9:6.0f} ns each)")


def native_describe() -> str:
    from opml import native

    return native.describe()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", help="a bundle file (default: convert the BERT-like encoder)")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--wall", action="store_true", help="wall clock instead of thread CPU time")
    ap.add_argument("--models", help="small models at batch 1 vs onnxruntime: corpus name parts, mlp, one-node")
    ap.add_argument("--records", action="store_true", help="with --models: each op kind's share of the plan")
    args = ap.parse_args()
    if args.models:
        compare_small(args.models.split(","), args.rounds, args.calls, args.records)
        return
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
