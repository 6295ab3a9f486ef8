"""Contract -> AILib -> precompile -> engine, through real transactions and eth_call.

Every example model's output through ``AIContract`` equals ``aievm infer`` on the same bundle and
input; a contract written against Axonum's raw staticcall layout works unchanged; the digits
classifier stores the engine's argmax; failures revert with AILib's custom error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak

from ai_evm.cli import main as cli
from ai_evm.contracts import artifact
from ai_evm.evm.devchain import DevChain
from opml.engine import run_bytes

MODELS = Path(__file__).resolve().parents[3] / "models"
EXAMPLES = ("digits_mlp", "digits_cnn", "encoder")


def abi_call(signature: str, *args: object) -> bytes:
    types = signature[signature.index("(") + 1:-1]
    return function_signature_to_4byte_selector(signature) + encode([t for t in types.split(",") if t], list(args))


def deploy(chain: DevChain, name: str, *ctor: tuple[str, object]) -> bytes:
    code = artifact(name).bytecode + (encode([t for t, _ in ctor], [v for _, v in ctor]) if ctor else b"")
    return chain.deploy(code)


def cli_infer(tmp_path: Path, model: str, x: np.ndarray) -> bytes:
    """Output bytes of ``aievm infer`` on the committed bundle."""
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    result = CliRunner().invoke(cli, ["infer", str(MODELS / model / "model.bundle"),
                                      "--input", str(tmp_path / "x.npy"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    return np.load(out).astype(np.load(out).dtype.newbyteorder("<")).tobytes()


@pytest.mark.parametrize("name", EXAMPLES)
def test_ai_contract_matches_cli(chain: DevChain, bundles, samples, tmp_path: Path, name: str) -> None:
    contract = deploy(chain, "AIContract")
    bundle = bundles[name]
    x = samples[name][:2]
    expected = cli_infer(tmp_path, name, x)
    assert expected == run_bytes(bundle, x.tobytes())

    result = chain.transact(contract, abi_call("inference(bytes32,bytes,uint256)", bundle.address,
                                               x.tobytes(), len(expected)), gas=3_000_000)
    assert result.computation.is_success, result.computation.error
    [log] = result.receipt.logs
    assert log.topics[0] == int.from_bytes(keccak(text="Inference(bytes32,bytes,uint256,bytes)"), "big")
    model, data, size, output = decode(["bytes32", "bytes", "uint256", "bytes"], log.data)
    assert (model, data, size, output) == (bundle.address, x.tobytes(), len(expected), expected)
    [record] = result.records
    assert record.model == bundle.address and record.output_hash == keccak(expected)


@pytest.mark.parametrize("name", EXAMPLES)
def test_axonum_style_caller_unchanged(chain: DevChain, bundles, samples, name: str) -> None:
    caller = deploy(chain, "AxonumStyleCaller")
    bundle = bundles[name]
    x = samples[name][:1].tobytes()
    expected = run_bytes(bundle, x)
    call = chain.call(caller, abi_call("infer(bytes32,bytes,uint256)", bundle.address, x, len(expected)))
    assert call.is_success, call.error
    assert decode(["bytes"], call.output)[0] == expected
    stored = chain.transact(caller, abi_call("inferAndStore(bytes32,bytes,uint256)", bundle.address, x, len(expected)))
    assert stored.computation.is_success
    assert decode(["bytes"], chain.call(caller, abi_call("lastOutput()")).output)[0] == expected
    # the raw layout reverts bare when the model is unknown
    bad = chain.call(caller, abi_call("infer(bytes32,bytes,uint256)", b"\x13" * 32, x, len(expected)))
    assert bad.is_error


def test_digits_classifier(chain: DevChain, bundles) -> None:
    bundle = bundles["digits_mlp"]
    classifier = deploy(chain, "DigitsClassifier", ("bytes32", bundle.address))
    images = np.load(MODELS / "digits_mlp" / "test_x.npy")[:5]
    for image in images:
        pixels = bytes(np.rint(image * 16).astype(np.uint8))
        engine = np.frombuffer(run_bytes(bundle, (pixels_to_input(pixels)).tobytes()), "<f4")
        predicted = chain.call(classifier, abi_call("predict(bytes)", pixels))
        assert predicted.is_success, predicted.error
        assert decode(["uint256"], predicted.output)[0] == int(np.argmax(engine))
        sent = chain.transact(classifier, abi_call("classify(bytes)", pixels))
        assert sent.computation.is_success and len(sent.records) == 1
        last = chain.call(classifier, abi_call("lastPrediction()"))
        assert decode(["uint256"], last.output)[0] == int(np.argmax(engine))


def pixels_to_input(pixels: bytes) -> np.ndarray:
    """What DigitsClassifier.encodeImage builds: intensity / 16 as float32 (exact for 0..16)."""
    return (np.frombuffer(pixels, np.uint8).astype(np.float32) / 16).reshape(1, 64).astype("<f4")


def test_failed_inference_reverts_with_custom_error(chain: DevChain, bundles, samples) -> None:
    contract = deploy(chain, "AIContract")
    x = samples["digits_mlp"][:1].tobytes()
    unknown = b"\x77" * 32
    result = chain.transact(contract, abi_call("inference(bytes32,bytes,uint256)", unknown, x, 40))
    assert result.computation.is_error and not result.receipt.logs
    selector = function_signature_to_4byte_selector("InferenceFailed(bytes32)")
    assert result.computation.output == selector + unknown
    # the precompile frame keeps the node-side reason
    inner = [c for c in result.computation.children if c.is_error]
    assert inner and "not available" in str(inner[0].error)
    wrong_size = chain.transact(contract, abi_call("inference(bytes32,bytes,uint256)",
                                                   bundles["digits_mlp"].address, x, 41))
    assert wrong_size.computation.is_error


@pytest.mark.parametrize("name", EXAMPLES)
def test_ailib_eth_call_matches_cli(chain: DevChain, bundles, samples, tmp_path: Path, name: str) -> None:
    harness = deploy(chain, "AILibHarness")
    bundle = bundles[name]
    x = samples[name][:3]
    expected = cli_infer(tmp_path, name, x)
    got = chain.call(harness, abi_call("inference(bytes32,bytes,uint256)", bundle.address, x.tobytes(), len(expected)))
    assert got.is_success, got.error
    assert decode(["bytes"], got.output)[0] == expected
    ok, out = decode(["bool", "bytes"], chain.call(harness, abi_call(
        "tryInference(bytes32,bytes,uint256,uint256)", bundle.address, x.tobytes(), len(expected), 1_000_000)).output)
    assert ok and out == expected
    ok, out = decode(["bool", "bytes"], chain.call(harness, abi_call(
        "tryInference(bytes32,bytes,uint256,uint256)", b"\x55" * 32, x.tobytes(), len(expected), 100_000)).output)
    assert not ok and out == b""


def test_ailib_inline_eth_call(chain: DevChain, bundles, samples) -> None:
    harness = deploy(chain, "AILibHarness")
    bundle = bundles["digits_mlp"]
    x = samples["digits_mlp"][:2].tobytes()
    expected = run_bytes(bundle, x)
    got = chain.call(harness, abi_call("inferenceInline(bytes,bytes,uint256)", bundle.encoded, x, len(expected)))
    assert got.is_success, got.error
    assert decode(["bytes"], got.output)[0] == expected
