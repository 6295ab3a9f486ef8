"""The Ethereum JSON-RPC methods (plus ``aievm_*``) over a :class:`~ai_evm.node.chain.Sequencer`.

Each public method of :class:`EthApi` whose name is in :data:`METHODS` is callable over RPC with
positional params; parameters are validated with :mod:`ai_evm.node.encoding` and every refusal is
a named :class:`~ai_evm.node.errors.NodeError`. Sending methods return the transaction hash once
the transaction is mined (automine) or pooled (interval mining).

Methods that execute EVM code for a read (``eth_call``, ``eth_estimateGas``,
``eth_createAccessList``) run on a :class:`~ai_evm.node.snapshot.HeadSnapshot` of the last commit,
without the chain lock, under the RPC gas cap and time limit (:class:`~ai_evm.node.limits.RpcLimits`).
The methods in :data:`LOCK_FREE_METHODS` take no lock and do constant work: the server answers them
on its event loop, so they answer even while every worker thread is busy.
"""

from __future__ import annotations

import threading
from typing import Any

import rlp
from eth_typing import BlockNumber
from eth_utils import keccak

from ai_evm.rollup.outputs import Output, record_from_json

from .access_list import create_access_list
from .chain import Sequencer
from .dev import DevApi
from .encoding import (
    BLOCK_TAGS,
    data,
    parse_address,
    parse_bool,
    parse_data,
    parse_hash,
    parse_quantity,
    parse_storage_slot,
    quantity,
)  # fmt: skip
from .errors import InvalidParams, LimitExceeded, ServerError
from .execution import bounded_chain_class, call, estimate_gas, execution_deadline, parse_call_request
from .fees import fee_history
from .filters import FilterRegistry
from .index import tx_json
from .limits import RpcLimits
from .logs import LogsApi
from .models import get_model
from .proofs import ProofsApi
from .signing import PRIORITY_FEE, SigningApi
from .snapshot import HeadSnapshot, committed_head_number
from .tracing import TracingApi
from .txpool import TxPoolApi

CLIENT_VERSION = "aievm/0.1.0/python"
#: Most L2 blocks one ``aievm_outputAtBlock`` reads (as ``eth_getLogs``' block range).
MAX_OUTPUT_BLOCKS = 10_000


