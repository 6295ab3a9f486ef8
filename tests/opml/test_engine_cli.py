"""``aievm engine``: what a validator checks on a new machine."""

from __future__ import annotations

from click.testing import CliRunner

from ai_evm.cli import main


def test_engine_reports_native_kernels_threads_and_floats(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from opml import parallel

    monkeypatch.setattr(parallel, "_WORKERS", 3)
    res = CliRunner().invoke(main, ["engine"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("native kernels ")
    assert lines[1].startswith("threads: 3 ")
    assert "deterministic" in lines[2]
