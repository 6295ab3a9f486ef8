"""The pending-pool journal (interval mining): nothing a send acknowledged is lost, kill -9 included.

The file format (torn and corrupt tails), the sequencer's replay (mined and invalid transactions
dropped, the others pending again), a failed append (the send is refused, nothing admitted), and a
node process with ``--block-time`` SIGKILLed at a random moment while four clients send: after a
restart every acknowledged transaction is mined.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from nodeproc import NodeProcess
from test_restart import SENDERS, SINK, VALUE

from ai_evm.node.accounts import dev_accounts
from ai_evm.node.chain import NodeConfig, Sequencer
from ai_evm.node.journal import JournalError, PoolJournal, decode_records, encode_records
from ai_evm.node.vm import make_resolver


def test_records_round_trip_and_a_torn_or_corrupt_tail_is_ignored(tmp_path: Path) -> None:
    raws = [b"\x02" + bytes(range(50)), b"", b"\xf8" * 300]
    data = encode_records(raws)
    assert decode_records(data) == (raws, len(data))
    assert decode_records(data[:-1]) == (raws[:2], len(encode_records(raws[:2])))  # torn last record
    bad = bytearray(data)
    bad[-1] ^= 0x01
    assert decode_records(bytes(bad)) == (raws[:2], len(encode_records(raws[:2])))  # third fails its checksum
    journal = PoolJournal(tmp_path, sync=True)
    assert journal.load() == []
    journal.append(raws[:2])
    journal.append(raws[2:])
    assert journal.load() == raws
    with open(journal.path, "ab") as f:
        f.write(b"\x00\x00\x01")  # a crash in the middle of the next append
    assert journal.load() == raws
    journal.rewrite(raws[1:])
    assert journal.load() == raws[1:] and not journal.path.with_name("pool.journal.tmp").exists()


def _raw(seq: Sequencer, account: int, nonce: int) -> bytes:
    from eth_account import Account

    fields = {"to": SINK, "value": VALUE, "gas": 21000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
              "nonce": nonce, "chainId": 31337, "type": 2}  # fmt: skip
    return bytes(Account.sign_transaction(fields, seq.config.accounts[account].private_key).raw_transaction)


def _open(datadir: Path) -> Sequencer:
    return Sequencer(NodeConfig(datadir, block_time=1.0, sync=False), make_resolver(None))


def test_sequencer_replays_the_journal(tmp_path: Path) -> None:
    seq = _open(tmp_path / "node")
    raws = [_raw(seq, 0, n) for n in range(4)]
    assert seq.submit([seq.decode_raw(r) for r in raws[:2]]) == [None, None]
    (block,) = seq.mine_pending()
    assert len(block.tx_hashes) == 2 and seq.journal is not None and seq.journal.load() == []
    assert seq.submit([seq.decode_raw(r) for r in raws[2:]]) == [None, None]
    assert seq.journal.load() == raws[2:]
    seq.close()  # "crash": the two pending transactions exist only in the journal
    # as if the node died between a block commit and the compaction: mined ones are in it too
    PoolJournal(tmp_path / "node").rewrite(raws + [b"\x02junk"])
    seq = _open(tmp_path / "node")
    assert [bytes(tx.encode()) for tx in seq.pool.pending.values()] == raws[2:]
    assert seq.journal is not None and seq.journal.load() == raws[2:]  # compacted at start
    (block,) = seq.mine_pending()
    assert len(block.tx_hashes) == 2 and seq.journal.load() == [] and not seq.pool.pending
    seq.close()


def test_automine_start_mines_a_journal_left_by_interval_mining(tmp_path: Path) -> None:
    seq = _open(tmp_path / "node")
    raws = [_raw(seq, 2, n) for n in range(3)]
    assert seq.submit([seq.decode_raw(r) for r in raws]) == [None] * 3
    seq.close()  # stopped (or killed) with three acknowledged transactions pending
    seq = Sequencer(NodeConfig(tmp_path / "node", sync=False), make_resolver(None))  # automine now
    assert seq.head().block_number == 1 and not seq.pool.pending
    assert all(seq.tx_location(bytes(seq.decode_raw(r).hash)) is not None for r in raws)
    assert seq.journal is None and not (tmp_path / "node" / "pool.journal").exists()
    seq.close()


def test_a_failed_append_admits_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seq = _open(tmp_path / "node")
    assert seq.journal is not None

    def disk_full(raws: list[bytes]) -> None:
        raise JournalError("cannot write the pool journal: [Errno 28] No space left on device")

    monkeypatch.setattr(seq.journal, "append", disk_full)
    (error,) = seq.submit([seq.decode_raw(_raw(seq, 1, 0))])
    assert error is not None and "transaction not admitted: cannot write the pool journal" in str(error)
    assert not seq.pool.pending and seq.pool.pending_nonce(seq.config.accounts[1].address_bytes, 0) == 0
    seq.close()


#: Transfers per sender in the kill test (sends return at once with interval mining: many are needed
#: for the kill to land in the middle of them).
KILL_TEST_PER_SENDER = 100


def _sign_all() -> list[list[str]]:
    from eth_account import Account

    return [
        ["0x" + bytes(Account.sign_transaction(
            {"to": SINK, "value": VALUE, "gas": 21000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
             "nonce": n, "chainId": 31337, "type": 2}, acct.private_key).raw_transaction).hex()
         for n in range(KILL_TEST_PER_SENDER)]
        for acct in dev_accounts()[:SENDERS]
    ]  # fmt: skip


def _send(node: NodeProcess, raws: list[str], acked: list[str], lock: threading.Lock) -> None:
    for raw in raws:
        try:
            tx_hash = node.rpc("eth_sendRawTransaction", raw)
        except Exception:
            return  # the node was killed
        with lock:
            acked.append(tx_hash)


def test_block_time_node_killed_at_random_moment_loses_no_acknowledged_transaction(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    args = ("--block-time", "0.5")
    node = NodeProcess(datadir, args=args).start()
    signed = _sign_all()
    acked: list[str] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_send, args=(node, raws, acked, lock)) for raws in signed]
    for t in threads:
        t.start()
    while len(acked) < 5 and any(t.is_alive() for t in threads):
        time.sleep(0.005)
    delay = random.Random().uniform(0.0, 0.4)
    time.sleep(delay)
    node.kill()
    for t in threads:
        t.join()
    context = f"killed {delay:.2f}s after the fifth acknowledgement, {len(acked)} acknowledged"
    print(context)
    assert acked, context

    node = NodeProcess(datadir, args=args).start()
    try:
        deadline = time.monotonic() + 60
        missing = list(acked)
        while missing:
            assert time.monotonic() < deadline, f"{len(missing)} acknowledged transactions not mined; {context}"
            missing = [h for h in missing if node.rpc("eth_getTransactionReceipt", h) is None]
            time.sleep(0.2)
        for tx_hash in acked:
            assert node.rpc("eth_getTransactionReceipt", tx_hash)["status"] == "0x1", context
        # the state agrees: the sink got VALUE per mined transfer, nonces count them
        head = int(node.rpc("eth_blockNumber"), 16)
        mined = sum(int(node.rpc("eth_getBlockTransactionCountByNumber", hex(n)), 16) for n in range(1, head + 1))
        assert len(acked) <= mined <= SENDERS * KILL_TEST_PER_SENDER, context
        assert int(node.rpc("eth_getBalance", SINK, "latest"), 16) == mined * VALUE, context
        nonces = [int(node.rpc("eth_getTransactionCount", a.address, "latest"), 16) for a in dev_accounts()[:SENDERS]]
        assert sum(nonces) == mined, context
    finally:
        assert node.stop() == 0
