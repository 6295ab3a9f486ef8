"""Plans of the scalar stepper: a node program's parameters and its instruction at ``pc``.

A plan holds O(rank + inputs) integers read from the node context by ``fraud_vm.stepper``; its
``instr(pc)`` is the closed form of ``docs/fraud_vm.md`` "Programs" (the Solidity verifier's
``<plan>Instr``): integer arithmetic over the lanes of one instruction, no numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .indexing import Dims, Shape, Source, broadcast_source, ceil_div, ravel_dims, unravel
from .isa import PAD, Instr, Kind, Operand
from .state import WIDTH

# ---------------------------------------------------------------------------------------------
# FIN_REQ operands (bias, multiplier, shift per output column)


@dataclass(frozen=True)
class FinReq:
    """How a FIN_REQ step reads inputs 2..4: absent (PAD) or per column (``True``) or index 0."""

    per_col: tuple[bool | None, bool | None, bool | None]
    imm: tuple[int, ...]

    def instr(self, outs: tuple[int, ...], cols: Sequence[int]) -> Instr:
        """``fin_req``: ``(k, col)`` or ``(k, 0)`` per lane for inputs ``k = 2, 3, 4``; PAD if absent."""
        ops = tuple(tuple(PAD if pc is None else (k, c if pc else 0) for c in cols)
                    for k, pc in zip((2, 3, 4), self.per_col, strict=True))
        return Instr(Kind.FIN_REQ, outs, ops[0], ops[1], ops[2], self.imm)


# ---------------------------------------------------------------------------------------------
# the four program shapes


class Plan:
    """A node's program: ``steps`` instructions; ``instr(pc)`` for ``0 <= pc < steps``."""

    @property
    def steps(self) -> int:
        """Number of instructions (the empty-output program has one)."""
        return 1

    def instr(self, pc: int) -> Instr:
        """The empty-output program: one NOP."""
        return Instr(Kind.NOP)


@dataclass(frozen=True)
class GemmPlan(Plan):
    """linear / matmul: block ``(r, j)`` = output row ``r``, lanes ``32j .. 32j+31`` of its ``n`` columns.

    ``r = bi·m + mi``; ``bi`` indexes the broadcast batch shape ``batch``; operand batch offsets
    come from ``broadcast_source`` into ``a_batch`` / ``b_batch`` (linear: ``batch = a_batch =
    (rows,)``, ``b_batch = ()``, ``m = 1``).
    """

    m: int
    k: int
    n: int
    batch: Shape
    a_batch: Shape
    b_batch: Shape
    zps: tuple[int, int]
    fin: FinReq

    @property
    def steps(self) -> int:
        return math.prod(self.batch) * self.m * ceil_div(self.n, WIDTH) * (self.k + 1)

    def instr(self, pc: int) -> Instr:
        m, k, n = self.m, self.k, self.n
        blk, t = divmod(pc, k + 1)
        r, j = divmod(blk, ceil_div(n, WIDTH))
        cols = range(j * WIDTH, min((j + 1) * WIDTH, n))
        if t == k:
            return self.fin.instr(tuple(r * n + c for c in cols), cols)
        bi, mi = divmod(r, m)
        bc = unravel(bi, self.batch)
        a_off = broadcast_source(bc, self.a_batch) * m * k
        b_off = broadcast_source(bc, self.b_batch) * k * n
        a = ((0, a_off + mi * k + t),) * len(cols)
        b = tuple((1, b_off + t * n + c) for c in cols)
        return Instr(Kind.MAC, (), a, b, (), self.zps)


