"""Witness calldata: exact layout, strict decoding, gas estimate, and a mutation fuzz of the encoded
bytes that must always end in a named error or the true post-state."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraud_vm import errors as E
from fraud_vm.state import STATE_BYTES
from fraud_vm.vm import HEADER_BYTES, STEP_SELECTOR, StepWitness, verify_step
from opml.merkle import keccak

VEC_DIR = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "fraud_vm"
# honest steps of different shapes: one region / several regions, with and without writes
CASES = ["linear_int8_negative_zp", "layernorm_two_chunks", "gather_negative_index", "softmax_two_chunks",
         "avgpool_exclude_pad", "empty_output_nop"]


def _load() -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for name in CASES:
        for v in json.loads((VEC_DIR / f"{name}.json").read_text())["vectors"]:
            out.append((bytes.fromhex(v["pre_state_hash"][2:]), bytes.fromhex(v["witness_calldata"][2:]),
                        bytes.fromhex(v["post_state_hash"][2:])))
    return out


STEPS = _load()


def test_layout_is_header_state_context_words_siblings() -> None:
    pre, data, post = next(s for s in STEPS if len(StepWitness.decode(s[1]).words) >= 2)
    w = StepWitness.decode(data)
    n_ctx = len(w.context) // 32
    assert data[:6] == n_ctx.to_bytes(2, "big") + len(w.words).to_bytes(2, "big") + len(w.siblings).to_bytes(2, "big")
    assert data[HEADER_BYTES : HEADER_BYTES + STATE_BYTES] == w.pre_state
    pos = HEADER_BYTES + STATE_BYTES + 32 * n_ctx
    assert data[HEADER_BYTES + STATE_BYTES : pos] == w.context
    for r, i, v in w.words:
        assert int.from_bytes(data[pos : pos + 32], "big") == (r << 64) | i and data[pos + 32 : pos + 64] == v
        pos += 64
    assert data[pos:] == b"".join(w.siblings)
    assert w.size == len(data) == HEADER_BYTES + w.size_bytes()


def test_calldata_cost_counts_every_byte_of_the_step_call() -> None:
    pre, data, post = STEPS[0]
    w = StepWitness.decode(data)
    call = w.calldata()
    assert call[:4] == STEP_SELECTOR == keccak(b"step(bytes32,bytes)")[:4]
    assert call[4:36] == pre and int.from_bytes(call[36:68], "big") == 64
    assert int.from_bytes(call[68:100], "big") == len(data) and call[100 : 100 + len(data)] == data
    assert len(call) % 32 == 4 and not any(call[100 + len(data) :])
    cost = w.calldata_cost()
    zeros = call.count(0)
    assert cost.bytes == len(call) and cost.tokens == zeros + 4 * (len(call) - zeros)
    assert cost.standard_gas == 4 * zeros + 16 * (len(call) - zeros) and cost.floor_gas == 10 * cost.tokens


@pytest.mark.parametrize("bad", [
    b"",
    bytes(HEADER_BYTES + STATE_BYTES),  # a context of zero words
    (1).to_bytes(2, "big") + bytes(4 + STATE_BYTES),  # announces one context word, has none
])
def test_decode_rejects_short_or_inconsistent_calldata(bad: bytes) -> None:
    with pytest.raises(E.MalformedWitness):
        StepWitness.decode(bad)


def test_decode_is_strict_and_encode_checks_fields() -> None:
    pre, data, post = STEPS[0]
    more_words = data[:2] + (int.from_bytes(data[2:4], "big") + 1).to_bytes(2, "big") + data[4:]
    for bad in (data + b"\0", data[:-1], data[:-32], more_words):
        with pytest.raises(E.MalformedWitness):
            StepWitness.decode(bad)
        with pytest.raises(E.MalformedWitness):
            verify_step(pre, bad)
    w = StepWitness.decode(data)
    for bad_w in (replace(w, pre_state=w.pre_state[:-1]), replace(w, context=w.context + b"\0"),
                  replace(w, words=((0, 1 << 64, bytes(32)),)), replace(w, siblings=(bytes(31),))):
        with pytest.raises(E.MalformedWitness):
            bad_w.encode()


def _verdict(pre: bytes, data: bytes, post: bytes) -> str:
    """``"ok"`` or the named error's name; anything else (an unnamed or foreign error) fails the test."""
    try:
        got = verify_step(pre, data)
    except E.FraudVMError as e:
        assert E.is_named(e), f"unnamed {type(e).__name__}: {e}"
        return type(e).__name__
    assert got == post, "a mutated witness verified to another post-state"
    return "ok"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(STEPS) - 1), st.data())
