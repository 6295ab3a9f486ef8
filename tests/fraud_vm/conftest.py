"""Fixtures of the dispute-game tests: the committed example bundles and one test input each."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
GAME_MODELS = ("digits_mlp", "digits_cnn", "encoder")

# the stand-in VM module lives next to the tests
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def game_models() -> dict[str, tuple[object, np.ndarray]]:
    """name -> (bundle, one-sample input) for every example model, loaded once per session."""
    from opml.bundle import load_bundle

    out = {}
    for name in GAME_MODELS:
        d = ROOT / "models" / name
        out[name] = (load_bundle(str(d / "model.bundle")), np.load(d / "test_x.npy")[:1])
    return out
