"""Tests of the int8 lookup tables: numpy == SoftFloat, formulas, clamping, softmax table, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from opml import lut
from opml.errors import OpmlError
from opml.f32prog import FLT_MAX

FUNCS = sorted(lut.UNARY_FUNCTIONS)
PARAMS: dict[str, dict[str, float]] = {
    "leaky_relu": {"alpha": 0.1},
    "clip": {"min": -1.5, "max": 2.25},
    "affine": {"mul": 1.7, "div": 3.0, "add": -0.25},
    "hardsigmoid": {"alpha": 0.25, "beta": 0.4},
}
QPARAMS = [(0.05, 0, 1 / 128, 0), (0.1, -3, 0.02, -128), (1e-3, 100, 3.0, 5), (0.37, 127, 0.05, -20)]


@pytest.mark.parametrize("fn", FUNCS)
def test_lut_numpy_equals_softfloat(fn: str) -> None:
    for s, z, os, oz in QPARAMS:
        for params in (None, PARAMS.get(fn)):
            a = lut.unary_lut(fn, params, s, z, os, oz)
            b = lut.unary_lut(fn, params, s, z, os, oz, backend="soft")
            assert a.dtype == np.int8 and a.shape == (256,)
            assert np.array_equal(a, b), (fn, s, z, os, oz, params)
        assert lut.float_range(fn, PARAMS.get(fn), s, z) == lut.float_range(fn, PARAMS.get(fn), s, z, "soft")


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(FUNCS),
    st.floats(1e-4, 2.0),
    st.integers(-128, 127),
    st.floats(1e-3, 4.0),
    st.integers(-128, 127),
)
def test_lut_numpy_equals_softfloat_hypothesis(fn: str, s: float, z: int, os: float, oz: int) -> None:
    a = lut.unary_lut(fn, PARAMS.get(fn), s, z, os, oz)
    assert np.array_equal(a, lut.unary_lut(fn, PARAMS.get(fn), s, z, os, oz, backend="soft"))


def test_dequant_grid_formula() -> None:
    for s, z in [(0.05, 0), (0.0123, -7), (3.3, 127), (1e-6, -128)]:
        g = lut.dequant_grid(s, z)
        want = (np.arange(-128, 128) - z).astype(np.float32) * np.float32(s)
        assert g.dtype == np.float32 and np.array_equal(g.view(np.uint32), want.view(np.uint32))
        assert np.array_equal(g.view(np.uint32), lut.dequant_grid(s, z, backend="soft").view(np.uint32))


def test_identity_lut_is_identity() -> None:
    assert np.array_equal(lut.unary_lut("identity", None, 0.1, 3, 0.1, 3), np.arange(-128, 128))


def test_lut_close_to_float64_reference() -> None:
    x = (np.arange(-128, 128) - 5) * np.float64(np.float32(0.05))
    refs = {"sigmoid": sp.expit(x), "tanh": np.tanh(x), "gelu": 0.5 * x * (1 + sp.erf(x / np.sqrt(2))),
            "exp": np.exp(x)}
    for fn, ref in refs.items():
        got = lut.unary_lut(fn, None, 0.05, 5, 1 / 64, -20).astype(np.int64)
        want = np.clip(np.round(ref * 64) - 20, -128, 127)
        assert np.abs(got - want).max() <= 1, fn


def test_clamping_and_qrange() -> None:
    t = lut.unary_lut("relu", None, 1.0, 0, 0.01, 0)
    assert t[0] == 0 and t[-1] == 127 and t[128] == 0
    t = lut.unary_lut("identity", None, 1.0, 0, 0.5, 0, qmin=-10, qmax=20)
    assert t.min() == -10 and t.max() == 20
    t = lut.unary_lut("square", None, 1e30, 0, 1.0, 0)  # overflows to inf in float32: clamps
    assert t[0] == 127 and t[128] == 0
    t = lut.unary_lut("neg", None, 1e30, 0, 1e-30, 0)
    assert t[0] == 127 and t[-1] == -128


def test_unary_float_functions() -> None:
    x = np.array([-4.0, -1.0, -0.0, 0.0, 0.5, 3.0], dtype=np.float32)
    f = lambda fn, p=None: lut.unary_float(fn, x, p).tolist()  # noqa: E731
    assert f("relu") == [0, 0, 0, 0, 0.5, 3]
    assert f("leaky_relu", {"alpha": 0.5}) == [-2, -0.5, 0, 0, 0.5, 3]
    assert f("clip", {"min": -1, "max": 1}) == [-1, -1, 0, 0, 0.5, 1]
    assert f("clip", {"max": 1}) == [-4, -1, 0, 0, 0.5, 1]
    assert f("sqrt")[:4] == [0, 0, 0, 0] and f("sqrt")[5] == pytest.approx(3**0.5)
    assert f("square") == [16, 1, 0, 0, 0.25, 9]
    assert f("neg") == [4, 1, 0, 0, -0.5, -3]
    assert f("affine", {"mul": 2, "add": 1}) == [-7, -1, 1, 1, 2, 7]
    assert f("affine", {"div": 4}) == [-1, -0.25, 0, 0, 0.125, 0.75]
    assert f("hardsigmoid") == pytest.approx([0, 0.3, 0.5, 0.5, 0.6, 1])
    r = f("reciprocal")
    assert r[2] == r[3] == float(np.float32(FLT_MAX)) and r[0] == -0.25 and r[4] == 2.0
    tiny = lut.unary_float("reciprocal", np.array([1e-45, -1e-45], dtype=np.float32), None)
    assert tiny.tolist() == [float(np.float32(FLT_MAX)), -float(np.float32(FLT_MAX))]


def test_softmax_exp_table() -> None:
    for s in [1e-5, 0.003, 0.05, 0.1, 0.5, 4.0, 100.0]:
        t = lut.softmax_exp_table(s)
        assert t.dtype == np.int32 and t.shape == (256,)
        assert t[0] == 2**20 and (np.diff(t) <= 0).all() and (t >= 0).all()
        assert np.array_equal(t, lut.softmax_exp_table(s, backend="soft"))
        ref = np.exp(-np.arange(256) * np.float64(np.float32(s))) * 2**20
        assert np.abs(t - ref).max() <= 1.0
    assert lut.softmax_exp_table(0.1, frac_bits=0)[0] == 1
    assert lut.softmax_exp_table(0.1, frac_bits=30)[0] == 2**30
    assert (lut.softmax_exp_table(100.0)[1:] == 0).all()


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf"), 1e-50, 1e39, "0.1", True])
def test_bad_scales_raise(bad: object) -> None:
    for call in (
        lambda: lut.unary_lut("sigmoid", None, 0.1, 0, bad, 0),  # type: ignore[arg-type]
        lambda: lut.unary_lut("sigmoid", None, bad, 0, 0.1, 0),  # type: ignore[arg-type]
        lambda: lut.dequant_grid(bad, 0),  # type: ignore[arg-type]
        lambda: lut.softmax_exp_table(bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(lut.LutError):
            call()


def test_other_errors() -> None:
    assert issubclass(lut.LutError, ValueError) and issubclass(lut.LutError, OpmlError)
    bad_calls = [
        lambda: lut.unary_lut("softsign", None, 0.1, 0, 0.1, 0),
        lambda: lut.unary_lut("relu", {"alpha": 1.0}, 0.1, 0, 0.1, 0),
        lambda: lut.unary_lut("affine", {"div": 0.0}, 0.1, 0, 0.1, 0),
        lambda: lut.unary_lut("clip", {"min": 2.0, "max": 1.0}, 0.1, 0, 0.1, 0),
        lambda: lut.unary_lut("leaky_relu", {"alpha": float("nan")}, 0.1, 0, 0.1, 0),
        lambda: lut.unary_lut("relu", None, 0.1, 0.5, 0.1, 0),
        lambda: lut.unary_lut("relu", None, 0.1, 0, 0.1, 0, qmin=5, qmax=4),
        lambda: lut.unary_lut("relu", None, 0.1, 0, 0.1, 0, qmin=-129),
        lambda: lut.unary_lut("relu", None, 0.1, 0, 0.1, 0, qmax=128),
        lambda: lut.dequant_grid(0.1, 1 << 24),
        lambda: lut.softmax_exp_table(0.1, frac_bits=31),
    ]
    for call in bad_calls:
        with pytest.raises(lut.LutError):
            call()
    with pytest.raises(ValueError):
        lut.unary_lut("relu", None, 0.1, 0, 0.1, 0, backend="gpu")
