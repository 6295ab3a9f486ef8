"""The EVM state-transition fraud proof, levels 1 and 2 (``docs/evm_fraud_proof.md``).

An L2 output is disputed by bisecting over L2 blocks (level 1), then over the transactions of the
one disputed block (level 2), down to one transaction (or the block's seal); level 3, the EVM steps
of that transaction with a one-step proof on L1, sits behind
:class:`~ai_evm.fraudproof.game.TransactionVerifier`.

- :mod:`.commitments`: the block claim and the per-transaction intermediate state (:class:`TxState`).
- :mod:`.trace`: re-executing a block transaction by transaction with the node's own VM.
- :mod:`.moves`: the moves, the block context level 3 receives, the transaction-verifier interface.
- :mod:`.game`: the referee (checks, clocks, bonds, named errors).
- :mod:`.verifier`: a transaction verifier by re-execution (the result level 3 must reach).
- :mod:`.players`: honest, dishonest and random players and the driver.
"""

from .commitments import TxState, block_claim, context_hash, seal, start_state
from .game import (
    BisectBlocks,
    BisectTxs,
    BlockContext,
    EvmGame,
    Level,
    OpenBlock,
    OpenOutput,
    StepTx,
    TransactionVerifier,
    create_game,
    open_game,
)
from .players import Player, RandomPlayer, output_of, play_out
from .trace import BlockTrace, ChainView, honest_chain, tampered_chain, trace_block
from .verifier import ReexecutionVerifier

__all__ = [
    "BisectBlocks", "BisectTxs", "BlockContext", "BlockTrace", "ChainView", "EvmGame", "Level", "OpenBlock",
    "OpenOutput", "Player", "RandomPlayer", "ReexecutionVerifier", "StepTx", "TransactionVerifier", "TxState",
    "block_claim", "context_hash", "create_game", "honest_chain", "open_game", "output_of", "play_out", "seal",
    "start_state", "tampered_chain", "trace_block",
]
