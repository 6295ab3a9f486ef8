"""A small L2 chain built in-process by the node's own :class:`~ai_evm.node.chain.Sequencer`.

Blocks (each on its own L1 origin; the deposit comes from L1 through ``deposits_for``):

1. three value transfers;
2. a deposit (mint and value transfer to the sink), a contract creation, a transfer, the creation of
   a contract that calls 0xa1 twice with its call data;
3. two calls of the contract (an SSTORE of the calldata and a LOG0), a transfer;
4. empty;
5. two transfers and a call of the contract;
6. an inference call (0xa1, the digits MLP on one sample), a transfer, a call of the contract that
   calls 0xa1 twice (two records of one transaction).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from eth._utils.address import generate_contract_address
from eth_account import Account
from eth_typing import Address
from eth_utils import to_checksum_address

from ai_evm.evm import encode_call
from ai_evm.evm.deposit import deposit_source_hash, new_deposit
from ai_evm.fraudproof import BlockTrace, ChainView, honest_chain
from ai_evm.node.chain import NodeConfig, Sequencer
from ai_evm.node.origin import L1Origin
from ai_evm.node.vm import make_resolver
from opml.bundle import load_bundle
from opml.engine import run_bytes
from opml.merkle import keccak
from opml.store import LocalStore

SINK = bytes.fromhex("000000000000000000000000000000000000dEaD")
DEPOSITOR = bytes.fromhex("00000000000000000000000000000000000d0517")
PORTAL = bytes.fromhex("0000000000000000000000000000000000000b0b")
#: SSTORE(0, CALLDATALOAD(0)); LOG0(0, 0); STOP
RUNTIME = bytes([0x60, 0, 0x35, 0x60, 0, 0x55, 0x60, 0, 0x60, 0, 0xA0, 0x00])
CREATION = bytes([0x60, len(RUNTIME), 0x60, 12, 0x60, 0, 0x39, 0x60, len(RUNTIME), 0x60, 0, 0xF3]) + RUNTIME
#: CALLDATACOPY the call data, CALL 0xa1 with it (twice, discarding the results), STOP
_FORWARD = bytes.fromhex("60006000" "36" "6000" "6000" "60a1" "5a" "f1" "50")
TWICE_RUNTIME = bytes.fromhex("366000600037") + _FORWARD + _FORWARD + b"\x00"
TWICE = bytes([0x60, len(TWICE_RUNTIME), 0x60, 12, 0x60, 0, 0x39, 0x60, len(TWICE_RUNTIME), 0x60, 0, 0xF3]) \
    + TWICE_RUNTIME
PRECOMPILE = b"\0" * 19 + b"\xa1"
ROOT = Path(__file__).resolve().parents[3]
DIGITS_BUNDLE = ROOT / "models" / "digits_mlp" / "model.bundle"
CHAIN_ID = 31337
LAST = 6


@dataclass
class L2Chain:
    """The sequencer, a read view of its database, its blocks re-executed, the contract's address."""

    seq: Sequencer
    view: ChainView
    honest: list[BlockTrace]
    contract: bytes
    model: bytes

    def fresh_view(self) -> ChainView:
        """A view with its own empty overlay (a verifier's or a player's)."""
        return ChainView.of(self.seq)


def sign(key: bytes, nonce: int, to: bytes | None, value: int = 1, data: bytes = b"", gas: int = 21000) -> bytes:
    fields = {"value": value, "gas": gas, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "nonce": nonce,
              "chainId": CHAIN_ID, "type": 2, "data": data}  # fmt: skip
    if to is not None:
        fields["to"] = to_checksum_address(to)
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


@pytest.fixture(scope="package")
def l2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[L2Chain]:
    tmp = Path(tmp_path_factory.mktemp("fraudproof"))
    store = LocalStore(tmp / "models")
    model = store.put(DIGITS_BUNDLE.read_bytes())
    seq = Sequencer(NodeConfig(tmp / "node", sync=False), make_resolver(store))
    seq.origin_for = lambda head, ts: L1Origin(head.block_number + 1, keccak(b"l1%d" % head.block_number), ts)
    deposit = new_deposit(deposit_source_hash(PORTAL, 0), DEPOSITOR, SINK, 5 * 10**18, 1, 100_000, b"")
    seq.deposits_for = lambda parent, origin: [deposit] if parent.block_number == 1 else []
    keys = [a.private_key for a in seq.config.accounts[:3]]
    nonces = [0, 0, 0]
    sender0 = Address(bytes.fromhex(seq.config.accounts[0].address[2:]))
    contract = bytes(generate_contract_address(sender0, 1))
    twice = bytes(generate_contract_address(sender0, 2))

    def tx(i: int, to: bytes | None, **kw: object) -> bytes:
        raw = sign(keys[i], nonces[i], to, **kw)  # type: ignore[arg-type]
        nonces[i] += 1
        return raw

    def block(raws: list[bytes]) -> None:
        assert seq.submit([seq.decode_raw(r) for r in raws]) == [None] * len(raws)
        (mined,) = seq.mine_pending()
        assert len(mined.tx_hashes) >= len(raws)

    block([tx(0, SINK), tx(1, SINK, value=2), tx(2, SINK, value=3)])
    block([tx(0, None, value=0, data=CREATION, gas=200_000), tx(1, SINK),
           tx(0, None, value=0, data=TWICE, gas=200_000)])
    block([tx(0, contract, value=0, data=(7).to_bytes(32, "big"), gas=100_000),
           tx(2, contract, value=0, data=(9).to_bytes(32, "big"), gas=100_000), tx(1, SINK)])
    assert len(seq.mine_pending(allow_empty=True)) == 1
    block([tx(1, SINK), tx(2, SINK), tx(0, contract, value=0, data=(11).to_bytes(32, "big"), gas=100_000)])
    x = np.load(ROOT / "models" / "digits_mlp" / "test_x.npy")[:1].astype("<f4").tobytes()
    call = encode_call(model, len(run_bytes(load_bundle(str(DIGITS_BUNDLE)), x)), x)
    block([tx(1, PRECOMPILE, value=0, data=call, gas=3_000_000), tx(2, SINK),
           tx(0, twice, value=0, data=call, gas=6_000_000)])
    assert seq.head().block_number == LAST
    view = ChainView.of(seq)
    yield L2Chain(seq, view, honest_chain(view, 1, LAST), contract, model)
    seq.close()
