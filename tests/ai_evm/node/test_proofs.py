"""``eth_getProof`` (EIP-1186), checked by a Merkle-Patricia verifier written here.

The verifier (:func:`verify`) shares no code with the node or py-evm: it walks the proof nodes from
a root hash, RLP-decodes each, checks that each node referenced by hash is the keccak of the next
proof element, follows the key's nibbles through branch, extension and leaf nodes (nodes shorter
than 32 bytes embedded in their parent), and returns the value it proves, or None for a proof of
absence; every proof node must be used. Responses are checked against the header's ``stateRoot``
(what the proposer posts in an output) and against ``eth_getBalance``/``eth_getCode``/
``eth_getStorageAt``: a contract with code and storage, a funded account without code, an absent
account, present, cleared and never-written slots, historical blocks and the block tags. A
hypothesis test writes random storage and proves every slot; another proves random tries with
short keys (embedded nodes) straight through :func:`ai_evm.node.proofs.trie_proof`. Last,
web3.py's ``w3.eth.get_proof`` parses the answer of a node process.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import rlp
from asm import creation
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nodeproc import NodeProcess
from trie import HexaryTrie
from web3 import Web3

from ai_evm.node.chain import NodeConfig, Sequencer
from ai_evm.node.errors import InvalidParams, LimitExceeded, ServerError
from ai_evm.node.methods import METHODS, EthApi
from ai_evm.node.proofs import MAX_PROOF_KEYS, trie_proof
from ai_evm.node.vm import make_resolver

EMPTY_ROOT = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
EMPTY_CODE = bytes.fromhex("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
#: runtime: SSTORE(calldata[0:32], calldata[32:64]); STOP
STORE_RUNTIME = bytes([0x60, 0x20, 0x35, 0x60, 0x00, 0x35, 0x55, 0x00])
ABSENT = "0x00000000000000000000000000000000000a11ce"
FUNDED = "0x000000000000000000000000000000000000f00d"


# -- an independent Merkle-Patricia proof verifier -----------------------------------------------
class BadProof(AssertionError):
    """The proof does not prove anything about the key under the root."""


def to_nibbles(key: bytes) -> list[int]:
    out = []
    for byte in key:
        out += [byte // 16, byte % 16]
    return out


def hex_prefix(encoded: bytes) -> tuple[list[int], bool]:
    """(path nibbles, is_leaf) of a hex-prefix encoded path (Yellow Paper appendix C)."""
    if not encoded:
        raise BadProof("empty path")
    first = encoded[0] // 16
    if first not in (0, 1, 2, 3):
        raise BadProof(f"bad hex-prefix flag {first}")
    odd, leaf = first % 2 == 1, first >= 2
    rest = to_nibbles(encoded)
    if not odd and rest[1] != 0:
        raise BadProof("even path with a nonzero pad nibble")
    return rest[1:] if odd else rest[2:], leaf


def verify(root: bytes, key: bytes, proof: list[bytes], hashed: bool = True) -> bytes | None:
    """The value the proof shows at ``key`` (keccak'd first if ``hashed``) under ``root``, or None."""
    if not proof:
        if root != EMPTY_ROOT:
            raise BadProof("an empty proof only proves the empty trie")
        return None
    path = to_nibbles(keccak(key) if hashed else key)
    remaining = list(proof)

    def take(ref: bytes) -> Any:
        if not remaining:
            raise BadProof("the proof ends before the path does")
        encoded = remaining.pop(0)
        if keccak(encoded) != ref:
            raise BadProof("a proof node is not the keccak preimage of its reference")
        return rlp.decode(encoded)

    node, value = take(root), None
    while True:
        if not isinstance(node, list) or len(node) not in (2, 17):
            raise BadProof("not a trie node")
        if len(node) == 17:
            if not path:
                value = node[16] or None
                break
            child, path = node[path[0]], path[1:]
        else:
            segment, leaf = hex_prefix(node[0])
            if leaf:
                value = node[1] if segment == path else None
                break
            if path[: len(segment)] != segment:
                break  # the key leaves the trie here: absent
            child, path = node[1], path[len(segment):]
        if child == b"":
            break
        if isinstance(child, list):
            if len(rlp.encode(child)) >= 32:
                raise BadProof("an embedded node of 32 bytes or more")
            node = child
        elif isinstance(child, bytes) and len(child) == 32:
            node = take(child)
        else:
            raise BadProof("a child reference that is neither a hash nor an embedded node")
    if remaining:
        raise BadProof(f"{len(remaining)} proof nodes left over")
    return value


def b(hex_str: str) -> bytes:
    return bytes.fromhex(hex_str[2:])


def check_response(api: EthApi, address: str, keys: list[int], block: Any) -> dict[str, Any]:
    """eth_getProof at ``block`` verified against that block's stateRoot and the state methods."""
    got = api.eth_getProof(address, [hex(k) for k in keys], block)
    header = api.eth_getBlockByNumber(block, False) if not isinstance(block, dict) else None
    header = header or api.eth_getBlockByHash(block["blockHash"], False)
    assert header is not None
    number = header["number"]
    account = verify(b(header["stateRoot"]), b(address), [b(n) for n in got["accountProof"]])
    if account is None:
        fields = [0, 0, EMPTY_ROOT, EMPTY_CODE]
    else:
        nonce, balance, storage_root, code_hash = rlp.decode(account)
        fields = [int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"), storage_root, code_hash]
    assert [int(got["nonce"], 16), int(got["balance"], 16), b(got["storageHash"]), b(got["codeHash"])] == fields
    assert got["balance"] == api.eth_getBalance(address, number)
    assert got["nonce"] == api.eth_getTransactionCount(address, number)
    assert b(got["codeHash"]) == keccak(b(api.eth_getCode(address, number)))
    assert len(got["storageProof"]) == len(keys)
    for key, item in zip(keys, got["storageProof"], strict=True):
        assert item["key"] == "0x" + key.to_bytes(32, "big").hex()
        value = verify(b(got["storageHash"]), key.to_bytes(32, "big"), [b(n) for n in item["proof"]])
        word = 0 if value is None else int.from_bytes(rlp.decode(value), "big")
        assert value is None or word != 0  # zero words are deleted, never stored
        assert int(item["value"], 16) == word == int(api.eth_getStorageAt(address, hex(key), number), 16)
    return got


# -- an in-process chain -------------------------------------------------------------------------
class Chain:
    """A sequencer and its API; sends signed transactions from dev account 0, one block each."""

    def __init__(self, datadir: Path) -> None:
        self.seq = Sequencer(NodeConfig(datadir, sync=False), make_resolver(None))
        self.api = EthApi(self.seq)
        self.key = self.seq.config.accounts[0].private_key
        self.nonce = 0

    def send(self, *txs: dict[str, Any]) -> int:
        """Mine ``txs`` in one block; its number."""
        raws = []
        for tx in txs:
            fields = {"value": 0, "gas": 200_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
                      "nonce": self.nonce, "chainId": 31337, "type": 2, "data": b"", **tx}  # fmt: skip
            raws.append(self.seq.decode_raw(bytes(Account.sign_transaction(fields, self.key).raw_transaction)))
            self.nonce += 1
        assert self.seq.submit(raws) == [None] * len(raws)
        (block,) = self.seq.mine_pending()
        return int(block.number)

    def deploy_store(self) -> str:
        number = self.send({"data": creation(STORE_RUNTIME), "gas": 100_000})
        record = self.seq.record(number)
        assert record is not None and record["receipts"][-1]["status"] == "0x1"
        return str(record["receipts"][-1]["contractAddress"])

    def writes(self, contract: str, slots: dict[int, int]) -> int:
        return self.send(*({"to": to_checksum_address(contract),
                            "data": k.to_bytes(32, "big") + v.to_bytes(32, "big")} for k, v in slots.items()))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Chain, str, list[int]]:
    """Blocks: 1 deploys the store contract, 2 writes slots, 3 funds an address and rewrites and
    clears slots. Returns the chain, the contract, and the blocks' numbers."""
    c = Chain(tmp_path_factory.mktemp("proofs") / "node")
    contract = c.deploy_store()
    written = c.writes(contract, {0: 7, 1: 2**256 - 1, 5: 1, 2**255: 0xDEAD})
    changed = c.send({"to": to_checksum_address(FUNDED), "value": 12345, "gas": 21_000},
                     {"to": to_checksum_address(contract), "data": (1).to_bytes(32, "big") + (0).to_bytes(32, "big")},
                     {"to": to_checksum_address(contract), "data": (5).to_bytes(32, "big") + (9).to_bytes(32, "big")})
    return c, contract, [1, written, changed]


def test_get_proof_is_an_rpc_method() -> None:
    assert "eth_getProof" in METHODS


def test_a_contract_with_code_and_storage(chain: tuple[Chain, str, list[int]]) -> None:
    c, contract, (_, written, changed) = chain
    keys = [0, 1, 5, 2**255, 3, 2**256 - 1]  # present, present, present, present, never written
    got = check_response(c.api, contract, keys, hex(written))
    assert b(got["codeHash"]) == keccak(STORE_RUNTIME) and got["nonce"] == "0x1"  # EIP-161: contracts start at 1
    assert [item["value"] for item in got["storageProof"]] == ["0x7", hex(2**256 - 1), "0x1", "0xdead", "0x0", "0x0"]
    assert all(item["proof"] for item in got["storageProof"])  # a non-empty trie proves absence too
    now = check_response(c.api, contract, keys, "latest")
    assert int(c.api.eth_blockNumber(), 16) == changed
    assert [item["value"] for item in now["storageProof"]] == ["0x7", "0x0", "0x9", "0xdead", "0x0", "0x0"]
    assert now["storageHash"] != got["storageHash"] and now["accountProof"] != got["accountProof"]


def test_accounts_without_code_absent_accounts_and_old_blocks(chain: tuple[Chain, str, list[int]]) -> None:
    c, contract, (deployed, written, changed) = chain
    funded = check_response(c.api, FUNDED, [0, 1], "latest")
    assert funded["balance"] == hex(12345) and b(funded["storageHash"]) == EMPTY_ROOT
    assert b(funded["codeHash"]) == EMPTY_CODE and [i["proof"] for i in funded["storageProof"]] == [[], []]
    before = check_response(c.api, FUNDED, [0], hex(written))  # absent before block 3 funded it
    assert before["balance"] == "0x0" and before["accountProof"]
    for block in ("0x0", hex(deployed), "latest", "earliest", "pending"):
        absent = check_response(c.api, ABSENT, [0, 42], block)
        assert (absent["nonce"], absent["balance"]) == ("0x0", "0x0")
        assert b(absent["storageHash"]) == EMPTY_ROOT and b(absent["codeHash"]) == EMPTY_CODE
        assert absent["storageProof"] == [{"key": "0x" + k.to_bytes(32, "big").hex(), "value": "0x0", "proof": []}
                                          for k in (0, 42)]  # fmt: skip
    genesis = check_response(c.api, contract, [0], "0x0")  # the contract did not exist yet
    assert genesis["codeHash"] == "0x" + EMPTY_CODE.hex()
    sender = c.seq.config.accounts[0].address
    for n in range(changed + 1):
        assert check_response(c.api, sender, [], hex(n))["nonce"] == hex([0, 1, 5, 8][n])
    by_hash = c.api.eth_getBlockByNumber(hex(written), False)["hash"]  # type: ignore[index]
    assert c.api.eth_getProof(contract, ["0x0"], {"blockHash": by_hash}) == c.api.eth_getProof(contract, ["0x0"],
                                                                                               hex(written))
    assert c.api.eth_getProof(contract, ["0x0"], by_hash) == c.api.eth_getProof(contract, ["0x0"], hex(written))


class ScriptedHeads:
    """The L1 view of a rollup node (``safe``/``finalized``), given."""

    def __init__(self, safe: int, finalized: int) -> None:
        self._safe, self._finalized = safe, finalized

    def safe(self) -> int:
        return self._safe

    def finalized(self) -> int:
        return self._finalized


def test_safe_and_finalized_resolve_as_on_the_other_state_methods(chain: tuple[Chain, str, list[int]]) -> None:
    c, contract, (deployed, written, _) = chain
    c.seq.heads = ScriptedHeads(safe=written, finalized=deployed)
    try:
        for tag, number in (("safe", written), ("finalized", deployed)):
            got = check_response(c.api, contract, [0, 1], tag)
            assert got == c.api.eth_getProof(contract, ["0x0", "0x1"], hex(number))
            assert got["balance"] == c.api.eth_getBalance(contract, tag)
            root = c.api.eth_getBlockByNumber(tag, False)["stateRoot"]  # type: ignore[index]
            assert verify(b(root), b(contract), [b(n) for n in got["accountProof"]]) is not None
    finally:
        c.seq.heads = None


def test_the_proven_root_is_the_root_an_output_commits_to(chain: tuple[Chain, str, list[int]]) -> None:
    from ai_evm.rollup.outputs import output_at

    c, contract, (_, written, changed) = chain

    def rpc(method: str, *params: Any) -> Any:
        return getattr(c.api, method)(*params)

    output = output_at(rpc, written, changed)
    got = c.api.eth_getProof(contract, ["0x5"], hex(changed))
    value = verify(output.state_root, b(contract), [b(n) for n in got["accountProof"]])
    assert value is not None and rlp.decode(value)[2] == b(got["storageHash"])
    slot = verify(b(got["storageHash"]), (5).to_bytes(32, "big"), [b(n) for n in got["storageProof"][0]["proof"]])
    assert slot is not None and rlp.decode(slot) == b"\x09"


def test_params_are_validated_with_named_errors(chain: tuple[Chain, str, list[int]]) -> None:
    c, contract, _ = chain
    api = c.api
    with pytest.raises(InvalidParams, match="address"):
        api.eth_getProof("0x1234", [], "latest")
    with pytest.raises(InvalidParams, match="storageKeys: expected an array"):
        api.eth_getProof(contract, "0x0", "latest")
    with pytest.raises(InvalidParams, match=r"storageKeys\[1\]"):
        api.eth_getProof(contract, ["0x0", "0xzz"], "latest")
    with pytest.raises(InvalidParams, match=r"storageKeys\[0\]"):
        api.eth_getProof(contract, ["0x" + "11" * 33], "latest")
    with pytest.raises(LimitExceeded, match=f"at most {MAX_PROOF_KEYS}"):
        api.eth_getProof(contract, ["0x0"] * (MAX_PROOF_KEYS + 1), "latest")
    assert len(api.eth_getProof(contract, ["0x1"] * MAX_PROOF_KEYS, "latest")["storageProof"]) == MAX_PROOF_KEYS
    with pytest.raises(ServerError, match="header not found"):
        api.eth_getProof(contract, [], "0x99")
    with pytest.raises(InvalidParams, match="block"):
        api.eth_getProof(contract, [], "soon")
    with pytest.raises(ServerError, match="header for hash not found"):
        api.eth_getProof(contract, [], "0x" + "ab" * 32)
    with pytest.raises(BadProof):  # the verifier itself rejects a proof of another key
        got = api.eth_getProof(contract, ["0x0"], "latest")
        verify(b(got["storageHash"]), (0).to_bytes(32, "big"), [b(n) for n in got["storageProof"][0]["proof"]][:-1])


# -- properties ----------------------------------------------------------------------------------
SLOTS = st.one_of(st.integers(0, 40), st.integers(0, 2**256 - 1))
WORDS = st.one_of(st.just(0), st.integers(1, 255), st.integers(0, 2**256 - 1))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(st.dictionaries(SLOTS, WORDS, min_size=1, max_size=12), min_size=1, max_size=3),
       probes=st.lists(SLOTS, max_size=4))
