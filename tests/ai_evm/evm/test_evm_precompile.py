"""The inference precompiles: outputs equal the engine's, gas equals the formula, failures burn gas."""

from __future__ import annotations

import numpy as np
import pytest

from ai_evm.evm import (
    INFERENCE_ADDRESS,
    INFERENCE_INLINE_ADDRESS,
    ModelResolver,
    decode_return,
    encode_call,
    encode_inline_call,
    inference_root,
)
from ai_evm.evm.devchain import DevChain
from ai_evm.evm.gas import INFERENCE_BASE_GAS, inference_gas, inline_bundle_gas
from opml.bundle import Bundle
from opml.cost import model_cost
from opml.engine import batch_from_input_length, run_bytes
from opml.merkle import keccak
from opml.store import MemoryCache

EXAMPLES = ("digits_mlp", "digits_cnn", "encoder")


def formula(bundle: Bundle, x: bytes) -> int:
    out = len(run_bytes(bundle, x))
    return inference_gas(model_cost(bundle, batch_from_input_length(bundle, len(x))), len(x), out)


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("batch", [1, 3])
def test_transaction_and_call_match_engine(chain: DevChain, bundles, samples, name: str, batch: int) -> None:
    bundle = bundles[name]
    x = samples[name][:batch].tobytes()
    expected = run_bytes(bundle, x)
    data = encode_call(bundle.address, len(expected), x)

    result = chain.transact(INFERENCE_ADDRESS, data, gas=2_000_000)
    assert result.computation.is_success, result.computation.error
    assert decode_return(result.computation.output) == expected
    # a transaction straight to the precompile: its frame is the top-level computation
    assert result.computation.get_gas_used() == formula(bundle, x)
    [record] = result.records
    assert record.model == bundle.address
    assert record.input_hash == keccak(x) and record.output_hash == keccak(expected)
    assert record.tx_hash == bytes(result.tx.hash) and record.call_index == 0
    assert record.gas == formula(bundle, x)

    call = chain.call(INFERENCE_ADDRESS, data)
    assert call.is_success and decode_return(call.output) == expected


@pytest.mark.parametrize("name", EXAMPLES)
def test_inline_matches_by_address(chain: DevChain, bundles, samples, name: str) -> None:
    bundle = bundles[name]
    x = samples[name][:2].tobytes()
    expected = run_bytes(bundle, x)
    c = chain.execute_message(INFERENCE_INLINE_ADDRESS, encode_inline_call(bundle.encoded, x), 5_000_000)
    assert c.is_success, c.error
    assert decode_return(c.output) == expected
    assert c.get_gas_used() == formula(bundle, x) + inline_bundle_gas(len(bundle.encoded))
    assert c.inference_record.model == bundle.address


def test_gas_same_cached_or_not(bundles, samples, store) -> None:
    bundle = bundles["digits_cnn"]
    x = samples["digits_cnn"][:1].tobytes()
    data = encode_call(bundle.address, 40, x)
    cold = DevChain(store)  # a fresh resolver: the first call misses its cache
    used = [cold.execute_message(INFERENCE_ADDRESS, data, 1_000_000).get_gas_used() for _ in range(3)]
    assert used == [formula(bundle, x)] * 3
    assert cold.resolver.resolve(bundle.address) is cold.resolver.resolve(bundle.address)


def failing(chain: DevChain, to: bytes, data: bytes, gas: int = 700_000) -> str:
    c = chain.execute_message(to, data, gas)
    assert c.is_error
    assert c.get_gas_remaining() == 0 and c.get_gas_used() == gas
    assert c.output == b""
    return str(c.error)