@dataclass(frozen=True)
class WindowPlan(Plan):
    """conv / maxpool / avgpool: block ``(bn, oc, oy, xb)``, lanes along ``ox``; ``t = (ic, ky, kx)``."""

    kind: Kind
    x_shape: Shape  # (B, C, H, W)
    m: int  # output channels
    cg: int  # input channels per group (pools: 1)
    ocg: int  # output channels per group (pools: 1)
    kernel: tuple[int, int]
    strides: tuple[int, int]
    dil: tuple[int, int]
    pads: tuple[int, int]  # top, left
    out_hw: tuple[int, int]
    za: int
    pad_value: int  # maxpool
    fin: FinReq | Instr  # conv: FIN_REQ (column = oc); pools: a FIN instruction without ``out``

    @property
    def lanes(self) -> int:
        return max(1, WIDTH // self.strides[1])

    @property
    def t_steps(self) -> int:
        return self.cg * self.kernel[0] * self.kernel[1]

    @property
    def steps(self) -> int:
        oh, ow = self.out_hw
        return self.x_shape[0] * self.m * oh * ceil_div(ow, self.lanes) * (self.t_steps + 1)

    def instr(self, pc: int) -> Instr:
        _, c, h, w = self.x_shape
        (kh, kw), (sh, sw), (dy, dx), (pt, pl), (oh, ow) = self.kernel, self.strides, self.dil, self.pads, self.out_hw
        lb, tt = self.lanes, self.t_steps
        blk, t = divmod(pc, tt + 1)
        rest, xb = divmod(blk, ceil_div(ow, lb))
        rest, oy = divmod(rest, oh)
        bn, oc = divmod(rest, self.m)
        oxs = range(xb * lb, min((xb + 1) * lb, ow))
        if t == tt:
            outs = tuple(((bn * self.m + oc) * oh + oy) * ow + ox for ox in oxs)
            if isinstance(self.fin, FinReq):
                return self.fin.instr(outs, (oc,) * len(oxs))
            return Instr(self.fin.kind, outs, imm=self.fin.imm)
        ic, r = divmod(t, kh * kw)
        ky, kx = divmod(r, kw)
        iy = oy * sh + ky * dy - pt
        ch = (oc // self.ocg) * self.cg + ic
        base = ((bn * c + ch) * h + iy) * w
        a: tuple[Operand, ...] = tuple(
            (0, base + ix) if 0 <= iy < h and 0 <= ix < w else PAD for ix in (ox * sw + kx * dx - pl for ox in oxs))
        if self.kind == Kind.MAC:
            return Instr(Kind.MAC, (), a, ((1, oc * tt + t),) * len(oxs), (), (self.za, 0))
        if self.kind == Kind.ACC_MAX:
            return Instr(Kind.ACC_MAX, (), a, imm=(int(t == 0), self.pad_value))
        return Instr(Kind.ACC_SUM, (), a, imm=(self.za,))


@dataclass(frozen=True)
class ReducePlan(Plan):
    """reduce / argmax: block of 32 rows ``r``; step ``t`` reads ``x[offset(r, kept) + offset(t, reduced)]``."""

    kind: Kind
    kept: Dims  # (size, stride) of the kept dims, in order
    reduced: Dims  # (size, stride) of the reduced dims, in order
    za: int
    last: int  # argmax: select_last_index
    fin: Instr  # FIN_MOVE / FIN_DIV without ``out``

    @property
    def rows(self) -> int:
        return math.prod(s for s, _ in self.kept)

    @property
    def t_steps(self) -> int:
        return math.prod(s for s, _ in self.reduced)

    @property
    def steps(self) -> int:
        return ceil_div(self.rows, WIDTH) * (self.t_steps + 1)

    def instr(self, pc: int) -> Instr:
        blk, t = divmod(pc, self.t_steps + 1)
        rows = range(blk * WIDTH, min((blk + 1) * WIDTH, self.rows))
        if t == self.t_steps:
            return Instr(self.fin.kind, tuple(rows), imm=self.fin.imm)
        ot = ravel_dims(t, self.reduced)
        a = tuple((0, ravel_dims(r, self.kept) + ot) for r in rows)
        if self.kind == Kind.ACC_MAX:
            imm: tuple[int, ...] = (int(t == 0), 0)
        elif self.kind == Kind.ACC_ARG:
            imm = (t, self.last)
        else:
            imm = (self.za,)
        return Instr(self.kind, (), a, imm=imm)


@dataclass(frozen=True)
class RowsPlan(Plan):
    """softmax / layernorm: per row ``r``, passes of 32-column chunks; ``x[offset(r, kept) + col·stride]``."""

    op: str
    kept: Dims
    cols: int
    stride: int  # stride of the row axis
    params: tuple[int, ...]  # softmax: zp, lo, hi; layernorm: eps, F, m, s, zp, qmin, qmax

    @property
    def chunks(self) -> int:
        return ceil_div(self.cols, WIDTH)

    @property
    def per_row(self) -> int:
        return 3 * self.chunks + (self.op == "layernorm")

    @property
    def steps(self) -> int:
        return math.prod(s for s, _ in self.kept) * self.per_row

    def instr(self, pc: int) -> Instr:
        nc, ln = self.chunks, self.op == "layernorm"
        r, t = divmod(pc, self.per_row)
        if ln and t == 2 * nc:
            return Instr(Kind.LN_DEN, imm=(self.cols, self.params[0]))
        p, c = divmod(t, nc) if t < 2 * nc else (2, t - 2 * nc - ln)
        cols = range(c * WIDTH, min((c + 1) * WIDTH, self.cols))
        base = ravel_dims(r, self.kept)
        idx = tuple(base + j * self.stride for j in cols)
        a = tuple((0, i) for i in idx)
        last = int(c == nc - 1)
        if not ln:
            if p == 0:
                return Instr(Kind.SM_MAX, (), a, imm=(int(c == 0),))
            if p == 1:
                return Instr(Kind.SM_SUM, (), a, imm=(1,))
            return Instr(Kind.SM_OUT, idx, a, imm=(1, *self.params, last))
        if p == 0:
            return Instr(Kind.LN_SUM, (), a)
        if p == 1:
            return Instr(Kind.LN_VAR, (), a, imm=(self.cols,))
        return Instr(Kind.LN_OUT, idx, a, tuple((1, j) for j in cols), tuple((2, j) for j in cols),
                     (self.cols, *self.params[1:], last))


@dataclass(frozen=True)
class ElementwisePlan(Plan):
    """One step per output word: lanes = the word's elements ``o``; operand ``k`` at ``sources[k].at(o)``."""

    kind: Kind
    size: int
    per_word: int
    sources: tuple[Source, ...]  # a, b, c
    imm: tuple[int, ...]

    @property
    def steps(self) -> int:
        return ceil_div(self.size, self.per_word)

    def instr(self, pc: int) -> Instr:
        outs = range(pc * self.per_word, min((pc + 1) * self.per_word, self.size))
        ops = [tuple(s.at(o) for o in outs) for s in self.sources] + [(), (), ()]
        return Instr(self.kind, tuple(outs), ops[0], ops[1], ops[2], self.imm)
