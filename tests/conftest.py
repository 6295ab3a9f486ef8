"""Shared fixtures: the example models of ``models/``, each converted once per test session.

With ``pytest -n 2`` every xdist worker is its own session, so each worker converts at most once
(about 0.6 s for all three models).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# pytest (rootdir-relative "prepend" imports) puts this file's directory on sys.path to import it.
# With ``tests/`` on sys.path, ``tests/opml`` and ``tests/models`` (no __init__.py) would be found as
# namespace packages named ``opml`` / ``models`` and shadow the real ones whenever the repository root
# is not also on sys.path (e.g. ``.venv/bin/pytest``). Nothing here needs it, so take it off again.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p == "" or Path(p).resolve() != Path(_HERE)]
MODELS_DIR = ROOT / "models"
EXAMPLE_NAMES = ("digits_mlp", "digits_cnn", "encoder")


@dataclass(frozen=True)
class Example:
    """One example model: its files, data and converted bundle."""

    name: str
    onnx_path: Path
    calib: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    bundle: object  # opml.Bundle (imported lazily so collection stays cheap)


def load_example(name: str) -> Example:
    from opml.convert import convert

    d = MODELS_DIR / name
    calib = np.load(d / "calib.npy")
    return Example(
        name=name,
        onnx_path=d / "model.onnx",
        calib=calib,
        test_x=np.load(d / "test_x.npy"),
        test_y=np.load(d / "test_y.npy"),
        bundle=convert(d / "model.onnx", calib, name=name),
    )


@pytest.fixture(scope="session")
def examples() -> dict[str, Example]:
    """name -> Example, for every example model (converted once per session)."""
    return {name: load_example(name) for name in EXAMPLE_NAMES}
