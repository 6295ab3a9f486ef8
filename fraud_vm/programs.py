"""Program shapes: the loop nests every op is lowered to, with their fast-forward.

Three shapes cover every op (``docs/fraud_vm.md`` "Programs"):

- **blocked** (linear, matmul, conv, pools, reduce, argmax): output elements in blocks of at most
  ``WIDTH`` = 8 lanes; each block is ``T`` reduction steps (one ``MAC``/``ACC_*`` over the lanes) and one
  ``FIN_*`` step that writes the block's outputs and clears ``acc``/``aux``;
- **elementwise** (add, mul, lut, (de)quantize, data movement): one step per output word;
- **rows** (softmax, layernorm): per row, chunked passes over the row using scalar registers.

Each shape derives ``instr(pc)`` from index arrays that are pure functions of the node context,
and computes the registers at any ``pc`` (``regs_at``) and the output elements written before it
(``written_at``) directly from numpy values, without running the steps before ``pc``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from .context import NodeContext
from .errors import InvalidStep
from .isa import PAD, Instr, Kind
from .state import LANES, N_SCALARS, WIDTH

Regs3 = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
ZERO_REGS: Regs3 = ((0,) * N_SCALARS, (0,) * LANES, (0,) * LANES)


def _pad(v: Sequence[int] | np.ndarray) -> tuple[int, ...]:
    vals = v.tolist() if isinstance(v, np.ndarray) and v.dtype.kind in "iu" else [int(x) for x in v]
    return tuple(vals) + (0,) * (LANES - len(vals))


def _keys(x: np.ndarray) -> np.ndarray:
    """Element values as int64 order keys (``isa.order_key``; float32 by value, NaN highest)."""
    if x.dtype != np.float32:
        return x.astype(np.int64)
    b = x.view(np.uint32).astype(np.int64)
    mag = b & 0x7FFFFFFF
    return np.where(mag > 0x7F800000, 1 << 32, np.where(b >> 31, -mag, b))


class Program:
    """A node's program: ``num_steps`` instructions, each derived from the context and ``pc``."""

    def __init__(self, ctx: NodeContext, num_steps: int) -> None:
        self.ctx = ctx
        self.num_steps = max(num_steps, 1)
        self.out_size = ctx.output.size

    def check_pc(self, pc: int) -> None:
        if not 0 <= pc < self.num_steps:
            raise InvalidStep(f"pc {pc} is outside the program (0..{self.num_steps - 1})")

    def instr(self, pc: int) -> Instr:
        self.check_pc(pc)
        return Instr(Kind.NOP)

    def regs_at(self, pc: int, xs: Sequence[np.ndarray]) -> Regs3:
        """Registers before step ``pc`` (``xs``: the node's input values)."""
        return ZERO_REGS

    def written_at(self, pc: int) -> int | np.ndarray:
        """Output elements written before step ``pc``: a prefix length, or a boolean mask."""
        return self.out_size if pc >= self.num_steps else 0


