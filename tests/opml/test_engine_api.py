"""run()'s outputs are plain C-ordered arrays the caller owns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import opml

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "encoder"])
def test_outputs_are_c_ordered_and_owned(name: str) -> None:
    bundle = opml.load_bundle(str(MODELS / name / "model.bundle"))
    x = np.load(MODELS / name / "test_x.npy")[:3]
    first = opml.run(bundle, [x])
    for y in first:
        assert y.flags.c_contiguous and y.flags.owndata
        y[...] = 0  # mutating a result must not change the next run
    again = opml.run(bundle, [x])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(again, opml.run(bundle, [x]), strict=True))
    assert any(a.any() for a in again)
