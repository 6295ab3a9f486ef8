"""Tensor commitments: the root a tensor has as a VM memory region and in phase-1 commitments.

``commit_tensor(t) = keccak(header || data_root)`` where ``header`` is the int256 words
``[dtype, ndim, dim_0 .. dim_{ndim-1}]`` (concrete shape) and ``data_root`` is the keccak Merkle root
of the tensor's little-endian C-order bytes split into 32-byte words (``opml.merkle.bytes_root``,
the same tree the model address uses for constant data; ``0^32`` for an empty tensor). The header
makes tensors with equal bytes but different shape or dtype commit differently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from opml.bundle import DType, words_bytes
from opml.commitment import fast_bytes_root
from opml.merkle import keccak

from .errors import FraudVMError


def tensor_header(dtype_code: int | DType, shape: Sequence[int]) -> list[int]:
    """Header words of a tensor region: ``[dtype, ndim, dims...]``."""
    return [int(dtype_code), len(shape), *(int(d) for d in shape)]


def tensor_bytes(array: np.ndarray, dtype_code: int | DType) -> bytes:
    """Canonical bytes of ``array`` as dtype ``dtype_code`` (little-endian, C order)."""
    want = DType(int(dtype_code)).np
    a = np.asarray(array)
    if a.dtype != want:
        raise FraudVMError(f"tensor has dtype {a.dtype}, its commitment says {want}")
    return np.ascontiguousarray(a).astype(want.newbyteorder("<")).tobytes()


def region_root(header: Sequence[int], data_root: bytes) -> bytes:
    """Root of a memory region / tensor commitment from its header words and data root."""
    return keccak(words_bytes(list(header)) + data_root)


def commit_tensor(array: np.ndarray, dtype_code: int | DType) -> bytes:
    """32-byte commitment of a tensor: ``keccak(header || data_root)`` (module docstring)."""
    a = np.asarray(array)
    return region_root(tensor_header(dtype_code, a.shape), fast_bytes_root(tensor_bytes(a, dtype_code)))
