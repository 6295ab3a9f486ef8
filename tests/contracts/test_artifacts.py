"""The committed contract artifacts: up to date with the sources, well formed, complete ABIs.

``node scripts/build_contracts.mjs --check`` recompiles every contract with the pinned solc-js
and compares with ``contracts/build``; a copy of the tree checks that stale, missing and extra
artifacts are all reported (on a small tree of its own, to stay fast).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ai_evm.contracts import BUILD_DIR, CONTRACTS_DIR, ContractArtifactError, artifact, available

ROOT = CONTRACTS_DIR.parent
SCRIPT = ROOT / "scripts" / "build_contracts.mjs"
NODE = shutil.which("node")
HAS_SOLC = (ROOT / "node_modules" / "solc" / "package.json").is_file()
needs_node = pytest.mark.skipif(
    NODE is None or not HAS_SOLC, reason="node and node_modules/solc are required (run `make install`)"
)

EXPECTED = {
    "AILib": (set(), set(), {"InferenceFailed", "InlineInferenceFailed", "OutputSizeMismatch", "Float32OutOfRange"}),
    "AIContract": ({"inference"}, {"Inference"}, {"InferenceFailed", "OutputSizeMismatch"}),
    "DigitsClassifier": (
        {"classify", "predict", "encodeImage", "lastPrediction", "lastCaller", "model"},
        {"Classified"},
        {"InferenceFailed", "InvalidImageLength", "InvalidPixel"},
    ),
    "AxonumStyleCaller": ({"infer", "inferAndStore", "mergeInput", "lastOutput"}, set(), set()),
    "AILibHarness": (
        {"inference", "inferenceInline", "encodeFloat32FromScaled", "decodeFloat32ToScaled", "argmaxFloat32"},
        set(),
        {"InferenceFailed"},
    ),
}


def run_build(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, str(root / "scripts" / "build_contracts.mjs"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_node
def test_committed_artifacts_are_up_to_date() -> None:
    result = run_build(ROOT, "--check")
    assert result.returncode == 0, result.stderr + result.stdout


def small_tree(root: Path) -> Path:
    """A copy of the build script with two tiny contracts (fast to compile); returns the build dir."""
    (root / "scripts").mkdir()
    shutil.copy(SCRIPT, root / "scripts" / SCRIPT.name)
    (root / "node_modules").symlink_to(ROOT / "node_modules")
    (root / "contracts" / "lib").mkdir(parents=True)
    (root / "contracts" / "lib" / "Math.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.28;\n"
        "/// @notice m\nlibrary Math {\n/// @notice t\nfunction twice(uint256 x) internal pure returns (uint256) "
        "{ return 2 * x; }\n}\n/// @notice i\ninterface IOne { function one() external view returns (uint256); }\n"
    )
    (root / "contracts" / "One.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.28;\nimport {Math} from './lib/Math.sol';\n"
        "/// @notice o\ncontract One { /// @notice f\nfunction one() external pure returns (uint256) "
        "{ return Math.twice(1); } }\n"
    )
    return root / "contracts" / "build"


@needs_node
def test_build_writes_and_check_reports_stale_missing_and_extra(tmp_path: Path) -> None:
    build = small_tree(tmp_path)
    result = run_build(tmp_path)
    assert result.returncode == 0, result.stderr
    # Libraries get an artifact, interfaces do not.
    assert sorted(p.name for p in build.glob("*.json")) == ["Math.json", "One.json"]
    one = json.loads((build / "One.json").read_text())
    assert one["sourceName"] == "contracts/One.sol" and one["bytecode"].startswith("0x60")
    first = {p.name: p.read_bytes() for p in build.glob("*.json")}

    (build / "One.json").write_text((build / "One.json").read_text().replace('"one"', '"two"'))
    (build / "Math.json").unlink()
    (build / "Removed.json").write_text("{}\n")
    result = run_build(tmp_path, "--check")
    assert result.returncode == 1
    assert "stale: contracts/build/One.json" in result.stderr
    assert "missing: contracts/build/Math.json" in result.stderr
    assert "extra (no such contract): contracts/build/Removed.json" in result.stderr
    assert "node scripts/build_contracts.mjs" in result.stderr

    # Rebuilding restores exactly the first output and removes the extra file.
    assert run_build(tmp_path).returncode == 0
    assert {p.name: p.read_bytes() for p in build.glob("*.json")} == first

    # A source edit changes the sourceHash of every artifact that depends on that file only.
    math_sol = tmp_path / "contracts" / "lib" / "Math.sol"
    math_sol.write_text(math_sol.read_text() + "// comment\n")
    result = run_build(tmp_path, "--check")
    assert result.returncode == 1
    assert "stale: contracts/build/One.json" in result.stderr and "stale: contracts/build/Math.json" in result.stderr


@needs_node
def test_compile_errors_and_bad_usage_exit_2(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / SCRIPT.name)
    (tmp_path / "contracts").mkdir()
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    (tmp_path / "contracts" / "Broken.sol").write_text("pragma solidity ^0.8.28;\ncontract Broken { uint x = ; }\n")
    result = run_build(tmp_path)
    assert result.returncode == 2
    assert "contracts/Broken.sol" in result.stderr and "Error" in result.stderr
    assert not (tmp_path / "contracts" / "build").exists()  # nothing half-written
    assert run_build(tmp_path, "--frobnicate").returncode == 2


def test_artifacts_are_deterministic_json_with_expected_abi() -> None:
    assert sorted(EXPECTED) == [n for n in available() if n in EXPECTED]
    for name, (functions, events, errors) in EXPECTED.items():
        path = BUILD_DIR / f"{name}.json"
        text = path.read_text()
        data = json.loads(text)
        assert text == json.dumps(data, indent=2, sort_keys=True) + "\n", f"{name}: keys not sorted"
        assert data["compiler"]["evmVersion"] == "prague"
        assert data["compiler"]["optimizer"] == {"enabled": True, "runs": 200}
        assert data["sourceHash"].startswith("0x") and len(data["sourceHash"]) == 66
        art = artifact(name)
        assert art.source_name.startswith("contracts/") and art.source_name.endswith(".sol")
        assert art.bytecode and art.deployed_bytecode
        assert functions <= art.function_names(), name
        assert events <= art.event_names(), name
        assert errors <= art.error_names(), name


def test_inference_event_keeps_axonum_signature() -> None:
    event = next(e for e in artifact("AIContract").abi if e.get("name") == "Inference")
    assert [(p["name"], p["type"]) for p in event["inputs"]] == [
        ("model_address", "bytes32"),
        ("input_data", "bytes"),
        ("output_size", "uint256"),
        ("output", "bytes"),
    ]


def test_precompile_addresses_are_literal_in_bytecode() -> None:
    # PUSH1 0xa1 / PUSH1 0xa0 feeding STATICCALL: the library calls the precompiles directly.
    code = artifact("AILibHarness").deployed_bytecode
    assert b"\x60\xa1" in code and b"\x60\xa0" in code
    assert b"\x60\xa1" in artifact("AIContract").deployed_bytecode


def test_missing_or_bad_artifact_names_are_clear_errors() -> None:
    with pytest.raises(ContractArtifactError, match="build_contracts.mjs"):
        artifact("NoSuchContract")
    with pytest.raises(ContractArtifactError, match="not a Solidity contract name"):
        artifact("../etc/passwd")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("NotJson", "{", "unreadable artifact"),
        ("NotObject", "[]", "not a JSON object"),
        ("WrongName", '{"contractName": "Other"}', "contractName is 'Other'"),
        ("NoAbi", '{"contractName": "NoAbi", "abi": 3}', "'abi' is not a list"),
        (
            "BadHex",
            '{"contractName": "BadHex", "abi": [], "sourceName": "x.sol", "bytecode": "0xzz", '
            '"deployedBytecode": "0x"}',
            "'bytecode' is not 0x-prefixed hex",
        ),
    ],
)
def test_malformed_artifacts_are_named_errors(tmp_path: Path, monkeypatch, name: str, text: str, message: str) -> None:
    import ai_evm.contracts as contracts

    monkeypatch.setattr(contracts, "BUILD_DIR", tmp_path)
    (tmp_path / f"{name}.json").write_text(text)
    with pytest.raises(ContractArtifactError, match=message):
        contracts.artifact(name)
