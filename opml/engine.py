"""The deterministic inference engine: runs a bundle on numpy inputs or raw precompile bytes.

``run(bundle, inputs)`` takes and returns arrays in the original model's dtypes and shapes (with a
dynamic leading batch dimension); ``run_bytes`` is the precompile's entry point (little-endian C-order
bytes of the declared inputs, concatenated, in, and the outputs likewise out). Plans (the prepared
kernels of a bundle) are cached by model address; for each (model, batch size) that runs, a
:class:`opml.plan.BatchPlan` (preallocated buffers, runs of nodes in one native call) is built on first
use and cached too (at most :data:`BATCH_PLAN_ENTRIES` of them holding :data:`BATCH_PLAN_BYTES` of buffers
together). ``OPML_PLAN=0`` (read at import; :func:`set_batch_plans` at run time) keeps the per-node path,
which gives the same bytes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import kernels, kernels_data, kernels_norm, kernels_pointwise
from . import plan as batch_plan
from .bundle import Bundle, DType, TensorSpec, load_bundle
from .errors import InferenceInputError, OpmlError, ShapeMismatchError
from .f32prog import check_float_environment
from .shapes import MAX_BATCH, fmt_shape

_PREPARERS: dict[str, Callable] = {}
for _mod in (kernels, kernels_data, kernels_norm, kernels_pointwise):
    for _name in dir(_mod):
        if _name.startswith("prepare_"):
            _PREPARERS[_name[len("prepare_") :]] = getattr(_mod, _name)


@dataclass(frozen=True)
class InputForm:
    """What :func:`run`'s fast path accepts for one input without :func:`check_input`: an ndarray of exactly
    ``dtype``, C-contiguous, of shape ``shape`` (``(batch * k,) + shape`` when ``k`` > 0: a dynamic batch)."""

    tensor: int
    dtype: np.dtype
    shape: tuple[int, ...]
    k: int


@dataclass(frozen=True)
class Plan:
    """A bundle with every node's kernel prepared and each tensor's last use computed."""

    bundle: Bundle
    kernels: tuple[kernels.Kernel, ...]
    frees: tuple[tuple[int, ...], ...]
    consts: dict[int, np.ndarray]  # the constant inputs of the nodes, decoded once
    forms: tuple[InputForm, ...] = ()


def _prepare(bundle: Bundle) -> Plan:
    check_float_environment()
    specs = bundle.tensors
    ks = []
    for j, node in enumerate(bundle.nodes):
        try:
            ks.append(_PREPARERS[node.op](node, specs))
        except (KeyError, ValueError, IndexError, TypeError, OverflowError, ArithmeticError) as e:
            raise OpmlError(f"node {j} ({node.op} {node.name!r}) cannot be prepared: {e}") from None
    last: dict[int, int] = {}
    for j, node in enumerate(bundle.nodes):
        for i in node.inputs:
            if not specs[i].is_const:
                last[i] = j
    keep = set(bundle.outputs)
    frees: list[list[int]] = [[] for _ in bundle.nodes]
    for i, j in last.items():
        if i not in keep:
            frees[j].append(i)
    consts = {i: specs[i].array() for node in bundle.nodes for i in node.inputs if specs[i].is_const}
    consts.update({o: specs[o].array() for o in bundle.outputs if specs[o].is_const})
    forms = tuple(InputForm(i, specs[i].dtype.np, tuple(specs[i].shape[1:]), -specs[i].shape[0])
                  if specs[i].shape and specs[i].shape[0] < 0 else InputForm(i, specs[i].dtype.np, specs[i].shape, 0)
                  for i in bundle.inputs)
    return Plan(bundle, tuple(ks), tuple(tuple(f) for f in frees), consts, forms)


_CACHE: OrderedDict[bytes, Plan] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 16


def get_plan(bundle: Bundle) -> Plan:
    """The prepared plan of a bundle, from the per-address cache when possible."""
    key = bundle.address
    with _CACHE_LOCK:
        plan = _CACHE.get(key)
        if plan is not None:
            _CACHE.move_to_end(key)
            return plan
    plan = _prepare(bundle)
    with _CACHE_LOCK:
        _CACHE[key] = plan
        while len(_CACHE) > CACHE_SIZE:
            gone, _ = _CACHE.popitem(last=False)
            for k in [k for k in _BATCH_PLANS if k[0] == gone]:  # (they hold the plan's kernels)
                del _BATCH_PLANS[k]
    return plan


BATCH_PLAN_ENTRIES = 64
BATCH_PLAN_BYTES = 256 << 20
# (model address, batch) -> its plan (None: none helps), most recently used last; under _CACHE_LOCK
_BATCH_PLANS: OrderedDict[tuple[bytes, int], batch_plan.BatchPlan | None] = OrderedDict()
_USE_BATCH_PLANS = os.environ.get("OPML_PLAN", "1").strip() != "0"


def set_batch_plans(enabled: bool | None) -> None:
    """Turn the batch plans on or off (``None``: back to the ``OPML_PLAN`` environment variable)."""
    global _USE_BATCH_PLANS
    _USE_BATCH_PLANS = os.environ.get("OPML_PLAN", "1").strip() != "0" if enabled is None else bool(enabled)


def batch_plan_for(plan: Plan, batch: int) -> batch_plan.BatchPlan | None:
    """The :class:`opml.plan.BatchPlan` of a prepared bundle at ``batch``, built on first use (None when
    plans are off, the native plan loop is absent, or no node of the bundle has a native form)."""
    if not _USE_BATCH_PLANS or not batch_plan.available():
        return None
    key = (plan.bundle.address, batch)
    with _CACHE_LOCK:
        if key in _BATCH_PLANS:
            _BATCH_PLANS.move_to_end(key)
            return _BATCH_PLANS[key]
    bp = batch_plan.build(plan.bundle, plan.kernels, plan.consts, batch)
    with _CACHE_LOCK:
        _BATCH_PLANS[key] = bp
        held = sum(p.arena_bytes for p in _BATCH_PLANS.values() if p is not None)
        while len(_BATCH_PLANS) > BATCH_PLAN_ENTRIES or held > BATCH_PLAN_BYTES:
            _, old = _BATCH_PLANS.popitem(last=False)
            held -= old.arena_bytes if old is not None else 0
    return bp


def check_input(spec: TensorSpec, value: object) -> tuple[np.ndarray, int | None]:
    """An input value as a C-ordered array of the spec's dtype, and its batch size (None if static).

    A one-value input (declared ``()`` or ``(1,)``) may be given 0-d or as a one-element vector. Raises
    :class:`InferenceInputError` naming the input for a wrong dtype kind or shape.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as e:  # a ragged nested list, ...
        raise InferenceInputError(f"input {spec.name!r}: not an array ({str(e).splitlines()[0][:120]})") from None
    want = spec.dtype.np
    if arr.dtype != want:
        same_kind = (arr.dtype.kind == "f" and want.kind == "f") or (
            arr.dtype.kind in "iu" and want.kind in "iu" and np.can_cast(arr.dtype, want)
        )
        if not same_kind:
            raise InferenceInputError(f"input {spec.name!r}: expected dtype {want.name}, got {arr.dtype.name}")
        arr = arr.astype(want)
    dyn = bool(spec.shape) and spec.shape[0] < 0
    if spec.shape in ((), (1,)) and arr.shape in ((), (1,)):  # one value: 0-d or a one-element vector, either
        arr = arr.reshape(spec.shape)  # (bundles before 0-d inputs were first-class declared a scalar as (1,))
    if arr.ndim != len(spec.shape) or (tuple(arr.shape[1:]) if dyn else arr.shape) != (
        spec.shape[1:] if dyn else spec.shape
    ):
        raise InferenceInputError(f"input {spec.name!r}: expected shape {fmt_shape(spec.shape)}, got {arr.shape}")
    batch = None
    if dyn:
        k = -spec.shape[0]
        if arr.shape[0] % k or arr.shape[0] == 0:
            raise InferenceInputError(f"input {spec.name!r}: leading dimension must be a positive multiple of {k}")
        batch = arr.shape[0] // k
    return np.require(arr, requirements="C"), batch


