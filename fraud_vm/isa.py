"""The instruction set: decoded instructions and their exact semantics (``docs/fraud_vm.md``).

An instruction is never stored: the compiler derives the instruction at ``pc`` from the node
context (``fraud_vm.compiler``). Decoded, it is a kind, up to 32 lanes of output element indices
(``out``, in the output region), up to three per-lane operand lists (``a``, ``b``, ``c``: each entry
``(region, element)`` or ``PAD``) and immediates (``imm``). ``execute`` applies one instruction to
the registers through a ``StepAccess`` memory view. All arithmetic is on unbounded integers and
follows ``opml.reference`` literally.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from typing import Any

from opml.bundle import DType

from .errors import InvalidStep
from .f32 import NAN, NEG_INF, POS_INF, f32_decode, f32_from_int, f32_parts, f32_rint, f32_round_ratio
from .memory import StepAccess
from .state import LANES, N_SCALARS

Operand = tuple[int, int]
PAD: Operand = (-1, -1)
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


class Kind(IntEnum):
    """Instruction kinds (codes are part of the protocol: never renumber)."""

    NOP = 0
    MAC = 1  # acc[l] += (A_l - za) * (B_l - zb)            imm: za, zb
    ACC_SUM = 2  # acc[l] += A_l - za; aux[l] += 1 (not PAD)   imm: za
    ACC_SQ = 3  # acc[l] += (A_l - za)^2                       imm: za
    ACC_MAX = 4  # acc[l] = v if first else max(acc[l], v)     imm: first, pad_value
    ACC_ARG = 5  # argmax update                               imm: j, select_last
    FIN_REQ = 6  # out = requant(acc + bias) / clamp_int32     imm: zp, qmin, qmax, raw, mult, shift
    FIN_DIV = 7  # out = clamp(round_div(v*m, cnt<<s) + zp)    imm: mult, shift, zp, lo, hi, use_aux, cnt, sqrt
    FIN_MOVE = 8  # out = acc (or aux)                          imm: from_aux
    ADD = 9  # imm: za, zb, a_mult, b_mult, shift, zp, qmin, qmax
    MUL = 10  # imm: za, zb, mult, shift, zp, qmin, qmax
    LUT = 11  # out = T[A_l + offset]                        imm: table_region, offset
    QUANT = 12  # float32 -> int                                imm: scale_bits, zp, lo, hi
    DEQUANT = 13  # int -> float32                               imm: zp, scale_bits
    COPY = 14  # out = A_l
    CAST = 15  # out = cast(A_l)                               imm: src dtype, dst dtype
    FLIP = 16  # out byte = A_l byte ^ 0x80
    WHERE = 17  # out = B_l if A_l != 0 else C_l               imm: cond dtype
    GATHER = 18  # out = D[base_l + norm(A_l) * stride]          imm: n, stride; b = (data region, base)
    SM_MAX = 19  # s0 = max(A) (first) or max(s0, A)            imm: first
    SM_SUM = 20  # s1 += sum T[s0 - A_l]                         imm: table_region
    SM_OUT = 21  # out = softmax output                          imm: table_region, zp, lo, hi, last
    LN_SUM = 22  # s0 += sum A_l
    LN_VAR = 23  # s1 += sum (n A_l - s0)^2                      imm: n
    LN_DEN = 24  # s2 = max(isqrt(((s1 div n) << 16) + eps), 1)  imm: n, eps
    # LN_OUT: out = requant(round_div((n A - s0) << (F+8), s2) * B + C)
    #         imm: n, frac, mult, shift, zp, qmin, qmax, last
    LN_OUT = 25


@dataclass(frozen=True)
class Instr:
    """One decoded instruction."""

    kind: Kind
    out: tuple[int, ...] = ()
    a: tuple[Operand, ...] = ()
    b: tuple[Operand, ...] = ()
    c: tuple[Operand, ...] = ()
    imm: tuple[int, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """JSON form (for vectors and the replay tool)."""
        return {"kind": self.kind.name, "out": list(self.out), "a": [list(x) for x in self.a],
                "b": [list(x) for x in self.b], "c": [list(x) for x in self.c], "imm": list(self.imm)}


class Regs:
    """Mutable registers of one step: scalars s0..s3 and the acc/aux lane vectors."""

    def __init__(self, scalars: tuple[int, ...], acc: tuple[int, ...], aux: tuple[int, ...]) -> None:
        self.s, self.acc, self.aux = list(scalars), list(acc), list(aux)

    def frozen(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple(self.s), tuple(self.acc), tuple(self.aux)

    def reset_lanes(self) -> None:
        self.acc, self.aux = [0] * LANES, [0] * LANES

    def reset_scalars(self) -> None:
        self.s = [0] * N_SCALARS


def clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v


def round_shift(v: int, s: int) -> int:
    """``(v + 2^(s-1)) >> s`` for ``1 <= s <= 62``."""
    if not 1 <= s <= 62:
        raise InvalidStep(f"requantization shift {s} is outside [1, 62]")
    return (v + (1 << (s - 1))) >> s


def round_div(n: int, d: int) -> int:
    """``floor((2n + d) / 2d)`` for ``d > 0``."""
    if d <= 0:
        raise InvalidStep(f"division by {d} (an average over an empty window?)")
    return (2 * n + d) // (2 * d)


def requant(acc: int, m: int, s: int, zp: int, qmin: int, qmax: int) -> int:
    """``clamp(zp + round_shift(clamp_int32(acc) * m, s), qmin, qmax)``."""
    return clamp(zp + round_shift(clamp(acc, I32_MIN, I32_MAX) * m, s), qmin, qmax)


def order_key(v: int, dtype: DType) -> int:
    """Integer with the same order as the element value (float32: by value, NaN above all, -0 == 0)."""
    if dtype != DType.FLOAT32:
        return v
    if (v & 0x7FFFFFFF) > 0x7F800000:
        return 1 << 32
    return -(v & 0x7FFFFFFF) if v >> 31 else v


def _val(mem: StepAccess, op: Operand, pad: int) -> int:
    return pad if op == PAD else mem.read(op[0], op[1])


def _positive_scale(scale_bits: int) -> tuple[int, int]:
    """``(m, e)`` of a finite positive float32 scale (value ``m * 2^e``)."""
    sc = f32_parts(scale_bits)
    if isinstance(sc, str) or sc[0] < 0 or sc[1] == 0:
        raise InvalidStep(f"scale bits {scale_bits:#x} are not a finite positive float32")
    return sc[1], sc[2]


def quantize_value(bits: int, scale_bits: int, zp: int, lo: int, hi: int) -> int:
    """``clamp(rint(float32(x / scale)) + zp, lo, hi)`` for float32 bit patterns."""
    x = f32_parts(bits)
    if x == NAN:
        raise InvalidStep("quantize input is NaN")
    if isinstance(x, str):
        return hi if x == POS_INF else lo
    sx, mx, ex = x
    ms, es = _positive_scale(scale_bits)
    # x / scale = sx * (mx * 2^ex) / (ms * 2^es), rounded once to float32
    d = es - ex
    q = f32_parts(f32_round_ratio(sx < 0, mx << -d if d < 0 else mx, ms << d if d > 0 else ms))
    if isinstance(q, str):
        return hi if q == POS_INF else lo
    return clamp(f32_rint(*q) + zp, lo, hi)


def dequantize_value(v: int, zp: int, scale_bits: int) -> int:
    """Bits of ``float32(v - zp) * float32(scale)``."""
    a = f32_parts(f32_from_int(v - zp))
    sc = f32_parts(scale_bits)
    if isinstance(a, str) or isinstance(sc, str):
        raise InvalidStep(f"dequantize of {v} with scale bits {scale_bits:#x} is not finite")
    p, e = a[1] * sc[1], a[2] + sc[2]
    neg = (a[0] < 0) != (sc[0] < 0)
    return f32_round_ratio(neg, p << e if e >= 0 else p, 1 if e >= 0 else 1 << -e, negative_zero=neg)


_INT_RANGE = {DType.INT8: (-128, 127), DType.UINT8: (0, 255), DType.INT16: (-(1 << 15), (1 << 15) - 1),
              DType.INT32: (I32_MIN, I32_MAX), DType.INT64: (-(1 << 63), (1 << 63) - 1)}


def cast_value(v: int, src: DType, dst: DType) -> int:
    """numpy ``astype`` semantics as the engine's cast kernel uses them (float -> int saturates)."""
    if src == dst:
        return v
    if dst == DType.BOOL:
        return int((v & 0x7FFFFFFF) != 0) if src == DType.FLOAT32 else int(v != 0)
    if src == DType.FLOAT32:
        x = f32_decode(v)
        if dst == DType.FLOAT32:
            return v
        lo, hi = _INT_RANGE[dst]
        if x == NAN:
            raise InvalidStep("cannot cast NaN to an integer type")
        top = f32_decode(f32_from_int(hi))
        assert isinstance(top, Fraction)
        below = top if int(top) <= hi else f32_decode(f32_from_int(hi) - 1)
        if x == POS_INF or (isinstance(x, Fraction) and x >= top):
            return hi
        if x == NEG_INF:
            return lo
        assert isinstance(x, Fraction) and isinstance(below, Fraction)
        return clamp(int(x), lo, int(below))
    if dst == DType.FLOAT32:
        return f32_from_int(v)
    lo, hi = _INT_RANGE[dst]
    return (v - lo) % (hi - lo + 1) + lo  # two's-complement wrap


