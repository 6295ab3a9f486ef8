"""Node context: what a node's VM run is a pure function of (numpy-free).

A node's **context** is everything the instructions depend on: model address, node index, batch
size, the node's descriptor words and the descriptor words of its input and output tensors (all
proven against the model address, ``docs/bundle.md``). ``context_hash`` is in every state, so a
step verifier takes the context from the witness, checks its hash, decodes it here
(``decode_context``) and derives the instruction at ``pc`` in closed form (``fraud_vm.stepper``):
no program is stored or committed.

This module is on the one-step verifier's import path and must not import numpy (a test checks).
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from opml.bundle import DType, Node, node_descriptor_words, tensor_descriptor_words, words_bytes
from opml.merkle import keccak
from opml.ops import BY_CODE

from .errors import MalformedContext
from .memory import Region
from .tensors import tensor_header

if TYPE_CHECKING:
    from opml.bundle import Bundle

MAX_CONTEXT_WORDS = 4096
MAX_BATCH = 1 << 16  # ``opml.shapes.MAX_BATCH``: a context's batch lies in ``[1, MAX_BATCH]``
MAX_DIM = 1 << 32  # every dimension (batch applied) is below this
MAX_SIZE = 1 << 64  # every tensor's element count is below this
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # node attribute values and zero points
SCALE_BITS_LIMIT = 1 << 32  # a scale is float32 bits


@dataclass(frozen=True)
class TensorInfo:
    """A node operand as the VM sees it: dtype, concrete shape, quantization parameters."""

    dtype: DType
    shape: tuple[int, ...]
    zero_point: int
    scale_bits: int
    is_const: bool

    @cached_property
    def size(self) -> int:
        return math.prod(self.shape)

    @cached_property
    def region(self) -> Region:
        return Region(tuple(tensor_header(self.dtype, self.shape)), self.dtype, self.size * self.dtype.itemsize)

    @property
    def scale(self) -> float:
        return float(struct.unpack("<f", struct.pack("<I", self.scale_bits))[0])


@dataclass(frozen=True)
class NodeContext:
    """The context of one node's run (module docstring); ``descs`` are inputs' then the output's."""

    address: bytes
    node_index: int
    batch: int
    node_words: tuple[int, ...]
    descs: tuple[tuple[int, ...], ...]

    def words(self) -> list[int]:
        """Context words after the address: ``[node_index, batch, m, node words.., t, (len, desc..) x t]``."""
        out = [self.node_index, self.batch, len(self.node_words), *self.node_words]
        out.append(len(self.descs))
        for d in self.descs:
            out += [len(d), *d]
        return out

    def encode(self) -> bytes:
        """``address || int256 words of :meth:`words``` (what a witness carries)."""
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        return self.address + words_bytes(self.words())

    @cached_property
    def hash(self) -> bytes:
        return keccak(self.encode())

    @cached_property
    def node(self) -> Node:
        return parse_node_words(self.node_words)

    @cached_property
    def tensors(self) -> tuple[TensorInfo, ...]:
        return tuple(_info(d, self.batch) for d in self.descs)

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return self.tensors[:-1]

    @property
    def output(self) -> TensorInfo:
        return self.tensors[-1]

    @cached_property
    def regions(self) -> list[Region]:
        return [t.region for t in self.tensors]


def check_arity(ctx: NodeContext) -> None:
    """The context must carry one tensor descriptor per node input plus one for the output."""
    if len(ctx.descs) != len(ctx.node.inputs) + 1:
        raise MalformedContext("node context has the wrong number of tensor descriptors")


def _info(desc: tuple[int, ...], batch: int) -> TensorInfo:
    """A tensor descriptor ``[dtype, ndim, dims.., is_const, scale_bits, zero_point, nbytes]`` at
    ``batch``: ``ndim <= 8``, a known dtype, every dimension in ``[0, 2^32)`` once a leading ``-k``
    is ``k · batch``, fewer than 2^64 elements, the zero point within int64, the scale float32 bits."""
    if len(desc) < 6 or desc[1] != len(desc) - 6 or not 0 <= desc[1] <= 8:
        raise MalformedContext("malformed tensor descriptor in the node context")
    try:
        dtype = DType(desc[0])
    except ValueError:
        raise MalformedContext(f"unknown dtype code {desc[0]}") from None
    nd = desc[1]
    dims = list(desc[2 : 2 + nd])
    if dims and dims[0] < 0:
        dims[0] = -dims[0] * batch
    if any(not 0 <= d < MAX_DIM for d in dims):
        raise MalformedContext("a dimension in a tensor descriptor is negative or not below 2^32")
    if math.prod(dims) >= MAX_SIZE:
        raise MalformedContext("a tensor in the node context has 2^64 or more elements")
    zero_point, scale_bits = desc[4 + nd], desc[3 + nd]
    if not INT64_MIN <= zero_point <= INT64_MAX or not 0 <= scale_bits < SCALE_BITS_LIMIT:
        raise MalformedContext("a zero point outside int64 or a scale outside float32 bits")
    return TensorInfo(dtype, tuple(dims), zero_point, scale_bits, desc[2 + nd] == 1)


