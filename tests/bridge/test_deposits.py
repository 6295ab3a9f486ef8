"""The deposit transaction (type 0x7E) in the AI EVM, and deposits through derivation, in process.

The tx type: a deposit mints (always, also when its call fails), bumps the sender's nonce, runs its
call at gas price 0 (no fee to anyone, gas counted in the block), is refused from anywhere but L1
(raw sends, batches), and its receipt and JSON show it as op-geth does. Derivation: the deposits of
scripted L1 blocks open the L2 blocks on those origins, identically on the sequencer and on a node
rebuilding the chain from its batches; a chain that leaves one deposit out has another block hash,
state root and output root.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_hash.auto import keccak
from eth_typing import Address, BlockNumber
from eth_utils import to_checksum_address

from ai_evm.evm.deposit import DEPOSIT_TX_TYPE, as_deposit, deposit_source_hash, new_deposit
from ai_evm.node.chain import BatchRejected, L1Origin, NodeConfig, Sequencer, origin_of
from ai_evm.node.errors import TransactionRejected
from ai_evm.node.index import tx_json
from ai_evm.node.vm import make_resolver
from ai_evm.rollup import codec
from ai_evm.rollup.deposits import (
    TRANSACTION_DEPOSITED,
    Deposit,
    DepositError,
    DepositNonceGap,
    DepositsUnknown,
    check_nonces,
    decode_deposit_log,
    deposits_hook,
)
from ai_evm.rollup.derive import Deriver, L1Block, RollupConfig, SafeHead, check_batch
from ai_evm.rollup.outputs import Output
from ai_evm.rollup.predeploys import L2_TO_L1_MESSAGE_PASSER, PREDEPLOYS
from ai_evm.rollup.sequencing import batch_of_block, choose_origin

PORTAL = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
ALICE = bytes.fromhex("aa" * 20)
BOB = bytes.fromhex("bb" * 20)
BOB_CHECKSUM = to_checksum_address(BOB)
CFG = RollupConfig(seq_window=100, channel_timeout=10, max_sequencer_drift=30)
#: initiateWithdrawal(address,uint256,bytes)
INITIATE = keccak(b"initiateWithdrawal(address,uint256,bytes)")[:4]


def node(path: Path) -> Sequencer:
    return Sequencer(NodeConfig(path, sync=False), make_resolver(None))


def deposit(nonce: int, to: bytes = BOB, mint: int = 10**18, value: int = 0, gas: int = 100_000,
            data: bytes = b"", sender: bytes = ALICE) -> object:
    return new_deposit(deposit_source_hash(PORTAL, nonce), sender, to, mint, value, gas, data)


def mine_with(seq: Sequencer, deposits: list[object], txs: Sequence[bytes] = ()) -> int:
    """Mine one block on a scripted origin that opens with ``deposits`` (then the signed ``txs``)."""
    head = seq.head()
    seq.origin_for = lambda parent, ts: L1Origin(int(head.block_number) + 1, bytes([7]) * 32, 0)
    seq.deposits_for = lambda parent, origin: list(deposits) if parent == head else []  # type: ignore[arg-type]
    assert seq.submit([seq.decode_raw(raw) for raw in txs]) == [None] * len(txs)
    (mined,) = seq.mine_pending(allow_empty=True)
    return mined.number


def test_a_deposit_mints_bumps_the_nonce_and_pays_no_fee(tmp_path: Path) -> None:
    seq = node(tmp_path / "a")
    coinbase = Address(bytes(seq.head().coinbase))
    before = seq.head_state().get_balance(coinbase)
    d = deposit(0, mint=10**18, value=3 * 10**17)
    n = mine_with(seq, [d])
    state = seq.head_state()
    assert state.get_balance(ALICE) == 7 * 10**17  # mint - value: no gas bought, nothing burnt
    assert state.get_balance(BOB) == 3 * 10**17
    assert state.get_nonce(ALICE) == 1
    assert state.get_balance(coinbase) == before
    rec = seq.record(n)
    assert rec is not None
    (receipt,) = rec["receipts"]
    assert (receipt["status"], receipt["gasUsed"], receipt["type"], receipt["effectiveGasPrice"]) == \
        ("0x1", hex(21_000), "0x7e", "0x0")
    assert rec["block"]["gasUsed"] == hex(21_000)
    # the block commits to it: its transaction root, receipts and index
    block = seq.chain.get_canonical_block_by_number(BlockNumber(n))
    assert [bytes(tx.hash) for tx in block.transactions] == [bytes(d.hash)]  # type: ignore[attr-defined]
    assert bytes(d.hash) == keccak(bytes(d.encode()))  # type: ignore[attr-defined]
    assert bytes(d.encode())[0] == DEPOSIT_TX_TYPE  # type: ignore[attr-defined]
    assert seq.tx_location(bytes(d.hash)) == (n, 0)  # type: ignore[attr-defined]
    assert seq.builder.decode(bytes(d.encode())) == d  # type: ignore[attr-defined]
    (stored,) = block.get_receipts(seq.chain.chaindb)  # the receipt decodes back from the database
    assert (stored.type_id, stored.gas_used, stored.state_root) == (DEPOSIT_TX_TYPE, 21_000, b"\x01")  # type: ignore


def test_a_failing_call_keeps_the_mint_and_gas_is_accounted(tmp_path: Path) -> None:
    seq = node(tmp_path / "b")
    key = seq.config.accounts[0].private_key
    user_tx = Account.sign_transaction(
        {"to": BOB_CHECKSUM, "value": 1, "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
         "nonce": 0, "chainId": 31337, "type": 2}, key).raw_transaction
    reverting = deposit(0, to=L2_TO_L1_MESSAGE_PASSER, mint=5, gas=60_000, data=b"\xde\xad\xbe\xef")  # no such function
    too_much = deposit(1, mint=7, value=10**30, gas=50_000)  # value above the balance: not run, whole gas used
    too_little = deposit(2, mint=11, gas=21_000, data=b"\x01" * 100)  # below its intrinsic gas
    n = mine_with(seq, [reverting, too_much, too_little], [bytes(user_tx)])
    rec = seq.record(n)
    assert rec is not None
    statuses = [r["status"] for r in rec["receipts"]]
    gas = [int(r["gasUsed"], 16) for r in rec["receipts"]]
    assert statuses == ["0x0", "0x0", "0x0", "0x1"]  # deposits first, then the batch
    assert 21_000 + 4 * 16 < gas[0] < 60_000  # reverted: the gas it burnt until the revert
    assert gas[1:] == [50_000, 21_000, 21_000]
    assert int(rec["block"]["gasUsed"], 16) == sum(gas)
    assert [int(r["cumulativeGasUsed"], 16) for r in rec["receipts"]] == [sum(gas[:i + 1]) for i in range(4)]
    state = seq.head_state()
    assert state.get_balance(ALICE) == 5 + 7 + 11  # every mint stays
    assert state.get_nonce(ALICE) == 3
    # each deposit shows the sender nonce it executed with (op-geth's nonce / receipt depositNonce)
    assert [t["nonce"] for t in rec["txs"][:3]] == [r["depositNonce"] for r in rec["receipts"][:3]] == \
        ["0x0", "0x1", "0x2"]
    assert "depositNonce" not in rec["receipts"][3]
    assert state.get_balance(L2_TO_L1_MESSAGE_PASSER) == 0


def test_a_deposit_calls_an_l2_contract(tmp_path: Path) -> None:
    """The predeploy is in the genesis; a deposit calls initiateWithdrawal with value, from its sender."""
    seq = node(tmp_path / "c")
    assert seq.head_state().get_code(L2_TO_L1_MESSAGE_PASSER) == PREDEPLOYS[L2_TO_L1_MESSAGE_PASSER] != b""
    data = INITIATE + abi_encode(["address", "uint256", "bytes"], ["0x" + BOB.hex(), 100_000, b"hi"])
    n = mine_with(seq, [deposit(0, to=L2_TO_L1_MESSAGE_PASSER, mint=10**18, value=10**17, gas=200_000, data=data)])
    rec = seq.record(n)
    assert rec is not None
    (receipt,) = rec["receipts"]
    assert receipt["status"] == "0x1" and len(receipt["logs"]) == 1
    state = seq.head_state()
    assert state.get_balance(L2_TO_L1_MESSAGE_PASSER) == 10**17
    assert state.get_storage(L2_TO_L1_MESSAGE_PASSER, 1) == 1  # messageNonce
    w_hash = keccak(abi_encode(["uint256", "address", "address", "uint256", "uint256", "bytes"],
                               [0, "0x" + ALICE.hex(), "0x" + BOB.hex(), 10**17, 100_000, b"hi"]))
    slot = int.from_bytes(keccak(w_hash + bytes(32)), "big")  # sentMessages[withdrawalHash]
    assert state.get_storage(L2_TO_L1_MESSAGE_PASSER, slot) == 1


def test_deposits_are_refused_from_anywhere_but_l1(tmp_path: Path) -> None:
    seq = node(tmp_path / "d")
    d = deposit(0)
    raw = bytes(d.encode())  # type: ignore[attr-defined]
    with pytest.raises(TransactionRejected, match="only by derivation"):
        seq.decode_raw(raw)  # eth_sendRawTransaction
    head = seq.head()
    with pytest.raises(BatchRejected, match="deposit"):
        seq.build_from_batch([raw], int(head.timestamp) + 1, L1Origin(0, b"\x01" * 32))
    assert seq.head() == head
    with pytest.raises(TransactionRejected, match="only by derivation"):
        seq._mine([d], int(head.timestamp) + 1)  # type: ignore[list-item]  # a pool can never hold one
    # the replay of an included deposit: a batch carrying it is not a valid batch
    l1 = {0: L1Block(0, b"\x01" * 32, b"\0" * 32, 1000)}
    safe = SafeHead(bytes(head.hash), 0, 990, 0)
    batch = codec.Batch(bytes(head.hash), 0, b"\x01" * 32, 1001, (raw,))
    assert check_batch(codec.Batch(bytes(head.hash), 0, b"\x01" * 32, 1001, ()), safe, l1, 0, CFG) is None
    assert "deposit" in (check_batch(batch, safe, l1, 0, CFG) or "")


def test_the_json_form_is_op_geths(tmp_path: Path) -> None:
    seq = node(tmp_path / "e")
    d = deposit(3, mint=9, value=2, gas=77_000, data=b"\x05")
    n = mine_with(seq, [d])
    header = seq.chain.get_canonical_block_header_by_number(BlockNumber(n))
    j = tx_json(d, header, 0)  # type: ignore[arg-type]
    assert j == seq.record(n)["txs"][0]  # type: ignore[index]
    assert (j["type"], j["from"], j["to"], j["mint"], j["value"], j["gas"], j["input"]) == \
        ("0x7e", "0x" + ALICE.hex(), "0x" + BOB.hex(), "0x9", "0x2", hex(77_000), "0x05")
    assert j["sourceHash"] == "0x" + keccak(PORTAL.rjust(32, b"\0") + (3).to_bytes(32, "big")).hex()
    assert (j["v"], j["r"], j["s"], j["gasPrice"], j["isSystemTx"]) == ("0x0", "0x0", "0x0", "0x0", False)


def log_of(nonce: int, sender: bytes, to: bytes, mint: int, value: int, gas: int, data: bytes,
           block: int = 5, index: int = 0) -> dict[str, object]:
    return {"topics": ["0x" + TRANSACTION_DEPOSITED.hex(), "0x" + nonce.to_bytes(32, "big").hex(),
                       "0x" + sender.rjust(32, b"\0").hex(), "0x" + to.rjust(32, b"\0").hex()],
            "data": "0x" + abi_encode(["uint256", "uint256", "uint64", "bytes"], [mint, value, gas, data]).hex(),
            "blockNumber": block, "logIndex": index}


def test_portal_logs_are_checked() -> None:
    good = decode_deposit_log(log_of(4, ALICE, BOB, 1, 2, 21_000, b"x", 9, 3))
    assert good == Deposit(4, ALICE, BOB, 1, 2, 21_000, b"x", 9, 3)
    bad = [
        {**log_of(0, ALICE, BOB, 1, 2, 21_000, b""), "topics": ["0x" + bytes(32).hex()] * 4},  # another event
        {**log_of(0, ALICE, BOB, 1, 2, 21_000, b""), "data": "0x1234"},  # truncated data
        log_of(0, ALICE, BOB, 1, 2, 20_999, b""),  # gas below the Portal's floor
        log_of(0, ALICE, BOB, 1, 2, 2_000_001, b""),  # above its cap
        log_of(0, ALICE, BOB, 1, 2, 21_000, b"\0" * 32_769),  # data too long
        {**log_of(0, ALICE, BOB, 1, 2, 21_000, b""), "topics": ["0x" + TRANSACTION_DEPOSITED.hex(), "0x00",
                                                              "0x" + "ff" * 32, "0x" + "00" * 32]},  # not an address
        {"topics": []},
    ]
    for log in bad:
        with pytest.raises(DepositError):
            decode_deposit_log(log)
    ds = [Deposit(i, ALICE, BOB, 0, 0, 21_000, b"", 1, i) for i in range(3)]
    assert check_nonces(ds, 0) == 3
    with pytest.raises(DepositNonceGap, match="nonce 0, expected 3"):
        check_nonces(ds, 3)  # the same deposits read again: a replay
    with pytest.raises(DepositNonceGap, match="nonce 2, expected 1"):
        check_nonces([ds[0], ds[2]], 0)  # one skipped


def scripted_l1(start: int) -> list[L1Block]:
    """L1 blocks 0..7, four seconds apart; deposits 0, 1 in block 2 (log order), 2 in block 3, 3 in block 5."""
    deps = {2: (Deposit(0, ALICE, BOB, 10**18, 5, 50_000, b"", 2, 0),
                Deposit(1, BOB, ALICE, 3, 0, 21_000, b"", 2, 4)),
            3: (Deposit(2, ALICE, L2_TO_L1_MESSAGE_PASSER, 10**18, 7, 200_000,
                        INITIATE + abi_encode(["address", "uint256", "bytes"], ["0x" + BOB.hex(), 1, b""]), 3, 1),),
            5: (Deposit(3, ALICE, BOB, 1, 1, 21_000, b"", 5, 0),)}
    out, parent = [], b"\xee" * 32
    for i in range(8):
        h = bytes([i + 1]) * 32
        out.append(L1Block(i, h, parent, start + 4 * i, deposits=deps.get(i, ())))
        parent = h
    return out


def sequence(path: Path, l1: list[L1Block], hook: object) -> tuple[Sequencer, list[object]]:
    """A sequencer following the scripted ``l1`` (deposits by ``hook``), one transfer per block: 7 blocks,
    the origin advancing one L1 block per L2 block."""
    by_number = {b.number: b for b in l1}
    genesis_origin = L1Origin(0, l1[0].hash, l1[0].timestamp)
    seq = node(path)
    seq.origin_for = lambda parent, ts: choose_origin(origin_of(parent) or genesis_origin, ts, by_number.get,
                                                      CFG.max_sequencer_drift)
    seq.deposits_for = hook  # type: ignore[assignment]
    key = seq.config.accounts[0].private_key
    for n in range(7):
        tx = Account.sign_transaction({"to": BOB_CHECKSUM, "value": 1, "gas": 21_000, "maxFeePerGas": 10**10,
                                       "maxPriorityFeePerGas": 10**9, "nonce": n, "chainId": 31337, "type": 2}, key)
        assert seq.submit([seq.decode_raw(bytes(tx.raw_transaction))]) == [None]
        seq.mine_pending()
    return seq, [seq.chain.get_canonical_block_by_number(BlockNumber(n)) for n in range(1, 8)]


def derive(path: Path, l1: list[L1Block], blocks: list[object], hook: object) -> tuple[Sequencer, Deriver]:
    """A fresh node deriving from the batches of ``blocks`` posted in L1 block 7 (deposits by ``hook``)."""
    batches = [batch_of_block(b) for b in blocks]  # type: ignore[arg-type]
    frames = codec.split_frames(b"c" * 16, codec.encode_channel(batches), 300)
    posted = L1Block(7, l1[7].hash, l1[6].hash, l1[7].timestamp, (codec.encode_batcher_data(frames),))
    fresh = node(path)
    fresh.deposits_for = hook  # type: ignore[assignment]
    g = fresh.head()
    d = Deriver(CFG, SafeHead(bytes(g.hash), 0, int(g.timestamp), 0), l1[:7])
    d.add_l1_block(posted)
    for b in d.batches():
        try:
            d.advance(fresh.build_from_batch(b.transactions, b.timestamp, L1Origin(b.epoch_number, b.epoch_hash)))
        except BatchRejected as e:
            d.reject(str(e))
    return fresh, d


def test_sequencer_and_deriver_include_the_same_deposits(tmp_path: Path) -> None:
    l1 = scripted_l1(int(time.time()) - 28)
    hook = deposits_hook("0x" + PORTAL.hex(), 0, {b.number: b for b in l1}.get)
    seq, blocks = sequence(tmp_path / "seq", l1, hook)
    included = [(origin_of(b.header).number, [as_deposit(tx).source_hash for tx in b.transactions  # type: ignore
                                                if as_deposit(tx) is not None]) for b in blocks]  # type: ignore
    assert [o for o, _ in included] == list(range(1, 8))
    flat = [h for _, hs in included for h in hs]
    assert flat == [deposit_source_hash(PORTAL, i) for i in range(4)]  # every deposit once, in event order
    assert [len(hs) for o, hs in included if o in (2, 3, 5)] == [2, 1, 1]  # in the block on their L1 block
    for b in blocks:  # deposits first, then the batch's transaction
        kinds = [as_deposit(tx) is not None for tx in b.transactions]  # type: ignore[attr-defined]
        assert kinds == sorted(kinds, reverse=True) and kinds[-1] is False
    assert seq.head_state().get_storage(L2_TO_L1_MESSAGE_PASSER, 1) == 1  # the contract call by deposit ran
    assert all(len(batch_of_block(b).transactions) == 1 for b in blocks)  # type: ignore[arg-type]  # no deposits

    derived, d = derive(tmp_path / "derived", l1, blocks, hook)
    assert d.dropped == []
    for n in range(8):
        ha = seq.chain.get_canonical_block_header_by_number(BlockNumber(n))
        hb = derived.chain.get_canonical_block_header_by_number(BlockNumber(n))
        assert (ha.hash, ha.state_root) == (hb.hash, hb.state_root), n


def test_a_sequencer_that_omits_a_deposit_is_not_followed(tmp_path: Path) -> None:
    """The sequencer leaves deposit 2 (L1 block 3) out: the deriving node builds another block 3 (it puts the
    deposit in), so its output at block 3 differs from the sequencer's, and every later batch is dropped."""
    l1 = scripted_l1(int(time.time()) - 28)
    honest = deposits_hook("0x" + PORTAL.hex(), 0, {b.number: b for b in l1}.get)
    omitted = {b.number: (L1Block(b.number, b.hash, b.parent_hash, b.timestamp) if b.number == 3 else b) for b in l1}
    cheat, blocks = sequence(tmp_path / "cheat", l1, deposits_hook("0x" + PORTAL.hex(), 0, omitted.get))
    derived, d = derive(tmp_path / "derived", l1, blocks, honest)
    for n in range(3):
        ha = cheat.chain.get_canonical_block_header_by_number(BlockNumber(n))
        hb = derived.chain.get_canonical_block_header_by_number(BlockNumber(n))
        assert (ha.hash, ha.state_root) == (hb.hash, hb.state_root), n
    c3 = cheat.chain.get_canonical_block_header_by_number(BlockNumber(3))
    v3 = derived.chain.get_canonical_block_header_by_number(BlockNumber(3))
    assert c3.hash != v3.hash and c3.state_root != v3.state_root
    assert int(derived.head().block_number) == 3
    assert len(d.dropped) == 4 and all("is not the safe head" in why for why in d.dropped)
    roots = [Output(3, int(h.timestamp), bytes(h.hash), bytes(h.state_root), ()).output_root for h in (c3, v3)]
    assert roots[0] != roots[1]  # a proposer following the sequencer posts an output the validator disputes