def test_random_storage_writes_are_proven_at_every_block(blocks: list[dict[int, int]], probes: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="proofs-") as tmp:
        c = Chain(Path(tmp) / "node")
        contract = c.deploy_store()
        expected: dict[int, int] = {}
        history = []
        for writes in blocks:
            number = c.writes(contract, writes)
            expected.update(writes)
            history.append((number, dict(expected)))
        keys = sorted(set(expected) | set(probes))
        for number, state in history:
            got = check_response(c.api, contract, keys, hex(number))
            assert [int(i["value"], 16) for i in got["storageProof"]] == [state.get(k, 0) for k in keys]
            if not any(state.values()):
                assert b(got["storageHash"]) == EMPTY_ROOT
        for item in got["storageProof"]:  # a proof changed anywhere proves nothing
            if item["proof"]:
                nodes = [b(n) for n in item["proof"]]
                nodes[-1] = nodes[-1][:-1] + bytes([nodes[-1][-1] ^ 1])
                with pytest.raises(BadProof):
                    verify(b(got["storageHash"]), int(item["key"], 16).to_bytes(32, "big"), nodes)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=3), st.binary(min_size=1, max_size=40), max_size=30),
       st.lists(st.binary(min_size=1, max_size=3), max_size=5))
def test_trie_proof_of_short_keys_with_embedded_nodes(items: dict[bytes, bytes], probes: list[bytes]) -> None:
    """Raw (not hashed) keys of the same length, short values: nodes under 32 bytes sit inside their parents."""
    width = 3
    items = {k.rjust(width, b"\0"): v for k, v in items.items()}
    db: dict[bytes, bytes] = {}
    t = HexaryTrie(db)
    for k, v in items.items():
        t[k] = v
    for key in [*items, *(p.rjust(width, b"\0") for p in probes)]:
        proof, value = trie_proof(db, t.root_hash, key)
        assert value == items.get(key)
        assert verify(t.root_hash, key, proof, hashed=False) == items.get(key)


