"""Static cost of a bundle: MACs, elementwise operations and bytes read, from shapes alone.

A pure function of the bundle header and the batch size, so the precompile's gas can be charged
before any work is done (DESIGN §5). The shapes it reads are the declared ones, which decoding
has verified against every node's inputs (``opml.shapes``), so they are the shapes the engine
really computes (the engine also checks each node's output against them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bundle import Bundle, Node


@dataclass(frozen=True)
class ModelCost:
    """Work of one inference over ``batch`` samples.

    ``macs`` counts every multiply-accumulate, ``conv_macs`` the subset done by convolutions;
    ``elementwise`` counts every element operation, ``window_ops`` the subset done by pooling
    windows. The subsets cost more per unit in the engine, so the gas schedule prices them apart.
    ``nodes`` counts fixed per-call overheads in units of one graph node (see :func:`node_cost`).
    """

    macs: int
    elementwise: int
    weight_bytes: int
    conv_macs: int = 0
    window_ops: int = 0
    nodes: int = 0

    def __add__(self, other: ModelCost) -> ModelCost:
        return ModelCost(self.macs + other.macs, self.elementwise + other.elementwise,
                         self.weight_bytes + other.weight_bytes, self.conv_macs + other.conv_macs,
                         self.window_ops + other.window_ops, self.nodes + other.nodes)


def _numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


#: Window element-ops charged per kernel offset of a pooling node on top of its elements: the engine
#: folds one strided view per offset, a fixed cost of about 2 us (~2,000 element-ops) each.
POOL_OFFSET_OPS = 2048
#: Elementwise units per element of a layernorm whose parameters may send it to the per-element
#: Python-integer evaluation (``kernels_norm``'s exact fallback, ~1 us per element).
PYTHON_ELEMENT_OPS = 1024
#: Elementwise units per row of a layernorm whose rows may need a Python-integer square root.
PYTHON_ROW_OPS = 1024

_I64_LIMIT = 1 << 62


def layernorm_paths(bundle: Bundle, node: Node) -> tuple[bool, bool]:
    """``(rows_in_python, elements_in_python)``: whether some input of the layernorm's dtype could make
    ``opml.kernels_norm`` take a square root per row, or evaluate every element, in Python integers.

    Static worst-case bounds of the int64 path's own checks (``_layernorm_int``), so a layernorm they
    clear never leaves numpy/C; converted models (10 fraction bits, |gamma| <= 8191) always clear them.
    """
    from .kernels import LAYERNORM_SQRT_BITS as g

    x = bundle.tensors[node.inputs[0]]
    info = np.iinfo(x.dtype.np)
    xmax = max(-int(info.min), int(info.max))
    n = x.shape[-1] if x.shape else 0
    eps, frac = node.iattr("eps"), node.iattr("frac_bits")
    rows = ((n * n * xmax * xmax) << (2 * g)) + eps >= _I64_LIMIT
    dmax = 2 * n * xmax
    # (frac_bits outside [0, 32] fails at prepare; the clamp only keeps this shift small)
    num = (dmax << (min(max(frac, 0), 64) + g)) + (1 << 31)  # the quotient's numerator bound (den <= 2^31)
    gmax, bmax = (int(np.abs(bundle.tensors[i].array().astype(np.int64)).max(initial=0)) for i in node.inputs[1:3])
    elements = n * n * xmax * xmax >= _I64_LIMIT or num + (1 << 31) >= _I64_LIMIT or num * gmax + bmax >= _I64_LIMIT
    return rows, elements


def node_cost(bundle: Bundle, node: Node, batch: int = 1) -> ModelCost:
    """Work of one graph node for ``batch`` samples (``weight_bytes`` is 0).

    ``nodes`` counts fixed per-call overheads in units of one node: 1, plus one per convolution group
    beyond the first (each group is its own GEMM call).
    """
    t = bundle.tensors
    n_out = _numel(t[node.outputs[0]].concrete_shape(batch))
    ins = [t[i] for i in node.inputs]
    if node.op == "linear":
        return ModelCost(n_out * ins[1].shape[0], 0, 0, nodes=1)
    if node.op == "conv":
        w = ins[1].shape
        macs = n_out * w[1] * w[2] * w[3]
        return ModelCost(macs, 0, 0, conv_macs=macs, nodes=node.iattr("group"))
    if node.op == "matmul":
        return ModelCost(n_out * ins[0].concrete_shape(batch)[-1], 0, 0, nodes=1)
    if node.op in ("maxpool", "avgpool"):
        k = node.attr("kernel")
        folds = 2 if node.op == "avgpool" and not node.iattr("count_include_pad") else 1
        ops = k[0] * k[1] * (n_out + folds * POOL_OFFSET_OPS)
        return ModelCost(0, ops, 0, window_ops=ops, nodes=1)
    n_in = _numel(ins[0].concrete_shape(batch))
    if node.op == "layernorm":
        rows, elements = layernorm_paths(bundle, node)
        n = ins[0].shape[-1] if ins[0].shape else 1
        extra = (PYTHON_ELEMENT_OPS * n_in if elements else 0) + (PYTHON_ROW_OPS * (n_in // max(n, 1)) if rows else 0)
        return ModelCost(0, 4 * n_in + extra, 0, nodes=1)
    if node.op in ("reduce", "softmax"):
        return ModelCost(0, 4 * n_in, 0, nodes=1)
    return ModelCost(0, max(n_out, sum(_numel(s.concrete_shape(batch)) for s in ins if not s.is_const)), 0, nodes=1)


def model_cost(bundle: Bundle, batch: int = 1) -> ModelCost:
    """MACs, elementwise element-ops, constant bytes read and node count for ``batch`` samples."""
    total = ModelCost(0, 0, 0)
    for node in bundle.nodes:
        total = total + node_cost(bundle, node, batch)
    weight_bytes = sum(len(s.data) for s in bundle.tensors if s.data is not None)
    return ModelCost(total.macs, total.elementwise, weight_bytes, total.conv_macs, total.window_ops, total.nodes)


def parameter_count(bundle: Bundle) -> int:
    """Number of elements in constant tensors of the weight kind (int8/int16 weights and int32 biases)."""
    return sum(_numel(s.shape) for s in bundle.tensors if s.is_const and not s.name.endswith(("_mult", "_shift")))
