"""Build the ``encoder`` example model: a tiny transformer encoder on the digits (needs torch).

Each 8x8 ``load_digits`` image (same split as ``digits_mlp``: ``test_size=0.25, random_state=0``,
pixels / 16) is a sequence of 8 tokens (its rows) of 8 features.  Model:

    Linear(8 -> 32) + learned positional embedding [8, 32]
    2 x post-LN encoder layer (as BERT):
        x = LayerNorm(x + MHSA(x))      # 4 heads, dh = 8, attention written by hand
        x = LayerNorm(x + W2 GELU(W1 x))  # FFN 32 -> 64 -> 32, exact (erf) GELU
    mean over the 8 tokens -> Linear(32 -> 10) -> logits

The attention is plain tensor code (no nn.MultiheadAttention) and reshapes use static shapes with a
-1 batch dim (``reshape(-1, 8, 4, 8)`` / ``reshape(-1, 8, 32)``), so the TorchScript exporter
(``dynamo=False``, opset 17) emits only MatMul, Add, Reshape (constant shapes), Transpose, Mul (by
1/sqrt(dh)), Softmax, LayerNormalization, the Erf GELU pattern (Div, Erf, Add, Mul, Mul) and
ReduceMean - no Shape/Gather/Concat shape arithmetic.

Writes next to this script:

* ``model.onnx`` - input ``input`` float32 [N, 8, 8] (dynamic batch) -> ``logits`` float32 [N, 10]
* ``calib.npy`` float32 [200, 8, 8] (first 200 training images), ``test_x.npy`` float32 [450, 8, 8],
  ``test_y.npy`` int64 [450]

Run in a throwaway venv (never install torch into the project venv)::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 numpy onnx onnxscript scikit-learn onnxruntime
    /tmp/torchvenv/bin/python models/encoder/make_model.py

Deterministic (fixed seeds, one thread, deterministic algorithms) and idempotent; ~1 min on 2 cores.
The script runs onnx.checker (full check), strict shape inference, and compares onnxruntime with torch.
"""

from __future__ import annotations

import math
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
SEQ, FEAT, D, HEADS, FFN, LAYERS = 8, 8, 32, 4, 64, 2
DH = D // HEADS
EPOCHS = 120


def load_data():
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, SEQ, FEAT)
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, random_state=0)


class EncoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ln1 = nn.LayerNorm(D)
        self.ff1, self.ff2 = nn.Linear(D, FFN), nn.Linear(FFN, D)
        self.ln2 = nn.LayerNorm(D)
        self.scale = 1.0 / math.sqrt(DH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x).reshape(-1, SEQ, HEADS, DH).transpose(1, 2)  # [N, H, S, dh]
        k = self.k(x).reshape(-1, SEQ, HEADS, DH).permute(0, 2, 3, 1)  # [N, H, dh, S]
        v = self.v(x).reshape(-1, SEQ, HEADS, DH).transpose(1, 2)  # [N, H, S, dh]
        att = torch.softmax(torch.matmul(q, k) * self.scale, dim=-1)
        ctx = torch.matmul(att, v).transpose(1, 2).reshape(-1, SEQ, D)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ff2(nn.functional.gelu(self.ff1(x))))


class DigitsEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(FEAT, D)
        self.pos = nn.Parameter(0.02 * torch.randn(SEQ, D))
        self.layers = nn.ModuleList(EncoderLayer() for _ in range(LAYERS))
        self.head = nn.Linear(D, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos
        for layer in self.layers:
            h = layer(h)
        return self.head(h.mean(dim=1))


def train(x_train: np.ndarray, y_train: np.ndarray) -> DigitsEncoder:
    torch.manual_seed(0)
    model = DigitsEncoder()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    steps_per_epoch = math.ceil(len(x_train) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=EPOCHS * steps_per_epoch)
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
            sched.step()
            total += float(loss.detach()) * len(idx)
        if epoch % 20 == 19:
            print(f"epoch {epoch + 1}: train loss {total / len(xt):.4f}")
    model.eval()
    return model


def export(model: nn.Module, path: str) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, SEQ, FEAT),),
        path,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=OPSET,
        dynamo=False,
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
    onnx.save(m, path)
    print("ops:", Counter(n.op_type for n in m.graph.node))

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
