"""A rollup deployment: the L1 contracts' addresses, the roles and the derivation parameters.

``aievm rollup deploy`` writes it as JSON (``rollup.json``); the node, batcher, proposer and
validator read it, so every process of one rollup agrees on the same L1 addresses, the same L1
genesis origin and the same derivation rules (docs/rollup.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ai_evm.node.chain import L1Origin

from .derive import RollupConfig

OPTIONAL_FIELDS = ("output_interval", "derivation", "portal")
"""Fields a rollup.json may lack (older files): they take their defaults."""


class RollupConfigError(ValueError):
    """A rollup.json that is missing, unreadable or incomplete (the message names the field)."""


@dataclass(frozen=True)
class RollupDeployment:
    """Everything a rollup process needs to find and follow its L1 contracts."""

    l1_chain_id: int
    l2_chain_id: int
    batcher: str
    proposer: str
    inbox: str
    registry: str
    oracle: str
    disputes: str
    factory: str
    game: str
    verifier: str
    program: str
    phase_link: str
    genesis_l1_number: int
    genesis_l1_hash: str
    genesis_l1_timestamp: int
    output_interval: int = 10
    """L2 blocks between outputs."""
    derivation: dict[str, int] = field(default_factory=lambda: asdict(RollupConfig()))
    portal: str | None = None
    """The bridge's L1 ``Portal`` (deposits, withdrawals; docs/bridge.md); ``None`` in a rollup.json
    written before the bridge existed (such a rollup has no deposits)."""

    @property
    def genesis_origin(self) -> L1Origin:
        return L1Origin(self.genesis_l1_number, bytes.fromhex(self.genesis_l1_hash[2:]), self.genesis_l1_timestamp)

    @property
    def rollup_config(self) -> RollupConfig:
        return RollupConfig(**self.derivation)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> RollupDeployment:
        try:
            raw: Any = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise RollupConfigError(f"cannot read {path}: {e}") from None
        except RecursionError:
            raise RollupConfigError(f"cannot read {path}: JSON nested too deeply") from None
        if not isinstance(raw, dict):
            raise RollupConfigError(f"{path}: expected a JSON object")
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names if n not in raw and n not in OPTIONAL_FIELDS)
        if missing:
            raise RollupConfigError(f"{path}: missing {', '.join(missing)}")
        check_derivation(raw.get("derivation", {}), path)
        check_fields(raw, path)
        try:
            return cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as e:
            raise RollupConfigError(f"{path}: {e}") from None


INT_FIELDS = ("l1_chain_id", "l2_chain_id", "genesis_l1_number", "genesis_l1_timestamp", "output_interval")
ADDRESS_FIELDS = ("batcher", "proposer", "inbox", "registry", "oracle", "disputes", "factory", "game", "verifier",
                  "program", "phase_link", "portal")


def _hex(value: Any, nbytes: int) -> bool:
    if not isinstance(value, str) or len(value) != 2 + 2 * nbytes or value[:2] not in ("0x", "0X"):
        return False
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        return False
    return True


def check_fields(raw: dict[str, Any], path: Path) -> None:
    """The types of a rollup.json's other fields: integers >= 0 (``output_interval`` >= 1), 20-byte hex
    addresses (``portal`` may be null), a 32-byte hex ``genesis_l1_hash``; :class:`RollupConfigError` naming
    the field otherwise."""
    for key in INT_FIELDS:
        if key in raw:
            v = raw[key]
            low = 1 if key == "output_interval" else 0
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v < (1 << 256):
                raise RollupConfigError(f"{path}: {key} must be an integer >= {low}, got {v!r}")
    for key in ADDRESS_FIELDS:
        if key in raw and not (key == "portal" and raw[key] is None) and not _hex(raw[key], 20):
            raise RollupConfigError(f"{path}: {key} must be a 0x-prefixed 20-byte hex address, got {raw[key]!r}")
    if "genesis_l1_hash" in raw and not _hex(raw["genesis_l1_hash"], 32):
        raise RollupConfigError(f"{path}: genesis_l1_hash must be a 0x-prefixed 32-byte hex hash, "
                                f"got {raw['genesis_l1_hash']!r}")


def check_derivation(derivation: Any, path: Path) -> None:
    """The ``derivation`` object of a rollup.json: known parameters (``RollupConfig``), each a positive
    integer (an absent one takes its default); :class:`RollupConfigError` naming the field otherwise."""
    if not isinstance(derivation, dict):
        raise RollupConfigError(f"{path}: derivation must be a JSON object")
    known = {f.name for f in fields(RollupConfig)}
    for key, value in derivation.items():
        if key not in known:
            raise RollupConfigError(f"{path}: derivation.{key} is not a derivation parameter "
                                    f"(known: {', '.join(sorted(known))})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RollupConfigError(f"{path}: derivation.{key} must be a positive integer, got {value!r}")


__all__ = ["RollupConfigError", "RollupDeployment", "check_derivation", "check_fields"]