def test_failures_consume_all_gas_and_say_why(chain: DevChain, bundles, samples) -> None:
    bundle = bundles["digits_mlp"]
    x = samples["digits_mlp"][:1].tobytes()
    need = formula(bundle, x)
    assert "no model store" in failing(DevChain(None), INFERENCE_ADDRESS, encode_call(bundle.address, 40, x))
    assert "not available" in failing(chain, INFERENCE_ADDRESS, encode_call(b"\x42" * 32, 40, x))
    assert "expected modelAddress" in failing(chain, INFERENCE_ADDRESS, bundle.address + b"\x00" * 5)
    assert "wrong input length" in failing(chain, INFERENCE_ADDRESS, encode_call(bundle.address, 40, x[:-1]))
    assert "wrong input length" in failing(chain, INFERENCE_ADDRESS, encode_call(bundle.address, 0, b""))
    assert "outputSize is 41" in failing(chain, INFERENCE_ADDRESS, encode_call(bundle.address, 41, x))
    assert "implausibly large" in failing(chain, INFERENCE_ADDRESS, encode_call(bundle.address, 2**255, x))
    # out of gas: one unit short of the formula, and less than the base charge
    assert "Out of gas" in failing(chain, INFERENCE_ADDRESS, encode_call(bundle.address, 40, x), gas=need - 1)
    assert "Out of gas" in failing(chain, INFERENCE_ADDRESS, encode_call(bundle.address, 40, x), INFERENCE_BASE_GAS - 1)
    ok = chain.execute_message(INFERENCE_ADDRESS, encode_call(bundle.address, 40, x), need)
    assert ok.is_success and ok.get_gas_remaining() == 0


def test_inline_failures(chain: DevChain, bundles, samples) -> None:
    bundle = bundles["digits_mlp"]
    x = samples["digits_mlp"][:1].tobytes()
    raw = bundle.encoded
    assert "header announces" in failing(chain, INFERENCE_INLINE_ADDRESS, encode_inline_call(raw, x)[:-1])
    broken = bytearray(raw)
    broken[40] ^= 0xFF
    assert "not a valid bundle" in failing(chain, INFERENCE_INLINE_ADDRESS, encode_inline_call(bytes(broken), x))
    assert "wrong input length" in failing(chain, INFERENCE_INLINE_ADDRESS, encode_inline_call(raw, x + b"\0"))
    too_little = inline_bundle_gas(len(raw)) + INFERENCE_BASE_GAS - 1
    assert "Out of gas" in failing(chain, INFERENCE_INLINE_ADDRESS, encode_inline_call(raw, x), too_little)


def test_nan_and_inf_inputs_are_deterministic(chain: DevChain, bundles) -> None:
    bundle = bundles["digits_mlp"]
    x = np.array([[np.nan, np.inf, -np.inf, -0.0] * 16], dtype="<f4").tobytes()
    data = encode_call(bundle.address, 40, x)
    first = chain.execute_message(INFERENCE_ADDRESS, data, 1_000_000)
    again = chain.execute_message(INFERENCE_ADDRESS, data, 1_000_000)
    assert (first.is_success, first.output) == (again.is_success, again.output)
    if first.is_success:
        assert decode_return(first.output) == run_bytes(bundle, x)


def test_records_through_a_block_and_root(chain: DevChain, bundles, samples) -> None:
    txs = []
    for name in EXAMPLES:
        b, x = bundles[name], samples[name][:1].tobytes()
        txs.append(chain.sign(INFERENCE_ADDRESS, encode_call(b.address, len(run_bytes(b, x)), x), gas=2_000_000))
    txs.append(chain.sign(INFERENCE_ADDRESS, encode_call(b"\x01" * 32, 40, b""), gas=100_000))  # fails: no record
    results = chain.mine(txs)
    records = [r for res in results for r in res.records]
    assert [r.model for r in records] == [bundles[n].address for n in EXAMPLES]
    assert not results[-1].computation.is_success and results[-1].gas_used == 100_000
    root = inference_root(records)
    assert len(root) == 32 and root != inference_root(records[:2]) and root != inference_root(records[::-1])
    assert inference_root([]) == inference_root([])


def test_resolver_reports_store_errors(bundles) -> None:
    class Broken(MemoryCache):
        def fetch(self, address: bytes) -> tuple[bytes, Bundle]:
            raise OSError("disk on fire")

    from ai_evm.evm import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="disk on fire"):
        ModelResolver(Broken()).resolve(bundles["digits_mlp"].address)
