"""An auditor's replay of a dispute game from L1 alone: its moves, the pinned step, its re-execution.

:func:`replay_game` reads a game's events (``Move``, ``StepsOpened``, ``Resolved``) and the
transactions that emitted them (calldata, value, receipt), and prints each move: who moved, the
position answered and the new one, the posted claim, the bond and the gas. If the game ended in a
``step``, the witness is decoded from its calldata: the pinned node and instruction (from the
witness's context and pre-state), and ``fraud_vm.vm.verify_step`` re-executes it; the post-state
it computes is compared with the one the contract emitted. Given the bundle, the node's op and name
are shown too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_utils import keccak

from fraud_vm.context import decode_context
from fraud_vm.errors import FraudVMError
from fraud_vm.game import Outcome, Role
from fraud_vm.state import decode_state
from fraud_vm.stepper import instr_at
from fraud_vm.vm import StepWitness, verify_step
from opml.bundle import Bundle

from .agent import describe, eth
from .client import L1, DisputeError, read_game

__all__ = ["replay_game"]


def _short(h: bytes) -> str:
    return "0x" + bytes(h).hex()[:16] + "…"


def replay_game(l1: L1, address: str, bundle: Bundle | None = None, echo: Callable[[str], None] = print) -> Outcome:
    """Print a game move by move from L1 and re-execute its final step; return its outcome."""
    game = l1.contract("InferenceDisputeGame", address)
    st = read_game(l1, game)
    if st.phase is None:
        raise DisputeError(f"{address} is an uninitialized game (the implementation, or a clone never opened)")
    echo(f"game {address}")
    echo(f"  claimant {st.claimant}   challenger {st.challenger}")
    echo(f"  model 0x{st.model_address.hex()}  batch {st.batch}  {st.n_nodes} nodes")
    echo(f"  input hash 0x{st.input_hash.hex()}  output hash 0x{st.output_hash.hex()}")
    if bundle is not None and bundle.address != st.model_address:
        raise DisputeError(f"--bundle is model {bundle.address_hex}, the game is about 0x{st.model_address.hex()}")
    events: list[tuple[tuple[int, int], str, Any]] = []
    for name in ("Move", "StepsOpened", "Resolved"):
        for e in getattr(game.events, name)().get_logs(from_block=0):
            events.append(((int(e["blockNumber"]), int(e["logIndex"])), name, e))
    events.sort(key=lambda x: x[0])
    roles = {st.claimant.lower(): "claimant", st.challenger.lower(): "challenger"}
    number = 0
    last_step: tuple[Any, Any] | None = None
    total_gas = 0
    for _, name, e in events:
        tx = l1.w3.eth.get_transaction(e["transactionHash"])
        receipt = l1.w3.eth.get_transaction_receipt(e["transactionHash"])
        args = e["args"]
        if name == "Move":
            number += 1
            total_gas += int(receipt["gasUsed"])
            fn, inputs = game.decode_function_input(tx["input"])
            kind = fn.fn_name
            who = roles.get(str(args["mover"]).lower(), str(args["mover"]))
            side = "attack" if args["isAttack"] else "defend"
            claim = f" claim {_short(args['claim'])}" if kind == "bisect" else ""
            echo(f"move {number:3d} {who:10s} {kind:9s} {side} {int(args['parent'])} -> {int(args['position'])}"
                 f"{claim}  bond {eth(int(tx['value']))}  gas {int(receipt['gasUsed']):,}  calldata "
                 f"{len(bytes(tx['input'])):,} B")
            if kind == "step":
                last_step = (e, inputs)
        elif name == "StepsOpened":
            k = int(args["nodeIndex"])
            op = ""
            if bundle is not None and k < len(bundle.nodes):
                op = f" ({bundle.nodes[k].op} {bundle.nodes[k].name!r})"
            echo(f"         phase 2 opens on node {k}{op}: {int(args['numSteps']):,} VM steps, derived start "
                 f"{_short(args['startState'])}, root claim {_short(args['rootClaim'])}")
        else:
            fn, _ = game.decode_function_input(tx["input"])
            how = {"claimTimeout": "by the clock (claimTimeout)", "step": "by the one-step check",
                   "openSteps": "on a padding leaf of phase 1"}.get(fn.fn_name, f"by {fn.fn_name}")
            echo(f"resolved {how}: {Outcome(int(args['outcome'])).name.lower().replace('_', ' ')}")
    echo(f"{number} moves, {total_gas:,} gas in moves")
    if last_step is not None:
        _replay_step(last_step, st, bundle, echo)
    echo(describe(st, l1.now()))
    return st.outcome


def _replay_step(last: tuple[Any, Any], st: Any, bundle: Bundle | None, echo: Callable[[str], None]) -> None:
    """The pinned instruction and its re-execution with fraud_vm."""
    e, inputs = last
    emitted = bytes(e["args"]["claim"])  # the post-state the contract computed
    witness = bytes(inputs["_witness"])
    leaf = int(e["args"]["position"])
    if not witness:
        echo(f"final step: leaf {leaf} is past the program's end (padding): no instruction ran")
        return
    try:
        w = StepWitness.decode(witness)
        state = decode_state(w.pre_state)
        ctx = decode_context(w.context)
        ins = instr_at(ctx, state.pc)
    except FraudVMError as err:
        echo(f"final step: the witness does not decode ({err})")
        return
    node = ctx.node
    name = f" {bundle.nodes[ctx.node_index].name!r}" if bundle is not None else ""
    echo(f"pinned: node {ctx.node_index} ({node.op}{name}), step {st.pinned_step} of {st.length}, pc {state.pc}: "
         f"{ins.kind.name} out={list(ins.out)[:4]} a={[list(x) for x in ins.a[:4]]} "
         f"b={[list(x) for x in ins.b[:4]]} imm={list(ins.imm[:6])}")
    echo(f"witness {len(witness):,} B: {len(w.words)} words, {len(w.siblings)} proof hashes; pre-state "
         f"{_short(keccak(w.pre_state))}")
    try:
        post = verify_step(keccak(w.pre_state), w)
    except FraudVMError as err:
        echo(f"fraud_vm rejects the witness: {type(err).__name__}: {err}")
        return
    agree = "matches" if post == emitted else "DIFFERS FROM"
    echo(f"fraud_vm re-executes it: post-state {_short(post)}, which {agree} the contract's {_short(emitted)}")
    winner = {Outcome.CLAIMANT_WINS: Role.CLAIMANT, Outcome.CHALLENGER_WINS: Role.CHALLENGER}.get(st.outcome)
    # the disputed post-state: the last claim's on an attack, the one above it on a defense
    hi_owner = st.last_owner if e["args"]["isAttack"] else st.hi_owner
    if winner is not None:
        echo(f"the disputed post-state was the {hi_owner.name.lower()}'s; "
             f"{'it is right' if winner == hi_owner else 'it is wrong'}: the {winner.name.lower()} wins")
