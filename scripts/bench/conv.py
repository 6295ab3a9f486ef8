"""Benchmark depthwise, grouped and 1-D convolutions: engine with the native direct conv (``opml/native/conv.c``),
engine with the per-group GEMM path it replaced, and onnxruntime float32, at batch 1 and 32.

Models (random He-scaled weights, converted with one random calibration batch):

* ``mobilenetv2``: MobileNetV2 at 224x224 (inverted residual blocks: 1x1 expand, ReLU6, depthwise 3x3,
  ReLU6, 1x1 project, residual add; width 1.0, 1000 classes), built here with onnx.helper;
* ``dwsep1d``: a 1-D depthwise-separable audio stem (16 kHz, 1 s: strided conv, then depthwise k=9 +
  pointwise blocks; 1-D convs are 2-D with H = 1 in the bundle);
* ``whisper_stem``: Whisper's encoder stem (1-D convs 80 -> 384, k 3, then stride 2, over 3000 frames: the
  GEMM path with H = 1);
* ``grouped``: a ResNeXt-like stage (1x1, grouped 3x3 with 32 groups of 4 and of 8 channels, 1x1) at 56x56;
* ``shufflenet``, and any other name of ``tests/opml/test_convert_ops_light.py``'s light models (onnx's
  ShuffleNet v1 has grouped 1x1 convs and depthwise 3x3 ones).

For each model and batch: the three runtimes are timed in alternating blocks (``common.time_rounds``), with
best and median; the direct and the GEMM path's outputs must be the same bytes (checked). Prints a table
with ms and ratios to onnxruntime float32. Usage:
``python scripts/bench/conv.py [--models mobilenetv2,dwsep1d,grouped,shufflenet] [--batches 1,32] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
for _p in (str(ROOT), str(Path(__file__).resolve().parent), str(ROOT / "tests" / "opml")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from common import cpu_name, machine_load, ort_session, time_rounds  # noqa: E402

from opml import engine, kernels, native  # noqa: E402
from opml.convert import convert  # noqa: E402
from opml.parallel import set_worker_count  # noqa: E402


class Builder:
    """A small ONNX graph builder: float32 NCHW convs with random He-scaled weights."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def const(self, arr: np.ndarray) -> str:
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), n))
        return n

    def conv(self, x: str, cin: int, cout: int, k: tuple[int, ...], stride: int = 1, group: int = 1,
             act: str | None = "relu6", dil: int = 1) -> str:
        fan = cin // group * int(np.prod(k))
        w = self.const(self.rng.normal(0, np.sqrt(2.0 / fan), (cout, cin // group, *k)))
        b = self.const(self.rng.normal(0, 0.05, cout))
        y = self.name("conv")
        pads = [dil * (kk // 2) for kk in k] * 2
        self.nodes.append(helper.make_node("Conv", [x, w, b], [y], group=group, strides=[stride] * len(k),
                                           pads=pads, dilations=[dil] * len(k), kernel_shape=list(k)))
        if act == "relu6":
            z = self.name("clip")
            self.nodes.append(helper.make_node("Clip", [y, self.const(np.array(0.0)), self.const(np.array(6.0))],
                                               [z]))
            return z
        if act == "relu":
            z = self.name("relu")
            self.nodes.append(helper.make_node("Relu", [y], [z]))
            return z
        return y

    def add(self, a: str, b: str) -> str:
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y]))
        return y

    def model(self, x: str, shape: list[int | str], y: str) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, "bench", [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        return m


def mobilenetv2() -> onnx.ModelProto:
    b = Builder(0)
    x = b.conv("x", 3, 32, (3, 3), 2)
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        for i in range(n):
            hid = cin * t
            h = x if t == 1 else b.conv(x, cin, hid, (1, 1))
            h = b.conv(h, hid, hid, (3, 3), s if i == 0 else 1, group=hid)
            h = b.conv(h, hid, c, (1, 1), act=None)
            x = b.add(x, h) if (i > 0 or s == 1) and cin == c else h
            cin = c
    x = b.conv(x, cin, 1280, (1, 1))
    p = b.name("gap")
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], [p]))
    f = b.name("flat")
    b.nodes.append(helper.make_node("Flatten", [p], [f]))
    w, bias = b.const(b.rng.normal(0, np.sqrt(1 / 1280), (1000, 1280))), b.const(b.rng.normal(0, 0.05, 1000))
    b.nodes.append(helper.make_node("Gemm", [f, w, bias], ["logits"], transB=1))
    return b.model("x", ["N", 3, 224, 224], "logits")


def dwsep1d() -> onnx.ModelProto:
    b = Builder(1)
    x = b.conv("x", 1, 64, (11,), 4, act="relu")  # 16000 -> 4000
    c = 64
    for cout, s in [(64, 2), (128, 2), (128, 1), (256, 2), (256, 1)]:
        x = b.conv(x, c, c, (9,), s, group=c, act="relu")
        x = b.conv(x, c, cout, (1,), act="relu")
        c = cout
    p = b.name("gap")
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], [p]))
    return b.model("x", ["N", 1, 16000], p)


