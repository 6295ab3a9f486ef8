"""The VM state of one node's run and its byte encoding (``docs/fraud_vm.md`` "State").

A state is 25 words of 32 bytes::

    word 0        context hash   keccak of the node context (model address, node, descriptors)
    word 1        memory root    root of the region tree (inputs..., output)
    word 2        step           uint256: instructions executed so far (= the pc of the next one)
    word 3        status         uint256: 0 RUNNING, 1 HALTED
    words 4..7    s0..s3         int256 scalar registers
    words 8..15   acc[0..31]     int64 lanes, 4 per word, lane 4w+i in bytes [8i, 8i+8), big-endian
    words 16..23  aux[0..31]     int64 lanes, same packing
    word 24       reserved       zero

``hash() = keccak(encode())``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from enum import IntEnum

from opml.merkle import keccak

from .errors import ArithmeticOverflow, MalformedState

LANES = 32
#: The most lanes one instruction uses (a block of a GEMM/reduce/window program, a chunk of a row,
#: the bytes of output one elementwise step writes): fewer than the register file's ``LANES`` so
#: that every instruction kind's on-chain step stays within its gas target (docs/fraud_vm.md
#: "Instruction width"). Part of the protocol: every program's shape depends on it.
WIDTH = 8
N_SCALARS = 4
STATE_WORDS = 25
STATE_BYTES = STATE_WORDS * 32
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
I256_MIN, I256_MAX = -(1 << 255), (1 << 255) - 1


class Status(IntEnum):
    """Run status of a state."""

    RUNNING = 0
    HALTED = 1


RUNNING, HALTED = Status.RUNNING, Status.HALTED
ZERO_LANES = (0,) * LANES
ZERO_SCALARS = (0,) * N_SCALARS


@dataclass(frozen=True)
class VMState:
    """One state of a node's run (see the module docstring for the encoding)."""

    context_hash: bytes
    memory_root: bytes
    step: int
    status: Status = RUNNING
    scalars: tuple[int, ...] = ZERO_SCALARS
    acc: tuple[int, ...] = ZERO_LANES
    aux: tuple[int, ...] = ZERO_LANES

    @property
    def pc(self) -> int:
        """Index of the next instruction (programs are straight-line, so it equals ``step``)."""
        return self.step

    def encode(self) -> bytes:
        """The 800-byte encoding of the state."""
        return encode_state(self)

    def hash(self) -> bytes:
        """keccak256 of the encoding."""
        return keccak(self.encode())

    def with_(self, **kw: object) -> VMState:
        """A copy with some fields replaced."""
        return replace(self, **kw)  # type: ignore[arg-type]


_LANES_FMT = struct.Struct(f">{LANES}q")


def _lanes_bytes(lanes: tuple[int, ...]) -> bytes:
    """32 int64 lanes, each 8 bytes big-endian two's complement."""
    try:
        return _LANES_FMT.pack(*lanes)
    except struct.error:
        bad = next((v for v in lanes if not (isinstance(v, int) and I64_MIN <= v <= I64_MAX)), None)
        raise ArithmeticOverflow(f"accumulator lane value {bad} does not fit int64") from None


def _lanes_from(b: bytes) -> tuple[int, ...]:
    """32 big-endian two's-complement int64 lanes."""
    return _LANES_FMT.unpack(b)


def _i256(v: int) -> bytes:
    if not I256_MIN <= v <= I256_MAX:
        raise ArithmeticOverflow(f"scalar register value {v} does not fit int256")
    return (v % (1 << 256)).to_bytes(32, "big")


def encode_state(s: VMState) -> bytes:
    """Encode a state (module docstring layout)."""
    if len(s.context_hash) != 32 or len(s.memory_root) != 32:
        raise MalformedState("context hash and memory root must be 32 bytes")
    if len(s.scalars) != N_SCALARS or len(s.acc) != LANES or len(s.aux) != LANES:
        raise MalformedState("a state has 4 scalar registers and 32 acc/aux lanes")
    if not 0 <= s.step < 1 << 64:
        raise MalformedState(f"step {s.step} is outside uint64")
    parts = [s.context_hash, s.memory_root, s.step.to_bytes(32, "big"), int(s.status).to_bytes(32, "big")]
    parts += [_i256(v) for v in s.scalars]
    parts += [_lanes_bytes(s.acc), _lanes_bytes(s.aux), bytes(32)]
    return b"".join(parts)


def decode_state(data: bytes) -> VMState:
    """Decode an 800-byte state encoding; raises MalformedState if it is not canonical."""
    if len(data) != STATE_BYTES:
        raise MalformedState(f"a state encoding is {STATE_BYTES} bytes, got {len(data)}")
    w = [data[32 * i : 32 * i + 32] for i in range(STATE_WORDS)]
    step, status = int.from_bytes(w[2], "big"), int.from_bytes(w[3], "big")
    if status not in (0, 1) or step >= 1 << 64 or w[24] != bytes(32):
        raise MalformedState("state encoding has an invalid status, step or reserved word")
    scalars = tuple(int.from_bytes(x, "big", signed=True) for x in w[4:8])
    s = VMState(w[0], w[1], step, Status(status), scalars, _lanes_from(data[256:512]), _lanes_from(data[512:768]))
    return s
