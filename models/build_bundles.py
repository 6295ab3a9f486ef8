"""Convert every example model (models/<name>/model.onnx + calib.npy) into models/<name>/model.bundle.

Run: ``.venv/bin/python models/build_bundles.py [--check]``. With ``--check`` nothing is written and the
exit status says whether the committed bundles equal a fresh conversion (conversion is deterministic).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from opml.convert import convert

ROOT = Path(__file__).resolve().parent
EXAMPLES = ("digits_mlp", "digits_cnn", "encoder")


def build(name: str) -> bytes:
    d = ROOT / name
    return convert(d / "model.onnx", np.load(d / "calib.npy"), name=name).encoded


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="only compare with the committed bundles")
    args = ap.parse_args()
    stale = []
    for name in EXAMPLES:
        data = build(name)
        path = ROOT / name / "model.bundle"
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.write_bytes(data)
            from opml.bundle import decode_bundle

            print(f"{name:<12} {decode_bundle(data).address_hex}  {len(data)} bytes")
    if stale:
        print("stale bundles (run models/build_bundles.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
