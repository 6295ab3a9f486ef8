"""Adversarial-but-valid bundles: the shapes that stress the cost model, for its tests and benchmark.

Each case passes bundle validation (declared shapes are the real ones, ``opml.shapes``) but puts
as much engine work as it can behind as little gas as the schedule allows: broadcasting-heavy
elementwise ops, huge reductions, wide gathers, table lookups over large tensors, many tiny
nodes, long softmax rows, strided data movement, many-group convolutions, large pooling windows,
batched tiny matmuls. ``scale`` sizes them: the tests use small scales (the cost model's counts
must bound the real work), ``scripts/bench/gas_adversarial.py`` large ones (gas per second).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .bundle import Bundle, DType, Node, TensorSpec
from .ops import BY_NAME

I8, U8, I16, I32, I64, F32, BOOL = (DType.INT8, DType.UINT8, DType.INT16, DType.INT32, DType.INT64,
                                    DType.FLOAT32, DType.BOOL)


@dataclass(frozen=True)
class Case:
    """A bundle and inputs for batch size ``batch``."""

    name: str
    bundle: Bundle
    inputs: list[np.ndarray]
    batch: int


class _Graph:
    """A tiny builder: tensors and nodes appended in order."""

    def __init__(self) -> None:
        self.tensors: list[TensorSpec] = []
        self.nodes: list[Node] = []
        self.inputs: list[int] = []

    def input(self, dtype: DType, shape: tuple[int, ...], scale: float = 0.05, zp: int = 0) -> int:
        self.tensors.append(TensorSpec(f"in{len(self.inputs)}", dtype, shape, scale, zp))
        self.inputs.append(len(self.tensors) - 1)
        return len(self.tensors) - 1

    def const(self, arr: np.ndarray) -> int:
        a = np.ascontiguousarray(arr)
        spec = TensorSpec(f"c{len(self.tensors)}", DType.from_np(a.dtype), tuple(a.shape), data=a.tobytes())
        self.tensors.append(spec)
        return len(self.tensors) - 1

    def node(self, op: str, inputs: list[int], dtype: DType, shape: tuple[int, ...], scale: float = 0.05,
             zp: int = 0, **attrs: object) -> int:
        self.tensors.append(TensorSpec(f"t{len(self.tensors)}", dtype, shape, scale, zp))
        out = len(self.tensors) - 1
        at = tuple(tuple(int(v) for v in (attrs[a] if isinstance(attrs[a], list | tuple) else [attrs[a]]))  # type: ignore[attr-defined]
                   for a in BY_NAME[op].attrs)
        self.nodes.append(Node(op, tuple(inputs), (out,), at, f"{op}{len(self.nodes)}"))
        return out

    def bundle(self, outputs: list[int], name: str) -> Bundle:
        return Bundle(tuple(self.tensors), tuple(self.nodes), tuple(self.inputs), tuple(outputs), {"case": name})


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _i8(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return _rng(seed).integers(-128, 128, size=shape).astype(np.int8)


REQ = {"mult": 1 << 30, "shift": 31, "qmin": -128, "qmax": 127}
ADD = {"a_mult": 1 << 29, "b_mult": 1 << 29, "shift": 30, "qmin": -128, "qmax": 127}


def broadcast_add(scale: int, batch: int = 1) -> Case:
    """[N, S, 1] + [1, S] -> [N, S, S]: the honest form of the issue's [N,1,1] lie."""
    s = 64 * scale
    g = _Graph()
    a, b = g.input(I8, (-1, s, 1)), g.input(I8, (1, s))
    y = g.node("add", [a, b], I8, (-1, s, s), **ADD)
    return Case("broadcast_add", g.bundle([y], "broadcast_add"), [_i8((batch, s, 1)), _i8((1, s), 1)], batch)


def broadcast_add_int16(scale: int, batch: int = 1) -> Case:
    """The same with int16 operands: no byte-pair table, the int64 formula per element."""
    s = 64 * scale
    g = _Graph()
    a, b = g.input(I16, (-1, s, 1)), g.input(I16, (1, s))
    y = g.node("add", [a, b], I16, (-1, s, s), a_mult=1 << 29, b_mult=1 << 29, shift=30, qmin=-32768, qmax=32767)
    xa = _rng().integers(-32768, 32768, size=(batch, s, 1)).astype(np.int16)
    xb = _rng(1).integers(-32768, 32768, size=(1, s)).astype(np.int16)
    return Case("broadcast_add_int16", g.bundle([y], "broadcast_add_int16"), [xa, xb], batch)


