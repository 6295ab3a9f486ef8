"""Players of the EVM fraud-proof game and a driver that plays a game out.

A :class:`Player` believes one chain: its :class:`~ai_evm.fraudproof.trace.BlockTrace` of every block
``m+1 .. n`` (the honest node's re-execution, or a dishonest proposer's tampered chain). Given a
``view`` (a node's database), its level-2 beliefs are the opened block re-executed (the template and
transactions of the disputed header, whatever its own block was): that is what the honest player
believes about a block it did not build, an invalid one included. Its strategy
is the honest one of ``docs/dispute_game.md`` §6 applied to its own beliefs: attack a claim it
disagrees with, defend one it agrees with, post its own state at the new position, and at a leaf
open the block or step the transaction from the agreed state. Played with true beliefs it never
loses; played with a lie it defends the lie as well as any strategy can (and loses at the leaf
where the lie starts). :class:`RandomPlayer` attacks, defends and claims at random (a griefer).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ai_evm.evm.call import InferenceRecord
from ai_evm.rollup.outputs import Output
from fraud_vm import position as P
from fraud_vm.errors import GameError
from fraud_vm.game import Outcome, Role
from opml.merkle import keccak

from .commitments import decode_header, encode_header
from .game import (
    INVALID_TRANSITION,
    BisectBlocks,
    BisectTxs,
    BlockContext,
    EvmGame,
    Level,
    Move,
    OpenBlock,
    OpenOutput,
    StepTx,
)
from .trace import BlockTrace, ChainView
from .verifier import OpenedTrace, reexecute_block


def output_of(traces: Sequence[BlockTrace]) -> Output:
    """The output a proposer believing ``traces`` (blocks ``m+1 .. n``) posts at block ``n``."""
    last = traces[-1]
    records: list[InferenceRecord] = [r for t in traces for r in t.records]
    return Output(last.number, int(last.header.timestamp), keccak(last.header_rlp), bytes(last.header.state_root),
                  tuple(records))


class Player:
    """A player believing ``traces`` (blocks ``m+1 .. n``, see the module docstring)."""

    def __init__(self, role: Role, traces: Sequence[BlockTrace], view: ChainView | None = None,
                 transactions: Mapping[bytes, tuple[bytes, ...]] | None = None,
                 prover: Callable[[BlockContext, int], Any] | None = None) -> None:
        if not traces:
            raise ValueError("a player needs the blocks it believes")
        self.role = role
        self.blocks = {t.number: t for t in traces}
        self.view = view
        #: Transactions of blocks it did not build, by transactions root (what L1's batches show).
        self.transactions = dict(transactions or {})
        self._opened: tuple[BlockContext, OpenedTrace] | None = None
        #: Builds the step witness of transaction ``j`` of an opened block (None: no witness).
        self.prover = prover

    def opened(self, game: EvmGame) -> OpenedTrace | None:
        """The opened block re-executed on this player's view (None without a view)."""
        if self.view is None or game.block is None:
            return None
        if self._opened is None or self._opened[0] is not game.block:
            self._opened = (game.block, reexecute_block(self.view, game.block))
        return self._opened[1]

    # -------------------------------------------------------------------------- beliefs

    def level1_state(self, game: EvmGame, position: int) -> bytes:
        """The block claim this player believes at a level-1 position."""
        return self.blocks[game.block_at(position)].claim

    def level2_state(self, game: EvmGame, position: int) -> bytes:
        """The intermediate state (or, from the seal leaf on, the block claim) this player believes."""
        assert game.block is not None
        t = P.trace_index(position, game.bisection.max_depth)
        opened = self.opened(game)
        if opened is not None:
            return opened.after_leaf(t)
        trace = self.blocks[game.block.number]
        return trace.states[t + 1].hash if t < len(trace.transactions) else trace.claim

    def believes(self, game: EvmGame, position: int) -> bytes:
        if game.level == Level.BLOCKS:
            return self.level1_state(game, position)
        return self.level2_state(game, position)

    # -------------------------------------------------------------------------- moves

    def respond(self, game: EvmGame) -> Move | None:
        """This player's answer to the last claim, or None if it agrees with the root claim of a level."""
        if game.level == Level.OPENING:
            return OpenOutput(self.blocks[game.disputed_number].header_rlp)
        b = game.bisection
        is_attack = b.last_hash != self.believes(game, b.last)
        if not is_attack and b.last == 1:
            return None
        return self.move(game, is_attack)

    def move(self, game: EvmGame, is_attack: bool) -> Move:
        """The move answering the last claim with an attack or a defense, from this player's beliefs."""
        b = game.bisection
        if P.depth(b.last) < b.max_depth:
            position = P.move(b.last, is_attack)
            if game.level == Level.BLOCKS:
                trace = self.blocks[game.block_at(position)]
                return BisectBlocks(b.last, is_attack, trace.header_rlp, trace.record_count, trace.record_fault)
            return BisectTxs(b.last, is_attack, self.level2_state(game, position))
        interval = b.last if is_attack else b.last | 1
        lo, hi = (b.lo_hash, b.last_hash) if is_attack else (b.last_hash, b.hi_hash)
        if game.level == Level.BLOCKS:
            i = P.index_at_depth(interval)
            if i >= game.length or lo not in game.published or hi not in game.published:
                return OpenBlock(b.last, is_attack)
            (parent, parent_count, parent_fault), (header, count, fault) = game.published[lo], game.published[hi]
            trace = self.blocks[game.agreed_number + i + 1]
            root = bytes(decode_header(header).transaction_root)
            raws = self.transactions.get(root, trace.raw_transactions)
            return OpenBlock(b.last, is_attack, parent, parent_count, header, count, raws, parent_fault, fault)
        assert game.block is not None
        j = P.index_at_depth(interval)
        if j > len(game.block.transactions) or lo == INVALID_TRANSITION:
            return StepTx(b.last, is_attack)
        opened = self.opened(game)
        states = opened.states if opened is not None else self.blocks[game.block.number].states
        witness = self.prover(game.block, j) if self.prover is not None and j < len(game.block.transactions) else None
        return StepTx(b.last, is_attack, states[j].encode(), witness)


