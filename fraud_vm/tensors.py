"""Tensor commitments: the root a tensor has as a VM memory region and in phase-1 commitments.

``commit_tensor(t) = keccak(header || data_root)`` where ``header`` is the int256 words
``[dtype, ndim, dim_0 .. dim_{ndim-1}]`` (concrete shape) and ``data_root`` is the keccak Merkle root
of the tensor's little-endian C-order bytes split into 32-byte words (``opml.merkle.bytes_root``,
the same tree the model address uses for constant data; ``0^32`` for an empty tensor). The header
makes tensors with equal bytes but different shape or dtype commit differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from opml.bundle import Bundle, DType, words_bytes
from opml.commitment import fast_bytes_root
from opml.merkle import keccak

from .errors import FraudVMError

if TYPE_CHECKING:
    import numpy as np

# numpy is imported inside the functions that take arrays: ``tensor_header`` and ``region_root``
# are on the one-step verifier's path (``fraud_vm.memory``), which must not import numpy.


def tensor_header(dtype_code: int | DType, shape: Sequence[int]) -> list[int]:
    """Header words of a tensor region: ``[dtype, ndim, dims...]``."""
    return [int(dtype_code), len(shape), *(int(d) for d in shape)]


def tensor_bytes(array: np.ndarray, dtype_code: int | DType) -> bytes:
    """Canonical bytes of ``array`` as dtype ``dtype_code`` (little-endian, C order)."""
    import numpy as np

    try:
        want = DType(int(dtype_code)).np
    except ValueError:
        raise FraudVMError(f"unknown dtype code {dtype_code}") from None
    a = np.asarray(array)
    if a.dtype != want:
        raise FraudVMError(f"tensor has dtype {a.dtype}, its commitment says {want}")
    return a.astype(want.newbyteorder("<"), order="C", copy=False).tobytes(order="C")


@lru_cache(maxsize=4096)
def _header_bytes(header: tuple[int, ...]) -> bytes:
    return words_bytes(list(header))


def region_root(header: Sequence[int], data_root: bytes) -> bytes:
    """Root of a memory region / tensor commitment from its header words and data root."""
    return keccak(_header_bytes(tuple(header)) + data_root)


def commit_tensor(array: np.ndarray, dtype_code: int | DType) -> bytes:
    """32-byte commitment of a tensor: ``keccak(header || data_root)`` (module docstring)."""
    import numpy as np

    a = np.asarray(array)
    data = tensor_bytes(a, dtype_code)
    # one word is its own root; otherwise the word tree (the same tree either way)
    data_root = data + bytes(32 - len(data)) if 0 < len(data) <= 32 else fast_bytes_root(data)
    return region_root(tensor_header(dtype_code, a.shape), data_root)


_CONST_ROOTS: dict[tuple[bytes, int], bytes] = {}


def constant_root(bundle: Bundle, tensor_id: int) -> bytes:
    """``commit_tensor`` of constant ``tensor_id`` of ``bundle``, computed once per model.

    A constant's root is a function of the model alone (its descriptor and data are committed by
    the model address), so it is cached by ``(model address, tensor id)``, like compiled programs.
    """
    key = (bundle.address, tensor_id)
    root = _CONST_ROOTS.get(key)
    if root is None:
        spec = bundle.tensors[tensor_id]
        if not spec.is_const:
            raise FraudVMError(f"tensor {tensor_id} is not a constant")
        if len(_CONST_ROOTS) >= 1 << 16:
            _CONST_ROOTS.clear()
        root = _CONST_ROOTS[key] = commit_tensor(spec.array(), int(spec.dtype))
    return root