def broadcast_mul_int32(scale: int, batch: int = 1) -> Case:
    """int32 x int32 -> int8 multiply with broadcasting (the masked-mean pooling's kind of mul)."""
    s = 64 * scale
    g = _Graph()
    a, b = g.input(I32, (-1, s, 1)), g.input(I32, (1, s))
    y = g.node("mul", [a, b], I8, (-1, s, s), **REQ)
    xa = _rng().integers(-(1 << 31), 1 << 31, size=(batch, s, 1)).astype(np.int32)
    xb = _rng(1).integers(-(1 << 31), 1 << 31, size=(1, s)).astype(np.int32)
    return Case("broadcast_mul_int32", g.bundle([y], "broadcast_mul_int32"), [xa, xb], batch)


def where_broadcast(scale: int, batch: int = 1) -> Case:
    s = 64 * scale
    g = _Graph()
    c, a, b = g.input(BOOL, (-1, s, 1)), g.input(I8, (1, s)), g.input(I8, (s, 1))
    y = g.node("where", [c, a, b], I8, (-1, s, s))
    cond = _rng().integers(0, 2, size=(batch, s, 1)).astype(bool)
    return Case("where_broadcast", g.bundle([y], "where_broadcast"), [cond, _i8((1, s)), _i8((s, 1), 2)], batch)


def huge_reduce(scale: int, batch: int = 1) -> Case:
    """An L2 reduction of long rows to one value each (isqrt of sums of squares)."""
    n = 4096 * scale * scale
    g = _Graph()
    x = g.input(I8, (-1, 4, n))
    y = g.node("reduce", [x], I8, (-1, 1, 1), mode=2, axes=[1, 2], keepdims=1, mult=1 << 20, shift=30)
    return Case("huge_reduce", g.bundle([y], "huge_reduce"), [_i8((batch, 4, n))], batch)


def reduce_max_inner(scale: int, batch: int = 1) -> Case:
    """A max over the non-contiguous middle axis."""
    n = 64 * scale
    g = _Graph()
    x = g.input(I8, (-1, n, n))
    y = g.node("reduce", [x], I8, (-1, n), mode=3, axes=[1], keepdims=0, mult=0, shift=1)
    return Case("reduce_max_inner", g.bundle([y], "reduce_max_inner"), [_i8((batch, n, n))], batch)


def wide_gather(scale: int, batch: int = 1) -> Case:
    """Embedding rows gathered by many indices: small input, large output."""
    v, d, n = 1000, 64 * scale, 64 * scale
    g = _Graph()
    table = g.const(_i8((v, d)))
    idx = g.input(I64, (-1, n))
    y = g.node("gather", [table, idx], I8, (-1, n, d), axis=0)
    ids = _rng().integers(0, v, size=(batch, n)).astype(np.int64)
    return Case("wide_gather", g.bundle([y], "wide_gather"), [ids], batch)


def gather_inner_axis(scale: int, batch: int = 1) -> Case:
    """A gather along the last axis of an activation: strided reads for every output element."""
    s = 64 * scale
    g = _Graph()
    x = g.input(I8, (-1, s, s))
    idx = g.const(_rng().integers(0, s, size=(s,)).astype(np.int64))
    y = g.node("gather", [x, idx], I8, (-1, s, s), axis=2)
    return Case("gather_inner_axis", g.bundle([y], "gather_inner_axis"), [_i8((batch, s, s))], batch)


def big_lut(scale: int, batch: int = 1) -> Case:
    """A 256-entry int32 table over a large uint8 tensor (no byte-pair table for 4-byte outputs)."""
    n = 4096 * scale * scale
    g = _Graph()
    x = g.input(U8, (-1, n))
    t = g.const(np.arange(256, dtype=np.int32) * 1000)
    y = g.node("lut", [x, t], I32, (-1, n))
    xs = _rng().integers(0, 256, size=(batch, n)).astype(np.uint8)
    return Case("big_lut", g.bundle([y], "big_lut"), [xs], batch)


