"""Generate the fraud-VM step vectors ``tests/vectors/fraud_vm/*.json``.

Each file is one small one-node bundle (an op and an edge case: saturation, negative zero points,
padding lanes, a last output word only partly filled, float infinities...). For every instruction
kind its program uses, the file holds the first step of that kind and, where different, the last:
pre-state hash, decoded instruction, witness (as JSON and as the calldata the L1 verifier takes) and
post-state hash. Both the Python VM (``tests/fraud_vm/test_vm_vectors.py``) and the Solidity step
verifier must map every witness to its post-state hash.

``failures`` (``scripts/fraud_vm_failures.py``) are forged or inconsistent steps, each naming the
error (``fraud_vm.errors``) with which ``check_step(pre_state_hash, witness_calldata,
post_state_hash)`` must fail; the Solidity verifier must revert with the custom error of that name.

    python scripts/gen_fraud_vm_vectors.py          # (re)write the files
    python scripts/gen_fraud_vm_vectors.py --check  # exit 1 if they are stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fraud_vm_failures import kind_failures, unsupported_node, witness_failures  # noqa: E402

from fraud_vm.trace import NodeTrace  # noqa: E402
from opml.bundle import Bundle, DType, Node, TensorSpec  # noqa: E402
from opml.ops import BY_NAME  # noqa: E402

OUT_DIR = ROOT / "tests" / "vectors" / "fraud_vm"
I8, U8, I16, I32, I64, F32, BOOL = (
    DType.INT8,
    DType.UINT8,
    DType.INT16,
    DType.INT32,
    DType.INT64,
    DType.FLOAT32,
    DType.BOOL,
)


def act(dtype: DType, shape: Sequence[int], scale: float = 0.0, zp: int = 0) -> TensorSpec:
    return TensorSpec("t", dtype, tuple(shape), float(np.float32(scale)), zp)


def const(arr: np.ndarray, scale: float = 0.0, zp: int = 0) -> TensorSpec:
    a = np.asarray(arr)
    return TensorSpec("c", DType.from_np(a.dtype), tuple(a.shape), float(np.float32(scale)), zp, a.tobytes())


def one_node(op: str, ins: Sequence[TensorSpec], out: TensorSpec, **attrs: Any) -> Bundle:
    names = BY_NAME[op].attrs
    at = tuple(tuple(int(v) for v in (attrs[a] if isinstance(attrs[a], list | tuple) else [attrs[a]])) for a in names)
    tensors = tuple(
        TensorSpec(f"t{i}", t.dtype, t.shape, t.scale, t.zero_point, t.data) for i, t in enumerate((*ins, out))
    )
    node = Node(op, tuple(range(len(ins))), (len(ins),), at, name=op)
    return Bundle(tensors, (node,), tuple(i for i, t in enumerate(ins) if not t.is_const), (len(ins),), {"vector": op})


def _rng(seed: int) -> np.random.RandomState:
    return np.random.RandomState(seed)


def _ints(
    r: np.random.RandomState, dtype: DType, shape: Sequence[int], lo: int | None = None, hi: int | None = None
) -> np.ndarray:
    info = np.iinfo(dtype.np)
    return r.randint(info.min if lo is None else lo, (info.max if hi is None else hi) + 1, size=shape).astype(dtype.np)


def _linear(r, xdt, wdt, k, n, xzp, raw=False, big_bias=False):  # type: ignore[no-untyped-def]
    x = _ints(r, xdt, (2, k))
    w = _ints(r, wdt, (k, n), -255, 255) if wdt == I16 else _ints(r, wdt, (k, n))
    bias = (np.full(n, 2**31 - 1000, np.int32) if big_bias else _ints(r, I32, (n,), -5000, 5000)).astype(np.int32)
    ins = [act(xdt, x.shape, 0.05, xzp), const(w), const(bias)]
    if raw:
        return one_node("linear", ins, act(I32, (2, n)), qmin=0, qmax=0), [x]
    ins += [const(_ints(r, I32, (n,), 1 << 29, (1 << 30))), const(np.full(n, 38, np.int32))]
    return one_node("linear", ins, act(I8, (2, n), 0.1, -3), qmin=-128, qmax=127), [x]


def _cases() -> dict[str, tuple[str, Callable[[], tuple[Bundle, list[np.ndarray]]]]]:
    c: dict[str, tuple[str, Callable[[], tuple[Bundle, list[np.ndarray]]]]] = {}
    c["linear_int8_negative_zp"] = (
        "MAC + FIN_REQ; x zero point -128; N=40: five full blocks of 8 lanes per row, last word partly filled",
        lambda: _linear(_rng(1), I8, I8, 5, 40, -128),
    )
    c["linear_uint8_int16_weights"] = (
        "MAC with uint8 activations and int16 weights",
        lambda: _linear(_rng(2), U8, I16, 4, 6, 131),
    )
    c["linear_int32_raw_saturation"] = (
        "FIN_REQ raw int32 output saturating at 2^31-1",
        lambda: _linear(_rng(3), I8, I8, 3, 5, 7, raw=True, big_bias=True),
    )
    c["linear_requant_saturation"] = (
        "FIN_REQ: accumulator clamps to int32 before requantization, output to qmax",
        lambda: _linear(_rng(4), I8, I8, 3, 5, 0, big_bias=True),
    )

    def conv() -> tuple[Bundle, list[np.ndarray]]:
        r = _rng(5)
        x, w = _ints(r, I8, (1, 2, 3, 4)), _ints(r, I8, (2, 2, 2, 2))
        ins = [
            act(I8, x.shape, 0.1, -5),
            const(w),
            const(_ints(r, I32, (2,), -100, 100)),
            const(np.array([1 << 30, 3 << 28], np.int32)),
            const(np.array([37, 38], np.int32)),
        ]
        return one_node(
            "conv",
            ins,
            act(I8, (1, 2, 2, 4), 0.2, 4),
            pads=(1, 1, 0, 0),
            strides=(2, 1),
            dilations=(1, 1),
            group=1,
            qmin=-128,
            qmax=127,
        ), [x]

    c["conv_padding_lanes"] = ("MAC with PAD lanes (zero-point padding contributes 0), per-channel FIN_REQ", conv)

    def pool(op: str) -> Callable[[], tuple[Bundle, list[np.ndarray]]]:
        def f() -> tuple[Bundle, list[np.ndarray]]:
            x = _ints(_rng(6), I8, (1, 1, 3, 3))
            common = dict(kernel=(2, 2), strides=(2, 2), pads=(1, 1, 0, 0))
            if op == "maxpool":
                return one_node(
                    op, [act(I8, x.shape, 0.1, 0)], act(I8, (1, 1, 2, 2), 0.1, 0), dilations=(1, 1), **common
                ), [x]
            return one_node(
                op,
                [act(I8, x.shape, 0.1, -7)],
                act(I8, (1, 1, 2, 2), 0.1, 2),
                count_include_pad=0,
                mult=1 << 30,
                shift=30,
                **common,
            ), [x]

        return f

    c["maxpool_padding"] = ("ACC_MAX with padding lanes (int8 minimum), FIN_MOVE", pool("maxpool"))
    c["avgpool_exclude_pad"] = ("ACC_SUM + FIN_DIV counting only real elements (aux)", pool("avgpool"))

    def reduce(mode: int) -> Callable[[], tuple[Bundle, list[np.ndarray]]]:
        def f() -> tuple[Bundle, list[np.ndarray]]:
            x = _ints(_rng(7 + mode), I8, (2, 3, 5))
            return one_node(
                "reduce",
                [act(I8, x.shape, 0.1, -9)],
                act(I8, (2, 5), 0.1, 3),
                mode=mode,
                axes=(1,),
                keepdims=0,
                mult=1 << 30,
                shift=30,
            ), [x]

        return f

    c["reduce_mean_strided"] = ("ACC_SUM over a strided axis, FIN_DIV with count", reduce(1))
    c["reduce_l2"] = ("ACC_SQ + FIN_DIV with isqrt", reduce(2))

    def argmax() -> tuple[Bundle, list[np.ndarray]]:
        x = np.array([[1.5, -np.inf, 1.5], [np.inf, 0.0, -0.0]], np.float32)
        return one_node("argmax", [act(F32, x.shape)], act(I64, (2,)), axis=1, keepdims=0, select_last_index=1), [x]

    c["argmax_float_ties_last"] = ("ACC_ARG on float32 (order keys, ties to the last index), FIN_MOVE from aux", argmax)

    def binary(op: str) -> Callable[[], tuple[Bundle, list[np.ndarray]]]:
        def f() -> tuple[Bundle, list[np.ndarray]]:
            r = _rng(11)
            a, b = _ints(r, I8, (3, 12)), _ints(r, I8, (1, 12))
            ins = [act(I8, a.shape, 0.1, -128), act(I8, b.shape, 0.2, 127)]
            if op == "add":
                return one_node(
                    "add",
                    ins,
                    act(I8, a.shape, 0.1, 5),
                    a_mult=1 << 30,
                    b_mult=-(1 << 29),
                    shift=29,
                    qmin=-100,
                    qmax=100,
                ), [a, b]
            return one_node("mul", ins, act(I8, a.shape, 0.1, 5), mult=1 << 30, shift=36, qmin=-128, qmax=127), [a, b]

        return f

    c["add_broadcast_saturation"] = (
        "ADD with a broadcast operand, extreme zero points and qmin/qmax clamping",
        binary("add"),
    )
    c["mul_broadcast"] = ("MUL with a broadcast operand", binary("mul"))

    def lut() -> tuple[Bundle, list[np.ndarray]]:
        r = _rng(12)
        x = np.array([-128, 127, 0, -1, 5], np.int8)
        return one_node("lut", [act(I8, x.shape, 0.1, 0), const(_ints(r, I8, (256,)))], act(I8, x.shape, 0.1, 0)), [x]

    c["lut_int8_extremes"] = ("LUT at the table's first and last entries", lut)

    def quant() -> tuple[Bundle, list[np.ndarray]]:
        x = np.array([np.inf, -np.inf, 1e30, -1e-30, 0.5, 1.5, -2.5, 3.3e-39], np.float32)
        return one_node("quantize", [act(F32, x.shape)], act(I8, x.shape, 0.25, -3)), [x]

    c["quantize_inf_ties_subnormal"] = ("QUANT: infinities, overflow, ties to even, a subnormal input", quant)

    def dequant() -> tuple[Bundle, list[np.ndarray]]:
        x = np.array([-128, 127, 0, 1, -1, 64, 3, 9, 100], np.int8)
        return one_node("dequantize", [act(I8, x.shape, 0.0123, -77)], act(F32, x.shape)), [x]

    c["dequantize_two_words"] = ("DEQUANT over two output words (8 float32 lanes, then 1)", dequant)

    def cast() -> tuple[Bundle, list[np.ndarray]]:
        x = np.array([3.7, -3.7, 3e9, -3e9, np.inf, 0.0], np.float32)
        return one_node("cast", [act(F32, x.shape)], act(I32, x.shape)), [x]

    c["cast_float_to_int32_saturating"] = ("CAST float32 -> int32: truncation and saturation", cast)

    def flip() -> tuple[Bundle, list[np.ndarray]]:
        x = np.array([0, 255, 128, 127], np.uint8)
        return one_node("flip_sign_bit", [act(U8, x.shape, 0.5, 128)], act(I8, x.shape, 0.5, 0)), [x]

    c["flip_sign_bit"] = ("FLIP uint8 -> int8", flip)

    def where() -> tuple[Bundle, list[np.ndarray]]:
        cnd = np.array([[True], [False]])
        a, b = np.arange(6, dtype=np.int16).reshape(2, 3), -np.arange(3, dtype=np.int16)
        return one_node("where", [act(BOOL, cnd.shape), act(I16, a.shape), act(I16, b.shape)], act(I16, (2, 3))), [
            cnd,
            a,
            b,
        ]

    c["where_broadcast"] = ("WHERE with three broadcast operands", where)

    def gather() -> tuple[Bundle, list[np.ndarray]]:
        d = np.arange(24, dtype=np.int8).reshape(4, 6)
        idx = np.array([-1, 0, 3], np.int64)
        return one_node("gather", [act(I8, d.shape), act(I64, idx.shape)], act(I8, (3, 6)), axis=0), [d, idx]

    c["gather_negative_index"] = ("GATHER with a negative index (data address depends on a word read)", gather)

    def transpose() -> tuple[Bundle, list[np.ndarray]]:
        x = np.arange(40, dtype=np.int8).reshape(5, 8)
        return one_node("transpose", [act(I8, x.shape)], act(I8, (8, 5)), perm=(1, 0)), [x]

    c["transpose_copy"] = ("COPY gathering lanes from several input words", transpose)

    def softmax() -> tuple[Bundle, list[np.ndarray]]:
        x = _ints(_rng(13), I8, (2, 40))
        table = (np.maximum(1 << 20 >> (np.arange(256) // 8), 0)).astype(np.int32)
        return one_node("softmax", [act(I8, x.shape, 0.1, 3), const(table)], act(I8, x.shape, 1 / 256, -128), axis=1), [
            x
        ]

    c["softmax_two_chunks"] = ("SM_MAX / SM_SUM / SM_OUT over rows of 40 (two chunks)", softmax)

    def layernorm() -> tuple[Bundle, list[np.ndarray]]:
        r = _rng(14)
        x = _ints(r, I8, (2, 36))
        ins = [
            act(I8, x.shape, 0.1, -4),
            const(_ints(r, I32, (36,), -(1 << 20), 1 << 20)),
            const(_ints(r, I32, (36,), -(1 << 24), 1 << 24)),
        ]
        return one_node(
            "layernorm",
            ins,
            act(I8, x.shape, 0.1, 1),
            eps=1000,
            frac_bits=10,
            mult=1 << 30,
            shift=40,
            qmin=-128,
            qmax=127,
        ), [x]

    c["layernorm_two_chunks"] = ("LN_SUM / LN_VAR / LN_DEN / LN_OUT over rows of 36", layernorm)

    def empty() -> tuple[Bundle, list[np.ndarray]]:
        x = np.zeros((0, 4), np.int8)
        return one_node("reshape", [act(I8, (0, 4))], act(I8, (4, 0))), [x]

    c["empty_output_nop"] = ("NOP: a node with an empty output still has one step", empty)
    return c


def vectors_for(name: str, desc: str, bundle: Bundle, inputs: list[np.ndarray]) -> dict[str, Any]:
    tr = NodeTrace(bundle, 0, dict(zip(bundle.inputs, inputs, strict=True)))
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for k in range(tr.num_steps):
        kind = tr.program.instr(k).kind.name
        first.setdefault(kind, k)
        last[kind] = k
    steps = sorted(set(first.values()) | set(last.values()))
    vecs = []
    for k in steps:
        w = tr.witness_at(k)
        vecs.append(
            {
                "step": k,
                "instruction": tr.program.instr(k).to_json(),
                "pre_state_hash": "0x" + tr.state_hash_at(k).hex(),
                "witness": w.to_json(),
                "witness_calldata": "0x" + w.encode().hex(),
                "witness_bytes": w.size_bytes(),
                "post_state_hash": "0x" + tr.state_hash_at(k + 1).hex(),
            }
        )
    failures = kind_failures(name, tr)
    if name == WITNESS_FAILURES_CASE:
        failures = witness_failures(tr, 0) + failures
    if name == UNSUPPORTED_CASE:
        failures.append(unsupported_node(tr))
    return {"name": name, "description": desc, "op": bundle.nodes[0].op, "num_steps": tr.num_steps, "vectors": vecs,
            "failures": failures}


WITNESS_FAILURES_CASE = "linear_int8_negative_zp"
"""The file whose first step (a MAC over three regions) carries every witness-level failure."""
UNSUPPORTED_CASE = "add_broadcast_saturation"


def generate() -> dict[str, str]:
    """File name -> JSON text of every vector file."""
    out = {}
    for name, (desc, make) in _cases().items():
        bundle, inputs = make()
        doc = vectors_for(name, desc, bundle, inputs)
        vecs, fails = doc.pop("vectors"), doc.pop("failures")
        head = json.dumps(doc, sort_keys=True)[:-1]
        body = ",\n".join(json.dumps(v, sort_keys=True, separators=(",", ":")) for v in vecs)
        fbody = ",\n".join(json.dumps(v, sort_keys=True, separators=(",", ":")) for v in fails)
        out[name + ".json"] = f'{head}, "vectors": [\n{body}\n], "failures": [\n{fbody}\n]}}\n'

    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed vectors are stale")
    args = ap.parse_args()
    files = generate()
    if args.check:
        existing = {p.name for p in OUT_DIR.glob("*.json")}
        stale = [n for n, t in files.items() if not (OUT_DIR / n).exists() or (OUT_DIR / n).read_text() != t]
        stale += sorted(existing - set(files))
        if stale:
            print("stale fraud-VM vectors:", ", ".join(stale), "- run scripts/gen_fraud_vm_vectors.py")
            return 1
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for n, t in files.items():
        (OUT_DIR / n).write_text(t)
    print(f"wrote {len(files)} files to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
