"""Every engine op through the fraud VM: stepping from state 0 gives exactly the engine's bytes.

The one-node bundles and their hypothesis strategies are those of the engine's differential suite
(``tests/opml/engine_cases.py`` and the ``test_engine_reference*.py`` files); ``engine_cases.also_check``
makes every case that passes engine == reference also run through the VM: full
interpretation (output bytes == engine bytes), fast-forward state == interpreted state at every
step (sampled for long programs), and ``verify_step`` on interpreted witnesses.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from fraud_vm.trace import NodeTrace
from fraud_vm.vm import step_with_witness, verify_step
from opml.bundle import Bundle
from opml.engine import check_input
from opml.ops import BY_NAME

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "opml"))

import engine_cases as cases  # noqa: E402
import test_engine_reference  # noqa: E402,F401  (registers the arithmetic ops' cases)
import test_engine_reference_layout  # noqa: E402,F401  (registers the data-movement ops' cases)

MAX_EXAMPLES = 20


def run_node_through_vm(bundle: Bundle, inputs: Sequence[np.ndarray], rng: random.Random) -> np.ndarray:
    """Interpret node 0 of a one-node bundle; check output, fast-forward and verify_step."""
    env = {i: check_input(s, v)[0] for i, s, v in zip(bundle.inputs, bundle.input_specs(), inputs, strict=True)}
    tr = NodeTrace(bundle, 0, env)
    state, mem = tr.start_state(), tr.memory_at(0)
    n = tr.num_steps
    check_ff = set(range(n + 1)) if n <= 64 else set(rng.sample(range(n + 1), 32))
    check_verify = set(range(n)) if n <= 16 else set(rng.sample(range(n), 8)) | {0, n - 1}
    for k in range(n):
        if k in check_ff:
            assert tr.state_at(k) == state, f"fast-forward state differs at step {k}"
        post, wit = step_with_witness(state, mem)
        if k in check_verify:
            assert verify_step(state.hash(), wit) == post.hash(), f"verify_step disagrees at step {k}"
        state = post
    assert state.status == 1 and state == tr.state_at(n)
    out = mem.region_data(len(mem.regions) - 1)
    want = np.ascontiguousarray(tr.y).tobytes()
    assert out == want, "VM output bytes differ from the engine's"
    assert [o.tobytes() for o in tr.outputs()] == [want]
    return tr.y


def _vm_check(bundle: Bundle, inputs: Sequence[np.ndarray]) -> None:
    """Run on each case after engine == reference (``bundle`` is already canonically re-decoded)."""
    run_node_through_vm(bundle, inputs, random.Random(0))


@pytest.mark.parametrize("op", sorted(BY_NAME))
def test_op_through_vm(op: str) -> None:
    fn = cases.COVERED[op]
    saved = fn._hypothesis_internal_use_settings  # shared with the engine suite: restore it afterwards
    fn._hypothesis_internal_use_settings = settings(saved, max_examples=MAX_EXAMPLES)
    try:
        with cases.also_check(_vm_check):
            fn()
    finally:
        fn._hypothesis_internal_use_settings = saved
