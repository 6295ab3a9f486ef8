"""Fast kernels of the elementwise integer ops: add, mul and lut, by table lookup.

An 8-bit-in, 8-bit-out op has at most 256 (unary) or 65536 (binary) distinct cases, so the kernel
evaluates the spec's integer formula once per case at prepare time (exactly, in int64 or Python
integers) and then only gathers: the input bytes (``x.view(uint8)``, so an int8 value ``v`` sits at
``v & 0xFF``) index the table, ``a_byte << 8 | b_byte`` for binary ops (numpy broadcasting as in the
spec). The result is the formula's value by construction, with no arithmetic at run time. Other
dtypes keep the direct int64 evaluation.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from .bundle import DType, Node, TensorSpec
from .intmath import INT32_MAX, INT32_MIN, requantize, round_shift
from .kernels import QRANGE, Kernel, _const
from .native import conv as native_conv
from .native import ops as native_ops
from .native.wide import add_wide
from .parallel import for_row_ranges

BYTE_DTYPES = (DType.INT8, DType.UINT8)
_I64_SAFE = 1 << 62
PAIR_LUT_MIN = 1 << 12  # below this many elements a byte-by-byte lookup is as fast
PLANE_LUT_MIN = 2  # per-plane operands of planes of at least this many elements go to opml_plane_lut8


def _byte_values(dtype: DType) -> np.ndarray:
    """The 256 values of an int8/uint8 dtype, ordered by their byte (so ``table[byte]`` works)."""
    return np.arange(256, dtype=np.uint8).view(dtype.np).astype(np.int64)


def _pair_table(a_dtype: DType, b_dtype: DType, out_dtype: DType,
                fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` on all 65536 (a, b) byte pairs: entry ``a_byte * 256 + b_byte``."""
    av = _byte_values(a_dtype)[:, None]
    bv = _byte_values(b_dtype)[None, :]
    return np.ascontiguousarray(fn(av, bv).astype(out_dtype.np).reshape(-1))


# Equal parameters give equal tables: one shared, read-only array per parameter set (an unrolled LSTM/GRU has a
# handful for hundreds of nodes, which then stay in cache); the least recently prepared go beyond the bound.
SHARED_TABLES = 256  # 65536-entry byte tables: 16 MiB at most
_shared: OrderedDict[tuple[object, ...], np.ndarray] = OrderedDict()
_shared_lock = threading.Lock()