class EthApi(LogsApi, DevApi, SigningApi, ProofsApi, TxPoolApi, TracingApi):
    """The method implementations; ``automine`` mines after every send (or batch of sends);
    ``dev_methods`` serves the test methods of :mod:`ai_evm.node.dev` (never on a rollup node);
    ``dev_accounts`` False: no account is unlocked (``eth_accounts`` is empty, nothing is signed)."""

    def __init__(
        self, seq: Sequencer, automine: bool = True, limits: RpcLimits | None = None, dev_methods: bool = False,
        dev_accounts: bool = True,
    ) -> None:  # fmt: skip
        self.seq = seq
        self.automine = automine
        self.limits = limits if limits is not None else RpcLimits()
        #: the chain class of read calls: the node's, with the time limit checked inside execution
        self.call_chain_class = bounded_chain_class(type(seq.chain))
        self.filters = FilterRegistry()
        seq.rewind_listeners.append(self.filters.rewind)  # evm_revert, an L1 reorg: filters report anew
        self.keys = {a.address_bytes: a.private_key for a in seq.config.accounts} if dev_accounts else {}
        self._local = threading.local()
        self._init_dev(dev_methods)

    @property
    def defer_mining(self) -> bool:
        """True while this thread processes a batch: sends are mined together at its end."""
        return bool(getattr(self._local, "defer", False))

    @defer_mining.setter
    def defer_mining(self, value: bool) -> None:
        self._local.defer = value
        self._local.deferred = []

    # -- block resolution -------------------------------------------------------------------------
    def _header(self, block: Any, name: str = "block", source: Any = None) -> Any:
        """Header for a tag, number, hash or EIP-1898 object; -32000 'header not found' if absent.

        ``source`` answers ``head``/``header_by_number``/``header_by_hash``: the sequencer (under its
        lock, the default) or a :class:`HeadSnapshot`."""
        seq = self.seq if source is None else source
        if block in ("safe", "finalized") and self.seq.heads is not None:
            head = seq.head()
            return seq.header_by_number(min(self._tagged(block), int(head.block_number)))
        if block is None or block in ("latest", "pending", "safe", "finalized"):
            return seq.head()
        if block == "earliest":
            return seq.header_by_number(0)
        if isinstance(block, dict):
            if block.get("blockHash") is not None:
                header = seq.header_by_hash(parse_hash(block["blockHash"], "blockHash"))
                if header is None:
                    raise ServerError("header for hash not found")
                return header
            return self._header(block.get("blockNumber"), name, source)
        if isinstance(block, str) and len(block) == 66:
            return self._header({"blockHash": block}, name, source)
        if isinstance(block, str) and not block.startswith(("0x", "0X")):
            raise InvalidParams(f"invalid {name}: expected a block number or one of {', '.join(BLOCK_TAGS)}")
        header = seq.header_by_number(parse_quantity(block, name, (1 << 63) - 1))
        if header is None:
            raise ServerError("header not found")
        return header

    def _number(self, block: Any, name: str = "block") -> int | None:
        """Block number for a tag or number (None if beyond the head) without reading a header."""
        if block in ("safe", "finalized") and self.seq.heads is not None:
            return min(self._tagged(block), int(self.seq.head().block_number))
        if block is None or block in ("latest", "pending", "safe", "finalized"):
            return int(self.seq.head().block_number)
        if block == "earliest":
            return 0
        if isinstance(block, str) and not block.startswith(("0x", "0X")):
            raise InvalidParams(f"invalid {name}: expected a block number or one of {', '.join(BLOCK_TAGS)}")
        n = parse_quantity(block, name, (1 << 63) - 1)
        return n if n <= self.seq.head().block_number else None

    def _tagged(self, tag: str) -> int:
        """The L2 block L1 makes ``safe`` or ``finalized`` (a rollup node; clamped to the head by
        the callers: a deriving node may not have built the finalized block yet)."""
        heads = self.seq.heads
        assert heads is not None
        return heads.safe() if tag == "safe" else heads.finalized()

    def _state(self, block: Any) -> Any:
        return self.seq.chain.get_vm(self._header(block)).state

    # -- chain info -------------------------------------------------------------------------------
    def web3_clientVersion(self) -> str:
        """Client name and version."""
        return CLIENT_VERSION

    def web3_sha3(self, payload: Any) -> str:
        """keccak256 of the given data."""
        return data(keccak(parse_data(payload, "data")))

    def net_version(self) -> str:
        """The chain id as a decimal string."""
        return str(self.seq.config.chain_id)

    def net_listening(self) -> bool:
        """Always true."""
        return True

    def net_peerCount(self) -> str:
        """Always 0 (a sequencer has no peers)."""
        return "0x0"

    def eth_chainId(self) -> str:
        """The chain id."""
        return quantity(self.seq.config.chain_id)

    def eth_blockNumber(self) -> str:
        """Number of the head block (the last committed one, read without the chain lock)."""
        return quantity(committed_head_number(self.seq.db))

    def eth_syncing(self) -> bool:
        """Always false."""
        return False

    def eth_mining(self) -> bool:
        """Always true."""
        return True

    def eth_hashrate(self) -> str:
        """Always 0."""
        return "0x0"

    def eth_coinbase(self) -> str:
        """The zero address (fees go to nobody on this chain)."""
        return data(b"\0" * 20)

    def eth_accounts(self) -> list[str]:
        """The unlocked dev accounts."""
        return [data(address) for address in self.keys]

    def eth_gasPrice(self) -> str:
        """Next block's base fee plus the suggested priority fee."""
        with self.seq.lock:
            return quantity(self.seq.limits().base_fee + PRIORITY_FEE)

    def eth_maxPriorityFeePerGas(self) -> str:
        """The suggested priority fee (1 gwei)."""
        return quantity(PRIORITY_FEE)

    def eth_feeHistory(self, count: Any, newest: Any, percentiles: Any = None) -> dict[str, Any]:
        """Base fees, gas used ratios and reward percentiles of recent blocks."""
        n = parse_quantity(count, "blockCount", 1 << 32)
        with self.seq.lock:
            last = self._number(newest, "newestBlock")
            if last is None:
                raise ServerError("request beyond head block")
            return fee_history(self.seq, n, last, percentiles)

    # -- state ------------------------------------------------------------------------------------
    def eth_getBalance(self, address: Any, block: Any = "latest") -> str:
        """Balance of an account at a block."""
        addr = parse_address(address)
        with self.seq.lock:
            return quantity(self._state(block).get_balance(addr))

    def eth_getTransactionCount(self, address: Any, block: Any = "latest") -> str:
        """Nonce of an account at a block (``pending`` counts the pool)."""
        addr = parse_address(address)
        with self.seq.lock:
            nonce = self._state(block).get_nonce(addr)
            if block == "pending":
                nonce = self.seq.pool.pending_nonce(addr, nonce)
            return quantity(nonce)

    def eth_getCode(self, address: Any, block: Any = "latest") -> str:
        """Code of an account at a block."""
        addr = parse_address(address)
        with self.seq.lock:
            return data(self._state(block).get_code(addr))

    def eth_getStorageAt(self, address: Any, slot: Any, block: Any = "latest") -> str:
        """One storage word of an account at a block."""
        addr, key = parse_address(address), parse_storage_slot(slot)
        with self.seq.lock:
            return data(self._state(block).get_storage(addr, key).to_bytes(32, "big"))

    def _snapshot(self) -> HeadSnapshot:
        return HeadSnapshot(self.seq.db, self.call_chain_class)

    def eth_call(self, tx: Any, block: Any = "latest", overrides: Any = None, *_: Any) -> str:
        """Run a call on a block's state (optionally overridden) without mining it.

        Runs on a snapshot (no chain lock), with gas clamped to the RPC gas cap, and stops with
        ``execution aborted (timeout = ...)`` once the RPC time limit has passed."""
        req = parse_call_request(tx)
        with self._snapshot() as snap:
            header = self._header(block, source=snap)
            with execution_deadline(self.limits.evm_timeout):
                output = call(snap.vm(header), req, header.gas_limit, overrides, self.limits.gas_cap)
            return data(output)

    def eth_estimateGas(self, tx: Any, block: Any = "latest", overrides: Any = None) -> str:
        """Least gas limit with which the call succeeds (geth's search), on a snapshot (no chain
        lock); the search starts at most at the RPC gas cap and all its runs share one time limit."""
        req = parse_call_request(tx)
        with self._snapshot() as snap:
            header = self._header(block, source=snap)
            vm = snap.vm(header)
            balance = vm.state.get_balance(req.sender)
            with execution_deadline(self.limits.evm_timeout):
                gas = estimate_gas(vm, req, header.gas_limit, balance, overrides, self.limits.gas_cap)
            return quantity(gas)

    def eth_createAccessList(self, tx: Any, block: Any = "latest", overrides: Any = None) -> dict[str, Any]:
        """The EIP-2930 access list of a call and the gas it uses with it (geth's; see
        :mod:`ai_evm.node.access_list`), on a snapshot under the RPC gas cap and time limit."""
        req = parse_call_request(tx)
        with self._snapshot() as snap:
            header = self._header(block, source=snap)
            with execution_deadline(self.limits.evm_timeout):
                return create_access_list(snap.vm(header), req, header.gas_limit, overrides, self.limits.gas_cap)

    def eth_blobBaseFee(self) -> str:
        """Always 1 (no blobs on this chain)."""
        return "0x1"

    # -- sending ----------------------------------------------------------------------------------
    def eth_sendRawTransaction(self, raw: Any) -> str:
        """Admit a signed transaction; with automine, return once it is mined."""
        tx = self._admitted_as(self.seq.decode_raw(parse_data(raw, "transaction")))
        (error,) = self.seq.submit([tx])
        if error is not None:
            raise error
        tx_hash = bytes(tx.hash)
        if self.defer_mining:
            self._local.deferred.append(tx_hash)
        else:
            self._settle([tx_hash])
        return data(tx_hash)

    def _settle(self, hashes: list[bytes]) -> None:
        """Mine (automine) or wait for the interval miner; raise if one of ``hashes`` was dropped."""
        if self.automine:
            self.seq.mine_pending()
        else:
            return
        for h in hashes:
            reason = self.seq.pool.dropped.get(h)
            if reason is not None:
                raise ServerError(reason)

    def flush(self) -> dict[bytes, str]:
        """Mine transactions deferred during a batch; returns the dropped ones with their reasons."""
        hashes = getattr(self._local, "deferred", [])
        self._local.deferred = []
        if not hashes or not self.automine:
            return {}
        self.seq.mine_pending()
        return {h: self.seq.pool.dropped[h] for h in hashes if h in self.seq.pool.dropped}

    # -- transactions and blocks ------------------------------------------------------------------
    def _located(self, tx_hash: bytes) -> tuple[dict[str, Any], int] | None:
        loc = self.seq.tx_location(tx_hash)
        if loc is None:
            return None
        record = self.seq.record(loc[0])
        return (record, loc[1]) if record is not None else None

    def eth_getTransactionByHash(self, tx_hash: Any) -> dict[str, Any] | None:
        """A mined or pending transaction, or null."""
        h = parse_hash(tx_hash)
        with self.seq.lock:
            found = self._located(h)
            if found is not None:
                return _tx_object(found[0], found[1])
            pending = self.seq.pool.pending.get(h)
            return tx_json(pending, None, None) if pending is not None else None

    def debug_getRawTransaction(self, tx_hash: Any) -> str | None:
        """The signed transaction's bytes (EIP-2718 envelope or legacy RLP) of a mined transaction."""
        h = parse_hash(tx_hash)
        with self.seq.lock:
            loc = self.seq.tx_location(h)
            if loc is None:
                return None
            block = self.seq.chain.get_canonical_block_by_number(BlockNumber(loc[0]))
            return data(bytes(block.transactions[loc[1]].encode()))

    def debug_getRawBlock(self, block: Any) -> str | None:
        """The RLP of a canonical block (header, transactions, uncles, withdrawals), or null."""
        with self.seq.lock:
            n = self._number(block)
            if n is None:
                return None
            return data(rlp.encode(self.seq.chain.get_canonical_block_by_number(BlockNumber(n))))

    def eth_getTransactionReceipt(self, tx_hash: Any) -> dict[str, Any] | None:
        """The receipt of a mined transaction, or null."""
        h = parse_hash(tx_hash)
        with self.seq.lock:
            found = self._located(h)
            return dict(found[0]["receipts"][found[1]]) if found is not None else None

    def _record_at(self, block: Any, by_hash: bool) -> dict[str, Any] | None:
        if by_hash:
            header = self.seq.header_by_hash(parse_hash(block, "blockHash"))
            number = None if header is None else int(header.block_number)
        else:
            number = self._number(block)
        return None if number is None else self.seq.record(number)

    def _block(self, block: Any, full: Any, by_hash: bool) -> dict[str, Any] | None:
        full_txs = parse_bool(full, "fullTransactions")
        with self.seq.lock:
            record = self._record_at(block, by_hash)
        if record is None:
            return None
        out = dict(record["block"])
        if full_txs:
            out["transactions"] = [_tx_object(record, i) for i in range(len(record["txs"]))]
        return out

    def eth_getBlockByNumber(self, block: Any, full: Any = False) -> dict[str, Any] | None:
        """A block by number or tag, with transaction hashes or objects."""
        return self._block(block, full, by_hash=False)

    def eth_getBlockByHash(self, block_hash: Any, full: Any = False) -> dict[str, Any] | None:
        """A canonical block by hash, with transaction hashes or objects."""
        return self._block(block_hash, full, by_hash=True)

    def _count(self, block: Any, by_hash: bool) -> str | None:
        with self.seq.lock:
            record = self._record_at(block, by_hash)
        return None if record is None else quantity(len(record["txs"]))

    def eth_getBlockTransactionCountByNumber(self, block: Any) -> str | None:
        """Number of transactions in a block."""
        return self._count(block, by_hash=False)

    def eth_getBlockTransactionCountByHash(self, block_hash: Any) -> str | None:
        """Number of transactions in a block."""
        return self._count(block_hash, by_hash=True)

    def eth_getUncleCountByBlockNumber(self, block: Any) -> str | None:
        """Always 0 for an existing block."""
        return None if self._count(block, by_hash=False) is None else "0x0"

    def eth_getUncleCountByBlockHash(self, block_hash: Any) -> str | None:
        """Always 0 for an existing block."""
        return None if self._count(block_hash, by_hash=True) is None else "0x0"

    def _tx_at(self, block: Any, index: Any, by_hash: bool) -> dict[str, Any] | None:
        i = parse_quantity(index, "index", 1 << 32)
        with self.seq.lock:
            record = self._record_at(block, by_hash)
        if record is None or i >= len(record["txs"]):
            return None
        return _tx_object(record, i)

    def eth_getTransactionByBlockNumberAndIndex(self, block: Any, index: Any) -> dict[str, Any] | None:
        """A transaction by block and position, or null."""
        return self._tx_at(block, index, by_hash=False)

    def eth_getTransactionByBlockHashAndIndex(self, block_hash: Any, index: Any) -> dict[str, Any] | None:
        """A transaction by block hash and position, or null."""
        return self._tx_at(block_hash, index, by_hash=True)

    def eth_getBlockReceipts(self, block: Any) -> list[dict[str, Any]] | None:
        """All receipts of a block, or null."""
        with self.seq.lock:
            by_hash = isinstance(block, str) and len(block) == 66
            record = self._record_at(block, by_hash)
        return None if record is None else list(record["receipts"])

    # -- AI EVM -----------------------------------------------------------------------------------
    def aievm_getInferences(self, tx_hash: Any) -> list[dict[str, Any]] | None:
        """Inference records of a mined transaction ([] if none, null if unknown)."""
        h = parse_hash(tx_hash)
        with self.seq.lock:
            found = self._located(h)
        if found is None:
            return None
        return [r for r in found[0]["inferences"] if r["txHash"] == data(h)]

    def aievm_getBlockInferences(self, block: Any) -> dict[str, Any] | None:
        """A block's inference records and inference root."""
        with self.seq.lock:
            record = self._record_at(block, isinstance(block, str) and len(block) == 66)
        if record is None:
            return None
        return {"inferenceRoot": record["inferenceRoot"], "records": record["inferences"]}

    def aievm_outputAtBlock(self, block: Any) -> dict[str, Any] | None:
        """The output at an L2 block (op-node's ``optimism_outputAtBlock``), null beyond the head.

        The output follows the latest live output before the block in the rollup's
        ``OutputOracle`` (block 0 without ``--rollup``, or before the first output): its inference
        root commits to the records of the blocks in between (``ai_evm.rollup.outputs``)."""
        number = self._number(block)
        if number is None:
            return None
        if number == 0:
            raise InvalidParams("the genesis block has no output (outputs start at block 1)")
        previous = 0
        if self.seq.heads is not None:
            try:
                previous = self.seq.heads.previous_output(number)
            except Exception as e:  # L1 down or answering nonsense: the caller may retry
                raise ServerError(f"cannot read the previous output from L1: {e}") from None
        if number - previous > MAX_OUTPUT_BLOCKS:
            raise LimitExceeded(f"the output at block {number} spans {number - previous} blocks after the output "
                                f"at {previous} (at most {MAX_OUTPUT_BLOCKS})")
        records: list[dict[str, Any]] = []
        for n in range(previous + 1, number + 1):
            with self.seq.lock:
                rec = self.seq.record(n)
            if rec is None:
                raise ServerError(f"block {n} not found")
            records += rec["inferences"]
        blk = rec["block"]
        out = Output(number, int(blk["timestamp"], 16), _bytes(blk["hash"]), _bytes(blk["stateRoot"]),
                     tuple(record_from_json(r) for r in records))
        return {"outputRoot": data(out.output_root), "stateRoot": blk["stateRoot"],
                "inferenceRoot": data(out.inference_root), "blockHash": blk["hash"], "blockNumber": quantity(number),
                "timestamp": blk["timestamp"], "previousBlock": quantity(previous), "records": records}

    def aievm_getModel(self, address: Any) -> dict[str, Any]:
        """Description of a model the node's store can resolve."""
        return get_model(self.seq.resolver, parse_hash(address, "model address"))


