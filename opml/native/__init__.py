"""opml's optional native kernels: exact integer C code loaded through ctypes.

``scripts/build_native.sh`` (run by ``make install``) builds ``libopml_native.so`` next to this file.
Every native kernel computes exactly what the numpy kernel it replaces computes (integer arithmetic
within proven bounds, see each C file's header), so whether the library is present, which instruction
set it picks, and how many threads split the work never change a bit of any output. The engine
runs the numpy path when the library is absent or disabled.

Environment (read at import):

* ``OPML_NATIVE=0`` disables the library (the numpy path runs);
* ``OPML_NATIVE_ISA`` forces an instruction set: ``generic`` (portable C), ``avx2``, ``avx512vnni`` (AVX-512
  F/BW/VL/VNNI), ``avxvnni`` (AVX-VNNI, 256-bit), ``avxvnni-evex`` (the AVX-VNNI kernel in EVEX encoding, for
  testing it on AVX-512 VNNI CPUs) or ``amx`` (AMX-INT8 tiles for 8-bit weights, AVX-512 VNNI for the rest;
  needs Linux's permission for the tile state, requested once when the library loads); unset or ``auto``
  picks the best the CPU runs (amx, then avx512vnni, then avxvnni, then avx2, then generic). Importing this
  module raises :class:`opml.errors.NativeIsaError` for an unknown name or a set the CPU lacks: a forced choice is never
  silently replaced. All give the same bytes (tests/opml/test_native*.py, tests/opml/test_determinism.py);
* ``OPML_SPIN_US`` (default 200): how long the thread pool's idle workers spin before sleeping. Longer
  keeps them awake across the short non-GEMM kernels between two GEMMs (lower latency with
  ``OPML_THREADS`` > 1), at the price of that much CPU time after each parallel call.
"""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ..errors import NativeIsaError
from ..parallel import worker_count

LIBRARY = Path(__file__).with_name("libopml_native.so")

_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
_OUTKIND = {np.dtype(np.int32): 0, np.dtype(np.int8): 1, np.dtype(np.uint8): 2, np.dtype(np.int16): 3}


def _load() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get("OPML_NATIVE", "1").strip() == "0":
        return None, "disabled (OPML_NATIVE=0)"
    if not LIBRARY.exists():
        return None, f"not built ({LIBRARY.name} missing: run scripts/build_native.sh)"
    try:
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError as e:
        return None, f"cannot be loaded: {e}"
    lib.opml_qgemm_max_k.restype = _i64
    lib.opml_qgemm_packed_size.restype = _i64
    lib.opml_qgemm_packed_size.argtypes = [_i64, _i64]
    lib.opml_qgemm_pack.restype = None
    lib.opml_qgemm_pack.argtypes = [_ptr, _i64, _i64, _ptr]
    lib.opml_qgemm_packed_size_u8s8.restype = _i64
    lib.opml_qgemm_packed_size_u8s8.argtypes = [_i64, _i64]
    lib.opml_qgemm_pack_u8s8.restype = None
    lib.opml_qgemm_pack_u8s8.argtypes = [_ptr, _i64, _i64, _ptr, _ptr]
    lib.opml_qgemm_has_avx2.restype = _int
    try:
        lib.opml_native_amx_status.restype = _int
    except AttributeError:  # a library built before the AMX kernel
        pass
    try:
        lib.opml_native_isa_mask.restype = _int
    except AttributeError:  # a library built before the VNNI kernels: generic and AVX2 only
        pass
    lib.opml_pool_set_spin_ns.restype = None
    lib.opml_pool_set_spin_ns.argtypes = [_i64]
    spin = os.environ.get("OPML_SPIN_US", "").strip()
    if spin.isdigit():
        lib.opml_pool_set_spin_ns(int(spin) * 1000)
    lib.opml_im2col_nhwc.restype = _int
    lib.opml_im2col_nhwc.argtypes = [_ptr] + [_i64] * 14 + [_ptr]
    lib.opml_qconv_nchw.restype = _int
    lib.opml_qconv_nchw.argtypes = [_ptr, _ptr] + [_i64] * 15 + [_ptr, _int, _int]
    lib.opml_qgemm_cfg.restype = _int
    lib.opml_qgemm_cfg.argtypes = [_ptr, _ptr, _i64, _ptr, _int]
    lib.opml_qmatmul_cfg.restype = _int
    lib.opml_qmatmul_cfg.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _ptr, _int]
    return lib, "loaded"


