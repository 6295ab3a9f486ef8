"""Per-transaction intermediate states re-executed from the node's own chain end at its real headers."""

from __future__ import annotations

from eth.constants import BLANK_ROOT_HASH
from evm_fraud_chain import LAST, L2Chain

from ai_evm.fraudproof import context_hash
from ai_evm.fraudproof.commitments import TxState, encode_header, template


def test_intermediate_states_end_at_the_block_headers(l2: L2Chain) -> None:
    assert [t.number for t in l2.honest] == list(range(1, LAST + 1))
    assert [len(t.transactions) for t in l2.honest] == [3, 4, 3, 0, 3, 3]  # block 2 opens with the deposit
    for trace in l2.honest:
        stored, parent = l2.view.header(trace.number), l2.view.header(trace.number - 1)
        first, last = trace.states[0], trace.states[-1]
        # state 0: the parent's post-state, nothing executed (no pre-processing in the node's blocks)
        assert first.state_root == parent.state_root and first.gas_used == 0
        assert first.receipts_root == BLANK_ROOT_HASH and first.logs_bloom == 0
        # the last state: exactly the header's result fields; sealed, the stored header byte for byte
        assert (last.state_root, last.receipts_root, last.logs_bloom, last.gas_used, last.blob_gas_used) == (
            stored.state_root, stored.receipt_root, stored.bloom, stored.gas_used, stored.blob_gas_used)
        assert trace.header_rlp == encode_header(stored) and trace.header.hash == stored.hash
        assert {s.context_hash for s in trace.states} == {context_hash(stored)}
        assert [s.tx_index for s in trace.states] == list(range(len(trace.transactions) + 1))
        # per-transaction gas: the node's receipts
        receipts = l2.seq.record(trace.number)["receipts"]
        assert [b.gas_used - a.gas_used for a, b in zip(trace.states, trace.states[1:], strict=False)] == [
            int(r["gasUsed"], 16) for r in receipts]
        assert len({s.state_root for s in trace.states}) == len(trace.states)  # every transaction changed the state
        assert all(TxState.decode(s.encode()) == s for s in trace.states)
    # the contract calls logged: the bloom grows inside block 3
    blooms = [s.logs_bloom for s in l2.honest[2].states]
    assert blooms[0] == 0 and blooms[1] != 0 and blooms[3] == blooms[2]


def test_records_are_counted_per_transaction(l2: L2Chain) -> None:
    inference = l2.honest[5]
    assert [s.record_count for s in inference.states] == [0, 1, 1, 3]  # 0xa1 direct; transfer; twice
    assert all(s.record_count == 0 for t in l2.honest[:5] for s in t.states)
    node = l2.seq.record(6)["inferences"]
    assert [r.to_json() for r in inference.records] == node and len(node) == 3
    assert [r.call_index for r in inference.records] == [0, 0, 1]
    assert not any(s.record_fault for t in l2.honest for s in t.states)


def test_reexecution_leaves_the_node_untouched(l2: L2Chain) -> None:
    head = l2.seq.head()
    assert l2.seq.db.pending_count == 0 and head.block_number == LAST
    assert l2.view.header(LAST).hash == head.hash


def test_template_zeroes_only_the_results(l2: L2Chain) -> None:
    header = l2.view.header(3)
    tpl = template(header)
    assert (tpl.state_root, tpl.receipt_root, tpl.bloom, tpl.gas_used) == (bytes(32), bytes(32), 0, 0)
    assert (tpl.parent_hash, tpl.timestamp, tpl.transaction_root, tpl.mix_hash) == (
        header.parent_hash, header.timestamp, header.transaction_root, header.mix_hash)
