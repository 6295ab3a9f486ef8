"""Fast path == reference interpreter, bit for bit: data movement, cast and select ops, plus the
coverage check (every op of ``opml.ops`` has a differential test) and the full example models.

The data-movement ops share their numpy code with the reference, so each test here also checks an
independent element-by-element oracle. Helpers: ``engine_cases.py``; arithmetic ops:
``test_engine_reference.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from engine_cases import (
    ALL_DTYPES,
    BOOL,
    COVERED,
    FLOAT32,
    INT8,
    INT32,
    INT64,
    Q_DTYPES,
    SETTINGS,
    UINT8,
    act,
    any_array,
    check,
    const,
    covers,
    int_array,
    one_node,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from opml.bundle import Bundle, DType, TensorSpec
from opml.engine import run
from opml.errors import InferenceInputError
from opml.ops import BY_NAME
from opml.reference import run_reference

# ---------------------------------------------------------------------------------------------
# data movement (shared numpy code with the reference: each also has an independent oracle)


def _divisors(v: int) -> list[int]:
    return [d for d in range(1, v + 1) if v % d == 0]


@st.composite
def factorization(draw: st.DrawFn, total: int) -> tuple[int, ...]:
    nd = draw(st.integers(1, 4))
    dims, rem = [], total
    for _ in range(nd - 1):
        d = draw(st.sampled_from(_divisors(rem)))
        dims.append(d)
        rem //= d
    return tuple(dims + [rem])


@covers("reshape")
@SETTINGS
@given(st.data())
def test_reshape(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    x = any_array(draw, dt, shape)
    if draw(st.booleans()):  # dynamic batch: (-1, rest...) -> (-k, rest'...)
        per = int(np.prod(shape[1:], dtype=np.int64))
        k = draw(st.sampled_from(_divisors(per)))
        rest = draw(factorization(per // k))
        bundle = one_node("reshape", [act("x", dt, shape, dyn=True)], TensorSpec("y", dt, (-k,) + rest))
        out_shape = (k * shape[0],) + rest
    else:
        out_shape = draw(factorization(x.size))
        bundle = one_node("reshape", [act("x", dt, shape)], act("y", dt, out_shape))
    y = check(bundle, [x])
    assert y.shape == out_shape and y.tobytes() == x.tobytes()


@covers("transpose")
@SETTINGS
@given(st.data())
def test_transpose(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    perm = draw(st.permutations(range(len(shape))))
    x = any_array(draw, dt, shape)
    out_shape = tuple(shape[p] for p in perm)
    dyn = perm[0] == 0 and draw(st.booleans())
    y = check(one_node("transpose", [act("x", dt, shape, dyn=dyn)], act("y", dt, out_shape, dyn=dyn), perm=perm), [x])
    for i in np.ndindex(out_shape):
        src = [0] * len(shape)
        for j, p in enumerate(perm):
            src[p] = i[j]
        assert y[i].tobytes() == x[tuple(src)].tobytes()


@covers("concat")
@SETTINGS
@given(st.data())
def test_concat(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    base = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3))
    axis = draw(st.integers(0, len(base) - 1))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    xs = [any_array(draw, dt, base[:axis] + (s,) + base[axis + 1:]) for s in sizes]
    out_shape = base[:axis] + (sum(sizes),) + base[axis + 1:]
    ins = [act(f"x{i}", dt, x.shape) for i, x in enumerate(xs)]
    y = check(one_node("concat", ins, act("y", dt, out_shape), axis=axis), xs)
    start = 0
    for x in xs:
        idx = (slice(None),) * axis + (slice(start, start + x.shape[axis]),)
        assert y[idx].tobytes() == x.tobytes()
        start += x.shape[axis]


@covers("slice")
@SETTINGS
@given(st.data())
def test_slice(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
    x = any_array(draw, dt, shape)
    dyn = draw(st.booleans())
    starts, ends, steps, ranges = [], [], [], []
    for a, d in enumerate(shape):
        if a == 0 and dyn:  # what the converter emits for the batch axis
            s, e, st_ = 0, 1 << 62, 1
            r = range(d)
        else:  # normalized values (slice.indices), the canonical form: 0 <= start, end >= -1
            raw = slice(draw(st.integers(-d - 2, d + 2)), draw(st.integers(-d - 2, d + 2)),
                        draw(st.sampled_from([-3, -2, -1, 1, 2, 3])))
            s, e, st_ = raw.indices(d)
            r = range(s, e, st_)
            if s < 0:  # an empty backward range starting before the first element (see test_convert_ops)
                s, e = 0, 0
        starts.append(s), ends.append(e), steps.append(st_), ranges.append(list(r))
    out_shape = tuple(len(r) for r in ranges)
    y = check(one_node("slice", [act("x", dt, shape, dyn=dyn)], act("y", dt, out_shape, dyn=dyn), starts=starts,
                       ends=ends, steps=steps), [x])
    if all(out_shape):
        assert y.tobytes() == x[np.ix_(*ranges)].tobytes()


@covers("gather")
@SETTINGS
@given(st.data())
def test_gather(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
    axis = draw(st.integers(0, len(shape) - 1))
    n = shape[axis]
    idt = draw(st.sampled_from([INT64, INT32]))
    ishape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    idx = int_array(draw, idt, ishape, st.integers(-n, n - 1))
    x = any_array(draw, dt, shape)
    out_shape = shape[:axis] + ishape + shape[axis + 1:]
    mode = draw(st.sampled_from(["data_act", "idx_act", "both_act"]))
    dspec = const("x", x) if mode == "idx_act" else act("x", dt, shape)
    ispec = const("i", idx) if mode == "data_act" else act("i", idt, ishape)
    values = [v for v, s in ((x, dspec), (idx, ispec)) if not s.is_const]
    y = check(one_node("gather", [dspec, ispec], act("y", dt, out_shape), axis=axis), values)
    for o in np.ndindex(out_shape):
        pre, j, post = o[:axis], o[axis:axis + len(ishape)], o[axis + len(ishape):]
        assert y[o].tobytes() == x[pre + (int(idx[j]) % n,) + post].tobytes()


def test_gather_index_out_of_range() -> None:
    b = one_node("gather", [const("x", np.arange(6, dtype=np.int8)), act("i", INT64, (2,))], act("y", INT8, (2,)),
                 axis=0)
    for bad in ([0, 6], [-7, 0]):
        with pytest.raises(InferenceInputError, match="out of range"):
            run(b, [np.array(bad, np.int64)])


@covers("argmax")
@SETTINGS
@given(st.data())
def test_argmax(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from([INT8, UINT8, INT32, FLOAT32]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    axis, keep, last = draw(st.integers(0, len(shape) - 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1))
    if dt == FLOAT32:
        x = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([-np.inf, -1.5, 0.0, 2.0, np.inf])))
    else:
        x = int_array(draw, dt, shape, st.integers(0, 2))  # many ties
    out_shape = tuple(1 if a == axis else d for a, d in enumerate(shape) if keep or a != axis)
    y = check(one_node("argmax", [act("x", dt, shape)], act("y", INT64, out_shape), axis=axis, keepdims=keep,
                       select_last_index=last), [x])
    moved = np.moveaxis(x, axis, -1)
    for i in np.ndindex(moved.shape[:-1]):
        row = moved[i].tolist()
        best = max(row)
        want = max(j for j, v in enumerate(row) if v == best) if last else row.index(best)
        o = i[:axis] + ((0,) if keep else ()) + i[axis:]
        assert int(y[o]) == want


def _int_to_f32(v: int) -> np.float32:
    """Correctly rounded (ties to even) float32 of an integer, in integer arithmetic."""
    a = abs(v)
    if a.bit_length() > 24:
        sh = a.bit_length() - 24
        q, r = divmod(a, 1 << sh)
        half = 1 << (sh - 1)
        if r > half or (r == half and q & 1):
            q += 1
        a = q << sh
    return np.float32(-a if v < 0 else a)


def _cast_oracle(v: object, src: DType, dst: DType) -> object:
    if dst == BOOL:
        return bool(v != 0)
    if src == BOOL:
        v = int(bool(v))
    if dst == FLOAT32:
        return np.float32(v) if src == FLOAT32 else _int_to_f32(int(v))
    info = np.iinfo(dst.np)
    if src == FLOAT32:
        f = float(v)
        if math.isinf(f):
            return int(info.max) if f > 0 else int(info.min)
        return min(max(math.trunc(f), int(info.min)), int(info.max))  # saturating
    bits = 8 * dst.np.itemsize
    w = int(v) % (1 << bits)  # integer narrowing wraps (two's complement)
    return w - (1 << bits) if info.min < 0 and w >= 1 << (bits - 1) else w


@covers("cast")
@SETTINGS
@given(st.data())
def test_cast(data: st.DataObject) -> None:
    draw = data.draw
    src, dst = draw(st.sampled_from(ALL_DTYPES)), draw(st.sampled_from(ALL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=5))
    if src == FLOAT32:
        big = st.sampled_from([2.0**31, -(2.0**31), 2.0**63, -(2.0**63), 2.0**31 - 128, 255.5, -0.5, -128.9, 1e30])
        x = draw(hnp.arrays(np.float32, shape, elements=st.one_of(st.floats(width=32, allow_nan=False), big)))
    else:
        x = any_array(draw, src, shape)
    y = check(one_node("cast", [act("x", src, shape)], act("y", dst, shape)), [x])
    for i in np.ndindex(shape):
        want = _cast_oracle(x[i], src, dst)
        got = y[i]
        assert np.array(got).tobytes() == np.array(want, dtype=dst.np).tobytes(), (x[i], src, dst, got, want)


def test_scalar_input_keeps_its_shape() -> None:
    """A 0-d graph input stays 0-d (np.ascontiguousarray would make it 1-d)."""
    b = one_node("cast", [act("x", INT32, ())], act("y", INT64, ()))
    check(b, [np.array(7, np.int32)])
    g = one_node("gather", [const("x", np.arange(5, dtype=np.int8)), act("i", INT64, ())], act("y", INT8, ()), axis=0)
    assert check(g, [np.array(-2, np.int64)]) == 3


def test_cast_nan_to_int_is_an_input_error() -> None:
    b = one_node("cast", [act("x", FLOAT32, (2,))], act("y", INT32, (2,)))
    with pytest.raises(InferenceInputError, match="NaN"):
        run(b, [np.array([1.0, np.nan], np.float32)])


@covers("flip_sign_bit")
@SETTINGS
@given(st.data())
def test_flip_sign_bit(data: st.DataObject) -> None:
    src = data.draw(st.sampled_from(Q_DTYPES))
    dst = UINT8 if src == INT8 else INT8
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    x = int_array(data.draw, src, shape)
    dyn = data.draw(st.booleans())
    y = check(one_node("flip_sign_bit", [act("x", src, shape, 0.5, 3, dyn)], act("y", dst, shape, 0.5, 3 + 128, dyn)),
              [x])
    assert np.array_equal(y.astype(np.int64), x.astype(np.int64) + (128 if src == INT8 else -128))


@covers("where")
@SETTINGS
@given(st.data())
def test_where(data: st.DataObject) -> None:
    draw = data.draw
    dt = draw(st.sampled_from(ALL_DTYPES))
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=1, max_dims=3, max_side=3))
    sc, sx, sy = shapes.input_shapes
    c = draw(hnp.arrays(np.bool_, sc, elements=st.booleans()))
    x, y = any_array(draw, dt, sx), any_array(draw, dt, sy)
    out = check(one_node("where", [act("c", BOOL, sc), act("x", dt, sx), act("y", dt, sy)],
                         act("z", dt, shapes.result_shape)), [c, x, y])
    cb, xb, yb = np.broadcast_arrays(c, x, y)
    for i in np.ndindex(shapes.result_shape):
        assert out[i].tobytes() == (xb[i] if cb[i] else yb[i]).tobytes()


# ---------------------------------------------------------------------------------------------
# coverage and whole models


def test_every_op_is_covered() -> None:
    """A new op in opml.ops needs a differential test (decorated with @covers) in one of the two files."""
    import test_engine_reference  # noqa: F401  (its @covers tests register themselves on import)

    missing = sorted(set(BY_NAME) - set(COVERED))
    assert not missing, f"ops without an engine == reference test: {missing}"


def _all_tensors_variant(b: Bundle) -> Bundle:
    """The same graph with every node output also declared a graph output (to compare intermediates)."""
    outs = tuple(dict.fromkeys(b.outputs + tuple(n.outputs[0] for n in b.nodes)))
    return Bundle(b.tensors, b.nodes, b.inputs, outs, b.metadata)


# samples compared per model (the reference runs the CNN at ~0.3 s per sample)
MODEL_SAMPLES = {"digits_mlp": 16, "digits_cnn": 3, "encoder": 8}


@pytest.mark.parametrize("name", sorted(MODEL_SAMPLES))
def test_example_model_engine_equals_reference(examples: dict, name: str) -> None:
    ex = examples[name]
    n = MODEL_SAMPLES[name]
    x = np.concatenate([ex.test_x[:n - 1], ex.test_x[-1:]])
    b = _all_tensors_variant(ex.bundle)
    fast, ref = run(b, [x]), run_reference(b, [x])
    for spec, f, r in zip(b.output_specs(), fast, ref, strict=True):
        assert f.dtype == r.dtype and f.shape == r.shape, spec.name
        assert f.tobytes() == r.tobytes(), f"{name}: tensor {spec.name!r} differs between engine and reference"
    # the batched engine run equals per-sample runs (no cross-sample effects)
    single = np.concatenate([run(ex.bundle, [x[i:i + 1]])[0] for i in range(n)])
    assert single.tobytes() == fast[0].tobytes()
