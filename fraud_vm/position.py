"""Positions in a bisection game tree as generalized indices (the Python mirror of ``LibPosition``).

A position is the generalized index ``2**depth + index_at_depth`` of a node in a complete binary
tree (the root is ``1``). In a game of maximum depth ``max_depth`` the leaves are the steps of a
trace: leaf ``i`` is the transition from state ``i`` to state ``i + 1``, and a claim placed at a
position commits to the state *after* its :func:`trace_index`, the rightmost leaf below it. So the
root claim commits to the final state, and the left child of a position commits to the midpoint of
the parent's range.

The function names are Optimism's ``LibPosition`` names in snake_case (``depth``,
``index_at_depth``, ``left``, ``right``, ``parent``, ``right_index``, ``trace_index``,
``trace_ancestor``, ``trace_ancestor_bounded``, ``move``) with the same semantics, so that the
Solidity game can use ``LibPosition`` (``type Position is uint128``) unchanged. Positions are plain
non-negative ``int`` values; every function checks its arguments and raises :class:`PositionError`.
"""

from __future__ import annotations

from .errors import FraudVMError

MAX_POSITION_BITS = 128
"""Positions must fit ``uint128`` (``LibPosition``'s ``Position`` type)."""

MAX_DEPTH = MAX_POSITION_BITS - 2
"""The deepest tree whose positions (and their ``move``) still fit 128 bits."""


class PositionError(FraudVMError, ValueError):
    """A position or depth outside the tree (0 is never a position; depths are 0..MAX_DEPTH)."""


def _check(position: int) -> int:
    if not isinstance(position, int) or position < 1 or position.bit_length() > MAX_POSITION_BITS:
        raise PositionError(f"{position!r} is not a position (a generalized index 1 <= p < 2**128)")
    return position


def _check_depth(d: int) -> int:
    if not isinstance(d, int) or not 0 <= d <= MAX_DEPTH:
        raise PositionError(f"depth {d!r} is outside 0..{MAX_DEPTH}")
    return d


def wrap(depth_: int, index_at_depth_: int) -> int:
    """The generalized index ``2**depth + index_at_depth`` (LibPosition ``wrap``)."""
    _check_depth(depth_)
    if not isinstance(index_at_depth_, int) or not 0 <= index_at_depth_ < (1 << depth_):
        raise PositionError(f"index {index_at_depth_!r} does not exist at depth {depth_}")
    return (1 << depth_) | index_at_depth_


def depth(position: int) -> int:
    """Depth of a position: the index of its most significant bit (the root has depth 0)."""
    return _check(position).bit_length() - 1


def index_at_depth(position: int) -> int:
    """Index of a position among the nodes of its depth, counted from the left (0-based)."""
    return position ^ (1 << depth(position))


def left(position: int) -> int:
    """The left child (``2p``)."""
    return _check(_check(position) << 1)


def right(position: int) -> int:
    """The right child (``2p + 1``)."""
    return _check((_check(position) << 1) | 1)


def parent(position: int) -> int:
    """The parent (``p // 2``); the root has none."""
    if _check(position) == 1:
        raise PositionError("the root position has no parent")
    return position >> 1


def right_index(position: int, max_depth: int) -> int:
    """The position of the rightmost descendant of ``position`` at depth ``max_depth``."""
    d = depth(position)
    _check_depth(max_depth)
    if d > max_depth:
        raise PositionError(f"position {position} (depth {d}) lies below max depth {max_depth}")
    remaining = max_depth - d
    return (position << remaining) | ((1 << remaining) - 1)


def trace_index(position: int, max_depth: int) -> int:
    """The trace (leaf) index the claim at ``position`` commits to: that of its rightmost leaf."""
    return index_at_depth(right_index(position, max_depth))


def trace_ancestor(position: int) -> int:
    """The highest ancestor of ``position`` (itself included) committing to the same trace index.

    That is ``position`` with its trailing one bits shifted out (a right child commits to the same
    leaf as its parent).
    """
    p = _check(position)
    lowest_unset = ~p & (p + 1)
    ancestor = p >> (lowest_unset.bit_length() - 1)
    return ancestor or 1


def trace_ancestor_bounded(position: int, upper_bound_exclusive: int) -> int:
    """:func:`trace_ancestor`, but never above depth ``upper_bound_exclusive`` (exclusive).

    Used when a tree is split into phases: the ancestor search must stop at the phase boundary.
    """
    d = depth(position)
    _check_depth(upper_bound_exclusive)
    if d <= upper_bound_exclusive:
        raise PositionError(f"position depth {d} is not below the bound {upper_bound_exclusive}")
    ancestor = trace_ancestor(position)
    if depth(ancestor) <= upper_bound_exclusive:
        ancestor = right_index(ancestor, upper_bound_exclusive + 1)
    return ancestor


def move(position: int, is_attack: bool) -> int:
    """The position of a claim answering the claim at ``position``.

    An attack (disagreeing with the claim) goes to the left child: the midpoint of the claim's range.
    A defense (agreeing with it) goes to the left child of its right sibling: the midpoint between
    this claim and the next claim to its right. Same as LibPosition: ``(p | !is_attack) << 1``.
    """
    p = _check(position)
    return _check((p | (0 if is_attack else 1)) << 1)


def leaf_range(position: int, max_depth: int) -> tuple[int, int]:
    """The leaves ``[first, last]`` below ``position`` at ``max_depth`` (both inclusive)."""
    last = trace_index(position, max_depth)
    return last - (1 << (max_depth - depth(position))) + 1, last