def _fin(regs: Regs, ins: Instr, mem: StepAccess, f: Callable[[int], int]) -> None:
    for lane, o in enumerate(ins.out):
        mem.write(_out_region(mem), o, f(lane))
    regs.reset_lanes()


def _out_region(mem: StepAccess) -> int:
    return len(mem.regions) - 1


def _fin_req(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    zp, qmin, qmax, raw, mult, shift = ins.imm

    def f(lane: int) -> int:
        v = regs.acc[lane] + _val(mem, ins.a[lane], 0)
        if raw:
            return clamp(v, I32_MIN, I32_MAX)
        return requant(v, _val(mem, ins.b[lane], mult), _val(mem, ins.c[lane], shift), zp, qmin, qmax)

    _fin(regs, ins, mem, f)


def _fin_div(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    mult, shift, zp, lo, hi, use_aux, cnt, sqrt = ins.imm

    def f(lane: int) -> int:
        v = math.isqrt(regs.acc[lane]) if sqrt else regs.acc[lane]
        n = regs.aux[lane] if use_aux else cnt
        if n <= 0:
            raise InvalidStep("avgpool: a window lies entirely in the padding (count 0)")
        return clamp(round_div(v * mult, n << shift) + zp, lo, hi)

    _fin(regs, ins, mem, f)


def _lanes(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    k = ins.kind
    for lane, op in enumerate(ins.a):
        if k == Kind.MAC:
            if op != PAD:
                regs.acc[lane] += (mem.read(*op) - ins.imm[0]) * (mem.read(*ins.b[lane]) - ins.imm[1])
        elif k == Kind.ACC_SUM:
            if op != PAD:
                regs.acc[lane] += mem.read(*op) - ins.imm[0]
                regs.aux[lane] += 1
        elif k == Kind.ACC_SQ:
            if op != PAD:
                regs.acc[lane] += (mem.read(*op) - ins.imm[0]) ** 2
        elif k == Kind.ACC_MAX:
            v = _val(mem, op, ins.imm[1])
            regs.acc[lane] = v if ins.imm[0] else max(regs.acc[lane], v)
        elif k == Kind.ACC_ARG:
            v, j, last = order_key(mem.read(*op), mem.regions[op[0]].dtype), ins.imm[0], ins.imm[1]
            if j == 0 or v > regs.acc[lane] or (last and v == regs.acc[lane]):
                regs.acc[lane], regs.aux[lane] = v, j


def _elementwise(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    k, im, out_r = ins.kind, ins.imm, _out_region(mem)
    for lane, o in enumerate(ins.out):
        a = ins.a[lane]
        if k == Kind.ADD:
            za, zb, am, bm, s, zp, lo, hi = im
            v = clamp(zp + round_shift((mem.read(*a) - za) * am + (mem.read(*ins.b[lane]) - zb) * bm, s), lo, hi)
        elif k == Kind.MUL:
            za, zb, m, s, zp, lo, hi = im
            v = requant((mem.read(*a) - za) * (mem.read(*ins.b[lane]) - zb), m, s, zp, lo, hi)
        elif k == Kind.LUT:
            v = mem.read(im[0], mem.read(*a) + im[1])
        elif k == Kind.QUANT:
            v = quantize_value(mem.read(*a), *im)
        elif k == Kind.DEQUANT:
            v = dequantize_value(mem.read(*a), *im)
        elif k == Kind.COPY:
            v = mem.read(*a)
        elif k == Kind.CAST:
            v = cast_value(mem.read(*a), DType(im[0]), DType(im[1]))
        elif k == Kind.FLIP:
            byte = (mem.read(*a) & 0xFF) ^ 0x80
            v = byte - 256 if mem.regions[out_r].dtype == DType.INT8 and byte >= 128 else byte
        elif k == Kind.WHERE:
            cond = cast_value(mem.read(*a), DType(im[0]), DType.BOOL)
            v = mem.read(*ins.b[lane]) if cond else mem.read(*ins.c[lane])
        else:  # GATHER
            n, stride = im
            i = mem.read(*a)
            if not -n <= i < n:
                raise InvalidStep(f"gather index {i} out of range [-{n}, {n - 1}]")
            v = mem.read(ins.b[lane][0], ins.b[lane][1] + (i + n if i < 0 else i) * stride)
        mem.write(out_r, o, v)


def _softmax(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    s = regs.s
    xs = [mem.read(*op) for op in ins.a]
    if ins.kind == Kind.SM_MAX:
        s[0] = max(xs) if ins.imm[0] else max([s[0], *xs])
    elif ins.kind == Kind.SM_SUM:
        s[1] += sum(mem.read(ins.imm[0], s[0] - x) for x in xs)
    else:
        table, zp, lo, hi, last = ins.imm
        total = max(s[1], 1)
        for o, x in zip(ins.out, xs, strict=True):
            e = mem.read(table, s[0] - x)
            mem.write(_out_region(mem), o, clamp((512 * e + total) // (2 * total) + zp, lo, hi))
        if last:
            regs.reset_scalars()


def _layernorm(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    s = regs.s
    if ins.kind == Kind.LN_DEN:
        n, eps = ins.imm
        s[2] = max(math.isqrt(((s[1] // n) << 16) + eps), 1)
        return
    xs = [mem.read(*op) for op in ins.a]
    if ins.kind == Kind.LN_SUM:
        s[0] += sum(xs)
    elif ins.kind == Kind.LN_VAR:
        s[1] += sum((ins.imm[0] * x - s[0]) ** 2 for x in xs)
    else:
        n, frac, m, sh, zp, lo, hi, last = ins.imm
        for lane, (o, x) in enumerate(zip(ins.out, xs, strict=True)):
            z = round_div((n * x - s[0]) << (frac + 8), s[2])
            acc = z * mem.read(*ins.b[lane]) + mem.read(*ins.c[lane])
            mem.write(_out_region(mem), o, requant(acc, m, sh, zp, lo, hi))
        if last:
            regs.reset_scalars()


def _fin_move(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    src = regs.aux if ins.imm[0] else regs.acc
    _fin(regs, ins, mem, lambda lane: src[lane])


_EXEC: dict[Kind, Callable[[Regs, Instr, StepAccess], None]] = {
    Kind.NOP: lambda r, i, m: None,
    Kind.FIN_REQ: _fin_req, Kind.FIN_DIV: _fin_div, Kind.FIN_MOVE: _fin_move,
    **{k: _lanes for k in (Kind.MAC, Kind.ACC_SUM, Kind.ACC_SQ, Kind.ACC_MAX, Kind.ACC_ARG)},
    **{k: _elementwise for k in (Kind.ADD, Kind.MUL, Kind.LUT, Kind.QUANT, Kind.DEQUANT, Kind.COPY,
                                 Kind.CAST, Kind.FLIP, Kind.WHERE, Kind.GATHER)},
    **{k: _softmax for k in (Kind.SM_MAX, Kind.SM_SUM, Kind.SM_OUT)},
    **{k: _layernorm for k in (Kind.LN_SUM, Kind.LN_VAR, Kind.LN_DEN, Kind.LN_OUT)},
}


def execute(ins: Instr, regs: Regs, mem: StepAccess) -> None:
    """Apply one instruction (mutates ``regs``; memory writes go to ``mem``)."""
    _EXEC[ins.kind](regs, ins, mem)
