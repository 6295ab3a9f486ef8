"""The native direct grouped convolution (``opml/native/conv.c``, depthwise included) against int64 numpy,
against the per-group GEMM path it replaces and against ``opml.reference``, on every instruction set this
CPU runs and at several thread counts: zero tolerance everywhere."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from engine_cases import INT8, INT32, UINT8, _gemm_node, act, check, int_array, one_node, qspec, requant_out
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_child import child_hash

from opml import kernels, kernels_pointwise, native
from opml.intmath import clip_int32, requantize, round_div
from opml.native import conv as native_conv
from opml.parallel import set_worker_count

pytestmark = pytest.mark.skipif(not native_conv.available() and not os.environ.get("CI"),
                                reason=native.describe())

EACH_ISA = pytest.mark.parametrize("isa", [
    pytest.param(name, marks=pytest.mark.skipif(name not in native.cpu_isas(),
                                                reason=f"CPU lacks {native.CPU_FLAGS[name]}"))
    for name in native.ISAS])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.data_too_large])


def conv_int64(x: np.ndarray, w: np.ndarray, group: int, strides: tuple[int, int], dil: tuple[int, int],
               pads: tuple[int, int, int, int], zp: int) -> np.ndarray:
    """The conv's exact int64 sums (input padded with the zero point), one strided view per kernel tap."""
    b, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    mg = m // group
    xp = np.full((b, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), zp, dtype=np.int64)
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    oh = (xp.shape[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (xp.shape[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    acc = np.zeros((b, m, oh, ow), dtype=np.int64)
    w64 = w.astype(np.int64)
    for oc in range(m):
        g = oc // mg
        for ci in range(cg):
            for i in range(kh):
                for j in range(kw):
                    win = xp[:, g * cg + ci, i * dil[0]: i * dil[0] + (oh - 1) * strides[0] + 1: strides[0],
                             j * dil[1]: j * dil[1] + (ow - 1) * strides[1] + 1: strides[1]]
                    acc[:, oc] += w64[oc, ci, i, j] * win
    return acc


@st.composite
def geometry(draw: st.DrawFn) -> dict:
    """Shapes, strides, dilations and pads the converter emits (1-D convs are 2-D with H = 1), with widths
    that cover the 64- and 32-output vector blocks and their tails."""
    group = draw(st.integers(1, 5))
    cg = draw(st.sampled_from([1, 1, 2, 3, 5, 16]))
    mg = draw(st.integers(1, 3))
    one_d = draw(st.booleans())
    kh = 1 if one_d else draw(st.integers(1, 5))
    kw = draw(st.integers(1, 7))
    dh, dw = (1 if one_d else draw(st.integers(1, 3))), draw(st.integers(1, 3))
    sh, sw = (1 if one_d else draw(st.integers(1, 3))), draw(st.integers(1, 4))
    pads = (0 if one_d else draw(st.integers(0, 3)), draw(st.integers(0, 3)),
            0 if one_d else draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    h = 1 if one_d else draw(st.integers(max(1, eh - pads[0] - pads[2]), max(1, eh - pads[0] - pads[2]) + 9))
    w = draw(st.integers(max(1, ew - pads[1] - pads[3]), max(1, ew - pads[1] - pads[3]) + 150))
    return dict(b=draw(st.integers(1, 2)), c=group * cg, m=group * mg, group=group, cg=cg, kh=kh, kw=kw, h=h, w=w,
                strides=(sh, sw), dil=(dh, dw), pads=pads)


def _weights(draw: st.DrawFn, g: dict, extreme: bool) -> np.ndarray:
    wdt = draw(st.sampled_from([np.int8, np.int16]))
    lo, hi = (-255, 255) if wdt == np.int16 else (-128, 127)
    shape = (g["m"], g["cg"], g["kh"], g["kw"])
    if extreme:
        return draw(st.sampled_from([np.full(shape, lo), np.full(shape, hi)])).astype(wdt)
    return int_array(draw, wdt, shape, st.integers(lo, hi))


def _input(draw: st.DrawFn, g: dict, dtype: np.dtype, extreme: bool) -> np.ndarray:
    info = np.iinfo(dtype)
    shape = (g["b"], g["c"], g["h"], g["w"])
    if extreme:
        return np.random.default_rng(draw(st.integers(0, 2**32 - 1))).choice(
            np.array([info.min, info.max]), size=shape).astype(dtype)
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(
        int(info.min), int(info.max) + 1, size=shape).astype(dtype)


@st.composite
def depthwise_geometry(draw: st.DrawFn) -> dict:
    """Depthwise convs of many channels (full and partial blocks of 16) on small planes, the channel-block
    path's shapes (and beyond: the tests force each path)."""
    g = draw(geometry())
    c = draw(st.sampled_from([1, 15, 16, 17, 33, 40]))
    h0 = max(1, (g["kh"] - 1) * g["dil"][0] + 1 - g["pads"][0] - g["pads"][2])
    w0 = max(1, (g["kw"] - 1) * g["dil"][1] + 1 - g["pads"][1] - g["pads"][3])
    h, w = draw(st.integers(h0, h0 + 12)), draw(st.integers(w0, w0 + 12))
    return {**g, "c": c, "m": c, "group": c, "cg": 1, "h": h, "w": w}


@st.composite
def grouped_block_geometry(draw: st.DrawFn) -> dict:
    """Grouped convs whose blocks of 16 output channels read at most 16 input channels (the channel-block path's
    grouped form: whole groups, or blocks inside a group of 16k channels), odd and one-channel groups included."""
    g = draw(depthwise_geometry())
    cg, mg = draw(st.sampled_from([(2, 2), (2, 4), (2, 8), (3, 4), (4, 4), (8, 8), (16, 16), (1, 2), (1, 16),
                                   (5, 16), (4, 32), (16, 1), (7, 2)]))
    group = draw(st.integers(2, 7))
    return {**g, "c": group * cg, "m": group * mg, "group": group, "cg": cg}


def _check_kernel(isa: str, data: st.DataObject, g: dict, extreme: bool, out: type, path: str) -> None:
    """Every output of the kernel (by ``path``) == the int64 sum through the spec's requantization (or int32
    clip)."""
    draw = data.draw
    xdt = np.dtype(draw(st.sampled_from([np.int8, np.uint8])))
    info = np.iinfo(xdt)
    zp = draw(st.sampled_from([int(info.min), int(info.max), draw(st.integers(int(info.min), int(info.max)))]))
    x, w = _input(draw, g, xdt, extreme), _weights(draw, g, extreme)
    m = g["m"]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    off = rng.integers(-(1 << 33), 1 << 33, size=m)
    if out == np.int32:
        ep = native.epilogue(m, off, 0, 0, 0, 0, 0, np.int32)
    else:
        mult, shift = rng.integers(0, 1 << 31, size=m), rng.integers(1, 63, size=m)
        mult[: m // 2], shift[: m // 2] = rng.integers(0, 1 << 12, size=m // 2), rng.integers(1, 16, size=m // 2)
        oi = np.iinfo(out)
        qmin = int(rng.integers(int(oi.min), int(oi.max) + 1))
        qmax, ozp = int(rng.integers(qmin, int(oi.max) + 1)), int(rng.integers(int(oi.min), int(oi.max) + 1))
        ep = native.epilogue(m, off, mult, shift, ozp, qmin, qmax, out)
    assert ep is not None
    conv = native_conv.GroupConv(w, g["group"], g["strides"], g["dil"], g["pads"], zp, xdt, ep, isa, path)
    got = conv(x)
    acc = conv_int64(x, w, g["group"], g["strides"], g["dil"], g["pads"], zp) + off[None, :, None, None]
    if out == np.int32:
        want = clip_int32(acc).astype(np.int32)
    else:
        want = requantize(acc, mult[None, :, None, None], shift[None, :, None, None], ozp, qmin, qmax, out)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


OUTS = st.sampled_from([np.int32, np.int8, np.uint8, np.int16])


@EACH_ISA
@FEW
@given(data=st.data(), g=geometry(), extreme=st.booleans(), out=OUTS, path=st.sampled_from(list(native_conv.PATHS)))
def test_kernel_equals_int64(isa: str, data: st.DataObject, g: dict, extreme: bool, out: type, path: str) -> None:
    _check_kernel(isa, data, g, extreme, out, path)


@EACH_ISA
@FEW
@given(data=st.data(), g=depthwise_geometry(), extreme=st.booleans(), out=OUTS,
       path=st.sampled_from(list(native_conv.PATHS)))
def test_depthwise_blocks_equal_int64(isa: str, data: st.DataObject, g: dict, extreme: bool, out: type,
                                      path: str) -> None:
    """Depthwise convs by blocks of 16 channels (AVX-512; other sets run the planes), by planes and by the
    automatic choice: each == the int64 sums."""
    _check_kernel(isa, data, g, extreme, out, path)


@EACH_ISA
@FEW
@given(data=st.data(), g=grouped_block_geometry(), extreme=st.booleans(), out=OUTS,
       path=st.sampled_from(list(native_conv.PATHS)))
def test_grouped_blocks_equal_int64(isa: str, data: st.DataObject, g: dict, extreme: bool, out: type,
                                    path: str) -> None:
    """Grouped convs by blocks of 16 output channels (input channel pairs per lane, AVX-512; shapes outside the
    form and other sets run the planes), by planes and by the automatic choice: each == the int64 sums."""
    _check_kernel(isa, data, g, extreme, out, path)


def _node_case(draw: st.DrawFn, g: dict, extreme: bool):
    xdt, xs, xzp = draw(qspec())
    x = _input(draw, g, xdt.np, extreme)
    w = _weights(draw, g, extreme)
    bias = int_array(draw, INT32, (g["m"],), st.one_of(st.integers(-3000, 3000), st.integers(-(2**31), 2**31 - 1)))
    raw = draw(st.booleans())
    rq = None if raw else draw(requant_out(g["m"]))
    oh = (g["h"] + g["pads"][0] + g["pads"][2] - (g["kh"] - 1) * g["dil"][0] - 1) // g["strides"][0] + 1
    ow = (g["w"] + g["pads"][1] + g["pads"][3] - (g["kw"] - 1) * g["dil"][1] - 1) // g["strides"][1] + 1
    b = _gemm_node("conv", act("x", xdt, x.shape, xs, xzp), w, bias, (g["b"], g["m"], oh, ow), raw, rq, False,
                   pads=list(g["pads"]), strides=list(g["strides"]), dilations=list(g["dil"]), group=g["group"])
    return b, x


@FEW
@given(data=st.data(), g=geometry(), extreme=st.booleans())
def test_engine_conv_equals_reference_and_the_gemm_path(data: st.DataObject, g: dict, extreme: bool) -> None:
    """The engine's conv node (the direct kernel where it applies) == opml.reference == the per-group GEMM
    path (the prepared kernel with the direct kernel switched off)."""
    b, x = _node_case(data.draw, g, extreme)
    direct = check(b, [x])
    assert kernels.prepare_conv(b.nodes[0], b.tensors)([x]).tobytes() == direct.tobytes()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "DIRECT_CONV_MAX_CG", 0)
        gemm = kernels.prepare_conv(b.nodes[0], b.tensors)([x])
    assert direct.tobytes() == gemm.tobytes()


def test_depthwise_uses_the_direct_kernel() -> None:
    """A depthwise conv's prepared kernel holds a GroupConv and no per-group GEMMs (else the test above
    would compare the GEMM path with itself)."""
    w = np.ones((8, 1, 3, 3), np.int8)
    b = _gemm_node("conv", act("x", INT8, (1, 8, 5, 5), 0.1, 0), w, np.zeros(8, np.int32), (1, 8, 5, 5), True, None,
                   False, pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=8)
    fn = kernels.prepare_conv(b.nodes[0], b.tensors)
    cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ()), strict=True))
    assert isinstance(cells["direct"], native_conv.GroupConv) and cells["fast"] == []


@EACH_ISA
@pytest.mark.parametrize("path", ["planes", "blocks"])
def test_depthwise_at_the_int32_limit(isa: str, path: str) -> None:
    """A depthwise 181x181 kernel of +-255 over inputs of 255: 255 * 255 * 181^2 just below 2^31, the largest sum
    each path can form."""
    w = np.full((17, 1, 181, 181), 255, np.int16)
    w[1::2] = -255
    assert native_conv.fits(w) and 255 * 255 * 181 * 181 < 2**31
    x = np.full((1, 17, 181, 181), 255, np.uint8)
    ep = native.epilogue(17, 0, 0, 0, 0, 0, 0, np.int32)
    assert ep is not None
    got = native_conv.GroupConv(w, 17, (1, 1), (1, 1), (0, 0, 0, 0), 0, np.uint8, ep, isa, path)(x)
    np.testing.assert_array_equal(got.reshape(-1), [255 * 255 * 181 * 181 * (1 - 2 * (c % 2)) for c in range(17)])


@EACH_ISA
def test_at_the_int32_limit(isa: str) -> None:
    """255 * sum |w| just below 2^31: every product and partial sum at its largest; one more unit of weight
    and the kernel refuses (the engine then runs the GEMM path)."""
    w = np.full((2, 16, 45, 45), 255, np.int16)
    w[1] = -255
    assert native_conv.fits(w) and 255 * 255 * w[0].size < 2**31
    x = np.full((1, 32, 45, 45), 255, np.uint8)
    ep = native.epilogue(2, 0, 0, 0, 0, 0, 0, np.int32)
    assert ep is not None
    got = native_conv.GroupConv(w, 2, (1, 1), (1, 1), (0, 0, 0, 0), 0, np.uint8, ep, isa)(x)
    np.testing.assert_array_equal(got.reshape(-1), [255 * 255 * w[0].size, -255 * 255 * w[0].size])
    big = np.concatenate([w, np.full((2, 1, 45, 45), 255, np.int16)], axis=1)
    assert not native_conv.fits(big)
    with pytest.raises(ValueError, match="too large"):
        native_conv.GroupConv(big, 2, (1, 1), (1, 1), (0, 0, 0, 0), 0, np.uint8, ep, isa)


def test_bad_arguments_are_refused() -> None:
    ep = native.epilogue(4, 0, 0, 0, 0, 0, 0, np.int32)
    assert ep is not None
    w = np.ones((4, 1, 3, 3), np.int8)
    with pytest.raises(ValueError, match="int8/uint8"):
        native_conv.GroupConv(w, 4, (1, 1), (1, 1), (0, 0, 0, 0), 0, np.int16, ep)
    with pytest.raises(ValueError, match="zero point"):
        native_conv.GroupConv(w, 4, (1, 1), (1, 1), (0, 0, 0, 0), 200, np.int8, ep)
    conv = native_conv.GroupConv(w, 4, (1, 1), (1, 1), (0, 0, 0, 0), 0, np.int8, ep)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv(np.zeros((1, 4, 2, 5), np.int8))
    with pytest.raises(ValueError, match=r"\[B, 4, H, W\]"):
        conv(np.zeros((1, 3, 5, 5), np.int8))
    with pytest.raises(ValueError, match="path must be one of"):
        native_conv.GroupConv(w, 4, (1, 1), (1, 1), (0, 0, 0, 0), 0, np.int8, ep, None, "fast")


def _mobilenet_block(seed: int = 0) -> tuple[list, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, size=(96, 1, 3, 3)).astype(np.int8)
    ep = native.epilogue(96, rng.integers(-5000, 5000, 96), rng.integers(1 << 20, 1 << 30, 96),
                         rng.integers(20, 40, 96), 3, -128, 127, np.int8)
    x = rng.integers(0, 256, size=(2, 96, 57, 57)).astype(np.uint8)
    return [w, ep], x


def test_thread_counts_agree() -> None:
    (w, ep), x = _mobilenet_block()
    outs = []
    try:
        for n in (1, 2, 3, 5):
            set_worker_count(n)
            for s in (1, 2, 3):  # 3: the small planes (channel blocks)
                xs = x[:, :, :9, :10] if s == 3 else x
                outs.append((n, s, native_conv.GroupConv(w, 96, (s % 3 + 1,) * 2, (1, 1), (1, 1, 1, 1), 7, np.uint8,
                                                         ep)(xs)))
    finally:
        set_worker_count(None)
    for n, s, y in outs:
        ref = next(y0 for n0, s0, y0 in outs if s0 == s)
        assert y.tobytes() == ref.tobytes(), f"{n} threads, stride {s}"


CHILD = """
import hashlib, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_native_conv import _mobilenet_block
from opml import native
from opml.native import conv as native_conv
(w, ep), x = _mobilenet_block()
h = hashlib.sha256()
for s, d in ((1, 1), (2, 1), (1, 2)):
    for xs in (x, x[:, :, :9, :10]):
        h.update(native_conv.GroupConv(w, 96, (s, s), (d, d), (1, 2, 1, 0), 7, np.uint8, ep)(xs).tobytes())
print(native.describe())
print("HASH " + h.hexdigest())
"""


def test_instruction_sets_agree_through_the_environment() -> None:
    """OPML_NATIVE_ISA picks each set this CPU runs for the direct conv too; all give the bytes of the portable
    C code run in this process."""
    (w, ep), x = _mobilenet_block()
    h = hashlib.sha256()
    for s, d in ((1, 1), (2, 1), (1, 2)):
        for xs in (x, x[:, :, :9, :10]):  # large planes and small ones (channel blocks where AVX-512 runs)
            h.update(native_conv.GroupConv(w, 96, (s, s), (d, d), (1, 2, 1, 0), 7, np.uint8, ep, "generic")(xs)
                     .tobytes())
    for name in native.cpu_isas():
        desc, got = child_hash(CHILD, {"OPML_NATIVE_ISA": name, "OPML_THREADS": "2"}, timeout=120)
        assert f"loaded ({name})" in desc
        assert got == "HASH " + h.hexdigest(), desc


@pytest.mark.parametrize("cg, k, stride", [(34, 1, 1), (33, 3, 2), (8, 3, 1)])
def test_wide_groups_equal_the_gemm_path(cg: int, k: int, stride: int) -> None:
    """Groups of many channels (ShuffleNet's grouped 1x1 convs; an odd count leaves one channel unpaired) through
    the engine: direct == reference == per-group GEMMs."""
    rng = np.random.default_rng(cg)
    group, mg = 3, 5
    w = rng.integers(-128, 128, size=(group * mg, cg, k, k)).astype(np.int8)
    x = rng.integers(-128, 128, size=(2, group * cg, 9, 11)).astype(np.int8)
    pad = k // 2
    oh, ow = (9 + 2 * pad - k) // stride + 1, (11 + 2 * pad - k) // stride + 1
    mult = rng.integers(1 << 20, 1 << 30, size=group * mg).astype(np.int32)
    shift = rng.integers(25, 40, size=group * mg).astype(np.int32)
    b = _gemm_node("conv", act("x", INT8, x.shape, 0.1, -3), w, rng.integers(-9999, 9999, group * mg).astype(np.int32),
                   (2, group * mg, oh, ow), False, (INT8, 0.2, 4, mult, shift, -128, 127), False, pads=[pad] * 4,
                   strides=[stride, stride], dilations=[1, 1], group=group)
    direct = check(b, [x])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "DIRECT_CONV_MAX_CG", 0)
        gemm = kernels.prepare_conv(b.nodes[0], b.tensors)([x])
    assert direct.tobytes() == gemm.tobytes()


@given(data=st.data(), g=geometry())
@FEW
def test_window_sum_equals_the_pooling_sums(data: st.DataObject, g: dict) -> None:
    """native_conv.window_sum (for avgpool) == the numpy window sums of x - zero point, padding 0."""
    xdt = np.dtype(data.draw(st.sampled_from([np.int8, np.uint8])))
    info = np.iinfo(xdt)
    zp = data.draw(st.integers(int(info.min), int(info.max)))
    x = _input(data.draw, g, xdt, data.draw(st.booleans()))
    ws = native_conv.window_sum(g["c"], g["kh"], g["kw"], g["strides"], g["dil"], g["pads"], zp, xdt)
    assert ws is not None
    want = conv_int64(x, np.ones((g["c"], 1, g["kh"], g["kw"]), np.int64), g["c"], g["strides"], g["dil"], g["pads"],
                      zp) - zp * g["kh"] * g["kw"]
    got = ws(x)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


@given(n=st.integers(0, 3), r=st.integers(0, 150), c=st.integers(0, 70), dt=st.sampled_from([np.int8, np.uint8,
                                                                                             np.int16, np.int32]),
       threads=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2**32 - 1))
