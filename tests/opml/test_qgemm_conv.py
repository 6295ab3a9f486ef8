"""The native dense conv (``qconv.c`` through :meth:`opml.native.Gemm.conv_nchw`) equals the int64 conv.

It has two orientations (pixels as the GEMM's columns, with the activations packed from NCHW and the weights
broadcast, or as AMX A tiles; pixels as rows through ``opml_qgemm_cfg``) and splits over threads two ways
(pixel panels, or 8-channel tiles); every combination, on every instruction set this CPU runs, must give the
int64 formula's bytes: the conv of the zero-point-padded input, plus the offset, requantized per channel.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opml import native
from opml.intmath import clip_int32, requantize
from opml.parallel import set_worker_count

pytestmark = pytest.mark.skipif(not native.available() and not os.environ.get("CI"), reason=native.describe())

EACH_ISA = pytest.mark.parametrize("isa", [
    pytest.param(name, marks=pytest.mark.skipif(name not in native.cpu_isas(),
                                                reason=f"CPU lacks {native.CPU_FLAGS[name]}"))
    for name in native.ISAS])

COLUMNS, ROWS = 1, 2  # conv_nchw's forced orientations (0 chooses)


def _reference(x: np.ndarray, w: np.ndarray, pads: tuple[int, ...], strides: tuple[int, int], dil: tuple[int, int],
               zp: int) -> np.ndarray:
    """int64 conv of x [B, C, H, W] padded with zp by w [M, C, kh, kw]: [B, M, OH, OW]."""
    b, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    xp = np.full((b, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), zp, dtype=np.int64)
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    oh = (xp.shape[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (xp.shape[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    acc = np.zeros((b, w.shape[0], oh, ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            win = xp[:, :, i * dil[0]:i * dil[0] + (oh - 1) * strides[0] + 1:strides[0],
                     j * dil[1]:j * dil[1] + (ow - 1) * strides[1] + 1:strides[1]]
            acc += np.einsum("bchw,mc->bmhw", win, w[:, :, i, j].astype(np.int64))
    return acc


class Case:
    """A random conv: input, weights, geometry and per-channel epilogue (multipliers below and above 1)."""

    def __init__(self, rng: np.random.Generator, b: int, c: int, h: int, w: int, m: int, kh: int, kw: int,
                 strides: tuple[int, int], dil: tuple[int, int], pads: tuple[int, ...], xdt: type, wbits: int,
                 out: type, extreme: bool = False):
        xi = np.iinfo(xdt)
        wmax = {7: 64, 8: 127, 9: 255}[wbits]
        wdt = np.int16 if wbits == 9 else np.int8
        if extreme:
            self.x = rng.choice(np.array([xi.min, xi.max]), size=(b, c, h, w)).astype(xdt)
            self.w = rng.choice(np.array([-wmax - (wbits == 8), wmax]), size=(m, c, kh, kw)).astype(wdt)
        else:
            self.x = rng.integers(xi.min, xi.max + 1, size=(b, c, h, w)).astype(xdt)
            self.w = rng.integers(-wmax, wmax + 1, size=(m, c, kh, kw)).astype(wdt)
        self.geometry = (kh, kw, pads, strides, dil)
        self.zp = int(rng.integers(xi.min, xi.max + 1))
        self.off = rng.integers(-(1 << 33), 1 << 33, size=m)
        self.mult = rng.integers(0, 1 << 31, size=m)
        self.shift = rng.integers(1, 63, size=m)
        self.mult[: m // 3] = rng.integers(0, 1 << 12, size=m // 3)  # multipliers near and above 1 as well
        self.shift[: m // 3] = rng.integers(1, 16, size=m // 3)
        self.out = np.dtype(out)
        if self.out == np.int32:
            self.q = (0, 0, 0)
        else:
            lo, hi = int(np.iinfo(out).min), int(np.iinfo(out).max)
            qmin = int(rng.integers(lo, hi + 1))
            self.q = (int(rng.integers(lo, hi + 1)), qmin, int(rng.integers(qmin, hi + 1)))

    def expected(self) -> np.ndarray:
        kh, kw, pads, strides, dil = self.geometry
        acc = _reference(self.x, self.w, pads, strides, dil, self.zp) + self.off.reshape(1, -1, 1, 1)
        if self.out == np.int32:
            return clip_int32(acc).astype(np.int32)
        zp, qmin, qmax = self.q
        return requantize(acc, self.mult.reshape(1, -1, 1, 1), self.shift.reshape(1, -1, 1, 1), zp, qmin, qmax,
                          self.out)

    def gemm(self, isa: str, rows: bool = True) -> native.Gemm:
        """The conv's GEMM; ``rows``: with the weight copy of the AMX tiles (amx only; without it the VNNI tile
        runs the pixels-as-columns orientation there)."""
        kh, kw = self.geometry[:2]
        m, c = self.w.shape[:2]
        packed = native.pack_weights(self.w.transpose(2, 3, 1, 0).reshape(kh * kw * c, m), isa, rows=rows)
        assert packed is not None
        assert (packed.rows is not None) == (rows and isa == "amx" and packed.kind in (1, 2))
        ep = native.epilogue(m, self.off, self.mult, self.shift, *self.q, self.out)
        assert packed is not None and ep is not None
        return native.Gemm(packed, ep, self.x.dtype, isa)

    def run(self, gemm: native.Gemm, mode: int) -> np.ndarray:
        kh, kw, pads, strides, dil = self.geometry
        return gemm.conv_nchw(self.x, kh, kw, pads, strides, dil, self.zp, mode)


def _modes(gemm: native.Gemm) -> list[int]:
    """The orientations a GEMM can take: pixels as columns needs the uint8 x int8 packing."""
    return [0, ROWS] + ([COLUMNS] if gemm.w.kind in (1, 2) else [])


@EACH_ISA
@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), c=st.integers(1, 40), h=st.integers(1, 14), w=st.integers(1, 40), m=st.integers(1, 40),
       kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 2), sw=st.integers(1, 2), dh=st.integers(1, 2),
       dw=st.integers(1, 2), pads=st.tuples(*[st.integers(0, 2)] * 4), xdt=st.sampled_from([np.int8, np.uint8]),
       wbits=st.sampled_from([7, 8, 9]), out=st.sampled_from([np.int32, np.int8, np.uint8, np.int16]),
       extreme=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_conv_equals_int64(isa: str, b: int, c: int, h: int, w: int, m: int, kh: int, kw: int, sh: int, sw: int,
                           dh: int, dw: int, pads: tuple[int, ...], xdt: type, wbits: int, out: type, extreme: bool,
                           seed: int) -> None:
    if h + pads[0] + pads[2] < (kh - 1) * dh + 1 or w + pads[1] + pads[3] < (kw - 1) * dw + 1:
        return  # the input is smaller than the kernel (test_conv_nchw_rejects_a_wrong_input)
    case = Case(np.random.default_rng(seed), b, c, h, w, m, kh, kw, (sh, sw), (dh, dw), pads, xdt, wbits, out,
                extreme)
    want = case.expected()
    for gemm in [case.gemm(isa)] + ([case.gemm(isa, rows=False)] if isa == "amx" else []):
        for mode in _modes(gemm):
            got = case.run(gemm, mode)
            assert got.dtype == case.out and got.shape == want.shape
            np.testing.assert_array_equal(got, want, err_msg=f"mode {mode}")


@EACH_ISA
@pytest.mark.parametrize("shape", [
    (2, 16, 48, 48, 96, 1),  # many pixel panels: the threads split them
    (1, 64, 4, 5, 300, 3),   # 20 pixels (two panels), 300 channels: the threads split 8-channel tiles
    (1, 40, 7, 7, 70, 1),    # 49 pixels, 70 channels: 32-channel AMX blocks across a channel split
    (3, 672, 1, 1, 28, 1),   # one pixel (an SE block's conv): the GEMM on the NCHW arrays as they are
    (1, 24, 17, 9, 40, 3),   # a partial last panel and a partial last channel tile
])
def test_orientations_and_thread_splits_agree(isa: str, shape: tuple[int, ...]) -> None:
    b, c, h, w, m, k = shape
    case = Case(np.random.default_rng(sum(shape)), b, c, h, w, m, k, k, (1, 1), (1, 1), (k // 2,) * 4, np.int8, 8,
                np.int8)
    want = case.expected()
    try:
        for gemm in [case.gemm(isa)] + ([case.gemm(isa, rows=False)] if isa == "amx" else []):
            for threads in (1, 2, 3):
                set_worker_count(threads)
                for mode in _modes(gemm):
                    np.testing.assert_array_equal(case.run(gemm, mode), want, err_msg=f"{threads} threads, mode {mode}")
    finally:
        set_worker_count(None)


@EACH_ISA
def test_conv_at_the_int32_limit(isa: str) -> None:
    """K = 3 * 3 * 3640 = 32760 products of uint8 255 by int8 -128 / 127: raw sums near -+2^30 (and the shifted
    uint8 x int8 sums near 2^31), as int32 outputs, in both orientations."""
    c = 3640
    x = np.full((1, c, 4, 4), 255, dtype=np.uint8)
    w = np.full((17, c, 3, 3), 127, dtype=np.int8)
    w[1::2] = -128
    if isa == "avx2":
        w = np.clip(w, -64, 64)
    packed = native.pack_weights(w.transpose(2, 3, 1, 0).reshape(9 * c, 17), isa, rows=True)
    ep = native.epilogue(17, np.zeros(17, dtype=np.int64), 0, 0, 0, 0, 0, np.int32)
    assert packed is not None and ep is not None
    gemm = native.Gemm(packed, ep, np.dtype(np.uint8), isa)
    want = clip_int32(_reference(x, w, (0, 0, 0, 0), (1, 1), (1, 1), 0)).astype(np.int32)
    for mode in _modes(gemm):
        np.testing.assert_array_equal(gemm.conv_nchw(x, 3, 3, (0, 0, 0, 0), (1, 1), (1, 1), 0, mode), want)
    if isa != "avx2":
        assert want[0, 1, 0, 0] == -128 * 255 * 9 * c


def test_conv_nchw_rejects_a_wrong_input() -> None:
    case = Case(np.random.default_rng(1), 1, 4, 5, 5, 3, 3, 3, (1, 1), (1, 1), (0, 0, 0, 0), np.int8, 8, np.int8)
    gemm = case.gemm(native.isa_name())
    with pytest.raises(ValueError, match="qconv: x must be"):
        gemm.conv_nchw(case.x.astype(np.uint8), 3, 3, (0, 0, 0, 0), (1, 1), (1, 1), 0)
    with pytest.raises(ValueError, match="qconv: x must be"):  # K = 1 * 1 * 4 is not the weights' 36
        gemm.conv_nchw(case.x, 1, 1, (0, 0, 0, 0), (1, 1), (1, 1), 0)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        gemm.conv_nchw(case.x[:, :, :2], 3, 3, (0, 0, 0, 0), (1, 1), (1, 1), 0)
    with pytest.raises(MemoryError, match="bad arguments"):  # an orientation code the library does not have
        gemm.conv_nchw(case.x, 3, 3, (0, 0, 0, 0), (1, 1), (1, 1), 0, mode=3)