def many_tiny_nodes(scale: int, batch: int = 1) -> Case:
    """A long chain of one-element table lookups: per-node overhead only."""
    g = _Graph()
    t = g.const(np.arange(-128, 128, dtype=np.int8)[::-1].copy())
    x = g.input(I8, (-1, 1))
    for _ in range(64 * scale):
        x = g.node("lut", [x, t], I8, (-1, 1))
    return Case("many_tiny_nodes", g.bundle([x], "many_tiny_nodes"), [_i8((batch, 1))], batch)


def long_softmax(scale: int, batch: int = 1) -> Case:
    n = 4096 * scale * scale
    g = _Graph()
    x = g.input(I8, (-1, n))
    t = g.const((np.exp(-np.arange(256) / 16.0) * (1 << 20)).astype(np.int32))
    y = g.node("softmax", [x, t], I8, (-1, n), scale=1 / 256, zp=-128, axis=-1)
    return Case("long_softmax", g.bundle([y], "long_softmax"), [_i8((batch, n))], batch)


def softmax_first_axis(scale: int, batch: int = 1) -> Case:
    """Softmax over a non-last axis: the numpy path on strided rows."""
    s = 64 * scale
    g = _Graph()
    x = g.input(I8, (-1, s, s))
    t = g.const((np.exp(-np.arange(256) / 16.0) * (1 << 20)).astype(np.int32))
    y = g.node("softmax", [x, t], I8, (-1, s, s), scale=1 / 256, zp=-128, axis=1)
    return Case("softmax_first_axis", g.bundle([y], "softmax_first_axis"), [_i8((batch, s, s))], batch)


def layernorm_extreme(scale: int, batch: int = 1) -> Case:
    """A layernorm whose parameters (32 fraction bits, int32-sized gamma) defeat the int64/float64 paths."""
    n = 256
    rows = 4 * scale * scale
    g = _Graph()
    x = g.input(I8, (-1, rows, n))
    gamma = g.const(np.full(n, (1 << 31) - 1, np.int32))
    beta = g.const(np.zeros(n, np.int32))
    y = g.node("layernorm", [x, gamma, beta], I8, (-1, rows, n), eps=1, frac_bits=32, mult=1 << 30, shift=62,
               qmin=-128, qmax=127)
    return Case("layernorm_extreme", g.bundle([y], "layernorm_extreme"), [_i8((batch, rows, n))], batch)


def layernorm_python_rows(scale: int, batch: int = 1) -> Case:
    """A layernorm over one-element rows with an eps so large that every row's square root is taken
    in Python integers."""
    rows = 1024 * scale * scale
    g = _Graph()
    x = g.input(I8, (-1, rows, 1))
    gamma, beta = g.const(np.full(1, 100, np.int32)), g.const(np.zeros(1, np.int32))
    y = g.node("layernorm", [x, gamma, beta], I8, (-1, rows, 1), eps=1 << 62, frac_bits=10, mult=1 << 30, shift=40,
               qmin=-128, qmax=127)
    return Case("layernorm_python_rows", g.bundle([y], "layernorm_python_rows"), [_i8((batch, rows, 1))], batch)


def transpose_big(scale: int, batch: int = 1) -> Case:
    s = 64 * scale
    g = _Graph()
    x = g.input(I8, (-1, s, s))
    y = g.node("transpose", [x], I8, (-1, s, s), perm=[0, 2, 1])
    return Case("transpose_big", g.bundle([y], "transpose_big"), [_i8((batch, s, s))], batch)


def strided_slice(scale: int, batch: int = 1) -> Case:
    s = 64 * scale
    g = _Graph()
    x = g.input(I8, (-1, s, 4 * s))
    y = g.node("slice", [x], I8, (-1, s, s), starts=[0, s - 1, 4 * s - 1], ends=[1 << 62, -1, -1], steps=[1, -1, -4])
    return Case("strided_slice", g.bundle([y], "strided_slice"), [_i8((batch, s, 4 * s))], batch)


def many_group_conv(scale: int, batch: int = 1) -> Case:
    """A depthwise 1x1 convolution over many channels and one pixel: one small GEMM per group."""
    c = 256 * scale
    g = _Graph()
    x = g.input(I8, (-1, c, 1, 1))
    w = g.const(_i8((c, 1, 1, 1)))
    bias = g.const(np.zeros(c, np.int32))
    mult, shift = g.const(np.array([1 << 30], np.int32)), g.const(np.array([31], np.int32))
    y = g.node("conv", [x, w, bias, mult, shift], I8, (-1, c, 1, 1), pads=[0, 0, 0, 0], strides=[1, 1],
               dilations=[1, 1], group=c, qmin=-128, qmax=127)
    return Case("many_group_conv", g.bundle([y], "many_group_conv"), [_i8((batch, c, 1, 1))], batch)