_LIB, _STATUS = _load()


# The library's instruction-set codes (qgemm.c OPML_ISA_*), by name; every code above 0 implies AVX2.
# "avxvnni-evex" is the AVX-VNNI kernel's code compiled to EVEX (AVX-512 VL + VNNI): never chosen by
# default, it lets a CPU with AVX-512 VNNI but no AVX-VNNI test that kernel's logic.
# "amx" runs the uint8 x int8 GEMM on AMX-INT8 tiles (TDPBUSD) where the shape pays, and the AVX-512 VNNI
# kernels for everything else (it implies avx512vnni).
ISAS = ("generic", "avx2", "avx512vnni", "avxvnni", "avxvnni-evex", "amx")
VNNI_ISAS = frozenset({"avx512vnni", "avxvnni", "avxvnni-evex", "amx"})
_PREFERENCE = ("amx", "avx512vnni", "avxvnni", "avx2", "generic")
# What each set needs, as /proc/cpuinfo names the flags (for messages and test skip reasons).
CPU_FLAGS = {"generic": "no flag", "avx2": "avx2", "avx512vnni": "avx512_vnni (with avx512f, avx512bw, avx512vl)",
             "avxvnni": "avx_vnni", "avxvnni-evex": "avx512_vnni (with avx512f, avx512vl)",
             "amx": "amx_int8 and amx_tile (with avx512_vnni, avx512f, avx512bw, avx512vl)"}
# Why the library does not offer AMX (opml_native_amx_status in qgemm.c), by its code.
AMX_STATUS = {0: "usable", 1: "not built in (compiler older than GCC 11 / clang 12, or not 64-bit Linux)",
              2: f"this CPU lacks {CPU_FLAGS['amx']}", 3: "the OS does not enable the AMX tile state (XCR0)",
              4: "Linux refused the AMX tile-state permission (arch_prctl ARCH_REQ_XCOMP_PERM)"}


def _cpu_mask() -> int:
    if _LIB is None:
        return 0
    if hasattr(_LIB, "opml_native_isa_mask"):
        return int(_LIB.opml_native_isa_mask())
    return 1 | (2 if _LIB.opml_qgemm_has_avx2() else 0)  # an older library: no VNNI kernels in it


_CPU_ISAS = tuple(name for code, name in enumerate(ISAS) if _cpu_mask() >> code & 1)


def amx_status() -> str:
    """Whether the library offers ``amx`` here and, if not, why (see :data:`AMX_STATUS`)."""
    if _LIB is None:
        return f"native kernels {_STATUS}"
    if not hasattr(_LIB, "opml_native_amx_status"):
        return AMX_STATUS[1]
    return AMX_STATUS.get(int(_LIB.opml_native_amx_status()), "unknown")


def _choose_isa() -> int:
    if _LIB is None:
        return 0
    want = os.environ.get("OPML_NATIVE_ISA", "").strip().lower()
    if want in ("", "auto"):
        return ISAS.index(next(name for name in _PREFERENCE if name in _CPU_ISAS))
    return isa_code(want)


def isa_code(name: str) -> int:
    """The library's code of instruction set ``name`` (one of :data:`ISAS`); :class:`NativeIsaError` when the
    name is unknown or this CPU (or the loaded library) cannot run it."""
    if name not in ISAS:
        raise NativeIsaError(f"OPML_NATIVE_ISA={name!r} is not an instruction set of opml's native kernels: use "
                             f"auto or one of {', '.join(ISAS)}")
    if name not in _CPU_ISAS:
        lacks = amx_status() if name == "amx" and _LIB is not None else f"this CPU lacks {CPU_FLAGS[name]}"
        raise NativeIsaError(f"OPML_NATIVE_ISA={name}: {lacks} (it runs "
                             f"{', '.join(_CPU_ISAS) or 'no native kernels'}); unset OPML_NATIVE_ISA or pick one "
                             "of those")
    return ISAS.index(name)


