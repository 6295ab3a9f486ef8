"""The instruction set: decoded instructions and their exact, width-checked semantics.

An instruction is never stored: it is derived from the node context at ``pc``. Decoded, it is a
kind, up to ``WIDTH`` = 8 lanes (``fraud_vm.state.WIDTH``; the register file keeps ``LANES`` = 32) of
output element indices (``out``, in the output region), up to three
per-lane operand lists (``a``, ``b``, ``c``: each entry ``(region, element)`` or ``PAD``) and
immediates (``imm``). ``execute`` applies one instruction to the registers through a
``StepAccess`` memory view.

Arithmetic is in the widths the Solidity verifier uses (``docs/fraud_vm.md`` "Arithmetic bounds"):
every intermediate value of a formula is an int256 (a value outside ``[-2^255, 2^255)`` is
``ArithmeticOverflow``), ``acc``/``aux`` lanes are int64 (a lane value outside int64 is
``ArithmeticOverflow``), ``x << s`` is ``x * 2^s`` with ``0 <= s <= 255`` (``InvalidShift``
otherwise), ``//`` and ``>>`` floor. A lane reads its operands first (``a``, ``b``, ``c``), then
evaluates; lanes run in order, so the first failing lane decides the error. Values follow
``opml.reference`` exactly whenever no check fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from opml.bundle import DType

from .errors import (
    ArithmeticOverflow,
    ElementOutOfRange,
    GatherIndexOutOfRange,
    InvalidDType,
    InvalidScale,
    InvalidShift,
    NanOperand,
    NegativeSquareRoot,
    NonPositiveDivisor,
    TableIndexOutOfRange,
    ValueOutOfRange,
)
from .f32 import (
    NAN,
    POS_INF,
    Parts,
    f32_div_parts,
    f32_from_int,
    f32_mul_parts,
    f32_parts,
    f32_rint,
    f32_trunc,
)
from .memory import StepAccess
from .state import I64_MAX, I64_MIN, I256_MAX, I256_MIN, LANES, N_SCALARS

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


# ------------------------------------------------------------------------------------------------
# checked integer helpers (the verifier's arithmetic)


def i256(v: int) -> int:
    """``v`` if it is an int256, else ``ArithmeticOverflow``."""
    if not I256_MIN <= v <= I256_MAX:
        raise ArithmeticOverflow(f"{v} does not fit int256")
    return v


def i64(v: int) -> int:
    """``v`` if it is an int64 (an ``acc``/``aux`` lane value), else ``ArithmeticOverflow``."""
    if not I64_MIN <= v <= I64_MAX:
        raise ArithmeticOverflow(f"lane value {v} does not fit int64")
    return v


def shl(x: int, s: int) -> int:
    """``x * 2^s`` for ``0 <= s <= 255`` (``InvalidShift`` otherwise), checked to int256."""
    if not 0 <= s <= 255:
        raise InvalidShift(f"left shift by {s}")
    return i256(x << s)


def clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v


def round_shift(v: int, s: int) -> int:
    """``(v + 2^(s-1)) >> s`` for ``1 <= s <= 62`` (``InvalidShift`` otherwise)."""
    if not 1 <= s <= 62:
        raise InvalidShift(f"requantization shift {s} is outside [1, 62]")
    return i256(v + (1 << (s - 1))) >> s


def round_div(n: int, d: int) -> int:
    """``floor((2n + d) / 2d)`` for ``d > 0`` (``NonPositiveDivisor`` otherwise)."""
    if d <= 0:
        raise NonPositiveDivisor(f"division by {d}")
    return i256(i256(2 * n) + d) // i256(2 * d)


def requant(acc: int, m: int, s: int, zp: int, qmin: int, qmax: int) -> int:
    """``clamp(zp + round_shift(clamp_int32(acc) * m, s), qmin, qmax)``."""
    return clamp(i256(zp + round_shift(i256(clamp(acc, I32_MIN, I32_MAX) * m), s)), qmin, qmax)


def isqrt(x: int) -> int:
    """``floor(sqrt(x))`` by Newton's iteration from ``2^ceil(bitlen(x) / 2)`` (``x >= 0``).

    The start is above ``sqrt(x)``; each step ``y = (z + x // z) >> 1`` decreases ``z`` until it
    reaches ``floor(sqrt(x))``, detected by ``y >= z`` (at most 8 steps for ``x < 2^256``). This is
    the algorithm the Solidity verifier runs; it equals ``math.isqrt``.
    """
    if x < 0:
        raise NegativeSquareRoot(f"square root of {x}")
    if x < 2:
        return x
    z = 1 << ((x.bit_length() + 1) >> 1)
    while True:
        y = (z + x // z) >> 1
        if y >= z:
            return z
        z = y


def order_key(v: int, dtype: DType) -> int:
    """Integer with the same order as the element value (float32: by value, NaN above all, -0 == 0)."""
    if dtype != DType.FLOAT32:
        return v
    if (v & 0x7FFFFFFF) > 0x7F800000:
        return 1 << 32
    return -(v & 0x7FFFFFFF) if v >> 31 else v


_RANGE = {DType.INT8: (-128, 127), DType.UINT8: (0, 255), DType.INT16: (-(1 << 15), (1 << 15) - 1),
          DType.INT32: (I32_MIN, I32_MAX), DType.INT64: (I64_MIN, I64_MAX), DType.FLOAT32: (0, (1 << 32) - 1),
          DType.BOOL: (0, 1)}
"""Per dtype: the element values a region stores (float32: its raw bits)."""


def _dtype(code: int) -> DType:
    try:
        return DType(code)
    except ValueError:
        raise InvalidDType(f"dtype code {code}") from None


# ------------------------------------------------------------------------------------------------
# float32 steps


def _scale(scale_bits: int, positive: bool) -> Parts:
    sc = f32_parts(scale_bits) if 0 <= scale_bits < 1 << 32 else NAN
    if isinstance(sc, str) or (positive and (sc[0] < 0 or sc[1] == 0)):
        raise InvalidScale(f"scale bits {scale_bits:#x}")
    return sc


def quantize_value(bits: int, scale_bits: int, zp: int, lo: int, hi: int) -> int:
    """``clamp(rint(float32(x / scale)) + zp, lo, hi)`` for float32 bit patterns."""
    x = f32_parts(bits)
    if x == NAN:
        raise NanOperand("quantize input is NaN")
    sc = _scale(scale_bits, positive=True)
    if isinstance(x, str):
        return hi if x == POS_INF else lo
    q = f32_parts(f32_div_parts(x, sc))
    if isinstance(q, str):
        return hi if q == POS_INF else lo
    return clamp(i256(f32_rint(*q) + zp), lo, hi)


def dequantize_value(v: int, zp: int, scale_bits: int) -> int:
    """Bits of ``float32(v - zp) * float32(scale)``."""
    sc = _scale(scale_bits, positive=False)
    a = f32_parts(f32_from_int(i256(v - zp)))
    if isinstance(a, str):  # |v - zp| >= 2^128 rounds to infinity
        raise ArithmeticOverflow(f"float32({v - zp}) is infinite")
    return f32_mul_parts(a, sc)


def cast_value(v: int, src: DType, dst: DType) -> int:
    """numpy ``astype`` as the engine's cast kernel: float -> int truncates and saturates (NaN:
    ``NanOperand``), int -> int wraps (two's complement), -> bool is ``!= 0``, -> float32 rounds."""
    if src == dst:
        return v
    if dst == DType.BOOL:
        return int((v & 0x7FFFFFFF) != 0) if src == DType.FLOAT32 else int(v != 0)
    if src == DType.FLOAT32:
        lo, hi = _RANGE[dst]
        x = f32_parts(v)
        if x == NAN:
            raise NanOperand("cannot cast NaN to an integer type")
        if isinstance(x, str):
            return hi if x == POS_INF else lo
        return clamp(f32_trunc(*x), lo, hi)
    if dst == DType.FLOAT32:
        return f32_from_int(v)
    lo, hi = _RANGE[dst]
    return ((v - lo) & (hi - lo)) + lo  # two's-complement wrap (hi - lo + 1 is a power of two)


# ------------------------------------------------------------------------------------------------
# execution


def _store(mem: StepAccess, o: int, v: int) -> None:
    """Write element ``o`` of the output region (the last one); the value must fit its dtype."""
    r = len(mem.regions) - 1
    lo, hi = _RANGE[mem.regions[r].dtype]
    if not lo <= v <= hi:
        raise ValueOutOfRange(f"{v} does not fit {mem.regions[r].dtype.name}")
    mem.write(r, o, v)


def _out_range(mem: StepAccess) -> tuple[int, int, int]:
    """``(output region, lowest, highest storable value)``: ``_store``'s check, looked up once."""
    r = len(mem.regions) - 1
    return (r, *_RANGE[mem.regions[r].dtype])


def _table(mem: StepAccess, table: int, i: int) -> int:
    """Entry ``i`` of the lookup-table region ``table`` (a data-dependent read)."""
    if not 0 <= table < len(mem.regions) - 1:
        raise TableIndexOutOfRange(f"region {table} is not an input region")
    reg = mem.regions[table]
    if not 0 <= i < reg.nbytes // reg.itemsize:
        raise TableIndexOutOfRange(f"index {i} outside a table of {reg.nbytes // reg.itemsize}")
    return mem.read(table, i)


def _fin(regs: Regs, ins: Instr, mem: StepAccess, f: Callable[[int], int]) -> None:
    r, lo, hi = _out_range(mem)
    for lane, o in enumerate(ins.out):
        v = f(lane)
        if not lo <= v <= hi:
            raise ValueOutOfRange(f"{v} does not fit {mem.regions[r].dtype.name}")
        mem.write(r, o, v)
    regs.reset_lanes()


def _fin_req(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    zp, qmin, qmax, raw, mult, shift = ins.imm
    a, b, c = ins.a, ins.b, ins.c

    def f(lane: int) -> int:
        x = 0 if a[lane] == PAD else mem.read(*a[lane])
        if raw:
            return clamp(i256(regs.acc[lane] + x), I32_MIN, I32_MAX)
        m = mult if b[lane] == PAD else mem.read(*b[lane])
        s = shift if c[lane] == PAD else mem.read(*c[lane])
        return requant(i256(regs.acc[lane] + x), m, s, zp, qmin, qmax)

    _fin(regs, ins, mem, f)


def _fin_div(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    mult, shift, zp, lo, hi, use_aux, cnt, sqrt = ins.imm

    def f(lane: int) -> int:
        v = isqrt(regs.acc[lane]) if sqrt else regs.acc[lane]
        n = regs.aux[lane] if use_aux else cnt
        if n <= 0:
            raise NonPositiveDivisor(f"count {n} (a window entirely in the padding?)")
        return clamp(i256(round_div(i256(v * mult), shl(n, shift)) + zp), lo, hi)

    _fin(regs, ins, mem, f)


def _fin_move(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    src = regs.aux if ins.imm[0] else regs.acc
    _fin(regs, ins, mem, lambda lane: src[lane])


def _lanes(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    k, im, acc, aux, read = ins.kind, ins.imm, regs.acc, regs.aux, mem.read
    for lane, op in enumerate(ins.a):
        if k == Kind.MAC:
            if op != PAD:
                x, y = read(*op) - im[0], read(*ins.b[lane]) - im[1]
                p = x * y
                v = acc[lane] + p
                if not (I64_MIN <= v <= I64_MAX and I256_MIN <= x <= I256_MAX and I256_MIN <= y <= I256_MAX
                        and I256_MIN <= p <= I256_MAX):
                    raise ArithmeticOverflow(f"MAC lane {lane}")
                acc[lane] = v
        elif k == Kind.ACC_SUM:
            if op != PAD:
                acc[lane] = i64(acc[lane] + i256(read(*op) - im[0]))
                aux[lane] = i64(aux[lane] + 1)
        elif k == Kind.ACC_SQ:
            if op != PAD:
                x = i256(read(*op) - im[0])
                acc[lane] = i64(acc[lane] + i256(x * x))
        elif k == Kind.ACC_MAX:
            v = im[1] if op == PAD else read(*op)
            acc[lane] = i64(v if im[0] else max(acc[lane], v))
        elif k == Kind.ACC_ARG:
            v, j = order_key(read(*op), mem.regions[op[0]].dtype), im[0]
            if j == 0 or v > acc[lane] or (im[1] and v == acc[lane]):
                acc[lane], aux[lane] = v, i64(j)


def _elementwise(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    k, im, read, write = ins.kind, ins.imm, mem.read, mem.write
    out_r, out_lo, out_hi = _out_range(mem)
    for lane, o in enumerate(ins.out):
        a = ins.a[lane]
        if k == Kind.ADD:
            za, zb, am, bm, s, zp, lo, hi = im
            x, y = read(*a) - za, read(*ins.b[lane]) - zb
            xa, yb = x * am, y * bm
            t = xa + yb
            if not (I256_MIN <= x <= I256_MAX and I256_MIN <= xa <= I256_MAX and I256_MIN <= y <= I256_MAX
                    and I256_MIN <= yb <= I256_MAX and I256_MIN <= t <= I256_MAX):
                raise ArithmeticOverflow(f"ADD lane {lane}")
            v = clamp(i256(zp + round_shift(t, s)), lo, hi)
        elif k == Kind.MUL:
            za, zb, m, s, zp, lo, hi = im
            x, y = read(*a) - za, read(*ins.b[lane]) - zb
            v = requant(i256(i256(x) * i256(y)), m, s, zp, lo, hi)
        elif k == Kind.LUT:
            v = _table(mem, im[0], i256(read(*a) + im[1]))
        elif k == Kind.QUANT:
            v = quantize_value(read(*a), *im)
        elif k == Kind.DEQUANT:
            v = dequantize_value(read(*a), *im)
        elif k == Kind.COPY:
            v = read(*a)
        elif k == Kind.CAST:
            src, dst = _dtype(im[0]), _dtype(im[1])
            v = cast_value(read(*a), src, dst)
        elif k == Kind.FLIP:
            byte = (read(*a) & 0xFF) ^ 0x80
            v = byte - 256 if mem.regions[out_r].dtype == DType.INT8 and byte >= 128 else byte
        elif k == Kind.WHERE:
            cdt = _dtype(im[0])
            cond, x, y = read(*a), read(*ins.b[lane]), read(*ins.c[lane])
            v = x if cast_value(cond, cdt, DType.BOOL) else y
        else:  # GATHER
            n, stride = im
            i = read(*a)
            if not -n <= i < n:
                raise GatherIndexOutOfRange(f"index {i} outside [-{n}, {n})")
            d, base = ins.b[lane]
            e = i256(base + i256((i + n if i < 0 else i) * stride))
            if not 0 <= d < len(mem.regions) - 1 or not 0 <= e < mem.regions[d].nbytes // mem.regions[d].itemsize:
                raise ElementOutOfRange(f"gather reads element {e} of region {d}")
            v = read(d, e)
        if not out_lo <= v <= out_hi:
            raise ValueOutOfRange(f"{v} does not fit {mem.regions[out_r].dtype.name}")
        write(out_r, o, v)


def _softmax(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    s = regs.s
    xs = [mem.read(*op) for op in ins.a]
    if ins.kind == Kind.SM_MAX:
        s[0] = max(xs) if ins.imm[0] else max([s[0], *xs])
    elif ins.kind == Kind.SM_SUM:
        for x in xs:
            s[1] = i256(s[1] + _table(mem, ins.imm[0], i256(s[0] - x)))
    else:
        table, zp, lo, hi, last = ins.imm
        total = max(s[1], 1)
        for o, x in zip(ins.out, xs, strict=True):
            e = _table(mem, table, i256(s[0] - x))
            _store(mem, o, clamp(i256(i256(i256(512 * e) + total) // i256(2 * total) + zp), lo, hi))
        if last:
            regs.reset_scalars()


def _layernorm(regs: Regs, ins: Instr, mem: StepAccess) -> None:
    s = regs.s
    if ins.kind == Kind.LN_DEN:
        n, eps = ins.imm
        if n <= 0:
            raise NonPositiveDivisor(f"layernorm row length {n}")
        s[2] = max(isqrt(i256(shl(s[1] // n, 16) + eps)), 1)
        return
    xs = [mem.read(*op) for op in ins.a]
    if ins.kind == Kind.LN_SUM:
        for x in xs:
            s[0] = i256(s[0] + x)
    elif ins.kind == Kind.LN_VAR:
        n = ins.imm[0]
        for x in xs:
            d = i256(i256(n * x) - s[0])
            s[1] = i256(s[1] + i256(d * d))
    else:
        n, frac, m, sh, zp, lo, hi, last = ins.imm
        for lane, (o, x) in enumerate(zip(ins.out, xs, strict=True)):
            gamma, beta = mem.read(*ins.b[lane]), mem.read(*ins.c[lane])
            z = round_div(shl(i256(i256(n * x) - s[0]), i256(frac + 8)), s[2])
            _store(mem, o, requant(i256(i256(z * gamma) + beta), m, sh, zp, lo, hi))
        if last:
            regs.reset_scalars()


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
