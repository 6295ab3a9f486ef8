"""Compiled Solidity contracts of the AI EVM: load the generated artifacts in ``contracts/build``.

The artifacts are produced by ``node scripts/build_contracts.mjs`` (solc-js, evmVersion prague,
optimizer 200 runs), committed, and checked for staleness by the test suite; this module only
reads them. Each file ``contracts/build/<Name>.json`` holds ``contractName``, ``sourceName``,
``abi``, ``bytecode`` and ``deployedBytecode`` (0x-hex), ``compiler`` and ``sourceHash``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

#: The repository's Solidity sources.
CONTRACTS_DIR: Path = Path(__file__).resolve().parent.parent / "contracts"
#: Where the build writes one JSON artifact per contract.
BUILD_DIR: Path = CONTRACTS_DIR / "build"
#: The command that regenerates the artifacts.
BUILD_COMMAND = "node scripts/build_contracts.mjs (or: make contracts)"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEX = re.compile(r"^0x([0-9a-fA-F]{2})*$")


class ContractArtifactError(Exception):
    """A contract artifact is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: its ABI and creation/runtime bytecode."""

    name: str
    #: ABI entries as solc wrote them (shared by every caller of the cached artifact: do not mutate).
    abi: tuple[dict[str, Any], ...] = field(hash=False)
    bytecode: bytes
    deployed_bytecode: bytes
    source_name: str

    def function_names(self) -> frozenset[str]:
        """Names of the contract's ABI functions."""
        return frozenset(entry["name"] for entry in self.abi if entry.get("type") == "function")

    def event_names(self) -> frozenset[str]:
        """Names of the contract's ABI events."""
        return frozenset(entry["name"] for entry in self.abi if entry.get("type") == "event")

    def error_names(self) -> frozenset[str]:
        """Names of the custom errors in the contract's ABI."""
        return frozenset(entry["name"] for entry in self.abi if entry.get("type") == "error")


def artifact_path(name: str) -> Path:
    """Path of the artifact of contract ``name``; :class:`ContractArtifactError` on a bad name."""
    if not _NAME.match(name):
        raise ContractArtifactError(f"{name!r} is not a Solidity contract name")
    return BUILD_DIR / f"{name}.json"


def available() -> list[str]:
    """Names of the contracts that have an artifact, sorted."""
    if not BUILD_DIR.is_dir():
        return []
    return sorted(p.stem for p in BUILD_DIR.glob("*.json"))


def _hex_field(data: dict[str, Any], key: str, path: Path) -> bytes:
    value = data.get(key)
    if not isinstance(value, str) or not _HEX.match(value):
        raise ContractArtifactError(f"{path}: field {key!r} is not 0x-prefixed hex; rebuild with {BUILD_COMMAND}")
    return bytes.fromhex(value[2:])


@cache
def artifact(name: str) -> Artifact:
    """Load ``contracts/build/<name>.json``.

    Raises :class:`ContractArtifactError` naming the build command when the file is missing,
    and naming the file and field when it is not a well-formed artifact.
    """
    path = artifact_path(name)
    if not path.is_file():
        known = ", ".join(available()) or "none"
        raise ContractArtifactError(
            f"no artifact for contract {name!r} at {path} (available: {known}); "
            f"build the contracts with: {BUILD_COMMAND}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ContractArtifactError(f"{path}: unreadable artifact ({e}); rebuild with {BUILD_COMMAND}") from None
    if not isinstance(data, dict):
        raise ContractArtifactError(f"{path}: artifact is not a JSON object; rebuild with {BUILD_COMMAND}")
    if data.get("contractName") != name:
        raise ContractArtifactError(
            f"{path}: contractName is {data.get('contractName')!r}, expected {name!r}; rebuild with {BUILD_COMMAND}"
        )
    abi = data.get("abi")
    if not isinstance(abi, list) or not all(isinstance(e, dict) for e in abi):
        raise ContractArtifactError(f"{path}: field 'abi' is not a list of objects; rebuild with {BUILD_COMMAND}")
    source = data.get("sourceName")
    if not isinstance(source, str):
        raise ContractArtifactError(f"{path}: field 'sourceName' is missing; rebuild with {BUILD_COMMAND}")
    return Artifact(
        name=name,
        abi=tuple(abi),
        bytecode=_hex_field(data, "bytecode", path),
        deployed_bytecode=_hex_field(data, "deployedBytecode", path),
        source_name=source,
    )
