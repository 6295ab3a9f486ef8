"""Build the ``digits_cnn`` example model (needs torch; NOT for the project venv).

A small CNN trained with torch on ``sklearn.datasets.load_digits`` (same split as ``digits_mlp``:
``test_size=0.25, random_state=0``, pixels / 16 -> [0, 1]), exported to ONNX opset 17 with the
BatchNormalization nodes kept in the graph (TorchScript exporter, ``training=TrainingMode.PRESERVE``
on a model in eval mode, ``do_constant_folding=False``: the eval-mode Conv+BN fusion pass is skipped).

Architecture: Conv(1->16, 3x3, pad 1) + BN + Relu, Conv(16->32, 3x3, pad 1) + BN + Relu,
MaxPool 2x2, Flatten, Gemm(512->64), Relu, Gemm(64->10) -> logits.

Writes next to this script:

* ``model.onnx`` - input ``input`` float32 [N, 1, 8, 8] (dynamic batch) -> output ``logits``
  float32 [N, 10]
* ``calib.npy`` float32 [200, 1, 8, 8] (first 200 training images), ``test_x.npy`` float32
  [450, 1, 8, 8], ``test_y.npy`` int64 [450]

Run in a throwaway venv (never install torch into the project venv)::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy onnx onnxscript scikit-learn onnxruntime
    /tmp/torchvenv/bin/python models/digits_cnn/make_model.py

Deterministic (fixed seeds, one thread, deterministic algorithms) and idempotent; ~30 s on 2 cores.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17
EPOCHS = 30


def load_data():
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=0)


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train(x_train: np.ndarray, y_train: np.ndarray) -> DigitsCNN:
    torch.manual_seed(0)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    g = torch.Generator().manual_seed(0)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        total = 0.0
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1}: train loss {total / len(xt):.4f}")
    model.eval()
    return model


def export(model: nn.Module, path: str) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        path,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=OPSET,
        dynamo=False,
        training=torch.onnx.TrainingMode.PRESERVE,
        do_constant_folding=False,
    )


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_train, x_test, y_train, y_test = load_data()
    model = train(x_train, y_train)
    with torch.no_grad():
        ref = model(torch.from_numpy(x_test)).numpy()
    print("torch test accuracy:", float((ref.argmax(1) == y_test).mean()))

    path = os.path.join(HERE, "model.onnx")
    export(model, path)
    m = onnx.load(path)
    m.producer_name, m.producer_version = "aievm-models", ""  # keep the bytes independent of torch version
    onnx.checker.check_model(m, full_check=True)
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.save(onnx.load_from_string(m.SerializeToString()), path)
    print("ops:", Counter(n.op_type for n in m.graph.node))
    assert any(n.op_type == "BatchNormalization" for n in m.graph.node), "BN was fused away"

    np.save(os.path.join(HERE, "calib.npy"), x_train[:200].astype(np.float32))
    np.save(os.path.join(HERE, "test_x.npy"), x_test.astype(np.float32))
    np.save(os.path.join(HERE, "test_y.npy"), y_test.astype(np.int64))

    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x_test})[0]
    print("max |ort - torch| logit diff:", float(np.abs(out - ref).max()))
    print("onnxruntime test accuracy:", float((out.argmax(1) == y_test).mean()))


if __name__ == "__main__":
    main()