_ISA = _choose_isa()


def available() -> bool:
    """Whether the native kernels are loaded and enabled."""
    return _LIB is not None


def library() -> ctypes.CDLL | None:
    """The loaded library (None when absent or disabled), for the modules that declare more of its
    functions (each module sets the ``argtypes``/``restype`` of the functions it calls)."""
    return _LIB


def isa() -> int:
    """The instruction-set code every native kernel uses (an index of :data:`ISAS`: 0 portable C, 1 AVX2,
    2 AVX-512 VNNI, 3 AVX-VNNI, 4 AVX-VNNI's kernel in EVEX, 5 AMX-INT8 with AVX-512 VNNI; the non-GEMM kernels
    use their AVX2 versions for every code >= 1)."""
    return _ISA


def isa_name() -> str:
    """The name of the instruction set in use (see :func:`isa`)."""
    return ISAS[_ISA]


def cpu_isas() -> tuple[str, ...]:
    """The instruction sets this CPU and the loaded library can run (empty when the library is not loaded)."""
    return _CPU_ISAS


def describe() -> str:
    """One line for diagnostics: loaded with which instruction set (and the ones this CPU offers), or why not."""
    if _LIB is None:
        return f"native kernels {_STATUS}"
    return f"native kernels loaded ({isa_name()}) from {LIBRARY}; this CPU runs {', '.join(_CPU_ISAS)}"


_from_buffer = cast(Callable[[Any], Any], ctypes.c_char.from_buffer)


def _addr(a: np.ndarray) -> int:
    """The address of a C-contiguous array's first byte (through the buffer protocol, several times
    cheaper than ``a.ctypes.data``, which read-only or empty arrays still need)."""
    try:
        return ctypes.addressof(_from_buffer(a))
    except (TypeError, ValueError, BufferError):
        return int(a.ctypes.data)


@dataclass(frozen=True)
class PackedWeights:
    """A [K, N] weight matrix in one of the GEMM's panel layouts (see ``qgemm.c``): ``kind`` 0 holds int16
    pairs (any |w| <= 255); kinds 1 and 2 int8 groups of four for the uint8 x int8 kernels, with ``corr`` =
    128 * column sums (the correction for signed inputs): kind 1 for |w| <= 64 (any instruction set: the
    AVX2 tile is exact there), kind 2 for other int8 weights where a VNNI set runs (the AVX2 tile refuses
    it)."""

    data: np.ndarray  # int16 (kind 0) or int8 (kinds 1, 2)
    k: int
    n: int
    kind: int = 0
    corr: np.ndarray | None = None  # int32 [N rounded up to 16], kinds 1 and 2
    # kinds 1 and 2 packed for amx with ``rows``: the same weights as rows, int8 [N + 32, 4 * groups] with the groups
    # of 4 K rounded up to 16 (zero-padded): the A operand of qconv.c's AMX tiles (channels x K)
    rows: np.ndarray | None = None


U8S8_MAX_WEIGHT = 64  # |x0 w0 + x1 w1| <= 255 * 64 * 2 = 32640: VPMADDUBSW's int16 pair cannot saturate


def _code(isa: str | None) -> int:
    return _ISA if isa is None else isa_code(isa)


