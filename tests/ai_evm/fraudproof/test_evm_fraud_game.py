"""The EVM fraud-proof game, levels 1 and 2, on the small L2 chain of :mod:`evm_fraud_chain`.

An honest output survives every challenger; a proposer that changed one balance after transaction
``j`` of block ``k`` is bisected to exactly ``(k, j)`` and loses; a lie about a result field only is
caught at the block's seal, a lie about an input field at the block's opening; malformed moves are
refused with named errors and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from eth.abc import StateAPI
from eth_typing import Address
from evm_fraud_chain import LAST, SINK, L2Chain, sign

from ai_evm.fraudproof import (
    BisectBlocks,
    BisectTxs,
    BlockContext,
    BlockTrace,
    EvmGame,
    Level,
    OpenBlock,
    OpenOutput,
    Player,
    RandomPlayer,
    ReexecutionVerifier,
    StepTx,
    create_game,
    honest_chain,
    open_game,
    output_of,
    play_out,
    tampered_chain,
)
from ai_evm.fraudproof.commitments import context_hash, encode_header, seal
from ai_evm.fraudproof.errors import (
    AgreedClaimMismatch,
    DisputedClaimMismatch,
    InvalidRecordCount,
    MalformedHeader,
    OutputMismatch,
    PreStateMismatch,
    TransactionsMismatch,
    UnknownPreState,
    WrongBlockNumber,
)
from ai_evm.fraudproof.trace import decode_transactions, transactions_root
from ai_evm.rollup.outputs import Output
from fraud_vm import position as P
from fraud_vm.errors import (
    CannotDefendRoot,
    ClockExpired,
    ClockNotExpired,
    GameOver,
    IncorrectBond,
    MalformedMove,
    NotYourTurn,
    ParentNotLast,
    TimeNotMonotonic,
    WrongMoveKind,
)
from fraud_vm.game import Outcome, Role, Rules
from opml.merkle import keccak

T0 = 1_800_000_000
RULES = Rules(clock_s=1000, clock_extension_s=100, claim_bond=1000)
#: (block, transaction) pairs whose post-state a liar changes: transfers, the deposit (2, 0), the
#: contract creation (2, 1), a contract call (3, 0), an inference call (6, 0), the last transaction
#: of the last block, which makes two inference calls (6, 2).
LIES = [(1, 0), (1, 2), (2, 0), (2, 1), (3, 0), (6, 0), (6, 2)]


def bump(at: int) -> Callable[[int, StateAPI], None]:
    """A tamper hook: one more wei for the sink after transaction ``at``."""

    def hook(i: int, state: StateAPI) -> None:
        if i == at:
            state.delta_balance(Address(SINK), 1)

    return hook


def new_game(l2: L2Chain, claimed: list[BlockTrace], output: Output | None = None) -> EvmGame:
    """A game on the output ``claimed`` implies at the last block (or ``output``), from the genesis output."""
    genesis = l2.view.header(0)
    agreed = Output(0, int(genesis.timestamp), bytes(genesis.hash), bytes(genesis.state_root), ())
    view = l2.fresh_view()
    return open_game(agreed, encode_header(genesis), output if output is not None else output_of(claimed),
                     claimed[-1].header_rlp, RULES, ReexecutionVerifier(view), view.expected_header, T0)


def liar(l2: L2Chain, k: int, j: int) -> list[BlockTrace]:
    return tampered_chain(l2.fresh_view(), 1, LAST, k, bump(j))


def advance(game: EvmGame, players: dict[Role, Player], until: Callable[[EvmGame], bool], now: int = T0) -> int:
    """Play honest-strategy moves until ``until(game)``; returns the time of the last move."""
    while not until(game):
        assert game.outcome == Outcome.IN_PROGRESS
        now += 10
        mv = players[game.mover].respond(game)
        assert mv is not None
        game.play(game.mover, mv, now)
    return now


def at_leaf(level: Level) -> Callable[[EvmGame], bool]:
    return lambda g: g.level == level and P.depth(g.bisection.last) == g.bisection.max_depth


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "j"), LIES)
def test_lying_proposer_is_bisected_to_the_transaction(l2: L2Chain, k: int, j: int) -> None:
    lie = liar(l2, k, j)
    assert [t.claim == h.claim for t, h in zip(lie, l2.honest, strict=True)] == [n < k for n in range(1, LAST + 1)]
    game = new_game(l2, lie)
    honest = Player(Role.CHALLENGER, l2.honest, l2.fresh_view())  # level 2: re-executes the opened block
    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, lie), Role.CHALLENGER: honest}, T0)
    assert game.outcome == Outcome.CHALLENGER_WINS
    assert game.pinned == (k, j), game.reason
    assert game.reason.startswith(f"transaction {j} of block {k}: the disputed post-state is ")
    # one bisection per level, then the opening and the step
    depth1, depth2 = (LAST - 1).bit_length(), game.bisection.max_depth
    assert game.moves == depth1 + depth2 + 2
    assert game.payouts() == {Role.CHALLENGER: sum(game.bonds.values()), Role.CLAIMANT: 0}


@pytest.mark.parametrize(("k", "j"), LIES)
def test_honest_output_survives_a_lying_challenger(l2: L2Chain, k: int, j: int) -> None:
    game = new_game(l2, l2.honest)
    lie = liar(l2, k, j)
    honest = Player(Role.CLAIMANT, l2.honest, l2.fresh_view())
    play_out(game, {Role.CLAIMANT: honest, Role.CHALLENGER: Player(Role.CHALLENGER, lie)}, T0)
    assert game.outcome == Outcome.CLAIMANT_WINS
    assert game.pinned == (k, j) and game.reason.startswith(f"transaction {j} of block {k}:")


@pytest.mark.parametrize("seed", range(8))
def test_honest_output_survives_random_challengers(l2: L2Chain, seed: int) -> None:
    game = new_game(l2, l2.honest)
    players = {Role.CLAIMANT: Player(Role.CLAIMANT, l2.honest, l2.fresh_view()),
               Role.CHALLENGER: RandomPlayer(Role.CHALLENGER, l2.honest, seed)}
    play_out(game, players, T0)
    assert game.outcome == Outcome.CLAIMANT_WINS, game.reason


@pytest.mark.parametrize("seed", range(4))
def test_honest_challenger_beats_a_random_liar(l2: L2Chain, seed: int) -> None:
    lie = liar(l2, 3, 1)
    game = new_game(l2, lie)
    players = {Role.CLAIMANT: RandomPlayer(Role.CLAIMANT, lie, seed),
               Role.CHALLENGER: Player(Role.CHALLENGER, l2.honest)}
    play_out(game, players, T0)
    assert game.outcome == Outcome.CHALLENGER_WINS, game.reason


def test_an_agreeing_challenger_lets_the_output_stand(l2: L2Chain) -> None:
    game = new_game(l2, l2.honest)
    assert Player(Role.CHALLENGER, l2.honest).respond(game) is None
    with pytest.raises(ClockNotExpired):
        game.claim_timeout(game.deadline() - 1)
    game.claim_timeout(game.deadline())
    assert game.outcome == Outcome.CLAIMANT_WINS and game.payouts()[Role.CLAIMANT] == RULES.claim_bond
    with pytest.raises(GameOver):
        game.claim_timeout(game.deadline())


def test_a_lie_about_a_result_field_is_caught_at_the_seal(l2: L2Chain) -> None:
    lie = tampered_chain(l2.fresh_view(), 1, LAST, 3, sealed=lambda h: h.copy(gas_used=h.gas_used + 1))
    game = new_game(l2, lie)
    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, lie), Role.CHALLENGER: Player(Role.CHALLENGER, l2.honest)},
             T0)
    assert game.outcome == Outcome.CHALLENGER_WINS
    assert game.pinned == (3, 3) and game.reason.startswith("the seal of block 3:")


def test_a_lie_about_the_empty_block_is_caught_at_its_seal(l2: L2Chain) -> None:
    lie = tampered_chain(l2.fresh_view(), 1, LAST, 4, sealed=lambda h: h.copy(bloom=1))
    game = new_game(l2, lie)
    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, lie), Role.CHALLENGER: Player(Role.CHALLENGER, l2.honest)},
             T0)
    assert game.outcome == Outcome.CHALLENGER_WINS and game.pinned == (4, 0)


def test_a_header_that_does_not_follow_its_parent_loses_at_the_opening(l2: L2Chain) -> None:
    lie = tampered_chain(l2.fresh_view(), 1, LAST, 2, inputs=lambda h: h.copy(base_fee_per_gas=h.base_fee_per_gas + 1))
    game = new_game(l2, lie)
    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, lie), Role.CHALLENGER: Player(Role.CHALLENGER, l2.honest)},
             T0)
    assert game.outcome == Outcome.CHALLENGER_WINS and game.pinned == (2, -1)
    assert game.reason == "block 2's header fields base_fee_per_gas do not follow its parent"


@pytest.mark.parametrize(("index", "field", "tx"), [(1, "input_hash", 2), (2, "model", 2), (0, "output_hash", 0)])
def test_a_record_not_made_by_its_call_is_caught_at_its_transaction(l2: L2Chain, index: int, field: str,
                                                                   tx: int) -> None:
    # the proposer's state is right, one record of its output is not the call's (no input preimage
    # exists for a wrong input hash: the inference game cannot take it up, docs/rollup.md)
    honest = output_of(l2.honest)
    records = list(honest.records)
    records[index] = replace(records[index], **{field: keccak(getattr(records[index], field))[:len(
        getattr(records[index], field))]})
    bad = replace(honest, records=tuple(records))
    assert bad.state_root == honest.state_root and bad.output_root != honest.output_root
    checked = honest_chain(l2.fresh_view(), 1, LAST, output_records=bad.records)  # the challenger's view
    assert [t.record_fault for t in checked] == [False] * 5 + [True]
    game = new_game(l2, l2.honest, bad)
    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, l2.honest), Role.CHALLENGER: Player(Role.CHALLENGER, checked)},
             T0)
    assert game.outcome == Outcome.CHALLENGER_WINS and game.pinned == (6, tx), game.reason
    # against the right records the same challenger agrees: nothing to dispute
    assert Player(Role.CHALLENGER, honest_chain(l2.fresh_view(), 1, LAST, honest.records)).respond(
        new_game(l2, l2.honest)) is None


def test_a_record_no_call_made_is_caught(l2: L2Chain) -> None:
    honest = output_of(l2.honest)
    bad = replace(honest, records=(*honest.records, honest.records[-1]))  # one record more than the calls made
    checked = honest_chain(l2.fresh_view(), 1, LAST, output_records=bad.records)
    assert checked[-1].claim == l2.honest[-1].claim  # every record the calls made is right
    # a proposer whose own block 6 does not consume the extra record: its root is not its block 6
    game = new_game(l2, l2.honest, bad)
    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, l2.honest), Role.CHALLENGER: Player(Role.CHALLENGER, checked)},
             T0)
    assert game.outcome == Outcome.CHALLENGER_WINS and game.pinned == (LAST, -1), game.reason
    # a proposer that counts it in the last transaction of block 6: caught at that transaction
    last = l2.honest[-1]
    counted = replace(last, states=(*last.states[:-1], replace(last.states[-1], record_count=4)))
    lie = [*l2.honest[:-1], counted]
    game = new_game(l2, lie, bad)
    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, lie), Role.CHALLENGER: Player(Role.CHALLENGER, checked)}, T0)
    assert game.outcome == Outcome.CHALLENGER_WINS and game.pinned == (LAST, 2), game.reason


def invalid_block(l2: L2Chain, at: int) -> tuple[list[BlockTrace], dict[bytes, tuple[bytes, ...]]]:
    """A liar whose block 6 holds a transaction that cannot run (a nonce gap) at index ``at``, which it
    claims did nothing but use 21,000 gas; its transactions by root (what L1's batch would show)."""
    last = l2.honest[-1]
    bad = decode_transactions([sign(l2.seq.config.accounts[0].private_key, 99, SINK)])[0]
    txs = (*last.transactions[:at], bad, *last.transactions[at:])
    inputs = last.header.copy(transaction_root=transactions_root(txs))
    states = list(last.states[:at + 1])
    for i in range(at, len(txs)):  # the liar's states: the honest ones, shifted, after a no-op transaction
        states.append(replace(last.states[i], tx_index=i + 1, gas_used=last.states[i].gas_used + 21_000))
    states = [replace(st, context_hash=context_hash(inputs)) for st in states]
    header = seal(inputs, states[-1])
    lie = [*l2.honest[:-1], BlockTrace(last.parent, header, txs, tuple(states), last.records)]
    return lie, {bytes(header.transaction_root): lie[-1].raw_transactions}


@pytest.mark.parametrize("at", [1, 3])
def test_a_block_with_a_transaction_that_cannot_run_loses_at_it(l2: L2Chain, at: int) -> None:
    lie, known = invalid_block(l2, at)
    game = new_game(l2, lie)
    honest = Player(Role.CHALLENGER, l2.honest, l2.fresh_view(), known)
    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, lie), Role.CHALLENGER: honest}, T0)
    assert game.block is not None and len(game.block.transactions) == 4
    assert game.outcome == Outcome.CHALLENGER_WINS and game.pinned == (LAST, at), game.reason


