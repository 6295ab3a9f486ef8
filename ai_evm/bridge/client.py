"""The withdrawal steps a user runs (``aievm bridge withdraw|prove|finalize|status``) over JSON-RPC.

1. **withdraw** (L2): ``L2ToL1MessagePasser.initiateWithdrawal``; the receipt's ``MessagePassed`` log
   is the withdrawal (found again later by the L2 transaction hash).
2. **prove** (L1): wait for an output whose L2 block is at or past the withdrawal's; take
   ``eth_getProof(messagePasser, [slot], outputBlock)`` from the L2 node; check that block's state
   root is the output's and the proof verifies (py-trie, independently of the contract); send
   ``Portal.proveWithdrawal``.
3. **finalize** (L1): wait until the proven output is final (its challenge window passed; this step
   finalizes the oracle's outputs itself when their window is over), then
   ``Portal.finalizeWithdrawal``. A proof against an output deleted by a dispute must be redone.

Progress (what is awaited, blocks/seconds to go) goes to the ``echo`` callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.types import RPCEndpoint

from ai_evm.contracts import artifact
from ai_evm.dispute.pyevm import error_name
from ai_evm.rollup.config import RollupDeployment

from .proofs import AccountProof, ProofError, verify_account_proof
from .withdrawal import (
    MESSAGE_PASSED_TOPIC,
    MESSAGE_PASSER,
    Withdrawal,
    WithdrawalError,
    from_message_passed,
    storage_slot,
    withdrawal_hash,
)


class BridgeError(Exception):
    """A bridge step that cannot be done now or at all (the message says why and what to do)."""


@dataclass(frozen=True)
class WithdrawalStatus:
    """Where a withdrawal stands on L1."""

    withdrawal: Withdrawal
    hash: bytes
    l2_block: int
    proven_output: int | None
    """The output index it is proven against (``None``: not proven, or that output was deleted)."""
    proof_stale: bool
    """Proven against an output that was deleted since: prove again."""
    output_final: bool
    finalized: bool
    seconds_to_final: int | None
    """Seconds until the proven output's challenge window is over (0 if over)."""
    covering_output: int | None = None
    """Not proven: the first live output covering the withdrawal's block, if one exists yet."""

    def describe(self) -> str:
        h = "0x" + self.hash.hex()
        if self.finalized:
            return f"withdrawal {h}: finalized"
        if self.proof_stale:
            return f"withdrawal {h}: its output was deleted by a dispute: prove again against a live output"
        if self.proven_output is None:
            ready = "no output covers it yet" if self.covering_output is None else \
                f"ready to prove against output {self.covering_output}"
            return f"withdrawal {h}: initiated in L2 block {self.l2_block}, not proven ({ready})"
        if self.output_final:
            return f"withdrawal {h}: proven against output {self.proven_output}, which is final: ready to finalize"
        return (f"withdrawal {h}: proven against output {self.proven_output}, "
                f"final in {self.seconds_to_final} s (challenge window)")