def test_embedded_nodes_are_not_listed_as_proof_nodes() -> None:
    db: dict[bytes, bytes] = {}
    t = HexaryTrie(db)
    for i in range(16):
        t[bytes([i * 16 + 1])] = b"v"  # 16 tiny leaves: each embedded in the root branch
    proof, value = trie_proof(db, t.root_hash, bytes([0x31]))
    assert value == b"v" and len(proof) == 1 and keccak(proof[0]) == t.root_hash
    assert verify(t.root_hash, bytes([0x31]), proof, hashed=False) == b"v"
    proof, value = trie_proof(db, t.root_hash, bytes([0x32]))  # same branch slot, another leaf path
    assert value is None and verify(t.root_hash, bytes([0x32]), proof, hashed=False) is None


# -- web3.py against a node process --------------------------------------------------------------
def test_web3_parses_get_proof(node: NodeProcess) -> None:
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
    sender = w3.eth.accounts[0]
    deploy = w3.eth.send_transaction({"from": sender, "data": creation(STORE_RUNTIME)})
    receipt = w3.eth.wait_for_transaction_receipt(deploy)
    contract = receipt["contractAddress"]
    tx = {"from": sender, "to": contract, "data": (3).to_bytes(32, "big") + (77).to_bytes(32, "big")}
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx))  # type: ignore[arg-type]
    proof = w3.eth.get_proof(contract, [3, 4], "latest")
    block = w3.eth.get_block("latest")
    assert proof["address"] == contract and proof["codeHash"] == keccak(STORE_RUNTIME)
    assert proof["nonce"] == 1 and proof["balance"] == 0
    account = verify(bytes(block["stateRoot"]), b(contract), [bytes(n) for n in proof["accountProof"]])
    assert account is not None and rlp.decode(account)[2] == bytes(proof["storageHash"])
    words = [int.from_bytes(bytes(s["value"]), "big") for s in proof["storageProof"]]  # web3.py: HexBytes
    assert words == [77, 0]
    for slot, word, item in zip((3, 4), words, proof["storageProof"], strict=True):
        assert int.from_bytes(bytes(item["key"]), "big") == slot
        value = verify(bytes(proof["storageHash"]), slot.to_bytes(32, "big"), [bytes(n) for n in item["proof"]])
        assert (0 if value is None else int.from_bytes(rlp.decode(value), "big")) == word


JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**300) | st.text(max_size=70)
                    | st.sampled_from(["0x0", "0x", "0x" + "00" * 32, "latest", "safe", "0x" + "ab" * 20]),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
                        ["blockHash", "blockNumber", "x"]), inner, max_size=2), max_leaves=8)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(JSON, max_size=4))
def test_any_params_get_an_answer_or_a_named_error(chain: tuple[Chain, str, list[int]], params: list[Any]) -> None:
    from ai_evm.node.errors import NodeError

    c, _, _ = chain
    if not 2 <= len(params) <= 3:  # the server answers -32602 before calling (a wrong number of params)
        with pytest.raises(TypeError):
            c.api.eth_getProof(*params)
        return
    try:
        c.api.eth_getProof(*params)
    except NodeError:
        pass


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")
def test_storage_proofs_equal_anvils_node_for_node(tmp_path: Path) -> None:
    """The same storage on anvil: the same storage root and the same proof nodes (the storage trie
    depends only on its contents), so clients that check anvil's or geth's proofs check ours."""
    from ai_evm.rollup.anvil import Anvil

    # no zero writes: anvil 1.7.1 (npm @foundry-rs/anvil) keeps a slot written with 0 in its storage
    # trie (its storage root then differs from the one a trie of the nonzero slots has, which is ours)
    slots = {0: 7, 1: 2**256 - 1, 5: 1, 2**255: 0xDEAD, **{1000 + i: i + 1 for i in range(40)}}
    keys = [0, 1, 2, 3, 5, 2**255, 1000, 1017, 1039, 5000]
    c = Chain(tmp_path / "node")
    ours = c.deploy_store()
    c.writes(ours, slots)
    mine = c.api.eth_getProof(ours, [hex(k) for k in keys], "latest")
    with Anvil(tmp_path / "anvil.log") as url:
        w3 = Web3(Web3.HTTPProvider(url))
        sender = w3.eth.accounts[0]
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": sender,
                                                                               "data": creation(STORE_RUNTIME)}))
        theirs = receipt["contractAddress"]
        for k, v in slots.items():
            tx = {"from": sender, "to": theirs, "data": k.to_bytes(32, "big") + v.to_bytes(32, "big")}
            w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx))  # type: ignore[arg-type]
        words = ["0x" + k.to_bytes(32, "big").hex() for k in keys]  # anvil takes 32-byte keys only
        anvil = w3.provider.make_request("eth_getProof", [theirs, words, "latest"])["result"]  # type: ignore[arg-type]
        root = w3.eth.get_block("latest")["stateRoot"]
    assert verify(bytes(root), b(theirs), [b(n) for n in anvil["accountProof"]]) is not None  # the verifier agrees
    assert mine["storageHash"] == anvil["storageHash"] and mine["codeHash"] == anvil["codeHash"]
    for key, a, m in zip(keys, anvil["storageProof"], mine["storageProof"], strict=True):
        assert int(a["key"], 16) == int(m["key"], 16) == key
        assert int(a["value"], 16) == int(m["value"], 16)
        assert [n.lower() for n in a["proof"]] == m["proof"], key
