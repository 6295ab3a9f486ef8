"""Prague transaction validity through the node's JSON-RPC methods, with real signed transactions.

Each rule has an accepted case and a refused one with geth's exact message: the EIP-7623 calldata
floor (at admission, through ``eth_sendTransaction``'s estimate, and in a block), the intrinsic gas
of a creation (EIP-3860 initcode words) and its initcode size limit, the nonce limit (EIP-2681),
fee fields, chain id, signature bounds, blob transactions, and EIP-7702 set-code transactions:
shape rules, delegation designator, refunds for existing authorities, invalid authorizations
skipped without failing the transaction. The methods run in-process (:class:`EthApi` over a
:class:`Sequencer`, automine): the same code the HTTP server dispatches to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import rlp
from eth.constants import SECPK1_N
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak

from ai_evm.evm.validation import FloorDataGasTooLow
from ai_evm.node.chain import NodeConfig, Sequencer
from ai_evm.node.errors import NodeError
from ai_evm.node.methods import EthApi
from ai_evm.node.vm import make_resolver

CHAIN_ID = 31337
SINK = "0x000000000000000000000000000000000000dEaD"
DELEGATE = "0x" + "12" * 20  # a delegation target without code: calls into a delegated EOA just stop
MAX_FEE = 10**10
TIP = 10**9


@pytest.fixture()
def api(tmp_path: Path) -> EthApi:
    return EthApi(Sequencer(NodeConfig(tmp_path / "node", sync=False), make_resolver(None)))


def _key(api: EthApi, i: int) -> bytes:
    return bytes(api.seq.config.accounts[i].private_key)


def _addr(api: EthApi, i: int) -> str:
    return str(api.seq.config.accounts[i].address)


def _nonce(api: EthApi, address: str) -> int:
    return int(api.eth_getTransactionCount(address, "latest"), 16)


def _sign(key: bytes, **fields: Any) -> str:
    tx = {"to": SINK, "value": 0, "gas": 21000, "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": TIP,
          "chainId": CHAIN_ID, "type": 2, "nonce": 0, **fields}  # fmt: skip
    if tx.get("type") in (0, 1):
        tx.pop("maxFeePerGas"), tx.pop("maxPriorityFeePerGas")
        tx.setdefault("gasPrice", MAX_FEE)
        if tx["type"] == 0:
            tx.pop("type")
        else:
            tx.setdefault("accessList", [])
    if tx.get("to") is None:
        tx.pop("to")
    return "0x" + bytes(Account.sign_transaction(tx, key).raw_transaction).hex()


def _refused(api: EthApi, raw: str) -> str:
    with pytest.raises(NodeError) as info:
        api.eth_sendRawTransaction(raw)
    assert info.value.code == -32000, info.value.message
    return str(info.value.message)


def _receipt(api: EthApi, tx_hash: str) -> dict[str, Any]:
    receipt = api.eth_getTransactionReceipt(tx_hash)
    assert receipt is not None
    return receipt  # type: ignore[no-any-return]


# -- EIP-7623 calldata floor ----------------------------------------------------------------------
def test_calldata_floor_at_admission(api: EthApi) -> None:
    key, nonce = _key(api, 0), _nonce(api, _addr(api, 0))
    zeros = b"\0" * 10_000  # intrinsic 21000 + 4 * 10000 = 61000; floor 21000 + 10 * 10000 = 121000
    assert _refused(api, _sign(key, data=zeros, gas=61_000, nonce=nonce)) == (
        "insufficient gas for floor data gas cost: gas 61000, minimum needed 121000"
    )
    assert _refused(api, _sign(key, data=zeros, gas=60_999, nonce=nonce)) == (
        "intrinsic gas too low: gas 60999, minimum needed 61000"
    )
    ones = b"\1" * 100  # intrinsic 21000 + 16 * 100 = 22600; floor 21000 + 10 * 400 = 25000
    assert _refused(api, _sign(key, data=ones, gas=24_999, nonce=nonce)) == (
        "insufficient gas for floor data gas cost: gas 24999, minimum needed 25000"
    )
    # at the floor exactly: mined, charged the floor, never more than its own gas limit
    receipt = _receipt(api, api.eth_sendRawTransaction(_sign(key, data=zeros, gas=121_000, nonce=nonce)))
    assert receipt["status"] == "0x1" and int(receipt["gasUsed"], 16) == 121_000
    receipt = _receipt(api, api.eth_sendRawTransaction(_sign(key, data=ones, gas=30_000, nonce=nonce + 1)))
    assert int(receipt["gasUsed"], 16) == 25_000  # execution used 22600: the floor is charged


def test_send_transaction_estimates_at_least_the_floor(api: EthApi) -> None:
    sender, payload = _addr(api, 1), "0x" + "00" * 10_000
    estimate = int(api.eth_estimateGas({"from": sender, "to": SINK, "data": payload}), 16)
    assert estimate >= 121_000
    with pytest.raises(NodeError, match="insufficient gas for floor data gas cost: gas 61000, minimum needed 121000"):
        api.eth_sendTransaction({"from": sender, "to": SINK, "data": payload, "gas": hex(61_000)})
    receipt = _receipt(api, api.eth_sendTransaction({"from": sender, "to": SINK, "data": payload}))
    assert receipt["status"] == "0x1" and int(receipt["gasUsed"], 16) == 121_000
    with pytest.raises(NodeError, match="insufficient gas for floor data gas cost"):
        api.eth_call({"from": sender, "to": SINK, "data": payload, "gas": hex(61_000)}, "latest")


def test_block_with_a_floor_violation_is_invalid(api: EthApi) -> None:
    seq = api.seq
    tx = seq.decode_raw(bytes.fromhex(_sign(_key(api, 2), data=b"\0" * 10_000, gas=61_000)[2:]))
    head = seq.head()
    with pytest.raises(FloorDataGasTooLow):  # py-evm's own block builder refuses it now
        seq.chain.mine_all([tx], timestamp=head.timestamp + 1)
    seq.db.discard()
    seq._reset_to(head)
    seq.pool.add(tx)  # as if admission had let it through: the miner drops it, nothing is mined
    assert seq.mine_pending() == []
    assert seq.head() == head and not seq.pool.pending
    assert seq.pool.dropped[bytes(tx.hash)] == (
        "transaction dropped: insufficient gas for floor data gas cost: gas 61000, minimum needed 121000"
    )


# -- creations (EIP-3860) -------------------------------------------------------------------------
def test_initcode_words_are_intrinsic_and_size_is_limited(api: EthApi) -> None:
    key, nonce = _key(api, 3), 0
    # 64 zero bytes of initcode: 21000 + 32000 + 4 * 64 + 2 words * 2 = 53260 (py-evm alone: 53256)
    assert _refused(api, _sign(key, to=None, data=b"\0" * 64, gas=53_259)) == (
        "intrinsic gas too low: gas 53259, minimum needed 53260"
    )
    receipt = _receipt(api, api.eth_sendRawTransaction(_sign(key, to=None, data=b"\0" * 64, gas=53_260)))
    assert receipt["status"] == "0x1" and receipt["contractAddress"] is not None
    nonce += 1
    assert _refused(api, _sign(key, to=None, data=b"\0" * 49_153, gas=1_000_000, nonce=nonce)) == (
        "max initcode size exceeded: code size 49153, limit 49152"
    )
    receipt = _receipt(api, api.eth_sendRawTransaction(
        _sign(key, to=None, data=b"\0" * 49_152, gas=1_000_000, nonce=nonce)))  # fmt: skip
    assert receipt["status"] == "0x1" and int(receipt["gasUsed"], 16) == 21_000 + 10 * 49_152  # the floor


# -- nonce, fees, chain id, signature, types ------------------------------------------------------
def test_nonce_fees_chain_and_type_rules(api: EthApi) -> None:
    key, addr = _key(api, 4), _addr(api, 4).lower()
    assert _refused(api, _sign(key, nonce=2**64 - 1)) == f"nonce has max value: address {addr}, nonce: {2**64 - 1}"
    assert _refused(api, _sign(key, maxPriorityFeePerGas=MAX_FEE + 1)) == (
        f"max priority fee per gas higher than max fee per gas: address {addr}, "
        f"maxPriorityFeePerGas: {MAX_FEE + 1}, maxFeePerGas: {MAX_FEE}"
    )
    base_fee = api.seq.limits().base_fee
    assert _refused(api, _sign(key, maxFeePerGas=base_fee - 1, maxPriorityFeePerGas=0)) == (
        f"max fee per gas less than block base fee: address {addr}, maxFeePerGas: {base_fee - 1}, baseFee: {base_fee}"
    )
    assert _refused(api, _sign(key, chainId=1)) == f"invalid chain id: have 1 want {CHAIN_ID}"
    assert _refused(api, "0x03" + "c0") == "transaction type 3 not supported (blob transactions)"
    # a malleable twin of a valid signature (s' = n - s, parity flipped) recovers the same sender
    good = bytes.fromhex(_sign(key)[2:])
    fields = rlp.decode(good[1:])
    s = int.from_bytes(fields[11], "big")
    fields[9] = b"" if fields[9] == b"\x01" else b"\x01"
    fields[11] = (SECPK1_N - s).to_bytes(32, "big")
    assert _refused(api, "0x02" + rlp.encode(fields).hex()) == "invalid transaction v, r, s values"
    assert _receipt(api, api.eth_sendRawTransaction("0x" + good.hex()))["status"] == "0x1"
    for kind in (0, 1):  # legacy and access-list transactions still pass
        raw = _sign(key, type=kind, nonce=1 + kind, gasPrice=MAX_FEE)
        assert _receipt(api, api.eth_sendRawTransaction(raw))["status"] == "0x1"


# -- EIP-7702 set-code transactions ---------------------------------------------------------------
def _auth(key: bytes, nonce: int, address: str = DELEGATE, chain_id: int = CHAIN_ID) -> Any:
    return Account.sign_authorization({"chainId": chain_id, "address": address, "nonce": nonce}, key)


def _set_code(key: bytes, nonce: int, to: str, auths: list[Any], gas: int = 200_000) -> str:
    return _sign(key, type=4, nonce=nonce, to=to, gas=gas, authorizationList=auths)


def _raw_set_code(api: EthApi, key: bytes, to: bytes, auths: list[Any]) -> str:
    """A type-4 transaction built with py-evm (eth-account refuses to sign the invalid shapes)."""
    unsigned = api.seq.builder.new_unsigned_set_code_transaction(
        chain_id=CHAIN_ID, nonce=0, max_priority_fee_per_gas=TIP, max_fee_per_gas=MAX_FEE, gas=200_000,
        to=to, value=0, data=b"", access_list=[], authorization_list=auths,
    )  # fmt: skip
    return "0x" + bytes(unsigned.as_signed_transaction(keys.PrivateKey(key)).encode()).hex()


def test_set_code_delegates_and_refunds_existing_authorities(api: EthApi) -> None:
    sponsor, authority = _key(api, 5), _key(api, 6)
    auth_addr = _addr(api, 6)
    fresh = keys.PrivateKey(keccak(b"txrules: an authority that does not exist yet"))
    fresh_addr = fresh.public_key.to_checksum_address()
    # an existing authority: 46000 gas before refund, refund min(25000 - 12500, 46000 // 5) = 9200
    tx_hash = api.eth_sendRawTransaction(_set_code(sponsor, 0, auth_addr, [_auth(authority, 0)]))
    receipt = _receipt(api, tx_hash)
    assert receipt["status"] == "0x1" and int(receipt["gasUsed"], 16) == 21_000 + 25_000 - 9_200
    assert api.eth_getCode(auth_addr, "latest") == "0xef0100" + DELEGATE[2:]
    assert _nonce(api, auth_addr) == 1
    # a new account as authority: no refund
    tx_hash = api.eth_sendRawTransaction(_set_code(sponsor, 1, fresh_addr, [_auth(fresh.to_bytes(), 0)]))
    assert int(_receipt(api, tx_hash)["gasUsed"], 16) == 21_000 + 25_000
    assert api.eth_getCode(fresh_addr, "latest") == "0xef0100" + DELEGATE[2:] and _nonce(api, fresh_addr) == 1
    # a delegated EOA still sends transactions (EIP-3607 allows delegations)
    assert _receipt(api, api.eth_sendRawTransaction(_sign(authority, nonce=1)))["status"] == "0x1"
    # chain id 0 is valid on every chain; delegating to the zero address clears the code
    tx_hash = api.eth_sendRawTransaction(
        _set_code(sponsor, 2, auth_addr, [_auth(authority, 2, "0x" + "00" * 20, chain_id=0)]))  # fmt: skip
    assert _receipt(api, tx_hash)["status"] == "0x1"
    assert api.eth_getCode(auth_addr, "latest") == "0x" and _nonce(api, auth_addr) == 3
    # self-sponsored: the sender's nonce is bumped before the authorization is checked
    tx_hash = api.eth_sendRawTransaction(_set_code(authority, 3, auth_addr, [_auth(authority, 4)]))
    assert _receipt(api, tx_hash)["status"] == "0x1"
    assert api.eth_getCode(auth_addr, "latest") == "0xef0100" + DELEGATE[2:] and _nonce(api, auth_addr) == 5


def test_invalid_authorizations_are_skipped_not_the_transaction(api: EthApi) -> None:
    sponsor, authority = _key(api, 7), _key(api, 8)
    auth_addr = _addr(api, 8)
    good = _auth(authority, 0)
    high_s = good.__class__(
        chain_id=good.chain_id, address=good.address, nonce=good.nonce, y_parity=1 - good.y_parity, r=good.r,
        s=SECPK1_N - good.s, signature=good.signature, authorization_hash=good.authorization_hash,
    )  # fmt: skip
    invalid = [
        _auth(authority, 0, chain_id=5),  # another chain
        _auth(authority, 7),  # wrong nonce
        high_s,  # s above n/2 (the same signature, malleated)
    ]
    for auth in invalid:
        nonce = _nonce(api, _addr(api, 7))
        tx_hash = api.eth_sendRawTransaction(_set_code(sponsor, nonce, auth_addr, [auth]))
        receipt = _receipt(api, tx_hash)
        assert receipt["status"] == "0x1" and int(receipt["gasUsed"], 16) == 21_000 + 25_000  # no refund
        assert api.eth_getCode(auth_addr, "latest") == "0x" and _nonce(api, auth_addr) == 0
    # a valid one after an invalid one in the same list still applies
    tx_hash = api.eth_sendRawTransaction(_set_code(sponsor, _nonce(api, _addr(api, 7)), auth_addr, [invalid[0], good]))
    assert _receipt(api, tx_hash)["status"] == "0x1"
    assert api.eth_getCode(auth_addr, "latest") == "0xef0100" + DELEGATE[2:]


def test_set_code_shape_rules(api: EthApi) -> None:
    sponsor = _key(api, 9)
    one = _auth(_key(api, 0), 0)
    as_dict = {"chain_id": one.chain_id, "address": bytes(one.address),
               "nonce": one.nonce, "y_parity": one.y_parity, "r": one.r, "s": one.s}  # fmt: skip
    assert _refused(api, _raw_set_code(api, sponsor, b"", [as_dict])) == (
        "EIP-7702 transaction cannot be used to create contract"
    )
    assert _refused(api, _raw_set_code(api, sponsor, bytes.fromhex(SINK[2:]), [])) == (
        "EIP-7702 transaction with empty auth list"
    )
    # intrinsic gas counts 25000 per authorization
    assert _refused(api, _set_code(sponsor, 0, SINK, [one, one], gas=70_999)) == (
        "intrinsic gas too low: gas 70999, minimum needed 71000"
    )


# -- block building in linear time ----------------------------------------------------------------
def test_batch_of_hundreds_mines_the_valid_and_refuses_the_invalid(
    api: EthApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 floor violators among 300 valid transfers: refused at admission; and if they reach the
    miner anyway, one block holds every valid transaction after exactly two ``mine_all`` calls."""
    seq = api.seq

    def decode(raw: str) -> Any:
        return seq.decode_raw(bytes.fromhex(raw[2:]))

    def interleave(nonce0: int, tag: bytes) -> tuple[list[Any], list[Any]]:
        bad_keys = [keys.PrivateKey(keccak(tag + i.to_bytes(2, "big"))).to_bytes() for i in range(150)]
        bad = [decode(_sign(k, data=b"\0" * 1000, gas=25_000)) for k in bad_keys]  # floor 31000
        good = [decode(_sign(_key(api, i % 3), nonce=nonce0 + i // 3, value=1)) for i in range(150)]
        return bad, good

    bad, good = interleave(0, b"bad-a")
    mixed = [tx for pair in zip(bad, good, strict=True) for tx in pair]
    results = seq.submit(mixed)
    refused = [str(r) for r, tx in zip(results, mixed, strict=True) if tx in bad]
    assert refused == ["insufficient gas for floor data gas cost: gas 25000, minimum needed 31000"] * len(bad)
    assert [r for r, tx in zip(results, mixed, strict=True) if tx in good] == [None] * len(good)
    (block,) = seq.mine_pending()
    assert block.tx_hashes == tuple(bytes(tx.hash) for tx in good)

    bad, good = interleave(50, b"bad-b")
    for tx in [tx for pair in zip(bad, good, strict=True) for tx in pair]:
        seq.pool.add(tx)  # as if admission had been bypassed (a stale or replayed pool)
    calls: list[int] = []
    mine_all = seq.chain.mine_all

    def counting(txs: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(txs))
        return mine_all(txs, *args, **kwargs)

    monkeypatch.setattr(seq.chain, "mine_all", counting)
    (block,) = seq.mine_pending()
    assert block.tx_hashes == tuple(bytes(tx.hash) for tx in good)
    assert calls == [300, 150]  # one refused attempt and the block: no retry per transaction
    assert all(seq.pool.dropped[bytes(tx.hash)].startswith("transaction dropped: insufficient gas for floor")
               for tx in bad)  # fmt: skip
    assert not seq.pool.pending
    record = seq.record(block.number)
    assert record is not None and {r["status"] for r in record["receipts"]} == {"0x1"}


def test_blocks_execute_at_their_own_timestamp_and_reimport(api: EthApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """A block's transactions see the block's TIMESTAMP (py-evm's ``mine_all`` stamps the header only
    after executing), so a validator re-executing the block gets the same state root."""
    from eth.db.atomic import AtomicDB

    from ai_evm.node.accounts import DEV_BALANCE
    from ai_evm.node.vm import chain_class
    from ai_evm.rollup.predeploys import genesis_accounts

    seq = api.seq
    monkeypatch.setattr(seq, "_next_timestamp", lambda head: head.timestamp + 100)  # time passes between blocks
    store_timestamp = "0x" + bytes.fromhex("4260005500").hex()  # constructor: SSTORE(0, TIMESTAMP); STOP
    key = _key(api, 0)
    receipt = _receipt(api, api.eth_sendRawTransaction(_sign(key, to=None, data=store_timestamp, gas=100_000)))
    stale = seq.decode_raw(bytes.fromhex(_sign(_key(api, 1), nonce=7)[2:]))  # unrunnable: the scratch pass path
    seq.pool.add(stale)
    assert seq.submit([seq.decode_raw(bytes.fromhex(_sign(key, to=None, data=store_timestamp, gas=100_000,
                                                           nonce=1)[2:]))]) == [None]  # fmt: skip
    (second,) = seq.mine_pending()
    assert second.tx_hashes and "nonce too high" in seq.pool.dropped[bytes(stale.hash)]
    for number in (int(receipt["blockNumber"], 16), second.number):
        record = seq.record(number)
        assert record is not None
        stored = api.eth_getStorageAt(record["receipts"][0]["contractAddress"], "0x0", hex(number))
        assert int(stored, 16) == int(record["block"]["timestamp"], 16)
    genesis = seq.chain.get_canonical_block_by_number(0)  # type: ignore[arg-type]
    params = {"difficulty": 0, "gas_limit": genesis.header.gas_limit, "timestamp": genesis.header.timestamp,
              "base_fee_per_gas": genesis.header.base_fee_per_gas, "coinbase": b"\0" * 20}  # fmt: skip
    alloc = {a.address_bytes: {"balance": DEV_BALANCE, "nonce": 0, "code": b"", "storage": {}}
             for a in seq.config.accounts}  # fmt: skip
    alloc.update(genesis_accounts())  # the L2 predeploys every genesis holds
    validator = chain_class(make_resolver(None), CHAIN_ID).from_genesis(AtomicDB(), params, alloc)  # type: ignore[arg-type]
    for number in range(1, seq.head().block_number + 1):
        validator.import_block(seq.chain.get_canonical_block_by_number(number))  # type: ignore[arg-type]
    assert validator.get_canonical_head() == seq.head()


def test_a_retry_later_signal_drops_nothing(api: EthApi, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception listed in ``chain.RETRY_LATER`` (e.g. "fetch a model first") aborts the build
    with nothing committed and nothing dropped; the next build mines the same transactions."""
    import ai_evm.node.chain as chain_module

    class NeedsModel(Exception):
        pass

    seq = api.seq
    monkeypatch.setattr(chain_module, "RETRY_LATER", (NeedsModel,))
    tx = seq.decode_raw(bytes.fromhex(_sign(_key(api, 2))[2:]))
    assert seq.submit([tx]) == [None]
    head, mine_all = seq.head(), seq.chain.mine_all

    def not_yet(*args: Any, **kwargs: Any) -> Any:
        raise NeedsModel("model 0x01 must be fetched first")

    monkeypatch.setattr(seq.chain, "mine_all", not_yet)
    with pytest.raises(NeedsModel):
        seq.mine_pending()
    assert seq.head() == head and list(seq.pool.pending) == [bytes(tx.hash)] and not seq.pool.dropped
    monkeypatch.setattr(seq.chain, "mine_all", mine_all)
    (block,) = seq.mine_pending()
    assert block.tx_hashes == (bytes(tx.hash),)
