"""The committed precompile vectors: up to date, and each one's gas and output hold separately."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ai_evm.evm import INFERENCE_ADDRESS
from ai_evm.evm.call import parse_by_address
from ai_evm.evm.devchain import DevChain
from ai_evm.evm.gas import inference_gas
from opml.bundle import load_bundle
from opml.cost import model_cost
from opml.engine import batch_from_input_length, output_length
from opml.store import MemoryCache

ROOT = Path(__file__).resolve().parents[3]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "precompile" / "inference.json").read_text())["vectors"]


def test_vectors_are_up_to_date() -> None:
    script = ROOT / "scripts" / "gen_precompile_vectors.py"
    spec = importlib.util.spec_from_file_location("gen_precompile_vectors", script)
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.main(["--check"]) == 0, "run scripts/gen_precompile_vectors.py"


@pytest.fixture(scope="module")
def vector_chain() -> DevChain:
    store = MemoryCache()
    for v in VECTORS:
        for path in v["models"].values():
            store.put(load_bundle(str(ROOT / path)))
    return DevChain(store)


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector_chain: DevChain, v: dict) -> None:
    data = bytes.fromhex(v["input"][2:])
    to = bytes.fromhex(v["address"][2:])
    c = vector_chain.execute_message(to, data, v["gasGiven"])
    assert c.is_success == v["success"]
    assert c.get_gas_used() == v["gasUsed"]
    assert "0x" + bytes(c.output).hex() == v["output"]
    if not v["success"]:
        assert v["gasUsed"] == v["gasGiven"] and v["output"] == "0x"


@pytest.mark.parametrize("v", [v for v in VECTORS if v["success"] and v["address"].endswith("a1")],
                         ids=lambda v: v["name"])
def test_vector_gas_from_header_alone(v: dict) -> None:
    """The charge is a pure function of the bundle header and the sizes: no execution needed."""
    assert bytes.fromhex(v["address"][2:]) == INFERENCE_ADDRESS
    _, out_size, x = parse_by_address(bytes.fromhex(v["input"][2:]))
    [path] = v["models"].values()
    bundle = load_bundle(str(ROOT / path))
    cost = model_cost(bundle, batch_from_input_length(bundle, len(x)))
    assert inference_gas(cost, len(x), output_length(bundle, len(x))) == v["gasUsed"]
    assert out_size == output_length(bundle, len(x))
