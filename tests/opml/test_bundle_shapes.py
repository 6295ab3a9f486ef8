"""Declared shapes are verified: shape-lying bundles are refused at encode, decode and by the store;
the engine guards real shapes; the cost model counts the real work of adversarial-but-valid bundles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opml import adversarial
from opml.bundle import Bundle, DType, Node, TensorSpec, _encode_valid, decode_bundle, encode_bundle, load_bundle
from opml.commitment import compute_address
from opml.cost import PYTHON_ELEMENT_OPS, layernorm_paths, model_cost, node_cost
from opml.engine import get_plan, run
from opml.errors import BundleError, ModelIntegrityError, ShapeMismatchError
from opml.shapes import MAX_BATCH, fmt_shape, numel
from opml.store import LocalStore, MemoryCache

MODELS = Path(__file__).resolve().parents[2] / "models"
EXAMPLES = ("digits_mlp", "digits_cnn", "encoder")
ADD = {"a_mult": (1 << 29,), "b_mult": (1 << 29,), "shift": (30,), "qmin": (-128,), "qmax": (127,)}


def attack_bundle(declared: tuple[int, ...] = (-1, 1, 1)) -> Bundle:
    """The reported attack: [N,4096,1] + [1,4096] really is [N,4096,4096], declared ``declared``, then
    squared by a matmul priced from the declaration."""
    s = 4096
    tensors = (TensorSpec("a", DType.INT8, (-1, s, 1), 0.1, 0), TensorSpec("b", DType.INT8, (1, s), 0.1, 0),
               TensorSpec("t", DType.INT8, declared, 0.1, 0), TensorSpec("y", DType.INT8, declared, 0.1, 0))
    add = Node("add", (0, 1), (2,), tuple(ADD[a] for a in ("a_mult", "b_mult", "shift", "qmin", "qmax")), "wide")
    mm = Node("matmul", (2, 2), (3,), ((1 << 30,), (31,), (-128,), (127,)), "square")
    return Bundle(tensors, (add, mm), (0, 1), (3,))


def lie(b: Bundle, tensor: int, shape: tuple[int, ...]) -> Bundle:
    """``b`` with tensor ``tensor`` declared as ``shape`` (nothing else changed)."""
    tensors = list(b.tensors)
    tensors[tensor] = replace(tensors[tensor], shape=shape)
    return Bundle(tuple(tensors), b.nodes, b.inputs, b.outputs, b.metadata)


def forged_bytes(b: Bundle) -> bytes:
    """Canonical-layout bytes of a bundle that validation would refuse (what an attacker uploads)."""
    return _encode_valid(b)


def test_the_reported_attack_is_refused_naming_node_op_tensor_and_shapes(tmp_path: Path) -> None:
    b = attack_bundle()
    msg = (r"node 0 \(add 'wide'\): output tensor 2 \('t'\) is declared \(N, 1, 1\) but its inputs "
           r"\(N, 4096, 1\), \(1, 4096\) give \(N, 4096, 4096\)")
    with pytest.raises(BundleError, match=msg):
        encode_bundle(b)
    data = forged_bytes(b)
    with pytest.raises(BundleError, match=msg):
        decode_bundle(data)
    with pytest.raises(BundleError, match=msg):
        load_bundle(bytearray(data))
    for store in (LocalStore(tmp_path / "store"), MemoryCache()):
        with pytest.raises(BundleError, match=msg):
            store.put(data)
        with pytest.raises(BundleError, match=msg):
            store.put(b)
        assert store.list() == []
    # the honest declaration is a valid bundle, and the cost model then charges its real size
    honest = attack_bundle((-1, 4096, 4096))
    assert decode_bundle(encode_bundle(honest)).address == compute_address(honest)
    assert model_cost(honest, 1).macs == 4096 ** 3


def test_bytes_already_in_a_store_are_refused_on_read(tmp_path: Path) -> None:
    """Bytes written behind the store's back (an old node, a hostile disk) fail verification."""
    b = attack_bundle()
    store = LocalStore(tmp_path)
    address = compute_address(b)
    store.path(address).parent.mkdir(parents=True, exist_ok=True)
    store.path(address).write_bytes(forged_bytes(b))
    with pytest.raises(ModelIntegrityError, match="declared"):
        store.get_bundle(address)


def test_engine_guard_names_the_node() -> None:
    """A Bundle object never decoded (so never validated) that lies: the engine refuses the node's output."""
    g = attack_bundle((-1, 64, 64))
    small = Bundle((replace(g.tensors[0], shape=(-1, 64, 1)), replace(g.tensors[1], shape=(1, 64)))
                   + g.tensors[2:], g.nodes, g.inputs, g.outputs)
    liar = lie(small, 3, (-1, 64, 1))  # the matmul really gives (N, 64, 64)
    x = [np.ones((2, 64, 1), np.int8), np.ones((1, 64), np.int8)]
    with pytest.raises(ShapeMismatchError, match=r"node 1 \(matmul 'square'\) produced int8 \(2, 64, 64\); .*"
                                                 r"declares int8 \(N, 64, 1\) = \(2, 64, 1\) at batch 2"):
        run(liar, x)
    assert run(small, x)[0].shape == (2, 64, 64)