@FEW
def test_transpose_batched_equals_numpy(n: int, r: int, c: int, dt: type, threads: int, seed: int) -> None:
    """The conv's native NCHW <-> NHWC change (16x16 byte tiles, scalar edges) == numpy's transpose."""
    info = np.iinfo(dt)
    x = np.random.default_rng(seed).integers(int(info.min), int(info.max) + 1, size=(n, r, c)).astype(dt)
    try:
        set_worker_count(threads)
        got = native_conv.transpose_batched(x)
    finally:
        set_worker_count(None)
    assert got.dtype == x.dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x.transpose(0, 2, 1))


@EACH_ISA
@FEW
@given(data=st.data(), planes=st.integers(1, 9), n=st.sampled_from([1, 2, 31, 63, 64, 65, 129, 576, 2304]),
       dt=st.sampled_from([np.int8, np.uint8]), odt=st.sampled_from([np.int8, np.uint8]))
def test_plane_reduce_equals_numpy(isa: str, data: st.DataObject, planes: int, n: int, dt: type, odt: type) -> None:
    """Global average / sum / max pooling (opml_plane_reduce) == the numpy form of kernels.prepare_reduce, at the
    byte extremes and the multiplier bound included."""
    info = np.iinfo(dt)
    x = data.draw(st.sampled_from([
        np.random.default_rng(planes * n).integers(info.min, info.max + 1, size=(planes, n), dtype=dt),
        np.full((planes, n), info.min, dtype=dt), np.full((planes, n), info.max, dtype=dt)]))
    zp = data.draw(st.integers(int(info.min), int(info.max)))
    shift = data.draw(st.integers(0, 30))
    den = (n if data.draw(st.booleans()) else 1) << shift
    edge = (native_conv.PLANE_SAFE - den - 1) // (255 * n)  # the largest |mult| taken: |acc mult| near 2^62
    mult = data.draw(st.one_of(st.integers(-(1 << 31), 1 << 31), st.sampled_from([edge, -edge, edge + 1])))
    if 255 * n * abs(mult) + den >= native_conv.PLANE_SAFE:
        assert native_conv.plane_reduce(x, planes, 0, zp, mult, den, 0, -128, 127, np.dtype(odt), isa) is None
        return
    ozp = data.draw(st.integers(-300, 300))
    oi = np.iinfo(odt)
    y = native_conv.plane_reduce(x, planes, 0, zp, mult, den, ozp, int(oi.min), int(oi.max), np.dtype(odt), isa)
    acc = x.astype(np.int64).sum(axis=1) - zp * n
    want = np.clip(round_div(acc * mult, np.asarray(den, dtype=np.int64)) + ozp, oi.min, oi.max).astype(odt)
    assert y is not None and y.dtype == odt and np.array_equal(y, want)
    ym = native_conv.plane_reduce(x, planes, 1, 0, 0, 1, 0, -1000, 1000, np.dtype(dt), isa)
    assert ym is not None and np.array_equal(ym, x.max(axis=1))


