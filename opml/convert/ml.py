"""The ai.onnx.ml operators that scikit-learn pipelines export (skl2onnx), rewritten as standard ONNX
nodes that the converter then lowers as usual (so no new lowering, kernel or primitive):

- ``Scaler``: ``Gemm(X, diag(scale), -offset * scale)`` (one ``linear`` op, one rounding);
- ``LinearRegressor``: ``Gemm(X, coefficients^T, intercepts)``;
- ``LinearClassifier``: raw scores ``s = Gemm(X, W^T, b)``; probabilities ``Softmax(s)`` / ``Sigmoid(s)``
  / ``s``; label ``Gather(classlabels_ints, ArgMax(s))``. With one coefficient row and two labels
  (binary), as onnxruntime computes it: scores ``[1 - t, t]`` with ``t = s`` or ``Sigmoid(s)``, label
  ``classlabels[1]`` where ``s > 0``;
- ``Normalizer`` (L1, L2, MAX): ``X * Reciprocal(norm)`` per row;
- ``ArrayFeatureExtractor`` with constant indices: ``Gather`` on the last axis.

``ZipMap`` (a sequence of maps, not a tensor) and string labels are refused with the fix.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .builder import Val
from .context import Context

ML_DOMAIN = "ai.onnx.ml"


def _const(ctx: Context, name: str, arr: np.ndarray) -> str:
    ctx.vals[name] = Val(arr, onnx_dtype=arr.dtype)
    return name


def _str(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _features(ctx: Context, node: onnx.NodeProto) -> int:
    x = ctx.need(node, 0)
    if np.dtype(x.onnx_dtype).kind != "f":
        raise ctx.err(f"{node.op_type} of a {np.dtype(x.onnx_dtype)} input is not supported; cast the features "
                      "to float32 first")
    if x.data.ndim != 2:
        raise ctx.err(f"{node.op_type} expects [N, features], got shape {x.data.shape}")
    return int(x.data.shape[1])


def _floats(ctx: Context, node: onnx.NodeProto, name: str, n: int | None = None) -> np.ndarray:
    v = np.asarray(ctx.attr(node, name, []), dtype=np.float32)
    if n is not None and v.size not in (1, n):
        raise ctx.err(f"{name} has {v.size} values, expected 1 or {n}")
    return v


def expand(ctx: Context, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """Standard ONNX nodes computing ``node`` (an ai.onnx.ml op); constants are registered in ``ctx``."""
    op, x, out, p = node.op_type, node.input[0], node.output, node.output[0] + "_ml"
    mk = helper.make_node
    if op == "Scaler":
        f = _features(ctx, node)
        scale = np.broadcast_to(_floats(ctx, node, "scale", f), (f,)) if ctx.attr(node, "scale") else np.ones(f)
        offset = np.broadcast_to(_floats(ctx, node, "offset", f), (f,)) if ctx.attr(node, "offset") else np.zeros(f)
        w = _const(ctx, p + "_w", np.diag(scale).astype(np.float32))
        b = _const(ctx, p + "_b", (-offset * scale).astype(np.float32))
        return [mk("Gemm", [x, w, b], [out[0]], name=node.name)]
    if op == "LinearRegressor":
        f = _features(ctx, node)
        if _str(ctx.attr(node, "post_transform", b"NONE")) != "NONE":
            raise ctx.err("LinearRegressor with a post_transform is not supported (NONE is)")
        t = int(ctx.attr(node, "targets", 1))
        coef = _floats(ctx, node, "coefficients")
        if coef.size != t * f:
            raise ctx.err(f"{coef.size} coefficients for {t} targets of {f} features")
        inter = _floats(ctx, node, "intercepts")
        inter = np.broadcast_to(inter if inter.size else np.zeros(1, np.float32), (t,))
        w = _const(ctx, p + "_w", coef.reshape(t, f).T.copy())
        b = _const(ctx, p + "_b", np.ascontiguousarray(inter, dtype=np.float32))
        return [mk("Gemm", [x, w, b], [out[0]], name=node.name)]
    if op == "LinearClassifier":
        return _linear_classifier(ctx, node, x, p)
    if op == "Normalizer":
        _features(ctx, node)
        norm = _str(ctx.attr(node, "norm", b"MAX"))
        nodes = {"L2": [mk("ReduceL2", [x, _const(ctx, p + "_ax", np.array([1], np.int64))], [p + "_n"])],
                 "L1": [mk("Abs", [x], [p + "_abs"]),
                        mk("ReduceSum", [p + "_abs", _const(ctx, p + "_ax", np.array([1], np.int64))], [p + "_n"])],
                 "MAX": [mk("ReduceMax", [x], [p + "_n"], axes=[1])]}.get(norm)
        if nodes is None:
            raise ctx.err(f"norm={norm} is not supported (MAX, L1, L2 are)")
        return [*nodes, mk("Reciprocal", [p + "_n"], [p + "_r"]), mk("Mul", [x, p + "_r"], [out[0]], name=node.name)]
    if op == "ArrayFeatureExtractor":
        idx = ctx.need(node, 1)
        if not idx.is_const:
            raise ctx.err("the indices must be a constant")
        axis = ctx.need(node, 0).data.ndim - 1
        return [mk("Gather", [x, node.input[1]], [out[0]], name=node.name, axis=axis)]
    if op == "ZipMap":
        raise ctx.err("ZipMap outputs a sequence of maps, not a tensor; convert the classifier without it "
                      "(skl2onnx: options={id(model): {'zipmap': False}}) and read the probabilities tensor")
    raise ctx.err(f"unsupported op ai.onnx.ml.{op}; Scaler, Normalizer, LinearClassifier, LinearRegressor and "
                  "ArrayFeatureExtractor are lowered; export the rest of the pipeline as ai.onnx operators")


def _linear_classifier(ctx: Context, node: onnx.NodeProto, x: str, p: str) -> list[onnx.NodeProto]:
    mk = helper.make_node
    f = _features(ctx, node)
    if ctx.attr(node, "classlabels_strings") is not None:
        raise ctx.err("string class labels are not supported (bundles hold numbers); train with integer labels "
                      "or read the probabilities output")
    labels = np.asarray(ctx.attr(node, "classlabels_ints", []), dtype=np.int64)
    coef = _floats(ctx, node, "coefficients")
    rows = coef.size // f
    if rows * f != coef.size or rows == 0:
        raise ctx.err(f"{coef.size} coefficients do not fill rows of {f} features")
    inter = _floats(ctx, node, "intercepts")
    inter = np.broadcast_to(inter if inter.size else np.zeros(1, np.float32), (rows,))
    post = _str(ctx.attr(node, "post_transform", b"NONE"))
    binary = rows == 1 and labels.size == 2
    if labels.size != (2 if binary else rows):
        raise ctx.err(f"{labels.size} class labels for {rows} coefficient rows")
    w = _const(ctx, p + "_w", coef.reshape(rows, f).T.copy())
    b = _const(ctx, p + "_b", np.ascontiguousarray(inter, dtype=np.float32))
    lab = _const(ctx, p + "_labels", labels)
    nodes = [mk("Gemm", [x, w, b], [p + "_s"])]
    y_out, z_out = (list(node.output) + ["", ""])[:2]
    if binary:
        if post not in ("NONE", "LOGISTIC"):
            raise ctx.err(f"binary LinearClassifier with post_transform={post} is not supported (NONE, LOGISTIC are)")
        t = p + "_s"
        if post == "LOGISTIC":
            nodes.append(mk("Sigmoid", [p + "_s"], [p + "_t"]))
            t = p + "_t"
        one = _const(ctx, p + "_one", np.array(1.0, dtype=np.float32))
        nodes += [mk("Neg", [p + "_s"], [p + "_neg"]), mk("Concat", [p + "_neg", p + "_s"], [p + "_cmp"], axis=1),
                  mk("ArgMax", [p + "_cmp"], [p + "_i"], axis=1, keepdims=0)]
        if z_out:
            nodes += [mk("Sub", [one, t], [p + "_c"]), mk("Concat", [p + "_c", t], [z_out], axis=1)]
    else:
        transform = {"NONE": "Identity", "SOFTMAX": "Softmax", "LOGISTIC": "Sigmoid"}.get(post)
        if transform is None:
            raise ctx.err(f"post_transform={post} is not supported (NONE, SOFTMAX, LOGISTIC are)")
        nodes.append(mk("ArgMax", [p + "_s"], [p + "_i"], axis=1, keepdims=0))
        if z_out:
            z = mk(transform, [p + "_s"], [z_out])
            if transform == "Softmax":
                z.attribute.append(helper.make_attribute("axis", 1))
            nodes.append(z)
    if y_out:
        nodes.append(mk("Gather", [lab, p + "_i"], [y_out], axis=0))
    return nodes