def big_pool_window(scale: int, batch: int = 1) -> Case:
    """A max pool whose window covers the whole (large) image: one output, many kernel offsets."""
    s = 16 * scale
    g = _Graph()
    x = g.input(I8, (-1, 1, s, s))
    y = g.node("maxpool", [x], I8, (-1, 1, 1, 1), kernel=[s, s], strides=[1, 1], pads=[0, 0, 0, 0],
               dilations=[1, 1])
    return Case("big_pool_window", g.bundle([y], "big_pool_window"), [_i8((batch, 1, s, s))], batch)


def avgpool_exclude_pad(scale: int, batch: int = 1) -> Case:
    s = 16 * scale
    g = _Graph()
    x = g.input(I8, (-1, 4, s, s))
    y = g.node("avgpool", [x], I8, (-1, 4, s, s), kernel=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
               count_include_pad=0, mult=1 << 30, shift=30)
    return Case("avgpool_exclude_pad", g.bundle([y], "avgpool_exclude_pad"), [_i8((batch, 4, s, s))], batch)


def batched_tiny_matmul(scale: int, batch: int = 1) -> Case:
    """Many 1xK by Kx1 products through broadcast batch dimensions."""
    n, k = 256 * scale, 16
    g = _Graph()
    a = g.input(I8, (-1, n, 1, k))
    b = g.input(I8, (n, k, 1))
    y = g.node("matmul", [a, b], I8, (-1, n, 1, 1), **REQ)
    return Case("batched_tiny_matmul", g.bundle([y], "batched_tiny_matmul"), [_i8((batch, n, 1, k)), _i8((n, k, 1), 1)],
                batch)


def thin_linear(scale: int, batch: int = 1) -> Case:
    """A linear layer with K = N = 1 over many rows."""
    rows = 4096 * scale * scale
    g = _Graph()
    x = g.input(I8, (-1, rows, 1))
    w, bias = g.const(_i8((1, 1))), g.const(np.zeros(1, np.int32))
    mult, shift = g.const(np.array([1 << 30], np.int32)), g.const(np.array([31], np.int32))
    y = g.node("linear", [x, w, bias, mult, shift], I8, (-1, rows, 1), qmin=-128, qmax=127)
    return Case("thin_linear", g.bundle([y], "thin_linear"), [_i8((batch, rows, 1))], batch)


def concat_many(scale: int, batch: int = 1) -> Case:
    s = 8 * scale
    g = _Graph()
    x = g.input(I8, (-1, s, 1))
    y = g.node("concat", [x] * 64, I8, (-1, s, 64), axis=2)
    return Case("concat_many", g.bundle([y], "concat_many"), [_i8((batch, s, 1))], batch)


def float_cast(scale: int, batch: int = 1) -> Case:
    n = 4096 * scale * scale
    g = _Graph()
    x = g.input(F32, (-1, n), scale=0.0)
    y = g.node("cast", [x], I32, (-1, n), scale=0.0)
    xs = (_rng().standard_normal((batch, n)) * 1e9).astype(np.float32)
    return Case("float_cast", g.bundle([y], "float_cast"), [xs], batch)


def argmax_long(scale: int, batch: int = 1) -> Case:
    n = 4096 * scale * scale
    g = _Graph()
    x = g.input(I8, (-1, 4, n))
    y = g.node("argmax", [x], I64, (-1, n), scale=0.0, axis=1, keepdims=0, select_last_index=1)
    return Case("argmax_long", g.bundle([y], "argmax_long"), [_i8((batch, 4, n))], batch)


CASES: dict[str, Callable[..., Case]] = {f.__name__: f for f in (
    broadcast_add, broadcast_add_int16, broadcast_mul_int32, where_broadcast, huge_reduce, reduce_max_inner,
    wide_gather, gather_inner_axis, big_lut, many_tiny_nodes, long_softmax, softmax_first_axis, layernorm_extreme,
    layernorm_python_rows,
    transpose_big, strided_slice, many_group_conv, big_pool_window, avgpool_exclude_pad, batched_tiny_matmul,
    thin_linear, concat_many, float_cast, argmax_long)}
