"""Batch plans on corpus models whose nodes were Python glue before they had plan records: the three
scikit-learn pipelines (quantize, concat, cast, argmax, gather, dequantize around a few GEMMs), the LSTM and
GRU (hundreds of slices, gathers, lookups and small GEMMs) and MobileNetV3-small (depthwise convs, the SE
blocks' reduce and broadcast mul).

For each: plan == per-node path, byte for byte, at batch 1 and 3, on every intermediate tensor (the graph
re-declared with every node output as an output) and on the plain graph (buffers reused), with inputs in
the data's range and far outside it (+-inf included); with 1 and 2 threads; and under every instruction set
this CPU runs (subprocesses, ``OPML_NATIVE_ISA``). The plans run these models in one native call, or with
only the op kinds listed in ``PYTHON_OPS`` left in Python.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from opml import engine, native
from opml.bundle import Bundle, encode_bundle, load_bundle
from opml.convert import convert
from opml.parallel import set_worker_count

sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import corpus  # noqa: E402
from native_child import child_hash  # noqa: E402
from test_plan import all_tensors, assert_same, digest, needs_plan, random_inputs, run_both  # noqa: E402

# name prefix in scripts/bench/corpus.py -> the file name of its converted bundle
MODELS = {"sklearn LogisticRegression": "logreg", "sklearn RandomForest": "forest",
          "sklearn GradientBoosting": "boosting", "lstm": "lstm", "gru": "gru", "mobilenet_v3_small": "mnv3"}
# ops that may still run their Python kernel in these models
PYTHON_OPS: set[str] = set()


@pytest.fixture(autouse=True)
def _plans_default() -> object:
    yield
    engine.set_batch_plans(None)
    set_worker_count(None)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models converted once (calibrated as scripts/bench/corpus.py does), as bundle files."""
    out = tmp_path_factory.mktemp("plan_corpus")
    entries = corpus.corpus_entries()
    for prefix, slug in MODELS.items():
        e = next(e for e in entries if e.name.startswith(prefix))
        calib = [e.batch(1, 0)] if corpus.fixed_batch(e) else corpus.entry_inputs(e, 16, 0)
        (out / f"{slug}.bundle").write_bytes(encode_bundle(convert(e.load(), calib, name=e.name)))
    return out


def load(d: Path, slug: str) -> Bundle:
    return load_bundle((d / f"{slug}.bundle").read_bytes())


@needs_plan
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("slug", MODELS.values())
def test_corpus_plan_equals_per_node(bundles: Path, slug: str, batch: int) -> None:
    b = load(bundles, slug)
    for seed in (batch, batch + 10):
        xs = random_inputs(b, batch, seed=seed)
        per_node, planned = run_both(b, xs)
        assert_same(per_node, planned, f"{slug} batch {batch} seed {seed}")
        per_node, planned = run_both(all_tensors(b), xs)
        assert_same(per_node, planned, f"{slug} batch {batch} seed {seed}, every tensor")
    bp = engine.batch_plan_for(engine.get_plan(b), batch)
    assert bp is not None
    python_ops = {b.nodes[s].op for s in bp.steps if isinstance(s, int)}
    assert python_ops <= PYTHON_OPS, f"{slug}: {python_ops - PYTHON_OPS} ran in Python"


@needs_plan
@pytest.mark.parametrize("slug", MODELS.values())
def test_corpus_thread_counts(bundles: Path, slug: str) -> None:
    b = all_tensors(load(bundles, slug))
    for batch in (1, 3):
        xs = random_inputs(b, batch, seed=5)
        engine.set_batch_plans(False)
        want = engine.run(b, xs)
        engine.set_batch_plans(True)
        for n in (1, 2):
            set_worker_count(n)
            assert_same(want, engine.run(b, xs), f"{slug} batch {batch} threads {n}")


CHILD = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from test_plan import all_tensors, digest, random_inputs
from opml import engine, native
from opml.bundle import load_bundle
outs = []
for slug in os.environ["PLAN_CORPUS_SLUGS"].split(","):
    b = all_tensors(load_bundle((Path(os.environ["PLAN_CORPUS_DIR"]) / f"{slug}.bundle").read_bytes()))
    for batch in (1, 3):
        outs += engine.run(b, random_inputs(b, batch, seed=batch))
        assert engine.batch_plan_for(engine.get_plan(b), batch) is not None
print(native.describe())
print("HASH " + digest(outs))
"""


@needs_plan
@pytest.mark.parametrize("isa", native.ISAS)
def test_corpus_instruction_sets_in_subprocess(bundles: Path, isa: str) -> None:
    if isa not in native.cpu_isas():
        pytest.skip(f"this CPU lacks {native.CPU_FLAGS.get(isa, isa)}")
    engine.set_batch_plans(False)
    outs: list[np.ndarray] = []
    for slug in MODELS.values():
        b = all_tensors(load(bundles, slug))
        for batch in (1, 3):
            outs += engine.run(b, random_inputs(b, batch, seed=batch))
    env = {"OPML_NATIVE_ISA": isa, "OPML_PLAN": "1", "OPML_THREADS": "2", "PLAN_CORPUS_DIR": str(bundles),
           "PLAN_CORPUS_SLUGS": ",".join(MODELS.values())}
    desc, got = child_hash(CHILD, env)
    assert f"loaded ({isa})" in desc
    assert got == "HASH " + digest(outs), f"plan with {desc}"