def test_random_byte_mutations_give_a_named_error_or_the_true_post_state(case: int, data: st.DataObject) -> None:
    pre, raw, post = STEPS[case]
    buf = bytearray(raw)
    # bias toward the header and the words/siblings tail, where a mutation reaches the deeper checks
    tail = HEADER_BYTES + STATE_BYTES + 32 * int.from_bytes(raw[:2], "big")
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set"] * 8 + ["insert", "delete", "truncate"]))
        if not buf:
            break
        lo = data.draw(st.sampled_from([0, min(tail, len(buf) - 1)]))
        i = data.draw(st.integers(lo, len(buf) - 1))
        if op == "set":
            buf[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del buf[i : i + data.draw(st.integers(1, 64))]
        else:
            del buf[i:]
    verdict = _verdict(pre, bytes(buf), post)
    assert verdict != "ok" or bytes(buf) == raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(STEPS) - 1), st.data())
def test_structured_mutations_give_a_named_error_or_the_true_post_state(case: int, data: st.DataObject) -> None:
    """Mutations that keep the calldata well-formed (header counts follow), so they reach the word,
    multiproof and execution checks."""
    pre, raw, post = STEPS[case]
    w = StepWitness.decode(raw)
    words, sibs = list(w.words), list(w.siblings)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["drop_word", "dup_word", "swap_words", "move_word", "drop_sib", "add_sib",
                                        "swap_sibs", "word_value", "pre_state_bit"]))
        if op == "drop_word" and words:
            del words[data.draw(st.integers(0, len(words) - 1))]
        elif op == "dup_word" and words:
            j = data.draw(st.integers(0, len(words) - 1))
            words.insert(j, words[j])
        elif op == "swap_words" and len(words) >= 2:
            j = data.draw(st.integers(0, len(words) - 2))
            words[j], words[j + 1] = words[j + 1], words[j]
        elif op == "move_word" and words:
            j = data.draw(st.integers(0, len(words) - 1))
            r, i, v = words[j]
            words[j] = (max(r + data.draw(st.integers(-1, 1)), 0), max(i + data.draw(st.integers(-2, 2)), 0), v)
        elif op == "drop_sib" and sibs:
            del sibs[data.draw(st.integers(0, len(sibs) - 1))]
        elif op == "add_sib":
            sibs.insert(data.draw(st.integers(0, len(sibs))), data.draw(st.binary(min_size=32, max_size=32)))
        elif op == "swap_sibs" and len(sibs) >= 2:
            j = data.draw(st.integers(0, len(sibs) - 2))
            sibs[j], sibs[j + 1] = sibs[j + 1], sibs[j]
        elif op == "word_value" and words:
            j = data.draw(st.integers(0, len(words) - 1))
            r, i, _ = words[j]
            words[j] = (r, i, data.draw(st.binary(min_size=32, max_size=32)))
        elif op == "pre_state_bit":
            k = data.draw(st.integers(0, STATE_BYTES * 8 - 1))
            ps = bytearray(w.pre_state)
            ps[k // 8] ^= 1 << (k % 8)
            w = replace(w, pre_state=bytes(ps))
    mutated = replace(w, words=tuple(words), siblings=tuple(sibs)).encode()
    verdict = _verdict(pre, mutated, post)
    assert verdict != "ok" or mutated == raw
