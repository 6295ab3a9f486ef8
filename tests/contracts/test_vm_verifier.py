"""The Solidity one-step verifier of the fraud VM against its Python specification.

``fraud_vm.vm.verify_step`` is the spec; the contracts run in py-evm (``prague`` fixture):

- ``LibWitness`` (through ``FraudVMLibsHarness``) against ``StepWitness.decode`` on every vector's
  calldata and on mutated bytes (counts, truncation, trailing bytes): same parts or ``MalformedWitness``.
- ``LibVMState`` against ``fraud_vm.state``: decode / encode / hash of random states, every
  non-canonical encoding ``MalformedState``, a lane outside int64 ``ArithmeticOverflow``.
- ``LibMultiproof`` against ``fraud_vm.memory.roots_from_words`` on random memories and touched
  word sets (several regions, depths 0..6), with a sibling missing (``SiblingsExhausted``) or extra.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from fraud_vm import errors as vm_errors
from fraud_vm.memory import Memory, Region, roots_from_words
from fraud_vm.state import HALTED, RUNNING, VMState, decode_state
from fraud_vm.vm import StepWitness
from opml.bundle import DType

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors" / "fraud_vm"
VECTOR_FILES = sorted(VECTOR_DIR.glob("*.json"))
I64 = 1 << 63


def load_vectors() -> list[dict[str, Any]]:
    """Every vector file's JSON, in name order."""
    return [json.loads(p.read_text()) for p in VECTOR_FILES]


def unhex(s: str) -> bytes:
    return bytes.fromhex(s[2:])


def all_calldata() -> list[bytes]:
    """The witness calldata of every positive vector and failure entry."""
    out = []
    for d in load_vectors():
        out += [unhex(v["witness_calldata"]) for v in d["vectors"]]
        out += [unhex(f["witness_calldata"]) for f in d["failures"]]
    return out


@pytest.fixture(scope="module")
def libs(prague: Any) -> Any:
    return prague.deploy("FraudVMLibsHarness")


def python_error(exc: BaseException) -> str:
    """The named error class of a fraud-VM exception."""
    assert isinstance(exc, vm_errors.FraudVMError), exc
    return type(exc).__name__


def solidity_verdict(result: Any) -> Any:
    """The values of a successful call, or the custom error's name."""
    if result.ok:
        return result.values
    assert result.error is not None, f"revert without a custom error: {result.output.hex()}"
    return result.error[0]


# ------------------------------------------------------------------------------------------------
# LibWitness


def python_witness(data: bytes) -> Any:
    try:
        w = StepWitness.decode(data)
    except vm_errors.FraudVMError as e:
        return python_error(e)
    addrs = [(r << 64) | i for r, i, _ in w.words]
    return (w.pre_state, w.context, tuple(addrs), tuple(v for _, _, v in w.words), w.siblings)


def mutations(data: bytes, rng: random.Random) -> list[bytes]:
    """Malformed and still well-formed variants of witness calldata."""
    n_ctx, n_words, n_sib = (int.from_bytes(data[i : i + 2], "big") for i in (0, 2, 4))
    out = [data[:-1], data + b"\x00", data[:805], data[:806], b"", data[:5]]
    for field, val in ((0, 0), (0, n_ctx + 1), (2, n_words + 1), (4, max(n_sib - 1, 0)), (4, 0xFFFF)):
        out.append(data[:field] + val.to_bytes(2, "big") + data[field + 2 :])
    # move one word's bytes from the words into the siblings (still the right length: decodes)
    if n_words:
        out.append(data[:2] + (n_words - 1).to_bytes(2, "big") + (n_sib + 2).to_bytes(2, "big") + data[6:])
    pos = rng.randrange(6, len(data))
    out.append(data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :])
    return out


def test_witness_decode_matches_python(libs: Any) -> None:
    rng = random.Random(5)
    checked = errors = 0
    for data in all_calldata():
        for d in [data, *mutations(data, rng)]:
            want = python_witness(d)
            got = solidity_verdict(libs.call("decodeWitness", d))
            assert got == want, d[:6].hex()
            checked += 1
            errors += isinstance(want, str)
    assert errors > 100 and checked - errors > 100


# ------------------------------------------------------------------------------------------------
# LibVMState


def random_state(rng: random.Random) -> VMState:
    def lane() -> int:
        return rng.choice([rng.randrange(-I64, I64), -I64, I64 - 1, 0, -1])

    def scalar() -> int:
        return rng.choice([rng.randrange(-(1 << 255), 1 << 255), -(1 << 255), (1 << 255) - 1, -5, 7])

    return VMState(rng.randbytes(32), rng.randbytes(32), rng.choice([0, 1, rng.randrange(1 << 64), (1 << 64) - 1]),
                   rng.choice([RUNNING, HALTED]), tuple(scalar() for _ in range(4)),
                   tuple(lane() for _ in range(32)), tuple(lane() for _ in range(32)))


