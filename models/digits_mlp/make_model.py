"""Build the ``digits_mlp`` example model.

Trains a scikit-learn MLPClassifier (hidden (64, 32), relu) on ``sklearn.datasets.load_digits``
(8x8 images, 10 classes; fixed split ``test_size=0.25, random_state=0``; pixels scaled to [0, 1]
by dividing by 16) and writes, next to this script:

* ``model.onnx``  - input ``input`` float32 [N, 64] (dynamic batch) ->
  output ``probabilities`` float32 [N, 10].  The graph is built by hand with ``onnx.helper`` from the
  trained coefficients: Gemm -> Relu -> Gemm -> Relu -> Gemm -> Softmax (opset 17).
  (skl2onnx's export of the same classifier adds an ArgMax/label branch and a Cast; building
  it by hand keeps only plain ops and is cross-checked against skl2onnx's probabilities.)
* ``calib.npy``   - float32 [200, 64], the first 200 (shuffled-split) training images.
* ``test_x.npy``  - float32 [450, 64]; ``test_y.npy`` - int64 [450].

Deterministic (fixed seeds) and idempotent.  Run with the project venv::

    .venv/bin/python models/digits_mlp/make_model.py
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17


def load_data():
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=0)


def train(x_train, y_train) -> MLPClassifier:
    clf = MLPClassifier(hidden_layer_sizes=(64, 32), activation="relu", max_iter=500, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    return clf


def to_onnx(clf: MLPClassifier) -> onnx.ModelProto:
    inits = []
    nodes = []
    cur = "input"
    n_layers = len(clf.coefs_)
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        wn, bn = f"fc{i}.weight", f"fc{i}.bias"
        inits.append(numpy_helper.from_array(np.asarray(w, np.float32), wn))  # [in, out]
        inits.append(numpy_helper.from_array(np.asarray(b, np.float32), bn))
        out = f"fc{i}_out"
        nodes.append(helper.make_node("Gemm", [cur, wn, bn], [out], name=f"fc{i}"))
        cur = out
        if i < n_layers - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"relu{i}_out"], name=f"relu{i}"))
            cur = f"relu{i}_out"
    nodes.append(helper.make_node("Softmax", [cur], ["probabilities"], axis=-1, name="softmax"))
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="aievm-models")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    x_train, x_test, y_train, y_test = load_data()
    clf = train(x_train, y_train)
    model = to_onnx(clf)
    onnx.save(model, os.path.join(HERE, "model.onnx"))
    np.save(os.path.join(HERE, "calib.npy"), x_train[:200].astype(np.float32))
    np.save(os.path.join(HERE, "test_x.npy"), x_test.astype(np.float32))
    np.save(os.path.join(HERE, "test_y.npy"), y_test.astype(np.int64))

    # cross-checks
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {"input": x_test})[0]
    ref = clf.predict_proba(x_test)
    print("max |ort - sklearn| prob diff:", float(np.abs(probs - ref).max()))
    try:
        from skl2onnx import to_onnx as skl_to_onnx

        sk = skl_to_onnx(clf, x_train[:1], options={id(clf): {"zipmap": False}}, target_opset=OPSET)
        s2 = ort.InferenceSession(sk.SerializeToString(), providers=["CPUExecutionProvider"])
        p2 = [o for o in s2.run(None, {s2.get_inputs()[0].name: x_test}) if o.ndim == 2][0]
        print("max |hand-built - skl2onnx| prob diff:", float(np.abs(probs - p2).max()))
    except Exception as e:  # pragma: no cover - informational only
        print("skl2onnx cross-check skipped:", e)
    print("sklearn test accuracy:", clf.score(x_test, y_test))
    print("onnxruntime test accuracy:", float((probs.argmax(1) == y_test).mean()))


if __name__ == "__main__":
    main()
