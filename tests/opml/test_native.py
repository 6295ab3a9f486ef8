"""opml's native kernels equal the exact integer formulas, on both instruction sets.

The engine-level equality (engine == reference for every op) runs with the library loaded, in
tests/opml/test_engine_reference*.py; tests/opml/test_determinism.py reruns the example models with
the library off and with its portable kernels. Here the GEMM is checked directly, at the edges of its
bounds (extreme operand values, K at the int32 limit, every shape remainder), against int64 numpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opml import native
from opml.intmath import clip_int32, requantize

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not native.available() and not os.environ.get("CI"),
                                reason=native.describe())


def test_library_is_built_in_ci() -> None:
    """make install builds the library; CI must not fall back to numpy silently."""
    assert native.available(), native.describe()


def _expected(x: np.ndarray, w: np.ndarray, ep: native.Epilogue) -> np.ndarray:
    acc = x.astype(np.int64) @ w.astype(np.int64) + ep.off
    if ep.dtype == np.int32:
        return clip_int32(acc).astype(np.int32)
    return requantize(acc, ep.mult, ep.shift, ep.zero_point, ep.qmin, ep.qmax, ep.dtype)


def _case(rng: np.random.Generator, m: int, k: int, n: int, xdt: type, wdt: type, out: type,
          extreme: bool = False) -> tuple[np.ndarray, np.ndarray, native.Epilogue]:
    xi = np.iinfo(xdt)
    if extreme:  # the largest products: every |x| and |w| at its maximum
        x = rng.choice(np.array([xi.min, xi.max], dtype=np.int64), size=(m, k)).astype(xdt)
        wl = 255 if wdt == np.int16 else 128
        w = rng.choice(np.array([-wl, min(wl, 127 if wdt == np.int8 else 255)]), size=(k, n)).astype(wdt)
    else:
        x = rng.integers(xi.min, xi.max + 1, size=(m, k)).astype(xdt)
        w = rng.integers(-255 if wdt == np.int16 else -128, 256 if wdt == np.int16 else 128, size=(k, n)).astype(wdt)
    off = rng.integers(-(1 << 33), 1 << 33, size=n)
    mult = rng.integers(0, 1 << 31, size=n)
    shift = rng.integers(1, 63, size=n)
    if out == np.int32:
        ep = native.epilogue(n, off, 0, 0, 0, 0, 0, np.int32)
    else:
        lo, hi = (-128, 127) if out == np.int8 else (0, 255)
        qmin = int(rng.integers(lo, hi + 1))
        ep = native.epilogue(n, off, mult, shift, int(rng.integers(-300, 300)), qmin,
                             int(rng.integers(qmin, hi + 1)), out)
    assert ep is not None
    return x, w, ep


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 20), k=st.integers(0, 70), n=st.integers(0, 40),
       xdt=st.sampled_from([np.int8, np.uint8]), wdt=st.sampled_from([np.int8, np.int16]),
       out=st.sampled_from([np.int32, np.int8, np.uint8]), extreme=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_qgemm_equals_int64(m: int, k: int, n: int, xdt: type, wdt: type, out: type, extreme: bool,
                            seed: int) -> None:
    x, w, ep = _case(np.random.default_rng(seed), m, k, n, xdt, wdt, out, extreme)
    packed = native.pack_weights(w)
    assert packed is not None
    got = native.qgemm(x, packed, ep)
    assert got.dtype == np.dtype(out) and got.shape == (m, n)
    np.testing.assert_array_equal(got, _expected(x, w, ep))


def test_qgemm_at_the_int32_limit() -> None:
    """K at the library's maximum with every product at +-65025: partial sums reach about +-2^31."""
    kmax = 32768
    x = np.full((7, kmax), 255, dtype=np.uint8)
    w = np.full((kmax, 17), 255, dtype=np.int16)
    w[:, 1::2] = -255
    ep = native.epilogue(17, np.zeros(17, dtype=np.int64), 0, 0, 0, 0, 0, np.int32)
    assert ep is not None
    packed = native.pack_weights(w)
    assert packed is not None
    got = native.qgemm(x, packed, ep)
    np.testing.assert_array_equal(got, _expected(x, w, ep))
    assert got[0, 0] == 32768 * 65025 and got[0, 1] == -32768 * 65025


def test_pack_refuses_what_the_kernel_cannot_take_exactly() -> None:
    assert native.pack_weights(np.full((4, 4), 256, dtype=np.int16)) is None  # |w| > 255
    assert native.pack_weights(np.zeros((32769, 2), dtype=np.int8)) is None  # K over the int32 bound
    assert native.pack_weights(np.zeros((4, 4), dtype=np.int32)) is None
    assert native.epilogue(4, np.zeros(4), 1, 0, 0, -128, 127, np.int8) is None  # shift 0
    assert native.epilogue(4, np.zeros(4), 1 << 31, 5, 0, -128, 127, np.int8) is None  # mult too large
    assert native.epilogue(4, np.zeros(4), 1, 5, 0, -128, 127, np.int16) is None  # no int16 output


def test_qgemm_rejects_a_wrong_input() -> None:
    packed = native.pack_weights(np.ones((8, 3), dtype=np.int8))
    ep = native.epilogue(3, np.zeros(3), 0, 0, 0, 0, 0, np.int32)
    assert packed is not None and ep is not None
    with pytest.raises(ValueError, match="int8/uint8"):
        native.qgemm(np.ones((2, 7), dtype=np.int8), packed, ep)
    with pytest.raises(ValueError, match="int8/uint8"):
        native.qgemm(np.ones((2, 8), dtype=np.int16), packed, ep)


# The same random GEMMs in subprocesses with the portable kernels and with one thread.
CHILD = r"""
import hashlib, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_native import _case
from opml import native
h = hashlib.sha256()
rng = np.random.default_rng(7)
for m, k, n in [(1, 384, 1536), (32, 1536, 384), (37, 97, 45), (6, 2, 16)]:
    for xdt in (np.int8, np.uint8):
        for out in (np.int32, np.int8, np.uint8):
            x, w, ep = _case(rng, m, k, n, xdt, np.int8, out)
            h.update(native.qgemm(x, native.pack_weights(w), ep).tobytes())
print(native.describe())
print("HASH " + h.hexdigest())
"""


def _child_hash(env: dict[str, str]) -> tuple[str, str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).parent)], env=full,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    return lines[-2], lines[-1]


def test_instruction_sets_and_threads_agree() -> None:
    base_desc, base = _child_hash({"OPML_THREADS": "2"})
    gen_desc, generic = _child_hash({"OPML_NATIVE_ISA": "generic", "OPML_THREADS": "1"})
    assert "loaded (generic)" in gen_desc
    assert generic == base, f"{gen_desc} != {base_desc}"
