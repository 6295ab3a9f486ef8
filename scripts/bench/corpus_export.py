"""Export the random-weight architectures of the model corpus to ONNX (needs torch; run it in a throwaway venv).

The architectures are other people's code: torchvision's model zoo (``torchvision.models``), Hugging Face
``transformers`` (BERT, DistilBERT, GPT-2 with tiny configurations) and ``torch.nn``'s own layers
(``nn.TransformerEncoder`` with ``batch_first=True``, ``nn.LSTM``/``nn.GRU`` with ``batch_first=True``, ``Conv1d``,
``ConvTranspose2d``, ``Upsample``) wired into small networks. Weights are torch's random initialisation (seed 0);
inputs are small (images 64x64 or 96x96, sequences of 16 tokens) so that the corpus table runs in minutes
on two cores.

Each model is written as a *skeleton* (``scripts/bench/corpus.py``: the graph with every float initializer of
more than 256 values replaced by its mean and standard deviation, regenerated from a fixed seed when the
corpus is loaded), so the committed files stay a few kB and CI needs no torch. Exported with the
TorchScript exporter (``dynamo=False``), opset 17, the batch dimension dynamic.

Usage (from the repository root)::

    python3.11 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 onnx transformers
    /tmp/torchvenv/bin/pip install --no-deps --target /tmp/tv torchvision==0.28.0 pillow
    PYTHONPATH=/tmp/tv:. /tmp/torchvenv/bin/python scripts/bench/corpus_export.py [--only NAME,...]

torchvision's compiled operators (``nms``) need a CUDA build of torch; only its pure-Python model code is
used here, so the script stubs ``torchvision._meta_registrations`` before importing it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from corpus import CORPUS_DIR, skeleton  # noqa: E402
from torch import nn  # noqa: E402


def _tv() -> types.ModuleType:
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    return torchvision


class TransformerClassifier(nn.Module):
    """Token embedding + ``nn.TransformerEncoder`` (``batch_first=True``: nn.MultiheadAttention's batch-first path)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(1000, 64)
        self.pos = nn.Parameter(torch.randn(1, 16, 64) * 0.02)
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(64, 10)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.emb(ids) + self.pos).mean(1))


class RecurrentClassifier(nn.Module):
    """``nn.LSTM`` or ``nn.GRU`` (``batch_first=True``, 2 layers) over 20 steps of 16 features, last step -> 5
    classes."""

    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.rnn = cell(16, 32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


class AudioCNN(nn.Module):
    """A 1-D convolutional keyword spotter over 1 s of 8 kHz audio (M5-style: strided Conv1d stem)."""

    def __init__(self) -> None:
        super().__init__()
        def block(i: int, o: int, k: int, s: int) -> list[nn.Module]:
            return [nn.Conv1d(i, o, k, s), nn.BatchNorm1d(o), nn.ReLU(), nn.MaxPool1d(4)]
        self.net = nn.Sequential(*block(1, 32, 80, 16), *block(32, 32, 3, 1), *block(32, 64, 3, 1),
                                 nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, 12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyUNet(nn.Module):
    """A two-level UNet: ConvTranspose2d up-path, nearest and bilinear ``Upsample`` (ONNX Resize), skip Concat."""

    def __init__(self) -> None:
        super().__init__()
        def cbr(i: int, o: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())
        self.e1, self.e2, self.e3 = cbr(3, 16), cbr(16, 32), cbr(32, 64)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.d2 = cbr(64, 32)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.d1 = cbr(48, 16)
        self.out = nn.Conv2d(16, 2, 1)
        self.side = nn.Upsample(scale_factor=4, mode="nearest")
        self.side_conv = nn.Conv2d(64, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.e1(x)
        b = self.e2(self.pool(a))
        c = self.e3(self.pool(b))
        d = self.d2(torch.cat([self.up2(c), b], 1))
        e = self.d1(torch.cat([self.up1(d), a], 1))
        return self.out(e) + self.side(self.side_conv(c))


class HFWrapper(nn.Module):
    """A transformers model called with ``input_ids`` and ``attention_mask``; returns the first output."""

    def __init__(self, model: nn.Module, pool: bool) -> None:
        super().__init__()
        self.model, self.pool = model, pool

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=mask)
        h = out[0]
        return h[:, 0] if self.pool else h


def _hf(kind: str) -> nn.Module:
    import transformers as tf

    small = {"vocab_size": 1000, "max_position_embeddings": 64}
    if kind == "bert":
        m = tf.BertModel(tf.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=128, attn_implementation="eager", **small))
    elif kind == "distilbert":
        m = tf.DistilBertModel(tf.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                                                   attn_implementation="eager", **small))
    else:
        m = tf.GPT2Model(tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=64,
                                       attn_implementation="eager"))
    return HFWrapper(m.eval(), pool=kind != "gpt2")


def _vit_tiny() -> nn.Module:
    m = _tv().models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64,
                                       mlp_dim=128, num_classes=10)
    nn.init.normal_(m.heads.head.weight, std=0.02)  # (torchvision zero-initialises the head: outputs all 0)
    return m


