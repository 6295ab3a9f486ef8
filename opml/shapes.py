"""Shape and dtype inference: every node's output as a pure function of its inputs' specs and attributes.

The gas of an inference (``opml.cost``), the fraud VM's node contexts and the engine's buffers are
all derived from the *declared* tensor specs of a bundle. :func:`check_bundle_shapes` makes those
declarations trustworthy: it infers each node's output shape (and, where the op fixes it, the output
dtype) from its inputs' declared shapes and its attributes, and rejects a bundle whose declaration
differs, with a :class:`~opml.errors.BundleError` naming the node, op, tensor, declared and inferred
shapes. Inputs must also be of the kinds the op's kernels are specified for (dtypes, constant
parameters, parameter lengths matching channels, attribute arities), so that a bundle that decodes
runs the work its header describes, for every batch size.

Dimensions follow the bundle's encoding: a static size ``d >= 0``, or ``-k`` for ``k x batch``. Inference
is symbolic in the batch: a rule holds for every batch size ``1 <= batch <= MAX_BATCH`` or the bundle is
rejected (a ``[N, 1]`` tensor broadcast against ``[4096, 1]`` only works when ``N`` is 1 or 4096: rejected).
Declared shapes carry the batch only on their leading axis (``opml.bundle.validate_bundle``), so an
inferred shape with the batch anywhere else can never match a declaration.

The rules follow the engine's kernels (``opml.kernels*``) and the reference (``opml.reference``), which
define the ops; ``docs/bundle.md`` lists them in prose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .bundle import Bundle, DType, Node, TensorSpec
from .errors import BundleError

#: Largest batch size an inference may use (the engine and the precompiles enforce it).
MAX_BATCH = 1 << 16

Shape = tuple[int, ...]

Q8 = (DType.INT8, DType.UINT8)
GEMM_X = (DType.INT8, DType.UINT8, DType.INT16)
GEMM_W = (DType.INT8, DType.INT16)
REQUANT_OUT = (DType.INT8, DType.UINT8, DType.INT16, DType.INT32)
INTEGER = (DType.INT8, DType.UINT8, DType.INT16, DType.INT32, DType.INT64)
INDEX = (DType.INT32, DType.INT64)

#: Fixed lengths of attributes (the others, ``perm``, ``axes``, ``starts``, ``ends``, ``steps``, vary).
ATTR_LENGTHS = {
    "qmin": 1, "qmax": 1, "mult": 1, "shift": 1, "a_mult": 1, "b_mult": 1, "axis": 1, "eps": 1,
    "frac_bits": 1, "group": 1, "count_include_pad": 1, "mode": 1, "keepdims": 1, "select_last_index": 1,
    "pads": 4, "strides": 2, "dilations": 2, "kernel": 2,
}


#: Bounds of the integer attributes every implementation (engine, reference, fraud VM, Solidity verifier)
#: computes with in 64-bit words: window geometry within int32, requantization multipliers within +-2^31, shifts of
#: at most 62 bits. A bundle outside them is refused at decode, so no path is ever asked for one.
ATTR_BOUNDS = {
    "pads": (0, (1 << 31) - 1), "strides": (1, (1 << 31) - 1), "dilations": (1, (1 << 31) - 1),
    "kernel": (1, (1 << 31) - 1), "shift": (0, 62), "mult": (-(1 << 31), 1 << 31),
    "a_mult": (-(1 << 31), 1 << 31), "b_mult": (-(1 << 31), 1 << 31),  # (a Sub negates an int32: +2^31)
}


class _Fail(Exception):
    """A rule's complaint; :func:`infer_node` turns it into a BundleError naming the node."""


