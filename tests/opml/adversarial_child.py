"""Child process of tests/opml/test_adversarial_session8.py: mutated bundles through the engine.

``python adversarial_child.py MODE SEED COUNT``: for COUNT mutations starting at SEED, decode the mutated
bundle (skip it when decoding refuses it with BundleError), run it at batch 1 and 3 with the batch plans on
and off, and check that both paths give the same bytes or the same named error. Before each run a
``case ...`` line is printed and flushed, so a parent that sees a crash (signal, non-zero exit) knows which
mutation did it. Ends with ``done N`` (N: mutated bundles that decoded and ran).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from opml import adversarial, engine  # noqa: E402
from opml.bundle import Bundle, Node, decode_bundle, encode_bundle  # noqa: E402
from opml.errors import OpmlError  # noqa: E402

MAX_ELEMS = 1 << 21  # skip mutants whose tensors at batch 3 hold more (memory and time, not correctness)


def sources() -> list[bytes]:
    out = [p.read_bytes() for p in sorted((ROOT / "models").glob("*/model.bundle"))]
    out += [encode_bundle(f(1, 1).bundle) for f in adversarial.CASES.values()]
    return out


def random_inputs(b: Bundle, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    xs = []
    for s in b.input_specs():
        shape = s.concrete_shape(batch)
        dt = s.dtype.np
        if dt.kind == "f":
            xs.append((rng.standard_normal(shape) * rng.choice([0.1, 1.0, 100.0])).astype(dt))
        elif dt.kind == "b":
            xs.append(rng.integers(0, 2, size=shape).astype(dt))
        else:
            info = np.iinfo(dt)
            lo, hi = max(int(info.min), -300), min(int(info.max), 300)
            xs.append(rng.integers(lo, hi + 1, size=shape).astype(dt))
    return xs


def outcome(b: Bundle, xs: list[np.ndarray], plans: bool) -> str:
    engine.set_batch_plans(plans)
    try:
        outs = engine.run(b, xs)
    except OpmlError as e:
        return f"error {type(e).__name__}"
    h = hashlib.sha256()
    for o in outs:
        h.update(str((o.dtype.str, o.shape)).encode())
        h.update(np.ascontiguousarray(o).tobytes())
    return h.hexdigest()


def flip(data: bytes, rng: np.random.Generator) -> bytes:
    """1-3 random byte changes, mostly in the descriptor part (the constants' bytes always decode)."""
    buf = bytearray(data)
    head = min(len(buf), 64 + 200 * 8 * 8)
    for _ in range(int(rng.integers(1, 4))):
        pos = int(rng.integers(0, head if rng.random() < 0.8 else len(buf)))
        if rng.random() < 0.5:
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        else:
            buf[pos] = int(rng.integers(0, 256))
    return bytes(buf)


def structural(b: Bundle, rng: np.random.Generator) -> Bundle:
    """One attribute word, one declared dimension or one node input changed (re-encoded: still canonical)."""
    nodes, tensors = list(b.nodes), list(b.tensors)
    kind = rng.integers(0, 3)
    if kind == 0 and nodes:
        j = int(rng.integers(0, len(nodes)))
        n = nodes[j]
        attrs = [list(a) for a in n.attrs]
        if attrs and any(attrs):
            k = int(rng.choice([i for i, a in enumerate(attrs) if a]))
            w = int(rng.integers(0, len(attrs[k])))
            v = attrs[k][w]
            picks = [0, 1, -1, 2, 3, v + 1, v - 1, 1 << 31, 63, 64, 1 << 62, (1 << 63) - 1, -(1 << 63), 1 << 100,
                     -(1 << 31)]
            attrs[k][w] = int(picks[int(rng.integers(0, len(picks)))])
            nodes[j] = dataclasses.replace(n, attrs=tuple(tuple(a) for a in attrs))
    elif kind == 1:
        i = int(rng.integers(0, len(tensors)))
        t = tensors[i]
        if t.shape and not t.is_const:
            ax = int(rng.integers(0, len(t.shape)))
            shape = list(t.shape)
            shape[ax] = int(rng.choice([0, 1, 2, shape[ax] + 1, max(shape[ax] - 1, 0), -1]))
            tensors[i] = dataclasses.replace(t, shape=tuple(shape))
    elif nodes:
        j = int(rng.integers(0, len(nodes)))
        n = nodes[j]
        if n.inputs:
            ins = list(n.inputs)
            ins[int(rng.integers(0, len(ins)))] = int(rng.integers(0, min(n.outputs[0], len(tensors))))
            nodes[j] = Node(n.op, tuple(ins), n.outputs, n.attrs, n.name)
    return Bundle(tuple(tensors), tuple(nodes), b.inputs, b.outputs, b.metadata)


def main() -> None:
    mode, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    srcs = sources()
    ran = 0
    for s in range(seed, seed + count):
        rng = np.random.default_rng(s)
        data = srcs[s % len(srcs)]
        try:
            if mode == "flip":
                b = decode_bundle(flip(data, rng))
            else:
                b = decode_bundle(encode_bundle(structural(decode_bundle(data), rng)))
        except OpmlError:
            continue
        if sum(int(np.prod(t.concrete_shape(3), dtype=np.int64)) for t in b.tensors) > MAX_ELEMS:
            continue
        for batch in (1, 3):
            xs = random_inputs(b, batch, rng)
            print(f"case {mode} {s} batch {batch}", flush=True)
            on, off = outcome(b, xs, True), outcome(b, xs, False)
            print(f"result {mode} {s} batch {batch} {on}", flush=True)
            if on != off:
                print(f"DIVERGE {mode} {s} batch {batch}: plans on {on} off {off}", flush=True)
        ran += 1
    print(f"done {ran}", flush=True)


if __name__ == "__main__":
    main()