class RandomPlayer(Player):
    """Attacks or defends at random and claims at random (its own state, or a fake one)."""

    def __init__(self, role: Role, traces: Sequence[BlockTrace], seed: int) -> None:
        super().__init__(role, traces)
        self.rng = random.Random(seed)

    def respond(self, game: EvmGame) -> Move | None:
        b = game.bisection
        is_attack = b.last == 1 or self.rng.random() < 0.5
        mv = self.move(game, is_attack)
        if self.rng.random() < 0.5:
            if isinstance(mv, BisectTxs):
                mv = BisectTxs(mv.parent, mv.is_attack, self.rng.randbytes(32))
            elif isinstance(mv, BisectBlocks):
                header = self.blocks[game.block_at(P.move(b.last, is_attack))].header
                fake = header.copy(gas_used=header.gas_used + self.rng.randrange(1, 1000))
                mv = BisectBlocks(mv.parent, mv.is_attack, encode_header(fake), mv.record_count, mv.record_fault)
        return mv


def play_out(game: EvmGame, players: dict[Role, Player], start: int, step_s: int = 60,
             max_moves: int = 1000, refused: list[tuple[Role, GameError]] | None = None) -> EvmGame:
    """Let the players move in turn from ``start`` until the game ends. A player that has nothing to
    dispute, or whose move is rejected, lets its clock run out (anyone then calls ``claim_timeout``).
    A rejected move raises for a :class:`Player` unless ``refused`` is given (then it is appended
    there: a liar that cannot make a valid move, e.g. a step from its own state when the referee
    opened the other player's block); a :class:`RandomPlayer`'s rejected moves are expected."""
    now = start
    for _ in range(max_moves):
        if game.outcome != Outcome.IN_PROGRESS:
            return game
        now += step_s
        mover = game.mover
        mv = players[mover].respond(game)
        if mv is not None:
            try:
                game.play(mover, mv, now)
                continue
            except GameError as e:
                if not isinstance(players[mover], RandomPlayer):
                    if refused is None:
                        raise
                    refused.append((mover, e))
        now = game.deadline()
        game.claim_timeout(now)
    raise RuntimeError(f"the game did not end within {max_moves} moves")


__all__ = ["Player", "RandomPlayer", "output_of", "play_out"]
