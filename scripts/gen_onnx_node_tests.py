"""Regenerate ONNX backend node test cases offline.

The ``onnx`` wheel (1.23) ships the backend test *case code* but not its data directory, so
``onnx.backend.test.loader.load_model_tests`` finds nothing on disk. This script runs the case
code of ``onnx.backend.test.case.node`` (each op module's ``export*`` functions, seeded exactly as
onnx's own ``backend-test-tools generate-data`` does) and writes the cases in onnx's on-disk layout::

    OUT/node/<case name>/model.onnx
    OUT/node/<case name>/test_data_set_0/input_<i>.pb, output_<i>.pb

By default only the op families the engine's tests use (``FAMILIES``, under a second); ``--all``
writes every node case (about 14 s). The cache is stamped with the onnx version and this script's
version, and rebuilt atomically when stale, so parallel test workers can share it.

Usage: ``python scripts/gen_onnx_node_tests.py [--out tests/.onnx_node_cache] [--all]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case.test_case import TestCase

GENERATOR_VERSION = 1
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / ".onnx_node_cache"

# case-module name under onnx.backend.test.case.node -> case name prefix
FAMILIES = {
    "quantizelinear": "test_quantizelinear",
    "dequantizelinear": "test_dequantizelinear",
    "qlinearmatmul": "test_qlinearmatmul",
    "qlinearconv": "test_qlinearconv",
    "matmulinteger": "test_matmulinteger",
    "convinteger": "test_convinteger",
    "reshape": "test_reshape",
    "transpose": "test_transpose",
    "flatten": "test_flatten",
    "concat": "test_concat",
    "slice": "test_slice",
    "squeeze": "test_squeeze",
    "unsqueeze": "test_unsqueeze",
    "gather": "test_gather",
}
# prefixes that start like a family but belong to other ops
EXCLUDE_PREFIXES = ("test_gather_elements", "test_gathernd")


def family_of(name: str) -> str | None:
    """The family (case-module name) of a case name, or None when it is not one of ``FAMILIES``."""
    if name.startswith(EXCLUDE_PREFIXES):
        return None
    best = None
    for fam, prefix in FAMILIES.items():
        if (name == prefix or name.startswith(prefix + "_")) and (best is None or len(prefix) > len(FAMILIES[best])):
            best = fam
    return best


def collect(all_cases: bool = False) -> list[TestCase]:
    """Run the case code in memory: the selected families' node cases (or every node case)."""
    import onnx.backend.test.case.node as node_cases

    if all_cases:
        from onnx.backend.test.loader import load_node_model_tests

        return list(load_node_model_tests())
    for module in FAMILIES:
        importlib.import_module(f"onnx.backend.test.case.node.{module}")
    return [c for c in node_cases._NodeTestCases if family_of(c.name) is not None]


def _tensor_bytes(value: object, name: str) -> bytes:
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(value, name).SerializeToString()  # type: ignore[arg-type]


def write_cases(cases: list[TestCase], out: Path) -> list[str]:
    """Write cases in onnx's data layout under ``out/node``; returns the case names."""
    names = []
    for case in cases:
        assert case.model is not None and case.data_sets, case.name
        d = out / "node" / case.name
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(case.model.SerializeToString())
        for k, (inputs, outputs) in enumerate(case.data_sets):
            ds = d / f"test_data_set_{k}"
            ds.mkdir()
            for j, v in enumerate(inputs):
                (ds / f"input_{j}.pb").write_bytes(_tensor_bytes(v, case.model.graph.input[j].name))
            for j, v in enumerate(outputs):
                (ds / f"output_{j}.pb").write_bytes(_tensor_bytes(v, case.model.graph.output[j].name))
        names.append(case.name)
    return sorted(names)


def _stamp(all_cases: bool) -> dict[str, object]:
    return {"onnx": onnx.__version__, "generator": GENERATOR_VERSION, "all": all_cases}


def is_fresh(out: Path, all_cases: bool = False) -> bool:
    try:
        stamp = json.loads((out / "STAMP.json").read_text())
    except (OSError, ValueError):
        return False
    return {k: stamp.get(k) for k in ("onnx", "generator", "all")} == _stamp(all_cases)


def ensure_cache(out: Path = DEFAULT_OUT, all_cases: bool = False) -> Path:
    """Generate the cache at ``out`` unless a fresh one is there; safe against concurrent callers."""
    out = Path(out)
    if is_fresh(out, all_cases):
        return out
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / ".gitignore").write_text("*\n")  # never committed
    names = write_cases(collect(all_cases), tmp)
    (tmp / "STAMP.json").write_text(json.dumps({**_stamp(all_cases), "cases": names}, indent=1))
    if out.exists() and not is_fresh(out, all_cases):
        stale = out.with_name(f"{out.name}.stale-{os.getpid()}")
        try:
            os.rename(out, stale)
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    try:
        os.rename(tmp, out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_fresh(out, all_cases):
            raise
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"cache directory (default {DEFAULT_OUT})")
    ap.add_argument("--all", action="store_true", help="every node case, not only the engine's families")
    ap.add_argument("--force", action="store_true", help="regenerate even when the cache is fresh")
    args = ap.parse_args()
    if args.force:
        shutil.rmtree(args.out, ignore_errors=True)
    out = ensure_cache(args.out, args.all)
    names = json.loads((out / "STAMP.json").read_text())["cases"]
    print(f"{len(names)} node test cases in {out / 'node'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
