"""The Solidity float32 arithmetic (``LibF32``) and float instructions (``LibExecFloat``) against Python.

``F32Harness`` exposes both libraries; its ``multi`` runs many calls in one py-evm frame, so each
check below compares hundreds of cases per call. Every case must give the same value as
``fraud_vm.f32`` / ``fraud_vm.isa``, or revert with the error Python raises (same name):

1. every ``LibF32`` function on exhaustive edge sets (zeros, subnormals, normal extremes, ties for
   ``rint``, infinities, NaN payloads, the 2^31 and 2^63 truncation boundaries) and on random bit
   patterns (hypothesis, derandomized);
2. ``quantizeValue``, ``dequantizeValue``, ``castValue`` (every source/destination dtype pair, bad
   dtype codes) and ``orderKey`` on edge and random operands;
3. ``execFloat`` on the QUANT/DEQUANT/CAST steps of ``tests/vectors/fraud_vm/*.json`` (the words
   written, the words touched, or the error) and on random steps over random memories (PAD and
   out-of-region operands, words missing from the witness, values that do not fit the output).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode
from hypothesis import given, settings
from hypothesis import strategies as st
from pinned_hypothesis import no_local_constants  # noqa: F401 (autouse: examples independent of the imports)

from ai_evm.contracts import artifact
from fraud_vm import f32 as F
from fraud_vm import isa
from fraud_vm.context import decode_context
from fraud_vm.errors import FraudVMError, WordNotInWitness, error_from_selector, is_named
from fraud_vm.isa import I32_MAX, I32_MIN, Instr, Kind, Regs
from fraud_vm.memory import Region, StepAccess
from fraud_vm.state import I64_MAX, I64_MIN, I256_MAX, I256_MIN, LANES, decode_state
from fraud_vm.stepper import instr_at, num_steps
from fraud_vm.vm import StepWitness
from opml.bundle import DType

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "fraud_vm"
FLOAT_KINDS = (Kind.QUANT, Kind.DEQUANT, Kind.CAST)
PANIC = bytes.fromhex("4e487b71")
U32 = (1 << 32) - 1
PAD_WORD = (1 << 256) - 1
HYP = settings(max_examples=5, derandomize=True, deadline=None)

Outcome = tuple[str, Any]
"""``("ok", value)`` or ``("err", error name)``."""
Step = tuple[Instr, Regs, list[Region], dict[tuple[int, int], bytes]]
"""An instruction, the registers, the regions and the witness words ``(region, index) -> value``."""

# ------------------------------------------------------------------------------------------------
# edge sets

F32_EDGES = [
    0x00000000, 0x80000000,  # +0, -0
    0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00400000,  # subnormals: min, max, half-way
    0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,  # normals: min, max
    0x3F800000, 0xBF800000, 0x3F000000, 0xBF000000, 0x3FC00000, 0xBFC00000,  # 1, -1, 0.5, -0.5, 1.5, -1.5
    0x40200000, 0xC0200000, 0x40600000, 0x40900000, 0x3EFFFFFF, 0x3F000001,  # 2.5, -2.5, 3.5, 4.5, 0.5 +- ulp
    0x437F8000, 0x43800000, 0x42FF0000, 0xC3008000, 0x4B000001, 0x4B7FFFFF,  # 255.5, 256, 127.5, -128.5, 2^23+1
    0x4EFFFFFF, 0x4F000000, 0x4F000001, 0xCF000000, 0xCF000001,  # around +-2^31
    0x4F800000, 0x5EFFFFFF, 0x5F000000, 0x5F000001, 0xDF000000, 0xDF000001,  # 2^32, around +-2^63
    0x7F800000, 0xFF800000,  # +-inf
    0x7FC00000, 0x7F800001, 0x7FBFFFFF, 0xFFC00000, 0xFFFFFFFF, 0xFF800001,  # NaN payloads
    0x3DCCCCCD, 0x3C23D70A, 0x3A83126F, 0x33D6BF95, 0x0DA24260, 0x01000000,  # 0.1, 0.01, 1e-3, 1e-7, tiny
]
NOT_F32 = [-1, -2, -128, -(1 << 31), -(1 << 63), 1 << 32, (1 << 32) + 5, (1 << 63) - 1, (1 << 40) | 0x3F800000]
FINITE = [b for b in F32_EDGES if (b >> 23) & 0xFF != 0xFF]
NONZERO = [b for b in FINITE if b & 0x7FFFFFFF]
SCALES = [0x3F800000, 0x3F000000, 0x40000000, 0x3DCCCCCD, 0x3B808081, 0x00000001, 0x007FFFFF, 0x7F7FFFFF,
          0x42C80000, 0x3A83126F, 0xBF800000, 0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, -1, 1 << 32]
INT_EDGES = [0, 1, -1, 2, 3, (1 << 24) - 1, 1 << 24, (1 << 24) + 1, (1 << 24) + 3, (1 << 25) + 2, (1 << 25) + 6,
             (1 << 31) - 1, -(1 << 31), (1 << 31), (1 << 63) - 1, -(1 << 63), 1 << 64, (1 << 127), (1 << 128) - 1,
             (1 << 128) - (1 << 103), (1 << 128) - (1 << 104), (1 << 128) - (1 << 104) - 1, -(1 << 128),
             1 << 128, I256_MAX, I256_MIN, I256_MIN + 1, 12345678, -87654321]
RANGE = {dt: isa._RANGE[dt] for dt in DType}


def abi_type(param: dict[str, Any]) -> str:
    """The canonical ABI type string of one ABI parameter (tuples expanded; as the conftest's)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return f"({','.join(abi_type(c) for c in param['components'])}){kind[len('tuple'):]}"
    return kind


def output_types(h: Any, fn: str) -> list[str]:
    """The ABI output types of the harness function ``fn``."""
    (e,) = [e for e in h.artifact.abi if e.get("type") == "function" and e.get("name") == fn]
    return [abi_type(p) for p in e["outputs"]]


def parts_of(bits: int) -> tuple[int, int, int]:
    p = F.f32_parts(bits)
    assert not isinstance(p, str)
    return p


# ------------------------------------------------------------------------------------------------
# running many calls


@pytest.fixture(scope="module")
def h(prague: Any) -> Any:
    return prague.deploy("F32Harness")


def py_outcome(fn: Callable[..., Any], *args: Any) -> Outcome:
    """Python's value, or the name of the fraud-VM error it raises."""
    try:
        return ("ok", fn(*args))
    except FraudVMError as e:
        return ("err", type(e).__name__)


def sol_outcomes(h: Any, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Outcome]:
    """Run ``calls`` (function name, arguments) through ``multi`` and decode each outcome: the single
    return value (or the tuple of several), the custom error's name, or ``Panic(code)``."""
    out: list[Outcome] = []
    for start in range(0, len(calls), 400):
        chunk = calls[start : start + 400]
        res = h.call("multi", [h.encode(fn, *args) for fn, args in chunk], gas=1_000_000_000)
        assert res.ok, res
        oks, rets = res.values
        for (fn, _), ok, ret in zip(chunk, oks, rets, strict=True):
            if ok:
                vals = decode(output_types(h, fn), ret)
                out.append(("ok", vals[0] if len(vals) == 1 else tuple(vals)))
            elif ret[:4] == PANIC:
                out.append(("err", f"Panic({int.from_bytes(ret[4:], 'big'):#x})"))
            else:
                # a fraud-VM error raised in assembly (LibVMMemory) is not in the harness's ABI
                named = error_from_selector(ret)
                name = h._errors[ret[:4]]["name"] if ret[:4] in h._errors else named.__name__ if named else ret.hex()
                out.append(("err", name))
    return out


def check_all(h: Any, cases: Iterable[tuple[str, tuple[Any, ...], Callable[..., Any], tuple[Any, ...]]]) -> int:
    """Each case is ``(solidity fn, its args, python fn, its args)``: same value or same error name."""
    cases = list(cases)
    got = sol_outcomes(h, [(fn, args) for fn, args, _, _ in cases])
    for (fn, args, pfn, pargs), sol in zip(cases, got, strict=True):
        py = py_outcome(pfn, *pargs)
        assert sol == py, f"{fn}{args}: solidity {sol}, python {py}"
    return len(cases)


def parts_tuple(bits: int) -> tuple[int, int, int, int]:
    """``f32_parts`` in the harness's flattened form ``(cls, sign, m, e)``."""
    p = F.f32_parts(bits)
    if p == F.NAN:
        cls = 1
    elif p == F.POS_INF:
        cls = 2
    elif p == F.NEG_INF:
        cls = 3
    else:
        assert not isinstance(p, str)
        return (0, *p)
    # the other fields mirror Python's decomposition: sign only, mantissa and exponent unset
    return (cls, -1 if bits >> 31 else 1, 0, 0)


# ------------------------------------------------------------------------------------------------
# 1. LibF32


def f32_cases(bits_list: Sequence[int], ints: Sequence[int], rng: random.Random, per_x: int | None) -> list[Any]:
    """Cases for every LibF32 function over the given float bit patterns and integers; division of
    every finite ``x`` by every non-zero (``per_x`` None) or ``per_x`` sampled ``y``, multiplication
    by ``per_x`` (or 12) sampled ``y``."""
    finite = [b for b in bits_list if (b >> 23) & 0xFF != 0xFF]
    nonzero = [b for b in finite if b & 0x7FFFFFFF]
    cases: list[Any] = []
    cases += [("f32Parts", (b,), parts_tuple, (b,)) for b in bits_list]
    cases += [("f32Rint", parts_of(b), F.f32_rint, parts_of(b)) for b in finite]
    cases += [("f32Trunc", parts_of(b), F.f32_trunc, parts_of(b)) for b in finite]
    cases += [("f32FromInt", (v,), F.f32_from_int, (v,)) for v in ints]
    for x in finite:
        for y in nonzero if per_x is None else rng.sample(nonzero, min(len(nonzero), per_x)):
            nz = rng.random() < 0.5
            cases.append(("f32DivParts", (x, y, nz), F.f32_div_parts, (parts_of(x), parts_of(y), nz)))
        for y in rng.sample(finite, min(len(finite), per_x or 12)):
            cases.append(("f32MulParts", (x, y), F.f32_mul_parts, (parts_of(x), parts_of(y))))
    return cases


def test_f32_edges(h: Any) -> None:
    """Every LibF32 function on the edge sets (every pair for division, the quantize path)."""
    rng = random.Random(0)
    n = check_all(h, f32_cases(F32_EDGES + NOT_F32, INT_EDGES, rng, None))
    assert n > len(FINITE) * len(NONZERO)


def test_f32_helpers(h: Any) -> None:
    """bitLength (every power of two and every 2^k - 1), roundRatioEven (exact ties), floorLog2Ratio
    and f32RoundScaled within the documented bounds (p, d < 2^128), including the carry into the
    exponent and underflow to zero."""
    rng = random.Random(1)
    cases: list[Any] = []
    xs = [0, 3] + [1 << k for k in range(256)] + [(1 << k) - 1 for k in range(2, 257)]
    xs += [rng.getrandbits(rng.randint(1, 256)) for _ in range(60)]
    cases += [("bitLength", (x,), int.bit_length, (x,)) for x in xs]
    for _ in range(150):
        p, q = rng.getrandbits(rng.randint(1, 200)), rng.getrandbits(rng.randint(1, 128)) or 1
        cases.append(("roundRatioEven", (p, q), F.round_ratio_even, (p, q)))
        if p:
            cases.append(("floorLog2Ratio", (p, q), F.floor_log2_ratio, (p, q)))
    for k in range(1, 12):  # exact halves: 2k+1 over 2
        cases.append(("roundRatioEven", (2 * k + 1, 2), F.round_ratio_even, (2 * k + 1, 2)))
    for _ in range(300):
        p = rng.getrandbits(rng.randint(0, 128))
        d = rng.getrandbits(rng.randint(1, 128)) or 1
        e2 = rng.randint(-400, 400)
        neg, nz = rng.random() < 0.5, rng.random() < 0.5
        cases.append(("f32RoundScaled", (neg, p, d, e2, nz), F.f32_round_scaled, (neg, p, d, e2, nz)))
    # mantissa carries: (2^24 - 1) / 1 rounded at 23 bits; largest finite and overflow boundaries
    for p, d, e2 in [((1 << 24) - 1, 1, 0), ((1 << 25) - 1, 2, 103), ((1 << 24) - 1, 1, 104), (1, 1, 127),
                     (1, 1, 128), (1, 1, -149), (1, 1, -150), (3, 1, -151), (1, 3, -148), ((1 << 23) - 1, 1, -149),
                     ((1 << 24) - 1, 2, -149), (1 << 127, 1, 0), (1, 1 << 127, -22), (1, 1 << 127, -23)]:
        cases.append(("f32RoundScaled", (False, p, d, e2, False), F.f32_round_scaled, (False, p, d, e2, False)))
    check_all(h, cases)


@HYP
@given(st.lists(st.integers(0, U32), min_size=30, max_size=30),
       st.lists(st.integers(I256_MIN, I256_MAX), min_size=10, max_size=10),
       st.integers(0, 2**32))
def test_f32_random_bits(h: Any, bits: list[int], ints: list[int], seed: int) -> None:
    """Random bit patterns: parts, rint, trunc, from_int (random magnitudes), and a sample of pairs."""
    rng = random.Random(seed)
    ints = ints + [rng.getrandbits(rng.randint(0, 130)) * rng.choice((-1, 1)) for _ in range(20)]
    check_all(h, f32_cases(bits, ints, rng, 3))


# ------------------------------------------------------------------------------------------------
# 2. quantize, dequantize, cast, order key


def value_cases(rng: random.Random, n: int) -> list[Any]:
    """``n`` random QUANT, DEQUANT, order-key and CAST operand sets: float edges and random bits,
    scales valid and not, zero points up to the int256 limits (overflow), random dtype pairs."""
    cases: list[Any] = []
    floats = F32_EDGES + NOT_F32
    for _ in range(n):
        bits = rng.choice(floats) if rng.random() < 0.5 else rng.getrandbits(32)
        sc = rng.choice(SCALES) if rng.random() < 0.6 else rng.getrandbits(32)
        zp = rng.choice([0, -128, 127, 3, -3, I256_MAX, I256_MIN, I256_MAX - 5, rng.randint(-300, 300)])
        lo, hi = rng.choice([(-128, 127), (0, 255), (-(1 << 31), (1 << 31) - 1), (I64_MIN, I64_MAX), (5, -5),
                             (I256_MIN, I256_MAX)])
        cases.append(("quantizeValue", (bits, sc, zp, lo, hi), isa.quantize_value, (bits, sc, zp, lo, hi)))
        v = rng.choice([rng.randint(-128, 255), rng.randint(I64_MIN, I64_MAX), rng.choice(INT_EDGES[:16])])
        zp = rng.choice([0, 128, -7, I256_MAX, I256_MIN, 1 << 128, -(1 << 128) + 3, rng.randint(-1000, 1000),
                         rng.getrandbits(140)])
        cases.append(("dequantizeValue", (v, zp, sc), isa.dequantize_value, (v, zp, sc)))
        dt = rng.choice(list(DType))
        key_v = rng.choice(floats) if dt == DType.FLOAT32 else rng.randint(*RANGE[dt])
        cases.append(("orderKey", (key_v, int(dt)), isa.order_key, (key_v, dt)))
        src, dst = rng.choice(list(DType)), rng.choice(list(DType))
        v = random_element(rng, src)
        cases.append(("castValue", (v, int(src), int(dst)), isa.cast_value, (v, src, dst)))
    return cases


def cast_pair_cases(rng: random.Random) -> list[Any]:
    """CAST over every dtype pair: the source range's extremes, 0, 1, -1 (or 2) and a few random
    values, from float32 every float edge; and invalid dtype codes on either side."""
    cases: list[Any] = []
    for src in DType:
        for dst in DType:
            lo, hi = RANGE[src]
            vals = [lo, hi, 0, 1, -1 if lo < 0 else 2] + [rng.randint(lo, hi) for _ in range(4)]
            if src == DType.FLOAT32:
                vals += F32_EDGES
            for v in vals:
                cases.append(("castValue", (v, int(src), int(dst)), isa.cast_value, (v, src, dst)))
    for code in (0, 8, -1, 255, 1 << 200):
        cases.append(("castValue", (0, code, 4), isa._dtype, (code,)))
        cases.append(("castValue", (0, 4, code), isa._dtype, (code,)))
    return cases


def test_values(h: Any) -> None:
    """quantize (every float edge by every scale), dequantize (integer edges by every scale), cast
    (every dtype pair) and order key, plus random operands."""
    rng = random.Random(2)
    cases = value_cases(rng, 100) + cast_pair_cases(rng)
    for bits in F32_EDGES + NOT_F32:  # every input edge by every scale (1.0 and 0.5: the rint ties)
        for sc in SCALES:
            args = (bits, sc, -3, I32_MIN, I32_MAX)
            cases.append(("quantizeValue", args, isa.quantize_value, args))
    for v in INT_EDGES[:16] + [-128, 127, 255, -(1 << 63)]:
        for sc in SCALES:
            cases.append(("dequantizeValue", (v, 0, sc), isa.dequantize_value, (v, 0, sc)))
    # the harness's invalid-dtype cases compare errors only; Python's value there is the DType
    got = sol_outcomes(h, [(fn, args) for fn, args, _, _ in cases])
    seen_errors: set[str] = set()
    for (fn, args, pfn, pargs), sol in zip(cases, got, strict=True):
        py = py_outcome(pfn, *pargs)
        if py[0] == "err":
            seen_errors.add(py[1])
        if fn == "castValue" and py[0] == "ok" and isinstance(py[1], DType):
            raise AssertionError(f"dtype code {pargs} should be invalid")
        assert sol == py, f"{fn}{args}: solidity {sol}, python {py}"
    assert {"NanOperand", "InvalidScale", "ArithmeticOverflow", "InvalidDType"} <= seen_errors


@HYP
@given(st.integers(0, 2**32))
def test_values_random(h: Any, seed: int) -> None:
    """The same operand mix from hypothesis-chosen seeds."""
    check_all(h, value_cases(random.Random(seed), 40))


# ------------------------------------------------------------------------------------------------
# 3. execFloat


def sol_region(reg: Region) -> tuple[Any, ...]:
    return (list(reg.header), int(reg.dtype), reg.itemsize, reg.nbytes, reg.n_words, reg.depth)


def pack(op: tuple[int, int]) -> int:
    return PAD_WORD if op == isa.PAD else (op[0] << 128) | op[1]


def sol_instr(ins: Instr) -> tuple[Any, ...]:
    return (int(ins.kind), list(ins.out), [pack(x) for x in ins.a], [pack(x) for x in ins.b],
            [pack(x) for x in ins.c], list(ins.imm))


def py_exec(ins: Instr, regs: Regs, regions: Sequence[Region], words: dict[tuple[int, int], bytes]) -> Outcome:
    """``isa.execute`` over the witness words (as ``verify_step``): the words afterwards (in address
    order) and the touched addresses, or the error name (an unnamed one is ElementOutOfRange, as
    ``verify_step`` names it)."""

    def fetch(r: int, i: int) -> bytes:
        if (r, i) not in words:
            raise WordNotInWitness(f"word {i} of region {r}")
        return words[(r, i)]

    access = StepAccess(regions, fetch)
    try:
        isa.execute(ins, regs, access)
    except FraudVMError as e:
        return ("err", type(e).__name__ if is_named(e) else "ElementOutOfRange")
    after = [access.written.get(a, v) for a, v in sorted(words.items())]
    return ("ok", (after, sorted(access.before), bool(access.written)))


def sol_exec(h: Any, items: Sequence[Step]) -> list[tuple[Outcome, int]]:
    """``execFloat`` for each item: outcome in ``py_exec``'s form, and the execution's gas."""
    calls = []
    for ins, regs, regions, words in items:
        addrs = sorted(words)
        mem = ([sol_region(r) for r in regions], [(r << 64) | i for r, i in addrs], [words[a] for a in addrs],
               [False] * len(addrs), False, [0] * len(regions))
        calls.append(("execFloat", (sol_instr(ins), (regs.s, regs.acc, regs.aux), mem)))
    res = []
    for (_, args), (status, val) in zip(calls, sol_outcomes(h, calls), strict=True):
        if status == "err":
            res.append(((status, val), 0))
            continue
        values, touched, written, gas = val
        addrs = sorted((a >> 64, a & ((1 << 64) - 1)) for a in args[2][1])
        res.append((("ok", (list(values), [a for a, t in zip(addrs, touched, strict=True) if t], written)), gas))
    return res


def vector_steps() -> list[tuple[str, Instr, Regs, list[Region], dict[tuple[int, int], bytes]]]:
    """Every QUANT/DEQUANT/CAST step of the shared vectors (valid steps and failures)."""
    out = []
    for path in sorted(VECTORS.glob("*.json")):
        data = json.loads(path.read_text())
        for v in data["vectors"] + data["failures"]:
            try:  # a forged witness, state or context: no instruction to execute
                w = StepWitness.from_json(v["witness"]) if "witness" in v else \
                    StepWitness.decode(bytes.fromhex(v["witness_calldata"][2:]))
                state, ctx = decode_state(w.pre_state), decode_context(w.context)
                if state.step >= num_steps(ctx):
                    continue
                ins = instr_at(ctx, state.step)
            except FraudVMError:
                continue
            if ins.kind in FLOAT_KINDS:
                words = {(r, i): val for r, i, val in w.words}
                out.append((f"{path.stem}/{v['name'] if 'name' in v else v['step']}", ins,
                            Regs(state.scalars, state.acc, state.aux), list(ctx.regions), words))
    return out


def test_vector_steps(h: Any) -> None:
    """The float steps of the shared vectors write the same words, touch the same words and fail with
    the same errors as ``isa.execute``; prints the execution gas of the worst one."""
    steps = vector_steps()
    assert {ins.kind for _, ins, _, _, _ in steps} == set(FLOAT_KINDS)
    names = {name.split("/")[0] for name, *_ in steps}
    assert {"quantize_inf_ties_subnormal", "dequantize_two_words", "cast_float_to_int32_saturating"} <= names
    got = sol_exec(h, [s[1:] for s in steps])
    errors = set()
    for (name, ins, regs, regions, words), (sol, _) in zip(steps, got, strict=True):
        py = py_exec(ins, Regs(*regs.frozen()), regions, words)
        assert sol == py, f"{name}: solidity {sol}, python {py}"
        if py[0] == "err":
            errors.add(py[1])
    assert "NanOperand" in errors
    worst = max(got, key=lambda g: g[1])
    print(f"execFloat gas on the vectors: worst {worst[1]} over {len(steps)} steps")


DTYPE_SIZES = {DType.INT8: 1, DType.UINT8: 1, DType.INT16: 2, DType.INT32: 4, DType.INT64: 8, DType.FLOAT32: 4,
               DType.BOOL: 1}


def random_element(rng: random.Random, dt: DType) -> int:
    if dt == DType.FLOAT32:
        return rng.choice(F32_EDGES) if rng.random() < 0.4 else rng.getrandbits(32)
    lo, hi = RANGE[dt]
    return rng.choice([lo, hi, 0, rng.randint(lo, hi), rng.randint(max(lo, -300), min(hi, 300))])


def random_step(rng: random.Random, kind: Kind, lanes: int | None = None) -> Step:
    """A random float instruction over a random two-region memory: region 0 the input, region 1 the
    output; mostly well-formed, sometimes with a PAD or out-of-region operand, a word missing from
    the witness, an output dtype the value does not fit, a bad scale or dtype code."""
    src = DType.FLOAT32 if kind == Kind.QUANT else rng.choice([d for d in DType if d != DType.FLOAT32]) \
        if kind == Kind.DEQUANT else rng.choice(list(DType))
    if kind == Kind.QUANT:
        dst = rng.choice([DType.INT8, DType.UINT8, DType.INT32, DType.INT16])
    elif kind == Kind.DEQUANT:
        dst = DType.FLOAT32
    else:
        dst = rng.choice(list(DType))
    if rng.random() < 0.1:  # sometimes a mismatched input or output region dtype
        src = rng.choice(list(DType))
    out_dt = dst if rng.random() < 0.85 else rng.choice(list(DType))
    n_in, n_out = rng.randint(1, 80), rng.randint(1, 80)
    regions = [Region((int(src), 1, n_in), src, n_in * DTYPE_SIZES[src]),
               Region((int(out_dt), 1, n_out), out_dt, n_out * DTYPE_SIZES[out_dt])]
    data = b"".join(isa_bytes(random_element(rng, src), src) for _ in range(n_in))
    n_lanes = lanes if lanes is not None else rng.randint(0, LANES)
    a = [(0, rng.randrange(n_in)) for _ in range(n_lanes)]
    out = [rng.randrange(n_out) for _ in range(n_lanes)]
    if n_lanes and rng.random() < 0.08:
        a[rng.randrange(n_lanes)] = rng.choice([isa.PAD, (0, n_in), (2, 0), (1, 0)])
    if n_lanes and rng.random() < 0.05:
        out[rng.randrange(n_lanes)] = n_out
    if kind == Kind.QUANT:
        lo, hi = RANGE[dst]
        imm: tuple[int, ...] = (rng.choice(SCALES) if rng.random() < 0.3 else rng.choice(SCALES[:10]),
                                rng.randint(lo, hi) if rng.random() < 0.95 else I256_MAX, lo, hi)
    elif kind == Kind.DEQUANT:
        imm = (rng.randint(-128, 255) if rng.random() < 0.95 else I256_MIN, rng.choice(SCALES))
    else:
        imm = (int(src) if rng.random() < 0.95 else rng.choice([0, 8]), int(dst) if rng.random() < 0.95 else 9)
    ins = Instr(kind, tuple(out), tuple(a), (), (), imm)
    words: dict[tuple[int, int], bytes] = {}
    for r, raw in ((0, data), (1, bytes(regions[1].nbytes))):
        if r == 1:
            raw = bytes(rng.getrandbits(8) for _ in range(regions[1].nbytes))  # old output values
        for i in range(regions[r].n_words):
            words[(r, i)] = raw[32 * i : 32 * i + 32].ljust(32, b"\0")
    if rng.random() < 0.1:  # a word the step needs is missing from the witness
        words.pop(rng.choice(sorted(words)))
    regs = Regs(tuple(rng.randint(-5, 5) for _ in range(4)), tuple(rng.randint(-9, 9) for _ in range(LANES)),
                tuple(rng.randint(-9, 9) for _ in range(LANES)))
    return ins, regs, regions, words


def isa_bytes(v: int, dt: DType) -> bytes:
    return v.to_bytes(DTYPE_SIZES[dt], "little", signed=dt in (DType.INT8, DType.INT16, DType.INT32, DType.INT64))


def check_random_steps(h: Any, rng: random.Random, n: int) -> tuple[set[str], int]:
    items = [random_step(rng, rng.choice(FLOAT_KINDS)) for _ in range(n)]
    got = sol_exec(h, items)
    errors = set()
    for (ins, regs, regions, words), (sol, _) in zip(items, got, strict=True):
        py = py_exec(ins, Regs(*regs.frozen()), regions, words)
        assert sol == py, f"{ins}: solidity {sol}, python {py}"
        if py[0] == "err":
            errors.add(py[1])
    return errors, max(g for _, g in got)


def test_random_steps(h: Any) -> None:
    """Random QUANT/DEQUANT/CAST steps: same words, same touched words, same errors."""
    errors, _ = check_random_steps(h, random.Random(3), 120)
    assert {"ValueOutOfRange", "ElementOutOfRange", "WordNotInWitness", "InvalidScale", "InvalidDType",
            "NanOperand"} <= errors


@HYP
@given(st.integers(0, 2**32))
def test_random_steps_hypothesis(h: Any, seed: int) -> None:
    """Random steps from hypothesis-chosen seeds."""
    check_random_steps(h, random.Random(seed), 16)


def spread_step(kind: Kind, src: DType, dst: DType, imm: tuple[int, ...], values: Sequence[int]) -> Step:
    """A 32-lane step whose lanes each read their own input word and write their own output word
    (64 witness words: the deepest binary search and the most words a float step touches)."""
    n_in, n_out = LANES * 32 // DTYPE_SIZES[src], LANES * 32 // DTYPE_SIZES[dst]
    step_in, step_out = n_in // LANES, n_out // LANES
    regions = [Region((int(src), 1, n_in), src, n_in * DTYPE_SIZES[src]),
               Region((int(dst), 1, n_out), dst, n_out * DTYPE_SIZES[dst])]
    data = bytearray(regions[0].nbytes)
    for lane in range(LANES):
        e = lane * step_in + step_in - 1  # the word's last element: the largest shifts
        data[e * DTYPE_SIZES[src] : (e + 1) * DTYPE_SIZES[src]] = isa_bytes(values[lane % len(values)], src)
    words = {(0, i): bytes(data[32 * i : 32 * i + 32]) for i in range(regions[0].n_words)}
    words.update({(1, i): bytes(32) for i in range(regions[1].n_words)})
    ins = Instr(kind, tuple(lane * step_out + step_out - 1 for lane in range(LANES)),
                tuple((0, lane * step_in + step_in - 1) for lane in range(LANES)), (), (), imm)
    return ins, Regs((0,) * 4, (0,) * LANES, (0,) * LANES), regions, words


def test_worst_gas(h: Any) -> None:
    """Execution gas of full 32-lane QUANT, DEQUANT and CAST steps: designed worst cases (every lane
    its own words, the widest elements, values taking the longest path) and random memories, split
    into the memory traffic (``LibVMMemory``'s reads and writes of the same lanes,
    ``memoryTraffic``) and the float arithmetic; printed for the report. The arithmetic share is
    bounded (a regression guard: measured at most ~3.1k gas a lane)."""
    rng = random.Random(4)
    halves = [0x3FC00000, 0x40200000, 0xBFC00000, 0x00000001, 0x3F000001, 0x4B000001, 0x42FE0000, 0xC2FF0000]
    designed = {
        Kind.QUANT: [spread_step(Kind.QUANT, DType.FLOAT32, DType.INT32, (0x3DCCCCCD, -3, I32_MIN, I32_MAX), halves),
                     spread_step(Kind.QUANT, DType.FLOAT32, DType.INT8, (0x3F000000, 3, -128, 127), halves)],
        Kind.DEQUANT: [spread_step(Kind.DEQUANT, DType.INT64, DType.FLOAT32, (-7, 0x3DCCCCCD),
                                   [I64_MIN, I64_MAX, (1 << 24) + 1, -((1 << 40) + 3)]),
                       spread_step(Kind.DEQUANT, DType.INT8, DType.FLOAT32, (-128, 0x00000003), [-128, 127, 5])],
        Kind.CAST: [spread_step(Kind.CAST, DType.INT64, DType.INT64, (5, 5), [I64_MIN, -1]),
                    spread_step(Kind.CAST, DType.INT64, DType.INT16, (5, 3), [I64_MIN + 12345, I64_MAX]),
                    spread_step(Kind.CAST, DType.FLOAT32, DType.INT64, (6, 5), halves),
                    spread_step(Kind.CAST, DType.INT64, DType.FLOAT32, (5, 6), [I64_MAX, (1 << 24) + 1])],
    }
    report = {}
    for kind in FLOAT_KINDS:
        items: list[Step] = list(designed[kind])
        while len(items) < 12:
            ins, regs, regions, words = random_step(rng, kind, lanes=LANES)
            if py_exec(ins, Regs(*regs.frozen()), regions, words)[0] == "ok":
                items.append((ins, regs, regions, words))
        results = sol_exec(h, items)
        for (ins, regs, regions, words), (sol, _) in zip(items, results, strict=True):
            assert sol == py_exec(ins, Regs(*regs.frozen()), regions, words)
        total = [g for _, g in results]
        traffic = []
        for ins, _, regions, words in items:
            addrs = sorted(words)
            mem = ([sol_region(r) for r in regions], [(r << 64) | i for r, i in addrs], [words[a] for a in addrs],
                   [False] * len(addrs), False, [0] * len(regions))
            traffic.append(h.value("memoryTraffic", sol_instr(ins), mem))
        worst = max(range(len(items)), key=lambda i: total[i])
        arith = max(t - m for t, m in zip(total, traffic, strict=True))
        report[kind.name] = {"worst step": total[worst], "its memory traffic": traffic[worst], "max arithmetic": arith}
        assert arith < LANES * 5_000, (kind.name, arith)
    print("execFloat gas, 32-lane steps:", report)


def test_harness_size() -> None:
    """F32Harness (both libraries' code inlined, with ``multi``) deploys within EIP-170."""
    size = len(artifact("F32Harness").deployed_bytecode)
    assert 0 < size <= 24_576, size