@pytest.mark.parametrize("seed", [0, 1, 5, 17])
def test_a_random_liar_with_an_invalid_block_loses(l2: L2Chain, seed: int) -> None:
    lie, known = invalid_block(l2, 1)
    game = new_game(l2, lie)
    players = {Role.CLAIMANT: RandomPlayer(Role.CLAIMANT, lie, seed),
               Role.CHALLENGER: Player(Role.CHALLENGER, l2.honest, l2.fresh_view(), known)}
    play_out(game, players, T0)
    assert game.outcome == Outcome.CHALLENGER_WINS, game.reason
    if seed == 5:  # this liar agreed that transaction 1 cannot run, then disputed a later leaf
        assert game.reason == "leaf 4 of block 6 after an invalid transaction: the disputed state is right"
    if seed == 17:  # this one ended in block 6's padding
        assert game.reason.startswith("padding leaf 5 of block 6")


@pytest.mark.parametrize(("m", "k", "j"), [(2, 5, 0), (3, 6, 2), (5, 6, 2), (5, 6, 0)])
def test_a_game_from_a_later_output(l2: L2Chain, m: int, k: int, j: int) -> None:
    # the previous output at block m is the anchor; records are counted from block m + 1
    anchor = l2.view.header(m)
    agreed = Output(m, int(anchor.timestamp), bytes(anchor.hash), bytes(anchor.state_root), ())
    honest = honest_chain(l2.fresh_view(), m + 1, LAST)
    lie = tampered_chain(l2.fresh_view(), m + 1, LAST, k, bump(j))
    view = l2.fresh_view()
    game = open_game(agreed, encode_header(anchor), output_of(lie), lie[-1].header_rlp, RULES,
                     ReexecutionVerifier(view), view.expected_header, T0)
    assert game.bisection.max_depth == (LAST - m - 1).bit_length()  # 0 for one block: OpenBlock comes first
    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, lie),
                    Role.CHALLENGER: Player(Role.CHALLENGER, honest, l2.fresh_view())}, T0)
    assert game.outcome == Outcome.CHALLENGER_WINS and game.pinned == (k, j), game.reason
    assert game.moves == game.bisection.max_depth + (LAST - m - 1).bit_length() + 2


