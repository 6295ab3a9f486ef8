"""The L2 predeploys: contracts every L2 genesis holds at fixed addresses (as the OP Stack's).

``L2ToL1MessagePasser`` at ``0x4200…0016`` records withdrawals (docs/bridge.md); its runtime code
is the ``deployed_bytecode`` of its artifact in ``contracts/build`` (built by
``node scripts/build_contracts.mjs``), with empty storage; ``Multicall3`` (contracts/Multicall3.sol)
sits at ``0xcA11…CA11``. The node's genesis (``ai_evm.node.chain.Sequencer``) puts :data:`PREDEPLOYS`
into the state, so the genesis hash commits to this code: every node of one rollup must run the same build.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ai_evm.contracts import ContractArtifactError, artifact

#: The withdrawals predeploy (OP's address).
L2_TO_L1_MESSAGE_PASSER = bytes.fromhex("4200000000000000000000000000000000000016")
#: Multicall3 at its usual address (viem's and ethers' multicall expect it; OP chains preinstall it).
MULTICALL3 = bytes.fromhex("ca11bde05977b3631167028862be2a173976ca11")
#: Predeploy address -> name of the contract artifact whose runtime code lives there.
PREDEPLOY_CONTRACTS: dict[bytes, str] = {L2_TO_L1_MESSAGE_PASSER: "L2ToL1MessagePasser", MULTICALL3: "Multicall3"}


class PredeployMissing(RuntimeError):
    """A predeploy's artifact is missing or malformed (the message says how to rebuild it)."""


@cache
def predeploys() -> dict[bytes, bytes]:
    """Address -> runtime code of every predeploy (read from the artifacts once)."""
    out: dict[bytes, bytes] = {}
    for address, name in PREDEPLOY_CONTRACTS.items():
        try:
            code = artifact(name).deployed_bytecode
        except ContractArtifactError as e:
            raise PredeployMissing(f"predeploy {name} at 0x{address.hex()}: {e}") from None
        if not code:
            raise PredeployMissing(f"predeploy {name} has no runtime code (an abstract contract or interface?)")
        out[address] = code
    return out


def genesis_accounts() -> dict[bytes, dict[str, Any]]:
    """The predeploys as py-evm genesis state entries (no balance, nonce 1 as deployed contracts)."""
    return {a: {"balance": 0, "nonce": 1, "code": code, "storage": {}} for a, code in predeploys().items()}


#: Address -> runtime code of every predeploy (PredeployMissing at import if an artifact is missing).
PREDEPLOYS: dict[bytes, bytes] = predeploys()


__all__ = [
    "L2_TO_L1_MESSAGE_PASSER",
    "MULTICALL3",
    "PREDEPLOYS",
    "PREDEPLOY_CONTRACTS",
    "PredeployMissing",
    "genesis_accounts",
    "predeploys",
]
