"""Run a script in a fresh interpreter with extra environment variables; return its last two lines (the
native tests print ``native.describe()`` and then a hash of everything they computed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def child_hash(script: str, env: dict[str, str], timeout: int = 300) -> tuple[str, str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent)], env=full,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    return lines[-2], lines[-1]
