"""opml's native kernels equal the exact integer formulas, on every instruction set.

The engine-level equality (engine == reference for every op) runs with the library loaded, in
tests/opml/test_engine_reference*.py; tests/opml/test_determinism.py reruns the example models with
the library off and with each instruction set forced. Here the GEMM is checked directly, at the edges of
its bounds (extreme operand values, K at the int32 limit, every shape remainder), against int64 numpy,
on each instruction set of :data:`opml.native.ISAS` this CPU runs (the others are skipped, naming the
missing CPU feature).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_child import child_hash

from opml import native
from opml.errors import NativeIsaError
from opml.intmath import clip_int32, requantize

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not native.available() and not os.environ.get("CI"),
                                reason=native.describe())


def test_library_is_built_in_ci() -> None:
    """make install builds the library; CI must not fall back to numpy silently."""
    assert native.available(), native.describe()




# Each instruction set of the library; skipped (with the reason shown by pytest -rs) where this CPU lacks it.
EACH_ISA = pytest.mark.parametrize("isa", [
    pytest.param(name, marks=pytest.mark.skipif(name not in native.cpu_isas(),
                                                reason=f"CPU lacks {native.CPU_FLAGS[name]}"))
    for name in native.ISAS])


def test_the_best_instruction_set_is_used_by_default() -> None:
    """Without OPML_NATIVE_ISA the library runs the fastest set the CPU has."""
    found = native.cpu_isas()
    assert found[:1] == ("generic",) and set(found) <= set(native.ISAS)
    best = next(name for name in ("amx", "avx512vnni", "avxvnni", "avx2", "generic") if name in found)
    if not os.environ.get("OPML_NATIVE_ISA"):
        assert native.isa_name() == best
    assert f"loaded ({native.isa_name()})" in native.describe()


@dataclass
class Params:
    off: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    zp: int
    qmin: int
    qmax: int
    dtype: type


def _expected(x: np.ndarray, w: np.ndarray, p: Params) -> np.ndarray:
    acc = x.astype(np.int64) @ w.astype(np.int64) + p.off
    if p.dtype == np.int32:
        return clip_int32(acc).astype(np.int32)
    return requantize(acc, p.mult, p.shift, p.zp, p.qmin, p.qmax, p.dtype)


def _epilogue(n: int, p: Params) -> native.Epilogue:
    ep = native.epilogue(n, p.off, p.mult, p.shift, p.zp, p.qmin, p.qmax, p.dtype)
    assert ep is not None
    return ep


def _case(rng: np.random.Generator, m: int, k: int, n: int, xdt: type, wdt: type, out: type,
          extreme: bool = False, small: bool = False) -> tuple[np.ndarray, np.ndarray, Params]:
    """Random operands and epilogue constants; ``small``: int8 weights within +-64 (the u8 x s8 kernel)."""
    xi = np.iinfo(xdt)
    wl = 255 if wdt == np.int16 else (64 if small else 128)
    wh = 255 if wdt == np.int16 else (64 if small else 127)
    if extreme:  # the largest products: every |x| and |w| at its maximum
        x = rng.choice(np.array([xi.min, xi.max], dtype=np.int64), size=(m, k)).astype(xdt)
        w = rng.choice(np.array([-wl, wh]), size=(k, n)).astype(wdt)
    else:
        x = rng.integers(xi.min, xi.max + 1, size=(m, k)).astype(xdt)
        w = rng.integers(-wl, wh + 1, size=(k, n)).astype(wdt)
    off = rng.integers(-(1 << 33), 1 << 33, size=n)
    mult = rng.integers(0, 1 << 31, size=n)
    shift = rng.integers(1, 63, size=n)
    mult[: n // 3] = rng.integers(0, 1 << 12, size=n // 3)  # multipliers near and above 1 as well
    shift[: n // 3] = rng.integers(1, 16, size=n // 3)
    if out == np.int32:
        return x, w, Params(off, mult, shift, 0, 0, 0, np.int32)
    lo, hi = int(np.iinfo(out).min), int(np.iinfo(out).max)
    qmin = int(rng.integers(lo, hi + 1))
    zp = int(rng.integers(lo, hi + 1))
    return x, w, Params(off, mult, shift, zp, qmin, int(rng.integers(qmin, hi + 1)), out)


def _expected_kind(w: np.ndarray, isa: str) -> int:
    """0: int16 pairs; 1: uint8 x int8 bytes for |w| <= 64; 2: the same for any int8 w on a VNNI set."""
    if w.dtype != np.int8:
        return 0
    if not w.size or np.abs(w.astype(int)).max() <= native.U8S8_MAX_WEIGHT:
        return 1
    return 2 if isa in native.VNNI_ISAS else 0


@EACH_ISA
@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 20), k=st.integers(0, 70), n=st.integers(0, 40),
       xdt=st.sampled_from([np.int8, np.uint8]), wdt=st.sampled_from([np.int8, np.int16]),
       out=st.sampled_from([np.int32, np.int8, np.uint8, np.int16]), extreme=st.booleans(), small=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_qgemm_equals_int64(isa: str, m: int, k: int, n: int, xdt: type, wdt: type, out: type, extreme: bool,
                            small: bool, seed: int) -> None:
    x, w, p = _case(np.random.default_rng(seed), m, k, n, xdt, wdt, out, extreme, small)
    packed = native.pack_weights(w, isa)
    assert packed is not None
    assert packed.kind == _expected_kind(w, isa)
    got = native.qgemm(x, packed, _epilogue(n, p), isa)
    assert got.dtype == np.dtype(out) and got.shape == (m, n)
    np.testing.assert_array_equal(got, _expected(x, w, p))


@EACH_ISA
@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 300), n=st.integers(1, 70), xdt=st.sampled_from([np.int8, np.uint8]),
       out=st.sampled_from([np.int32, np.int8]), seed=st.integers(0, 2**32 - 1))
def test_full_int8_weights_on_every_row_and_column_remainder(isa: str, m: int, k: int, n: int, xdt: type, out: type,
                                                             seed: int) -> None:
    """8-bit weights (the VNNI kernels' layout where the set has VNNI): row tiles of 1-8 rows, one or two
    16-column panels, K not a multiple of 4, weights reaching -128 and 127."""
    x, w, p = _case(np.random.default_rng(seed), m, k, n, xdt, np.int8, out, extreme=seed % 3 == 0)
    w[0, 0], w[-1, -1] = -128, 127
    packed = native.pack_weights(w, isa)
    assert packed is not None and packed.kind == _expected_kind(w, isa)
    np.testing.assert_array_equal(native.qgemm(x, packed, _epilogue(n, p), isa), _expected(x, w, p))


def _gemm_giving(acc: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 x [1, K] and int16 w [K, n] with x @ w == acc exactly (|acc| <= 2.1e9)."""
    qs = [a // 65025 for a in acc]
    k = max(abs(q) for q in qs) + 2
    x = np.full((1, k), 255, dtype=np.uint8)
    x[0, -1] = 1
    w = np.zeros((k, len(acc)), dtype=np.int16)
    for c, (a, q) in enumerate(zip(acc, qs, strict=True)):
        r = a - q * 65025  # in [0, 65025)
        w[: abs(q), c] = 255 if q > 0 else -255
        w[-2, c], w[-1, c] = r // 255, r % 255
    return x, w


@EACH_ISA
@settings(max_examples=200, deadline=None)
@given(off=st.integers(-(1 << 39), 1 << 39), m=st.integers(0, (1 << 31) - 1), s=st.integers(1, 62),
       zp=st.integers(-128, 127), q=st.tuples(st.integers(-128, 127), st.integers(-128, 127)),
       acc=st.lists(st.integers(-2_100_000_000, 2_100_000_000), min_size=1, max_size=6))
def test_requant_epilogue_equals_the_spec(isa: str, off: int, m: int, s: int, zp: int, q: tuple[int, int],
                                          acc: list[int]) -> None:
    """The epilogue's rewrite (clamps, wrapped constant) equals the spec for any accumulator and constants,
    in each instruction set's version of it (portable, AVX2, AVX-512)."""
    qmin, qmax = min(q), max(q)
    n = len(acc)
    ep = native.epilogue(n, off, m, s, zp, qmin, qmax, np.int8)
    assert ep is not None, f"no native epilogue for off={off} m={m} s={s} zp={zp} q=({qmin}, {qmax})"
    x, w = _gemm_giving(acc)
    packed = native.pack_weights(w, isa)
    assert packed is not None
    assert (x.astype(np.int64) @ w.astype(np.int64)).tolist() == [acc]
    want = requantize(np.array([acc], dtype=np.int64) + off, m, s, zp, qmin, qmax, np.int8)
    np.testing.assert_array_equal(native.qgemm(x, packed, ep, isa), want)


@EACH_ISA
def test_qgemm_at_the_int32_limit(isa: str) -> None:
    """K at the library's maximum with every product at +-65025: partial sums reach about +-2^31."""
    kmax = 32768
    x = np.full((7, kmax), 255, dtype=np.uint8)
    w = np.full((kmax, 17), 255, dtype=np.int16)
    w[:, 1::2] = -255
    p = Params(np.zeros(17, dtype=np.int64), np.zeros(17), np.zeros(17), 0, 0, 0, np.int32)
    packed = native.pack_weights(w, isa)
    assert packed is not None
    got = native.qgemm(x, packed, _epilogue(17, p), isa)
    np.testing.assert_array_equal(got, _expected(x, w, p))
    assert got[0, 0] == 32768 * 65025 and got[0, 1] == -32768 * 65025


@EACH_ISA
def test_u8s8_kernel_at_the_int32_limit(isa: str) -> None:
    """The uint8 x int8 kernel with every product at its largest (x = 255 or, shifted, -128; w = +-64) and
    K at the maximum: pairs reach +-32640 (VPMADDUBSW's int16 holds them) and sums ~2^29."""
    kmax = 32768
    for xdt, xv in ((np.uint8, 255), (np.int8, -128), (np.int8, 127)):
        x = np.full((5, kmax), xv, dtype=xdt)
        w = np.full((kmax, 18), 64, dtype=np.int8)
        w[:, 1::2] = -64
        packed = native.pack_weights(w, isa)
        assert packed is not None and packed.kind == 1
        p = Params(np.zeros(18, dtype=np.int64), np.zeros(18), np.zeros(18), 0, 0, 0, np.int32)
        np.testing.assert_array_equal(native.qgemm(x, packed, _epilogue(18, p), isa), _expected(x, w, p))


@EACH_ISA
def test_full_int8_weights_at_the_int32_limit(isa: str) -> None:
    """8-bit weights at -128 and 127 with K at the maximum, for every input extreme: on a VNNI set the
    shifted sum (x + 128) w reaches 32768 * 255 * -128 = -1069547520 (VPDPBUSD adds in int32 without
    saturation) and the signed-input correction 128 * colsum(w) -2^29; elsewhere the int16-pair kernel."""
    kmax = 32768
    for xdt, xv in ((np.uint8, 255), (np.uint8, 0), (np.int8, -128), (np.int8, 127)):
        x = np.full((9, kmax), xv, dtype=xdt)
        x[1] = 255 if xdt == np.uint8 else 127
        x[2, ::2] = 0 if xdt == np.uint8 else -128
        w = np.full((kmax, 35), -128, dtype=np.int8)
        w[:, 1::2] = 127
        packed = native.pack_weights(w, isa)
        assert packed is not None and packed.kind == _expected_kind(w, isa)
        p = Params(np.zeros(35, dtype=np.int64), np.zeros(35), np.zeros(35), 0, 0, 0, np.int32)
        got = native.qgemm(x, packed, _epilogue(35, p), isa)
        np.testing.assert_array_equal(got, _expected(x, w, p))
        assert got[1, 0] == kmax * -128 * (255 if xdt == np.uint8 else 127)


# The AMX-INT8 path (isa amx: 16 x 16 TDPBUSD tiles in 32-row x 32-column blocks, K mod 64 and row blocks of
# fewer than 4 rows on AVX-512 VNNI); skipped, with the reason, where the CPU or the kernel does not offer it.
NEEDS_AMX = pytest.mark.skipif("amx" not in native.cpu_isas(),
                               reason=native.amx_status() if native.available() else native.describe())


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo (Linux)")
def test_amx_is_offered_exactly_where_the_cpu_has_it() -> None:
    """The library's probe (CPUID, XCR0, arch_prctl permission) agrees with the kernel's flags: on a Linux CPU
    with amx_int8, amx_tile and avx512_vnni the set is offered (and the default); elsewhere it is not."""
    flags = _cpu_flags()
    has = {"amx_int8", "amx_tile", "avx512_vnni", "avx512f", "avx512bw", "avx512vl"} <= flags
    assert ("amx" in native.cpu_isas()) == has, (native.amx_status(), sorted(f for f in flags if "amx" in f))
    if has:
        assert native.amx_status() == "usable"
        if not os.environ.get("OPML_NATIVE_ISA"):
            assert native.isa_name() == "amx"


def test_library_builds_without_amx(tmp_path: Path) -> None:
    """scripts/build_native.sh with OPML_CFLAGS=-DOPML_NO_AMX (what a compiler without AMX intrinsics, or
    another OS, gets): the library builds, says why AMX is missing and offers every other set as before."""
    import ctypes
    import shutil

    assert shutil.which(os.environ.get("CC", "gcc")), "the C compiler that built the library is missing"
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "opml" / "native", tree / "opml" / "native", ignore=shutil.ignore_patterns("*.so", "*.py"))
    shutil.copytree(ROOT / "scripts", tree / "scripts", ignore=shutil.ignore_patterns("bench", "*.py"))
    proc = subprocess.run(["bash", str(tree / "scripts" / "build_native.sh")], capture_output=True, text=True,
                          env={**os.environ, "OPML_CFLAGS": "-DOPML_NO_AMX"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(tree / "opml" / "native" / "libopml_native.so"))
    assert lib.opml_native_amx_status() == 1 and native.AMX_STATUS[1].startswith("not built in")
    mask = lib.opml_native_isa_mask()
    assert not mask >> native.ISAS.index("amx") & 1
    assert tuple(n for c, n in enumerate(native.ISAS) if mask >> c & 1) == tuple(i for i in native.cpu_isas()
                                                                               if i != "amx")


AMX_ROWS = [1, 3, 4, 5, 15, 16, 17, 20, 31, 32, 33, 35, 36, 48, 64, 67]


@NEEDS_AMX
@pytest.mark.parametrize("k", [60, 64, 65, 100, 128, 383, 384])
def test_amx_every_row_block_and_k_tail(k: int) -> None:
    """Row blocks of 1-32 rows (1 or 2 A tiles, or under 4 rows the AVX-512 tile), 1 or 2 panels, K below
    64 (no tile step), a multiple of 64 (no tail) or not (the AVX-512 tail): amx == generic == int64."""
    rng = np.random.default_rng(k)
    for m in AMX_ROWS:
        for n, xdt, out in ((17, np.int8, np.int32), (48, np.uint8, np.int8), (5, np.int8, np.uint8)):
            x, w, p = _case(rng, m, k, n, xdt, np.int8, out, extreme=m % 2 == 0)
            w[0, 0], w[-1, -1] = -128, 127
            ep = _epilogue(n, p)
            packed = native.pack_weights(w, "amx")
            assert packed is not None and packed.kind == 2
            got = native.qgemm(x, packed, ep, "amx")
            np.testing.assert_array_equal(got, _expected(x, w, p), err_msg=f"m={m} k={k} n={n}")
            generic = native.pack_weights(w, "generic")
            assert generic is not None
            np.testing.assert_array_equal(got, native.qgemm(x, generic, ep, "generic"))


@NEEDS_AMX
@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 100), k=st.integers(1, 700), n=st.integers(1, 80), xdt=st.sampled_from([np.int8, np.uint8]),
       out=st.sampled_from([np.int32, np.int8, np.uint8, np.int16]), small=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_amx_random_shapes(m: int, k: int, n: int, xdt: type, out: type, small: bool, seed: int) -> None:
    x, w, p = _case(np.random.default_rng(seed), m, k, n, xdt, np.int8, out, extreme=seed % 3 == 0, small=small)
    packed = native.pack_weights(w, "amx")
    assert packed is not None
    np.testing.assert_array_equal(native.qgemm(x, packed, _epilogue(n, p), "amx"), _expected(x, w, p))


@NEEDS_AMX
@pytest.mark.parametrize("k", [32768, 32768 - 40])
def test_amx_at_the_int32_limit(k: int) -> None:
    """TDPBUSD accumulates in int32 without saturation: with K at (or near, leaving a VNNI tail) the maximum,
    every weight at -128 / 127 and every input extreme, the shifted sums reach -32768 * 255 * 128 and the
    result is exact; 40 rows make two row chunks (32 rows of 32 KiB, then 8: one A tile)."""
    for xdt, xv in ((np.uint8, 255), (np.uint8, 0), (np.int8, -128), (np.int8, 127)):
        x = np.full((40, k), xv, dtype=xdt)
        x[1] = 255 if xdt == np.uint8 else 127
        x[2, ::2] = 0 if xdt == np.uint8 else -128
        x[35] = x[1]
        w = np.full((k, 35), -128, dtype=np.int8)
        w[:, 1::2] = 127
        packed = native.pack_weights(w, "amx")
        assert packed is not None and packed.kind == 2
        p = Params(np.zeros(35, dtype=np.int64), np.zeros(35), np.zeros(35), 0, 0, 0, np.int32)
        got = native.qgemm(x, packed, _epilogue(35, p), "amx")
        np.testing.assert_array_equal(got, _expected(x, w, p))
        assert got[35, 0] == got[1, 0] == k * -128 * (255 if xdt == np.uint8 else 127)


@NEEDS_AMX
def test_amx_threads_agree() -> None:
    """Column panels split over 1-5 threads (each configures its own tiles) give the same bytes."""
    from opml.parallel import set_worker_count

    rng = np.random.default_rng(3)
    x, w, p = _case(rng, 70, 1000, 300, np.int8, np.int8, np.int8)
    packed = native.pack_weights(w, "amx")
    assert packed is not None
    results = []
    try:
        for t in (1, 2, 3, 5):
            set_worker_count(t)
            results.append(native.qgemm(x, packed, _epilogue(300, p), "amx").tobytes())
    finally:
        set_worker_count(None)
    assert all(r == results[0] for r in results)
    np.testing.assert_array_equal(np.frombuffer(results[0], dtype=np.int8).reshape(70, 300), _expected(x, w, p))


def test_vnni_weights_refuse_the_avx2_kernel() -> None:
    """int8 weights beyond +-64 packed for a VNNI set (kind 2) cannot run on AVX2's VPMADDUBSW tile, whose
    int16 pairs would saturate: the Python wrapper and the C entry point both refuse."""
    vnni = [name for name in native.cpu_isas() if name in native.VNNI_ISAS]
    if not vnni or "avx2" not in native.cpu_isas():
        pytest.skip("CPU lacks avx512_vnni and avx_vnni")
    w = np.full((8, 3), -128, dtype=np.int8)
    packed = native.pack_weights(w, vnni[0])
    ep = native.epilogue(3, np.zeros(3), 0, 0, 0, 0, 0, np.int32)
    assert packed is not None and packed.kind == 2 and ep is not None
    with pytest.raises(ValueError, match="AVX2"):
        native.Gemm(packed, ep, np.dtype(np.int8), "avx2")
    gemm = native.Gemm(packed, ep, np.dtype(np.int8), vnni[0])
    gemm.cfg[7] = native.ISAS.index("avx2")  # bypass the wrapper: the C check alone
    with pytest.raises(MemoryError, match="bad arguments"):
        gemm(np.ones((2, 8), dtype=np.int8))
    gemm.cfg[7] = native.ISAS.index("generic")  # the portable tile is exact for any int8 weight
    np.testing.assert_array_equal(gemm(np.ones((2, 8), dtype=np.int8)), np.full((2, 3), -1024, dtype=np.int32))


def test_pack_refuses_what_the_kernel_cannot_take_exactly() -> None:
    assert native.pack_weights(np.full((4, 4), 256, dtype=np.int16)) is None  # |w| > 255
    assert native.pack_weights(np.zeros((32769, 2), dtype=np.int8)) is None  # K over the int32 bound
    assert native.pack_weights(np.zeros((4, 4), dtype=np.int32)) is None
    assert native.epilogue(4, np.zeros(4), 1, 0, 0, -128, 127, np.int8) is None  # shift 0
    assert native.epilogue(4, np.zeros(4), 1, 5, 0, -129, 127, np.int8) is None  # qmin outside int8
    assert native.epilogue(4, np.zeros(4), 1 << 31, 5, 0, -128, 127, np.int8) is None  # mult too large
    assert native.epilogue(4, np.zeros(4), 1, 5, 0, -128, 127, np.int64) is None  # no int64 output
    assert native.epilogue(4, np.zeros(4), 1, 5, 0, -40000, 127, np.int16) is None  # qmin outside int16


def test_qgemm_rejects_a_wrong_input() -> None:
    packed = native.pack_weights(np.ones((8, 3), dtype=np.int8))
    ep = native.epilogue(3, np.zeros(3), 0, 0, 0, 0, 0, np.int32)
    assert packed is not None and ep is not None
    with pytest.raises(ValueError, match="int8/uint8"):
        native.qgemm(np.ones((2, 7), dtype=np.int8), packed, ep)
    with pytest.raises(ValueError, match="int8/uint8"):
        native.qgemm(np.ones((2, 8), dtype=np.int16), packed, ep)


@EACH_ISA
@settings(max_examples=60, deadline=None)
@given(shapes=st.sampled_from([((3, 5, 7), (3, 7, 4)), ((2, 1, 6, 33), (1, 4, 33, 18)), ((5, 9), (2, 9, 17)),
                               ((1, 1), (1, 1)), ((2, 0, 3), (2, 3, 5)), ((4, 12, 32), (4, 32, 12)),
                               ((3, 32, 32), (3, 32, 32)), ((2, 9, 31), (2, 31, 48))]),
       adt=st.sampled_from([np.int8, np.uint8]), bdt=st.sampled_from([np.int8, np.uint8]),
       out=st.sampled_from([np.int32, np.int8, np.uint8]), seed=st.integers(0, 2**32 - 1))
def test_qmatmul_equals_int64(isa: str, shapes: tuple, adt: type, bdt: type, out: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ai, bi = np.iinfo(adt), np.iinfo(bdt)
    a = rng.integers(ai.min, ai.max + 1, size=shapes[0]).astype(adt)
    b = rng.integers(bi.min, bi.max + 1, size=shapes[1]).astype(bdt)
    za = int(rng.integers(ai.min, ai.max + 1))
    zb = int(rng.integers(bi.min, bi.max + 1))
    acc = np.matmul(a.astype(np.int64) - za, b.astype(np.int64) - zb)
    if out == np.int32:
        assert native.qmatmul_supported(adt, za, bdt, zb, out)
        got = native.qmatmul(a, b, za, zb, out, isa=isa)
        want = clip_int32(acc).astype(np.int32)
    else:
        oi = np.iinfo(out)
        mult, shift = int(rng.integers(0, 1 << 31)), int(rng.integers(1, 63))
        if shift > 40:
            mult, shift = int(rng.integers(0, 1 << 16)), int(rng.integers(1, 25))
        zp, qmin = int(rng.integers(oi.min, oi.max + 1)), int(rng.integers(oi.min, oi.max + 1))
        qmax = int(rng.integers(qmin, oi.max + 1))
        assert native.qmatmul_supported(adt, za, bdt, zb, out, mult, shift, qmin, qmax)
        got = native.qmatmul(a, b, za, zb, out, mult, shift, zp, qmin, qmax, isa)
        want = requantize(acc, mult, shift, zp, qmin, qmax, out)
    assert got is not None and got.dtype == np.dtype(out)
    np.testing.assert_array_equal(got, want)


def test_qmatmul_refuses_operands_too_far_from_their_zero_point() -> None:
    assert not native.qmatmul_supported(np.int8, 128, np.int8, 0, np.int32)  # |-128 - 128| = 256
    assert not native.qmatmul_supported(np.int16, 0, np.int8, 0, np.int32)
    assert not native.qmatmul_supported(np.int8, 0, np.int8, 0, np.int8, 1, 0, -128, 127)  # shift 0


# The same random GEMMs in subprocesses with the portable kernels and with one thread.
CHILD = r"""
import hashlib, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_native import _case
from opml import native
h = hashlib.sha256()
rng = np.random.default_rng(7)
for m, k, n in [(1, 384, 1536), (32, 1536, 384), (37, 97, 45), (6, 2, 16)]:
    for xdt in (np.int8, np.uint8):
        for out, small in ((np.int32, False), (np.int8, False), (np.uint8, True), (np.int16, True), (np.int8, True)):
            x, w, p = _case(rng, m, k, n, xdt, np.int8, out, small=small)
            ep = native.epilogue(n, p.off, p.mult, p.shift, p.zp, p.qmin, p.qmax, p.dtype)
            h.update(native.qgemm(x, native.pack_weights(w), ep).tobytes())
print(native.describe())
print("HASH " + h.hexdigest())
"""


def _child_hash(env: dict[str, str]) -> tuple[str, str]:
    return child_hash(CHILD, env, timeout=120)


def test_instruction_sets_and_threads_agree() -> None:
    """OPML_NATIVE_ISA forces each set this CPU runs (the child reports it), and all give the same bytes."""
    base_desc, base = _child_hash({"OPML_THREADS": "2"})
    for name in native.cpu_isas():
        desc, got = _child_hash({"OPML_NATIVE_ISA": name, "OPML_THREADS": "1"})
        assert f"loaded ({name})" in desc
        assert got == base, f"{desc} != {base_desc}"


def _child_error(env: dict[str, str]) -> str:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.run([sys.executable, "-c", "import opml.native"], env=full, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0, f"importing opml.native with {env} succeeded"
    return proc.stderr


def test_a_forced_instruction_set_the_cpu_lacks_is_refused() -> None:
    lacking = [name for name in native.ISAS if name not in native.cpu_isas()]
    if not lacking:
        pytest.skip("CPU runs every instruction set of the library")
    for name in lacking:
        err = _child_error({"OPML_NATIVE_ISA": name})
        assert "NativeIsaError" in err, err
        # amx can also be missing for a reason other than the CPU (compiler, kernel permission): named as such
        why = native.amx_status() if name == "amx" else f"this CPU lacks {native.CPU_FLAGS[name]}"
        assert f"OPML_NATIVE_ISA={name}: {why}" in err, err
        with pytest.raises(NativeIsaError, match=re.escape(why)):
            native.pack_weights(np.ones((4, 4), dtype=np.int8), name)


def test_an_unknown_instruction_set_is_refused() -> None:
    err = _child_error({"OPML_NATIVE_ISA": "avx512"})
    assert "NativeIsaError" in err and "'avx512' is not an instruction set" in err, err
    with pytest.raises(NativeIsaError, match="not an instruction set"):
        native.isa_code("sse2")


def test_thread_counts_agree_in_process() -> None:
    """The pool's split (1, 2, 3, 5 threads) gives the same bytes, for GEMMs and batched matmuls."""
    from opml.parallel import set_worker_count

    rng = np.random.default_rng(11)
    x, w, p = _case(rng, 64, 300, 200, np.uint8, np.int8, np.int8)
    packed = native.pack_weights(w)
    assert packed is not None
    a = rng.integers(-128, 128, size=(7, 5, 33, 40)).astype(np.int8)
    b = rng.integers(0, 256, size=(7, 5, 40, 29)).astype(np.uint8)
    results = []
    try:
        for n in (1, 2, 3, 5):
            set_worker_count(n)
            results.append((native.qgemm(x, packed, _epilogue(200, p)).tobytes(),
                            native.qmatmul(a, b, 3, 100, np.int32).tobytes()))  # type: ignore[union-attr]
    finally:
        set_worker_count(None)
    assert all(r == results[0] for r in results)
    np.testing.assert_array_equal(np.frombuffer(results[0][0], dtype=np.int8).reshape(64, 200), _expected(x, w, p))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_pool_works_in_a_forked_child() -> None:
    """A child forked after the pool started (the node's workers, multiprocessing) runs parallel calls
    instead of waiting forever on threads it does not have."""
    from opml.parallel import set_worker_count

    rng = np.random.default_rng(5)
    x, w, p = _case(rng, 48, 256, 160, np.int8, np.int8, np.uint8)
    packed = native.pack_weights(w)
    assert packed is not None
    set_worker_count(2)
    try:
        want = native.qgemm(x, packed, _epilogue(160, p))  # starts the pool's worker in this process
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if the parallel call returns the same bytes
            code = 1
            try:
                code = 0 if native.qgemm(x, packed, _epilogue(160, p)).tobytes() == want.tobytes() else 2
            finally:
                os._exit(code)
        deadline = 60
        import time

        for _ in range(deadline * 10):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in a parallel native call")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        set_worker_count(None)