def whisper_stem() -> onnx.ModelProto:
    """Whisper's audio encoder stem: two ungrouped 1-D convs over 3000 log-mel frames of 80 bins."""
    b = Builder(3)
    x = b.conv("x", 80, 384, (3,), 1, act="relu")
    x = b.conv(x, 384, 384, (3,), 2, act="relu")
    return b.model("x", ["N", 80, 3000], x)


def grouped() -> onnx.ModelProto:
    b = Builder(2)
    x = "x"
    for width, groups in [(128, 32), (256, 32)]:
        h = b.conv(x, 256, width, (1, 1), act="relu")
        h = b.conv(h, width, width, (3, 3), group=groups, act="relu")
        h = b.conv(h, width, 256, (1, 1), act=None)
        x = b.add(x, h)
    return b.model("x", ["N", 256, 56, 56], x)


def light(name: str) -> onnx.ModelProto:
    from test_convert_ops_light import randomized  # the light models with random weights

    m = randomized(name)
    inp = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}][0]
    inp.type.tensor_type.shape.dim[0].dim_param = "N"  # (a fixed-shape Reshape keeps some at batch 1)
    return m


BUILT = {"mobilenetv2": mobilenetv2, "dwsep1d": dwsep1d, "whisper_stem": whisper_stem, "grouped": grouped}


def input_shape(m: onnx.ModelProto, batch: int) -> list[int]:
    inp = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}][0]
    return [batch] + [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]]


def prepared(bundle: object, direct: bool) -> None:
    """Drop the engine's cached kernels and set whether prepare_conv may use the direct kernel."""
    kernels.DIRECT_CONV_MAX_CG = 16 if direct else 0
    engine._CACHE.clear()


def bench(name: str, batches: list[int], threads: int, budget: float) -> list[tuple]:
    m = BUILT[name]() if name in BUILT else light(name)
    rng = np.random.default_rng(5)
    t0 = time.perf_counter()
    calib = rng.random(input_shape(m, 2)).astype(np.float32)
    try:
        bundle = convert(m, [calib])
    except Exception as e:  # noqa: BLE001 - a fixed-batch model: convert at batch 1 only
        print(f"# {name}: converting with batch 2 failed ({type(e).__name__}: {str(e)[:100]}); batch 1 only")
        inp = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}][0]
        inp.type.tensor_type.shape.dim[0].dim_value = 1
        bundle = convert(m, [calib[:1]])
        batches = [1]
    conv_s = time.perf_counter() - t0
    sess = ort_session(m.SerializeToString(), threads)
    iname = sess.get_inputs()[0].name
    rows = []
    for batch in batches:
        x = rng.random(input_shape(m, batch)).astype(np.float32)
        outs: dict[bool, np.ndarray] = {}
        timings = {}
        # the two engine paths need differently prepared kernels: time each against onnxruntime in turn
        for direct in (True, False):
            prepared(bundle, direct)
            engine.run(bundle, [x])  # prepare once, outside the timed calls

            def eng(x: np.ndarray = x, direct: bool = direct, outs: dict = outs) -> None:
                outs[direct] = engine.run(bundle, [x])[0]

            def ort(x: np.ndarray = x) -> None:
                sess.run(None, {iname: x})

            timings["direct" if direct else "gemm"] = time_rounds({"e": eng, "ort": ort}, 50, budget, rounds=2)
        assert outs[True].tobytes() == outs[False].tobytes(), f"{name}: direct != per-group GEMM path"
        ort_best = min(timings["direct"]["ort"].best_s, timings["gemm"]["ort"].best_s)
        d, g = timings["direct"]["e"].best_s, timings["gemm"]["e"].best_s
        rows.append((name, batch, d * 1e3, g * 1e3, ort_best * 1e3, d / ort_best, g / ort_best, conv_s))
    prepared(bundle, True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mobilenetv2,dwsep1d,grouped,shufflenet")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OPML_THREADS", "0") or 0) or os.cpu_count())
    ap.add_argument("--budget", type=float, default=6.0, help="seconds of timed calls per runtime and batch")
    a = ap.parse_args()
    set_worker_count(a.threads)
    print(f"# {cpu_name()}; {a.threads} threads; {native.describe()}; load {machine_load()}")
    print("| model | batch | engine direct ms | engine per-group GEMM ms | onnxruntime f32 ms | direct / ort | "
          "GEMM path / ort |")
    print("|---|---|---|---|---|---|---|")
    for name in a.models.split(","):
        for r in bench(name, [int(v) for v in a.batches.split(",")], a.threads, a.budget):
            print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f}x | {r[6]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
