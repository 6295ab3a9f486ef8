"""Fixtures of the node tests: a node process per module with the digits model in its store."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nodeproc import NodeProcess, digits_node  # noqa: E402
from tracing_twins import Twins, twins_on_anvil  # noqa: E402


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A running node (automine) whose store holds models/digits_mlp; ``node.model`` is its address."""
    proc = digits_node(tmp_path_factory.mktemp("node") / "data")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twins]:
    """The tracing tests' node + anvil pair (tracing_twins.py)."""
    yield from twins_on_anvil(tmp_path_factory.mktemp("tracing"))
