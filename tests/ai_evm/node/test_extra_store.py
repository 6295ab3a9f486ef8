"""A node resolves models from its extra --model-store URIs: eth_call to 0xa1 runs a model that is
only in an extra store, the answer equals the engine's, and the node caches a verified copy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nodeproc import ROOT, NodeProcess, RpcFailure  # noqa: E402

from ai_evm.evm import decode_return, encode_call  # noqa: E402
from opml.bundle import load_bundle  # noqa: E402
from opml.engine import run_bytes  # noqa: E402
from opml.store import LocalStore  # noqa: E402

PRECOMPILE = "0x00000000000000000000000000000000000000a1"


def test_inference_from_an_extra_store(tmp_path: Path) -> None:
    bundle = load_bundle(str(ROOT / "models" / "encoder" / "model.bundle"))
    extra = tmp_path / "extra-store"
    LocalStore(extra).put(bundle)
    datadir = tmp_path / "data"
    datadir.mkdir()
    node = NodeProcess(datadir, args=("--model-store", str(extra))).start()
    try:
        x = np.load(ROOT / "models" / "encoder" / "test_x.npy")[:2].astype("<f4").tobytes()
        expected = run_bytes(bundle, x)
        data = "0x" + encode_call(bundle.address, len(expected), x).hex()
        out = node.rpc("eth_call", {"to": PRECOMPILE, "data": data, "gas": hex(5_000_000)}, "latest")
        assert decode_return(bytes.fromhex(out[2:])) == expected
        assert node.rpc("aievm_getModel", "0x" + bundle.address.hex())["address"] == "0x" + bundle.address.hex()
        # the node keeps a verified copy of what it fetched in its own store (DATADIR/models)
        assert LocalStore(datadir / "models").get(bundle.address) == bundle.encoded
        with pytest.raises(RpcFailure) as failure:  # a model in no store: the reason reaches the caller
            node.rpc("eth_call", {"to": PRECOMPILE, "data": "0x" + encode_call(b"\x09" * 32, 40, x).hex()}, "latest")
        assert "not available" in str(failure.value.error)
    finally:
        node.stop()
