"""ctypes binding of ``opml_add_wide`` (``pointwise.c``): the requantized add for int16 operands or outputs
(the wide residual path), which the 65536-entry pair table cannot take.

:func:`add_wide` returns the output, or ``None`` when the library is absent or disabled, or the case is
outside what the kernel takes (dtypes, a broadcast that is not one operand repeated over the other's
leading dimensions, constants outside the C bounds); the caller then runs its numpy formula, which the
kernel equals bit for bit (tests/opml/test_native_avx512_ops.py).
"""

from __future__ import annotations

import ctypes

import numpy as np

from ..parallel import for_row_ranges
from . import _addr, library
from . import ops as _ops

_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
_KIND = {np.dtype(np.int8): 0, np.dtype(np.uint8): 1, np.dtype(np.int16): 2}


def _declare() -> ctypes.CDLL | None:
    lib = library()
    if lib is None:
        return None
    try:
        fn = lib.opml_add_wide
    except AttributeError:  # a library built before this kernel existed
        return None
    fn.restype = _int
    fn.argtypes = [_ptr, _int, _i64, _ptr, _int, _i64, _i64, _i64, _i64, _i64, _int, _i64, _i64, _i64, _ptr, _int,
                   _i64, _i64, _int]
    return lib


_LIB = _declare()


def add_wide(a: np.ndarray, b: np.ndarray, za: int, zb: int, am: int, bm: int, shift: int, zo: int, qmin: int,
             qmax: int, out_dtype: np.dtype) -> np.ndarray | None:
    """``clip(round_shift((a - za) am + (b - zb) bm, shift) + zo, qmin, qmax)`` as ``out_dtype``."""
    lib = _LIB
    out_dtype = np.dtype(out_dtype)
    if lib is None or _ops._LIB is None or a.dtype not in _KIND or b.dtype not in _KIND or out_dtype not in _KIND:
        return None
    if a.shape == b.shape:
        shape, na, nb = a.shape, a.size, b.size
    else:
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            return None
        pa, pb = _ops._period(a.shape, shape), _ops._period(b.shape, shape)
        if pa is None or pb is None:
            return None
        na, nb = pa, pb
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    y = np.empty(shape, dtype=out_dtype)
    if y.size == 0:
        return y
    args = (_addr(a), _KIND[a.dtype], na, _addr(b), _KIND[b.dtype], nb, int(za), int(zb), int(am), int(bm),
            int(shift), int(zo), int(qmin), int(qmax), _addr(y), _KIND[out_dtype])
    refused = []

    def run(i0: int, i1: int) -> None:
        if lib.opml_add_wide(*args, i0, i1, _ops._ISA):
            refused.append(1)

    for_row_ranges(run, y.size, 1)
    return None if refused else y
