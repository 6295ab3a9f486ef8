"""Shared pieces of the engine == reference differential suite: one-node bundle construction,
the ``check`` that compares both paths bit for bit, hypothesis strategies and the ``@covers``
registry of per-op tests (``test_engine_reference.py``, ``test_engine_reference_layout.py``).

Other suites reuse the cases: ``check`` runs every function registered with :func:`also_check`
on each case that passed (the fraud-VM suite runs every case through the VM that way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from opml.bundle import Bundle, DType, Node, TensorSpec, decode_bundle, encode_bundle
from opml.engine import run
from opml.intmath import quantize_multiplier
from opml.ops import BY_NAME
from opml.reference import run_reference

INT8, UINT8, INT16, INT32, INT64, FLOAT32, BOOL = (
    DType.INT8, DType.UINT8, DType.INT16, DType.INT32, DType.INT64, DType.FLOAT32, DType.BOOL)
Q_DTYPES = (INT8, UINT8)
ALL_DTYPES = tuple(DType)
QRANGE = {INT8: (-128, 127), UINT8: (0, 255)}

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.data_too_large])
FEW = settings(SETTINGS, max_examples=50)

COVERED: dict[str, Callable] = {}


def covers(op: str) -> Callable[[Callable], Callable]:
    """Register a test as the differential test of ``op``."""
    assert op in BY_NAME, op

    def deco(fn: Callable) -> Callable:
        COVERED[op] = fn
        return fn

    return deco


# ---------------------------------------------------------------------------------------------
# bundle construction


def act(name: str, dtype: DType, shape: Sequence[int], scale: float = 0.0, zp: int = 0,
        dyn: bool = False) -> TensorSpec:
    """An activation spec; ``dyn`` makes the leading dimension the dynamic batch (``-1``)."""
    shp = tuple(int(d) for d in shape)
    if dyn:
        shp = (-1,) + shp[1:]
    return TensorSpec(name, dtype, shp, float(np.float32(scale)), int(zp))


def const(name: str, arr: np.ndarray, scale: float = 0.0, zp: int = 0) -> TensorSpec:
    arr = np.asarray(arr)  # (not ascontiguousarray: it turns 0-d arrays into 1-d ones)
    return TensorSpec(name, DType.from_np(arr.dtype), tuple(arr.shape), float(np.float32(scale)), int(zp),
                      arr.tobytes())


def attrs_of(op: str, attrs: dict[str, object]) -> tuple[tuple[int, ...], ...]:
    names = BY_NAME[op].attrs
    assert set(attrs) == set(names), (op, sorted(attrs), names)
    return tuple(tuple(int(v) for v in (attrs[a] if isinstance(attrs[a], list | tuple) else [attrs[a]]))
                 for a in names)


def one_node(op: str, ins: Sequence[TensorSpec], out: TensorSpec, **attrs: object) -> Bundle:
    """A bundle of one node: tensors are the inputs (activations and constants) then the output."""
    tensors = tuple(ins) + (out,)
    node = Node(op, tuple(range(len(ins))), (len(ins),), attrs_of(op, attrs), name=op)
    return Bundle(tensors, (node,), tuple(i for i, t in enumerate(ins) if not t.is_const), (len(ins),),
                  {"test": op})


def _batch(b: Bundle, inputs: Sequence[np.ndarray]) -> int:
    for spec, x in zip(b.input_specs(), inputs, strict=True):
        if spec.shape and spec.shape[0] < 0:
            return x.shape[0] // -spec.shape[0]
    return 1


#: Extra checks run on every case that passed engine == reference (see :func:`also_check`).
_EXTRA_CHECKS: list[Callable[[Bundle, Sequence[np.ndarray]], object]] = []


@contextmanager
def also_check(fn: Callable[[Bundle, Sequence[np.ndarray]], object]) -> Iterator[None]:
    """While active, :func:`check` also calls ``fn(bundle, inputs)`` on every case that passed."""
    _EXTRA_CHECKS.append(fn)
    try:
        yield
    finally:
        _EXTRA_CHECKS.remove(fn)


def check(bundle: Bundle, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Run ``bundle`` on both paths (after a canonical encode/decode); outputs must match bit for bit."""
    b = decode_bundle(encode_bundle(bundle))
    fast = run(b, list(inputs))
    ref = run_reference(b, list(inputs))
    batch = _batch(b, inputs)
    for spec, f, r in zip(b.output_specs(), fast, ref, strict=True):
        want = spec.concrete_shape(batch)
        assert f.dtype == spec.dtype.np, f"engine output dtype {f.dtype}, bundle declares {spec.dtype.name}"
        assert r.dtype == spec.dtype.np, f"reference output dtype {r.dtype}, bundle declares {spec.dtype.name}"
        assert f.shape == want, f"engine output shape {f.shape}, bundle declares {want}"
        assert r.shape == want, f"reference output shape {r.shape}, bundle declares {want}"
        if f.tobytes() != r.tobytes():
            diff = np.argwhere(f != r)
            i = tuple(diff[0]) if len(diff) else ()
            pytest.fail(f"engine != reference at {len(diff)} elements; first {i}: engine {f[i]!r}, reference {r[i]!r}")
    for extra in list(_EXTRA_CHECKS):
        extra(b, inputs)
    return fast[0]


