"""The rollup's proposer and validator (``aievm proposer``, ``aievm validator``).

Both are stateless between polls except for a small JSON state file the proposer keeps for the
outputs it lied about (``--faulty-inference``: only it knows a wrong output's bytes); everything
else is read from L1 (the ``OutputOracle``, ``InferenceRecordDisputes``, the dispute factory and
games) and from an L2 node that **derives** its chain from L1 (``aievm node --derive``), so a killed
agent restarted on the same state resumes.

- :class:`Proposer`: every ``output_interval`` L2 blocks it proposes the output with its bond and
  the inference records of the range (``ai_evm.rollup.outputs``); it defends each challenge of its
  records (reveals the output bytes, posts the matching claim to the factory, plays its games with
  ``ai_evm.dispute.agent.Agent``), finalizes outputs after the window and withdraws its bonds.
  With ``faulty_rate`` it replaces, in that fraction of outputs, the first record's output by a
  corrupted one (``fraud_vm.strategies.Lie("output")``) and defends the lie to the end: for demos
  and tests.
- :class:`Validator`: recomputes every output that is not final from its own derived chain; where
  the inference roots differ it finds the first record that differs (the proposer's records are
  published in the ``propose`` calldata) and challenges it, then challenges the proposer's claim in
  the factory and plays the game honestly; it resolves the record challenge and withdraws what it
  won. A wrong state root whose records are right is reported loudly: that case needs the
  state-transition proof (not built yet).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ai_evm.dispute.agent import Agent, make_player
from ai_evm.dispute.client import L1, TxReverted
from ai_evm.dispute.encode import claim_to_abi, graph_proof
from ai_evm.evm.call import InferenceRecord
from fraud_vm.strategies import Player
from opml.bundle import Bundle
from opml.commitment import prove_header, prove_tensor
from opml.engine import decode_inputs, encode_outputs
from opml.merkle import keccak

from .config import RollupDeployment
from .outputs import Output, first_difference, output_at

RECORD_BYTES = 192
Out = Callable[[str], None]


def io_proof(bundle: Bundle) -> tuple[Any, ...]:
    """``InferenceRecordDisputes.IOProof`` of a bundle: its graph inputs' and outputs' descriptors."""
    hp = prove_header(bundle)

    def tp(t: int) -> tuple[Any, ...]:
        p = prove_tensor(bundle, t)
        return (list(p.tensor_desc), p.data_root, list(p.tensor_path))

    return (keccak(hp.meta), hp.nodes_root, hp.tensors_root, [tp(t) for t in bundle.inputs],
            [tp(t) for t in bundle.outputs])


def decode_records(data: bytes) -> list[InferenceRecord]:
    """Records from their concatenated 192-byte encodings (``OutputOracle.propose``'s calldata)."""
    out = []
    for i in range(0, len(data) - len(data) % RECORD_BYTES, RECORD_BYTES):
        r = data[i : i + RECORD_BYTES]
        out.append(InferenceRecord(r[:32], r[32:64], r[64:96], int.from_bytes(r[160:192], "big"), r[96:128],
                                   int.from_bytes(r[128:160], "big")))
    return out


def record_abi(r: InferenceRecord, index: int, path: list[bytes]) -> tuple[Any, ...]:
    """``InferenceRecordDisputes.RecordProof``."""
    return ((r.model, r.tx_hash.rjust(32, b"\0"), r.call_index, r.gas), r.output_hash, index, path)


class _RollupAgent:
    def __init__(self, l1: L1, rpc: Callable[..., Any], d: RollupDeployment, bundles: Callable[[bytes], Bundle],
                 out: Out = print) -> None:
        self.l1, self.rpc, self.d, self.bundles, self.out = l1, rpc, d, bundles, out
        self.oracle = l1.contract("OutputOracle", d.oracle)
        self.disputes = l1.contract("InferenceRecordDisputes", d.disputes)
        self.factory = l1.contract("DisputeGameFactory", d.factory)
        self._players: dict[tuple[bytes, bytes, str], Player] = {}

    def player(self, model: bytes, input_bytes: bytes, strategy: str) -> Player:
        key = (model, keccak(input_bytes), strategy)
        if key not in self._players:
            bundle = self.bundles(model)
            self._players[key] = make_player(bundle, decode_inputs(bundle, input_bytes), strategy)
        return self._players[key]

    def output_range(self, index: int) -> tuple[int, int, Any]:
        o = self.l1.call(self.oracle.functions.output(index))
        prev = int(self.l1.call(self.oracle.functions.output(index - 1))[3]) if index else 0
        return prev, int(o[3]), o

    def withdraw_all(self) -> None:
        for c, name in ((self.oracle, "oracle"), (self.disputes, "record disputes")):
            amount = int(self.l1.call(c.functions.credit(self.l1.address)))
            if amount:
                r = self.l1.send(c.functions.withdraw(), 0, f"withdraw from the {name}")
                self.out(f"withdrew {amount / 1e18:g} ETH from the {name} (gas {r['gasUsed']:,})")

    def resolve_ready(self) -> None:
        """Resolve every record challenge whose outcome is known (anyone may)."""
        for i in range(int(self.l1.call(self.disputes.functions.challengeCount()))):
            c = self.l1.call(self.disputes.functions.challengeOf(i))
            if int(c[3]) not in (1, 2):
                continue
            try:
                self.l1.call(self.disputes.functions.resolve(i))
            except TxReverted:
                continue
            try:
                r = self.l1.send(self.disputes.functions.resolve(i), 0, f"resolve record challenge {i}")
            except TxReverted:
                if int(self.l1.call(self.disputes.functions.challengeOf(i))[3]) in (1, 2):
                    raise
                continue  # another agent's resolve landed first (both saw it ready): nothing to do
            after = self.l1.call(self.disputes.functions.challengeOf(i))
            verdict = "output deleted" if int(after[3]) == 3 else "output upheld"
            self.out(f"record challenge {i} resolved: {verdict} (gas {r['gasUsed']:,})")


class Proposer(_RollupAgent):
    """Proposes and defends outputs (module docstring)."""

    def __init__(self, l1: L1, rpc: Callable[..., Any], d: RollupDeployment, bundles: Callable[[bytes], Bundle],
                 state_path: Path, faulty_rate: float = 0.0, seed: int = 0, out: Out = print,
                 faulty_max: int | None = None) -> None:
        super().__init__(l1, rpc, d, bundles, out)
        self.state_path, self.faulty_rate, self.faulty_max = state_path, faulty_rate, faulty_max
        self.rng = random.Random(seed)
        self.state: dict[str, Any] = {"lies": {}, "defended": {}}
        if state_path.exists():
            self.state = json.loads(state_path.read_text())

    def _save(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        tmp.replace(self.state_path)

    def tick(self) -> None:
        self.propose_due()
        self.defend()
        self.play()
        self.resolve_ready()
        self.finalize()
        self.withdraw_all()

    def _records_as_posted(self, nonce: int, out: Output) -> list[InferenceRecord]:
        lies = self.state["lies"].get(str(nonce), {})
        recs = list(out.records)
        for idx, wrong_hex in lies.items():
            wrong = bytes.fromhex(wrong_hex)
            recs[int(idx)] = replace(recs[int(idx)], output_hash=keccak(wrong), output=wrong)
        return recs

    def propose_due(self) -> None:
        count = int(self.l1.call(self.oracle.functions.outputCount()))
        last = int(self.l1.call(self.oracle.functions.output(count - 1))[3]) if count else 0
        target = last + self.d.output_interval
        if int(self.rpc("eth_blockNumber"), 16) < target:
            return
        out = output_at(self.rpc, last, target)
        if out.l2_timestamp > self.l1.now():
            return  # the oracle refuses an L2 block newer than L1 time: wait for L1
        nonce = int(self.l1.call(self.oracle.functions.proposals()))
        lies_left = self.faulty_max is None or len(self.state["lies"]) < self.faulty_max
        if out.records and lies_left and self.rng.random() < self.faulty_rate:
            r = out.records[0]
            liar = self.player(r.model, r.input, "output")
            wrong = encode_outputs([liar.env[t] for t in liar.bundle.outputs])
            self.state["lies"][str(nonce)] = {"0": wrong.hex()}
            self._save()  # before the transaction: a restart must still know the lie
        records = self._records_as_posted(nonce, out)
        fn = self.oracle.functions.propose(target, out.l2_timestamp, out.l2_block_hash, out.state_root,
                                           b"".join(r.encode() for r in records))
        receipt = self.l1.send(fn, int(self.l1.call(self.oracle.functions.PROPOSER_BOND())), "propose output")
        lie = " (with a FAULTY inference record)" if str(nonce) in self.state["lies"] else ""
        self.out(f"proposed output {count} at L2 block {target}: {len(records)} inference records{lie}, "
                 f"gas {receipt['gasUsed']:,}")

    def defend(self) -> None:
        me = self.l1.address.lower()
        for i in range(int(self.l1.call(self.disputes.functions.challengeCount()))):
            c = self.l1.call(self.disputes.functions.challengeOf(i))
            if str(c[5]).lower() != me or int(c[3]) != 1 or str(i) in self.state["defended"]:
                continue
            prev, number, o = self.output_range(int(c[0]))
            records = self._records_as_posted(int(o[6]), output_at(self.rpc, prev, number))
            found = [k for k, r in enumerate(records) if r.output_hash == bytes(c[10])]
            if not found:
                self.out(f"record challenge {i}: no record of mine has output hash 0x{bytes(c[10]).hex()}")
                continue
            k = found[0]
            r = records[k]
            lied = str(k) in self.state["lies"].get(str(int(o[6])), {})
            pl = self.player(r.model, r.input, "output" if lied else "honest")
            agent = Agent(self.l1, self.factory, pl, self.out)
            claim_id = agent.propose()
            self.state["defended"][str(i)] = {"claim": claim_id, "model": r.model.hex(), "input": r.input.hex(),
                                             "strategy": "output" if lied else "honest"}
            self._save()
            proof = graph_proof(prove_header(pl.bundle))
            fn = self.disputes.functions.defend(i, r.output, io_proof(pl.bundle), claim_id,
                                                claim_to_abi(pl.make_claim()), proof)
            rcpt = self.l1.send(fn, 0, f"defend record challenge {i}")
            self.out(f"record challenge {i}: defended with claim {claim_id} (gas {rcpt['gasUsed']:,})")

    def play(self) -> None:
        for _, info in self.state["defended"].items():
            pl = self.player(bytes.fromhex(info["model"]), bytes.fromhex(info["input"]), info["strategy"])
            agent = Agent(self.l1, self.factory, pl, self.out)
            for g in self.l1.call(self.factory.functions.gamesOf(int(info["claim"]))):
                agent.tick(str(g))
            agent.settle_claim(int(info["claim"]))
            agent.collect_registry_credit()

    def finalize(self) -> None:
        while self.l1.call(self.oracle.functions.finalizeNext()):
            r = self.l1.send(self.oracle.functions.finalizeNext(), 0, "finalize output")
            self.out(f"output {int(self.l1.call(self.oracle.functions.finalizedCount())) - 1} final "
                     f"(gas {r['gasUsed']:,})")


class Validator(_RollupAgent):
    """Checks every output and challenges wrong inference records (module docstring)."""

    def __init__(self, l1: L1, rpc: Callable[..., Any], d: RollupDeployment, bundles: Callable[[bytes], Bundle],
                 out: Out = print) -> None:
        super().__init__(l1, rpc, d, bundles, out)
        self.checked: dict[int, bool] = {}  # output nonce -> agreed
        self.settled: set[int] = set()  # record challenges whose game is over and paid

    def tick(self) -> None:
        self.check_outputs()
        self.play()
        self.resolve_ready()
        self.withdraw_all()

    def posted_records(self, index: int) -> list[InferenceRecord]:
        """The records the proposer published with output ``index`` (its ``propose`` calldata)."""
        logs = self.oracle.events.OutputProposed().get_logs(argument_filters={"index": index}, from_block=0)
        o = self.l1.call(self.oracle.functions.output(index))
        for ev in reversed(logs):
            tx = self.l1.w3.eth.get_transaction(ev["transactionHash"])
            _, args = self.oracle.decode_function_input(tx["input"])
            if int(args["_l2BlockNumber"]) == int(o[3]) and str(ev["args"]["proposer"]).lower() == str(o[7]).lower():
                return decode_records(bytes(args["_records"]))
        return []

    def check_outputs(self) -> None:
        count = int(self.l1.call(self.oracle.functions.outputCount()))
        head = int(self.rpc("eth_blockNumber"), 16)
        for i in range(int(self.l1.call(self.oracle.functions.finalizedCount())), count):
            prev, number, o = self.output_range(i)
            nonce = int(o[6])
            if nonce in self.checked:
                continue
            if head < number:
                return  # not derived yet
            mine = output_at(self.rpc, prev, number)
            if (bytes(o[0]), bytes(o[1]), bytes(o[2])) == (mine.state_root, mine.inference_root, mine.l2_block_hash):
                self.checked[nonce] = True
                self.out(f"output {i} at L2 block {number}: correct")
                continue
            self.checked[nonce] = False
            if bytes(o[1]) == mine.inference_root:
                self.out(f"!!! output {i} at L2 block {number} has a WRONG STATE ROOT with correct inference records: "
                         "this needs the state-transition fraud proof, which is not built yet; not challenged")
                continue
            theirs = self.posted_records(i)
            k = first_difference(theirs, mine.records)
            if k is None or k >= len(theirs) or k >= len(mine.records) or \
                    theirs[k].input_hash != mine.records[k].input_hash:
                self.out(f"!!! output {i}: its inference records differ in more than an output "
                         "(a state-transition fault); not challengeable by an inference game")
                continue
            if nonce in self.challenged_outputs():
                self.out(f"output {i} at L2 block {number}: record {k} has a wrong output; already challenged by me")
                continue
            r = theirs[k]
            bundle = self.bundles(r.model)
            path = Output(number, 0, b"", b"", tuple(theirs)).record_proof(k)
            rcpt = self.l1.send(self.disputes.functions.challenge(i, record_abi(r, k, path), mine.records[k].input,
                                                                  io_proof(bundle)),
                                int(self.l1.call(self.disputes.functions.CHALLENGE_BOND())),
                                f"challenge record {k} of output {i}")
            self.out(f"output {i} at L2 block {number}: record {k} has a wrong output; challenged "
                     f"(gas {rcpt['gasUsed']:,})")

    def challenged_outputs(self) -> set[int]:
        """Nonces of the outputs this validator has a record challenge on (read from L1, so that a restarted
        validator does not challenge, and pay the bond, twice; nonces, not indices: a deleted index is reused)."""
        me = self.l1.address.lower()
        out = set()
        for j in range(int(self.l1.call(self.disputes.functions.challengeCount()))):
            c = self.l1.call(self.disputes.functions.challengeOf(j))
            if str(c[4]).lower() == me:
                out.add(int(c[1]))
        return out

    def play(self) -> None:
        """Play (and after the end, collect) the games on the claims defending this validator's challenges."""
        me = self.l1.address.lower()
        for i in range(int(self.l1.call(self.disputes.functions.challengeCount()))):
            c = self.l1.call(self.disputes.functions.challengeOf(i))
            if str(c[4]).lower() != me or int(c[3]) < 2 or i in self.settled:
                continue
            agent = Agent(self.l1, self.factory, None, self.out)
            info = agent.claim_info(int(c[11]))
            if int(c[3]) == 2:
                # the challenged record (by its output hash) and this node's record of the same call
                theirs = [r for r in self.posted_records(int(c[0])) if r.output_hash == bytes(c[10])]
                prev, number, _ = self.output_range(int(c[0]))
                mine = [r for r in output_at(self.rpc, prev, number).records
                        if theirs and r.input_hash == theirs[0].input_hash and r.model == theirs[0].model]
                if not mine:
                    continue
                agent.player = self.player(mine[0].model, mine[0].input, "honest")
                if info.status == "pending":
                    agent.tick(agent.challenge(info))
                continue
            game = agent.my_game_on(int(c[11]))  # resolved: collect what the game owes us
            if game is None or agent.tick(game) is not None:
                self.settled.add(i)


__all__ = ["Proposer", "Validator", "decode_records", "io_proof", "record_abi"]