def test_the_reexecution_verifier(l2: L2Chain) -> None:
    trace = l2.honest[2]  # block 3: two contract calls and a transfer
    block = BlockContext(trace.parent, trace.header, 0, 0, trace.raw_transactions, ())
    verifier = ReexecutionVerifier(l2.fresh_view())
    assert [verifier.verify_transaction(block, trace.states[j], j, None) for j in range(3)] == [
        s.hash for s in trace.states[1:]]
    with pytest.raises(UnknownPreState):  # the state before transaction 1 is not the state before 2
        verifier.verify_transaction(block, trace.states[1], 2, None)
    with pytest.raises(UnknownPreState):
        verifier.verify_transaction(block, trace.states[3], 3, None)
    # against an output whose records it does not make, an inference transaction sets the fault
    six = l2.honest[5]
    records = output_of(l2.honest).records
    wrong = (records[0], records[2], records[1])
    ctx = BlockContext(six.parent, six.header, 0, 3, six.raw_transactions, wrong)
    post = verifier.verify_transaction(ctx, six.states[2], 2, None)
    assert post == replace(six.states[3], record_fault=True).hash != six.states[3].hash


def test_the_output_must_open_to_its_header(l2: L2Chain) -> None:
    genesis, head = l2.view.header(0), l2.view.header(LAST)
    agreed = Output(0, int(genesis.timestamp), bytes(genesis.hash), bytes(genesis.state_root), ())
    good = output_of(l2.honest)
    view = l2.fresh_view()

    def opening(out: Output, header: bytes, base: Output = agreed) -> EvmGame:
        return open_game(base, encode_header(genesis), out, header, RULES, ReexecutionVerifier(view),
                         view.expected_header, T0)

    assert opening(good, encode_header(head)).bisection.hi_hash == l2.honest[-1].claim
    with pytest.raises(OutputMismatch, match="state root"):
        opening(replace(good, state_root=bytes(32)), encode_header(head))
    with pytest.raises(OutputMismatch, match="block hash"):
        opening(good, encode_header(l2.view.header(LAST - 1)))
    with pytest.raises(OutputMismatch, match="not after"):
        opening(agreed, encode_header(genesis))
    with pytest.raises(MalformedHeader):
        opening(good, b"\xc0")