class Bridge:
    """The L1 Portal and oracle and the L2 node of one rollup, with an optional signing key."""

    def __init__(self, deployment: RollupDeployment, l1: Web3, l2: Web3, key: bytes | None = None,
                 echo: Callable[[str], None] = lambda _m: None, poll: float = 1.0) -> None:
        if deployment.portal is None:
            raise BridgeError("this rollup.json has no portal (deployed before the bridge): redeploy the rollup")
        self.d, self.l1, self.l2, self.echo, self.poll = deployment, l1, l2, echo, poll
        self.account = Account.from_key(key) if key is not None else None
        self.portal = l1.eth.contract(address=Web3.to_checksum_address(deployment.portal), abi=artifact("Portal").abi)
        self.oracle = l1.eth.contract(address=Web3.to_checksum_address(deployment.oracle),
                                      abi=artifact("OutputOracle").abi)
        self.passer = l2.eth.contract(address=MESSAGE_PASSER, abi=artifact("L2ToL1MessagePasser").abi)

    # -- transactions ----------------------------------------------------------------------------

    def _send(self, w3: Web3, fn: Any, what: str, value: int = 0) -> Any:
        if self.account is None:
            raise BridgeError(f"{what} sends a transaction: give a key")
        sender = self.account.address
        try:  # run it first: a revert is reported by its error's name, nothing is sent
            fn.call({"from": sender, "value": value})
        except (ContractCustomError, ContractLogicError) as e:
            data = getattr(e, "data", None)
            name = error_name(bytes.fromhex(data[2:10])) if isinstance(data, str) and data.startswith("0x") else str(e)
            raise BridgeError(f"{what} would revert: {name}") from None
        tx = fn.build_transaction({"from": sender, "value": value,
                                   "nonce": w3.eth.get_transaction_count(sender, "pending")})
        signed = self.account.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=120)
        if receipt["status"] != 1:
            raise BridgeError(f"{what}: transaction 0x{bytes(receipt['transactionHash']).hex()} failed")
        return receipt

    # -- steps -------------------------------------------------------------------------------------

    def withdraw(self, target: str, value: int, gas_limit: int, data: bytes = b"") -> tuple[bytes, Withdrawal]:
        """Initiate a withdrawal on L2; returns the L2 transaction hash and the withdrawal."""
        fn = self.passer.functions.initiateWithdrawal(Web3.to_checksum_address(target), gas_limit, data)
        receipt = self._send(self.l2, fn, "initiateWithdrawal", value)
        tx_hash = bytes(receipt["transactionHash"])
        w, block = self.find(tx_hash)
        self.echo(f"withdrawal 0x{withdrawal_hash(w).hex()} initiated in L2 block {block} (tx 0x{tx_hash.hex()})")
        return tx_hash, w

    def find(self, l2_tx: bytes) -> tuple[Withdrawal, int]:
        """The withdrawal an L2 transaction initiated, and its L2 block."""
        try:
            receipt = self.l2.eth.get_transaction_receipt(l2_tx)  # type: ignore[arg-type]
        except Exception as e:
            raise BridgeError(f"L2 transaction 0x{l2_tx.hex()} not found on the L2 node: {e}") from None
        for log in receipt["logs"]:
            topics = [bytes(t) for t in log["topics"]]
            if topics and topics[0] == MESSAGE_PASSED_TOPIC and log["address"].lower() == MESSAGE_PASSER.lower():
                try:
                    return from_message_passed(dict(log)), int(receipt["blockNumber"])
                except WithdrawalError as e:
                    raise BridgeError(f"L2 transaction 0x{l2_tx.hex()}: {e}") from None
        raise BridgeError(f"L2 transaction 0x{l2_tx.hex()} initiated no withdrawal (no MessagePassed log)")

    def output_covering(self, l2_block: int) -> int | None:
        """The first live output whose L2 block is at or past ``l2_block`` (binary search), if any."""
        lo, hi = 0, int(self.oracle.functions.outputCount().call())
        while lo < hi:
            mid = (lo + hi) // 2
            if int(self.oracle.functions.output(mid).call()[3]) >= l2_block:
                hi = mid
            else:
                lo = mid + 1
        return lo if lo < int(self.oracle.functions.outputCount().call()) else None

    def proof_for(self, w: Withdrawal, output_index: int) -> AccountProof:
        """The message passer's proof with the withdrawal's slot at output ``output_index``'s L2 block,
        checked against the output's state root independently of the L1 contract."""
        out = self.oracle.functions.output(output_index).call()
        state_root, l2_number = bytes(out[0]), int(out[3])
        block = self.l2.eth.get_block(l2_number)
        if bytes(block["stateRoot"]) != state_root:
            raise BridgeError(f"output {output_index}'s state root is not the L2 node's at block {l2_number}: "
                              "the output is wrong (dispute it) or the node follows another chain")
        slot = storage_slot(withdrawal_hash(w))
        params = [MESSAGE_PASSER, ["0x" + slot.hex()], hex(l2_number)]
        raw = self.l2.provider.make_request(RPCEndpoint("eth_getProof"), params)
        if "error" in raw:
            raise BridgeError(f"eth_getProof failed on the L2 node: {raw['error']}")
        try:
            proof = AccountProof.from_json(raw["result"])
            verify_account_proof(state_root, proof)
        except ProofError as e:
            raise BridgeError(f"the L2 node's proof does not verify: {e}") from None
        if proof.storage_proof[0].value != 1:
            raise BridgeError(f"withdrawal 0x{withdrawal_hash(w).hex()} is not in the message passer's storage "
                              f"at L2 block {l2_number}")
        return proof

    def prove(self, l2_tx: bytes, wait: bool = True, timeout: float = 3600) -> int:
        """Prove the withdrawal of ``l2_tx`` against the first output covering it (waiting for one if
        ``wait``); returns the output index."""
        w, l2_block = self.find(l2_tx)
        deadline, said = time.monotonic() + timeout, ""
        while (index := self.output_covering(l2_block)) is None:
            count = int(self.oracle.functions.outputCount().call())
            last = int(self.oracle.functions.output(count - 1).call()[3]) if count else 0
            msg = f"waiting for an output covering L2 block {l2_block}: latest output at L2 block {last}, " \
                  f"{l2_block - last} block(s) to go"
            if not wait or time.monotonic() > deadline:
                raise BridgeError(msg)
            if msg != said:  # say it again only when it changes
                self.echo(msg)
                said = msg
            time.sleep(self.poll)
        proof = self.proof_for(w, index)
        fn = self.portal.functions.proveWithdrawal(w.as_tuple(), index, list(proof.account_proof),
                                                   list(proof.storage_proof[0].proof))
        self._send(self.l1, fn, "proveWithdrawal")
        self.echo(f"withdrawal 0x{withdrawal_hash(w).hex()} proven against output {index}")
        return index

    def status(self, l2_tx: bytes) -> WithdrawalStatus:
        """Where the withdrawal of ``l2_tx`` stands on L1."""
        w, l2_block = self.find(l2_tx)
        h = withdrawal_hash(w)
        finalized = bool(self.portal.functions.finalizedWithdrawals(h).call())
        index, nonce, proven_at = (int(x) for x in self.portal.functions.provenWithdrawals(h).call())
        if finalized:
            return WithdrawalStatus(w, h, l2_block, None, False, False, True, None)
        if proven_at == 0:
            return WithdrawalStatus(w, h, l2_block, None, False, False, False, None, self.output_covering(l2_block))
        count = int(self.oracle.functions.outputCount().call())
        out = self.oracle.functions.output(index).call() if index < count else None
        if out is None or int(out[6]) != nonce:
            return WithdrawalStatus(w, h, l2_block, None, True, False, False, None, self.output_covering(l2_block))
        final = bool(self.oracle.functions.isFinal(index).call())
        window = int(self.oracle.functions.CHALLENGE_WINDOW().call())
        now = int(self.l1.eth.get_block("latest")["timestamp"])
        return WithdrawalStatus(w, h, l2_block, index, False, final, False, max(0, int(out[5]) + window - now))

    def finalize(self, l2_tx: bytes, wait: bool = True, timeout: float = 3600) -> bool:
        """Finalize the withdrawal of ``l2_tx`` once its output is final (waiting if ``wait``);
        returns whether the withdrawal's call succeeded."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.status(l2_tx)
            if s.finalized:
                raise BridgeError(s.describe())
            if s.proof_stale or s.proven_output is None:
                raise BridgeError(s.describe() + ("" if s.proof_stale else ": run `aievm bridge prove` first"))
            if s.output_final:
                break
            to_go = s.seconds_to_final or 0
            if to_go == 0:
                # The window is over: finalize the oracle's outputs up to this one (anyone may).
                try:
                    self._send(self.l1, self.oracle.functions.finalize(s.proven_output), "OutputOracle.finalize")
                    continue
                except BridgeError as e:
                    msg = f"output {s.proven_output} cannot be finalized yet ({e}): an earlier output or a dispute"
            else:
                msg = f"waiting for output {s.proven_output} to be final: {to_go} s to go{self._blocks_to_go(to_go)}"
            if not wait or time.monotonic() > deadline:
                raise BridgeError(msg)
            self.echo(msg)
            time.sleep(self.poll)
        receipt = self._send(self.l1, self.portal.functions.finalizeWithdrawal(s.withdrawal.as_tuple()),
                             "finalizeWithdrawal")
        (event,) = self.portal.events.WithdrawalFinalized().process_receipt(receipt)
        ok = bool(event["args"]["success"])
        outcome = "succeeded" if ok else "failed (the ETH stays in the Portal)"
        self.echo(f"withdrawal 0x{s.hash.hex()} finalized: its call {outcome}")
        return ok

    def _blocks_to_go(self, seconds: int) -> str:
        head = self.l1.eth.get_block("latest")
        n = int(head["number"])
        if n < 10:
            return ""
        past = self.l1.eth.get_block(n - 10)
        per_block = max(1e-3, (int(head["timestamp"]) - int(past["timestamp"])) / 10)
        return f" (about {int(seconds / per_block) + 1} L1 blocks)"


__all__ = ["Bridge", "BridgeError", "WithdrawalStatus"]
