"""Derandomized Hypothesis runs whose examples do not depend on the modules imported before them.

``settings(derandomize=True)`` seeds the generator from the test itself, but Hypothesis (6.131 on;
6.170 here) also draws, with probability 5% per integer, float, bytes or string choice, a constant
collected from the source of every *local* module then in ``sys.modules``
(``hypothesis.internal.conjecture.providers._get_local_constants``). Which modules are loaded
depends on the test files collected and run before, so one derandomized test saw different
examples in different runs: ``test_vm_exec_int.py``'s LN_OUT coverage check (some draw must
succeed) failed after ``test_vm_verifier.py`` and ``test_vm_program.py`` had run and passed on its
own. ``no_local_constants`` empties that pool (the built-in constants stay) while a test runs, so
its examples are a function of the test alone.

The pool is a private part of Hypothesis: if a release moves it, ``no_local_constants`` fails
with ``HypothesisInternalsMoved`` rather than letting the order dependence come back silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


class HypothesisInternalsMoved(RuntimeError):
    """The Hypothesis release lacks the local-constants pool this module pins."""


@pytest.fixture(autouse=True)
def no_local_constants(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Autouse fixture (import it into a test module): no module-derived constants in draws."""
    try:
        from hypothesis.internal.conjecture import providers
        empty: Any = providers.Constants()
        cache = providers.CONSTANTS_CACHE
        getattr(providers, "_get_local_constants")  # noqa: B009 (checked to exist)
    except (ImportError, AttributeError) as e:
        raise HypothesisInternalsMoved(f"pin the local constants again for this Hypothesis release: {e}") from None
    cache.cache.clear()  # its entries hold the pools seen so far
    monkeypatch.setattr(providers, "_get_local_constants", lambda: empty)
    yield
    cache.cache.clear()