def _tx_object(record: dict[str, Any], index: int) -> dict[str, Any]:
    """Transaction ``index`` of a block record as a JSON-RPC object, with the ``blockTimestamp``
    the execution-apis spec adds (taken from the block, so records stored before it have it too)."""
    out = dict(record["txs"][index])
    out["blockTimestamp"] = record["block"]["timestamp"]
    return out


def _bytes(hex_data: str) -> bytes:
    return bytes.fromhex(hex_data[2:])


#: Namespaces of the JSON-RPC methods (``anvil_*`` and most ``evm_*`` answer only with ``--dev-methods``).
NAMESPACES = ("web3", "net", "eth", "personal", "aievm", "evm", "anvil", "hardhat", "debug", "txpool")
METHODS = frozenset(name for name in dir(EthApi) if name.split("_", 1)[0] in NAMESPACES)

#: Methods that take no lock and do constant work (the server may answer them on its event loop).
LOCK_FREE_METHODS = frozenset({
    "web3_clientVersion", "net_version", "net_listening", "net_peerCount", "eth_chainId", "eth_syncing",
    "eth_mining", "eth_hashrate", "eth_coinbase", "eth_accounts", "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee", "eth_blockNumber",
})  # fmt: skip

#: Methods that execute EVM code for a read (bounded by the RPC gas cap and time limit).
CALL_METHODS = frozenset({"eth_call", "eth_estimateGas", "eth_createAccessList", "eth_sendTransaction",
                          "debug_traceTransaction", "debug_traceCall", "debug_traceBlockByNumber",
                          "debug_traceBlockByHash"})
