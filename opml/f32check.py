"""Start-up check that this host's float32 arithmetic follows the determinism rules (DESIGN §3)."""

from __future__ import annotations

import functools

import numpy as np

from .errors import DeterminismError


@functools.cache
def check_float_environment() -> None:
    """Refuse to run where subnormals are flushed or float32 basic ops are not IEEE round-to-nearest."""
    tiny = np.float32(1e-40)
    if tiny * np.float32(1) == 0:
        raise DeterminismError("float32 subnormals are flushed to zero on this host (FTZ/DAZ is on)")
    one, three = np.float32(1), np.float32(3)
    checks = [
        (one / three, 0x3EAAAAAB),
        (np.sqrt(np.float32(2)), 0x3FB504F3),
        (np.rint(np.float32(2.5)), 0x40000000),
        (np.rint(np.float32(-0.5)), 0x80000000),
        (np.float32(16777216) + one, 0x4B800000),
    ]
    for value, bits in checks:
        if int(np.array(value, dtype=np.float32).view(np.uint32)) != bits:
            raise DeterminismError(f"float32 arithmetic is not IEEE round-to-nearest-even here ({value!r})")
