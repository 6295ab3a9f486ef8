"""The AI EVM L2 node: persistent chain, transaction pool, Ethereum JSON-RPC, dev accounts.

Modules: :mod:`.db` (LMDB store, one commit per block), :mod:`.chain` (the sequencer),
:mod:`.pool` (admission), :mod:`.index` (per-block records), :mod:`.execution` (eth_call and
eth_estimateGas), :mod:`.filters` (logs), :mod:`.fees`, :mod:`.methods` (the RPC methods),
:mod:`.rpc` (JSON-RPC dispatch), :mod:`.server` (HTTP), :mod:`.limits` (the RPC layer's limits),
:mod:`.snapshot` (lock-free read views of the last commit), :mod:`.vm` (the binding to
:mod:`ai_evm.evm`). ``docs/node.md`` documents the node.

Importing this package asks eth-hash for the ``safe-pysha3`` keccak backend (the project's chosen
keccak; eth-hash would otherwise pick pycryptodome) unless ``ETH_HASH_BACKEND`` says otherwise;
both give identical hashes.
"""

from __future__ import annotations

import os

os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