@pytest.mark.parametrize("liar", [Role.CLAIMANT, Role.CHALLENGER])
def test_a_block_not_after_its_parent_loses(l2: L2Chain, liar: Role) -> None:
    before = int(l2.view.header(2).timestamp)
    lie = tampered_chain(l2.fresh_view(), 1, LAST, 3, inputs=lambda h: h.copy(timestamp=before))
    game = new_game(l2, lie if liar == Role.CLAIMANT else l2.honest)
    refused: list[tuple[Role, Exception]] = []
    play_out(game, {liar: Player(liar, lie), liar.other: Player(liar.other, l2.honest, l2.fresh_view())},
             T0, refused=refused)  # type: ignore[arg-type]
    assert game.winner == liar.other and game.pinned is not None and game.pinned[0] == 3, game.reason
    if game.reason.startswith("block 3"):  # the liar's header was opened
        assert game.reason == "block 3's timestamp is not after its parent's" and not refused
    else:  # the honest block 3 was opened: the liar cannot step from its own states
        assert game.reason == f"{liar.name.lower()} ran out of time"
        assert [(r, type(e).__name__) for r, e in refused] == [(liar, "PreStateMismatch")]


def test_the_proposer_opens_its_output_or_loses(l2: L2Chain) -> None:
    genesis = l2.view.header(0)
    agreed = Output(0, int(genesis.timestamp), bytes(genesis.hash), bytes(genesis.state_root), ())
    view = l2.fresh_view()
    game = create_game(agreed, encode_header(genesis), output_of(l2.honest), RULES, ReexecutionVerifier(view),
                       view.expected_header, T0)
    assert game.level == Level.OPENING and game.mover == Role.CLAIMANT
    h6 = l2.honest[-1]
    with pytest.raises(NotYourTurn):
        game.play(Role.CHALLENGER, BisectBlocks(1, True, h6.header_rlp, 3), T0 + 1)
    with pytest.raises(WrongMoveKind):
        game.play(Role.CLAIMANT, BisectBlocks(1, True, h6.header_rlp, 3), T0 + 1)
    with pytest.raises(OutputMismatch, match="block hash"):
        game.play(Role.CLAIMANT, OpenOutput(l2.honest[-2].header_rlp), T0 + 1)
    with pytest.raises(MalformedHeader):
        game.play(Role.CLAIMANT, OpenOutput(b"\xc1\x80"), T0 + 1)
    with pytest.raises(IncorrectBond):
        game.play(Role.CLAIMANT, OpenOutput(h6.header_rlp), T0 + 1, bond=1)
    assert game.level == Level.OPENING and game.clock_used[Role.CLAIMANT] == 0
    silent = replace(game, bisection=replace(game.bisection), clock_used=dict(game.clock_used), log=[])
    game.play(Role.CLAIMANT, OpenOutput(h6.header_rlp), T0 + 7)
    assert (game.level, game.mover, game.bisection.last_hash) == (Level.BLOCKS, Role.CHALLENGER, h6.claim)
    assert game.clock_used[Role.CLAIMANT] == 7 and game.moves == 0
    with pytest.raises(WrongMoveKind):
        game.play(Role.CHALLENGER, OpenOutput(h6.header_rlp), T0 + 8)
    # a proposer that does not open its output loses on time
    silent.claim_timeout(silent.deadline())
    assert silent.outcome == Outcome.CHALLENGER_WINS and silent.reason == "claimant ran out of time"


