"""Fuzz the inference precompiles: 5,000 random and mutated calls never raise out of the VM,
always consume gas, and give identical results when repeated."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_evm.evm import INFERENCE_ADDRESS, INFERENCE_INLINE_ADDRESS, encode_call, encode_inline_call
from ai_evm.evm.devchain import DevChain, apply_message
from opml.engine import output_length

GAS = 3_000_000
def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def fuzz_state(chain: DevChain):
    with chain.head_state() as state:
        yield chain, state


def check(fuzz_state, to: bytes, data: bytes) -> None:
    chain, state = fuzz_state
    first = apply_message(state, chain.sender, to, data, GAS)
    again = apply_message(state, chain.sender, to, data, GAS)
    assert (first.is_success, bytes(first.output), first.get_gas_used()) == (
        again.is_success, bytes(again.output), again.get_gas_used()
    )
    assert first.get_gas_used() > 0
    if first.is_error:
        assert first.get_gas_remaining() == 0 and first.output == b""
        assert str(first.error)  # a reason is always given
    else:
        assert first.inference_record is not None


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) mutations: overwrite, insert, delete, truncate."""
    buf = bytearray(data)
    for kind, pos, value in ops:
        if not buf and kind != 1:
            continue
        p = pos % max(len(buf), 1)
        if kind == 0:
            buf[p] = value
        elif kind == 1:
            buf[p:p] = bytes([value]) * (value % 7 + 1)
        elif kind == 2:
            del buf[p:p + value % 9 + 1]
        else:
            del buf[p:]
    return bytes(buf)


MUTATIONS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)), max_size=4)


@fuzz(1500)
@given(st.binary(max_size=400))
def test_random_bytes_to_inference(fuzz_state, data: bytes) -> None:
    check(fuzz_state, INFERENCE_ADDRESS, data)


@fuzz(1000)
@given(st.binary(max_size=400))
def test_random_bytes_to_inline(fuzz_state, data: bytes) -> None:
    check(fuzz_state, INFERENCE_INLINE_ADDRESS, data)


@fuzz(1500)
@given(model=st.sampled_from(["digits_mlp", "digits_cnn", "encoder"]), rows=st.integers(1, 3),
       values=st.lists(st.floats(width=32), min_size=1, max_size=8), ops=MUTATIONS,
       other=st.sampled_from(["digits_mlp", "digits_cnn", "encoder", None]))
def test_mutated_valid_calls(fuzz_state, bundles, samples, model, rows, values, ops, other) -> None:
    b = bundles[model]
    x = samples[model][:rows].copy().reshape(-1)
    x[: len(values)] = np.array(values, dtype=np.float32)
    x_bytes = x.astype("<f4").tobytes()
    address = bundles[other].address if other else b.address
    data = mutate(encode_call(address, output_length(b, len(x_bytes)), x_bytes), ops)
    check(fuzz_state, INFERENCE_ADDRESS, data)


@fuzz(1000)
@given(rows=st.integers(1, 2), ops=MUTATIONS)
def test_mutated_inline_calls(fuzz_state, bundles, samples, rows, ops) -> None:
    b = bundles["digits_mlp"]
    x = samples["digits_mlp"][:rows].tobytes()
    data = encode_inline_call(b.encoded, x)
    # keep the header consistent half of the time so mutations reach the bundle decoder
    mutated = mutate(data[64:], ops)
    if ops and ops[0][2] % 2:
        n_input = (len(mutated) - len(b.encoded)) % (1 << 256)
        data = len(b.encoded).to_bytes(32, "big") + n_input.to_bytes(32, "big") + mutated
    else:
        data = mutate(data, ops)
    check(fuzz_state, INFERENCE_INLINE_ADDRESS, data)
