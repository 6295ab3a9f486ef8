"""scikit-learn models through the converter: agreement with onnxruntime float32 and time.

For each model (trained here on a dataset that ships inside scikit-learn's wheel: iris, digits,
breast_cancer, diabetes; 70/30 split, ``random_state=0``), exported with skl2onnx (``zipmap`` off):

* convert with the first 64 training rows as calibration data (a conversion error is reported in one line);
* label agreement with onnxruntime float32 on the test split (classifiers), and cosine of the
  probabilities (classifiers) or predictions (regressors) against onnxruntime's, flattened;
* time of one call at batch 1 and on the whole test split, engine (``opml.engine.run``) vs onnxruntime
  float32 on the exported model: best of repeated calls, the two runtimes alternating; the ratio is
  engine / onnxruntime.

Usage: ``python scripts/bench/sklearn_models.py [--markdown] [--repeat N]``. Prints one row per model.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
from common import best_time
from skl2onnx import to_onnx
from sklearn import datasets
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from opml.convert import convert
from opml.engine import run
from opml.errors import ConversionError

DATA = {"iris": datasets.load_iris, "digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes}
MODELS: list[tuple[str, str, Callable[[], object]]] = [
    ("LogisticRegression (StandardScaler)", "iris",
     lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    ("LogisticRegression (StandardScaler)", "breast_cancer",
     lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    ("LogisticRegression (StandardScaler)", "digits",
     lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    ("LinearRegression", "diabetes", LinearRegression),
    ("DecisionTree depth 5", "iris", lambda: DecisionTreeClassifier(max_depth=5, random_state=0)),
    ("DecisionTree depth 6", "breast_cancer", lambda: DecisionTreeClassifier(max_depth=6, random_state=0)),
    ("DecisionTree depth 6 (StandardScaler)", "breast_cancer",
     lambda: make_pipeline(StandardScaler(), DecisionTreeClassifier(max_depth=6, random_state=0))),
    ("DecisionTree depth 8", "digits", lambda: DecisionTreeClassifier(max_depth=8, random_state=0)),
    ("RandomForest 10 x depth 6", "iris",
     lambda: RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)),
    ("RandomForest 10 x depth 6", "breast_cancer",
     lambda: RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)),
    ("RandomForest 10 x depth 8", "digits",
     lambda: RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0)),
    ("GradientBoosting 10 x depth 3", "iris",
     lambda: GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0)),
    ("GradientBoosting 20 x depth 3", "breast_cancer",
     lambda: GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0)),
    ("DecisionTreeRegressor depth 6", "diabetes", lambda: DecisionTreeRegressor(max_depth=6, random_state=0)),
    ("RandomForestRegressor 10 x depth 6", "diabetes",
     lambda: RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0)),
    ("GradientBoostingRegressor 20 x depth 3", "diabetes",
     lambda: GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0)),
]


def split(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = DATA[name](return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x.astype(np.float32), y, test_size=0.3, random_state=0)
    return xtr, xte, ytr, yte


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))


def measure(label: str, data: str, make: Callable[[], object], repeat: int) -> dict[str, object]:
    xtr, xte, ytr, _ = split(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make()
        model.fit(xtr, ytr)  # type: ignore[attr-defined]
    classifier = hasattr(model, "predict_proba")
    onx = to_onnx(model, xtr[:1], options={"zipmap": False} if classifier else None,
                  target_opset={"": 17, "ai.onnx.ml": 3})
    row: dict[str, object] = {"model": label, "data": data}
    try:
        bundle = convert(onx, xtr[:64], name=f"{label} {data}")
    except ConversionError as e:
        row["error"] = str(e)
        return row
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = onx.graph.input[0].name
    got, want = run(bundle, [xte]), sess.run(None, {feed: xte})
    if classifier:
        row["agree"] = float(np.mean(got[0] == want[0]))
        row["agree_n"] = f"{int(np.sum(got[0] == want[0]))}/{len(xte)}"
    row["cosine"] = cosine(got[-1], want[-1])
    for tag, x in (("1", xte[:1]), ("all", xte)):
        t_eng, t_ort = float("inf"), float("inf")
        for _ in range(3):  # alternate the runtimes
            t_eng = min(t_eng, best_time(lambda x=x: run(bundle, [x]), repeat))
            t_ort = min(t_ort, best_time(lambda x=x: sess.run(None, {feed: x}), repeat))
        row[f"engine_ms_{tag}"], row[f"ort_ms_{tag}"] = t_eng * 1e3, t_ort * 1e3
    row["nodes"] = len(bundle.nodes)
    row["rows"] = len(xte)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", action="store_true", help="print a markdown table (docs/engine.md)")
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    if args.markdown:
        print("| model | data (test rows) | converts | labels = onnxruntime | cosine | engine / onnxruntime, batch 1 "
              "| engine / onnxruntime, test split |")
        print("|---|---|---|---|---|---|---|")
    for label, data, make in MODELS:
        r = measure(label, data, make, args.repeat)
        if "error" in r:
            print(f"| {label} | {data} | no: {r['error']} | | | | |" if args.markdown else
                  f"{label} {data}: {r['error']}")
            continue
        agree = f"{r['agree_n']} ({r['agree']:.4f})" if "agree" in r else "(regressor)"
        t1 = f"{r['engine_ms_1']:.2f} / {r['ort_ms_1']:.3f} ms ({r['engine_ms_1'] / r['ort_ms_1']:.0f}x)"  # type: ignore[operator]
        ta = f"{r['engine_ms_all']:.2f} / {r['ort_ms_all']:.3f} ms ({r['engine_ms_all'] / r['ort_ms_all']:.1f}x)"  # type: ignore[operator]
        if args.markdown:
            print(f"| {label} | {data} ({r['rows']}) | yes ({r['nodes']} nodes) | {agree} | {r['cosine']:.5f} "
                  f"| {t1} | {ta} |")
        else:
            print(f"{label} {data}: nodes {r['nodes']} agree {agree} cosine {r['cosine']:.5f} batch1 {t1} all {ta}",
                  flush=True)


if __name__ == "__main__":
    main()
