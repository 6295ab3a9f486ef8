"""Fixtures: the example models in a memory store and an in-process AI EVM chain over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ai_evm.evm.devchain import DevChain
from opml.bundle import Bundle, load_bundle
from opml.store import MemoryCache

MODELS = Path(__file__).resolve().parents[3] / "models"
EXAMPLES = ("digits_mlp", "digits_cnn", "encoder")


@pytest.fixture(scope="session")
def bundles() -> dict[str, Bundle]:
    return {name: load_bundle(str(MODELS / name / "model.bundle")) for name in EXAMPLES}


@pytest.fixture(scope="session")
def samples() -> dict[str, np.ndarray]:
    return {name: np.load(MODELS / name / "test_x.npy")[:4].astype("<f4") for name in EXAMPLES}


@pytest.fixture(scope="session")
def store(bundles: dict[str, Bundle]) -> MemoryCache:
    s = MemoryCache()
    for b in bundles.values():
        s.put(b)
    return s


@pytest.fixture(scope="module")
def chain(store: MemoryCache) -> DevChain:
    return DevChain(store)

