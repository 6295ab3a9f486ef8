"""Failure vectors of the fraud-VM step verifier (used by ``scripts/gen_fraud_vm_vectors.py``).

Each failure is a forged or inconsistent input to ``fraud_vm.vm.check_step(pre_state_hash,
witness_calldata, post_state_hash)`` and the named error (``fraud_vm.errors``) it must fail with:
the Solidity verifier must revert with the custom error of the same name on the same bytes.

- ``witness_failures``: every check of the witness's hash chain, word set and multiproof, forged from
  one honest step (tampered pre-state, wrong context, halted state, missing / extra / unsorted /
  repeated / out-of-range words, a flipped sibling, too few / too many siblings, malformed calldata,
  a post-state that lies...);
- ``KIND_FAILURES``: per vector file, steps whose registers or memory make the instruction itself
  fail (overflow, division by zero, NaN, gather or table index out of range...). Their pre-states
  are self-consistent (the memory root and context hash match), so only the instruction's own check
  can fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fraud_vm import errors as E
from fraud_vm.compiler import NodeContext
from fraud_vm.state import HALTED, I64_MAX, I256_MAX, VMState
from fraud_vm.trace import NodeTrace
from fraud_vm.vm import MAX_WITNESS_WORDS, NodeMemory, StepWitness, prove_step, verify_step
from opml.merkle import keccak

Failure = dict[str, Any]


def _flip(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]


def failure(name: str, desc: str, error: type[E.FraudVMError], pre: bytes, calldata: bytes, post: bytes,
            step: int) -> Failure:
    """One failure vector; checks here that the Python verifier fails with exactly ``error``."""
    try:
        got = verify_step(pre, calldata)
    except E.FraudVMError as e:
        if type(e) is not error:
            raise AssertionError(f"{name}: expected {error.__name__}, got {type(e).__name__}: {e}") from e
    else:
        if not (error is E.PostStateMismatch and got != post):
            raise AssertionError(f"{name}: expected {error.__name__}, the step verified")
    return {"name": name, "description": desc, "error": error.__name__, "selector": "0x" + error.selector().hex(),
            "step": step, "pre_state_hash": "0x" + pre.hex(), "witness_calldata": "0x" + calldata.hex(),
            "post_state_hash": "0x" + post.hex()}


def _reprove(mem: NodeMemory, w: StepWitness, addrs: list[tuple[int, int]]) -> StepWitness:
    """``w`` with the words ``addrs`` (values from ``mem``) and their correct multiproof."""
    addrs = sorted(addrs)
    return replace(w, words=tuple((r, i, mem.read_word(r, i)) for r, i in addrs), siblings=tuple(mem.prove(addrs)))


def witness_failures(tr: NodeTrace, k: int) -> list[Failure]:
    """Every witness-level check, forged from the honest step ``k`` (it needs >= 2 words)."""
    pre, post, w, mem = tr.state_hash_at(k), tr.state_hash_at(k + 1), tr.witness_at(k), tr.memory_at(k)
    state = tr.state_at(k)
    addrs = [(r, i) for r, i, _ in w.words]
    assert len(addrs) >= 2 and w.siblings, "witness failures need a step with two words and a proof"
    out: list[Failure] = []

    def add(name: str, desc: str, err: type[E.FraudVMError], wit: StepWitness | bytes,
            pre_hash: bytes = pre, post_hash: bytes = post) -> None:
        data = wit if isinstance(wit, bytes) else wit.encode()
        out.append(failure(name, desc, err, pre_hash, data, post_hash, k))

    def with_state(s: VMState, ctx_bytes: bytes | None = None) -> tuple[bytes, StepWitness]:
        return s.hash(), replace(w, pre_state=s.encode(), context=ctx_bytes or w.context)

    add("lying_post_state", "an honest witness; the claimed post-state hash is wrong", E.PostStateMismatch, w,
        post_hash=_flip(post, 31))
    add("trailing_calldata_byte", "the calldata has one byte after the last sibling", E.MalformedWitness,
        w.encode() + b"\0")
    add("truncated_calldata", "the calldata ends inside the last sibling", E.MalformedWitness, w.encode()[:-1])
    add("zero_context_words", "the header announces a context of zero words", E.MalformedWitness,
        b"\0\0" + w.encode()[2:])
    add("tampered_pre_state", "one register byte of the pre-state flipped", E.PreStateHashMismatch,
        replace(w, pre_state=_flip(w.pre_state, 300)))
    add("wrong_pre_state_hash", "the honest witness against another pre-state hash", E.PreStateHashMismatch, w,
        pre_hash=_flip(pre, 0))
    bad_status = w.pre_state[:96] + (2).to_bytes(32, "big") + w.pre_state[128:]
    add("malformed_state_status", "a pre-state whose status word is 2 (hash consistent)", E.MalformedState,
        replace(w, pre_state=bad_status), pre_hash=keccak(bad_status))
    add("tampered_context", "one byte of the node context flipped", E.ContextHashMismatch,
        replace(w, context=_flip(w.context, 40)))
    bad_ctx = w.context + bytes(32)
    cp, cw = with_state(state.with_(context_hash=keccak(bad_ctx)), bad_ctx)
    add("malformed_context", "a context with a trailing word, committed by the pre-state", E.MalformedContext, cw,
        pre_hash=cp)
    hp, hw = with_state(state.with_(status=HALTED))
    add("halted_state", "the honest step from a state marked HALTED", E.StateHalted, hw, pre_hash=hp)
    sp, sw = with_state(state.with_(step=tr.num_steps))
    add("step_out_of_range", "a RUNNING state whose step equals the program length", E.StepOutOfRange, sw,
        pre_hash=sp)
    many = tuple((0, i, bytes(32)) for i in range(MAX_WITNESS_WORDS + 1))
    add("too_many_words", f"{MAX_WITNESS_WORDS + 1} words", E.TooManyWords, replace(w, words=many))
    add("unsorted_words", "the first two words swapped", E.WordsNotSorted,
        replace(w, words=(w.words[1], w.words[0], *w.words[2:])))
    add("repeated_word", "the first word twice", E.WordsNotSorted, replace(w, words=(w.words[0], *w.words)))
    r_last, _, _ = w.words[-1]
    oor = (r_last, tr.context.regions[r_last].n_words, bytes(32))
    add("word_out_of_range", "a word one past the end of its region", E.WordOutOfRange,
        replace(w, words=(*w.words, oor)))
    add("flipped_word_value", "one bit of a proven word's value flipped", E.MemoryRootMismatch,
        replace(w, words=((w.words[0][0], w.words[0][1], _flip(w.words[0][2], 5)), *w.words[1:])))
    add("flipped_sibling", "one bit of the first sibling flipped", E.MemoryRootMismatch,
        replace(w, siblings=(_flip(w.siblings[0], 7), *w.siblings[1:])))
    add("missing_sibling", "the last sibling dropped", E.SiblingsExhausted, replace(w, siblings=w.siblings[:-1]))
    add("extra_sibling", "a zero sibling appended", E.UnusedSiblings, replace(w, siblings=(*w.siblings, bytes(32))))
    add("missing_word", "the last touched word dropped (the rest correctly proven)", E.WordNotInWitness,
        _reprove(mem, w, addrs[:-1]))
    spare = next((r, i) for r in range(len(tr.context.regions)) for i in range(tr.context.regions[r].n_words)
                 if (r, i) not in addrs)
    add("extra_word", "an untouched word, correctly proven", E.UnusedWord, _reprove(mem, w, [*addrs, spare]))
    return out


# ------------------------------------------------------------------------------------------------
# instruction-level failures: self-consistent pre-states on which the instruction's own check fails

Craft = Callable[[NodeTrace], tuple[str, str, type[E.FraudVMError], VMState, NodeMemory]]


def _first(tr: NodeTrace, kind: str) -> int:
    return next(k for k in range(tr.num_steps) if tr.program.instr(k).kind.name == kind)


def _crafted(tr: NodeTrace, k: int, data: dict[int, bytes] | None = None, ctx: NodeContext | None = None,
             **fields: Any) -> tuple[VMState, NodeMemory]:
    """Step ``k``'s state with some registers replaced and some regions' bytes replaced (the memory
    root follows), i.e. a consistent state the honest trace never reaches."""
    base = tr.memory_at(k)
    ctx = ctx or tr.context
    regions = [base.region_data(r) for r in range(len(base.regions))]
    for r, b in (data or {}).items():
        regions[r] = b
    mem = NodeMemory(ctx, regions)
    return tr.state_at(k).with_(context_hash=ctx.hash, memory_root=mem.root(), **fields), mem


def _lanes(v: int, n: int = 32) -> tuple[int, ...]:
    return (v,) * n


def _set_elem(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def kind(name: str, desc: str, err: type[E.FraudVMError], step_kind: str, data: Callable[[NodeTrace], dict[int, bytes]]
         | None = None, **fields: Any) -> Craft:
    """A failure at the first step of ``step_kind`` with registers ``fields`` and region bytes ``data``."""
    def make(tr: NodeTrace) -> tuple[str, str, type[E.FraudVMError], VMState, NodeMemory]:
        s, mem = _crafted(tr, _first(tr, step_kind), data(tr) if data else None, **fields)
        return name, desc, err, s, mem

    return make


F32_NAN = (0x7FC00000).to_bytes(4, "little")

KIND_FAILURES: dict[str, list[Craft]] = {
    "linear_int8_negative_zp": [
        kind("mac_lane_overflow", "MAC: acc lane at int64 max plus a non-zero product", E.ArithmeticOverflow, "MAC",
             acc=_lanes(I64_MAX)),
    ],
    "linear_requant_saturation": [
        kind("fin_req_shift_70", "FIN_REQ: a per-channel shift of 70 (requantization shifts are 1..62)",
             E.InvalidShift, "FIN_REQ", lambda tr: {4: (70).to_bytes(4, "little") * tr.context.inputs[4].size}),
    ],
    "avgpool_exclude_pad": [
        kind("fin_div_zero_count", "FIN_DIV: the aux counts are 0 (an empty window)", E.NonPositiveDivisor, "FIN_DIV",
             aux=_lanes(0)),
    ],
    "reduce_l2": [
        kind("fin_div_negative_sqrt", "FIN_DIV with sqrt of a negative accumulator", E.NegativeSquareRoot, "FIN_DIV",
             acc=_lanes(-1)),
        kind("acc_sq_overflow", "ACC_SQ: acc lane at int64 max", E.ArithmeticOverflow, "ACC_SQ", acc=_lanes(I64_MAX)),
    ],
    "reduce_mean_strided": [
        kind("acc_sum_aux_overflow", "ACC_SUM: the aux count at int64 max", E.ArithmeticOverflow, "ACC_SUM",
             aux=_lanes(I64_MAX)),
    ],
    "maxpool_padding": [
        kind("fin_move_value_out_of_range", "FIN_MOVE: an acc lane of 1000 into an int8 output", E.ValueOutOfRange,
             "FIN_MOVE", acc=_lanes(1000)),
    ],
    "quantize_inf_ties_subnormal": [
        kind("quant_nan_input", "QUANT of a NaN input", E.NanOperand, "QUANT",
             lambda tr: {0: _set_elem(tr.memory_at(0).region_data(0), 0, F32_NAN)}),
    ],
    "cast_float_to_int32_saturating": [
        kind("cast_nan_input", "CAST float32 -> int32 of a NaN", E.NanOperand, "CAST",
             lambda tr: {0: _set_elem(tr.memory_at(0).region_data(0), 0, F32_NAN)}),
    ],
    "gather_negative_index": [
        kind("gather_index_out_of_range", "GATHER with index 4 into 4 rows", E.GatherIndexOutOfRange, "GATHER",
             lambda tr: {1: _set_elem(tr.memory_at(0).region_data(1), 0, (4).to_bytes(8, "little"))}),
    ],
    "softmax_two_chunks": [
        kind("sm_sum_table_index_out_of_range", "SM_SUM with a row maximum far above the row: s0 - x >= 256",
             E.TableIndexOutOfRange, "SM_SUM", scalars=(1000, 0, 0, 0)),
    ],
    "layernorm_two_chunks": [
        kind("ln_out_zero_denominator", "LN_OUT with s2 = 0", E.NonPositiveDivisor, "LN_OUT", scalars=(0, 0, 0, 0)),
        kind("ln_var_overflow", "LN_VAR with s0 at -int256 max: n*x - s0 leaves int256", E.ArithmeticOverflow, "LN_VAR",
             scalars=(-I256_MAX, 0, 0, 0)),
        kind("ln_den_shift_overflow", "LN_DEN: (s1 div n) << 16 leaves int256", E.ArithmeticOverflow, "LN_DEN",
             scalars=(0, I256_MAX, 0, 0)),
    ],
}


def unsupported_node(tr: NodeTrace) -> Failure:
    """A context whose output shape contradicts its inputs: no program (``UnsupportedOp``)."""
    descs = list(tr.context.descs)
    out = list(descs[-1])
    out[2] += 1  # first output dimension
    descs[-1] = tuple(out)
    ctx = replace(tr.context, descs=tuple(descs))
    state = tr.state_at(0).with_(context_hash=ctx.hash)
    w = StepWitness(state.encode(), ctx.encode(), (), ())
    return failure("unsupported_node", "an output descriptor that contradicts the inputs' shapes", E.UnsupportedOp,
                   state.hash(), w.encode(), tr.state_hash_at(1), 0)


def kind_failures(name: str, tr: NodeTrace) -> list[Failure]:
    """The instruction-level failures of vector file ``name``."""
    out = []
    for make in KIND_FAILURES.get(name, []):
        fname, desc, err, state, mem = make(tr)
        out.append(failure(fname, desc, err, state.hash(), prove_step(state, mem).encode(), bytes(32), state.step))
    return out
