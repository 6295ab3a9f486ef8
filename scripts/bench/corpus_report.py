"""The corpus table's bit-identity check and its printing (``corpus.py`` measures the rows).

``check_identity`` runs every bundle ``corpus.measure`` saved in a fresh process per environment (thread
counts, each instruction set this CPU runs) and compares the output hashes with the row's; ``print_table``
prints the rows, as markdown with ``--markdown``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from corpus import ROOT, Row, _slug

_CHILD = r"""
import hashlib, sys, numpy as np
from pathlib import Path
from opml.bundle import load_bundle
from opml.engine import run
d = Path(sys.argv[1])
for b in sorted(d.glob("*.bundle")):
    bundle = load_bundle(b.read_bytes())
    z = np.load(b.with_suffix(".npz"))
    xs = [z[f"arr_{i}"] for i in range(len(z.files))]
    k = len(bundle.inputs)
    outs = [run(bundle, xs[i:i + k])[0] for i in range(0, len(xs), k)]
    print(b.stem, hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in outs)).hexdigest())
"""


def identity_variants() -> dict[str, dict[str, str]]:
    """The environments the engine's outputs must not depend on: thread counts and each ISA this CPU runs."""
    from opml import native

    out = {"threads 1": {"OPML_THREADS": "1"}, "threads 2": {"OPML_THREADS": "2"}}
    for isa in native._CPU_ISAS:
        out[isa] = {"OPML_NATIVE_ISA": isa, "OPML_THREADS": "2"}
    return out


def check_identity(rows: list[Row], bundle_dir: Path) -> None:
    """Run every saved bundle in a fresh process per variant; fill ``Row.identical``."""
    by_slug = {_slug(r.name): r for r in rows if r.digest}
    seen: dict[str, dict[str, str]] = {s: {} for s in by_slug}
    variants = identity_variants()
    for label, env in variants.items():
        full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(bundle_dir)], env=full, capture_output=True,
                              text=True, timeout=1800)
        for line in proc.stdout.splitlines():
            slug, digest = line.split()
            if slug in seen:
                seen[slug][label] = digest
    for slug, r in by_slug.items():
        bad = [k for k in variants if seen[slug].get(k) != r.digest]
        r.identical = f"yes ({len(variants)} runs)" if not bad else "NO: " + ", ".join(bad)


def _f(v: float, fmt: str = ".4f") -> str:
    return "" if v != v else format(v, fmt)


def print_table(rows: list[Row], markdown: bool) -> None:
    variants = ", ".join(identity_variants())
    if markdown:
        print(f"| model | kind | converts | cosine to ort fp32 mean / min | ort int8 cosine mean / min | top-1 = ort "
              f"fp32 | bit-identical ({variants}) | engine / ort fp32, batch 1 |")
        print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.error and not r.nodes:
            cells = [r.name, r.kind, f"no: `{r.error}`" + (f" ({r.note})" if r.note else ""), "", "", "", "", ""]
        else:
            int8 = f"{_f(r.int8_mean)} / {_f(r.int8_min)}" if r.int8_mean == r.int8_mean else (r.int8_note or "")
            ratio = f"{r.engine_ms:.2f} / {r.ort_ms:.2f} ms ({r.engine_ms / r.ort_ms:.1f}x)"
            conv = f"yes ({r.nodes} nodes{'; ' + r.note if r.note else ''})"
            if r.error:
                conv = f"batch 1 only ({r.nodes} nodes): dynamic batch refused: `{r.error}`"
            cos = f"{_f(r.cos_mean)} / {_f(r.cos_min)}"
            if r.auto_opts:
                cos += f"; auto: {_f(r.auto_mean)} / {_f(r.auto_min)}" if r.auto_mean == r.auto_mean else "; auto: n/a"
            cells = [r.name, r.kind, conv, cos, int8,
                     _f(r.top1, ".3f") if r.top1 == r.top1 else "(one output)", r.identical, ratio]
        print("| " + " | ".join(cells) + " |" if markdown else "  ".join(c for c in cells if c), flush=True)
