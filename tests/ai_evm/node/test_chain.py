"""In-process tests of the node's pieces: the LMDB store, the sequencer's mining, interval mining."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from eth_account import Account

from ai_evm.node.chain import ChainMismatch, NodeConfig, Sequencer
from ai_evm.node.db import DatabaseError, LMDBAtomicDB
from ai_evm.node.methods import EthApi
from ai_evm.node.server import IntervalMiner
from ai_evm.node.vm import make_resolver

SINK = "0x000000000000000000000000000000000000dEaD"


def _raw(key: bytes, nonce: int, value: int = 1, chain_id: int = 31337) -> bytes:
    fields = {"to": SINK, "value": value, "gas": 21000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
              "nonce": nonce, "chainId": chain_id, "type": 2}  # fmt: skip
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


def test_lmdb_store_commits_whole_or_nothing(tmp_path: Path) -> None:
    db = LMDBAtomicDB(tmp_path / "db", sync=False)
    db[b"a"] = b"1"
    with db.atomic_batch() as batch:
        batch[b"b"] = b"2"
    assert db[b"a"] == b"1" and db[b"b"] == b"2" and db.pending_count == 2
    assert db.commit() == 2 and db.pending_count == 0
    db[b"c"] = b"3"
    del db[b"a"]
    assert b"a" not in db and db[b"c"] == b"3"
    with pytest.raises(KeyError):
        del db[b"zz"]
    with pytest.raises(RuntimeError), db.atomic_batch() as batch:
        batch[b"d"] = b"4"
        raise RuntimeError("abort the batch")
    assert b"d" not in db
    db.close()  # uncommitted c and the deletion of a are lost, as after a crash
    db = LMDBAtomicDB(tmp_path / "db", sync=False)
    assert db[b"a"] == b"1" and db[b"b"] == b"2" and b"c" not in db
    db.discard()
    db.close()


@pytest.fixture()
def seq(tmp_path: Path) -> Sequencer:
    return Sequencer(NodeConfig(tmp_path / "node", sync=False), make_resolver(None))


def test_block_build_failure_keeps_good_transactions(seq: Sequencer) -> None:
    key = seq.config.accounts[0].private_key
    good = [seq.decode_raw(_raw(key, n)) for n in range(3)]
    assert seq.submit(good) == [None, None, None]
    stray = seq.decode_raw(_raw(seq.config.accounts[1].private_key, 5))  # nonce gap: would fail mine_all
    seq.pool.add(stray)  # bypass admission, as if the pool were stale
    (block,) = seq.mine_pending()
    assert block.tx_hashes == tuple(bytes(t.hash) for t in good)
    assert "dropped" in seq.pool.dropped[bytes(stray.hash)] and not seq.pool.pending
    assert seq.db.pending_count == 0 and seq.head().block_number == 1
    record = seq.record(1)
    assert record is not None and [r["status"] for r in record["receipts"]] == ["0x1"] * 3


def test_reopen_continues_and_checks_chain_id(seq: Sequencer) -> None:
    key = seq.config.accounts[2].private_key
    seq.submit([seq.decode_raw(_raw(key, 0))])
    seq.mine_pending()
    head = seq.head()
    seq.close()
    again = Sequencer(NodeConfig(seq.config.datadir, sync=False), make_resolver(None))
    assert again.head() == head and again.record(1) == seq.record(1)
    with pytest.raises(DatabaseError, match="in use by another node"):
        Sequencer(NodeConfig(seq.config.datadir, sync=False), make_resolver(None))
    again.close()
    with pytest.raises(ChainMismatch, match="chain id 31337"):
        Sequencer(NodeConfig(seq.config.datadir, chain_id=5, sync=False), make_resolver(None))


def test_interval_mining(seq: Sequencer) -> None:
    api = EthApi(seq, automine=False)
    key = seq.config.accounts[3].private_key
    tx_hash = api.eth_sendRawTransaction("0x" + _raw(key, 0).hex())
    assert api.eth_getTransactionReceipt(tx_hash) is None
    assert api.eth_getTransactionByHash(tx_hash)["blockHash"] is None  # type: ignore[index]
    assert api.eth_getTransactionCount(seq.config.accounts[3].address, "pending") == "0x1"
    miner = IntervalMiner(seq, 0.05)
    miner.start()
    try:
        deadline = time.monotonic() + 30
        while api.eth_getTransactionReceipt(tx_hash) is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first = int(api.eth_blockNumber(), 16)
        while int(api.eth_blockNumber(), 16) < first + 2:  # empty blocks keep coming
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        miner.stop()
    assert api.eth_getTransactionReceipt(tx_hash)["status"] == "0x1"  # type: ignore[index]


def test_block_build_that_always_fails_drops_and_leaves_head(seq: Sequencer, monkeypatch: pytest.MonkeyPatch) -> None:
    key = seq.config.accounts[4].private_key
    txs = [seq.decode_raw(_raw(key, n)) for n in range(2)]
    assert seq.submit(txs) == [None, None]
    head = seq.head()

    def broken(*args: object, **kwargs: object) -> None:
        seq.db[b"half-written"] = b"x"  # a write that must not survive the failure
        raise RuntimeError("simulated failure inside mine_all")

    monkeypatch.setattr(seq.chain, "mine_all", broken)
    assert seq.mine_pending() == []
    assert not seq.pool.pending and all("simulated failure" in seq.pool.dropped[bytes(t.hash)] for t in txs)
    assert seq.head() == head and seq.db.pending_count == 0 and b"half-written" not in seq.db


def test_model_stores_datadir_first_then_extra_uris(tmp_path: Path) -> None:
    from ai_evm.cli.node import open_model_store
    from ai_evm.node.errors import ServerError
    from ai_evm.node.models import get_model
    from opml.store import LocalStore

    root = Path(__file__).resolve().parents[3] / "models"
    extra = LocalStore(tmp_path / "extra")
    address = extra.put((root / "encoder" / "model.bundle").read_bytes())
    resolver = make_resolver(open_model_store((str(tmp_path / "extra"),), tmp_path / "data"))  # type: ignore[arg-type]
    info = get_model(resolver, address)
    assert info["address"] == "0x" + address.hex() and int(info["size"], 16) > 0
    with pytest.raises(ServerError, match="not available"):
        get_model(resolver, b"\x07" * 32)
