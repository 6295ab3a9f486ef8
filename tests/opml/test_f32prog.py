"""Tests of the consensus-safe float32 programs: numpy == SoftFloat bit for bit, accuracy, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from opml import f32prog
from opml.errors import DeterminismError
from opml.f32prog import FLT_MAX, NUMPY, PROGRAMS, run, soft_backend

EDGE = np.array(
    [0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.1754944e-38, 1e-30, -1e-7, 1e-7, 0.5, -0.5, 0.625, -0.625,
     1.0, -1.0, 2.0, 9.99, 10.0, 10.01, -10.0, 20.0, 87.0, -87.0, 87.33, -87.33, 88.0, -88.0, 88.72283,
     88.722832, 88.7229, 89.0, -103.0, -103.28, -103.97, -104.0, -104.01, 104.0, -150.0, 1e6, -1e6,
     1e13, -1e13, 1e20, -1e20, FLT_MAX, -FLT_MAX],
    dtype=np.float32,
)


def _grid_values() -> np.ndarray:
    """Edge cases, all 256 dequantized int8 values for a few scales, and a random spread."""
    q = np.arange(-128, 128, dtype=np.float32)
    grids = [q * np.float32(s) for s in (1e-3, 0.0123, 0.05, 0.1, 0.37, 1.0)]
    rng = np.random.default_rng(7)
    spread = rng.uniform(-110, 110, 300).astype(np.float32)
    return np.concatenate([EDGE, *grids, spread])


GRID = _grid_values()


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def test_softfloat_sqrt_is_patched() -> None:
    sf = soft_backend().sf
    assert sf.convertF32ToDouble(sf.f32_sqrt(sf.convertDoubleToF32(4.0))) == 2.0
    assert sf.f32_sqrt(sf.convertDoubleToF32(2.0)).v == 0x3FB504F3


def test_constants_round_the_same_on_both_backends() -> None:
    sb = soft_backend()
    values = [v for k, v in vars(f32prog).items() if k.isupper() and isinstance(v, float)]
    values += [c for k, v in vars(f32prog).items() if k.isupper() and isinstance(v, tuple) for c in v]
    assert len(values) > 30
    for v in values:
        assert int(_bits(NUMPY.c(v))) == sb.c(v).v, v


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_numpy_equals_softfloat_on_grid(name: str) -> None:
    a = run(PROGRAMS[name], GRID)
    b = run(PROGRAMS[name], GRID, backend="soft")
    assert a.dtype == np.float32 and a.shape == GRID.shape
    bad = np.flatnonzero(_bits(a) != _bits(b))
    assert bad.size == 0, f"{name} differs at {GRID[bad][:5]}"
    assert np.isfinite(a).all()


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=25, deadline=None)
@given(st.lists(finite_f32, min_size=1, max_size=40), st.sampled_from(sorted(PROGRAMS)))
def test_numpy_equals_softfloat_hypothesis(xs: list[float], name: str) -> None:
    x = np.array(xs, dtype=np.float32)
    a = run(PROGRAMS[name], x)
    assert np.array_equal(_bits(a), _bits(run(PROGRAMS[name], x, backend="soft")))
    assert np.isfinite(a).all()


def test_random_bit_patterns_match_and_stay_finite() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2**32, 400, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = x[np.isfinite(x)]
    for name, prog in PROGRAMS.items():
        a = run(prog, x)
        assert np.array_equal(_bits(a), _bits(run(prog, x, backend="soft"))), name
        assert np.isfinite(a).all(), name


def _ref(name: str, x: np.ndarray) -> np.ndarray:
    if name == "exp":
        return np.exp(x)
    if name == "sigmoid":
        return sp.expit(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "erf":
        return sp.erf(x)
    if name == "gelu":
        return 0.5 * x * (1 + sp.erf(x / np.sqrt(2)))
    if name == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return np.sqrt(np.maximum(x, 0))


DENSE = np.concatenate([np.linspace(-110, 100, 400_001, dtype=np.float32),
                        np.geomspace(1e-30, 10, 20_000).astype(np.float32)])
DENSE = np.concatenate([DENSE, -DENSE])


def test_exp_accuracy() -> None:
    x = DENSE.astype(np.float64)
    y = run(f32prog.exp, DENSE).astype(np.float64)
    normal = (x > -87.3) & (x < 88.72)
    assert (np.abs(y - np.exp(x)) / np.exp(x))[normal].max() < 2e-7
    with np.errstate(over="ignore"):
        assert np.abs(y - np.exp(x))[x <= -87.3].max() <= 2.0**-149  # subnormal range: within 1 ulp
    assert (y[x >= 88.72] <= FLT_MAX).all()


@pytest.mark.parametrize("name,bound", [("sigmoid", 2e-7), ("tanh", 2e-7), ("erf", 5e-7), ("gelu", 1e-6),
                                        ("gelu_tanh", 1e-6), ("sqrt", 1e-6)])
def test_accuracy_vs_float64(name: str, bound: float) -> None:
    x = DENSE.astype(np.float64)
    y = run(PROGRAMS[name], DENSE).astype(np.float64)
    err = np.abs(y - _ref(name, x))
    if name == "sqrt":
        err = err / np.maximum(1.0, np.sqrt(np.abs(x)))  # relative for large x
    assert err.max() < bound


def test_special_values() -> None:
    exp = lambda v: float(run(f32prog.exp, np.float32(v)))  # noqa: E731
    assert exp(0.0) == 1.0 and exp(-0.0) == 1.0
    assert exp(-104.5) == 0.0 and exp(-1e30) == 0.0
    assert exp(88.73) == exp(1e30) == FLT_MAX
    assert float(run(f32prog.sigmoid, np.float32(0))) == 0.5
    assert float(run(f32prog.sigmoid, np.float32(200))) == 1.0
    assert float(run(f32prog.tanh, np.float32(30))) == 1.0
    assert float(run(f32prog.erf, np.float32(-30))) == -1.0
    assert float(run(f32prog.gelu, np.float32(50))) == 50.0
    assert float(run(f32prog.gelu_tanh, np.float32(-50))) == 0.0
    assert float(run(f32prog.sqrt, np.float32(-4))) == 0.0


@pytest.mark.parametrize("name", ["tanh", "erf"])
def test_odd_functions_are_exactly_odd(name: str) -> None:
    x = GRID[GRID != 0]
    assert np.array_equal(_bits(run(PROGRAMS[name], -x)), _bits(-run(PROGRAMS[name], x)))


def test_exp_monotone_on_dense_grid() -> None:
    x = np.linspace(-104, 88.72, 300_001, dtype=np.float32)
    assert (np.diff(run(f32prog.exp, x)) >= 0).all()


def test_run_keeps_shape_and_rejects_unknown_backend() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    assert run(f32prog.exp, x).shape == (2, 3)
    assert run(f32prog.exp, x, backend="soft").shape == (2, 3)
    with pytest.raises(ValueError):
        run(f32prog.exp, x, backend="gpu")


def test_known_answers_match_softfloat() -> None:
    sb = soft_backend()
    ops = {
        "division": lambda a, b: sb.div(a, b), "sqrt": lambda a, _: sb.sqrt(a),
        "rint": lambda a, _: sb.rint(a), "exp program": lambda a, _: f32prog.exp(sb, a),
    }
    for what, (a, b, want) in f32prog._KNOWN.items():
        got = [ops[what](sb.from_bits(x), sb.from_bits(y)).v for x, y in zip(a, b or a, strict=True)]
        assert got == want, what


def test_check_float_environment_passes_here() -> None:
    f32prog.check_float_environment()


def test_check_float_environment_detects_wrong_results(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, want = f32prog._KNOWN["division"]
    monkeypatch.setitem(f32prog._KNOWN, "division", (a, b, [w ^ 1 for w in want]))
    with pytest.raises(DeterminismError, match="division"):
        f32prog.check_float_environment()