def state_tuple(s: VMState) -> tuple[Any, ...]:
    """A state as the ABI tuple of ``VMState`` (``LibVMState.sol``)."""
    return (s.context_hash, s.memory_root, s.step, int(s.status), (list(s.scalars), list(s.acc), list(s.aux)))


def test_state_round_trip_matches_python(libs: Any) -> None:
    rng = random.Random(7)
    for _ in range(25):
        s = random_state(rng)
        enc = s.encode()
        (got,) = libs.call("decodeState", enc).values
        assert got == (s.context_hash, s.memory_root, s.step, int(s.status),
                       (tuple(s.scalars), tuple(s.acc), tuple(s.aux)))
        assert libs.value("encodeState", state_tuple(s)) == enc
        assert libs.value("stateHash", state_tuple(s)) == s.hash()


def test_state_rejections_match_python(libs: Any) -> None:
    base = random_state(random.Random(9)).encode()
    bad = [
        base[:-1], base + b"\x00", b"",
        base[:96] + (2).to_bytes(32, "big") + base[128:],  # status 2
        base[:96] + (1 << 255).to_bytes(32, "big") + base[128:],
        base[:64] + (1 << 64).to_bytes(32, "big") + base[96:],  # step >= 2^64
        base[:768] + (1).to_bytes(32, "big"),  # reserved word
    ]
    for enc in bad:
        with pytest.raises(vm_errors.MalformedState):
            decode_state(enc)
        assert solidity_verdict(libs.call("decodeState", enc)) == "MalformedState"
    s = decode_state(base)
    for acc in ([I64] + [0] * 31, [0] * 31 + [-I64 - 1]):
        with pytest.raises(vm_errors.ArithmeticOverflow):
            s.with_(acc=tuple(acc)).encode()
        t = list(state_tuple(s))
        t[4] = (list(s.scalars), acc, list(s.aux))
        assert solidity_verdict(libs.call("encodeState", tuple(t))) == "ArithmeticOverflow"
        t[4] = (list(s.scalars), list(s.acc), acc)
        assert solidity_verdict(libs.call("encodeState", tuple(t))) == "ArithmeticOverflow"
    t = list(state_tuple(s))
    t[2] = 1 << 64
    assert solidity_verdict(libs.call("encodeState", tuple(t))) == "MalformedState"


# ------------------------------------------------------------------------------------------------
# LibMultiproof

DTYPES = [DType.INT8, DType.UINT8, DType.INT16, DType.INT32, DType.INT64, DType.FLOAT32, DType.BOOL]


def random_memory(rng: random.Random) -> Memory:
    regions, data = [], []
    for _ in range(rng.randint(2, 6)):
        dt = rng.choice(DTYPES)
        n = rng.choice([1, rng.randint(1, 64), rng.randint(1, 2000)])
        nbytes = n * dt.itemsize
        regions.append(Region((int(dt), 1, n), dt, nbytes))
        data.append(rng.randbytes(nbytes))
    return Memory(regions, data)


def region_tuple(r: Region) -> tuple[Any, ...]:
    """A region as the ABI tuple of ``Region`` (``VMTypes.sol``)."""
    return (list(r.header), int(r.dtype), r.itemsize, r.nbytes, r.n_words, r.depth)


def random_touch(rng: random.Random, mem: Memory) -> list[tuple[int, int]]:
    touched = set()
    for _ in range(rng.randint(1, 12)):
        r = rng.randrange(len(mem.regions))
        touched.add((r, rng.randrange(mem.regions[r].n_words)))
    return sorted(touched)


def test_multiproof_matches_python(libs: Any) -> None:
    rng = random.Random(11)
    for _ in range(30):
        mem = random_memory(rng)
        addrs = random_touch(rng, mem)
        sib = mem.prove(addrs)
        words = {a: mem.read_word(*a) for a in addrs}
        regions = [region_tuple(r) for r in mem.regions]
        args = [(r << 64) | i for r, i in addrs], [words[a] for a in addrs]
        assert roots_from_words(mem.regions, words, sib) == (mem.root(), len(sib))
        assert libs.value("rootsFromWords", regions, *args, sib) == mem.root()
        assert libs.call("rootsFromWords", regions, *args, sib).values == (mem.root(), len(sib))
        # one more hash than needed: same root, the extra one unused (the verifier's UnusedSiblings)
        assert libs.call("rootsFromWords", regions, *args, [*sib, bytes(32)]).values == (mem.root(), len(sib))
        # a changed word: another root (the verifier's MemoryRootMismatch)
        bad = list(args[1])
        bad[0] = bytes(31) + bytes([bad[0][31] ^ 1])
        root, _ = roots_from_words(mem.regions, {**words, addrs[0]: bad[0]}, sib)
        assert root != mem.root()
        assert libs.call("rootsFromWords", regions, args[0], bad, sib).values[0] == root
        # a missing hash: both run out (the verifier names it SiblingsExhausted)
        if sib:
            with pytest.raises(vm_errors.InvalidWitness):
                roots_from_words(mem.regions, words, sib[:-1])
            assert solidity_verdict(libs.call("rootsFromWords", regions, *args, sib[:-1])) == "SiblingsExhausted"
