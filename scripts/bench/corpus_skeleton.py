"""Corpus skeletons: an exported ONNX graph with its large float weights stored as (mean, std) only, so the
corpus (``tests/corpus/*.onnx``) stays small and CI needs no torch; ``flesh`` regenerates the weights from a
seed derived from each initializer's name (Conv weights He-scaled)."""

from __future__ import annotations

import json
import zlib

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

SKELETON_MIN = 256  # float initializers with more values than this are stored as (mean, std)
_TAG = "aievm-skeleton "



def skeleton(m: onnx.ModelProto) -> onnx.ModelProto:
    """``m`` with every float initializer of more than ``SKELETON_MIN`` values replaced by an empty tensor of the
    same name, type and shape whose doc_string holds its mean and standard deviation (``flesh`` undoes it)."""
    out = onnx.ModelProto()
    out.CopyFrom(m)
    inits = []
    for t in out.graph.initializer:
        a = numpy_helper.to_array(t)
        if a.dtype.kind == "f" and a.size > SKELETON_MIN:
            s = TensorProto(name=t.name, data_type=t.data_type, dims=list(t.dims))
            s.doc_string = _TAG + json.dumps({"mean": float(a.mean()), "std": float(a.std())})
            inits.append(s)
        else:
            inits.append(t)
    del out.graph.initializer[:]
    out.graph.initializer.extend(inits)
    return out


def _fan_in(m: onnx.ModelProto) -> dict[str, int]:
    """The fan-in of each weight that a Conv or ConvTranspose reads as its second input."""
    dims = {t.name: list(t.dims) for t in m.graph.initializer}
    out: dict[str, int] = {}
    for n in m.graph.node:
        if len(n.input) < 2 or n.input[1] not in dims or len(dims[n.input[1]]) < 2:
            continue
        d = dims[n.input[1]]
        if n.op_type == "Conv":
            out[n.input[1]] = int(np.prod(d[1:]))
        elif n.op_type == "ConvTranspose":
            out[n.input[1]] = int(d[0] * np.prod(d[2:]))
    return out


def flesh(m: onnx.ModelProto) -> onnx.ModelProto:
    """Regenerate a skeleton's weights from a seed derived from each initializer's name: the weights of Conv
    and ConvTranspose normal(0, sqrt(2 / fan_in)) (He; torch's own initialisation lets the signal of the deep
    depthwise nets decay to 1e-14, which leaves nothing to compare), other large tensors (Gemm and MatMul
    weights, embeddings, position tables, recurrent weights) normal(mean, std) of the exported values."""
    fan = _fan_in(m)
    inits = []
    for t in m.graph.initializer:
        if t.doc_string.startswith(_TAG):
            st = json.loads(t.doc_string[len(_TAG):])
            mean, std = (0.0, float(np.sqrt(2.0 / fan[t.name]))) if t.name in fan else (st["mean"], st["std"])
            rng = np.random.default_rng(zlib.crc32(t.name.encode()))
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
            a = rng.normal(mean, std, tuple(t.dims)).astype(dtype)
            inits.append(numpy_helper.from_array(a, t.name))
        else:
            inits.append(t)
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    return m
