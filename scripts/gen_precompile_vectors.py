#!/usr/bin/env python3
"""Write the inference precompiles' test vectors: ``tests/vectors/precompile/*.json``.

Each vector is one call: precompile address, call data (hex; the models are the committed
example bundles, named by path), the gas given, and what must happen: the exact gas charged and the
output bytes, or failure (all gas consumed). Gas and output are separate fields so another
implementation (or a gas-schedule change) can be checked on each alone. The vectors are generated
by running the AI EVM itself; ``--check`` fails when the committed files differ from a fresh run.

Usage: .venv/bin/python scripts/gen_precompile_vectors.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ai_evm.evm import INFERENCE_ADDRESS, INFERENCE_INLINE_ADDRESS, encode_call, encode_inline_call  # noqa: E402
from ai_evm.evm.devchain import DevChain  # noqa: E402
from opml.bundle import Bundle, load_bundle  # noqa: E402
from opml.engine import output_length  # noqa: E402
from opml.store import MemoryCache  # noqa: E402

OUT = ROOT / "tests" / "vectors" / "precompile"
MODELS = ("digits_mlp", "digits_cnn", "encoder")
GIVEN = 5_000_000


def cases(bundles: dict[str, Bundle]) -> list[dict[str, object]]:
    """The calls to record: (name, address, call data, gas given)."""
    out: list[dict[str, object]] = []

    def add(name: str, to: bytes, data: bytes, gas: int = GIVEN, models: tuple[str, ...] = ()) -> None:
        out.append({"name": name, "to": to, "data": data, "gas": gas, "models": list(models)})

    for m in MODELS:
        b = bundles[m]
        x = np.load(ROOT / "models" / m / "test_x.npy")
        for batch in (1, 2):
            xb = x[:batch].astype("<f4").tobytes()
            add(f"{m} batch {batch}", INFERENCE_ADDRESS, encode_call(b.address, output_length(b, len(xb)), xb),
                models=(m,))
        x1 = x[:1].astype("<f4").tobytes()
        add(f"{m} outputSize off by one", INFERENCE_ADDRESS, encode_call(b.address, output_length(b, len(x1)) + 1, x1),
            models=(m,))
        add(f"{m} input one byte short", INFERENCE_ADDRESS, encode_call(b.address, 40, x1[:-1]), models=(m,))
    mlp = bundles["digits_mlp"]
    x1 = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")[:1].astype("<f4").tobytes()
    extremes = np.array([[0.0, -0.0, 1e38, -1e38, np.inf, -np.inf, 1e-45, 3.5] * 8], dtype="<f4").tobytes()
    add("digits_mlp extreme floats", INFERENCE_ADDRESS, encode_call(mlp.address, 40, extremes), models=("digits_mlp",))
    nan = np.full((1, 64), np.nan, dtype="<f4").tobytes()
    add("digits_mlp NaN input", INFERENCE_ADDRESS, encode_call(mlp.address, 40, nan), models=("digits_mlp",))
    add("unknown model", INFERENCE_ADDRESS, encode_call(b"\x42" * 32, 40, x1))
    add("empty call data", INFERENCE_ADDRESS, b"")
    add("header only, 63 bytes", INFERENCE_ADDRESS, encode_call(mlp.address, 40, b"")[:63])
    add("digits_mlp gas one short", INFERENCE_ADDRESS, encode_call(mlp.address, 40, x1), gas=-1, models=("digits_mlp",))
    add("digits_mlp inline", INFERENCE_INLINE_ADDRESS, encode_inline_call(mlp.encoded, x1))
    add("inline lengths inconsistent", INFERENCE_INLINE_ADDRESS, encode_inline_call(mlp.encoded, x1)[:-4])
    add("inline bundle corrupted", INFERENCE_INLINE_ADDRESS,
        encode_inline_call(mlp.encoded[:100] + bytes([mlp.encoded[100] ^ 1]) + mlp.encoded[101:], x1))
    return out


def generate() -> dict[str, str]:
    """File name -> JSON text of every vector file."""
    bundles = {m: load_bundle(str(ROOT / "models" / m / "model.bundle")) for m in MODELS}
    store = MemoryCache()
    for b in bundles.values():
        store.put(b)
    chain = DevChain(store)
    vectors = []
    for case in cases(bundles):
        to, data, gas = case["to"], case["data"], case["gas"]
        assert isinstance(to, bytes) and isinstance(data, bytes) and isinstance(gas, int)
        if gas < 0:  # "one short": the exact charge minus one
            gas = chain.execute_message(to, data, GIVEN).get_gas_used() - 1
        c = chain.execute_message(to, data, gas)
        vectors.append({
            "name": case["name"],
            "address": "0x" + bytes(to).hex(),
            "models": {m: "models/" + m + "/model.bundle" for m in case["models"]},  # type: ignore[union-attr]
            "input": "0x" + data.hex(),
            "gasGiven": gas,
            "success": bool(c.is_success),
            "gasUsed": c.get_gas_used(),
            "output": "0x" + bytes(c.output).hex(),
        })
    return {"inference.json": json.dumps({"vectors": vectors}, indent=1, sort_keys=True) + "\n"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed vectors are stale")
    args = ap.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale precompile vectors (run scripts/gen_precompile_vectors.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
