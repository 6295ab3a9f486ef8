"""The committed example bundles equal a fresh conversion (conversion is deterministic; never stale)."""

from __future__ import annotations

import pytest

from models.build_bundles import EXAMPLES, ROOT, build


@pytest.mark.parametrize("name", EXAMPLES)
def test_committed_bundle_is_fresh(name: str) -> None:
    assert (ROOT / name / "model.bundle").read_bytes() == build(name), (
        f"models/{name}/model.bundle is stale: run `.venv/bin/python models/build_bundles.py`"
    )
