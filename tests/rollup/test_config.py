"""rollup.json (ai_evm.rollup.config): the derivation parameters are checked on load, each error named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai_evm.rollup.config import RollupConfigError, RollupDeployment
from ai_evm.rollup.derive import RollupConfig

A = "0x" + "11" * 20


def write(path: Path, derivation: object) -> Path:
    d = RollupDeployment(1, 2, A, A, A, A, A, A, A, A, A, A, A, 5, "0x" + "01" * 32, 100)
    d.save(path)
    raw = json.loads(path.read_text())
    raw["derivation"] = derivation
    path.write_text(json.dumps(raw))
    return path


def test_derivation_parameters_load_with_defaults_for_absent_ones(tmp_path: Path) -> None:
    d = RollupDeployment.load(write(tmp_path / "r.json", {"seq_window": 8}))
    assert d.rollup_config == RollupConfig(seq_window=8)


@pytest.mark.parametrize(("derivation", "message"), [
    ([], "derivation must be a JSON object"),
    ({"seq_windw": 8}, "derivation.seq_windw is not a derivation parameter"),
    ({"seq_window": 0}, "derivation.seq_window must be a positive integer, got 0"),
    ({"channel_timeout": "50"}, "derivation.channel_timeout must be a positive integer, got '50'"),
    ({"max_sequencer_drift": True}, "derivation.max_sequencer_drift must be a positive integer, got True"),
])
def test_bad_derivation_parameters_are_named(tmp_path: Path, derivation: object, message: str) -> None:
    with pytest.raises(RollupConfigError, match=message):
        RollupDeployment.load(write(tmp_path / "r.json", derivation))
