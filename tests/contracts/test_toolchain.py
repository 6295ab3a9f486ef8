"""The npm toolchain: pinned versions, and anvil/cast binaries that run without network access."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ai_evm.contracts import BUILD_DIR, CONTRACTS_DIR

ROOT = CONTRACTS_DIR.parent
PACKAGE = json.loads((ROOT / "package.json").read_text())
BIN = ROOT / "node_modules" / ".bin"


def test_dependencies_are_pinned_exactly() -> None:
    deps = PACKAGE["devDependencies"]
    assert set(deps) == {"solc", "@foundry-rs/anvil", "@foundry-rs/cast", "@foundry-rs/forge", "ethers", "viem"}
    for name, version in deps.items():
        assert version[0].isdigit() and all(part.isdigit() for part in version.split(".")), (name, version)
    lock = json.loads((ROOT / "package-lock.json").read_text())
    for name, version in deps.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, name


def test_artifacts_were_built_by_the_pinned_solc() -> None:
    pinned = PACKAGE["devDependencies"]["solc"]
    for path in BUILD_DIR.glob("*.json"):
        assert json.loads(path.read_text())["compiler"]["version"].startswith(pinned + "+"), path.name


@pytest.mark.parametrize("tool", ["anvil", "cast", "forge"])
def test_foundry_binary_runs(tool: str) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (the npm toolchain needs it)")
    exe = BIN / tool
    assert exe.exists(), f"{exe} is missing: run `make install` (npm ci)"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert PACKAGE["devDependencies"][f"@foundry-rs/{tool}"] in result.stdout
