"""The rollup's L1 contracts build, fit EIP-170 and carry the documented interface."""

from __future__ import annotations

import pytest

from ai_evm.contracts import artifact

EIP170_LIMIT = 24_576
ROLLUP_CONTRACTS = ["BatchInbox", "ModelRegistry", "OutputOracle", "InferenceRecordDisputes"]


@pytest.mark.parametrize("name", ROLLUP_CONTRACTS)
def test_rollup_contracts_fit_eip170(name: str) -> None:
    size = len(artifact(name).deployed_bytecode)
    assert 0 < size <= EIP170_LIMIT, f"{name}: {size} bytes of runtime code"


def test_output_oracle_interface() -> None:
    assert {"propose", "finalize", "finalizeNext", "withdraw", "openDispute", "closeDispute", "outputRoot",
            "hasRecord", "setDisputeAuthority"} <= artifact("OutputOracle").function_names()