@EACH_ISA
@FEW
@given(planes=st.integers(1, 6), n=st.sampled_from([1, 7, 64, 100, 576]), adt=st.sampled_from([np.int8, np.uint8]),
       bdt=st.sampled_from([np.int8, np.uint8]), swap=st.booleans(), seed=st.integers(0, 1 << 30))
def test_plane_lut8_equals_the_table_gather(isa: str, planes: int, n: int, adt: type, bdt: type, swap: bool,
                                            seed: int) -> None:
    """The SE scale's lookup (opml_plane_lut8: one table row or column per plane) == numpy's broadcast gather."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 256, 65536, dtype=np.uint8).view(np.int8)
    a = rng.integers(0, 256, size=(1, planes, 1, 1), dtype=np.uint8).view(adt)
    b = rng.integers(0, 256, size=(1, planes, 1, n), dtype=np.uint8).view(bdt)
    y = native_conv.plane_lut8(table, a, b, swap, isa)
    ai, bi = a.view(np.uint8).astype(np.int64), b.view(np.uint8).astype(np.int64)
    want = table[(bi << 8) | ai] if swap else table[(ai << 8) | bi]
    assert y is not None and y.shape == b.shape and np.array_equal(y, want)
    if n > 1:  # the full operand first: not a per-plane form
        assert native_conv.plane_lut8(table, b, a) is None


@pytest.mark.parametrize("full_first", [True, False])
@pytest.mark.parametrize("hw", [(1, 3), (3, 3), (2, 96), (12, 12)])
def test_se_mul_per_plane_equals_reference(full_first: bool, hw: tuple[int, int]) -> None:
    """The SE block's mul of a feature map and its per-channel scale, either operand first (the second by the
    table with its operands exchanged), small and large planes: engine == opml.reference."""
    rng = np.random.default_rng(hw[0] * 7 + full_first)
    full = rng.integers(-128, 128, size=(1, 40, *hw)).astype(np.int8)
    scale = rng.integers(0, 256, size=(1, 40, 1, 1)).astype(np.uint8)
    ins = [act("x", INT8, full.shape, 0.05, -3), act("s", UINT8, scale.shape, 1 / 255, 0)]
    vals = [full, scale]
    if not full_first:
        ins, vals = ins[::-1], vals[::-1]
    b = one_node("mul", ins, act("y", INT8, full.shape, 0.04, 2), mult=1 << 29, shift=32, qmin=-128, qmax=127)
    want = check(b, vals)  # the engine (its batch plan) == the reference
    assert kernels_pointwise.prepare_mul(b.nodes[0], b.tensors)(vals).tobytes() == want.tobytes()  # the node kernel


@pytest.mark.parametrize("cg, m, stride, hw", [(3, 32, 2, (17, 20)), (3, 8, 1, (6, 40)), (4, 5, 2, (9, 9))])
def test_rgb_stem_direct_equals_the_gemm_path(cg: int, m: int, stride: int, hw: tuple[int, int]) -> None:
    """Ungrouped convs of 3-4 input channels (RGB stems) run the direct conv's channel quads where AVX-512 VNNI
    runs: engine == reference == the dense GEMM path."""
    rng = np.random.default_rng(cg * m)
    w = rng.integers(-128, 128, size=(m, cg, 3, 3)).astype(np.int8)
    x = rng.integers(-128, 128, size=(2, cg, *hw)).astype(np.int8)
    oh, ow = (hw[0] + 2 - 3) // stride + 1, (hw[1] + 2 - 3) // stride + 1
    mult = rng.integers(1 << 20, 1 << 30, size=m).astype(np.int32)
    shift = rng.integers(25, 40, size=m).astype(np.int32)
    b = _gemm_node("conv", act("x", INT8, x.shape, 0.1, 5), w, rng.integers(-9999, 9999, m).astype(np.int32),
                   (2, m, oh, ow), False, (INT8, 0.2, -4, mult, shift, -128, 127), False, pads=[1] * 4,
                   strides=[stride, stride], dilations=[1, 1], group=1)
    direct = check(b, [x])
    fn = kernels.prepare_conv(b.nodes[0], b.tensors)
    cells = dict(zip(fn.__code__.co_freevars, (c.cell_contents for c in fn.__closure__ or ()), strict=True))
    assert isinstance(cells["direct"], native_conv.GroupConv) == (native.isa_name() in ("avx512vnni", "amx"))
    assert fn([x]).tobytes() == direct.tobytes()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "DIRECT_STEM_CG", ())
        gemm = kernels.prepare_conv(b.nodes[0], b.tensors)([x])
    assert direct.tobytes() == gemm.tobytes()


def maxpool_numpy(x: np.ndarray, kh: int, kw: int, strides: tuple[int, int], dil: tuple[int, int],
                  pads: tuple[int, int, int, int]) -> np.ndarray:
    """The window maxima over the input padded with the dtype's minimum, one strided view per tap."""
    b, c, h, w = x.shape
    xp = np.full((b, c, h + pads[0] + pads[2], w + pads[1] + pads[3]), np.iinfo(x.dtype).min, dtype=x.dtype)
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    oh = (xp.shape[2] - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (xp.shape[3] - (kw - 1) * dil[1] - 1) // strides[1] + 1
    views = [xp[:, :, i * dil[0]: i * dil[0] + (oh - 1) * strides[0] + 1: strides[0],
                j * dil[1]: j * dil[1] + (ow - 1) * strides[1] + 1: strides[1]] for i in range(kh) for j in range(kw)]
    return np.maximum.reduce(views)


@EACH_ISA
@FEW
@given(data=st.data(), g=geometry(), threads=st.sampled_from([1, 2, 3]))
def test_maxpool_equals_numpy(isa: str, data: st.DataObject, g: dict, threads: int) -> None:
    """native_conv.maxpool (windows of any size, stride, dilation and pads, ceil mode's extra pad included; windows
    wholly in the padding give the minimum) == the numpy window maxima, every instruction set and thread count."""
    xdt = np.dtype(data.draw(st.sampled_from([np.int8, np.uint8])))
    x = _input(data.draw, g, xdt, data.draw(st.booleans()))
    try:
        set_worker_count(threads)
        got = native_conv.maxpool(x, g["kh"], g["kw"], g["strides"], g["dil"], g["pads"], isa)
    finally:
        set_worker_count(None)
    want = maxpool_numpy(x, g["kh"], g["kw"], g["strides"], g["dil"], g["pads"])
    assert got is not None and got.dtype == xdt
    np.testing.assert_array_equal(got, want)


@EACH_ISA
@pytest.mark.parametrize("c, hw, xdt, out", [(300, (2, 96), np.int8, np.int8), (8, (24, 96), np.uint8, np.uint8),
                                             (17, (1, 1), np.int8, np.uint8), (5, (3, 70), np.uint8, np.int8)])
def test_depthwise_1x1_tables_equal_int64(isa: str, c: int, hw: tuple[int, int], xdt: type, out: type) -> None:
    """A 1x1 stride-1 depthwise conv with byte outputs (a per-channel scale) runs by per-channel tables of the
    kernel's own outputs (cfg[28]): == the int64 sums through the requantization, == the forced plane path, every
    byte value of every channel, several images and thread counts."""
    rng = np.random.default_rng(c)
    w = rng.integers(-128, 128, size=(c, 1, 1, 1)).astype(np.int8)
    w[0] = 127
    off = rng.integers(-(1 << 20), 1 << 20, size=c)
    mult, shift = rng.integers(1 << 20, 1 << 30, size=c), rng.integers(20, 34, size=c)
    oi = np.iinfo(out)
    ep = native.epilogue(c, off, mult, shift, 3, int(oi.min), int(oi.max), out)
    assert ep is not None
    info = np.iinfo(xdt)
    zp = int(rng.integers(int(info.min), int(info.max) + 1))
    auto = native_conv.GroupConv(w, c, (1, 1), (1, 1), (0, 0, 0, 0), zp, np.dtype(xdt), ep, isa)
    planes = native_conv.GroupConv(w, c, (1, 1), (1, 1), (0, 0, 0, 0), zp, np.dtype(xdt), ep, isa, "planes")
    assert auto.cfg[28] != 0 and planes.cfg[28] != 0  # (the forced path ignores the tables)
    x = rng.integers(int(info.min), int(info.max) + 1, size=(3, c, *hw)).astype(xdt)
    x[0, :, 0, 0] = info.min
    try:
        for threads in (1, 2, 3):
            set_worker_count(threads)
            got = auto(x)
            assert got.tobytes() == planes(x).tobytes()
    finally:
        set_worker_count(None)
    acc = conv_int64(x, w, c, (1, 1), (1, 1), (0, 0, 0, 0), zp) + off[None, :, None, None]
    want = requantize(acc, mult[None, :, None, None], shift[None, :, None, None], 3, int(oi.min), int(oi.max), out)
    np.testing.assert_array_equal(got, want)