def pack_weights(w: np.ndarray, isa: str | None = None, rows: bool = False) -> PackedWeights | None:
    """Pack int8/int16 weights [K, N] with |w| <= 255 for :func:`qgemm` on instruction set ``isa`` (default:
    the one in use); None when the native GEMM cannot take them (library absent, K too large, values out of
    range). int8 weights within +-64 (7-bit bundles), and any int8 weights for a VNNI set, get the
    uint8 x int8 layout; with ``rows`` (a conv's weights) and the ``amx`` set, also the row-major copy that
    :meth:`Gemm.conv_nchw` multiplies on AMX tiles."""
    if _LIB is None or w.ndim != 2 or w.dtype not in (np.int8, np.int16):
        return None
    code = _code(isa)
    k, n = w.shape
    wmax = int(np.abs(w.astype(np.int32)).max()) if w.size else 0
    if k > _LIB.opml_qgemm_max_k() or wmax > 255:
        return None
    if w.dtype == np.int8 and (wmax <= U8S8_MAX_WEIGHT or ISAS[code] in VNNI_ISAS):
        w8 = np.ascontiguousarray(w)
        data8 = np.empty(_LIB.opml_qgemm_packed_size_u8s8(k, n), dtype=np.int8)
        corr = np.empty(-(-n // PANEL) * PANEL, dtype=np.int32)
        _LIB.opml_qgemm_pack_u8s8(_addr(w8), k, n, _addr(data8), _addr(corr))
        wrows = None
        if rows and ISAS[code] == "amx":
            wrows = np.zeros((n + 32, -(-k // 64) * 64), dtype=np.int8)
            wrows[:n, :k] = w8.T
        return PackedWeights(data8, k, n, 1 if wmax <= U8S8_MAX_WEIGHT else 2, corr, wrows)
    w16 = np.ascontiguousarray(w, dtype=np.int16)
    data = np.empty(_LIB.opml_qgemm_packed_size(k, n), dtype=np.int16)
    _LIB.opml_qgemm_pack(_addr(w16), k, n, _addr(data))
    return PackedWeights(data, k, n)


PANEL = 16  # columns per packed panel
_BIAS = 1 << 62
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_LANES = np.array([0, 2, 4, 6, 1, 3, 5, 7])  # VPMULDQ's even products, then its odd ones


@dataclass(frozen=True)
class Epilogue:
    """Per-column constants of the GEMM's epilogue (see :func:`epilogue` and ``struct epilogue`` in
    ``qgemm.c``), padded to a multiple of 16 columns."""

    n: int
    lo: np.ndarray  # int64: accumulator clamp bounds, within int32
    hi: np.ndarray
    mul: np.ndarray  # int64, in [0, 2^31)
    add: np.ndarray  # int64: the true constant plus 2^62, modulo 2^64
    shift: np.ndarray  # int64, in [0, 62]
    post: np.ndarray  # int64: added after the shift, minus 2^(62 - shift)
    span: int
    base: int
    dtype: np.dtype  # int32 (raw accumulators), int8, uint8 or int16
    lo32: np.ndarray  # the same in the AVX2 kernel's layout
    hi32: np.ndarray
    mul32: np.ndarray
    addp: np.ndarray
    shiftp: np.ndarray
    postp: np.ndarray

    def addresses(self) -> list[int]:
        return [_addr(a) for a in (self.lo, self.hi, self.mul, self.add, self.shift, self.post, self.lo32, self.hi32,
                                   self.mul32, self.addp, self.shiftp, self.postp)]


def _wrap64(v: int) -> int:
    return ((v + (1 << 63)) % (1 << 64)) - (1 << 63)


Column = tuple[int, int, int, int, int, int]  # lo, hi, mul, add (true value), shift, post


def _requant_column(off: int, m: int, s: int, zp: int, qmin: int, qmax: int) -> Column:
    """(lo, hi, mul, add, shift, post) with ``clamp(((clamp(acc, lo, hi) * mul + add) >> shift) + post, 0,
    qmax - qmin) + qmin == requant(acc + off)`` for every int32 ``acc``, where ``requant(a) = clip(zp +
    round_shift(clip_int32(a) * m, s), qmin, qmax)``.

    ``requant`` is non-decreasing in ``a`` (``m >= 0``), equal to ``qmin`` for ``a <= a_lo`` and to ``qmax`` for
    ``a >= a_hi`` (:func:`opml.requant.saturation_bounds`); so clamping ``a`` into ``[L, H] = [max(a_lo,
    INT32_MIN), min(a_hi, INT32_MAX)]`` changes no output, and makes the int32 clip a no-op. Then
    ``zp + round_shift(a m, s) - qmin == ((a m + 2^(s-1)) >> s) + (zp - qmin)``, and with ``a = acc + off``
    the constant part is ``off m + 2^(s-1)``. For ``a`` in ``[L, H]``, ``|a m| < 2^31 2^31 = 2^62``.
    """
    from ..requant import saturation_bounds

    if qmin == qmax or m == 0:  # a constant column: (0 * 0 + 0) >> 0, plus c - qmin
        c = min(max(zp, qmin), qmax) if m == 0 else qmin
        return 0, 0, 0, 0, 0, c - qmin
    a_lo, a_hi = saturation_bounds(m, s, zp, qmin, qmax)
    if a_lo >= _I32_MAX:  # every int32 accumulator saturates low (or high, below)
        return 0, 0, 0, 0, 0, 0
    if a_hi <= _I32_MIN:
        return 0, 0, 0, 0, 0, qmax - qmin
    big_l, big_h = max(a_lo, _I32_MIN), min(a_hi, _I32_MAX)
    return big_l - off, big_h - off, m, off * m + (1 << (s - 1)), s, zp - qmin


def _fit_int32(col: Column, span: int) -> Column:
    """The column with its clamp bounds inside int32 (the accumulator's range): a bound outside it either
    binds nowhere (replaced by the int32 limit) or everywhere (the column is that bound's constant output).
    Checks the magnitude the C evaluation relies on."""
    lo, hi, m, add, s, post = col
    if lo > _I32_MAX or hi < _I32_MIN:
        a = lo if lo > _I32_MAX else hi
        v = min(max(((a * m + add) >> s) + post, 0), span)
        return 0, 0, 0, 0, 0, v
    lo, hi = max(lo, _I32_MIN), min(hi, _I32_MAX)
    t_lo, t_hi = lo * m + add, hi * m + add  # the extremes of the true value (linear in the accumulator)
    if min(t_lo, t_hi) < -_BIAS or max(t_lo, t_hi) >= (1 << 64) - _BIAS:  # proven impossible (see epilogue)
        raise AssertionError(f"epilogue column {col} exceeds the C evaluation's range")
    return lo, hi, m, add, s, post


def epilogue(n: int, off: object, mult: object, shift: object, zero_point: int, qmin: int, qmax: int,
             dtype: npt.DTypeLike) -> Epilogue | None:
    """Epilogue constants for N columns (``off``, ``mult``, ``shift`` broadcast per column); None when the
    native GEMM cannot apply them exactly. ``int32``: ``clip_int32(acc + off)`` (mult, shift, zero point
    and the q bounds unused); ``int8``/``uint8``/``int16``: the spec's requantization of ``acc + off``.

    C evaluates ``(a * mul + add + 2^62) >>> shift`` on uint64 and subtracts ``2^(62 - shift)``: for
    clamped ``a`` the true ``a * mul + add`` lies in ``(-2^62, 2^62 + 2^61)`` (``|a| <= 2^31``, ``mul < 2^31``
    and ``|add - off * mul| <= 2^61``; for int32 outputs ``a + off - INT32_MIN`` lies in ``[0, 2^32)``), so the
    biased value is in ``(0, 2^64)``, its logical shift is ``floor(true / 2^s) + 2^(62 - s)``, and
    products and sums modulo 2^64 give exactly that value.
    """
    dtype = np.dtype(dtype)
    offs = np.broadcast_to(np.asarray(off, dtype=np.int64), (n,)).tolist()
    if any(abs(o) >= 1 << 40 for o in offs):
        return None
    cols: list[Column]
    if dtype == np.int32:
        # clip_int32(acc + off) = clamp(acc, MIN - off, MAX - off) + (off - MIN) + MIN, the middle in [0, 2^32)
        cols = [(_I32_MIN - o, _I32_MAX - o, 1, o - _I32_MIN, 0, 0) for o in offs]
        span, base = (1 << 32) - 1, _I32_MIN
    elif dtype in (np.int8, np.uint8, np.int16):
        info = np.iinfo(dtype)
        if not info.min <= qmin <= qmax <= info.max:
            return None
        ms = np.broadcast_to(np.asarray(mult, dtype=np.int64), (n,)).tolist()
        ss = np.broadcast_to(np.asarray(shift, dtype=np.int64), (n,)).tolist()
        if any(not 0 <= m < 1 << 31 for m in ms) or any(not 1 <= s <= 62 for s in ss):
            return None
        cols = [_requant_column(o, m, s, zero_point, qmin, qmax) for o, m, s in zip(offs, ms, ss, strict=True)]
        span, base = qmax - qmin, qmin
    else:
        return None
    padded = -(-n // PANEL) * PANEL
    fitted = [_fit_int32(c, span) for c in cols] + [(0, 0, 0, 0, 0, 0)] * (padded - n)
    fitted = [(lo, hi, m, _wrap64(add + _BIAS), s, post) for lo, hi, m, add, s, post in fitted]
    lo, hi, mul, add, sh, post = (np.array([c[i] for c in fitted], dtype=np.int64) for i in range(6))
    post = post - (np.int64(1) << (62 - sh))
    perm = (np.arange(padded).reshape(-1, 8)[:, _LANES]).reshape(-1) if padded else np.zeros(0, dtype=np.intp)
    return Epilogue(n, lo, hi, mul, add, sh, post, span, base, dtype,
                    lo.astype(np.int32), hi.astype(np.int32), mul.astype(np.int32),
                    np.ascontiguousarray(add[perm]), np.ascontiguousarray(sh[perm]), np.ascontiguousarray(post[perm]))


class Gemm:
    """A prepared ``epilogue(x @ w)``: packed weights, epilogue constants and the input's signedness,
    with their addresses in one int64 array for the C call (this object keeps the arrays alive), run with
    instruction set ``isa`` (default: the one in use)."""

    def __init__(self, w: PackedWeights, ep: Epilogue, x_dtype: np.dtype, isa: str | None = None):
        self.w, self.ep, self.x_dtype = w, ep, np.dtype(x_dtype)
        if self.x_dtype not in (np.int8, np.uint8):
            raise ValueError(f"qgemm: x must be int8/uint8, not {self.x_dtype}")
        if ep.n != w.n:
            raise ValueError(f"qgemm: epilogue for {ep.n} columns, weights have {w.n}")
        code = _code(isa)
        if w.kind == 2 and ISAS[code] == "avx2":
            raise ValueError("qgemm: int8 weights beyond +-64 packed for a VNNI kernel cannot run on the AVX2 "
                             "uint8 x int8 kernel (pack them for avx2)")
        self.isa = ISAS[code]
        self.cfg = np.array([int(self.x_dtype == np.int8), w.k, _addr(w.data), w.n, ep.span, ep.base,
                             _OUTKIND[ep.dtype], code, *ep.addresses(), w.kind,
                             _addr(w.corr) if w.corr is not None else 0,
                             _addr(w.rows) if w.rows is not None else 0], dtype=np.int64)
        self._cfg = _addr(self.cfg)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x`` [M, K] of the prepared dtype -> [M, N]; column panels split over up to
        :func:`opml.parallel.worker_count` threads of the library's pool (ctypes releases the GIL)."""
        w = self.w
        if x.dtype != self.x_dtype or x.ndim != 2 or x.shape[1] != w.k:
            raise ValueError(f"qgemm: x must be int8/uint8 ({self.x_dtype} here) [M, {w.k}], not {x.dtype} {x.shape}")
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        m = x.shape[0]
        y = np.empty((m, w.n), dtype=self.ep.dtype)
        if m and w.n and _LIB.opml_qgemm_cfg(self._cfg, _addr(x), m, _addr(y),  # type: ignore[union-attr]
                                             worker_count()):
            raise MemoryError("opml native qgemm failed (out of memory or bad arguments)")
        return y


    def conv_nchw(self, x: np.ndarray, kh: int, kw: int, pads: Sequence[int], strides: Sequence[int],
                  dil: Sequence[int], zero_point: int, mode: int = 0) -> np.ndarray:
        """The group-1 conv of NCHW ``x`` [B, C, H, W] (the prepared dtype) padded by ``pads`` (top, left, bottom,
        right) with ``zero_point``, whose weights this GEMM holds as [kh * kw * C, M] in (kernel row, kernel
        column, channel) order: [B, M, OH, OW] in one native call (``qconv.c``). ``mode`` 0 picks the orientation
        (pixels as the GEMM's columns or its rows) by shape and instruction set, 1 and 2 force one (tests: both
        give the same bytes)."""
        if x.dtype != self.x_dtype or x.ndim != 4 or kh * kw * x.shape[1] != self.w.k:
            raise ValueError(f"qconv: x must be {self.x_dtype} [B, C, H, W] with {kh} * {kw} * C = {self.w.k}, "
                             f"not {x.dtype} {x.shape}")
        b, c, h, w = x.shape
        hp, wp = h + pads[0] + pads[2], w + pads[1] + pads[3]
        oh, ow = (hp - (kh - 1) * dil[0] - 1) // strides[0] + 1, (wp - (kw - 1) * dil[1] - 1) // strides[1] + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"qconv: input {h}x{w} padded by {tuple(pads)} is smaller than the kernel")
        x = np.ascontiguousarray(x)
        y = np.empty((b, self.w.n, oh, ow), dtype=self.ep.dtype)
        if b and _LIB.opml_qconv_nchw(self._cfg, _addr(x), b, c, h, w, pads[0], pads[1],  # type: ignore[union-attr]
                                      hp, wp, zero_point, kh, kw, strides[0], strides[1], dil[0], dil[1], _addr(y),
                                      mode, worker_count()):
            raise MemoryError("opml native qconv failed (out of memory or bad arguments)")
        return y


def qgemm(x: np.ndarray, w: PackedWeights, ep: Epilogue, isa: str | None = None) -> np.ndarray:
    """``epilogue(x @ w)`` for int8/uint8 ``x`` [M, K] (a one-off :class:`Gemm`)."""
    return Gemm(w, ep, x.dtype, isa)(x)


def _centered_fits(dtype: np.dtype, zero_point: int) -> bool:
    info = np.iinfo(dtype)
    return max(abs(int(info.min) - zero_point), abs(int(info.max) - zero_point)) <= 255


def qmatmul_supported(a_dtype: np.dtype, za: int, b_dtype: np.dtype, zb: int, out_dtype: np.dtype,
                      mult: int = 0, shift: int = 1, qmin: int = 0, qmax: int = 0) -> bool:
    """Whether :func:`qmatmul` takes these operands exactly (8-bit operands within 255 of their zero points)."""
    a_dtype, b_dtype, out_dtype = np.dtype(a_dtype), np.dtype(b_dtype), np.dtype(out_dtype)
    if _LIB is None or a_dtype not in (np.int8, np.uint8) or b_dtype not in (np.int8, np.uint8):
        return False
    if not (_centered_fits(a_dtype, za) and _centered_fits(b_dtype, zb)) or out_dtype not in _OUTKIND:
        return False
    if out_dtype == np.int32:
        return True
    info = np.iinfo(out_dtype)
    return 1 <= shift <= 62 and 0 <= mult < 1 << 31 and info.min <= qmin <= qmax <= info.max


def matmul(a_dtype: np.dtype, za: int, b_dtype: np.dtype, zb: int, out_dtype: np.dtype, mult: int = 0,
           shift: int = 1, zero_point: int = 0, qmin: int = 0, qmax: int = 0, isa: str | None = None
           ) -> MatMul | None:
    """A prepared :class:`MatMul`, or None when :func:`qmatmul_supported` says the native kernel cannot take it."""
    if not qmatmul_supported(a_dtype, za, b_dtype, zb, out_dtype, mult, shift, qmin, qmax):
        return None
    return MatMul(a_dtype, za, b_dtype, zb, out_dtype, mult, shift, zero_point, qmin, qmax, isa)


class MatMul:
    """A prepared ``requant((a - za) @ (b - zb))`` (or the raw int32 product) for two run-time 8-bit operands
    with ``np.matmul``'s broadcasting of the leading dimensions; see :func:`qmatmul_supported`."""

    def __init__(self, a_dtype: np.dtype, za: int, b_dtype: np.dtype, zb: int, out_dtype: np.dtype, mult: int = 0,
                 shift: int = 1, zero_point: int = 0, qmin: int = 0, qmax: int = 0, isa: str | None = None):
        if not qmatmul_supported(a_dtype, za, b_dtype, zb, out_dtype, mult, shift, qmin, qmax):
            raise ValueError("qmatmul: operands or requantization outside the exact native kernel's bounds")
        self.a_dtype, self.b_dtype, self.out_dtype = np.dtype(a_dtype), np.dtype(b_dtype), np.dtype(out_dtype)
        # the same requantization (offset 0) in every column of a panel
        ep = epilogue(PANEL, 0, mult, shift, zero_point, qmin, qmax, self.out_dtype)
        if ep is None:
            raise ValueError("qmatmul: requantization outside the exact native kernel's bounds")
        self.ep = ep
        self.cfg = np.array([int(self.a_dtype == np.int8), za, int(self.b_dtype == np.int8), zb, ep.span, ep.base,
                             _OUTKIND[self.out_dtype], _code(isa), *ep.addresses()], dtype=np.int64)
        self._cfg = _addr(self.cfg)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """The product, or None when K exceeds the exact bound or an operand is not 2-D or more (the
        caller's numpy path handles those)."""
        if a.dtype != self.a_dtype or b.dtype != self.b_dtype:
            raise ValueError(f"qmatmul: operands must be {self.a_dtype} and {self.b_dtype}, not {a.dtype}, {b.dtype}")
        assert _LIB is not None
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2] or a.shape[-1] > _LIB.opml_qgemm_max_k():
            return None
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        if a.shape[:-2] == b.shape[:-2]:  # the common case: no broadcasting
            batch = a.shape[:-2]
            a3, b3 = np.ascontiguousarray(a), np.ascontiguousarray(b)
        else:
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            a3 = np.ascontiguousarray(np.broadcast_to(a, batch + (m, k)))
            b3 = np.ascontiguousarray(np.broadcast_to(b, batch + (k, n)))
        count = math.prod(batch)
        y = np.empty(batch + (m, n), dtype=self.out_dtype)
        if count and m and n and _LIB.opml_qmatmul_cfg(self._cfg, _addr(a3), _addr(b3), count, m, k, n, _addr(y),
                                                       worker_count()):
            raise MemoryError("opml native qmatmul failed (out of memory or bad arguments)")
        return y


def qmatmul(a: np.ndarray, b: np.ndarray, za: int, zb: int, out_dtype: np.dtype, mult: int = 0, shift: int = 1,
            zero_point: int = 0, qmin: int = 0, qmax: int = 0, isa: str | None = None) -> np.ndarray | None:
    """One-off :class:`MatMul` of ``a`` and ``b``."""
    return MatMul(a.dtype, za, b.dtype, zb, out_dtype, mult, shift, zero_point, qmin, qmax, isa)(a, b)


def im2col_nhwc(xh: np.ndarray, kh: int, kw: int, strides: Sequence[int], dil: Sequence[int], oh: int, ow: int,
                c0: int, cg: int) -> np.ndarray:
    """Rows of the conv GEMM from a padded NHWC input ``xh`` (1-byte elements) with ``oh`` x ``ow`` output
    positions: ``[B * OH * OW, kh * kw * cg]``, each row the window's channels ``c0 : c0 + cg`` in (kernel
    row, kernel column, channel) order. The C code refuses windows that would read outside ``xh``."""
    assert _LIB is not None
    if xh.dtype.itemsize != 1 or xh.ndim != 4:
        raise ValueError(f"im2col: x must be a 4-D 1-byte array, not {xh.dtype} {xh.shape}")
    xh = np.ascontiguousarray(xh)
    b, h, w, c = xh.shape
    out = np.empty((b * oh * ow, kh * kw * cg), dtype=xh.dtype)
    if _LIB.opml_im2col_nhwc(_addr(xh), b, h, w, c, kh, kw, strides[0], strides[1], dil[0], dil[1], oh, ow, c0, cg,
                             _addr(out)):
        raise ValueError("im2col: window outside the input")
    return out