def test_malformed_moves_are_refused_and_change_nothing(l2: L2Chain) -> None:
    lie = liar(l2, 3, 1)
    game = new_game(l2, lie)
    players: dict[Role, Player] = {Role.CLAIMANT: Player(Role.CLAIMANT, lie),
                                   Role.CHALLENGER: Player(Role.CHALLENGER, l2.honest)}
    honest = l2.honest

    def refused(error: type[Exception], mv: object, role: Role | None = None, now: int | None = None,
                bond: int | None = None) -> None:
        before = (game.moves, game.bisection.last, game.bisection.last_hash, game.level, dict(game.clock_used))
        with pytest.raises(error):
            game.play(role if role is not None else game.mover, mv, now if now is not None else game.now + 1,
                      bond)  # type: ignore[arg-type]
        assert (game.moves, game.bisection.last, game.bisection.last_hash, game.level, game.clock_used) == before

    # level 1: the challenger's first move attacks the root, with block 4's claim (position 2 of depth 3)
    h4 = honest[3]
    refused(NotYourTurn, BisectBlocks(1, True, h4.header_rlp, h4.record_count), role=Role.CLAIMANT)
    refused(CannotDefendRoot, BisectBlocks(1, False, h4.header_rlp, h4.record_count))
    refused(ParentNotLast, BisectBlocks(2, True, h4.header_rlp, h4.record_count))
    refused(WrongMoveKind, BisectTxs(1, True, bytes(32)))
    refused(WrongMoveKind, OpenBlock(1, True))
    refused(MalformedHeader, BisectBlocks(1, True, b"\x01\x02", 0))
    refused(WrongBlockNumber, BisectBlocks(1, True, honest[2].header_rlp, 0))
    refused(InvalidRecordCount, BisectBlocks(1, True, h4.header_rlp, -1))
    refused(InvalidRecordCount, BisectBlocks(1, True, h4.header_rlp, 4))  # the output has 3 records
    refused(MalformedMove, BisectBlocks(1, True, h4.header_rlp, 0, 1))  # type: ignore[arg-type]
    refused(IncorrectBond, BisectBlocks(1, True, h4.header_rlp, 0), bond=RULES.bond(1) - 1)
    refused(TimeNotMonotonic, BisectBlocks(1, True, h4.header_rlp, 0), now=T0 - 1)
    refused(ClockExpired, BisectBlocks(1, True, h4.header_rlp, 0), now=game.deadline() + 1)
    game.play(Role.CHALLENGER, BisectBlocks(1, True, h4.header_rlp, 0), T0 + 5, RULES.bond(1))

    # the level-1 leaf: block 3 is disputed, block 2 agreed
    now = advance(game, players, at_leaf(Level.BLOCKS), T0 + 5)
    mv = players[game.mover].respond(game)
    assert isinstance(mv, OpenBlock) and game.agreed_number + P.index_at_depth(
        game.bisection.last if mv.is_attack else game.bisection.last | 1) + 1 == 3
    h3 = honest[2]
    refused(WrongMoveKind, BisectBlocks(mv.parent, mv.is_attack, h3.header_rlp, 0))
    refused(AgreedClaimMismatch, replace(mv, parent_header=honest[0].header_rlp))
    wrong = lie[2].header_rlp if mv.header == h3.header_rlp else h3.header_rlp  # the other player's block 3
    refused(DisputedClaimMismatch, replace(mv, header=wrong))
    refused(TransactionsMismatch, replace(mv, transactions=mv.transactions[:-1]))
    refused(MalformedMove, replace(mv, transactions=(b"\x02\xff",)))
    refused(MalformedHeader, replace(mv, header=b"not rlp"))
    game.play(game.mover, mv, now + 1)
    assert game.level == Level.TRANSACTIONS and game.block is not None and game.block.number == 3
    # level 2's root is the disputed block-3 claim; the player disputing it attacks it next
    assert game.bisection.last == 1 and game.mover == game.bisection.last_owner.other

    # level 2: 3 transactions and the seal (depth 2); bisect to the leaf, then step
    refused(MalformedMove, BisectTxs(1, True, bytes(31)))
    refused(WrongMoveKind, StepTx(1, True))
    now = advance(game, players, at_leaf(Level.TRANSACTIONS), now + 1)
    mv = players[game.mover].respond(game)
    assert isinstance(mv, StepTx)
    other = honest[2].states[0].encode() if mv.pre != honest[2].states[0].encode() else honest[2].states[2].encode()
    refused(PreStateMismatch, replace(mv, pre=other))
    refused(MalformedMove, replace(mv, pre=b"short"))
    refused(WrongMoveKind, BisectTxs(mv.parent, mv.is_attack, bytes(32)))
    game.play(game.mover, mv, now + 1)
    assert game.outcome == Outcome.CHALLENGER_WINS and game.pinned == (3, 1)
    refused(GameOver, mv)