def test_deposits_of_an_unread_l1_block_wait(tmp_path: Path) -> None:
    seq = node(tmp_path / "f")
    hook = deposits_hook("0x" + PORTAL.hex(), 0, {0: L1Block(0, b"\x01" * 32, b"\0" * 32, 0)}.get)
    with pytest.raises(DepositsUnknown):
        hook(seq.head(), L1Origin(1, b"\x02" * 32))
    assert deposits_hook(None, 0, lambda n: None)(seq.head(), L1Origin(5, b"\x02" * 32)) == []


def test_deposits_stay_when_the_batch_must_be_split(tmp_path: Path) -> None:
    """A pool transaction that cannot run sends the block through the one-by-one pass (_select_runnable):
    the deposits still open the block, the bad transaction alone is dropped."""
    seq = node(tmp_path / "g")
    keys = [a.private_key for a in seq.config.accounts[:2]]

    def signed(key: bytes, nonce: int) -> object:
        return seq.decode_raw(bytes(Account.sign_transaction(
            {"to": BOB_CHECKSUM, "value": 1, "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
             "nonce": nonce, "chainId": 31337, "type": 2}, key).raw_transaction))

    good, stale = signed(keys[0], 0), signed(keys[1], 7)  # nonce 7: too high, admitted behind the pool's back
    seq.pool.add(stale)  # type: ignore[arg-type]
    d = deposit(0, mint=5)
    n = mine_with(seq, [d], [bytes(good.encode())])  # type: ignore[attr-defined]
    block = seq.chain.get_canonical_block_by_number(BlockNumber(n))
    assert [bytes(tx.hash) for tx in block.transactions] == [bytes(d.hash), bytes(good.hash)]  # type: ignore
    assert "nonce too high" in seq.pool.dropped[bytes(stale.hash)]  # type: ignore[attr-defined]
    assert seq.head_state().get_balance(ALICE) == 5


