"""ctypes bindings and numpy wrappers of the native non-GEMM kernels (``norm.c``, ``pointwise.c``).

Each wrapper returns the op's output, or ``None`` when the native kernel cannot take the case (library
absent or disabled, a dtype or layout it does not handle, values outside the bounds proved in the C
file's header); the caller then runs its numpy path, which computes the same bits. Rows are split over
the engine's worker threads with :func:`opml.parallel.for_row_ranges` (ctypes releases the GIL).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import numpy as np

from ..parallel import for_row_ranges
from . import _addr, isa, library

_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p

_LIB = library()
_ISA = isa()


def _declare(lib: ctypes.CDLL) -> bool:
    try:
        lib.opml_softmax_ok.restype = _int
        lib.opml_softmax_ok.argtypes = [_i64, _i64]
        lib.opml_softmax.restype = _int
        lib.opml_softmax.argtypes = [_ptr, _int, _i64, _i64, _i64, _ptr, _i64, _i64, _i64, _ptr, _int]
        lib.opml_layernorm_ok.restype = _int
        lib.opml_layernorm_ok.argtypes = [_i64, _i64, _i64, _i64, _i64, _int, _int, _i64, _int]
        lib.opml_layernorm.restype = _int
        lib.opml_layernorm.argtypes = [_ptr, _int, _i64, _i64, _i64, _i64, _ptr, _ptr, _i64, _int, _int, _i64,
                                       _int, _i64, _i64, _i64, _ptr, _int]
        lib.opml_lut8.restype = _int
        lib.opml_lut8.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, _int]
        lib.opml_pair_lut8.restype = _int
        lib.opml_pair_lut8.argtypes = [_ptr, _ptr, _i64, _ptr, _i64, _ptr, _i64, _i64, _int]
    except AttributeError:  # a library built before these kernels existed
        return False
    return True


if _LIB is not None and not _declare(_LIB):
    _LIB = None

_BYTE = (np.dtype(np.int8), np.dtype(np.uint8))


def available() -> bool:
    """Whether the native non-GEMM kernels are loaded."""
    return _LIB is not None


def _check(rc: int, name: str) -> None:
    if rc:
        raise RuntimeError(f"opml native {name} refused arguments its wrapper checked (a bug)")


# ------------------------------------------------------------------------------------------- softmax


class Softmax:
    """Softmax over the last axis with a 256-entry exponent table (``kernels_norm.prepare_softmax``)."""

    def __init__(self, table: np.ndarray, zero_point: int, lo: int, hi: int, out_dtype: np.dtype) -> None:
        self.table = np.ascontiguousarray(table, dtype=np.int64)
        self.tmax = int(np.abs(self.table).max()) if self.table.size else 0
        self.zp, self.lo, self.hi = int(zero_point), int(lo), int(hi)
        self.out_dtype = np.dtype(out_dtype)
        self.ok = (_LIB is not None and self.table.shape == (256,) and self.out_dtype in _BYTE
                   and self.tmax < 1 << 52 and abs(self.zp) <= 1 << 40
                   and (np.iinfo(self.out_dtype).min <= self.lo <= self.hi <= np.iinfo(self.out_dtype).max))
        self._table_addr = int(self.table.ctypes.data)
        self._ok_by_length: dict[int, bool] = {}

    def __call__(self, x: np.ndarray) -> np.ndarray | None:
        lib = _LIB
        if not self.ok or lib is None or x.dtype not in _BYTE or x.ndim == 0 or x.size == 0:
            return None
        length = x.shape[-1]
        ok = self._ok_by_length.get(length)
        if ok is None:
            ok = self._ok_by_length[length] = bool(lib.opml_softmax_ok(length, self.tmax))
        if not ok:
            return None
        x = np.ascontiguousarray(x)
        rows = x.size // length
        y = np.empty(x.shape, dtype=np.uint8)
        args = (self._table_addr, self.zp, self.lo, self.hi, _addr(y), _ISA)
        xa, signed = _addr(x), int(x.dtype == np.int8)

        def run(r0: int, r1: int) -> None:
            _check(lib.opml_softmax(xa, signed, r0, r1, length, *args), "softmax")

        for_row_ranges(run, rows, length)
        return y.view(self.out_dtype)


# ----------------------------------------------------------------------------------------- layernorm

_XKIND = {np.dtype(np.int8): (0, 128), np.dtype(np.uint8): (1, 255), np.dtype(np.int16): (2, None)}


class LayerNorm:
    """Layernorm over the last axis (``kernels_norm.prepare_layernorm``): scalar mult/shift."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, eps: int, frac: int, g: int, mult: int, shift: int,
                 zero_point: int, qmin: int, qmax: int, out_dtype: np.dtype) -> None:
        self.gamma, self.beta = np.asarray(gamma), np.asarray(beta)
        self.eps, self.frac, self.g, self.mult, self.shift = int(eps), int(frac), int(g), int(mult), int(shift)
        self.zp, self.qmin, self.qmax = int(zero_point), int(qmin), int(qmax)
        self.out_dtype = np.dtype(out_dtype)
        gm = int(np.abs(self.gamma.astype(object)).max()) if self.gamma.size else 0
        bm = int(np.abs(self.beta.astype(object)).max()) if self.beta.size else 0
        self.gmax, self.bmax = gm, bm
        self.ok = (_LIB is not None and self.out_dtype in _BYTE and self.gamma.ndim <= 1 and self.beta.ndim <= 1
                   and gm < 1 << 62 and bm < 1 << 62 and 0 <= self.eps < 1 << 62 and abs(self.zp) <= 1 << 40
                   and 0 <= self.frac <= 40 and 0 <= self.g <= 20 and 1 <= self.shift <= 62
                   and abs(self.mult) < 1 << 31
                   and np.iinfo(self.out_dtype).min <= self.qmin <= self.qmax <= np.iinfo(self.out_dtype).max)
        self._by_n: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        self._ok: dict[tuple[int, int], bool] = {}

    def _params(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """gamma and beta as contiguous int64 [n] (None when they do not broadcast to n channels)."""
        if n not in self._by_n:
            try:
                gb: tuple[np.ndarray, np.ndarray] | None = (
                    np.ascontiguousarray(np.broadcast_to(self.gamma, (n,)), dtype=np.int64),
                    np.ascontiguousarray(np.broadcast_to(self.beta, (n,)), dtype=np.int64))
            except ValueError:
                gb = None
            self._by_n[n] = gb
        return self._by_n[n]

    def _fits(self, n: int, xmax: int) -> bool:
        key = (n, xmax)
        ok = self._ok.get(key)
        if ok is None:
            assert _LIB is not None
            ok = bool(_LIB.opml_layernorm_ok(n, xmax, self.gmax, self.bmax, self.eps, self.frac, self.g, self.mult,
                                             self.shift))
            if len(self._ok) < 64:
                self._ok[key] = ok
        return ok

    def __call__(self, x: np.ndarray) -> np.ndarray | None:
        lib = _LIB
        if not self.ok or lib is None or x.dtype not in _XKIND or x.ndim == 0 or x.size == 0:
            return None
        n = x.shape[-1]
        gb = self._params(n)
        if gb is None:
            return None
        kind, xmax = _XKIND[x.dtype]
        if xmax is None:  # int16: the data's own bound (the kernel verifies it)
            xmax = max(int(x.max()), -int(x.min()))
        if not self._fits(n, xmax):
            return None
        x = np.ascontiguousarray(x)
        rows = x.size // n
        y = np.empty(x.shape, dtype=np.uint8)
        xa, ga, ba, ya = _addr(x), int(gb[0].ctypes.data), int(gb[1].ctypes.data), _addr(y)
        p = (self.eps, self.frac, self.g, self.mult, self.shift, self.zp, self.qmin, self.qmax)

        def run(r0: int, r1: int) -> None:
            _check(lib.opml_layernorm(xa, kind, xmax, r0, r1, n, ga, ba, *p, ya, _ISA), "layernorm")

        for_row_ranges(run, rows, n)
        return y.view(self.out_dtype)


# -------------------------------------------------------------------------------------------- lookups


def lut8(table: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """``table[x.view(uint8)]`` for a 256-entry one-byte table and int8/uint8 ``x``."""
    lib = _LIB
    if lib is None or x.dtype not in _BYTE or table.dtype not in _BYTE or table.shape != (256,):
        return None
    table = np.ascontiguousarray(table)
    x = np.ascontiguousarray(x)
    y = np.empty(x.shape, dtype=table.dtype)
    ta, xa, ya = _addr(table), _addr(x), _addr(y)

    def run(i0: int, i1: int) -> None:
        _check(lib.opml_lut8(ta, xa, ya, i0, i1, _ISA), "lut8")

    if x.size:
        for_row_ranges(run, x.size, 1)
    return y


def _period(shape: Sequence[int], out: Sequence[int]) -> int | None:
    """The flat period of an operand of ``shape`` broadcast to ``out`` when it repeats over leading
    dimensions only (C order: element ``i`` of the output reads the operand's element ``i mod period``)."""
    s = list(shape)
    while s and s[0] == 1:
        s.pop(0)
    if len(s) > len(out) or (s and tuple(s) != tuple(out[len(out) - len(s):])):
        return None
    return math.prod(s)


def pair_lut8(table: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """``table[(a_byte << 8) | b_byte]`` with numpy broadcasting, for a 65536-entry one-byte table and
    int8/uint8 operands that are the output's shape or repeat over its leading dimensions."""
    lib = _LIB
    if lib is None or a.dtype not in _BYTE or b.dtype not in _BYTE or table.dtype not in _BYTE:
        return None
    if table.shape != (65536,) or not table.flags.c_contiguous:
        return None
    if a.shape == b.shape:
        shape = a.shape
        na = nb = a.size
    else:
        shape = np.broadcast_shapes(a.shape, b.shape)
        pa, pb = _period(a.shape, shape), _period(b.shape, shape)
        if pa is None or pb is None:
            return None
        na, nb = pa, pb
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    y = np.empty(shape, dtype=table.dtype)
    ta, aa, ba, ya = _addr(table), _addr(a), _addr(b), _addr(y)

    def run(i0: int, i1: int) -> None:
        _check(lib.opml_pair_lut8(ta, aa, na, ba, nb, ya, i0, i1, _ISA), "pair_lut8")

    if y.size:
        for_row_ranges(run, y.size, 1)
    return y
