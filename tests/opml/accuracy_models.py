"""A small depthwise-separable CNN (MobileNetV2's inverted residual blocks) built with ``onnx.helper``,
with trained-like parameter statistics, for the calibration and int16 tests and the measurements of
``docs/engine.md`` ("Accuracy: calibration and int16").

Trained depthwise networks lose accuracy in plain int8 for reasons random He weights do not show:
BatchNormalization scales that differ by orders of magnitude between channels (so folded depthwise
weights and the linear bottleneck's outputs have a few channels far wider than the rest), and
heavy-tailed activations. Here the BN scale ``gamma / sqrt(var)`` is log-normal with a wide spread and
the shifts make a few channels large; the statistics are otherwise those of a trained BN (running
mean and variance of the actual pre-BN values on sample inputs, so each block's input is normalized).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# (expansion, output channels, repeats, first stride) per stage, as MobileNetV2's table (narrower)
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 48, 2, 2))


class _Net:
    def __init__(self, rng: np.random.Generator, x: np.ndarray, spread: float) -> None:
        self.rng, self.x, self.spread = rng, x, spread
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.n = 0

    def _name(self, p: str) -> str:
        self.n += 1
        return f"{p}{self.n}"

    def _value(self, name: str) -> np.ndarray:
        """The float value of ``name`` on the sample inputs (onnxruntime on the graph so far)."""
        g = helper.make_graph(self.nodes, "partial", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  list(self.x.shape))],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return s.run(None, {"x": self.x})[0]

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int, group: int, act: bool) -> str:
        rng = self.rng
        w = rng.normal(0, np.sqrt(2.0 / (cin // group * k * k)), (cout, cin // group, k, k)).astype(np.float32)
        wn, c = self._name("w"), self._name("conv")
        self.inits.append(numpy_helper.from_array(w, wn))
        self.nodes.append(helper.make_node("Conv", [x, wn], [c], pads=[k // 2] * 4, strides=[stride, stride],
                                           group=group))
        pre = self._value(c)
        mean, var = pre.mean(axis=(0, 2, 3)), pre.var(axis=(0, 2, 3)) + 1e-3
        gamma = np.exp(rng.normal(0, self.spread, cout))  # trained BN scales: log-normal across channels
        beta = rng.normal(0.5 if act else 0.0, 0.5, cout) * gamma
        names = [self._name(p) for p in ("g", "b", "m", "v")]
        for nm, a in zip(names, (gamma, beta, mean, var), strict=True):
            self.inits.append(numpy_helper.from_array(np.asarray(a, np.float32), nm))
        y = self._name("bn")
        self.nodes.append(helper.make_node("BatchNormalization", [c] + names, [y]))
        if not act:
            return y
        lo, hi = self._name("lo"), self._name("hi")
        self.inits += [numpy_helper.from_array(np.float32(0), lo), numpy_helper.from_array(np.float32(6), hi)]
        r = self._name("relu6")
        self.nodes.append(helper.make_node("Clip", [y, lo, hi], [r]))
        return r


def mobilenet_like(seed: int = 0, batch: int = 16, size: int = 32, spread: float = 1.0,
                   classes: int = 10) -> tuple[onnx.ModelProto, np.ndarray]:
    """(model, calibration inputs [batch, 3, size, size]): a MobileNetV2-style net with trained-like BN.
    ``spread``: the standard deviation of log BN scale across channels (real trained nets: about 1)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (batch, 3, size, size)).astype(np.float32)
    net = _Net(rng, x, spread)
    h = net.conv_bn("x", 3, 16, 3, 2, 1, True)
    cin = 16
    for t, c, n, s in STAGES:
        for i in range(n):
            hid = cin * t
            y = net.conv_bn(h, cin, hid, 1, 1, 1, True) if t != 1 else h
            y = net.conv_bn(y, hid, hid, 3, s if i == 0 else 1, hid, True)
            y = net.conv_bn(y, hid, c, 1, 1, 1, False)
            if i > 0:
                a = net._name("add")
                net.nodes.append(helper.make_node("Add", [h, y], [a]))
                y = a
            h, cin = y, c
    h = net.conv_bn(h, cin, 128, 1, 1, 1, True)
    net.nodes.append(helper.make_node("GlobalAveragePool", [h], ["pool"]))
    net.nodes.append(helper.make_node("Flatten", ["pool"], ["feat"]))
    w = rng.normal(0, np.sqrt(1.0 / 128), (classes, 128)).astype(np.float32)
    net.inits += [numpy_helper.from_array(w, "fc_w"), numpy_helper.from_array(np.zeros(classes, np.float32), "fc_b")]
    net.nodes.append(helper.make_node("Gemm", ["feat", "fc_w", "fc_b"], ["logits"], transB=1))
    g = helper.make_graph(net.nodes, "mobilenet_like",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], net.inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), x