def test_clock_extension_and_timeout_in_level_two(l2: L2Chain) -> None:
    lie = liar(l2, 5, 0)
    game = new_game(l2, lie)
    players: dict[Role, Player] = {Role.CLAIMANT: Player(Role.CLAIMANT, lie),
                                   Role.CHALLENGER: Player(Role.CHALLENGER, l2.honest)}
    # the challenger spends most of its clock on its first move: the claimant's answer leaves it the extension
    first = players[Role.CHALLENGER].respond(game)
    assert first is not None
    game.play(Role.CHALLENGER, first, T0 + 950)
    second = players[Role.CLAIMANT].respond(game)
    assert second is not None
    game.play(Role.CLAIMANT, second, T0 + 960)
    assert game.deadline() == T0 + 960 + RULES.clock_extension_s
    advance(game, players, lambda g: g.level == Level.TRANSACTIONS and g.mover == Role.CLAIMANT, T0 + 960)
    # the liar stops answering in level 2: it loses on time, the pot goes to the challenger
    deadline = game.deadline()
    with pytest.raises(ClockNotExpired):
        game.claim_timeout(deadline - 1)
    game.claim_timeout(deadline)
    assert game.outcome == Outcome.CHALLENGER_WINS and game.reason == "claimant ran out of time"
    assert game.payouts()[Role.CHALLENGER] == sum(game.bonds.values()) > RULES.claim_bond


def test_every_transaction_of_the_chain_is_pinned(l2: L2Chain) -> None:
    # a liar at each transaction of every block (16 in all): the bisection ends exactly there
    pinned = []
    for trace in l2.honest:
        for j in range(len(trace.transactions)):
            lie = liar(l2, trace.number, j)
            game = new_game(l2, lie)
            play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, lie),
                            Role.CHALLENGER: Player(Role.CHALLENGER, l2.honest, l2.fresh_view())}, T0)
            assert game.winner == Role.CHALLENGER, game.reason
            pinned.append(game.pinned)
    assert pinned == [(t.number, j) for t in l2.honest for j in range(len(t.transactions))] and len(pinned) == 16
