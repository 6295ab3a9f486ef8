"""Every node of every example model through the fraud VM.

Small nodes are interpreted from state 0 to the end (every state == the fast-forward state, output
bytes == the engine's); big nodes are checked at random steps: a few interpreted steps from the
fast-forwarded state match the fast-forward states after them, and ``verify_step`` accepts the
witnesses. The final state of every node commits to the engine's output and links to it through
``node_final_check``.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from fraud_vm.tensors import commit_tensor
from fraud_vm.trace import NodeTrace, node_final_check
from fraud_vm.vm import step_with_witness, verify_step
from opml.bundle import load_bundle
from opml.engine import get_plan

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"digits_mlp": 2, "digits_cnn": 1, "encoder": 1}  # name -> batch
FULL_LIMIT = 300  # interpret nodes with at most this many steps completely
WINDOW = 3


def _traces(name: str, batch: int) -> list[NodeTrace]:
    b = load_bundle(str(ROOT / "models" / name / "model.bundle"))
    x = np.load(ROOT / "models" / name / "test_x.npy")[:batch]
    plan = get_plan(b)
    env = {b.inputs[0]: x}
    out = []
    for j, (node, kernel) in enumerate(zip(b.nodes, plan.kernels, strict=True)):
        out.append(NodeTrace(b, j, dict(env)))
        env[node.outputs[0]] = kernel([env[i] if i in env else b.tensors[i].array() for i in node.inputs])
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_nodes_through_vm(name: str) -> None:
    rng = random.Random(name)
    for tr in _traces(name, MODELS[name]):
        n = tr.num_steps
        if n <= FULL_LIMIT:
            states = list(tr.interpret())
            assert len(states) == n + 1
            for k in sorted(rng.sample(range(n + 1), min(n + 1, 24))):
                assert states[k] == tr.state_at(k), f"node {tr.node_index}: fast-forward differs at step {k}"
            final = states[-1]
        else:
            for k in {0, n - 1, *rng.sample(range(n), 3)}:
                state, mem = tr.state_at(k), tr.memory_at(k)
                for i in range(k, min(k + WINDOW, n)):
                    pre = state
                    state, wit = step_with_witness(state, mem)
                    assert state == tr.state_at(i + 1), f"node {tr.node_index}: step {i} != fast-forward"
                    assert verify_step(pre.hash(), wit) == state.hash()
            final = tr.state_at(n)
        assert final.status == 1 and final.step == n
        assert [o.tobytes() for o in tr.outputs()] == [np.ascontiguousarray(tr.y).tobytes()]
        root = commit_tensor(tr.y, tr.context.output.dtype)
        assert tr.output_roots() == [root]
        assert node_final_check(final, tr.context, root, tr.final_region_proof())
        assert not node_final_check(final, tr.context, bytes(32), tr.final_region_proof())
        if n > 1:
            assert not node_final_check(tr.state_at(n - 1), tr.context, root, tr.final_region_proof())


def test_steps_per_node_are_bounded() -> None:
    """The example models stay small enough to bisect in a few rounds (largest node < 2^17 steps)."""
    worst = max(tr.num_steps for name in MODELS for tr in _traces(name, 1))
    assert 1 <= worst < 1 << 17