IMG = {"shape": [3, 96, 96], "kind": "image"}
TOKENS = {"shape": [16], "kind": "tokens", "vocab": 1000}
MASK = {"shape": [16], "kind": "mask"}
# name -> (constructor, input specs (per sample), source)
ARCHS: dict[str, tuple[Callable[[], nn.Module], list[dict[str, object]], str]] = {
    "resnet18": (lambda: _tv().models.resnet18(num_classes=100), [IMG], "torchvision.models.resnet18"),
    "mobilenet_v2": (lambda: _tv().models.mobilenet_v2(num_classes=100), [IMG], "torchvision.models.mobilenet_v2"),
    "mobilenet_v3_small": (lambda: _tv().models.mobilenet_v3_small(num_classes=100), [IMG],
                           "torchvision.models.mobilenet_v3_small"),
    "shufflenet_v2_x0_5": (lambda: _tv().models.shufflenet_v2_x0_5(num_classes=100), [IMG],
                           "torchvision.models.shufflenet_v2_x0_5"),
    "squeezenet1_1": (lambda: _tv().models.squeezenet1_1(num_classes=100), [IMG], "torchvision.models.squeezenet1_1"),
    "efficientnet_b0": (lambda: _tv().models.efficientnet_b0(num_classes=100), [IMG],
                        "torchvision.models.efficientnet_b0"),
    "mnasnet0_5": (lambda: _tv().models.mnasnet0_5(num_classes=100), [IMG], "torchvision.models.mnasnet0_5"),
    "regnet_y_400mf": (lambda: _tv().models.regnet_y_400mf(num_classes=100), [IMG],
                       "torchvision.models.regnet_y_400mf"),
    "vit_tiny": (lambda: _vit_tiny(),
                 [{"shape": [3, 32, 32], "kind": "image"}],
                 "torchvision.models.VisionTransformer (32x32, patch 8, 2 layers, hidden 64)"),
    "bert_tiny": (lambda: _hf("bert"), [TOKENS, MASK], "transformers.BertModel (2 layers, hidden 64)"),
    "distilbert_tiny": (lambda: _hf("distilbert"), [TOKENS, MASK],
                        "transformers.DistilBertModel (2 layers, hidden 64)"),
    "gpt2_tiny": (lambda: _hf("gpt2"), [TOKENS, MASK], "transformers.GPT2Model (2 layers, hidden 64)"),
    "transformer_encoder": (TransformerClassifier, [TOKENS],
                            "nn.TransformerEncoder (batch_first=True, 2 layers, d_model 64)"),
    "lstm": (lambda: RecurrentClassifier(nn.LSTM), [{"shape": [20, 16], "kind": "normal"}],
             "nn.LSTM (batch_first=True, 2 layers, hidden 32)"),
    "gru": (lambda: RecurrentClassifier(nn.GRU), [{"shape": [20, 16], "kind": "normal"}],
            "nn.GRU (batch_first=True, 2 layers, hidden 32)"),
    "audio_cnn1d": (AudioCNN, [{"shape": [1, 8000], "kind": "audio"}], "Conv1d stack (M5-style) over 8000 samples"),
    "unet_tiny": (TinyUNet, [{"shape": [3, 64, 64], "kind": "image"}],
                  "UNet: ConvTranspose2d, bilinear and nearest Upsample"),
}


def _example(spec: dict[str, object], batch: int) -> torch.Tensor:
    shape = [batch, *spec["shape"]]  # type: ignore[misc]
    if spec["kind"] == "tokens":
        return torch.randint(1, int(spec["vocab"]), shape)  # type: ignore[call-overload]
    if spec["kind"] == "mask":
        return torch.ones(shape, dtype=torch.int64)
    return torch.randn(shape)


def export(name: str) -> Path:
    make, specs, source = ARCHS[name]
    torch.manual_seed(0)
    torch.backends.mha.set_fastpath_enabled(False)  # (the fused inference path has no ONNX export)
    model = make().eval()
    args = tuple(_example(s, 2) for s in specs)
    in_names = ["input_ids", "attention_mask"][:len(specs)] if specs[0]["kind"] == "tokens" else ["input"]
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, args, buf, input_names=in_names, output_names=["output"], opset_version=17,
                          dynamic_axes={n: {0: "batch"} for n in [*in_names, "output"]}, dynamo=False)
    m = onnx.load_from_string(buf.getvalue())
    m.graph.name = name
    m.doc_string = json.dumps({"source": source, "inputs": specs, "weights": "random (torch init, seed 0)"})
    path = CORPUS_DIR / f"{name}.onnx"
    onnx.save(skeleton(m), str(path))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated names (default: all)")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ARCHS)
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    np.random.seed(0)
    for name in names:
        try:
            p = export(name)
            print(f"{name}: {p.stat().st_size} bytes", flush=True)
        except Exception as e:  # one architecture's export failure does not stop the others
            print(f"{name}: export failed: {type(e).__name__}: {str(e)[:300]}", flush=True)


if __name__ == "__main__":
    main()