@pytest.mark.parametrize(("shapes", "declared", "match"), [
    # kinds: dtypes, constants, parameter lengths
    ([("x", DType.INT32, (-1, 4)), ("w", DType.INT8, (4, 3)), ("b", DType.INT32, (3,))], ("y", DType.INT32, (-1, 3)),
     "input 'x' is int32, must be int8/uint8/int16"),
    ([("x", DType.INT8, (-1, 4)), ("w", DType.INT8, (4, 3)), ("b", DType.INT32, (2,))], ("y", DType.INT32, (-1, 3)),
     r"bias 'b' has shape \(2,\), needs \(3,\)"),
    ([("x", DType.INT8, (-1, 5)), ("w", DType.INT8, (4, 3)), ("b", DType.INT32, (3,))], ("y", DType.INT32, (-1, 3)),
     r"last dimension \(5,\) is not the weight's K = 4"),
    ([("x", DType.INT8, (-1, 4)), ("w", DType.INT8, (4, 3)), ("b", DType.INT32, (3,))], ("y", DType.INT8, (-1, 3)),
     "needs mult and shift inputs"),
])
def test_linear_kinds(shapes: list, declared: tuple, match: str) -> None:
    tensors = [TensorSpec(n, dt, s, 0.1, 0, None if n == "x" else bytes(int(np.prod(s)) * dt.np.itemsize))
               for n, dt, s in shapes]
    tensors.append(TensorSpec(declared[0], declared[1], declared[2], 0.1, 0))
    node = Node("linear", tuple(range(len(shapes))), (len(shapes),), ((-128,), (127,)), "fc")
    with pytest.raises(BundleError, match=match):
        encode_bundle(Bundle(tuple(tensors), (node,), (0,), (len(shapes),)))


def test_batch_axis_rules() -> None:
    """Rules hold for every batch size: N against a fixed 4 does not broadcast; slices of N keep it whole."""
    a, b = TensorSpec("a", DType.INT8, (-1, 4), 0.1, 0), TensorSpec("b", DType.INT8, (4, 4), 0.1, 0)
    add = Node("add", (0, 1), (2,), tuple(ADD[k] for k in ("a_mult", "b_mult", "shift", "qmin", "qmax")))
    with pytest.raises(BundleError, match=r"\(N, 4\), \(4, 4\) do not broadcast for every batch size"):
        encode_bundle(Bundle((a, b, TensorSpec("y", DType.INT8, (4, 4), 0.1, 0)), (add,), (0, 1), (2,)))
    for (start, end, step), out in [((0, 1 << 62, 1), (-1, 4)), ((0, 1, 1), (1, 4))]:
        node = Node("slice", (0,), (1,), ((start, 0), (end, 4), (step, 1)))
        b2 = Bundle((a, TensorSpec("y", DType.INT8, out, 0.1, 0)), (node,), (0,), (1,))
        assert decode_bundle(encode_bundle(b2)).tensors[1].shape == out
    node = Node("slice", (0,), (1,), ((0, 0), (3, 4), (1, 1)))  # min(N, 3) is no declarable shape
    with pytest.raises(BundleError, match="must keep it whole"):
        encode_bundle(Bundle((a, TensorSpec("y", DType.INT8, (3, 4), 0.1, 0)), (node,), (0,), (1,)))
    assert numel((-2, 3)) == (6, 1) and numel((0, -1)) == (0, 0) and fmt_shape((-3, 5)) == "(3N, 5)"
    assert MAX_BATCH == 1 << 16


# ------------------------------------------------------------------------------------------ fuzz


def _bases() -> list[Bundle]:
    out = [load_bundle(MODELS / n / "model.bundle") for n in EXAMPLES]
    out += [f(1).bundle for f in adversarial.CASES.values()]
    out.append(attack_bundle((-1, 4096, 4096)))
    return out


BASES = _bases()


