"""Shape-lying bundles through the precompiles: the call fails and consumes all its gas; an honest
adversarial bundle is charged from its (verified) shapes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ai_evm.evm import INFERENCE_ADDRESS, INFERENCE_INLINE_ADDRESS, decode_return, encode_call, encode_inline_call
from ai_evm.evm.devchain import DevChain
from ai_evm.evm.gas import inference_gas, inline_bundle_gas
from opml import adversarial
from opml.bundle import Bundle, _encode_valid
from opml.commitment import compute_address
from opml.cost import model_cost
from opml.engine import run_bytes
from opml.store import LocalStore


def liar() -> tuple[Bundle, bytes]:
    """The broadcast add declared [N, 1, 1] although it gives [N, 64, 64]; input bytes for batch 1."""
    case = adversarial.broadcast_add(1, 1)
    b = case.bundle
    tensors = list(b.tensors)
    tensors[-1] = replace(tensors[-1], shape=(-1, 1, 1))
    x = b"".join(a.astype(a.dtype.newbyteorder("<")).tobytes() for a in case.inputs)
    return Bundle(tuple(tensors), b.nodes, b.inputs, b.outputs, b.metadata), x


def burns_all(c, gas: int) -> str:  # type: ignore[no-untyped-def]
    assert c.is_error and c.get_gas_used() == gas and c.get_gas_remaining() == 0 and c.output == b""
    return str(c.error)


def test_inline_shape_lie_fails_consuming_all_gas() -> None:
    b, x = liar()
    gas = 3_000_000
    c = DevChain(None).execute_message(INFERENCE_INLINE_ADDRESS, encode_inline_call(_encode_valid(b), x), gas)
    assert "is declared (N, 1, 1) but its inputs (N, 64, 1), (1, 64) give (N, 64, 64)" in burns_all(c, gas)


def test_by_address_shape_lie_fails_consuming_all_gas(tmp_path: Path) -> None:
    """Even when the bytes sit in the node's store (written behind its back), 0xa1 refuses them."""
    b, x = liar()
    store = LocalStore(tmp_path)
    address = compute_address(b)
    store.path(address).parent.mkdir(parents=True, exist_ok=True)
    store.path(address).write_bytes(_encode_valid(b))
    gas = 3_000_000
    c = DevChain(store).execute_message(INFERENCE_ADDRESS, encode_call(address, 1, x), gas)
    assert "not available" in burns_all(c, gas)


def test_honest_broadcast_is_charged_for_its_real_output(tmp_path: Path) -> None:
    case = adversarial.broadcast_add(1, 1)
    store = LocalStore(tmp_path)
    address = store.put(case.bundle)
    b = store.get_bundle(address)
    x = b"".join(a.tobytes() for a in case.inputs)
    out = run_bytes(b, x)
    cost = model_cost(b, 1)
    assert cost.elementwise == 64 * 64
    chain = DevChain(store)
    c = chain.execute_message(INFERENCE_ADDRESS, encode_call(address, len(out), x), 1_000_000)
    assert c.is_success, c.error
    assert decode_return(c.output) == out
    assert c.get_gas_used() == inference_gas(cost, len(x), len(out))
    inline = chain.execute_message(INFERENCE_INLINE_ADDRESS, encode_inline_call(b.encoded, x), 1_000_000)
    assert inline.get_gas_used() == inference_gas(cost, len(x), len(out)) + inline_bundle_gas(len(b.encoded))
    assert np.frombuffer(decode_return(inline.output), np.int8).shape == (64 * 64,)
