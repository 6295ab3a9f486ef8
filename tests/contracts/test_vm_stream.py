"""The Solidity index helpers and elementwise/rows programs against ``fraud_vm`` (differential).

- ``LibIndexing`` (through ``LibIndexingHarness``) against ``fraud_vm.indexing`` on seeded random
  shapes: every helper returns the same value, ``broadcastShape`` reverts ``UnsupportedOp`` exactly
  where Python raises, and every source kind gives the same operand for every output element.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from fraud_vm import indexing as X

SEEDS = [0, 1, 2]


def pack(op: tuple[int, int]) -> int:
    """A Python operand ``(region, element)`` packed as the contracts hold it (PAD = all ones)."""
    region, element = op
    return (1 << 256) - 1 if (region, element) == (-1, -1) else region << 128 | element


def _shape(rng: random.Random, lo: int = 0, hi: int = 4, dim: int = 5) -> tuple[int, ...]:
    return tuple(rng.randint(1, dim) for _ in range(rng.randint(lo, hi)))


# ---------------------------------------------------------------------------------------------
# LibIndexing


@pytest.fixture(scope="module")
def idx(prague: Any) -> Any:
    return prague.deploy("LibIndexingHarness")


def _source_struct(kind: int, **f: Any) -> tuple[Any, ...]:
    """The ABI tuple of a ``Source`` struct (unused fields zero / empty)."""
    return (kind, f.get("region", 0), list(f.get("out", ())), list(f.get("shape", ())), f.get("axis", 0),
            [list(s) for s in f.get("shapes", ())], list(f.get("perm", ())), list(f.get("starts", ())),
            list(f.get("steps", ())), f.get("post", 0), f.get("p", 0), f.get("n", 0))


def _sources(rng: random.Random) -> list[tuple[X.Source, tuple[Any, ...], int]]:
    """One random instance of every source kind: (Python source, Solidity struct, output size)."""
    out: list[tuple[X.Source, tuple[Any, ...], int]] = []
    shape = _shape(rng, 0, 4)
    out.append((X.IdentitySource(2), _source_struct(0, region=2), math.prod(shape)))
    bshape = tuple(d if rng.random() < 0.5 else 1 for d in shape)[rng.randint(0, len(shape)):]
    out.append((X.BroadcastSource(1, shape, bshape), _source_struct(1, region=1, out=shape, shape=bshape),
                math.prod(shape)))
    post, p, n = rng.randint(1, 6), rng.randint(1, 5), rng.randint(0, 4)
    size = rng.randint(1, 3) * post * p
    out.append((X.GatherIndexSource(post, p), _source_struct(2, post=post, p=p), size))
    out.append((X.GatherDataSource(post, p, n), _source_struct(3, post=post, p=p, n=n), size))
    x = _shape(rng, 1, 4)
    nd = len(x)
    ax = rng.randint(0, nd - 1)
    parts = [tuple(rng.randint(0, 3) if i == ax else d for i, d in enumerate(x)) for _ in range(rng.randint(1, 4))]
    cshape = x[:ax] + (sum(q[ax] for q in parts),) + x[ax + 1 :]
    out.append((X.ConcatSource(cshape, ax, tuple(parts)), _source_struct(4, out=cshape, axis=ax, shapes=parts),
                math.prod(cshape)))
    perm = list(range(nd))
    rng.shuffle(perm)
    tshape = tuple(x[q] for q in perm)
    out.append((X.TransposeSource(tshape, tuple(perm), x), _source_struct(5, out=tshape, perm=perm, shape=x),
                math.prod(x)))
    ns = rng.randint(0, nd)
    steps = tuple(rng.choice([-3, -2, -1, 1, 2, 3]) for _ in range(ns))
    ranges = [range(*slice(rng.randint(-8, 8), rng.randint(-8, 8), st).indices(d))
              for st, d in zip(steps, x, strict=False)]
    sshape = tuple(len(r) for r in ranges) + x[ns:]
    starts = tuple(r.start for r in ranges)
    out.append((X.SliceSource(sshape, starts, steps, x), _source_struct(6, out=sshape, starts=starts, steps=steps,
                                                                         shape=x), math.prod(sshape)))
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_index_helpers_equal_python(idx: Any, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(20):
        a = rng.choice([0, 1, rng.getrandbits(64), rng.getrandbits(255)])
        b = rng.choice([1, 32, rng.getrandbits(40) + 1])
        assert idx.value("ceilDiv", a, b) == X.ceil_div(a, b)
        shape = _shape(rng, 0, 5, rng.choice([3, 7, 1 << 31]))
        size = math.prod(shape)
        i = rng.randrange(size)
        coords = X.unravel(i, shape)
        assert list(idx.value("unravel", i, list(shape))) == coords
        assert idx.value("ravel", coords, list(shape)) == X.ravel(coords, shape) == i
        assert list(idx.value("strides", list(shape))) == list(X.strides(shape))
        dims = tuple((rng.randint(1, 9), rng.getrandbits(rng.randint(0, 40))) for _ in range(rng.randint(0, 4)))
        j = rng.randrange(math.prod(s for s, _ in dims))
        assert idx.value("ravelDims", j, [list(d) for d in dims]) == X.ravel_dims(j, dims)
        full = _shape(rng, 0, 4)
        shapes = [tuple(d if rng.random() < 0.5 else 1 for d in full)[rng.randint(0, len(full)):] for _ in range(3)]
        if rng.random() < 0.4 and full:  # a clash some of the time (a size other than 1 and the dim's)
            k, d = rng.randrange(3), rng.randrange(len(full))
            shapes[k] = full[:d] + (full[d] + 1,) + full[d + 1 :]
        try:
            expected: Any = list(X.broadcast_shape(shapes))
        except X.UnsupportedOp:
            expected = "UnsupportedOp"
        result = idx.call("broadcastShape", [list(s) for s in shapes])
        assert (list(result.values[0]) if result.ok else result.error and result.error[0]) == expected, shapes
        bc = X.unravel(rng.randrange(math.prod(full)), full)
        assert idx.value("broadcastSource", bc, list(shapes[0])) == X.broadcast_source(bc, shapes[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_sources_equal_python(idx: Any, seed: int) -> None:
    rng = random.Random(100 + seed)
    for src, struct, size in [c for _ in range(4) for c in _sources(rng)]:
        os_ = list(range(size)) if size <= 64 else sorted(rng.sample(range(size), 64))
        assert list(idx.value("sourceAt", struct, os_)) == [pack(src.at(o)) for o in os_], src
