"""Cosine to onnxruntime float32: plain int8 conversion against ``--accuracy auto`` (``docs/engine.md``,
"Accuracy: calibration and int16").

Models: the MobileNetV2-like network of ``tests/opml/accuracy_models.py`` at three spreads of its
BatchNormalization scales (log-normal, sigma 0.5 / 0.85 / 1.0), and light CNNs of the onnx wheel with
random He weights (``tests/opml/test_convert_ops_light.py``). Each is measured on its calibration data
and on held-out inputs (not seen by the search), with the engine's own run of the bundle.

    python scripts/bench/convert_accuracy.py [--light squeezenet,shufflenet] [--target 0.99]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "opml"))

from accuracy_models import mobilenet_like  # noqa: E402
from test_convert_ops_light import randomized  # noqa: E402

from opml.convert import convert  # noqa: E402
from opml.convert.accuracy import choose_options, compare, float_outputs  # noqa: E402
from opml.engine import run  # noqa: E402


def _score(m, bundle, x: np.ndarray) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    rep = compare([o.name for o in m.graph.output], run(bundle, [x]), float_outputs(m, [x]))
    return min(r.mean for r in rep), min(r.min for r in rep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--light", default="squeezenet,shufflenet,inception_v1,resnet50")
    ap.add_argument("--spreads", default="0.5,0.85,1.0")
    ap.add_argument("--target", type=float, default=0.99)
    args = ap.parse_args()
    cases = []
    for spread in [float(s) for s in args.spreads.split(",") if s]:
        m, x = mobilenet_like(spread=spread)
        held = np.random.default_rng(99).normal(0, 1, x.shape).astype(np.float32)
        cases.append((f"MobileNetV2-like, BN spread {spread}", m, x, held))
    for name in [s for s in args.light.split(",") if s]:
        m = randomized(name)
        (inp,) = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        rng = np.random.default_rng(1)
        x, held = (rng.random(shape).astype(np.float32) for _ in range(2))
        cases.append((f"light {name} (random weights)", m, x, held))
    print("| model | plain int8: calibration (mean / min) | held-out | auto: calibration | held-out | "
          "choice | conversions | time |")
    print("|---|---|---|---|---|---|---|---|")
    for label, m, x, held in cases:
        plain = convert(m, x)
        t = time.perf_counter()
        res = choose_options(m, x, target_cosine=args.target)
        dt = time.perf_counter() - t
        o = res.options
        choice = f"{o.method}{' + bias correction' if o.bias_correction else ''}, {len(o.int16)} int16"
        cells = [_score(m, plain, x), _score(m, plain, held), _score(m, res.bundle, x), _score(m, res.bundle, held)]
        print(f"| {label} | " + " | ".join(f"{a:.4f} / {b:.4f}" for a, b in cells) +
              f" | {choice} ({len(res.bundle.nodes)} nodes, plain {len(plain.nodes)}) | {res.conversions} | "
              f"{dt:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