@st.composite
def lying_shape(draw: st.DrawFn, true: tuple[int, ...]) -> tuple[int, ...]:
    dims = st.sampled_from([0, 1, 2, 3, 4096, 1 << 20])
    shape = list(true)
    kind = draw(st.sampled_from(["change", "change", "drop", "add", "batch"]))
    if kind == "change" and shape:
        i = draw(st.integers(0, len(shape) - 1))
        shape[i] = draw(st.one_of(dims, st.sampled_from([shape[i] + 1, max(shape[i] - 1, 0), 2 * shape[i]])))
    elif kind == "drop" and shape:
        del shape[draw(st.integers(0, len(shape) - 1))]
    elif kind == "add":
        shape.insert(draw(st.integers(1, len(shape))) if shape and shape[0] < 0 else 0, draw(dims))
    elif shape:  # toggle or rescale the batch dimension
        batch_dims = [-1, -2, 1] if shape[0] >= 0 else [1, -shape[0], -2 * shape[0]]
        shape[0] = draw(st.sampled_from(batch_dims))
    return tuple(shape)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_shape_lying_bundles_are_all_refused(data: st.DataObject) -> None:
    """Any node output declared with a shape other than the one its inputs give is refused at decode
    (a reshape's declaration is its target: only a different element count is a lie)."""
    base = data.draw(st.sampled_from(BASES))
    j = data.draw(st.integers(0, len(base.nodes) - 1))
    node = base.nodes[j]
    true = base.tensors[node.outputs[0]].shape
    shape = data.draw(lying_shape(true))
    if shape == true or (node.op == "reshape" and numel(shape) == numel(true)):
        return
    liar = lie(base, node.outputs[0], shape)
    raw = forged_bytes(liar)
    with pytest.raises(BundleError):
        decode_bundle(raw)
    with pytest.raises(BundleError):
        encode_bundle(liar)
    store = MemoryCache()
    with pytest.raises(BundleError):
        store.put(raw)
    assert store.list() == []


# ---------------------------------------------------------------------- the cost model counts real work


def real_outputs(b: Bundle, inputs: Sequence[np.ndarray]) -> list[tuple[Node, list[np.ndarray], np.ndarray]]:
    """Each node with its real input and output arrays (the engine's kernels, one node at a time)."""
    plan = get_plan(b)
    env: dict[int, np.ndarray] = {**plan.consts, **dict(zip(b.inputs, inputs, strict=True))}
    out = []
    for node, kernel in zip(b.nodes, plan.kernels, strict=True):
        args = [env[i] for i in node.inputs]
        env[node.outputs[0]] = y = np.asarray(kernel(args))
        out.append((node, args, y))
    return out


def check_counts(b: Bundle, inputs: Sequence[np.ndarray], batch: int) -> None:
    """Every node's charged quantities equal (GEMMs) or bound (the rest) the work its real arrays imply."""
    for node, args, y in real_outputs(b, inputs):
        assert y.shape == b.tensors[node.outputs[0]].concrete_shape(batch)
        c = node_cost(b, node, batch)
        assert c.nodes >= 1
        if node.op == "linear":
            assert c.macs == y.size * args[1].shape[0]
        elif node.op == "conv":
            w = args[1].shape
            assert c.macs == c.conv_macs == y.size * w[1] * w[2] * w[3]
            assert c.nodes == node.iattr("group")  # one GEMM call per group
        elif node.op == "matmul":
            assert c.macs == y.size * args[0].shape[-1]
        elif node.op in ("maxpool", "avgpool"):
            kh, kw = node.attr("kernel")
            assert c.window_ops == c.elementwise >= kh * kw * (y.size + 2048)
        else:
            acts = [a for a, i in zip(args, node.inputs, strict=True) if not b.tensors[i].is_const]
            assert c.macs == 0 and c.elementwise >= max([y.size] + [a.size for a in acts])


@pytest.mark.parametrize("name", sorted(adversarial.CASES))
def test_adversarial_cases_are_valid_and_fully_counted(name: str) -> None:
    case = adversarial.CASES[name](1, 2)
    b = decode_bundle(encode_bundle(case.bundle))
    check_counts(b, case.inputs, case.batch)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_models_are_fully_counted(name: str) -> None:
    b = load_bundle(MODELS / name / "model.bundle")
    spec = b.input_specs()[0]
    x = np.zeros(spec.concrete_shape(3), spec.dtype.np)
    check_counts(b, [x], 3)


def test_overheads_the_shapes_alone_do_not_show() -> None:
    """Per-group GEMM calls, per-offset pooling folds, and layernorms that may run in Python integers."""
    conv = adversarial.many_group_conv(1).bundle
    assert model_cost(conv).nodes == 256
    pool = adversarial.big_pool_window(2).bundle
    assert model_cost(pool).window_ops == 32 * 32 * (1 + 2048)
    ln = adversarial.layernorm_extreme(1).bundle
    assert layernorm_paths(ln, ln.nodes[0]) == (False, True)
    assert model_cost(ln, 2).elementwise >= PYTHON_ELEMENT_OPS * 2 * 4 * 256
    for n in EXAMPLES:  # converted layernorms (10 fraction bits, |gamma| <= 8191) stay on the fast paths
        b = load_bundle(MODELS / n / "model.bundle")
        assert all(layernorm_paths(b, nd) == (False, False) for nd in b.nodes if nd.op == "layernorm")