def fmt_shape(shape: Sequence[int]) -> str:
    """A shape as text with the batch written ``N`` (``(N, 4096)``, ``(12N, 64)``)."""
    dims = ["N" if d == -1 else (f"{-d}N" if d < 0 else str(d)) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _static(d: int, what: str) -> int:
    if d < 0:
        raise _Fail(f"{what} must not depend on the batch size")
    return d


def _ok(cond: bool, msg: str) -> None:
    if not cond:
        raise _Fail(msg)


def _dtype(spec: TensorSpec, allowed: Sequence[DType], what: str) -> None:
    if spec.dtype not in allowed:
        names = "/".join(d.name.lower() for d in allowed)
        raise _Fail(f"{what} {spec.name!r} is {spec.dtype.name.lower()}, must be {names}")


def _const(spec: TensorSpec, what: str) -> None:
    _ok(spec.is_const, f"{what} {spec.name!r} must be a constant")


def _rank(spec: TensorSpec, ok: Callable[[int], bool], what: str, want: str) -> int:
    r = len(spec.shape)
    _ok(ok(r), f"{what} {spec.name!r} has rank {r}, must have {want}")
    return r


def _axis(a: int, rank: int, what: str = "axis") -> int:
    """A numpy axis normalised to [0, rank)."""
    _ok(-rank <= a < rank, f"{what} {a} is out of range for rank {rank}")
    return a + rank if a < 0 else a


def broadcast(shapes: Sequence[Shape]) -> Shape:
    """numpy broadcasting of symbolic shapes, valid for every batch size (else an error)."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for pos in range(rank):
        dims = {s[len(s) - rank + pos] for s in shapes if len(s) - rank + pos >= 0}
        big = dims - {1}
        if len(big) > 1:
            raise _Fail("shapes " + ", ".join(fmt_shape(s) for s in shapes) + " do not broadcast for every batch size")
        out.append(big.pop() if big else 1)
    return tuple(out)


def numel(shape: Shape) -> tuple[int, int]:
    """``(count, batch power)``: the element count is ``count x batch^power``."""
    count, power = 1, 0
    for d in shape:
        count *= -d if d < 0 else d
        power += d < 0
    return (count, power) if count else (0, 0)


def _window_out(size: int, k: int, pad: int, stride: int, dil: int) -> int:
    o = (size + pad - (k - 1) * dil - 1) // stride + 1
    _ok(o >= 1, f"spatial size {size} (padded by {pad}) is smaller than the kernel {k} (dilation {dil})")
    return o


def _geometry(node: Node) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    pads, strides = node.attr("pads"), node.attr("strides")
    dil = node.attr("dilations") if "dilations" in node.schema.attrs else (1, 1)
    _ok(all(p >= 0 for p in pads), f"pads {pads} must be >= 0")
    _ok(all(s >= 1 for s in strides), f"strides {strides} must be >= 1")
    _ok(all(d >= 1 for d in dil), f"dilations {dil} must be >= 1")
    return pads, strides, dil


def _spatial(x: Shape, kh: int, kw: int, pads: Sequence[int], strides: Sequence[int],
             dil: Sequence[int]) -> tuple[int, int]:
    h, w = _static(x[2], "the input height"), _static(x[3], "the input width")
    return (_window_out(h, kh, pads[0] + pads[2], strides[0], dil[0]),
            _window_out(w, kw, pads[1] + pads[3], strides[1], dil[1]))


def _requant_params(node: Node, s: Sequence[TensorSpec], out: TensorSpec, channels: int) -> None:
    """Checks shared by linear and conv: bias [channels] and per-channel or per-tensor (mult, shift)."""
    w, bias = s[1], s[2]
    _const(w, "weight")
    _dtype(w, GEMM_W, "weight")
    _const(bias, "bias")
    _dtype(bias, (DType.INT32,), "bias")
    _ok(bias.shape == (channels,), f"bias {bias.name!r} has shape {fmt_shape(bias.shape)}, needs ({channels},)")
    _dtype(out, REQUANT_OUT, "output")
    if out.dtype == DType.INT32:
        return
    _ok(len(s) == 5, "a requantized (non-int32) output needs mult and shift inputs")
    for p, what in ((s[3], "mult"), (s[4], "shift")):
        _const(p, what)
        _dtype(p, (DType.INT32,), what)
        _ok(len(p.shape) == 1 and p.shape[0] in (1, channels),
            f"{what} {p.name!r} has shape {fmt_shape(p.shape)}, needs (1,) or ({channels},)")


def _linear(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x, w = s[0], s[1]
    _dtype(x, GEMM_X, "input")
    _rank(x, lambda r: r >= 1, "input", "at least 1")
    _rank(w, lambda r: r == 2, "weight", "2 ([K, N])")
    k, n = w.shape
    _ok(x.shape[-1] == k, f"input's last dimension {fmt_shape(x.shape[-1:])} is not the weight's K = {k}")
    _ok(len(s) in (3, 5), "linear takes x, W, bias and optionally mult, shift")
    _requant_params(node, s, out, n)
    return x.shape[:-1] + (n,)


def _conv(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x, w = s[0], s[1]
    _dtype(x, Q8, "input")
    _rank(x, lambda r: r == 4, "input", "4 ([B, C, H, W])")
    _rank(w, lambda r: r == 4, "weight", "4 ([M, C/group, kh, kw])")
    m, cg, kh, kw = w.shape
    _ok(min(m, cg, kh, kw) >= 1, f"weight shape {fmt_shape(w.shape)} has an empty dimension")
    group = node.iattr("group")
    _ok(group >= 1 and m % group == 0, f"group {group} must be >= 1 and divide the {m} output channels")
    _ok(x.shape[1] == cg * group, f"input has {fmt_shape(x.shape[1:2])} channels, the weights need {cg * group}")
    _ok(len(s) in (3, 5), "conv takes x, W, bias and optionally mult, shift")
    _requant_params(node, s, out, m)
    pads, strides, dil = _geometry(node)
    return (x.shape[0], m) + _spatial(x.shape, kh, kw, pads, strides, dil)


def _matmul(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    a, b = s
    for t, what in ((a, "a"), (b, "b")):
        _dtype(t, Q8, what)
        _rank(t, lambda r: r >= 2, what, "at least 2")
    _ok(a.shape[-1] == b.shape[-2],
        f"a {fmt_shape(a.shape)} and b {fmt_shape(b.shape)} disagree on the inner dimension")
    _dtype(out, REQUANT_OUT, "output")
    return broadcast([a.shape[:-2], b.shape[:-2]]) + (a.shape[-2], b.shape[-1])


def _binary(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    for t, what in ((s[0], "a"), (s[1], "b")):
        _dtype(t, REQUANT_OUT, what)
    _dtype(out, REQUANT_OUT, "output")
    return broadcast([s[0].shape, s[1].shape])


def _quantize(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    _dtype(s[0], (DType.FLOAT32,), "input")
    _dtype(out, Q8, "output")
    return s[0].shape


def _dequantize(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    _dtype(s[0], INTEGER, "input")
    _dtype(out, (DType.FLOAT32,), "output")
    return s[0].shape


def _lut(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x, table = s
    _dtype(x, Q8, "input")
    _const(table, "table")
    _ok(table.shape == (256,), f"table {table.name!r} has shape {fmt_shape(table.shape)}, needs (256,)")
    _ok(out.dtype == table.dtype, f"output is {out.dtype.name.lower()} but the table holds {table.dtype.name.lower()}")
    return x.shape


def _softmax(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x, table = s
    _dtype(x, Q8, "input")
    _rank(x, lambda r: r >= 1, "input", "at least 1")
    _axis(node.iattr("axis"), len(x.shape))
    _const(table, "exp table")
    _dtype(table, INTEGER, "exp table")
    _ok(table.shape == (256,), f"exp table {table.name!r} has shape {fmt_shape(table.shape)}, needs (256,)")
    _dtype(out, Q8, "output")
    return x.shape


def _layernorm(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x = s[0]
    _dtype(x, GEMM_X, "input")
    _rank(x, lambda r: r >= 1, "input", "at least 1")
    n = _static(x.shape[-1], "the normalized (last) dimension")
    for p, what in ((s[1], "gamma"), (s[2], "beta")):
        _const(p, what)
        _dtype(p, (DType.INT32,), what)
        _ok(p.shape == (n,), f"{what} {p.name!r} has shape {fmt_shape(p.shape)}, needs ({n},)")
    _dtype(out, (DType.INT8, DType.UINT8, DType.INT16), "output")
    return x.shape


def _pool(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x = s[0]
    _dtype(x, Q8, "input")
    _rank(x, lambda r: r == 4, "input", "4 ([B, C, H, W])")
    kh, kw = node.attr("kernel")
    _ok(kh >= 1 and kw >= 1, f"kernel ({kh}, {kw}) must be >= 1")
    if node.op == "maxpool":
        _ok(out.dtype == x.dtype, f"output is {out.dtype.name.lower()}, maxpool keeps {x.dtype.name.lower()}")
    else:
        _ok(node.iattr("count_include_pad") in (0, 1), "count_include_pad must be 0 or 1")
        _dtype(out, Q8, "output")
    pads, strides, dil = _geometry(node)
    return x.shape[:2] + _spatial(x.shape, kh, kw, pads, strides, dil)


def _reduce(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x = s[0]
    rank = len(x.shape)
    mode, axes, keep = node.iattr("mode"), node.attr("axes"), node.iattr("keepdims")
    _ok(mode in (0, 1, 2, 3), f"unknown reduce mode {mode}")
    _ok(keep in (0, 1), "keepdims must be 0 or 1")
    _ok(all(0 <= a < rank for a in axes) and len(set(axes)) == len(axes),
        f"axes {axes} must be distinct and in [0, {rank})")
    _dtype(x, INTEGER, "input")
    if mode == 3:
        _ok(out.dtype == x.dtype, f"output is {out.dtype.name.lower()}, a max keeps {x.dtype.name.lower()}")
    else:
        _dtype(out, Q8, "output")
    return tuple(1 if a in axes else d for a, d in enumerate(x.shape) if keep or a not in axes)


def _same_dtype(out: TensorSpec, src: TensorSpec) -> None:
    _ok(out.dtype == src.dtype, f"output is {out.dtype.name.lower()} but the data is {src.dtype.name.lower()}")


def _reshape(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    _same_dtype(out, s[0])
    _ok(numel(s[0].shape) == numel(out.shape),
        f"cannot reshape {fmt_shape(s[0].shape)} to {fmt_shape(out.shape)} (element counts differ)")
    return out.shape  # the declared shape is the reshape's target: its element count is what is checked


def _transpose(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x, perm = s[0].shape, node.attr("perm")
    _ok(sorted(perm) == list(range(len(x))), f"perm {perm} is not a permutation of the {len(x)} axes")
    _same_dtype(out, s[0])
    return tuple(x[p] for p in perm)


def _concat(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    first = s[0].shape
    rank = len(first)
    _ok(rank >= 1, "cannot concatenate 0-d tensors")
    axis = _axis(node.iattr("axis"), rank)
    for t in s:
        _ok(t.dtype == s[0].dtype, "inputs must share one dtype")
        _ok(len(t.shape) == rank and all(d == first[a] for a, d in enumerate(t.shape) if a != axis),
            f"input {fmt_shape(t.shape)} does not match {fmt_shape(first)} off axis {axis}")
    sizes = [t.shape[axis] for t in s]
    _ok(all(d >= 0 for d in sizes) or all(d < 0 for d in sizes),
        "cannot concatenate batch-sized and fixed-size parts along one axis")
    _same_dtype(out, s[0])
    return first[:axis] + (sum(sizes),) + first[axis + 1:]


def _slice_len(d: int, start: int, end: int, step: int, axis: int) -> int:
    stop = end if end >= 0 or step > 0 else None
    if d >= 0:
        return len(range(*slice(start, stop, step).indices(d)))
    k = -d
    if start == 0 and step == 1 and end >= k * MAX_BATCH:
        return d  # the whole batch axis
    _ok(step > 0 and 0 <= start and 0 <= end <= k,
        f"slice [{start}:{end}:{step}] of batch-sized axis {axis} must keep it whole (0, >= {k * MAX_BATCH}, 1) "
        f"or stay within its first {k} entries")
    return len(range(start, end, step))


def _slice(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x = s[0].shape
    starts, ends, steps = node.attr("starts"), node.attr("ends"), node.attr("steps")
    _ok(len(starts) == len(ends) == len(steps) <= len(x),
        f"starts/ends/steps have lengths {len(starts)}/{len(ends)}/{len(steps)}; need equal, at most rank {len(x)}")
    _ok(all(st != 0 for st in steps), "slice steps must be non-zero")
    _same_dtype(out, s[0])
    head = tuple(_slice_len(x[a], b, e, st, a) for a, (b, e, st) in enumerate(zip(starts, ends, steps, strict=True)))
    return head + x[len(starts):]


def _gather(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    data, idx = s
    _rank(data, lambda r: r >= 1, "data", "at least 1")
    axis = _axis(node.iattr("axis"), len(data.shape))
    _dtype(idx, INDEX, "indices")
    _same_dtype(out, data)
    return data.shape[:axis] + idx.shape + data.shape[axis + 1:]


def _argmax(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    x = s[0].shape
    _ok(len(x) >= 1, "argmax of a 0-d tensor")
    axis = _axis(node.iattr("axis"), len(x))
    keep = node.iattr("keepdims")
    _ok(keep in (0, 1) and node.iattr("select_last_index") in (0, 1), "keepdims/select_last_index must be 0 or 1")
    _dtype(out, (DType.INT64,), "output")
    return tuple(1 if a == axis else d for a, d in enumerate(x) if keep or a != axis)


def _cast(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    return s[0].shape


def _flip_sign_bit(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    _dtype(s[0], Q8, "input")
    _ok(out.dtype == (DType.UINT8 if s[0].dtype == DType.INT8 else DType.INT8),
        "flip_sign_bit maps int8 to uint8 and uint8 to int8")
    return s[0].shape


def _where(node: Node, s: Sequence[TensorSpec], out: TensorSpec) -> Shape:
    cond, x, y = s
    _dtype(cond, (DType.BOOL,) + INTEGER, "condition")  # (non-zero is true; the converter passes int64 masks)
    _ok(x.dtype == y.dtype, "both branches must share one dtype")
    _same_dtype(out, x)
    return broadcast([cond.shape, x.shape, y.shape])


Rule = Callable[[Node, Sequence[TensorSpec], TensorSpec], Shape]

#: The output-shape rule of every op (each also checks the input kinds the op is specified for).
RULES: dict[str, Rule] = {
    "quantize": _quantize,
    "dequantize": _dequantize,
    "linear": _linear,
    "conv": _conv,
    "matmul": _matmul,
    "add": _binary,
    "mul": _binary,
    "lut": _lut,
    "softmax": _softmax,
    "layernorm": _layernorm,
    "maxpool": _pool,
    "avgpool": _pool,
    "reduce": _reduce,
    "reshape": _reshape,
    "transpose": _transpose,
    "concat": _concat,
    "slice": _slice,
    "gather": _gather,
    "argmax": _argmax,
    "cast": _cast,
    "flip_sign_bit": _flip_sign_bit,
    "where": _where,
}


def _where_in(j: int, node: Node) -> str:
    return f"node {j} ({node.op} {node.name!r})"


def infer_node(j: int, node: Node, specs: Sequence[TensorSpec]) -> Shape:
    """The output shape of node ``j`` from its inputs' declared specs; BundleError if they do not fit.

    Also checks the attribute arities and the input kinds (dtypes, constants, parameter lengths).
    """
    for name, values in zip(node.schema.attrs, node.attrs, strict=True):
        want = ATTR_LENGTHS.get(name)
        if want is not None and len(values) != want:
            raise BundleError(f"{_where_in(j, node)}: attribute {name} has {len(values)} values, needs {want}")
        lo, hi = ATTR_BOUNDS.get(name, (None, None))
        if lo is not None and hi is not None and not all(lo <= v <= hi for v in values):
            raise BundleError(f"{_where_in(j, node)}: attribute {name} {tuple(values)} is outside [{lo}, {hi}]")
    try:
        return RULES[node.op](node, [specs[i] for i in node.inputs], specs[node.outputs[0]])
    except _Fail as e:
        raise BundleError(f"{_where_in(j, node)}: {e}") from None


def check_bundle_shapes(bundle: Bundle) -> None:
    """Reject a bundle any of whose node outputs is declared with a shape its inputs do not produce.

    Run by :func:`opml.bundle.validate_bundle` after the structural checks (so inputs are defined
    before use and every index is in range), i.e. on every encode and decode.
    """
    specs = bundle.tensors
    for j, node in enumerate(bundle.nodes):
        inferred = infer_node(j, node, specs)
        out = specs[node.outputs[0]]
        if inferred != out.shape:
            raise BundleError(
                f"{_where_in(j, node)}: output tensor {node.outputs[0]} ({out.name!r}) is declared "
                f"{fmt_shape(out.shape)} but its inputs "
                f"{', '.join(fmt_shape(specs[i].shape) for i in node.inputs)} give {fmt_shape(inferred)}"
            )
