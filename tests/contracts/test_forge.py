"""The forge suites (``contracts/dispute/test``, ``contracts/rollup/test``, ``contracts/bridge/test``), run
as part of pytest.

``forge test --offline`` compiles with solc-js through ``scripts/solc_shim.mjs`` (``foundry.toml``
names it), so the suite needs nothing beyond ``make install`` (npm ``@foundry-rs/forge``, ``solc``)
and no network. The shim's own command-line contract is tested here too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ai_evm.contracts import CONTRACTS_DIR

ROOT = CONTRACTS_DIR.parent
#: The native binary npm @foundry-rs/forge installs for this platform (forge-linux-amd64,
#: forge-darwin-arm64...). Not node_modules/.bin/forge: that node wrapper exits 0 whatever forge's
#: exit status (it does not pass the child's status on), so a failing suite would pass by status.
NATIVE = sorted((ROOT / "node_modules" / "@foundry-rs").glob("forge-*/bin/forge"))
FORGE = NATIVE[0] if NATIVE else ROOT / "node_modules" / ".bin" / "forge"
SHIM = ROOT / "scripts" / "solc_shim.mjs"
NODE = shutil.which("node")
needs_forge = pytest.mark.skipif(
    NODE is None or not FORGE.exists(), reason="node and node_modules/.bin/forge are required (run `make install`)"
)
FAILING_TEST = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;
contract FailingTest {
    function test_fails() public pure { require(1 == 2, "deliberately failing"); }
    function test_passes() public pure {}
}
"""


def run_forge(env: dict[str, str] | None = None) -> str:
    """``forge test`` (with ``FOUNDRY_*`` overrides in ``env``); returns its output, asserting success
    (exit status 0 and no ``[FAIL`` line, so that even the npm wrapper's status could not hide one)."""
    result = subprocess.run(
        [str(FORGE), "test", "--offline", "--use", str(SHIM), "--color", "never"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-8000:]
    assert "[FAIL" not in out
    return out


def passed(out: str) -> int:
    return sum(int(n) for n in re.findall(r"(\d+) passed; 0 failed", out))


@needs_forge
def test_forge_suite_passes() -> None:
    out = run_forge()
    assert passed(out) >= 20, out[-4000:]  # the suite ran (not an empty selection)


@needs_forge
def test_rollup_forge_suite_passes() -> None:
    """The rollup's L1 contracts (``contracts/rollup``) with their own source/test/out directories,
    so the two suites can run at once (pytest-xdist) without sharing forge's cache."""
    out = run_forge({"FOUNDRY_SRC": "contracts/rollup", "FOUNDRY_TEST": "contracts/rollup/test",
                     "FOUNDRY_OUT": "build/forge/rollup-out", "FOUNDRY_CACHE_PATH": "build/forge/rollup-cache"})
    assert passed(out) >= 14, out[-4000:]


@needs_forge
def test_bridge_forge_suite_passes() -> None:
    """The bridge's contracts (``contracts/bridge``: Portal, message passer, RLP/MPT proofs), with their
    own source/test/out directories as the rollup suite."""
    out = run_forge({"FOUNDRY_SRC": "contracts/bridge", "FOUNDRY_TEST": "contracts/bridge/test",
                     "FOUNDRY_OUT": "build/forge/bridge-out", "FOUNDRY_CACHE_PATH": "build/forge/bridge-cache"})
    assert passed(out) >= 38, out[-4000:]


@needs_forge
def test_a_failing_forge_test_fails_the_run(tmp_path: Path) -> None:
    """A suite with one failing test: forge's exit status is 1 (the binary used here, as
    ``make forge-test``'s), and :func:`run_forge` fails."""
    (tmp_path / "src").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "src" / "Empty.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\ncontract E {}\n"
    )
    (tmp_path / "test" / "Failing.t.sol").write_text(FAILING_TEST)
    env = {"FOUNDRY_SRC": str(tmp_path / "src"), "FOUNDRY_TEST": str(tmp_path / "test"),
           "FOUNDRY_OUT": str(tmp_path / "out"), "FOUNDRY_CACHE_PATH": str(tmp_path / "cache")}  # fmt: skip
    with pytest.raises(AssertionError, match="deliberately failing"):
        run_forge(env)
    if NATIVE:
        result = subprocess.run([str(FORGE), "test", "--offline", "--use", str(SHIM), "--color", "never"], cwd=ROOT,
                                capture_output=True, text=True, timeout=600, env={**os.environ, **env})  # fmt: skip
        assert result.returncode == 1 and "1 failing test" in result.stdout + result.stderr


@needs_forge
def test_shim_answers_version_and_standard_json() -> None:
    assert NODE is not None
    version = subprocess.run([NODE, str(SHIM), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and re.search(r"^Version: 0\.8\.\d+\+commit\.", version.stdout, re.M)
    source = (
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\n"
        "contract A { function f() external pure returns (uint) { return 7; } }\n"
    )
    request = {
        "language": "Solidity",
        "sources": {"A.sol": {"content": source}},
        "settings": {"outputSelection": {"*": {"*": ["evm.deployedBytecode.object"]}}},
    }
    out = subprocess.run(
        [NODE, str(SHIM), "--standard-json", "--allow-paths", str(ROOT)],
        input=json.dumps(request), capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["contracts"]["A.sol"]["A"]["evm"]["deployedBytecode"]["object"]
    bad = subprocess.run([NODE, str(SHIM), "--standard-json"], input="{", capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not JSON" in bad.stderr
    usage = subprocess.run([NODE, str(SHIM), "--bin", "x.sol"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage" in usage.stderr
