"""The model corpus: models nobody here wrote, through the converter and the engine, against onnxruntime.

Three kinds of models (``corpus_entries()``):

* architectures with random weights, exported by ``scripts/bench/corpus_export.py`` (torchvision's model zoo,
  Hugging Face transformers, ``torch.nn`` layers) and committed as *skeletons* under ``tests/corpus/``:
  the ONNX graph with each float initializer of more than 256 values stored as its mean and standard
  deviation only and regenerated here from a seed derived from its name (``flesh``: Conv weights He-scaled),
  so CI needs no torch;
* trained models that PyPI packages ship inside their wheels (silero-vad, RapidOCR, magika): the small
  ones committed under ``tests/corpus/`` with their licence, the larger ones loaded from the wheel
  (``pip download --no-deps`` into ``--wheels``, default ``/tmp/aievm-corpus-wheels``) when ``--wheels-fetch``
  is given or the wheel is already there;
* scikit-learn pipelines (``scripts/bench/sklearn_models.py`` has the full list; a few are here).

The trained models get realistic synthetic inputs (``corpus_inputs.py``: speech-like audio, document pages,
text-line crops); silero-vad is streamed (``stream``: context + chunk per call, the state carried).

For each model: convert with 16 calibration samples (``calibration``: a fixed-batch model gets them as 16
batches, converted in lockstep; a conversion failure is reported as its one line), then on 16 other samples
(silero-vad: a 160-call stream, each runtime carrying its own state): cosine of the first output to
onnxruntime float32 (mean and minimum over samples; one value per sample: the cosine of the column),
onnxruntime's own static int8 quantization (QDQ, per-channel weights, MinMax on the same calibration
samples) on the same measure, top-1 agreement (argmax over the last axis), bit-identity of the engine's
outputs across ``OPML_THREADS`` 1 and 2 and every ``OPML_NATIVE_ISA`` this CPU runs (fresh processes), and
engine / onnxruntime float32 time at batch 1 (best of alternating rounds, both on the same thread count).

Usage: ``python scripts/bench/corpus.py [--markdown] [--only a,b] [--wheels-fetch] [--no-identity]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from common import best_time
from corpus_inputs import document, ppocr_det_norm, ppocr_line_norm, speech_like, text_line
from corpus_skeleton import _TAG, SKELETON_MIN, _fan_in, flesh, skeleton  # noqa: F401  (re-exported)

ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = ROOT / "tests" / "corpus"
WHEELS = Path(os.environ.get("AIEVM_CORPUS_WHEELS", "/tmp/aievm-corpus-wheels"))


# ---------------------------------------------------------------- inputs

def make_input(spec: dict[str, object], batch: int, rng: np.random.Generator) -> np.ndarray:
    """A batch of inputs of one kind (``image``, ``normal``, ``audio``, ``speech``, ``document``, ``text_line``,
    ``tokens``, ``mask``, ``state``, ``const``; the realistic ones are ``corpus_inputs.py``'s)."""
    kind, shape = spec["kind"], [batch, *spec["shape"]]  # type: ignore[misc]
    if spec.get("batch") is False:
        shape = list(spec["shape"])  # type: ignore[call-overload]
    if kind == "tokens":
        return rng.integers(1, int(spec["vocab"]), shape).astype(np.int64)  # type: ignore[call-overload]
    if kind == "mask":  # padded sequences: each sample keeps a random prefix of at least half its length
        seq = shape[-1]
        keep = rng.integers(seq // 2, seq + 1, shape[0])
        return (np.arange(seq)[None, :] < keep[:, None]).astype(np.int64)
    if kind == "audio":  # a few tones and noise, amplitude ~0.3
        n = int(np.prod(shape[1:]))
        t = np.arange(n) / 8000.0
        f = rng.uniform(100, 2000, (shape[0], 3))
        sig = sum(np.sin(2 * np.pi * f[:, k:k + 1] * t[None, :]) for k in range(3)) * 0.1
        return (sig + rng.normal(0, 0.02, (shape[0], n))).reshape(shape).astype(np.float32)
    if kind == "speech":  # (one row per sample, from a longer stretch so that some start in a pause)
        n = int(np.prod(shape[1:]))
        return np.stack([speech_like(n * 8, rng)[n * int(rng.integers(0, 8)):][:n] for _ in range(shape[0])]
                        ).reshape(shape)
    if kind == "document":  # PP-OCR detection: pages of text lines
        return np.stack([ppocr_det_norm(document(shape[2], shape[3], rng)) for _ in range(shape[0])])
    if kind == "text_line":  # PP-OCR recognition / direction (``upside_down``: every other crop turned 180)
        flip = bool(spec.get("upside_down"))
        return np.stack([ppocr_line_norm(text_line(shape[2], shape[3], rng, flip and k % 2 == 1))
                         for k in range(shape[0])])
    if kind == "state":
        return np.zeros(shape, np.float32)
    if kind == "const":
        return np.asarray(spec["value"], dtype=spec.get("dtype", "int64"))  # type: ignore[call-overload]
    if kind == "bytes":
        return _file_bytes(shape[0], rng)
    return rng.standard_normal(shape).astype(np.float32)


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True, timeout=60)
        return [ROOT / f for f in out.stdout.decode().split("\0") if f]
    except (OSError, subprocess.SubprocessError):  # not a git checkout: every file but the environments
        return [p for p in ROOT.glob("**/*") if not {".git", ".venv", "node_modules", "__pycache__"} & set(p.parts)]


def _file_bytes(n: int, rng: np.random.Generator) -> np.ndarray:
    """magika's input: the first and last 1024 bytes of real files (this repository's, as git tracks them: the
    same files in every checkout of a commit, build outputs and caches left out), padded with 256."""
    files = sorted(p for p in _tracked_files() if p.is_file() and p.stat().st_size > 64)
    pick = rng.choice(len(files), n, replace=False)
    rows = []
    for k in pick:
        b = files[k].read_bytes().strip()
        beg, end = list(b[:1024]), list(b[-1024:])
        rows.append(beg + [256] * (1024 - len(beg)) + [256] * (1024 - len(end)) + end)
    return np.array(rows, np.int32)


# ---------------------------------------------------------------- entries

@dataclass
class Entry:
    """One corpus model: how to get its ONNX graph and its inputs."""

    name: str
    kind: str  # "random", "trained" or "sklearn"
    source: str
    load: Callable[[], onnx.ModelProto]
    inputs: list[dict[str, object]]
    note: str = ""
    committed: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    def batch(self, n: int, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [make_input(s, n, rng) for s in self.inputs]


def _skeleton_entry(path: Path) -> Entry:
    meta = json.loads(onnx.load(str(path), load_external_data=False).doc_string)
    return Entry(path.stem, "random", meta["source"], lambda: flesh(onnx.load(str(path))), meta["inputs"])


def fix_dims(m: onnx.ModelProto, dims: dict[str, int]) -> onnx.ModelProto:
    """The graph inputs' symbolic dimensions named in ``dims`` set to numbers (the documented way to convert a
    model whose batch is not axis 0 of every input: a fixed batch)."""
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in dims:
                v = dims[d.dim_param]
                d.Clear()
                d.dim_value = v
    return m


def _wheel_file(wheel: str, member: str) -> Path | None:
    """``member`` of the newest wheel of PyPI package ``wheel`` in ``WHEELS`` (extracted once), or None."""
    dest = WHEELS / wheel / member
    if dest.exists():
        return dest
    import zipfile

    cands = sorted(WHEELS.glob(f"{wheel.replace('-', '_')}-*.whl"))
    if not cands:
        return None
    with zipfile.ZipFile(cands[-1]) as z:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(z.read(member))
    return dest


def fetch_wheels() -> None:
    """``pip download --no-deps`` of the wheels whose models the corpus loads (PyPI only)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    for pkg in ("magika==1.0.3", "rapidocr-onnxruntime==1.4.4", "silero-vad==6.2.3"):
        subprocess.run([sys.executable, "-m", "pip", "download", pkg, "--no-deps", "-q", "-d", str(WHEELS)],
                       check=False)


def _wheel_entry(name: str, wheel: str, member: str, inputs: list[dict[str, object]], source: str,
                 prep: Callable[[onnx.ModelProto], onnx.ModelProto] = lambda m: m, note: str = "") -> Entry | None:
    local = CORPUS_DIR / Path(member).name
    if local.exists():
        return Entry(name, "trained", source, lambda: prep(onnx.load(str(local))), inputs, note)
    path = _wheel_file(wheel, member)
    if path is None:
        return None
    return Entry(name, "trained", source, lambda: prep(onnx.load(str(path))), inputs, note, committed=False)


AUDIO_512 = {"shape": [512], "kind": "audio"}
# silero-vad's streaming call (its own wrapper, ``OnnxWrapper.__call__``): 512 new samples after the last 64 of
# the previous call, and the state it returned
SILERO_CHUNK, SILERO_CONTEXT = 512, 64


def trained_entries() -> list[Entry]:
    """The models shipped inside PyPI wheels (committed copies first, then ``WHEELS``)."""
    cands = [
        _wheel_entry("silero_vad_16k (op15)", "silero-vad", "silero_vad/data/silero_vad_16k_op15.onnx",
                     [{"shape": [1, SILERO_CONTEXT + SILERO_CHUNK], "kind": "speech", "batch": False},
                      {"shape": [2, 1, 128], "kind": "state", "batch": False},
                      {"shape": [], "kind": "const", "value": 16000, "batch": False}],
                     "silero-vad 6.2.3 wheel (MIT)",
                     lambda m: fix_dims(m, {"batch": 1, "sequence": SILERO_CONTEXT + SILERO_CHUNK}),
                     "batch fixed to 1 (state is [2, batch, 128]); streamed"),
        _wheel_entry("ppocr_cls (mobile v2.0)", "rapidocr-onnxruntime",
                     "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                     [{"shape": [3, 48, 192], "kind": "text_line", "upside_down": True}],
                     "rapidocr-onnxruntime 1.4.4 wheel (Apache-2.0)", note="text-line crops, half upside down"),
        _wheel_entry("ppocr_det (PP-OCRv4)", "rapidocr-onnxruntime",
                     "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                     [{"shape": [3, 96, 96], "kind": "document"}], "rapidocr-onnxruntime 1.4.4 wheel (Apache-2.0)",
                     note="synthetic document pages"),
        _wheel_entry("ppocr_rec (PP-OCRv4)", "rapidocr-onnxruntime",
                     "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                     [{"shape": [3, 48, 160], "kind": "text_line"}], "rapidocr-onnxruntime 1.4.4 wheel (Apache-2.0)",
                     note="text-line crops"),
        _wheel_entry("magika (standard_v3_3)", "magika", "magika/models/standard_v3_3/model.onnx",
                     [{"shape": [2048], "kind": "bytes"}], "magika 1.0.3 wheel (Apache-2.0)"),
    ]
    out = [e for e in cands if e is not None]
    for e in out:
        if e.name.startswith("silero"):
            e.extra["stream"] = True  # (calibrated and judged streamed: ``stream``)
    return out


def sklearn_entries() -> list[Entry]:
    """A few scikit-learn pipelines (skl2onnx), trained on datasets inside scikit-learn's wheel."""
    try:
        from skl2onnx import to_onnx
        from sklearn import datasets
        from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return []
    specs: list[tuple[str, Callable[[], object], Callable[..., object]]] = [
        ("sklearn LogisticRegression (scaler) digits", lambda: make_pipeline(StandardScaler(),
                                                                             LogisticRegression(max_iter=500)),
         datasets.load_digits),
        ("sklearn RandomForest 10 x depth 8 digits",
         lambda: RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0), datasets.load_digits),
        ("sklearn GradientBoosting 20 x depth 3 breast_cancer",
         lambda: GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0),
         datasets.load_breast_cancer),
    ]
    out = []
    for name, make, data in specs:
        x, y = data(return_X_y=True)
        x = x.astype(np.float32)

        def load(make: Callable[[], object] = make, x: np.ndarray = x, y: np.ndarray = y) -> onnx.ModelProto:
            model = make()
            model.fit(x[::2], y[::2])  # type: ignore[attr-defined]
            return to_onnx(model, x[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
        e = Entry(name, "sklearn", "skl2onnx", load, [{"shape": [x.shape[1]], "kind": "rows"}], committed=False)
        e.extra["rows"] = x[1::2]
        out.append(e)
    return out


def corpus_entries(include_sklearn: bool = True) -> list[Entry]:
    """Every model of the corpus: committed skeletons, trained wheel models, scikit-learn pipelines."""
    out = [_skeleton_entry(p) for p in sorted(CORPUS_DIR.glob("*.onnx"))
           if p.read_bytes()[:4096].find(b"aievm-skeleton") >= 0 or _is_skeleton(p)]
    out += trained_entries()
    if include_sklearn:
        out += sklearn_entries()
    return out


def _is_skeleton(p: Path) -> bool:
    return any(t.doc_string.startswith(_TAG) for t in onnx.load(str(p)).graph.initializer)


def entry_inputs(e: Entry, n: int, seed: int) -> list[np.ndarray]:
    """``n`` samples of ``e``'s inputs (seed 0: calibration; seed 1: evaluation)."""
    if "rows" in e.extra:
        rows = e.extra["rows"]
        assert isinstance(rows, np.ndarray)
        return [rows[seed * n:(seed + 1) * n]]
    return e.batch(n, seed)


def fixed_batch(e: Entry) -> bool:
    """Whether ``e`` runs one sample per call (its inputs have no batch axis of their own)."""
    return all(s.get("batch") is False for s in e.inputs)


# ---------------------------------------------------------------- measuring

N_SAMPLES = 16


@dataclass
class Row:
    """One line of the table."""

    name: str
    kind: str
    source: str
    error: str = ""
    nodes: int = 0
    cos_mean: float = float("nan")
    cos_min: float = float("nan")
    int8_mean: float = float("nan")
    int8_min: float = float("nan")
    int8_note: str = ""
    top1: float = float("nan")
    identical: str = ""
    engine_ms: float = float("nan")
    ort_ms: float = float("nan")
    convert_s: float = float("nan")
    note: str = ""
    digest: str = ""
    auto_mean: float = float("nan")
    auto_min: float = float("nan")
    auto_opts: str = ""


def _row_cos(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and minimum cosine over samples (rows); one value per sample (a score): the cosine of the column."""
    x = a.astype(np.float64).reshape(a.shape[0], -1)
    y = b.astype(np.float64).reshape(b.shape[0], -1)
    if x.shape[1] == 1:
        x, y = x.reshape(1, -1), y.reshape(1, -1)
    d = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    if np.all(d == 0):  # (an all-zero output compares nothing)
        return float("nan"), float("nan")
    c = np.where(d > 0, (x * y).sum(axis=1) / np.where(d > 0, d, 1.0), np.nan)
    return float(np.nanmean(c)), float(np.nanmin(c))


def _names(m: onnx.ModelProto) -> list[str]:
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits]


def _ort(m: onnx.ModelProto | str, threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    src = m if isinstance(m, str) else m.SerializeToString()
    return ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])


def calibration(e: Entry, m: onnx.ModelProto) -> object:
    """``N_SAMPLES`` calibration samples (seed 0) as ``convert`` takes them: one batch, or for a fixed-batch
    model one batch per sample (``opml.convert.Batches``: converted in lockstep, ranges over all samples);
    a streaming model: calls spread evenly over a float (onnxruntime) stream, each with its state."""
    from opml.convert import Batches

    if e.extra.get("stream"):
        sess = _ort(m, 1)
        names = _names(m)
        calls, _ = stream(e, lambda xs: sess.run(None, dict(zip(names, xs, strict=True))), 0)
        return Batches([calls[i] for i in np.linspace(0, len(calls) - 1, N_SAMPLES).astype(int)])
    if fixed_batch(e):
        return Batches([e.batch(1, k) for k in range(N_SAMPLES)])
    return entry_inputs(e, N_SAMPLES, 0)


STREAM_CALLS = 160  # 5.1 s of audio per stream


def stream(e: Entry, run_one: Callable[[list[np.ndarray]], list[np.ndarray]], seed: int,
           calls: int = STREAM_CALLS) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """silero-vad streamed over ``calls`` chunks of speech-like audio (``seed``) the way its wrapper calls it:
    each call's input is the last ``SILERO_CONTEXT`` samples of the previous one and ``SILERO_CHUNK`` new ones,
    its state the state the previous call returned (``run_one``'s own: the engine carries the engine's).
    Returns each call's inputs and outputs."""
    audio = speech_like(SILERO_CHUNK * calls, np.random.default_rng(seed))
    state = np.zeros(e.inputs[1]["shape"], np.float32)  # type: ignore[call-overload]
    ctx = np.zeros((1, SILERO_CONTEXT), np.float32)
    sr = make_input(e.inputs[2], 1, np.random.default_rng(0))
    ins, outs = [], []
    for k in range(calls):
        x = np.concatenate([ctx, audio[None, k * SILERO_CHUNK:(k + 1) * SILERO_CHUNK]], axis=1)
        xs = [x, state, sr]
        o = run_one(xs)
        ins.append(xs)
        outs.append(o)
        state, ctx = np.asarray(o[1], np.float32), x[:, -SILERO_CONTEXT:]
    return ins, outs


def _calib_feeds(calib: object) -> list[list[np.ndarray]]:
    """The calibration samples one call each (onnxruntime's quantizer reads them one by one)."""
    from opml.convert import Batches

    if isinstance(calib, Batches):
        return [list(b) for b in calib.items]  # type: ignore[call-overload]
    xs = list(calib)  # type: ignore[call-overload]
    n = xs[0].shape[0] if xs[0].ndim else 1
    return [[v[i:i + 1] if v.ndim else v for v in xs] for i in range(n)]


def _samples(e: Entry, seed: int) -> list[list[np.ndarray]]:
    """Evaluation calls: one batch of ``N_SAMPLES``, or ``N_SAMPLES`` single-sample calls for fixed-batch models."""
    if fixed_batch(e):
        return [e.batch(1, seed * 1000 + k) for k in range(N_SAMPLES)]
    return [entry_inputs(e, N_SAMPLES, seed)]


def _ort_int8(m: onnx.ModelProto, calib: list[list[np.ndarray]], tmp: Path) -> str:
    """onnxruntime's static int8 quantization of ``m`` (QDQ, per-channel weights) calibrated on ``calib`` (one
    list of inputs per call)."""
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    logging.getLogger().setLevel(logging.ERROR)
    names = _names(m)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([dict(zip(names, xs, strict=True)) for xs in calib])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    src, dst = tmp / "fp32.onnx", tmp / "int8.onnx"
    onnx.save(m, str(src))
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return str(dst)


def measure(e: Entry, bundle_dir: Path, repeat: int = 5, auto: bool = False) -> Row:
    """Convert and compare one model (see the module docstring); the bundle is saved in ``bundle_dir``."""
    from opml.bundle import encode_bundle
    from opml.convert import Batches, convert
    from opml.engine import run
    from opml.errors import ConversionError
    from opml.parallel import worker_count

    row = Row(e.name, e.kind, e.source, note=e.note)
    m = e.load()
    calib = calibration(e, m)
    t0 = time.perf_counter()
    try:
        bundle = convert(m, calib, name=e.name)
    except ConversionError as err:
        row.error = str(err)
        if "batch" not in row.error or fixed_batch(e):
            return row
        # the documented way out of a batch refusal: a fixed batch of 1, calibrated on the samples one by one
        e = Entry(e.name, e.kind, e.source, e.load, [{**s, "batch": False, "shape": [1, *s["shape"]]}  # type: ignore[list-item]
                                                     for s in e.inputs], e.note)
        m = fix_dims(e.load(), {d.dim_param: 1 for vi in m.graph.input for d in vi.type.tensor_type.shape.dim[:1]
                                if d.HasField("dim_param")})
        calib = Batches([[x[k:k + 1] for x in calib] for k in range(N_SAMPLES)])  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        try:
            bundle = convert(m, calib, name=e.name)
        except ConversionError as err2:
            row.note = f"batch fixed to 1: also refused: {err2}"
            return row
        row.note = "dynamic batch refused; converts with the batch fixed to 1"
    row.convert_s = time.perf_counter() - t0
    row.nodes = len(bundle.nodes)
    sess = _ort(m, worker_count())
    names = _names(m)

    def ort_call(xs: list[np.ndarray], s=sess) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
        return s.run(None, dict(zip(names, xs, strict=True)))  # type: ignore[no-any-return]

    streamed = bool(e.extra.get("stream"))
    if streamed:  # each runtime carries its own state through the same audio
        _, want_all = stream(e, ort_call, 1)
        evals, got_all = stream(e, lambda xs: run(bundle, _engine_feed(xs)), 1)
    else:
        evals = _samples(e, 1)
        got_all = [run(bundle, _engine_feed(xs)) for xs in evals]
        want_all = [ort_call(xs) for xs in evals]
    one_row = fixed_batch(e) or streamed

    def rows(outs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([a.reshape(1, -1) if one_row else a for a in outs])

    got, want = [o[0] for o in got_all], [o[0] for o in want_all]
    g, w = rows(got), rows(want)
    row.cos_mean, row.cos_min = _row_cos(g, w)
    if streamed:
        st = [_row_cos(a[1].reshape(1, -1), b[1].reshape(1, -1))[0] for a, b in zip(got_all, want_all, strict=True)]
        row.note += (f"; {len(evals)} calls of speech-like audio: new state cosine mean {np.mean(st):.4f} min "
                     f"{np.min(st):.4f}, speech (p > 0.5) agrees on {np.mean((g > 0.5) == (w > 0.5)):.3f} of calls")
    if w.dtype.kind in "iu" and w.ndim == 1:  # class labels (scikit-learn classifiers)
        row.top1 = float(np.mean(g == w))
    elif w.ndim >= 2 and w.shape[-1] > 1:
        gl, wl = g.reshape(-1, g.shape[-1]), w.reshape(-1, w.shape[-1])
        row.top1 = float(np.mean(np.argmax(gl, -1) == np.argmax(wl, -1)))
    if len(want_all[0]) > 1 and w.dtype.kind in "iu":  # labels first: the cosine is the probabilities'
        row.cos_mean, row.cos_min = _row_cos(np.concatenate([o[-1] for o in got_all]),
                                             np.concatenate([o[-1] for o in want_all]))
    if auto and e.kind != "sklearn":  # opml.convert.accuracy's search (range method, bias correction, int16)
        from opml.convert.accuracy import choose_options

        try:
            res = choose_options(m, calib, name=e.name, max_conversions=8)
            if streamed:
                ga = [o[0] for o in stream(e, lambda xs: run(res.bundle, _engine_feed(xs)), 1)[1]]
            else:
                ga = [run(res.bundle, _engine_feed(xs))[0] for xs in evals]
            row.auto_mean, row.auto_min = _row_cos(rows(ga), w)
            row.auto_opts = res.options.describe()
        except ConversionError as err:
            row.auto_opts = f"search failed: {err}"
    row.digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in got)).hexdigest()
    (bundle_dir / f"{_slug(e.name)}.bundle").write_bytes(encode_bundle(bundle))
    np.savez(bundle_dir / f"{_slug(e.name)}.npz", *[x for xs in evals for x in _engine_feed(xs)])
    if e.kind != "sklearn":
        with tempfile.TemporaryDirectory() as td:
            try:
                q = _ort(_ort_int8(m, _calib_feeds(calib), Path(td)), worker_count())

                def q_call(xs: list[np.ndarray]) -> list[np.ndarray]:
                    return q.run(None, dict(zip(names, xs, strict=True)))  # type: ignore[no-any-return]

                qw = [o[0] for o in stream(e, q_call, 1)[1]] if streamed else [q_call(xs)[0] for xs in evals]
                row.int8_mean, row.int8_min = _row_cos(rows(qw), w)
            except Exception as err:  # onnxruntime's quantizer refuses some graphs: reported, not fatal
                row.int8_note = f"ort quantizer failed ({type(err).__name__})"
    one = evals[0] if one_row else [x[:1] if x.ndim else x for x in evals[0]]
    feed, one_e = dict(zip(names, one, strict=True)), _engine_feed(one)
    t_eng = t_ort = float("inf")
    for _ in range(3):  # alternate the runtimes
        t_eng = min(t_eng, best_time(lambda: run(bundle, one_e), repeat))
        t_ort = min(t_ort, best_time(lambda: sess.run(None, feed), repeat))
    row.engine_ms, row.ort_ms = t_eng * 1e3, t_ort * 1e3
    return row


def _engine_feed(xs: list[np.ndarray]) -> list[np.ndarray]:
    """The engine's inputs: as onnxruntime's (a 0-d input, silero-vad's sample rate, is 0-d in a bundle; the engine
    also takes it as a one-element vector, as bundles converted before declared it)."""
    return list(xs)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def main() -> None:
    from corpus_report import check_identity, print_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated substrings of model names")
    ap.add_argument("--wheels-fetch", action="store_true", help="pip download the wheels first")
    ap.add_argument("--no-identity", action="store_true", help="skip the bit-identity processes")
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--accuracy-auto", action="store_true",
                    help="also convert with opml.convert.accuracy's search (8 conversions) and report its cosine")
    args = ap.parse_args()
    if args.wheels_fetch:
        fetch_wheels()
    sel = [s for s in args.only.split(",") if s]
    entries = [e for e in corpus_entries(not args.no_sklearn) if not sel or any(s in e.name for s in sel)]
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for e in entries:
            t = time.perf_counter()
            r = measure(e, Path(td), args.repeat, args.accuracy_auto)
            rows.append(r)
            print(f"# {e.name}: {'error' if r.error else 'ok'} in {time.perf_counter() - t:.0f} s", file=sys.stderr,
                  flush=True)
        if not args.no_identity:
            check_identity(rows, Path(td))
    print_table(rows, args.markdown)


if __name__ == "__main__":
    main()
