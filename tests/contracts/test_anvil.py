"""The artifacts on a second EVM: deploy AILibHarness on anvil (revm, prague) with Foundry's cast
and check that its helpers return what they return in py-evm.

anvil has no inference precompile, so only pure helpers and the missing-output guard are compared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from eth_abi import decode
from eth_utils import keccak

from ai_evm.contracts import CONTRACTS_DIR, artifact
from ai_evm.rollup.anvil import Anvil

BIN = CONTRACTS_DIR.parent / "node_modules" / ".bin"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")


def cast(*args: str) -> str:
    result = subprocess.run([str(BIN / "cast"), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"cast {' '.join(args[:2])}: {result.stderr}"
    return result.stdout.strip()


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with Anvil(Path(tmp_path_factory.mktemp("anvil")) / "anvil.log") as url:
        yield url


@pytest.fixture(scope="module")
def anvil_harness(anvil: str) -> str:
    sender = json.loads(cast("rpc", "--rpc-url", anvil, "eth_accounts"))[0]
    code = "0x" + artifact("AILibHarness").bytecode.hex()
    receipt = json.loads(cast("send", "--rpc-url", anvil, "--unlocked", "--from", sender, "--json", "--create", code))
    assert int(receipt["status"], 16) == 1
    return str(receipt["contractAddress"])


def test_float32_helpers_agree_with_py_evm(anvil: str, anvil_harness: str, harness) -> None:
    values = [5, -3, 0, 2**40 + 1, -(2**100), 7]
    out = cast(
        "call",
        "--rpc-url",
        anvil,
        anvil_harness,
        "encodeFloat32FromScaled(int256[],uint256)(bytes)",
        "[" + ",".join(str(v) for v in values) + "]",
        "16",
    )
    assert bytes.fromhex(out[2:]) == harness.value("encodeFloat32FromScaled", values, 16)

    data = np.array([-1.5, 0.25, 3.0e10, -0.0, 2.5], dtype="<f4").tobytes()
    raw = cast(
        "call", "--rpc-url", anvil, anvil_harness, "decodeFloat32ToScaled(bytes,uint256)", "0x" + data.hex(), "1000"
    )
    (decoded,) = decode(["int256[]"], bytes.fromhex(raw[2:]))
    assert list(decoded) == list(harness.value("decodeFloat32ToScaled", data, 1000))

    argmax = cast("call", "--rpc-url", anvil, anvil_harness, "argmaxFloat32(bytes)(uint256)", "0x" + data.hex())
    assert int(argmax.split()[0]) == harness.value("argmaxFloat32", data) == 2


def test_inference_without_precompile_reverts_on_anvil(anvil: str, anvil_harness: str) -> None:
    # cast 1.7 reports an eth_call revert on stderr (its exit status is not reliable for this).
    result = subprocess.run(
        [
            str(BIN / "cast"),
            "call",
            "--rpc-url",
            anvil,
            anvil_harness,
            "inference(bytes32,bytes,uint256)(bytes)",
            "0x" + "11" * 32,
            "0x0102",
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    selector = keccak(b"OutputSizeMismatch(uint256,uint256)")[:4].hex()
    expected = "0x" + selector + (40).to_bytes(32, "big").hex() + (0).to_bytes(32, "big").hex()
    assert expected in result.stderr, result.stderr + result.stdout
