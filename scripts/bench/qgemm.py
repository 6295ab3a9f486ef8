"""GMAC/s of opml's native int8 GEMM per instruction set, one thread, on BERT-like shapes (or conv layers).

    .venv/bin/python scripts/bench/qgemm.py [--isa amx,avx512vnni] [--m 1,32,128] [--shapes 384x1536,1536x384]
                                            [--repeat 5] [--json out.json]
    .venv/bin/python scripts/bench/qgemm.py --conv [16,96,48,1,...]

Each (isa, M, K x N) GEMM (8-bit weights, int8 inputs, int8 requantized output: what the engine's linear
runs) is timed by thread CPU time over enough calls to take about 0.2 s, best of ``--repeat``; the output is
also checked against int64 numpy once (the kernels are exact, so any difference is a bug).

``--model NAME`` (a corpus model, ``scripts/bench/corpus.py``) replays each of its group-1 conv nodes on the input
the engine gives it at batch 1, in each orientation, and prints the per-layer times and their totals.

``--conv`` times batch-1 dense convs (``Gemm.conv_nchw``, "C,M,HW,k": C -> M channels, HW x HW pixels, a k x k
kernel, stride 1, "same" padding) in each orientation: pixels as the GEMM's columns, as its rows, and the one
``qconv.c`` chooses; both orientations are checked to give the same bytes.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPML_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from opml import native  # noqa: E402
from opml.intmath import requantize  # noqa: E402


def _gemm(isa: str, m: int, k: int, n: int, rng: np.random.Generator) -> tuple[float, float]:
    x = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
    w = rng.integers(-128, 128, size=(k, n)).astype(np.int8)
    off, mult, shift = rng.integers(-5000, 5000, size=n), 1 << 20, 30
    ep = native.epilogue(n, off, mult, shift, -3, -128, 127, np.int8)
    packed = native.pack_weights(w, isa)
    assert ep is not None and packed is not None
    gemm = native.Gemm(packed, ep, np.dtype(np.int8), isa)
    want = requantize(x.astype(np.int64) @ w.astype(np.int64) + off, mult, shift, -3, -128, 127, np.int8)
    if not np.array_equal(gemm(x), want):
        raise SystemExit(f"{isa} {m}x{k}x{n}: result differs from int64 numpy")
    t0 = time.thread_time()
    calls = 0
    while time.thread_time() - t0 < 0.05:
        gemm(x)
        calls += 1
    calls = max(1, int(calls * 0.2 / max(time.thread_time() - t0, 1e-9)))
    best = float("inf")
    for _ in range(ARGS.repeat):
        t0 = time.thread_time()
        for _ in range(calls):
            gemm(x)
        best = min(best, (time.thread_time() - t0) / calls)
    return best, m * k * n / best / 1e9


def _thread_time(call: Callable[[], object], repeat: int) -> float:
    """Best thread CPU time of one call over ``repeat`` rounds of about 0.1 s."""
    t0, calls = time.thread_time(), 0
    while time.thread_time() - t0 < 0.02:
        call()
        calls += 1
    calls = max(1, int(calls * 0.1 / max(time.thread_time() - t0, 1e-9)))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        for _ in range(calls):
            call()
        best = min(best, (time.thread_time() - t0) / calls)
    return best


CONV_SHAPES = ("16,96,48,1,24,144,24,1,144,24,24,1,32,192,24,1,576,160,6,1,960,320,3,1,16,64,32,3,64,64,56,3,"
               "256,256,14,3")


def conv_main() -> None:
    """--conv: each orientation of the batch-1 conv per layer shape and instruction set (one thread)."""
    vals = [int(v) for v in ARGS.conv.split(",")]
    rng = np.random.default_rng(0)
    print(f"# {native.describe()}; us per call (GMAC/s): pixels as columns / as rows / chosen")
    for isa in [i for i in ARGS.isa.split(",") if i]:
        for c, m, hw, k in zip(vals[::4], vals[1::4], vals[2::4], vals[3::4], strict=True):
            x = rng.integers(-128, 128, size=(1, c, hw, hw)).astype(np.int8)
            w = rng.integers(-128, 128, size=(k * k * c, m)).astype(np.int8)
            ep = native.epilogue(m, rng.integers(-5000, 5000, size=m), 1 << 20, 30, -3, -128, 127, np.int8)
            packed = native.pack_weights(w, isa, rows=True)
            assert ep is not None and packed is not None
            gemm = native.Gemm(packed, ep, np.dtype(np.int8), isa)
            pads = (k // 2,) * 4
            outs = [gemm.conv_nchw(x, k, k, pads, (1, 1), (1, 1), 3, mode) for mode in (1, 2, 0)]
            if not all(np.array_equal(outs[0], o) for o in outs[1:]):
                raise SystemExit(f"{isa} conv {c},{m},{hw},{k}: the orientations differ")
            ts = [_thread_time(functools.partial(gemm.conv_nchw, x, k, k, pads, (1, 1), (1, 1), 3, mode), ARGS.repeat)
                  for mode in (1, 2, 0)]
            macs = c * m * hw * hw * k * k
            print(f"{isa:>10} {c:>4}->{m:<4} {hw:>3}x{hw:<3} k{k}: " +
                  " / ".join(f"{t * 1e6:7.1f} ({macs / t / 1e9:5.0f})" for t in ts), flush=True)


def model_main() -> None:
    """--model: each group-1 conv node of a corpus model, replayed on its batch-1 input, in each orientation."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import corpus

    from opml import engine, kernels
    from opml.convert import convert
    from opml.parallel import set_worker_count

    set_worker_count(1)

    entry = next(e for e in corpus.corpus_entries(False) if ARGS.model in e.name)
    calib = entry.batch(1, 0) if corpus.fixed_batch(entry) else corpus.entry_inputs(entry, 16, 0)
    bundle = convert(entry.load(), calib, name=entry.name)
    engine.set_batch_plans(False)
    plan = engine.get_plan(bundle)
    env = {**plan.consts, **dict(zip(bundle.inputs, corpus._engine_feed(entry.batch(1, 1)), strict=True))}
    specs = bundle.tensors
    totals = [0.0, 0.0, 0.0]
    print(f"# {native.describe()}; {entry.name}: us per call, pixels as columns / as rows / chosen")
    for j, node in enumerate(bundle.nodes):
        args = [env[i] for i in node.inputs]
        env[node.outputs[0]] = plan.kernels[j](args)
        if node.op != "conv" or node.iattr("group") != 1:
            continue
        w = specs[node.inputs[1]].array()
        m, c, kh, kw = w.shape
        zp = specs[node.inputs[0]].zero_point
        offset = specs[node.inputs[2]].array().astype(np.int64) - zp * w.astype(np.int64).reshape(m, -1).sum(axis=1)
        gemm = kernels._native_gemm(node, specs, w.transpose(2, 3, 1, 0).reshape(kh * kw * c, m), offset, conv=True)
        if gemm is None:
            continue
        geo = (kh, kw, node.attr("pads"), node.attr("strides"), node.attr("dilations"), zp)
        ts = [_thread_time(functools.partial(gemm.conv_nchw, args[0], *geo, mode), ARGS.repeat) for mode in (1, 2, 0)]
        totals = [t + u for t, u in zip(totals, ts, strict=True)]
        print(f"{tuple(args[0].shape)} -> {m} {kh}x{kw} s{tuple(node.attr('strides'))}: " +
              " / ".join(f"{t * 1e6:7.1f}" for t in ts), flush=True)
    print("total: " + " / ".join(f"{t * 1e6:.0f}" for t in totals) + " us")


