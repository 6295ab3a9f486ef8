"""The demo: convert the example models, show their addresses, classify a few test digits.

``make demo`` runs this. Later milestones grow it into the devnet demo (anvil L1, the AI EVM node,
a contract calling the inference precompile).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from opml.bundle import decode_bundle
from opml.convert import convert
from opml.cost import model_cost
from opml.engine import run, run_bytes

MODELS = Path(__file__).resolve().parent.parent / "models"


def main() -> None:
    print("AI EVM demo: deterministic int8 inference\n")
    for name in ("digits_mlp", "digits_cnn", "encoder"):
        d = MODELS / name
        t0 = time.perf_counter()
        bundle = convert(d / "model.onnx", np.load(d / "calib.npy"), name=name)
        t_conv = time.perf_counter() - t0
        committed = d / "model.bundle"
        same = committed.exists() and committed.read_bytes() == bundle.encoded
        x, y = np.load(d / "test_x.npy"), np.load(d / "test_y.npy")
        t0 = time.perf_counter()
        probs = run(bundle, [x])[0]
        t_run = (time.perf_counter() - t0) / len(x)
        acc = float((probs.argmax(axis=1) == y).mean())
        print(f"{name}")
        print(f"  model address   {bundle.address_hex}")
        print(f"  bundle          {len(bundle.encoded)} bytes, {len(bundle.nodes)} ops, "
              f"{model_cost(bundle).macs} MACs/sample, converted in {t_conv:.2f} s "
              f"({'identical to' if same else 'DIFFERS from'} the committed bundle)")
        print(f"  test accuracy   {acc:.2%} on {len(x)} images ({t_run * 1e3:.3f} ms/image)")
        sample = x[:6]
        preds = run(bundle, [sample])[0].argmax(axis=1)
        print(f"  predictions     {preds.tolist()}  (labels {y[:6].tolist()})")
        raw = run_bytes(decode_bundle(bundle.encoded), sample[:1].astype("<f4").tobytes())
        print(f"  precompile view input {sample[:1].nbytes} bytes -> output {len(raw)} bytes, "
              f"keccak-committed by the address above\n")


if __name__ == "__main__":
    main()
