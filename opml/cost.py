"""Static cost of a bundle: MACs, elementwise operations and bytes read, from shapes alone.

A pure function of the bundle header and the batch size, so the precompile's gas can be charged
before any work is done (DESIGN §5).
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


def node_cost(bundle: Bundle, node: Node, batch: int = 1) -> ModelCost:
    """Work of one graph node for ``batch`` samples (``weight_bytes`` and ``nodes`` are 0)."""
    t = bundle.tensors
    n_out = _numel(t[node.outputs[0]].concrete_shape(batch))
    ins = [t[i] for i in node.inputs]
    if node.op == "linear":
        return ModelCost(n_out * ins[1].shape[0], 0, 0)
    if node.op == "conv":
        w = ins[1].shape
        macs = n_out * w[1] * w[2] * w[3]
        return ModelCost(macs, 0, 0, conv_macs=macs)
    if node.op == "matmul":
        return ModelCost(n_out * ins[0].concrete_shape(batch)[-1], 0, 0)
    if node.op in ("maxpool", "avgpool"):
        k = node.attr("kernel")
        return ModelCost(0, n_out * k[0] * k[1], 0, window_ops=n_out * k[0] * k[1])
    if node.op in ("reduce", "softmax", "layernorm"):
        return ModelCost(0, 4 * _numel(ins[0].concrete_shape(batch)), 0)
    return ModelCost(0, max(n_out, sum(_numel(s.concrete_shape(batch)) for s in ins if not s.is_const)), 0)


def model_cost(bundle: Bundle, batch: int = 1) -> ModelCost:
    """MACs, elementwise element-ops, constant bytes read and node count for ``batch`` samples."""
    total = ModelCost(0, 0, 0)
    for node in bundle.nodes:
        total = total + node_cost(bundle, node, batch)
    weight_bytes = sum(len(s.data) for s in bundle.tensors if s.data is not None)
    return ModelCost(total.macs, total.elementwise, weight_bytes, total.conv_macs, total.window_ops,
                     len(bundle.nodes))


def parameter_count(bundle: Bundle) -> int:
    """Number of elements in constant tensors of the weight kind (int8/int16 weights and int32 biases)."""
    return sum(_numel(s.shape) for s in bundle.tensors if s.is_const and not s.name.endswith(("_mult", "_shift")))
