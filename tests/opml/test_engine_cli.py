"""``aievm engine``: what a validator checks on a new machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ai_evm.cli import main
from opml import native

ROOT = Path(__file__).resolve().parents[2]
needs_native = pytest.mark.skipif(not native.available() and not os.environ.get("CI"), reason=native.describe())


def test_engine_reports_native_kernels_threads_and_floats(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from opml import parallel

    monkeypatch.setattr(parallel, "_WORKERS", 3)
    res = CliRunner().invoke(main, ["engine"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines.pop(0).startswith("native kernels ")
    if native.available():
        assert lines.pop(0).startswith(f"instruction sets: found {', '.join(native.cpu_isas())}; "
                                       f"using {native.isa_name()} ")
    assert lines[0].startswith("threads: 3 ")
    assert "deterministic" in lines[1]


def _aievm_engine(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", "from ai_evm.cli import main; main()", "engine"], env=full,
                          capture_output=True, text=True, timeout=120)


@needs_native
def test_engine_reports_a_forced_instruction_set() -> None:
    proc = _aievm_engine({"OPML_NATIVE_ISA": "generic"})
    assert proc.returncode == 0, proc.stderr
    assert "native kernels loaded (generic)" in proc.stdout
    assert "using generic (forced by OPML_NATIVE_ISA)" in proc.stdout


@needs_native
def test_engine_refuses_an_instruction_set_the_cpu_lacks() -> None:
    """Every aievm command stops at start-up with one line naming the missing CPU feature."""
    lacking = [name for name in native.ISAS if name not in native.cpu_isas()]
    name = lacking[0] if lacking else "avx-9000"
    proc = _aievm_engine({"OPML_NATIVE_ISA": name})
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: OPML_NATIVE_ISA={name if lacking else repr(name)}"), proc.stderr
    assert "Traceback" not in proc.stderr
