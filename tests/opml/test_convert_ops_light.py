"""Standard CNN architectures end to end: the "light" models the onnx wheel ships
(``onnx/backend/test/data/light``: SqueezeNet, ResNet-50, ShuffleNet, Inception v1/v2, DenseNet-121,
AlexNet; old opsets, MaxPool ceil_mode, LRN, Dropout with its mask output, Unsqueeze with an ``axes``
attribute). Their weights are ``ConstantOfShape`` placeholders; here they are replaced by seeded random
He-scaled initializers (BatchNormalization statistics near 1 and 0), the final Softmax is cut so the
logits are compared, and the engine must agree with onnxruntime float32: logit cosine >= 0.999 and the
same top-1 (or, on a near tie of random weights, a class within 2 % of the logit range of it) on the
calibration image and on a new one. (VGG-19 and ZFNet-512 convert too, at 0.9996 and
0.9997, but their 100M-weight fully connected layers take 10-30 s to quantize: measured, not run here.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from opml.convert import convert
from opml.engine import run

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = ["squeezenet", "resnet50", "shufflenet", "inception_v1", "inception_v2", "densenet121", "bvlc_alexnet"]


def randomized(name: str, seed: int = 0) -> onnx.ModelProto:
    """The light model with random weights in place of its ConstantOfShape placeholders, logits out."""
    m = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    rng = np.random.default_rng(seed)
    g = m.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    users: dict[str, tuple[str, int]] = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            users.setdefault(i, (n.op_type, k))
    keep, inits = [], list(g.initializer)
    for n in g.node:
        if n.op_type != "ConstantOfShape" or n.input[0] not in consts:
            keep.append(n)
            continue
        shape = [int(v) for v in consts[n.input[0]]]
        op, k = users.get(n.output[0], ("", 0))
        if op == "BatchNormalization":
            arr = [rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.1, shape), rng.normal(0, 0.1, shape),
                   rng.uniform(0.5, 1.5, shape)][k - 1]
        elif len(shape) >= 2:
            arr = rng.normal(0, np.sqrt(2.0 / (shape[-1] if op == "Gemm" else int(np.prod(shape[1:])))), shape)
        else:
            arr = rng.normal(0, 0.05, shape)
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), n.output[0]))
    if keep[-1].op_type == "Softmax":
        logits = keep.pop().input[0]
        del g.output[:]
        g.output.append(helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(inits)
    return m


@pytest.mark.parametrize("name", MODELS)
def test_light_architecture_agrees_with_onnxruntime(name: str) -> None:
    m = randomized(name)
    (inp,) = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    rng = np.random.default_rng(1)
    calib, new = (rng.random(shape).astype(np.float32) for _ in range(2))
    bundle = convert(m, [calib])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for x in (calib, new):
        got = run(bundle, [x])[0].astype(np.float64).ravel()
        want = sess.run(None, {inp.name: x})[0].astype(np.float64).ravel()
        cos = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert cos >= 0.999, f"{name}: cosine {cos:.5f} to onnxruntime float32"
        # the same top-1, or (random weights leave near ties) one within 2 % of the logit range of it
        top = want[int(got.argmax())]
        assert top >= want.max() - 0.02 * (want.max() - want.min()), f"{name}: top-1 {got.argmax()} vs {want.argmax()}"