class BlockedProgram(Program):
    """Blocks of ``T`` reduction steps over up to ``WIDTH`` (8) lanes, then one FIN step."""

    def __init__(self, ctx: NodeContext, n_blocks: int, t_steps: int, kind: Kind,
                 imm: Callable[[int], tuple[int, ...]],
                 block: Callable[[int], tuple[np.ndarray, np.ndarray | None, np.ndarray]],
                 fin: Callable[[int, np.ndarray], Instr], rb: int = 1) -> None:
        super().__init__(ctx, n_blocks * (t_steps + 1))
        self.n_blocks, self.t_steps, self.kind, self.imm, self.fin, self.rb = n_blocks, t_steps, kind, imm, fin, rb
        self.block = lru_cache(maxsize=8)(block)

    def instr(self, pc: int) -> Instr:
        self.check_pc(pc)
        if self.n_blocks == 0:
            return Instr(Kind.NOP)
        b, t = divmod(pc, self.t_steps + 1)
        a_idx, b_idx, out = self.block(b)
        if t == self.t_steps:
            return self.fin(b, out)
        a = tuple(PAD if i < 0 else (0, int(i)) for i in a_idx[t])
        bb = () if b_idx is None else tuple((self.rb, int(i)) for i in b_idx[t])
        return Instr(self.kind, (), a, bb, (), self.imm(t))

    def regs_at(self, pc: int, xs: Sequence[np.ndarray]) -> Regs3:
        if self.n_blocks == 0 or pc >= self.num_steps:
            return ZERO_REGS
        b, t = divmod(pc, self.t_steps + 1)
        if t == 0:
            return ZERO_REGS
        a_idx, b_idx, _ = self.block(b)
        a_idx = a_idx[:t]
        valid = a_idx >= 0
        xa = _keys(np.asarray(xs[0]).reshape(-1))
        av = xa[np.where(valid, a_idx, 0)] if xa.size else np.zeros(a_idx.shape, np.int64)
        k, im = self.kind, self.imm(0)
        aux = np.zeros(a_idx.shape[1], np.int64)
        if k == Kind.MAC:
            assert b_idx is not None
            bv = np.asarray(xs[self.rb]).reshape(-1).astype(np.int64)[b_idx[:t]]
            acc = np.where(valid, (av - im[0]) * (bv - im[1]), 0).sum(axis=0)
        elif k == Kind.ACC_SUM:
            acc, aux = np.where(valid, av - im[0], 0).sum(axis=0), valid.sum(axis=0)
        elif k == Kind.ACC_SQ:
            acc = np.where(valid, (av - im[0]) ** 2, 0).sum(axis=0)
        elif k == Kind.ACC_MAX:
            acc = np.where(valid, av, im[1]).max(axis=0)
        else:  # ACC_ARG
            if self.imm(0)[1]:
                aux = t - 1 - np.argmax(av[::-1], axis=0)
            else:
                aux = np.argmax(av, axis=0)
            acc = av.max(axis=0)
        return (0,) * N_SCALARS, _pad(acc), _pad(aux)

    def written_at(self, pc: int) -> int | np.ndarray:
        done = min(pc // (self.t_steps + 1), self.n_blocks)
        return 0 if done == 0 else int(self.block(done - 1)[2][-1]) + 1


class ElementwiseProgram(Program):
    """One step per output word; ``srcs`` maps operand name to per-element (regions, indices)."""

    def __init__(self, ctx: NodeContext, kind: Kind, imm: tuple[int, ...],
                 srcs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.per = WIDTH // ctx.output.dtype.np.itemsize
        super().__init__(ctx, -(-ctx.output.size // self.per))
        self.kind, self.imm, self.srcs = kind, imm, srcs

    def instr(self, pc: int) -> Instr:
        self.check_pc(pc)
        lo, hi = pc * self.per, min((pc + 1) * self.per, self.out_size)
        if lo >= hi:
            return Instr(Kind.NOP)
        ops = {k: tuple((int(r), int(i)) for r, i in zip(rs[lo:hi], ix[lo:hi], strict=True))
               for k, (rs, ix) in self.srcs.items()}
        return Instr(self.kind, tuple(range(lo, hi)), ops.get("a", ()), ops.get("b", ()), ops.get("c", ()), self.imm)

    def written_at(self, pc: int) -> int | np.ndarray:
        return min(pc * self.per, self.out_size)


class RowsProgram(Program):
    """Softmax / layernorm: per row, passes of 32-element chunks with scalar registers."""

    def __init__(self, ctx: NodeContext, op: str, rows: np.ndarray, params: tuple[int, ...]) -> None:
        self.op, self.rows, self.params = op, rows, params
        self.n_rows, self.cols = rows.shape
        self.nc = -(-self.cols // WIDTH)
        self.per_row = 3 * self.nc + (1 if op == "layernorm" else 0)
        self.out_start = 2 * self.nc + (1 if op == "layernorm" else 0)
        super().__init__(ctx, self.n_rows * self.per_row)

    def _chunk(self, r: int, c: int) -> np.ndarray:
        return self.rows[r, c * WIDTH : (c + 1) * WIDTH]

    def instr(self, pc: int) -> Instr:
        self.check_pc(pc)
        if self.n_rows == 0:
            return Instr(Kind.NOP)
        r, t = divmod(pc, self.per_row)
        if self.op == "layernorm" and t == 2 * self.nc:
            return Instr(Kind.LN_DEN, imm=(self.cols, self.params[0]))
        p, c = divmod(t, self.nc) if t < 2 * self.nc else (2, t - self.out_start)
        idx = self._chunk(r, c)
        a = tuple((0, int(i)) for i in idx)
        last = int(c == self.nc - 1)
        if self.op == "softmax":
            zp, lo, hi = self.params
            if p == 0:
                return Instr(Kind.SM_MAX, (), a, imm=(int(c == 0),))
            if p == 1:
                return Instr(Kind.SM_SUM, (), a, imm=(1,))
            return Instr(Kind.SM_OUT, tuple(int(i) for i in idx), a, imm=(1, zp, lo, hi, last))
        if p == 0:
            return Instr(Kind.LN_SUM, (), a)
        if p == 1:
            return Instr(Kind.LN_VAR, (), a, imm=(self.cols,))
        cols = range(c * WIDTH, c * WIDTH + len(idx))
        return Instr(Kind.LN_OUT, tuple(int(i) for i in idx), a, tuple((1, j) for j in cols),
                     tuple((2, j) for j in cols), (self.cols, *self.params[1:], last))

    def regs_at(self, pc: int, xs: Sequence[np.ndarray]) -> Regs3:
        if self.n_rows == 0 or pc >= self.num_steps:
            return ZERO_REGS
        r, t = divmod(pc, self.per_row)
        if t == 0:
            return ZERO_REGS
        v = np.asarray(xs[0]).reshape(-1).astype(np.int64)[self.rows[r]]
        n, s = self.cols, [0] * N_SCALARS
        if self.op == "softmax":
            table = np.asarray(xs[1]).astype(np.int64)
            p, c = divmod(t, self.nc)
            if p == 0:
                s[0] = int(v[: c * WIDTH].max())
            else:
                s[0] = int(v.max())
                s[1] = int(table[s[0] - v[: (c if p == 1 else self.nc) * WIDTH]].sum())
            return tuple(s), ZERO_REGS[1], ZERO_REGS[2]
        if t <= self.nc:
            s[0] = int(v[: t * WIDTH].sum())
        else:
            s[0] = int(v.sum())
            d = n * v - s[0]
            c = min(t - self.nc, self.nc)
            s[1] = int((d[: c * WIDTH] ** 2).sum())
            if t > 2 * self.nc:
                import math

                s[2] = max(math.isqrt(((s[1] // n) << 16) + self.params[0]), 1)
        return tuple(s), ZERO_REGS[1], ZERO_REGS[2]

    def written_at(self, pc: int) -> int | np.ndarray:
        mask = np.zeros(self.out_size, dtype=bool)
        r, t = divmod(min(pc, self.num_steps), self.per_row) if self.n_rows else (0, 0)
        mask[self.rows[:r].reshape(-1)] = True
        if r < self.n_rows and t > self.out_start:
            mask[self.rows[r, : (t - self.out_start) * WIDTH]] = True
        return mask