def parse_node_words(words: Sequence[int]) -> Node:
    """Node from its descriptor words ``[op, n_in, in.., n_out, out.., n_attrs, (len, vals..)..]``.

    Every count is non-negative and covered by the words, ``n_out`` is 1, there are as many
    attributes as the op's schema names, and every attribute value lies within int64.
    """
    try:
        schema = BY_CODE[words[0]]
        pos = 1
        n_in = words[pos]
        ins = tuple(words[pos + 1 : pos + 1 + n_in])
        pos += 1 + n_in
        n_out = words[pos]
        outs = tuple(words[pos + 1 : pos + 1 + n_out])
        pos += 1 + n_out
        attrs = []
        if words[pos] != len(schema.attrs):
            raise ValueError
        for _ in range(words[pos]):
            pos += 1
            ln = words[pos]
            attr = tuple(words[pos + 1 : pos + 1 + ln])
            if ln < 0 or len(attr) != ln or any(not INT64_MIN <= v <= INT64_MAX for v in attr):
                raise ValueError
            attrs.append(attr)
            pos += ln
        if pos + 1 != len(words) or len(attrs) != len(schema.attrs) or len(ins) != n_in or n_out != 1:
            raise ValueError
    except (KeyError, IndexError, ValueError):
        raise MalformedContext("malformed node descriptor in the node context") from None
    return Node(schema.name, ins, outs, tuple(attrs))


_CONTEXTS: OrderedDict[tuple[bytes, int, int], NodeContext] = OrderedDict()


def context_for(bundle: Bundle, node_index: int, batch: int) -> NodeContext:
    """The context of node ``node_index`` of ``bundle`` run at ``batch`` (cached per model address)."""
    key = (bundle.address, node_index, batch)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        node = bundle.nodes[node_index]
        descs = [tuple(tensor_descriptor_words(bundle.tensors[i])) for i in (*node.inputs, *node.outputs)]
        ctx = NodeContext(bundle.address, node_index, batch, tuple(node_descriptor_words(node)), tuple(descs))
        _CONTEXTS[key] = ctx
        while len(_CONTEXTS) > 4096:
            _CONTEXTS.popitem(last=False)
    return ctx


def decode_context(data: bytes) -> NodeContext:
    """Parse a context encoding (inverse of ``NodeContext.encode``); raises MalformedContext."""
    if len(data) % 32 or not 0 < len(data) <= 32 * MAX_CONTEXT_WORDS:
        raise MalformedContext("node context must be a whole number of 32-byte words")
    w = [0] + [int.from_bytes(data[i : i + 32], "big", signed=True) for i in range(32, len(data), 32)]
    try:
        m = w[3]
        node_words = tuple(w[4 : 4 + m])
        pos = 4 + m
        descs = []
        for _ in range(w[pos]):
            ln = w[pos + 1]
            descs.append(tuple(w[pos + 2 : pos + 2 + ln]))
            pos += 1 + ln
        if len(node_words) != m or pos + 1 != len(w) or any(len(d) < 6 for d in descs):
            raise ValueError
        ctx = NodeContext(data[:32], w[1], w[2], node_words, tuple(descs))
    except (IndexError, ValueError, OverflowError):
        raise MalformedContext("malformed node context") from None
    if ctx.encode() != data:
        raise MalformedContext("node context encoding is not canonical")
    if not 1 <= ctx.batch <= MAX_BATCH:
        raise MalformedContext(f"batch {ctx.batch} is outside 1..{MAX_BATCH}")
    return ctx


__all__ = ["MAX_CONTEXT_WORDS", "NodeContext", "TensorInfo", "check_arity", "context_for", "decode_context",
           "parse_node_words"]