def _fast_inputs(plan: Plan, values: Sequence[object]) -> tuple[dict[int, np.ndarray], int] | None:
    """The inputs by tensor index and the batch size when every value is already what :func:`check_input` would
    return (an ndarray of the declared dtype, C-contiguous, the declared shape; the batch sizes agree and are
    within bounds); None otherwise (the general path then checks, converts or names the error)."""
    forms = plan.forms
    if len(values) != len(forms):
        return None
    env: dict[int, np.ndarray] = {}
    batch = 0
    for f, x in zip(forms, values, strict=True):
        if type(x) is not np.ndarray or x.dtype != f.dtype or not x.flags.c_contiguous:
            return None
        shape = x.shape
        if f.k:
            n = shape[0] if shape else 0
            if shape[1:] != f.shape or n <= 0 or n % f.k or (batch and n // f.k != batch):
                return None
            batch = n // f.k
        elif shape != f.shape:
            return None
        env[f.tensor] = x
    if batch > MAX_BATCH:
        return None
    return env, batch or 1


def run(bundle: Bundle | bytes | str, inputs: Mapping[str, object] | Sequence[object]) -> list[np.ndarray]:
    """Run a bundle. ``inputs`` by name (mapping) or in declared order; returns outputs in order."""
    b = bundle if type(bundle) is Bundle else load_bundle(bundle)
    plan = get_plan(b)
    fast = _fast_inputs(plan, inputs) if type(inputs) in (list, tuple) else None  # type: ignore[arg-type]
    if fast is not None:
        return _run_checked(plan, *fast)
    specs = b.input_specs()
    if isinstance(inputs, Mapping):
        missing = [s.name for s in specs if s.name not in inputs]
        extra = set(inputs) - {s.name for s in specs}
        if missing or extra:
            raise InferenceInputError(
                f"inputs must be exactly {[s.name for s in specs]}; missing {missing}, unknown {sorted(extra)}"
            )
        values = [inputs[s.name] for s in specs]
    else:
        values = list(inputs)
        if len(values) != len(specs):
            raise InferenceInputError(f"model takes {len(specs)} inputs, got {len(values)}")
    env: dict[int, np.ndarray] = {}
    batch: int | None = None
    for idx, spec, v in zip(b.inputs, specs, values, strict=True):
        arr, bt = check_input(spec, v)
        if bt is not None:
            if batch is not None and bt != batch:
                raise InferenceInputError(f"inputs disagree on the batch size ({batch} vs {bt})")
            batch = bt
        env[idx] = arr
    if batch is not None and batch > MAX_BATCH:
        raise InferenceInputError(f"batch size {batch} exceeds the limit {MAX_BATCH}")
    return _run_checked(plan, env, 1 if batch is None else batch)


def _run_checked(plan: Plan, env: dict[int, np.ndarray], batch: int) -> list[np.ndarray]:
    """The outputs for checked inputs: through the batch plan, or the per-node path when there is none or it
    is busy in another thread."""
    bp = batch_plan_for(plan, batch)
    if bp is not None and bp.lock.acquire(blocking=False):
        try:
            return bp.run(env, lambda j, args: _run_node(plan, j, args, batch))
        finally:
            bp.lock.release()
    return _execute(plan, env, batch)


def _run_node(plan: Plan, j: int, args: list[np.ndarray], batch: int) -> np.ndarray:
    """Node ``j``'s kernel on ``args``, its errors named and its output checked against the declared shape."""
    node = plan.bundle.nodes[j]
    try:
        y = plan.kernels[j](args)
    except OpmlError:
        raise
    except (ValueError, IndexError, TypeError, OverflowError, ArithmeticError) as e:
        raise OpmlError(f"node {j} ({node.op} {node.name!r}) is inconsistent with its inputs: {e}") from None
    spec = plan.bundle.tensors[node.outputs[0]]
    if y.shape != spec.concrete_shape(batch) or y.dtype != spec.dtype.np:
        # a guard: decoding verified the declared shapes, so the cost model's numbers are the work done
        raise ShapeMismatchError(
            f"node {j} ({node.op} {node.name!r}) produced {y.dtype.name} {y.shape}; the bundle declares "
            f"{spec.dtype.name.lower()} {fmt_shape(spec.shape)} = {spec.concrete_shape(batch)} at batch {batch}"
        )
    return y


def _execute(plan: Plan, env: dict[int, np.ndarray], batch: int) -> list[np.ndarray]:
    """The per-node path: each node's kernel in turn, tensors freed after their last use."""
    env = {**plan.consts, **env}
    for j, (node, frees) in enumerate(zip(plan.bundle.nodes, plan.frees, strict=True)):
        env[node.outputs[0]] = _run_node(plan, j, [env[i] for i in node.inputs], batch)
        for i in frees:
            env.pop(i, None)
    # C order and a fresh array per call: kernels may return F-ordered views, or a cached constant
    return [np.array(env[o], order="C") for o in plan.bundle.outputs]


def sample_bytes(spec: TensorSpec) -> int:
    """Bytes of one batch element of a tensor (the whole tensor when it has no batch dimension)."""
    shape = spec.shape[1:] if spec.shape and spec.shape[0] < 0 else spec.shape
    k = -spec.shape[0] if spec.shape and spec.shape[0] < 0 else 1
    return k * int(np.prod(shape, dtype=np.int64)) * spec.dtype.np.itemsize


def batch_from_input_length(bundle: Bundle, n: int) -> int:
    """The batch size implied by ``n`` bytes of concatenated inputs; raises if none fits."""
    specs = bundle.input_specs()
    fixed = sum(sample_bytes(s) for s in specs if not (s.shape and s.shape[0] < 0))
    per = sum(sample_bytes(s) for s in specs if s.shape and s.shape[0] < 0)
    if per == 0:
        if n != fixed:
            raise InferenceInputError(f"input must be exactly {fixed} bytes, got {n}")
        return 1
    if n <= fixed or (n - fixed) % per:
        raise InferenceInputError(f"input length {n} is not {fixed} + k*{per} bytes for a batch size k >= 1")
    batch = (n - fixed) // per
    if batch > MAX_BATCH:
        raise InferenceInputError(f"batch size {batch} exceeds the limit {MAX_BATCH}")
    return batch


def decode_inputs(bundle: Bundle, data: bytes) -> list[np.ndarray]:
    """Split precompile input bytes into the declared input arrays (little-endian, C order)."""
    batch = batch_from_input_length(bundle, len(data))
    arrays, pos = [], 0
    for spec in bundle.input_specs():
        shape = spec.concrete_shape(batch)
        n = int(np.prod(shape, dtype=np.int64)) * spec.dtype.np.itemsize
        raw = np.frombuffer(data, dtype=spec.dtype.np.newbyteorder("<"), count=n // spec.dtype.np.itemsize, offset=pos)
        arrays.append(raw.reshape(shape).astype(spec.dtype.np))
        pos += n
    return arrays


def encode_outputs(outputs: Sequence[np.ndarray]) -> bytes:
    """Concatenate outputs as little-endian C-order bytes."""
    return b"".join(np.ascontiguousarray(o).astype(o.dtype.newbyteorder("<")).tobytes() for o in outputs)


def output_length(bundle: Bundle, input_length: int) -> int:
    """Bytes of output for ``input_length`` bytes of input (a pure function of the header)."""
    batch = batch_from_input_length(bundle, input_length)
    total = 0
    for spec in bundle.output_specs():
        total += int(np.prod(spec.concrete_shape(batch), dtype=np.int64)) * spec.dtype.np.itemsize
    return total


def run_bytes(bundle: Bundle | bytes, input_bytes: bytes) -> bytes:
    """The precompile entry point: input bytes -> output bytes (raises OpmlError subclasses only)."""
    b = load_bundle(bundle)
    outs = run(b, decode_inputs(b, bytes(input_bytes)))
    for spec, o in zip(b.output_specs(), outs, strict=True):
        if spec.dtype != DType.from_np(o.dtype):
            raise OpmlError(f"output {spec.name!r} has dtype {o.dtype}, bundle declares {spec.dtype.name}")
    return encode_outputs(outs)

