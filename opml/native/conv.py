"""ctypes binding of the native direct grouped convolution (``conv.c``): depthwise and grouped convs with
few channels per group, on the NCHW input as the engine holds it, in one call for all groups.

Native entry points (for plan records; signatures stable): ``opml_gconv_cfg(cfg, x, b, h, w, y, threads)`` with
``GroupConv.cfg`` (29 words: cfg[26] the path, cfg[27] and cfg[28] the addresses of ``GroupConv.block_consts`` and
``GroupConv.tables``, so a record must keep the GroupConv alive); ``opml_plane_reduce(x, xsigned, planes, n, mode,
zp, mult, den, ozp, lo, hi, y, isa)`` (global pooling, see :func:`plane_reduce`); ``opml_plane_lut8(table, a, b,
planes, n, swap, y, isa)`` (a per-plane operand times a full one through a 65536-entry table, see
:func:`plane_lut8`: 256-entry rows by VPERMB, faster than the pair lookup's gathers for the SE block's
[B, C, 1, 1] x [B, C, H, W]); ``opml_maxpool(x, xsigned, planes, h, w, kh, kw, sh, sw, dh, dw, pad top, pad left,
oh, ow, y, isa, threads)`` (see :func:`maxpool`; the batch plan's maxpool record calls it).

:class:`GroupConv` computes exactly what ``kernels.prepare_conv``'s per-group GEMMs compute: the same
int32 sums (bounded here so that no partial sum leaves int32) and the GEMM's own epilogue constants
(:func:`opml.native.epilogue`), so the bytes are the same whichever path, instruction set or thread
count runs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

from ..parallel import worker_count
from . import _OUTKIND, Epilogue, _addr, _code, library

_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
_BYTE = (np.dtype(np.int8), np.dtype(np.uint8))
INT32_MAX = (1 << 31) - 1
# conv.c's ways through a conv (cfg[26]), all giving the same bytes: the faster for the shape, by channel planes,
# by blocks of 16 channels (depthwise with AVX-512 only; elsewhere the planes)
PATHS = {"auto": 0, "planes": 1, "blocks": 2}
DW_BLOCK, DW_BLOCK_HEADER = 16, 81  # conv.c's CB (channels per block) and CB_HDR (constant words before the weights)
X_MAGNITUDE = 255  # |x| of any int8/uint8 input value (the padding holds the zero point, also such a value)


def _declare() -> ctypes.CDLL | None:
    lib = library()
    if lib is None:
        return None
    try:
        lib.opml_gconv_cfg.restype = _int
        lib.opml_gconv_cfg.argtypes = [_ptr, _ptr, _i64, _i64, _i64, _ptr, _int]
        lib.opml_transpose_batched.restype = _int
        lib.opml_transpose_batched.argtypes = [_ptr, _i64, _i64, _i64, _i64, _ptr, _int]
        lib.opml_dwcb_consts.restype = _int
        lib.opml_dwcb_consts.argtypes = [_ptr, _ptr, _i64]
        lib.opml_plane_reduce.restype = _int
        lib.opml_plane_reduce.argtypes = [_ptr, _int, _i64, _i64, _int, _i64, _i64, _i64, _i64, _i64, _i64, _ptr, _int]
        lib.opml_maxpool.restype = _int
        lib.opml_maxpool.argtypes = [_ptr, _int, *[_i64] * 13, _ptr, _int, _int]
        lib.opml_plane_lut8.restype = _int
        lib.opml_plane_lut8.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, _int, _ptr, _int]
    except AttributeError:  # a library built before conv.c
        return None
    return lib


_LIB = _declare()


def available() -> bool:
    """Whether the native direct convolution is loaded."""
    return _LIB is not None


def fits(w: np.ndarray) -> bool:
    """Whether every partial sum of the direct conv with weights ``w`` [M, cg, kh, kw] stays within int32
    for any int8/uint8 input: 255 * max over output channels of sum |w| <= 2^31 - 1."""
    if w.size == 0:
        return True
    wabs = np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1)
    return X_MAGNITUDE * int(wabs.max()) <= INT32_MAX


def block_units(cg: int, mg: int, group: int, kh: int, kw: int) -> int | None:
    """conv.c's units per block of 16 output channels (cb_shape, cb_units) when the conv can run by channel
    blocks: depthwise (tap pairs of a kernel row), or grouped with each block's input channels within 16
    (input channel pairs x taps); else None."""
    if cg == 1 and mg == 1:
        return kh * -(-kw // 2)
    if group < 2 or not 2 <= cg <= DW_BLOCK:
        return None
    fits = DW_BLOCK // mg * cg <= DW_BLOCK if mg <= DW_BLOCK and DW_BLOCK % mg == 0 else mg % DW_BLOCK == 0
    return -(-cg // 2) * kh * kw if fits else None


class GroupConv:
    """A prepared direct conv: int8/uint8 NCHW input ``x`` [B, C, H, W] -> ``epilogue(conv(x))`` [B, M, OH, OW]."""

    def __init__(self, w: np.ndarray, group: int, strides: Sequence[int], dil: Sequence[int], pads: Sequence[int],
                 zero_point: int, x_dtype: np.dtype, ep: Epilogue, isa: str | None = None, path: str = "auto") -> None:
        if _LIB is None:
            raise ValueError("gconv: the native library is not loaded")
        self.x_dtype = np.dtype(x_dtype)
        if self.x_dtype not in _BYTE:
            raise ValueError(f"gconv: x must be int8/uint8, not {self.x_dtype}")
        if w.ndim != 4 or w.dtype not in (np.int8, np.int16) or group < 1 or w.shape[0] % group:
            raise ValueError(f"gconv: weights must be int8/int16 [M, C/group, kh, kw], not {w.dtype} {w.shape}")
        if not fits(w):
            raise ValueError("gconv: weights too large for exact int32 sums")
        if ep.n != w.shape[0]:
            raise ValueError(f"gconv: epilogue for {ep.n} channels, weights have {w.shape[0]}")
        if path not in PATHS:
            raise ValueError(f"gconv: path must be one of {', '.join(PATHS)}, not {path!r}")
        info = np.iinfo(self.x_dtype)
        if not info.min <= zero_point <= info.max:
            raise ValueError(f"gconv: zero point {zero_point} is not a {self.x_dtype} value")
        self.w = np.ascontiguousarray(w, dtype=np.int16)
        self.ep, self.group = ep, group
        self.m, self.cg, self.kh, self.kw = w.shape
        self.c = self.cg * group
        self.strides, self.dil, self.pads = tuple(strides), tuple(dil), tuple(pads)
        self.cfg = np.array([int(self.x_dtype == np.int8), self.c, self.m, group, self.kh, self.kw, *self.strides,
                             *self.dil, *self.pads, zero_point, _addr(self.w), ep.span, ep.base, _OUTKIND[ep.dtype],
                             _code(isa), *(_addr(a) for a in (ep.lo, ep.hi, ep.mul, ep.add, ep.shift, ep.post)),
                             PATHS[path], 0, 0], dtype=np.int64)
        self._cfg = _addr(self.cfg)
        units = block_units(self.cg, self.m // group, group, self.kh, self.kw)
        if units is not None:  # the channel blocks' constants, made once (cfg[27])
            blocks = -(-self.m // DW_BLOCK)
            self.block_consts = np.zeros(blocks * (DW_BLOCK_HEADER + 8 * units), dtype=np.int64)
            if _LIB.opml_dwcb_consts(self._cfg, _addr(self.block_consts), self.block_consts.size):
                raise ValueError("gconv: the depthwise block constants were refused")
            self.cfg[27] = _addr(self.block_consts)
        if (units is not None and self.cg == 1 and self.m == group and self.kh == self.kw == 1
                and self.strides == (1, 1) and not any(self.pads) and ep.dtype in _BYTE):
            # a per-channel scale: each output is a function of its channel and input byte; the table of this
            # kernel's own outputs on the 256 byte values (cfg[28]) gives the same bytes by lookups
            values = np.arange(256, dtype=np.uint8).view(self.x_dtype)
            self.tables = np.ascontiguousarray(self(np.broadcast_to(values, (1, self.c, 1, 256)).copy()))
            self.cfg[28] = _addr(self.tables)

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        """Output height and width for an H x W input (may be <= 0: the input is smaller than the kernel)."""
        t, left, bottom, right = self.pads
        oh = (h + t + bottom - (self.kh - 1) * self.dil[0] - 1) // self.strides[0] + 1
        ow = (w + left + right - (self.kw - 1) * self.dil[1] - 1) // self.strides[1] + 1
        return oh, ow

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != self.x_dtype or x.ndim != 4 or x.shape[1] != self.c:
            raise ValueError(f"gconv: x must be {self.x_dtype} [B, {self.c}, H, W], not {x.dtype} {x.shape}")
        b, _, h, w = x.shape
        oh, ow = self.out_hw(h, w)
        if oh <= 0 or ow <= 0 or h < 1 or w < 1:
            raise ValueError(f"gconv: input {h}x{w} is smaller than the kernel")
        x = np.ascontiguousarray(x)
        y = np.empty((b, self.m, oh, ow), dtype=self.ep.dtype)
        if b and _LIB is not None and _LIB.opml_gconv_cfg(self._cfg, _addr(x), b, h, w, _addr(y), worker_count()):
            raise MemoryError("opml native gconv failed (out of memory or bad arguments)")
        return y


def window_sum(channels: int, kh: int, kw: int, strides: Sequence[int], dil: Sequence[int], pads: Sequence[int],
               zero_point: int, x_dtype: np.dtype, isa: str | None = None) -> GroupConv | None:
    """A prepared ``sum over each pooling window of (x - zero_point)`` as int32 [B, C, OH, OW] (padding counts
    0), for int8/uint8 NCHW ``x``: the direct conv with unit depthwise weights, raw int32 output and offset
    ``-zero_point * kh * kw`` (the padding holds the zero point, so it adds ``zero_point - zero_point = 0``);
    exactly ``kernels._window_reduce(x - zero_point, ...)``. None when the library cannot take it."""
    x_dtype = np.dtype(x_dtype)
    if _LIB is None or x_dtype not in _BYTE or channels < 1 or kh < 1 or kw < 1:
        return None
    info = np.iinfo(x_dtype)
    if not info.min <= zero_point <= info.max or X_MAGNITUDE * kh * kw > INT32_MAX:
        return None
    from . import epilogue

    ep = epilogue(channels, -zero_point * kh * kw, 0, 0, 0, 0, 0, np.int32)
    if ep is None:
        return None
    w = np.ones((channels, 1, kh, kw), dtype=np.int8)
    return GroupConv(w, channels, strides, dil, pads, zero_point, x_dtype, ep, isa)


def transpose_batched(x: np.ndarray) -> np.ndarray:
    """``x`` [N, R, C] (1-, 2- or 4-byte elements) -> its matrices transposed, [N, C, R], C-contiguous: the conv's
    NCHW <-> NHWC changes (per image [C, H W] <-> [H W, C]) in native tiles over the thread pool."""
    if _LIB is None or x.ndim != 3 or x.dtype.itemsize not in (1, 2, 4):
        return np.ascontiguousarray(x.transpose(0, 2, 1))
    x = np.ascontiguousarray(x)
    n, r, c = x.shape
    y = np.empty((n, c, r), dtype=x.dtype)
    if x.size and _LIB.opml_transpose_batched(_addr(x), n, r, c, x.dtype.itemsize, _addr(y), worker_count()):
        raise ValueError(f"transpose: bad shape {x.shape} or item size {x.dtype.itemsize}")
    return y


PLANE_SAFE = 1 << 62  # opml_plane_reduce's bound on |acc * mult| + den (every int64 step exact)


def plane_reduce(x: np.ndarray, planes: int, mode: int, zp: int, mult: int, den: int, ozp: int, lo: int, hi: int,
                 out_dtype: np.dtype, isa: str | None = None) -> np.ndarray | None:
    """Per plane of ``x`` (int8/uint8, ``planes`` planes of its last ``x.size // planes`` elements, C order): mode 0
    ``clip(round_div((sum(x - zp)) * mult, den) + ozp, lo, hi)`` (intmath.round_div, ties up), mode 1 the maximum;
    flat [planes] of ``out_dtype`` (int8/uint8; for mode 1 ``x``'s dtype). None when the native library cannot take
    it (then the caller's numpy form computes the same integers)."""
    if _LIB is None or x.dtype not in _BYTE or np.dtype(out_dtype) not in _BYTE or planes < 1 or x.size % planes:
        return None
    n = x.size // planes
    if n < 1 or den < 1 or mode not in (0, 1) or (mode == 1 and np.dtype(out_dtype) != x.dtype):
        return None
    if mode == 0 and X_MAGNITUDE * n * abs(mult) + den >= PLANE_SAFE or not -(1 << 40) < ozp < (1 << 40):
        return None
    info = np.iinfo(out_dtype)
    lo, hi = max(lo, int(info.min)), min(hi, int(info.max))
    if lo > hi:
        return None
    x = np.ascontiguousarray(x)
    y = np.empty(planes, dtype=out_dtype)
    if _LIB.opml_plane_reduce(_addr(x), int(x.dtype == np.int8), planes, n, mode, zp, mult, den, ozp, lo, hi,
                              _addr(y), _code(isa)):
        raise ValueError(f"plane_reduce: bad arguments ({planes} planes of {n}, den {den})")
    return y


def plane_lut8(table: np.ndarray, a: np.ndarray, b: np.ndarray, swap: bool = False,
               isa: str | None = None) -> np.ndarray | None:
    """``table[(a_byte << 8) | b_byte]`` (``swap``: ``table[(b_byte << 8) | a_byte]``) with numpy broadcasting,
    for a 65536-entry one-byte table, ``b`` int8/uint8 [*lead, *rest] and ``a`` one byte per plane: shape
    ``lead + (1,) * len(rest)`` (with as many leading 1s as numpy would add). The SE block's channel scale
    times its feature map: one 256-entry row of the table per plane. None when the shapes are not of that
    form or the library is not loaded."""
    if _LIB is None or a.dtype not in _BYTE or b.dtype not in _BYTE or table.dtype not in _BYTE:
        return None
    if table.shape != (65536,) or not table.flags.c_contiguous or a.ndim > b.ndim or b.size == 0:
        return None
    ashape = (1,) * (b.ndim - a.ndim) + a.shape
    k = next(i for i in range(b.ndim + 1) if all(d == 1 for d in ashape[i:]))
    if ashape[:k] != b.shape[:k] or k == b.ndim:
        return None
    planes = a.size
    n = b.size // planes
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    y = np.empty(b.shape, dtype=table.dtype)
    if _LIB.opml_plane_lut8(_addr(table), _addr(a), _addr(b), planes, n, int(swap), _addr(y), _code(isa)):
        raise ValueError("plane_lut8: bad arguments")
    return y


def maxpool(x: np.ndarray, kh: int, kw: int, strides: Sequence[int], dil: Sequence[int], pads: Sequence[int],
            isa: str | None = None) -> np.ndarray | None:
    """Max pooling of int8/uint8 NCHW ``x`` (padding: the dtype's minimum, which never wins; ``pads`` top, left,
    bottom, right, ceil mode's extra included), exactly the numpy windows' maximum; None when the native library
    cannot take it (then the caller's numpy path raises the input errors)."""
    if _LIB is None or x.dtype not in _BYTE or x.ndim != 4 or min(kh, kw, *strides, *dil) < 1 or min(pads) < 0:
        return None
    b, c, h, w = x.shape
    oh = (h + pads[0] + pads[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    if oh < 1 or ow < 1 or h < 1 or w < 1:
        return None
    x = np.ascontiguousarray(x)
    y = np.empty((b, c, oh, ow), dtype=x.dtype)
    if b * c and _LIB.opml_maxpool(_addr(x), int(x.dtype == np.int8), b * c, h, w, kh, kw, strides[0], strides[1],
                                   dil[0], dil[1], pads[0], pads[1], oh, ow, _addr(y), _code(isa), worker_count()):
        raise ValueError(f"maxpool: bad arguments ({x.shape}, kernel {kh}x{kw})")
    return y