def _shared_pair_table(key: tuple[object, ...], a_dtype: DType, b_dtype: DType, out_dtype: DType,
                       fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """:func:`_pair_table` of ``fn``, shared by every op whose formula has the parameters ``key``."""
    key = (a_dtype, b_dtype, out_dtype, *key)
    with _shared_lock:
        t = _shared.get(key)
        if t is not None:
            _shared.move_to_end(key)
            return t
    t = _pair_table(a_dtype, b_dtype, out_dtype, fn)
    t.flags.writeable = False
    with _shared_lock:
        t = _shared.setdefault(key, t)
        while len(_shared) > SHARED_TABLES:
            _shared.popitem(last=False)
    return t


def _take(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``table[idx]`` for in-range indices, over slices of the flattened indices in parallel."""
    flat = idx.reshape(-1)
    out = np.empty(flat.shape, dtype=table.dtype)

    def part(r0: int, r1: int) -> None:
        # the indices are in range; mode "clip" only avoids a slow numpy path
        np.take(table, flat[r0:r1], out=out[r0:r1], mode="clip")

    for_row_ranges(part, flat.size, 1)
    return out.reshape(idx.shape)


def _gather_pair(table: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    y = native_ops.pair_lut8(table, a, b)  # the same gather in C (None: a case it does not take)
    if y is not None:
        return y
    idx = np.left_shift(a.view(np.uint8).astype(np.uint16), 8)
    idx = np.bitwise_or(idx, b.view(np.uint8), out=idx if idx.shape == np.broadcast_shapes(a.shape, b.shape) else None)
    return _take(table, idx)


def _gather_plane(table: np.ndarray, swapped: Callable[[], np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_gather_pair`, with one operand holding one value per plane of the other (the SE block's channel
    scale times its feature map, [B, C, 1, 1] x [B, C, H, W] either way round) by one 256-entry table row per plane;
    ``swapped()``: the table with its operands exchanged (entry ``b_byte * 256 + a_byte``), made once."""
    if a.size * PLANE_LUT_MIN <= b.size and (y := native_conv.plane_lut8(table, a, b)) is not None:
        return y
    if b.size * PLANE_LUT_MIN <= a.size and (y := native_conv.plane_lut8(swapped(), b, a)) is not None:
        return y
    return _gather_pair(table, a, b)


def _swapped(table: np.ndarray) -> Callable[[], np.ndarray]:
    """A function giving (and keeping, from its first call) ``table`` with the two operand bytes exchanged."""
    return functools.cache(lambda: np.ascontiguousarray(table.reshape(256, 256).T).reshape(-1))


def _fits_i64(*terms: int) -> bool:
    return sum(abs(t) for t in terms) < _I64_SAFE


def prepare_add(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    a_spec, b_spec, out = specs[node.inputs[0]], specs[node.inputs[1]], specs[node.outputs[0]]
    am, bm, shift = node.iattr("a_mult"), node.iattr("b_mult"), node.iattr("shift")
    qmin, qmax = node.iattr("qmin"), node.iattr("qmax")
    za, zb, zo = a_spec.zero_point, b_spec.zero_point, out.zero_point

    def formula(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.clip(round_shift((a - za) * am + (b - zb) * bm, shift) + zo, qmin, qmax)

    table = None
    if (a_spec.dtype in BYTE_DTYPES and b_spec.dtype in BYTE_DTYPES and out.dtype in QRANGE
            and 1 <= shift <= 62 and _fits_i64((abs(za) + 255) * am, (abs(zb) + 255) * bm, 1 << shift)):
        table = _shared_pair_table(("add", za, zb, zo, am, bm, shift, qmin, qmax), a_spec.dtype, b_spec.dtype,
                                   out.dtype, formula)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        if table is not None:
            return _gather_pair(table, xs[0], xs[1])
        if 1 <= shift <= 62:  # int16 operands or output (the wide residual path): native when built
            y = add_wide(xs[0], xs[1], za, zb, am, bm, shift, zo, qmin, qmax, out.dtype.np)
            if y is not None:
                return y
        return formula(xs[0].astype(np.int64), xs[1].astype(np.int64)).astype(out.dtype.np)

    return run


def prepare_mul(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    a_spec, b_spec, out = specs[node.inputs[0]], specs[node.inputs[1]], specs[node.outputs[0]]
    mult, shift = node.iattr("mult"), node.iattr("shift")
    qmin, qmax = node.iattr("qmin"), node.iattr("qmax")
    za, zb = a_spec.zero_point, b_spec.zero_point

    def formula(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return requantize((a - za) * (b - zb), mult, shift, out.zero_point, qmin, qmax, out.dtype.np)

    table = None
    if (a_spec.dtype in BYTE_DTYPES and b_spec.dtype in BYTE_DTYPES and out.dtype in QRANGE
            and 1 <= shift <= 62 and _fits_i64(max(-INT32_MIN, INT32_MAX) * mult, 1 << shift)
            and _fits_i64((abs(za) + 255) * (abs(zb) + 255))):
        table = _shared_pair_table(("mul", za, zb, out.zero_point, mult, shift, qmin, qmax), a_spec.dtype,
                                   b_spec.dtype, out.dtype, formula)

    swapped = _swapped(table) if table is not None else None

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        if table is not None and swapped is not None:
            return _gather_plane(table, swapped, xs[0], xs[1])
        return formula(xs[0].astype(np.int64), xs[1].astype(np.int64))

    return run


def _pair_lut(by_byte: np.ndarray) -> np.ndarray:
    """The 65536-entry table that maps two adjacent input bytes (read as one native uint16) to the two
    output bytes (as one uint16): half as many gathers as byte by byte. Built through the same
    native views it is used with, so it is right for either byte order."""
    pairs = np.arange(1 << 16, dtype=np.uint16).view(np.uint8)
    return np.ascontiguousarray(by_byte.view(np.uint8)[pairs]).view(np.uint16)


def prepare_lut(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    x_spec = specs[node.inputs[0]]
    table = _const(specs, node.inputs[1])
    offset = 128 if x_spec.dtype == DType.INT8 else 0
    by_byte = pair = None
    native_lut = native_ops.lut8
    if x_spec.dtype in BYTE_DTYPES and table.shape == (256,):
        by_byte = np.ascontiguousarray(table[_byte_values(x_spec.dtype) + offset])
        if by_byte.dtype.itemsize == 1:
            pair = _pair_lut(by_byte)

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        if by_byte is not None:
            y = native_lut(by_byte, x)  # the same gather in C (None: a case it does not take)
            if y is not None:
                return y
        if pair is not None and x.size >= PAIR_LUT_MIN and x.flags.c_contiguous:
            assert by_byte is not None  # the pair table is built from the byte table
            flat = x.reshape(-1).view(np.uint8)
            even = flat.size & ~1
            out = np.empty(flat.size, dtype=by_byte.dtype)
            out[:even].view(np.uint16)[...] = _take(pair, flat[:even].view(np.uint16))
            if even < flat.size:
                out[even:] = by_byte[flat[even:]]
            return out.reshape(x.shape)
        if by_byte is not None:
            return _take(by_byte, x.view(np.uint8))
        return table[x.astype(np.intp) + offset]

    return run
