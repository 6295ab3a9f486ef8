"""The Solidity dispute game's libraries and contracts, checked from Python.

- ``LibPosition`` against ``fraud_vm.position`` (differential, shared random seeds): the compiled
  library (through ``LibPositionHarness``) runs in py-evm and must return the same value for every
  function on valid positions, and revert with ``PositionError`` exactly where Python raises.
- ``Errors.sol`` declares every error of ``fraud_vm.errors.ERROR_CLASSES`` under the same name, in
  the same order (``same verdict, same error``).
- Every dispute contract deploys within the EIP-170 limit (24,576 bytes of runtime code).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from eth_utils import to_checksum_address

from ai_evm.contracts import CONTRACTS_DIR, artifact
from fraud_vm import errors as vm_errors
from fraud_vm import position as P

EIP170_LIMIT = 24_576
DISPUTE_CONTRACTS = ["InferenceDisputeGame", "DisputeGameFactory", "LibPositionHarness"]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def lib(prague: Any) -> Any:
    return prague.deploy("LibPositionHarness")


def random_position(rng: random.Random, max_bits: int = 128) -> int:
    """A position with a random bit length (so every depth is likely), occasionally extreme."""
    bits = rng.randint(1, max_bits)
    return (1 << (bits - 1)) | rng.getrandbits(bits - 1) if bits > 1 else 1


def python_result(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or the string "revert" where Python raises PositionError."""
    try:
        return fn(*args)
    except P.PositionError:
        return "revert"


def solidity_result(lib: Any, name: str, *args: Any) -> Any:
    result = lib.call(name, *args)
    if result.ok:
        return result.values[0]
    assert result.error is not None and result.error[0] == "PositionError", (name, args, result)
    return "revert"


CASES: list[tuple[str, Callable[..., Any], Callable[[random.Random], tuple[Any, ...]]]] = [
    ("depth", P.depth, lambda r: (random_position(r),)),
    ("indexAtDepth", P.index_at_depth, lambda r: (random_position(r),)),
    ("left", P.left, lambda r: (random_position(r),)),
    ("right", P.right, lambda r: (random_position(r),)),
    ("parent", P.parent, lambda r: (random_position(r),)),
    ("rightIndex", P.right_index, lambda r: (random_position(r), r.randint(0, 127))),
    ("traceIndex", P.trace_index, lambda r: (random_position(r), r.randint(0, 127))),
    ("traceAncestor", P.trace_ancestor, lambda r: (random_position(r),)),
    ("traceAncestorBounded", P.trace_ancestor_bounded, lambda r: (random_position(r), r.randint(0, 127))),
    ("move", P.move, lambda r: (random_position(r), r.random() < 0.5)),
    ("wrap", P.wrap, lambda r: (r.randint(0, 255), r.getrandbits(r.randint(0, 128)))),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("name", "py", "gen"), CASES, ids=[c[0] for c in CASES])
def test_lib_position_matches_python(lib: Any, seed: int, name: str, py: Callable[..., Any],
                                     gen: Callable[[random.Random], tuple[Any, ...]]) -> None:
    rng = random.Random(f"lib-position-{name}-{seed}")
    for _ in range(40):
        args = gen(rng)
        expected = python_result(py, *args)
        assert solidity_result(lib, name, *args) == expected, (name, args)
    if name == "wrap":
        return
    # edge cases: the root, the deepest positions, the all-ones position
    for p in (1, 2, 3, (1 << 127), (1 << 128) - 1, (1 << 127) - 1):
        args = (p, *gen(rng)[1:])
        assert solidity_result(lib, name, *args) == python_result(py, *args), (name, args)


def test_lib_position_rejects_zero(lib: Any) -> None:
    for name in ("depth", "indexAtDepth", "left", "right", "parent", "traceAncestor"):
        assert solidity_result(lib, name, 0) == "revert", name
    assert solidity_result(lib, "move", 0, True) == "revert"


def test_errors_sol_mirrors_fraud_vm_errors() -> None:
    text = (CONTRACTS_DIR / "dispute" / "lib" / "Errors.sol").read_text()
    declared = re.findall(r"^error (\w+)\(\);", text, re.M)
    mirrored = [n for n in declared if n in vm_errors.ERROR_NAMES]
    assert mirrored == list(vm_errors.ERROR_NAMES), "Errors.sol must declare fraud_vm.errors.ERROR_NAMES in order"
    assert len(set(declared)) == len(declared)
    # the game's ABI carries the referee's errors it raises
    game_errors = artifact("InferenceDisputeGame").error_names()
    for name in ("GameOver", "NotYourTurn", "ClockExpired", "ClockNotExpired", "ParentNotLast", "CannotDefendRoot",
                 "WrongMoveKind", "IncorrectBond", "InvalidClaim", "PreTensorsMismatch", "InputCountMismatch",
                 "InvalidTableProof", "OutputsContradictClaim", "FinalStateMismatch", "NoCredit"):
        assert name in game_errors, name


@pytest.mark.parametrize("name", DISPUTE_CONTRACTS)
def test_dispute_contracts_fit_eip170(name: str) -> None:
    size = len(artifact(name).deployed_bytecode)
    assert 0 < size <= EIP170_LIMIT, f"{name}: {size} bytes of runtime code"


def test_dispute_contracts_deploy_on_prague(prague: Any) -> None:
    # the implementation deploys with any verifier / link addresses (they are only called in games)
    one = "0x" + "11" * 20
    game = prague.deploy("InferenceDisputeGame", one, one, 3 * 24 * 3600, 3 * 3600, 10**18, 11, 10)
    assert game.value("bond", 2) == 121 * 10**16
    assert game.value("CLOCK") == 3 * 24 * 3600
    factory = prague.deploy("DisputeGameFactory", game.address)
    assert to_checksum_address(factory.value("IMPLEMENTATION")) == to_checksum_address(game.address)