def main() -> None:
    from opml.parallel import set_worker_count

    set_worker_count(1)
    isas = [i for i in ARGS.isa.split(",") if i]
    for isa in isas:
        native.isa_code(isa)  # refuses a set this CPU lacks, with the reason
    ms = [int(v) for v in ARGS.m.split(",")]
    shapes = [tuple(int(v) for v in s.split("x")) for s in ARGS.shapes.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    print(f"# {native.describe()}")
    print(f"{'M':>5} {'K x N':>11} " + " ".join(f"{i + ' GMAC/s':>18}" for i in isas))
    for m in ms:
        for k, n in shapes:
            res = {isa: _gemm(isa, m, k, n, rng) for isa in isas}
            rows.append({"m": m, "k": k, "n": n, **{isa: {"seconds": t, "gmacs": g} for isa, (t, g) in res.items()}})
            print(f"{m:>5} {f'{k}x{n}':>11} " + " ".join(f"{res[i][1]:>11.1f} ({res[i][0] * 1e6:7.1f} us)"
                                                        for i in isas), flush=True)
    if ARGS.json:
        Path(ARGS.json).write_text(json.dumps({"native": native.describe(), "rows": rows}, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", default=",".join(i for i in ("avx512vnni", "amx") if i in native.cpu_isas()))
    parser.add_argument("--m", default="1,32,128")
    parser.add_argument("--shapes", default="384x1536,1536x384,384x384")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default="")
    parser.add_argument("--conv", nargs="?", const=CONV_SHAPES, default="",
                        help="time batch-1 convs C,M,HW,k[,C,M,HW,k...] in each orientation instead")
    parser.add_argument("--model", default="", help="replay a corpus model's group-1 conv nodes instead")
    ARGS = parser.parse_args()
    if ARGS.model:
        model_main()
    elif ARGS.conv:
        conv_main()
    else:
        main()
