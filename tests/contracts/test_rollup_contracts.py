"""The rollup's L1 contracts build, fit EIP-170 and carry the documented interface."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ai_evm.contracts import artifact
from ai_evm.evm.call import InferenceRecord
from ai_evm.evm.records import inference_root

EIP170_LIMIT = 24_576
ROLLUP_CONTRACTS = ["BatchInbox", "ModelRegistry", "OutputOracle", "InferenceRecordDisputes"]


@pytest.mark.parametrize("name", ROLLUP_CONTRACTS)
def test_rollup_contracts_fit_eip170(name: str) -> None:
    size = len(artifact(name).deployed_bytecode)
    assert 0 < size <= EIP170_LIMIT, f"{name}: {size} bytes of runtime code"


def test_output_oracle_interface() -> None:
    assert {"propose", "finalize", "finalizeNext", "withdraw", "openDispute", "closeDispute", "outputRoot",
            "hasRecord", "setDisputeAuthority"} <= artifact("OutputOracle").function_names()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 9])
def test_output_oracle_inference_root_matches_python(prague: Any, n: int) -> None:
    """The root OutputOracle computes from published records is ai_evm.evm.records.inference_root."""
    oracle = oracle_contract(prague)
    rng = random.Random(n)
    records = [InferenceRecord(rng.randbytes(32), rng.randbytes(32), rng.randbytes(32), rng.randrange(10**9),
                               rng.randbytes(32), rng.randrange(5)) for _ in range(n)]
    data = b"".join(r.encode() for r in records)
    assert all(len(r.encode()) == 192 for r in records)
    assert oracle.value("inferenceRootOf", data) == inference_root(records)


_ORACLE: dict[int, Any] = {}


def oracle_contract(prague: Any) -> Any:
    if id(prague) not in _ORACLE:
        _ORACLE[id(prague)] = prague.deploy("OutputOracle", "0x" + "11" * 20, 10**18, 3600)
    return _ORACLE[id(prague)]
