"""The bridge between L1 and the rollup (docs/bridge.md): withdrawals from L2 to L1.

- :mod:`.withdrawal`: a withdrawal as the L2 ``L2ToL1MessagePasser`` records it, its hash and the
  storage slot the L1 ``Portal`` proves.
- :mod:`.proofs`: EIP-1186 account and storage proofs (``eth_getProof``) built from a py-evm state
  database, and an independent check of them with py-trie's proof verification.
- :mod:`.client`: the ``aievm bridge withdraw|prove|finalize|status`` steps over web3.
"""

from .proofs import AccountProof, ProofError, StorageProof, account_proof, verify_account_proof
from .withdrawal import MESSAGE_PASSER, Withdrawal, WithdrawalError, storage_slot, withdrawal_hash

__all__ = [
    "MESSAGE_PASSER",
    "AccountProof",
    "ProofError",
    "StorageProof",
    "Withdrawal",
    "WithdrawalError",
    "account_proof",
    "storage_slot",
    "verify_account_proof",
    "withdrawal_hash",
]
