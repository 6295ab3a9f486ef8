"""The magnitude of an STFT written as a convolution (silero-vad's front end): ``AievmWideConv`` + ``AievmMagnitude``.

silero-vad computes its spectrogram as ``Conv(audio, basis)`` (the real parts in the first half of the output
channels, the imaginary parts in the second), slices the two halves (``Slice``, ``Cast`` to float32), and
then ``Sqrt(Add(Pow(re, 2), Pow(im, 2)))``. Lowered op by op, the convolution's output, each square and the
sum get one int8 grid apiece while speech and pauses differ by ~40 dB, so a pause's spectrum is one or two
levels (streamed cosine 0.88). This rule rewrites, before lowering:

* ``Sqrt(Add(Pow(a, 2), Pow(b, 2)))`` (also ``Mul(a, a)`` for a square) into ``aievm.AievmMagnitude(a, b)``,
  when the squares and the sum have no other reader;
* and, when ``a`` and ``b`` both come from the output of one ``Conv`` with constant weights through data
  movement only (``Slice``, ``Cast`` float to float, ``Reshape``, ``Squeeze``, ``Unsqueeze``, ``Identity``),
  that ``Conv`` into ``aievm.AievmWideConv`` (the same inputs and attributes).

``lower_stft.py`` lowers ``AievmWideConv`` as the ``Conv`` with a 13-bit int16 output (``wide16.py``'s
format) and ``AievmMagnitude`` of two int16 tensors on one grid as ``reduce`` mode L2 (``isqrt`` of the sum
of squares, an existing op) over a stacked axis, onto an int8 grid: no new op. Graphs without the pattern
are unchanged.
"""

from __future__ import annotations

import onnx
from onnx import helper

from .rewrite import _Graph, _replace

MOVES = ("Slice", "Reshape", "Squeeze", "Unsqueeze", "Identity")


def _reads_only(g: _Graph, name: str, reader: onnx.NodeProto) -> bool:
    """``reader`` is the one reader of ``name`` (which is no graph output)."""
    c = g.only_consumer(name)
    return c is not None and id(c) == id(reader)


def _square_of(g: _Graph, name: str, reader: onnx.NodeProto) -> tuple[str, onnx.NodeProto] | None:
    """``(x, node)`` when ``name`` is ``Pow(x, 2)`` or ``Mul(x, x)`` read only by ``reader``."""
    p = g.producer.get(name)
    if p is None or p.domain not in ("", "ai.onnx") or not _reads_only(g, name, reader):
        return None
    if p.op_type == "Pow" and len(p.input) == 2 and g.scalar(p.input[1]) == 2.0:
        return p.input[0], p
    if p.op_type == "Mul" and len(p.input) == 2 and p.input[0] == p.input[1]:
        return p.input[0], p
    return None


def _source_conv(g: _Graph, name: str) -> onnx.NodeProto | None:
    """The ``Conv`` (constant weights) whose output ``name`` is, through data movement only, else None."""
    while True:
        p = g.producer.get(name)
        if p is None or p.domain not in ("", "ai.onnx"):
            return None
        if p.op_type == "Conv":
            return p if len(p.input) >= 2 and g.const(p.input[1]) is not None else None
        if p.op_type == "Cast":
            to = next((a.i for a in p.attribute if a.name == "to"), None)
            if to != onnx.TensorProto.FLOAT:
                return None
        elif p.op_type not in MOVES:
            return None
        name = p.input[0]


def fuse_stft_magnitude(g: _Graph) -> bool:
    """One rewrite of ``Sqrt(Add(a^2, b^2))`` (and of its source ``Conv``); False when none is left."""
    for sq in g.nodes:
        if sq.op_type != "Sqrt" or sq.domain not in ("", "ai.onnx"):
            continue
        add = g.producer.get(sq.input[0])
        if add is None or add.op_type != "Add" or len(add.input) != 2 or not _reads_only(g, sq.input[0], sq):
            continue
        sa, sb = _square_of(g, add.input[0], add), _square_of(g, add.input[1], add)
        if sa is None or sb is None or sa[1] is sb[1]:
            continue
        mag = helper.make_node("AievmMagnitude", [sa[0], sb[0]], [sq.output[0]], name=sq.name, domain="aievm")
        _replace(g, [sa[1], sb[1], add, sq], mag)
        ca, cb = _source_conv(g, sa[0]), _source_conv(g, sb[0])
        if ca is not None and cb is not None and ca is cb:
            wide = helper.make_node("AievmWideConv", list(ca.input), list(ca.output), name=ca.name, domain="aievm")
            wide.attribute.extend(ca.attribute)
            _replace(g, [ca], wide)
        return True
    return False