# ---------------------------------------------------------------------------------------------
# strategies

SCALES = st.floats(float(np.float32(1e-3)), 4.0, width=32)
INT32_ANY = st.integers(-(2**31), 2**31 - 1)
INT32_SMALL_OR_ANY = st.one_of(st.integers(-3000, 3000), INT32_ANY)


def zps(dtype: DType) -> st.SearchStrategy[int]:
    lo, hi = QRANGE[dtype]
    return st.integers(lo, hi)


@st.composite
def qspec(draw: st.DrawFn, dtypes: Sequence[DType] = Q_DTYPES) -> tuple[DType, float, int]:
    """(dtype, scale, zero point) of a quantized activation."""
    dt = draw(st.sampled_from(dtypes))
    return dt, draw(SCALES), draw(zps(dt))


def int_array(draw: st.DrawFn, dtype: DType | np.dtype, shape: Sequence[int],
              elements: st.SearchStrategy[int] | None = None) -> np.ndarray:
    npdt = dtype.np if isinstance(dtype, DType) else np.dtype(dtype)
    if elements is None:
        info = np.iinfo(npdt)
        elements = st.integers(int(info.min), int(info.max))
    return draw(hnp.arrays(npdt, tuple(shape), elements=elements))


def any_array(draw: st.DrawFn, dtype: DType, shape: Sequence[int]) -> np.ndarray:
    if dtype == FLOAT32:
        return draw(hnp.arrays(np.float32, tuple(shape), elements=st.floats(width=32, allow_nan=False)))
    if dtype == BOOL:
        return draw(hnp.arrays(np.bool_, tuple(shape), elements=st.booleans()))
    return int_array(draw, dtype, shape)


@st.composite
def mult_shift(draw: st.DrawFn) -> tuple[int, int]:
    """A requantization pair: either from a plausible real multiplier or anywhere in the legal range."""
    if draw(st.booleans()):
        return quantize_multiplier(draw(st.floats(1e-5, 4.0)))
    return draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 62))


@st.composite
def qminmax(draw: st.DrawFn, dtype: DType) -> tuple[int, int]:
    lo, hi = QRANGE[dtype]
    if draw(st.booleans()):
        return lo, hi
    a, b = sorted((draw(st.integers(lo, hi)), draw(st.integers(lo, hi))))
    return a, b


@st.composite
def requant_out(draw: st.DrawFn, n: int) -> tuple[DType, float, int, np.ndarray, np.ndarray, int, int]:
    """Output dtype/scale/zp, per-channel (size n) or per-tensor (size 1) mult/shift arrays, qmin/qmax."""
    dt, scale, zp = draw(qspec())
    size = n if draw(st.booleans()) else 1
    pairs = [draw(mult_shift()) for _ in range(size)]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    lo, hi = draw(qminmax(dt))
    return dt, scale, zp, mult, shift, lo, hi



def _gemm_node(op: str, x: TensorSpec, w: np.ndarray, bias: np.ndarray, out_shape: tuple[int, ...], raw: bool,
               rq: tuple, dyn: bool, **attrs: object) -> Bundle:
    ins = [x, const("w", w), const("b", bias)]
    if raw:
        return one_node(op, ins, act("y", INT32, out_shape, dyn=dyn), qmin=0, qmax=0, **attrs)
    dt, scale, zp, mult, shift, lo, hi = rq
    ins += [const("mult", mult), const("shift", shift)]
    return one_node(op, ins, act("y", dt, out_shape, scale, zp, dyn), qmin=lo, qmax=hi, **attrs)

