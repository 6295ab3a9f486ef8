"""Fast numpy kernels of the data-movement and index ops (exact for every dtype)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .bundle import DType, Node, TensorSpec
from .errors import InferenceInputError
from .kernels import Kernel


def prepare_reshape(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    out = specs[node.outputs[0]]
    x_spec = specs[node.inputs[0]]

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        batch = _batch_of(x, x_spec)
        return x.reshape(out.concrete_shape(batch))

    return run


def _batch_of(x: np.ndarray, spec: TensorSpec) -> int:
    if spec.shape and spec.shape[0] < 0:
        return x.shape[0] // -spec.shape[0]
    return 1


def prepare_transpose(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    perm = node.attr("perm")
    return lambda xs: np.ascontiguousarray(np.transpose(xs[0], perm))


def prepare_concat(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    axis = node.iattr("axis")
    return lambda xs: np.concatenate(list(xs), axis=axis)


def prepare_slice(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    starts, ends, steps = node.attr("starts"), node.attr("ends"), node.attr("steps")

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        idx = tuple(slice(s, e if e >= 0 or st > 0 else None, st) for s, e, st in zip(starts, ends, steps, strict=True))
        return np.ascontiguousarray(x[idx])

    return run


def prepare_gather(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    axis = node.iattr("axis")

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        data, idx = xs
        n = data.shape[axis]
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise InferenceInputError(f"gather index out of range [-{n}, {n - 1}]")
        return np.take(data, np.where(idx < 0, idx + n, idx), axis=axis)

    return run


def prepare_argmax(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    axis, keep, last = node.iattr("axis"), bool(node.iattr("keepdims")), bool(node.iattr("select_last_index"))

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        if last:
            flipped = np.flip(x, axis=axis)
            r = x.shape[axis] - 1 - np.argmax(flipped, axis=axis)
        else:
            r = np.argmax(x, axis=axis)
        r = r.astype(np.int64)
        return np.expand_dims(r, axis) if keep else r

    return run


def prepare_cast(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    src, out = specs[node.inputs[0]], specs[node.outputs[0]]
    to = out.dtype.np

    def run(xs: Sequence[np.ndarray]) -> np.ndarray:
        x = xs[0]
        if src.dtype == DType.FLOAT32 and out.dtype not in (DType.FLOAT32, DType.BOOL):
            if np.isnan(x).any():
                raise InferenceInputError("cannot cast NaN to an integer type")
            info = np.iinfo(to)
            top = np.float32(info.max)
            below = np.nextafter(top, np.float32(0)) if int(top) > info.max else top
            t = np.clip(np.trunc(x), np.float32(info.min), below).astype(to)
            # float32 cannot hold the int32/int64 maxima exactly: saturate explicitly
            return np.where(x >= top, to.type(info.max), t)
        return x.astype(to)

    return run


def prepare_flip_sign_bit(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    to = specs[node.outputs[0]].dtype.np
    return lambda xs: (xs[0].view(np.uint8) ^ np.uint8(0x80)).view(to)


def prepare_where(node: Node, specs: Sequence[TensorSpec]) -> Kernel:
    return lambda xs: np.where(xs[0].astype(bool), xs[1], xs[2])
