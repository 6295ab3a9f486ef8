"""AILib's float32 helpers, run in a Prague EVM against numpy float32 and exact rationals.

The reference for ``value / scale -> float32`` picks, among numpy's float32 nearest the double
and its two neighbours, the one closest to the exact fraction (ties to the even bit pattern); the
reference for ``float32 * scale -> int`` is Python's exact ``round(Fraction)`` (ties to even).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

MAX_F32 = Fraction(float(np.finfo(np.float32).max))
#: Magnitudes from here on round (ties to even) past the largest float32, to infinity.
OVERFLOW_AT = MAX_F32 + 2**103


def f32_bits(x: np.float32) -> int:
    """The bit pattern of a numpy float32."""
    return int(np.array([x], dtype="<f4").view("<u4")[0])


def f32_from_bits(bits: int) -> np.float32:
    """The numpy float32 with this bit pattern."""
    return np.array([bits], dtype="<u4").view("<f4")[0]


def nearest_f32_bits(value: Fraction) -> int:
    """Bits of the float32 nearest to ``value`` (ties to even), by exact comparison."""
    with np.errstate(over="ignore"):
        guess = np.float32(float(value))
        candidates = {guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))}
    finite = [c for c in candidates if np.isfinite(c)]
    best = min(finite, key=lambda c: (abs(Fraction(float(c)) - value), f32_bits(c) & 1))
    if best == 0:
        return 0  # +0 (the contract never produces -0)
    return f32_bits(best)


def scaled_reference(bits: int, scale: int) -> int:
    """round(float32(bits) * scale), ties to even, exactly."""
    return round(Fraction(float(f32_from_bits(bits))) * scale)


values = st.integers(min_value=-(2**200), max_value=2**200)
scales = st.integers(min_value=1, max_value=2**128 - 1)
finite_bits = st.integers(min_value=0, max_value=2**32 - 1).filter(lambda b: (b >> 23) & 0xFF != 0xFF)


@settings(max_examples=120, deadline=None)
@given(value=values, scale=scales)
def test_float32_from_scaled_is_correctly_rounded(harness, value: int, scale: int) -> None:
    exact = Fraction(value, scale)
    result = harness.call("float32FromScaled", value, scale)
    if abs(exact) >= OVERFLOW_AT:
        assert result.error == ("Float32OutOfRange", (0, value))
    else:
        assert result.ok and result.values[0] == nearest_f32_bits(exact)


@settings(max_examples=60, deadline=None)
@given(value=st.integers(min_value=-(2**40), max_value=2**40), shift=st.integers(min_value=0, max_value=127))
def test_encode_matches_numpy_where_the_double_is_exact(harness, value: int, shift: int) -> None:
    scale = 1 << shift
    expected = np.array([value / scale], dtype="<f4").tobytes()
    assert harness.value("encodeFloat32FromScaled", [value], scale) == expected


def test_subnormals_ties_and_extremes(harness) -> None:
    cases = [
        (1, 2**127 + 1),  # subnormal range
        (3, 2**127 - 1),
        (1, 2**126 + 1),  # just below the smallest normal: rounds to it or stays subnormal
        (2**24 + 1, 1),  # tie between two float32: even mantissa wins
        (2**24 + 3, 1),
        (-(2**24 + 1), 1),
        (1, 3),
        (-2, 3),
        (int(MAX_F32), 1),  # largest finite float32
        (int(OVERFLOW_AT) - 1, 1),  # rounds down to it
        (2**254, 2**127 - 1),  # ~2^127: in range
    ]
    for value, scale in cases:
        assert harness.value("float32FromScaled", value, scale) == nearest_f32_bits(Fraction(value, scale)), (
            value,
            scale,
        )
    assert harness.value("float32FromScaled", 0, 7) == 0


def test_float32_range_errors(harness) -> None:
    too_big = harness.call("float32FromScaled", int(OVERFLOW_AT), 1)  # the tie rounds to 2^128
    assert too_big.error == ("Float32OutOfRange", (0, int(OVERFLOW_AT)))
    minimum = -(2**255)
    assert harness.call("float32FromScaled", minimum, 1).error == ("Float32OutOfRange", (0, minimum))
    assert harness.call("float32FromScaled", 1, 0).error == ("InvalidScale", (0,))
    assert harness.call("float32FromScaled", 1, 2**128).error == ("InvalidScale", (2**128,))
    batch = harness.call("encodeFloat32FromScaled", [1, 2, 2**200], 1)
    assert batch.error == ("Float32OutOfRange", (2, 2**200))


@settings(max_examples=120, deadline=None)
@given(bits=finite_bits, scale=scales)
def test_float32_to_scaled_is_correctly_rounded(harness, bits: int, scale: int) -> None:
    expected = scaled_reference(bits, scale)
    result = harness.call("float32ToScaled", bits, scale)
    if abs(expected) >= 2**255:
        assert result.error == ("ScaledOverflow", (0, bits))
    else:
        assert result.ok and result.values[0] == expected


@settings(max_examples=40, deadline=None)
@given(
    xs=st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=0, max_size=12),
    shift=st.integers(min_value=0, max_value=40),
)
def test_round_trip_with_numpy_float32(harness, xs: list[float], shift: int) -> None:
    arr = np.array(xs, dtype="<f4")
    scale = 1 << shift
    decoded = harness.value("decodeFloat32ToScaled", arr.tobytes(), scale)
    assert list(decoded) == [scaled_reference(f32_bits(x), scale) for x in arr]
    # Encoding the scaled integers back gives the float32 nearest to them / scale: the original
    # value whenever the scaling was exact (every element with at least `-shift` exponent room).
    encoded = harness.value("encodeFloat32FromScaled", list(decoded), scale)
    back = np.frombuffer(encoded, dtype="<f4")
    expected = [nearest_f32_bits(Fraction(v, scale)) for v in decoded]
    assert [f32_bits(b) for b in back] == expected
    for x, b, v in zip(arr, back, decoded, strict=True):
        if Fraction(float(x)) * scale == v:
            assert b == x or (b == 0 and x == 0)


def test_decode_errors(harness) -> None:
    nan = np.array([1.0, np.nan], dtype="<f4").tobytes()
    assert harness.call("decodeFloat32ToScaled", nan, 1).error == ("Float32NotFinite", (1, 0x7FC00000))
    inf = np.array([-np.inf], dtype="<f4").tobytes()
    assert harness.call("decodeFloat32ToScaled", inf, 1).error == ("Float32NotFinite", (0, 0xFF800000))
    assert harness.call("decodeFloat32ToScaled", b"\x00" * 5, 1).error == ("InvalidTensorLength", (5, 4))
    big = np.array([np.finfo(np.float32).max], dtype="<f4")
    largest = harness.value("decodeFloat32ToScaled", big.tobytes(), 2**127)
    assert list(largest) == [scaled_reference(f32_bits(big[0]), 2**127)]
    assert harness.call("decodeFloat32ToScaled", big.tobytes(), 2**127 + 2**104).error == (
        "ScaledOverflow",
        (0, f32_bits(big[0])),
    )
    assert harness.call("float32At", b"\x00" * 8, 2).error == ("InvalidTensorLength", (8, 4))


@settings(max_examples=60, deadline=None)
@given(
    xs=st.lists(
        st.one_of(
            st.floats(width=32, allow_nan=False),
            st.sampled_from([0.0, -0.0, float("inf"), float("-inf"), -1.0, -1e-45]),
        ),
        min_size=1,
        max_size=16,
    )
)
def test_argmax_float32_matches_numpy(harness, xs: list[float]) -> None:
    arr = np.array(xs, dtype="<f4")
    assert harness.value("argmaxFloat32", arr.tobytes()) == int(np.argmax(arr))


def test_argmax_float32_edges(harness) -> None:
    negatives = np.array([-3.5, -0.25, -7.0, -0.25], dtype="<f4")
    assert harness.value("argmaxFloat32", negatives.tobytes()) == 1
    zeros = np.array([-0.0, 0.0], dtype="<f4")
    assert harness.value("argmaxFloat32", zeros.tobytes()) == 0  # -0 == +0: first wins
    nan = np.array([1.0, np.nan], dtype="<f4").tobytes()
    assert harness.call("argmaxFloat32", nan).error == ("Float32NotFinite", (1, 0x7FC00000))
    assert harness.call("argmaxFloat32", b"").error == ("EmptyTensor", ())
    assert harness.call("argmaxFloat32", b"\x00" * 6).error == ("InvalidTensorLength", (6, 4))


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=40), scale=st.integers(min_value=1, max_value=2**128 - 1))
def test_encode_float32_from_uint8(harness, data: bytes, scale: int) -> None:
    encoded = harness.value("encodeFloat32FromUint8", data, scale)
    assert encoded == harness.value("encodeFloat32FromScaled", list(data), scale)
    expected = [nearest_f32_bits(Fraction(b, scale)) for b in data]
    assert list(np.frombuffer(encoded, dtype="<u4")) == expected
    assert harness.call("encodeFloat32FromUint8", data, 0).error == ("InvalidScale", (0,))


def test_float32_to_scaled_ties_go_to_even(harness) -> None:
    halves = np.array([0.5, 1.5, 2.5, -2.5, -0.5, 3.5, 2**-130, -0.0], dtype="<f4")
    assert list(harness.value("decodeFloat32ToScaled", halves.tobytes(), 1)) == [0, 2, 2, -2, 0, 4, 0, 0]
    assert harness.value("float32ToScaled", f32_bits(np.float32(0.75)), 2) == 2  # 1.5 -> 2
    assert harness.value("float32ToScaled", f32_bits(np.float32(1.25)), 2) == 2  # 2.5 -> 2
    assert harness.value("float32ToScaled", f32_bits(np.float32(0.1)), 10) == 1


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=-(2**23), max_value=2**23),
    shift=st.integers(min_value=1, max_value=30),
    scale=st.integers(min_value=1, max_value=64),
)
def test_float32_to_scaled_near_halves(harness, n: int, shift: int, scale: int) -> None:
    # n / 2^shift is exact in float32; times small scales it often lands on a half.
    x = np.float32(Fraction(n, 2**shift))
    assert harness.value("float32ToScaled", f32_bits(x), scale) == round(Fraction(n, 2**shift) * scale)


@settings(max_examples=30, deadline=None)
@given(value=st.integers(min_value=-3, max_value=3), scale=st.integers(min_value=2**125, max_value=2**128 - 1))
def test_float32_from_scaled_subnormals(harness, value: int, scale: int) -> None:
    assert harness.value("float32FromScaled", value, scale) == nearest_f32_bits(Fraction(value, scale))
