"""N-d index arithmetic of the scalar stepper (``fraud_vm.stepper``), on plain ints and tuples.

C-order ravel/unravel, numpy broadcasting, and the **sources** of the elementwise programs: for
output element ``o``, the operand ``(region, element)`` it reads. Each function costs O(rank) (a
concat source O(rank + inputs)); nothing is allocated in proportion to a tensor. The Solidity
verifier mirrors these functions with the same names (camelCase); numpy is never imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UnsupportedOp

Shape = tuple[int, ...]
Dims = tuple[tuple[int, int], ...]  # (size, stride) per dim, outermost first
Operand = tuple[int, int]


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for ``b > 0``."""
    return -(-a // b)


def unravel(index: int, shape: Shape) -> list[int]:
    """C-order coordinates of flat ``index`` in ``shape`` (every dim > 0)."""
    coords = [0] * len(shape)
    for d in range(len(shape) - 1, -1, -1):
        index, coords[d] = divmod(index, shape[d])
    return coords


def ravel(coords: Sequence[int], shape: Shape) -> int:
    """C-order flat index of ``coords`` in ``shape``."""
    index = 0
    for c, size in zip(coords, shape, strict=True):
        index = index * size + c
    return index


def strides(shape: Shape) -> Shape:
    """C-order element strides of ``shape``."""
    out, s = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        out[d] = s
        s *= shape[d]
    return tuple(out)


def ravel_dims(i: int, dims: Dims) -> int:
    """``offset(i, dims)``: unravel ``i`` over the dims' sizes and dot with their strides."""
    off = 0
    for size, stride in reversed(dims):
        i, q = divmod(i, size)
        off += q * stride
    return off


def broadcast_shape(shapes: Sequence[Shape]) -> Shape:
    """numpy's broadcast of ``shapes`` (right-aligned; each dim equal or 1); UnsupportedOp if none."""
    nd = max((len(s) for s in shapes), default=0)
    out = []
    for d in range(nd):
        sizes = {s[d - nd + len(s)] for s in shapes if d - nd + len(s) >= 0} - {1}
        if len(sizes) > 1:
            raise UnsupportedOp(f"shapes {list(shapes)} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def broadcast_source(coords: Sequence[int], shape: Shape) -> int:
    """Flat index in ``shape`` read by the broadcast output element at ``coords`` (right-aligned)."""
    skip, index = len(coords) - len(shape), 0
    for d, size in enumerate(shape):
        index = index * size + (0 if size == 1 else coords[skip + d])
    return index


# ---------------------------------------------------------------------------------------------
# sources: output element -> (region, element)


class Source:
    """What output element ``o`` of an elementwise program reads: ``at(o) -> (region, element)``."""

    def at(self, o: int) -> Operand:
        raise NotImplementedError


@dataclass(frozen=True)
class IdentitySource(Source):
    """``(region, o)``: same-shape elementwise ops and reshape."""

    region: int

    def at(self, o: int) -> Operand:
        return (self.region, o)


@dataclass(frozen=True)
class BroadcastSource(Source):
    """add / mul / where operand: ``broadcast_source(unravel(o, out), shape)``."""

    region: int
    out: Shape
    shape: Shape

    def at(self, o: int) -> Operand:
        return (self.region, broadcast_source(unravel(o, self.out), self.shape))


@dataclass(frozen=True)
class GatherIndexSource(Source):
    """gather's index operand: ``(1, (o div post) mod p)`` (``p`` indices, ``post`` = size after axis)."""

    post: int
    p: int

    def at(self, o: int) -> Operand:
        return (1, (o // self.post) % self.p)


@dataclass(frozen=True)
class GatherDataSource(Source):
    """gather's data base: ``(0, (o div (post·p))·n·post + o mod post)``; the step adds ``i·post``."""

    post: int
    p: int
    n: int

    def at(self, o: int) -> Operand:
        return (0, o // (self.post * self.p) * self.n * self.post + o % self.post)


@dataclass(frozen=True)
class ConcatSource(Source):
    """concat along ``axis``: the input whose range along the axis holds the coordinate."""

    out: Shape
    axis: int
    shapes: tuple[Shape, ...]

    def at(self, o: int) -> Operand:
        coords = unravel(o, self.out)
        c = coords[self.axis]
        for i, shape in enumerate(self.shapes):
            if c < shape[self.axis]:
                coords[self.axis] = c
                return (i, ravel(coords, shape))
            c -= shape[self.axis]
        raise UnsupportedOp("concat: element outside every input")  # unreachable: shapes are checked


@dataclass(frozen=True)
class TransposeSource(Source):
    """transpose by ``perm``: input coordinate ``perm[j]`` is output coordinate ``j``."""

    out: Shape
    perm: Shape
    shape: Shape

    def at(self, o: int) -> Operand:
        coords = unravel(o, self.out)
        src = [0] * len(self.shape)
        for j, p in enumerate(self.perm):
            src[p] = coords[j]
        return (0, ravel(src, self.shape))


@dataclass(frozen=True)
class SliceSource(Source):
    """slice: input coordinate ``start_d + c_d·step_d`` on the sliced dims, ``c_d`` on the others."""

    out: Shape
    starts: Shape
    steps: Shape
    shape: Shape

    def at(self, o: int) -> Operand:
        coords = unravel(o, self.out)
        for d, (s, st) in enumerate(zip(self.starts, self.steps, strict=True)):
            coords[d] = s + coords[d] * st
        return (0, ravel(coords, self.shape))
