"""Position math (generalized indices) against its defining properties and LibPosition's examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_vm import position as P

MAX_D = 40


@st.composite
def positions(draw: st.DrawFn, max_depth: int = MAX_D) -> tuple[int, int]:
    """(position, max_depth) with the position at or above max_depth."""
    md = draw(st.integers(0, max_depth))
    d = draw(st.integers(0, md))
    i = draw(st.integers(0, (1 << d) - 1))
    return P.wrap(d, i), md


@settings(max_examples=300, deadline=None)
@given(st.integers(0, P.MAX_DEPTH).flatmap(lambda d: st.tuples(st.just(d), st.integers(0, (1 << d) - 1))))
def test_wrap_roundtrip(di: tuple[int, int]) -> None:
    d, i = di
    p = P.wrap(d, i)
    assert p == (1 << d) + i
    assert P.depth(p) == d and P.index_at_depth(p) == i


@settings(max_examples=300, deadline=None)
@given(positions())
def test_children_partition_parent_range(pm: tuple[int, int]) -> None:
    p, md = pm
    first, last = P.leaf_range(p, md)
    assert last == P.trace_index(p, md)
    assert last - first + 1 == 1 << (md - P.depth(p))
    if P.depth(p) < md:
        lf, ll = P.leaf_range(P.left(p), md)
        rf, rl = P.leaf_range(P.right(p), md)
        assert (lf, rl) == (first, last) and ll + 1 == rf
        assert P.parent(P.left(p)) == p == P.parent(P.right(p))
        # the right child commits to the same leaf as its parent
        assert P.trace_index(P.right(p), md) == P.trace_index(p, md)


@settings(max_examples=300, deadline=None)
@given(positions(), st.booleans())
def test_move_bisects(pm: tuple[int, int], is_attack: bool) -> None:
    p, md = pm
    if P.depth(p) >= md:
        return
    q = P.move(p, is_attack)
    assert P.depth(q) == P.depth(p) + 1
    first, last = P.leaf_range(p, md)
    if is_attack:
        # midpoint of the attacked claim's own range
        assert q == P.left(p)
        assert P.trace_index(q, md) == first + ((last - first + 1) >> 1) - 1
    else:
        # midpoint between this claim and the next claim to its right (its right sibling's range)
        assert P.parent(q) == p | 1
        if p & 1 == 0:
            sf, sl = P.leaf_range(p | 1, md)
            assert sf == last + 1
            assert P.trace_index(q, md) == sf + ((sl - sf + 1) >> 1) - 1


@settings(max_examples=300, deadline=None)
@given(positions())
def test_trace_ancestor(pm: tuple[int, int]) -> None:
    p, md = pm
    a = P.trace_ancestor(p)
    assert P.trace_index(a, md) == P.trace_index(p, md)
    # an ancestor of p (or p itself)
    assert p >> (P.depth(p) - P.depth(a)) == a
    # and the highest one: its parent commits to another leaf (unless it is the root)
    if a != 1:
        assert P.trace_index(P.parent(a), md) != P.trace_index(p, md)


@settings(max_examples=200, deadline=None)
@given(positions(), st.data())
def test_trace_ancestor_bounded(pm: tuple[int, int], data: st.DataObject) -> None:
    p, md = pm
    if P.depth(p) == 0:
        return
    bound = data.draw(st.integers(0, P.depth(p) - 1))
    a = P.trace_ancestor_bounded(p, bound)
    assert P.depth(a) > bound
    assert P.trace_index(a, md) == P.trace_index(p, md)
    assert p >> (P.depth(p) - P.depth(a)) == a


def test_libposition_examples() -> None:
    assert P.wrap(0, 0) == 1
    assert P.move(1, True) == 2 and P.move(2, True) == 4 and P.move(2, False) == 6
    assert P.move(3, False) == 6 and P.move(3, True) == 6
    assert P.trace_index(1, 4) == 15 and P.trace_index(2, 4) == 7 and P.trace_index(6, 4) == 11
    assert P.right_index(2, 3) == 0b1011
    assert P.trace_ancestor(0b1011) == 0b10 and P.trace_ancestor(0b111) == 1 and P.trace_ancestor(0b100) == 0b100
    assert P.trace_ancestor_bounded(0b10111, 2) == 0b1011


@pytest.mark.parametrize("bad", [0, -1, 1 << 128, 1.5, "1"])
def test_bad_positions(bad: object) -> None:
    with pytest.raises(P.PositionError):
        P.depth(bad)  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    with pytest.raises(P.PositionError):
        P.wrap(2, 4)
    with pytest.raises(P.PositionError):
        P.wrap(P.MAX_DEPTH + 1, 0)
    with pytest.raises(P.PositionError):
        P.parent(1)
    with pytest.raises(P.PositionError):
        P.right_index(P.wrap(5, 0), 4)
    with pytest.raises(P.PositionError):
        P.trace_ancestor_bounded(P.wrap(3, 1), 3)
    with pytest.raises(P.PositionError):
        P.move(1 << 127, True)