def test_the_pool_leaves_room_for_the_deposits(tmp_path: Path) -> None:
    """Block gas limit 100,000 and a deposit that uses its whole 60,000 gas (its value is above the balance):
    the first block takes one 21,000-gas transfer after the deposit, the next block the other two; none is
    dropped for the gas the deposit took (without the reservation the third transfer would not fit)."""
    seq = Sequencer(NodeConfig(tmp_path / "h", sync=False, gas_limit=100_000), make_resolver(None))
    key = seq.config.accounts[0].private_key
    txs = [bytes(Account.sign_transaction(
        {"to": BOB_CHECKSUM, "value": 1, "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
         "nonce": n, "chainId": 31337, "type": 2}, key).raw_transaction) for n in range(3)]
    d = deposit(0, mint=5, value=10**30, gas=60_000)
    head = seq.head()
    seq.origin_for = lambda parent, ts: L1Origin(int(parent.block_number) + 1, bytes([7]) * 32, 0)
    seq.deposits_for = lambda parent, origin: [d] if parent == head else []  # type: ignore[list-item]
    assert seq.submit([seq.decode_raw(raw) for raw in txs]) == [None] * 3
    mined = seq.mine_pending()
    assert [len(m.tx_hashes) for m in mined] == [2, 2] and not seq.pool.dropped
    assert mined[0].tx_hashes[0] == bytes(d.hash)  # type: ignore[attr-defined]
