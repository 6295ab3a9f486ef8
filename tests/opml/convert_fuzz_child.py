"""Child process of tests/opml/test_adversarial_session8.py: mutated corpus ONNX graphs through the converter.

``python convert_fuzz_child.py SEED COUNT MODEL...``: for each seed, one mutation of one model (an input edge
dropped or redirected, an attribute changed, an initializer reshaped, an op type swapped), then ``convert``
on the model's calibration batch. Each outcome is one line: ``ok`` (a bundle, which then runs on the
calibration inputs or raises an OpmlError), ``refused`` (ConversionError, one line), or ``FINDING`` (any other
exception, or a multi-line message). Before each conversion a ``case`` line is printed and flushed (a crash
or a hang then names its mutation). Ends with ``done``.
"""

from __future__ import annotations

import logging
import random
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

from corpus import CORPUS_DIR, _skeleton_entry  # noqa: E402

from opml.convert import convert  # noqa: E402
from opml.engine import run  # noqa: E402
from opml.errors import ConversionError, OpmlError  # noqa: E402

OPS = ["Relu", "Sigmoid", "Tanh", "Add", "Mul", "Sub", "Div", "MatMul", "Conv", "Reshape", "Transpose", "Softmax",
       "Concat", "Gather", "ReduceMean", "Sqrt", "Pow", "Erf", "Identity", "Flatten", "GlobalAveragePool", "MaxPool",
       "LayerNormalization", "HardSwish", "HardSigmoid", "Slice", "Squeeze", "Unsqueeze", "Where", "Cast", "Gemm",
       "LSTM", "GRU", "Shape", "ConstantOfShape", "Expand", "Clip", "BatchNormalization", "Split", "Resize"]


def mutate(m: onnx.ModelProto, r: random.Random) -> str:
    g = m.graph
    nodes = [n for n in g.node if n.op_type != "Constant"] or list(g.node)
    n = r.choice(nodes)
    k = r.randint(0, 5)
    if k == 0 and n.input:  # drop an input edge (the last, or an empty name in the middle)
        i = r.randrange(len(n.input))
        if i == len(n.input) - 1 or r.random() < 0.5:
            del n.input[i]
        else:
            n.input[i] = ""
        return f"{n.op_type} {n.name!r}: input {i} dropped"
    if k == 1 and n.input:  # redirect an input to another tensor of the graph
        names = [v for nd in g.node for v in nd.output] + [i.name for i in g.input] + [i.name for i in g.initializer]
        i = r.randrange(len(n.input))
        n.input[i] = r.choice(names + ["no_such_tensor"])
        return f"{n.op_type} {n.name!r}: input {i} -> {n.input[i]!r}"
    if k == 2 and n.attribute:
        a = r.choice(n.attribute)
        if a.type == onnx.AttributeProto.INT:
            a.i = r.choice([0, 1, -1, 2, a.i + 1, a.i - 1, 1 << 40, -(1 << 40)])
        elif a.type == onnx.AttributeProto.INTS:
            vals = list(a.ints)
            if vals and r.random() < 0.7:
                vals[r.randrange(len(vals))] = r.choice([0, 1, -1, 2, 5, 1 << 40])
            elif r.random() < 0.5:
                vals = vals[:-1]
            else:
                vals.append(1)
            del a.ints[:]
            a.ints.extend(vals)
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = r.choice([0.0, -1.0, 1e30, float("nan"), float("inf")])
        elif a.type == onnx.AttributeProto.STRING:
            a.s = r.choice([b"", b"bogus", b"NOTSET", b"SAME_UPPER"])
        return f"{n.op_type} {n.name!r}: attribute {a.name} changed"
    if k == 3 and g.initializer:  # an initializer with another shape (same or fewer values)
        t = r.choice(list(g.initializer))
        a = numpy_helper.to_array(t)
        if a.size > 1 and r.random() < 0.5:
            b = a.reshape(-1)[: max(1, a.size // 2)]
        else:
            b = a.reshape(-1) if a.ndim != 1 else a.reshape(1, -1)
        t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(b), t.name))
        return f"initializer {t.name!r}: {a.shape} -> {b.shape}"
    if k == 4:  # another op type, same inputs and attributes
        old = n.op_type
        n.op_type = r.choice(OPS)
        return f"{n.name!r}: {old} -> {n.op_type}"
    if k == 5 and g.input and g.input[0].type.tensor_type.shape.dim:  # a declared input dimension changed
        d = r.choice(list(g.input[0].type.tensor_type.shape.dim))
        d.Clear()
        d.dim_value = r.choice([0, 1, 3, 7])
        return f"input {g.input[0].name!r}: a dimension declared {d.dim_value}"
    n.op_type = "Aievm" + n.op_type  # an op of the converter's own domain, from a user
    n.domain = r.choice(["", "ai.aievm"])
    return f"{n.name!r}: op type {n.op_type} domain {n.domain!r}"


def main() -> None:
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    seed, count, models = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    entries = {name: _skeleton_entry(CORPUS_DIR / f"{name}.onnx") for name in models}
    base = {name: e.load() for name, e in entries.items()}
    for s in range(seed, seed + count):
        r = random.Random(s)
        name = models[s % len(models)]
        m = onnx.ModelProto()
        m.CopyFrom(base[name])
        what = " / ".join(mutate(m, r) for _ in range(r.choice([1, 1, 2])))
        xs = entries[name].batch(2, 0)
        print(f"case {s} {name}: {what}", flush=True)
        try:
            b = convert(m, xs)
        except ConversionError as e:
            msg = str(e)
            one = msg and "\n" not in msg
            print(f"refused {msg[:150]}" if one else f"FINDING {s} {name}: {what}: multi-line {msg!r}", flush=True)
            continue
        except Exception as e:  # noqa: BLE001  (the finding)
            tb = traceback.format_exc().strip().splitlines()
            print(f"FINDING {s} {name}: {what}: {type(e).__name__}: {str(e)[:200]!r} at {tb[-3].strip()}",
                  flush=True)
            continue
        try:
            run(b, xs)
        except OpmlError:
            pass
        except Exception as e:  # noqa: BLE001
            print(f"FINDING {s} {name}: {what}: the converted bundle raised {type(e).__name__}: {e}", flush=True)
            continue
        print("ok", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
