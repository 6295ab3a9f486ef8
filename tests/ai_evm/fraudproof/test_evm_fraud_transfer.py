"""The one-step proof of a value transfer: the post-state from the witness alone equals re-execution,
forged witnesses are refused with named errors, invalid transfers give the invalid state, and games
on transfer-only blocks are decided by it instead of re-execution."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from evm_fraud_chain import CHAIN_ID, LAST, SINK, L2Chain, sign
from test_evm_fraud_game import bump

from ai_evm.evm.deposit import deposit_source_hash, new_deposit
from ai_evm.fraudproof import BlockContext, Player, ReexecutionVerifier, open_game, output_of, play_out, tampered_chain
from ai_evm.fraudproof.commitments import context_hash, encode_header, template
from ai_evm.fraudproof.errors import UnknownPreState
from ai_evm.fraudproof.moves import INVALID_TRANSITION
from ai_evm.fraudproof.trace import BlockTrace, ChainView, decode_transactions, honest_chain, transactions_root
from ai_evm.fraudproof.transfer import (
    ContextMismatch,
    InvalidProof,
    StepVerifiers,
    TransferVerifier,
    TransferWitness,
    UnsupportedTransaction,
    prove_step,
    transfer_witness,
    verify_transfer,
)
from ai_evm.node.chain import NodeConfig, Sequencer
from ai_evm.node.origin import L1Origin
from ai_evm.node.vm import make_resolver
from ai_evm.rollup.outputs import Output
from fraud_vm.game import Outcome, Role, Rules
from opml.merkle import keccak

T0 = 1_800_000_000
RULES = Rules(clock_s=1000, clock_extension_s=100, claim_bond=1000)
#: (block, index) of the plain transfers of the test chain; the others run code or are deposits
TRANSFERS = [(1, 0), (1, 1), (1, 2), (2, 0), (2, 2), (3, 2), (5, 0), (5, 1), (6, 1)]


def context(l2: L2Chain, trace: BlockTrace) -> BlockContext:
    records = output_of(l2.honest).records
    return BlockContext(trace.parent, trace.header, trace.states[0].record_count, trace.record_count,
                        trace.raw_transactions, records)


def test_every_transfer_verifies_from_its_witness(l2: L2Chain) -> None:
    proven = []
    for trace in l2.honest:
        block = context(l2, trace)
        for j in range(len(trace.transactions)):
            w = transfer_witness(l2.fresh_view(), block, j)
            if (trace.number, j) not in TRANSFERS:
                with pytest.raises(UnsupportedTransaction):
                    verify_transfer(trace.states[j], j, w, CHAIN_ID)
                continue
            assert verify_transfer(trace.states[j], j, w, CHAIN_ID) == trace.states[j + 1].hash
            assert 1_000 < w.size < 4_000
            proven.append((trace.number, j))
    assert proven == TRANSFERS


def test_forged_witnesses_are_refused(l2: L2Chain) -> None:
    trace = l2.honest[0]
    block = context(l2, trace)
    pre, w = trace.states[1], transfer_witness(l2.fresh_view(), block, 1)
    other = transfer_witness(l2.fresh_view(), block, 2)
    with pytest.raises(ContextMismatch):
        verify_transfer(pre, 1, replace(w, template=encode_header(template(l2.honest[1].header))), CHAIN_ID)
    with pytest.raises(UnknownPreState):
        verify_transfer(trace.states[0], 1, w, CHAIN_ID)
    with pytest.raises(InvalidProof, match="not leaf 1"):
        verify_transfer(pre, 1, replace(w, transaction=other.transaction), CHAIN_ID)
    with pytest.raises(InvalidProof):
        verify_transfer(pre, 1, replace(w, tx_proof=w.tx_proof[:-1]), CHAIN_ID)
    with pytest.raises(InvalidProof):
        verify_transfer(pre, 1, replace(w, state_proof=w.state_proof[:1]), CHAIN_ID)
    with pytest.raises(InvalidProof):  # the receipts proof of another key
        verify_transfer(pre, 1, replace(w, receipts_proof=()), CHAIN_ID)
    with pytest.raises(InvalidProof):
        verify_transfer(pre, 1, "not a witness", CHAIN_ID)  # type: ignore[arg-type]
    assert verify_transfer(pre, 1, w, CHAIN_ID) == trace.states[2].hash  # the genuine one still verifies


@pytest.mark.parametrize(("nonce", "value"), [(99, 1), (1, 10**30)])
def test_an_invalid_transfer_gives_the_invalid_state(l2: L2Chain, nonce: int, value: int) -> None:
    # a block whose last transaction has a nonce gap, or spends more than the sender has
    trace = l2.honest[0]
    bad = decode_transactions([sign(l2.seq.config.accounts[0].private_key, nonce, SINK, value=value)])[0]
    txs = (*trace.transactions, bad)
    header = trace.header.copy(transaction_root=transactions_root(txs))
    block = BlockContext(trace.parent, header, 0, 0, tuple(bytes(t.encode()) for t in txs), ())
    w = transfer_witness(l2.fresh_view(), block, 3)
    pre = replace(trace.states[3], context_hash=context_hash(header))
    assert verify_transfer(pre, 3, w, CHAIN_ID) == INVALID_TRANSITION


@pytest.mark.parametrize("liar", [Role.CLAIMANT, Role.CHALLENGER])
def test_a_game_on_transfers_is_decided_by_the_witness(l2: L2Chain, liar: Role) -> None:
    lie = tampered_chain(l2.fresh_view(), 1, LAST, 1, bump(1))
    genesis = l2.view.header(0)
    agreed = Output(0, int(genesis.timestamp), bytes(genesis.hash), bytes(genesis.state_root), ())
    claimed = lie if liar == Role.CLAIMANT else l2.honest
    view = l2.fresh_view()
    game = open_game(agreed, encode_header(genesis), output_of(claimed), claimed[-1].header_rlp, RULES,
                     TransferVerifier(CHAIN_ID), view.expected_header, T0)  # no database: witnesses only
    prover_view = l2.fresh_view()

    def prover(block: BlockContext, j: int) -> TransferWitness:
        return transfer_witness(prover_view, block, j)

    honest = Player(liar.other, l2.honest, l2.fresh_view(), prover=prover)
    dishonest = Player(liar, lie, prover=prover)  # no witness proves its lie: any proves the honest post-state
    play_out(game, {liar: dishonest, liar.other: honest}, T0)
    assert game.pinned == (1, 1) and game.winner == liar.other, game.reason
    assert game.outcome == (Outcome.CHALLENGER_WINS if liar == Role.CLAIMANT else Outcome.CLAIMANT_WINS)


def test_an_undecodable_transaction_gives_the_invalid_state(l2: L2Chain) -> None:
    import rlp
    from trie import HexaryTrie

    db: dict[bytes, bytes] = {}
    txs = HexaryTrie(db)
    txs[rlp.encode(0)] = b"\x02\xff\xff"  # committed by the header, but not a transaction
    trace = l2.honest[0]
    header = trace.header.copy(transaction_root=txs.root_hash)
    pre = replace(trace.states[0], context_hash=context_hash(header))
    proof = tuple(bytes(rlp.encode(n)) for n in txs.get_proof(rlp.encode(0)))
    w = TransferWitness(encode_header(template(header)), b"\x02\xff\xff", proof, (), ())
    assert verify_transfer(pre, 0, w, CHAIN_ID) == INVALID_TRANSITION


@pytest.mark.parametrize(("k", "j"), [(1, 1), (3, 0), (2, 0), (6, 2)])
def test_transfers_by_witness_the_rest_by_reexecution(l2: L2Chain, k: int, j: int) -> None:
    lie = tampered_chain(l2.fresh_view(), 1, LAST, k, bump(j))
    genesis = l2.view.header(0)
    agreed = Output(0, int(genesis.timestamp), bytes(genesis.hash), bytes(genesis.state_root), ())
    view = l2.fresh_view()
    verifier = StepVerifiers(CHAIN_ID, ReexecutionVerifier(l2.fresh_view()))
    game = open_game(agreed, encode_header(genesis), output_of(lie), lie[-1].header_rlp, RULES, verifier,
                     view.expected_header, T0)
    prover_view = l2.fresh_view()
    witnesses: list[object] = []

    def prover(block: BlockContext, index: int) -> TransferWitness | None:
        witnesses.append(w := prove_step(prover_view, block, index))
        return w

    play_out(game, {Role.CLAIMANT: Player(Role.CLAIMANT, lie, prover=prover),
                    Role.CHALLENGER: Player(Role.CHALLENGER, l2.honest, l2.fresh_view(), prover=prover)}, T0)
    assert game.outcome == Outcome.CHALLENGER_WINS and game.pinned == (k, j), game.reason
    # the step was proven by witness exactly when the transaction is a transfer
    assert [isinstance(w, TransferWitness) for w in witnesses] == [(k, j) in TRANSFERS]


def test_failing_deposits_keep_the_mint_and_use_their_gas_limit(tmp_path: Path) -> None:
    # a deposit whose value exceeds the sender's balance after the mint, and one below its intrinsic
    # gas: both fail (status 0), keep the mint and the nonce bump, and use their whole gas limit
    seq = Sequencer(NodeConfig(tmp_path / "node", sync=False), make_resolver(None))
    seq.origin_for = lambda head, ts: L1Origin(head.block_number + 1, keccak(b"l1%d" % head.block_number), ts)
    deposits = [new_deposit(deposit_source_hash(bytes(20), 0), b"\x77" * 20, SINK, 5, 10**18, 100_000, b""),
                new_deposit(deposit_source_hash(bytes(20), 1), b"\x78" * 20, SINK, 5, 0, 20_000, b""),
                new_deposit(deposit_source_hash(bytes(20), 2), b"\x79" * 20, SINK, 10**18, 10**17, 50_000, b"")]
    seq.deposits_for = lambda parent, origin: deposits if parent.block_number == 0 else []
    seq.mine_pending(allow_empty=True)
    view = ChainView.of(seq)
    (trace,) = honest_chain(view, 1, 1)
    assert [s.gas_used for s in trace.states] == [0, 100_000, 120_000, 141_000]
    block = BlockContext(trace.parent, trace.header, 0, 0, trace.raw_transactions, ())
    for j in range(3):
        w = transfer_witness(ChainView.of(seq), block, j)
        assert verify_transfer(trace.states[j], j, w, CHAIN_ID) == trace.states[j + 1].hash
    seq.close()


def test_legacy_and_access_list_transfers(tmp_path: Path) -> None:
    from eth_account import Account
    from eth_utils import to_checksum_address

    seq = Sequencer(NodeConfig(tmp_path / "node", sync=False), make_resolver(None))
    key = seq.config.accounts[4].private_key
    to = to_checksum_address(SINK)
    legacy = {"to": to, "value": 3, "gas": 21000, "gasPrice": 2 * 10**9, "nonce": 0, "chainId": CHAIN_ID}
    typed1 = {**legacy, "nonce": 1, "type": 1, "accessList": []}
    with_list = {**typed1, "nonce": 2, "gas": 30000, "accessList": [{"address": to, "storageKeys": []}]}
    raws = [bytes(Account.sign_transaction(tx, key).raw_transaction) for tx in (legacy, typed1, with_list)]
    assert seq.submit([seq.decode_raw(r) for r in raws]) == [None, None, None]
    seq.mine_pending()
    (trace,) = honest_chain(ChainView.of(seq), 1, 1)
    assert [t.type_id for t in trace.transactions] == [None, 1, 1]
    block = BlockContext(trace.parent, trace.header, 0, 0, trace.raw_transactions, ())
    for j in range(2):
        w = transfer_witness(ChainView.of(seq), block, j)
        assert verify_transfer(trace.states[j], j, w, CHAIN_ID) == trace.states[j + 1].hash
    with pytest.raises(UnsupportedTransaction):  # a non-empty access list changes the gas: not a plain transfer
        verify_transfer(trace.states[2], 2, transfer_witness(ChainView.of(seq), block, 2), CHAIN_ID)
    seq.close()
