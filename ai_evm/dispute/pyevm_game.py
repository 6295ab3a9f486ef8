"""Whole dispute games on the compiled contracts in py-evm, played by ``fraud_vm``'s players.

:func:`deploy` puts the dispute contracts on a :class:`~ai_evm.dispute.pyevm.PragueChain`: the step
verifier (the real ``FraudVMStepVerifier`` over ``VMProgram``, or with ``oracle=True`` the test-only
``OracleStepVerifier`` whose verdicts Python fills from ``fraud_vm``), ``BundlePhaseLink``, the
``InferenceDisputeGame`` implementation and the ``DisputeGameFactory``. :func:`play` plays one game
between two ``fraud_vm.strategies.Player`` objects through the factory, as on L1: the claimant
proposes, the challenger challenges, and each player's move is computed the way
``fraud_vm.strategies.play_game`` does, from the Python referee (``fraud_vm.game``) that runs in
lockstep with the contract. Every transaction's verdict must equal the referee's (the same error
name on a rejection) and, after every accepted move, the contract's bisection, move count, turn and
outcome must equal the referee's, else :class:`Divergence`. A player that does not move, or whose
move is rejected, loses by the clock (the opponent calls ``claimTimeout`` at the deadline). At the
end the winner pulls its credit from the game and the claim bond from the factory (after
``finalize`` when the claimant won). Each transaction's receipt gas and calldata size are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak

from ai_evm.contracts import available
from ai_evm.dispute.encode import claim_to_abi, graph_proof, open_steps_data
from ai_evm.dispute.pyevm import GAS_PRICE, ChainError, Contract, PragueChain
from fraud_vm import stepper
from fraud_vm.context import context_for
from fraud_vm.errors import FraudVMError
from fraud_vm.game import Bisect, Game, Move, OpenSteps, Outcome, Phase, Role, Rules, Step, open_game
from fraud_vm.strategies import FraudVMBackend, Player
from fraud_vm.vm import StepWitness
from opml.bundle import Bundle
from opml.commitment import prove_header

__all__ = ["REAL_VERIFIER", "ChainGame", "Deployment", "Divergence", "Tx", "VerifierMissing", "deploy", "play",
           "register_model"]

#: The artifacts of the real step verifier (``contracts/dispute/vm``: the program derivation's two
#: families, their router, the verifier), deployed in this order by ``ai_evm.dispute.deploy``.
REAL_VERIFIER = ("VMProgramBlocked", "VMProgramStream", "VMProgram", "FraudVMStepVerifier")
#: Accounts of the chain: 0 deploys (and fills the oracle), then the two players.
DEPLOYER, ACCOUNT = 0, {Role.CLAIMANT: 1, Role.CHALLENGER: 2}


class VerifierMissing(ChainError):
    """The real step verifier's artifacts are not built (``contracts/build``)."""


class Divergence(AssertionError):
    """The contract and the Python referee disagree on a move's verdict or on the game's state."""


@dataclass
class Deployment:
    """The dispute contracts on one chain; ``oracle``: the verifier is ``OracleStepVerifier``."""

    chain: PragueChain
    verifier: Contract
    link: Contract
    game_impl: Contract
    factory: Contract
    rules: Rules
    oracle: bool
    extra: dict[str, Contract] = field(default_factory=dict)

    def contracts(self) -> dict[str, Contract]:
        """Every deployed contract by artifact name."""
        return {c.name: c for c in (*self.extra.values(), self.verifier, self.link, self.game_impl, self.factory)}


def deploy(chain: PragueChain, *, oracle: bool = False, rules: Rules | None = None) -> Deployment:
    """Deploy verifier, phase link, game implementation and factory with ``rules`` (default ``Rules()``).

    Without ``oracle``: the real verifier, wired by ``ai_evm.dispute.deploy.deploy_dispute_contracts``
    (VerifierMissing if its artifacts are not built). With ``oracle``: ``OracleStepVerifier`` as both
    the step verifier and the phase link's program-length oracle.
    """
    r = rules or Rules()
    if not oracle:
        missing = [n for n in REAL_VERIFIER if n not in available()]
        if missing:
            raise VerifierMissing(f"the Solidity step verifier is not built: no artifact {', '.join(missing)} in "
                                  "contracts/build (node scripts/build_contracts.mjs)")
        from ai_evm.dispute.deploy import deploy_dispute_contracts  # lands with the verifier

        d = deploy_dispute_contracts(chain, r)
        return Deployment(chain, d.verifier, d.phase_link, d.game, d.factory, r, False, {"VMProgram": d.program})
    verifier = chain.deploy("OracleStepVerifier", sender=DEPLOYER)
    link = chain.deploy("BundlePhaseLink", verifier.address)
    impl = chain.deploy("InferenceDisputeGame", verifier.address, link.address, r.clock_s, r.clock_extension_s,
                        r.claim_bond, r.bond_growth_num, r.bond_growth_den)
    factory = chain.deploy("DisputeGameFactory", impl.address, r.challenge_window_s)
    return Deployment(chain, verifier, link, impl, factory, r, True)


def register_model(dep: Deployment, bundle: Bundle, batch: int) -> None:
    """With the oracle verifier, register every node's program length (``fraud_vm.stepper.num_steps``);
    the real verifier computes it from the context itself, so this does nothing then."""
    if not dep.oracle:
        return
    hashes, lengths = [], []
    for k in range(len(bundle.nodes)):
        try:
            ctx = context_for(bundle, k, batch)
            n = stepper.num_steps(ctx)
        except FraudVMError:  # a node the VM cannot run: openSteps on it reverts as it should
            continue
        hashes.append(ctx.hash)
        lengths.append(n)
    _require(dep.verifier.transact("setLengths", hashes, lengths, sender=DEPLOYER), "OracleStepVerifier.setLengths")


def _require(tx: Any, what: str) -> Any:
    if not tx.ok:
        raise ChainError(f"{what} reverted with {tx.error}")
    return tx


@dataclass(frozen=True)
class Tx:
    """One transaction of a game: what it was, who sent it, its receipt gas and calldata bytes."""

    kind: str
    role: Role
    gas: int
    calldata_bytes: int
    ok: bool
    error: str | None = None


@dataclass
class ChainGame:
    """A finished game: the referee's record, the contract's address, every transaction, and each
    player's net wei from bonds and credits (gas excluded), measured from balances."""

    game: Game
    address: bytes
    claim_id: int
    txs: list[Tx]
    net: dict[Role, int]
    rejected: list[str]

    @property
    def outcome(self) -> Outcome:
        return self.game.outcome

    @property
    def winner(self) -> Role | None:
        return self.game.winner

    def total_gas(self, kinds: tuple[str, ...] | None = None) -> int:
        """Receipt gas of the game's transactions (of ``kinds`` only, when given)."""
        return sum(t.gas for t in self.txs if kinds is None or t.kind in kinds)


def _move_kind(mv: Move, phase: Phase) -> str:
    if isinstance(mv, Bisect):
        return "bisect (nodes)" if phase == Phase.NODES else "bisect (steps)"
    if isinstance(mv, OpenSteps):
        return "openSteps" if mv.node_proof is not None else "openSteps (padding)"
    return "step" if mv.witness is not None else "step (padding)"


def _move_args(mv: Move) -> tuple[str, tuple[Any, ...]]:
    if isinstance(mv, Bisect):
        return "bisect", (mv.parent, mv.is_attack, mv.claim)
    if isinstance(mv, OpenSteps):
        return "openSteps", (mv.parent, mv.is_attack, open_steps_data(mv))
    witness = b"" if mv.witness is None else mv.witness.encode()
    return "step", (mv.parent, mv.is_attack, witness)


def _check_state(g: Game, c: Contract) -> None:
    """The contract's state equals the referee's (Divergence otherwise)."""
    got: dict[str, Any] = {"outcome": c.value("outcome"), "moves": c.value("moves")}
    want: dict[str, Any] = {"outcome": int(g.outcome), "moves": g.moves}
    if g.outcome == Outcome.IN_PROGRESS:
        b = g.bisection
        assert b is not None
        clock = (c.value("turnStarted"), c.value("clockUsed", 0), c.value("clockUsed", 1), c.value("deadline"))
        got |= {"mover": c.value("mover"), "bisection": tuple(c.value("bisection")), "clock": clock}
        want |= {"mover": int(g.mover), "bisection": (b.lo_hash, b.hi_hash, b.last_hash, b.length, b.last, b.max_depth,
                                                      int(b.hi_owner), int(b.last_owner)),
                 "clock": (g.turn_started, g.clock_used[Role.CLAIMANT], g.clock_used[Role.CHALLENGER], g.deadline())}
        if g.phase == Phase.STEPS:
            got |= {"nodeIndex": c.value("nodeIndex"), "contextHash": c.value("contextHash")}
            want |= {"nodeIndex": g.node_index, "contextHash": g.context_hash}
    if got != want:
        diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        raise Divergence(f"after move {g.moves} the contract differs from the referee (contract, referee): {diff}")


def _oracle_step(dep: Deployment, g: Game, mv: Step, backend: FraudVMBackend) -> None:
    """Register the Python verdict of a step's witness with the oracle verifier (nothing if it fails)."""
    b = g.bisection
    assert b is not None and isinstance(mv.witness, StepWitness)
    pre = b.lo_hash if mv.is_attack else b.last_hash
    try:
        post = backend.verify_step(pre, mv.witness)
    except FraudVMError:
        return  # the oracle rejects an unregistered witness
    _require(dep.verifier.transact("setStep", pre, keccak(mv.witness.encode()), post, sender=DEPLOYER),
             "OracleStepVerifier.setStep")


def play(dep: Deployment, bundle: Bundle, claimant: Player, challenger: Player,
         backend: FraudVMBackend | None = None, move_seconds: int = 60, max_moves: int = 600) -> ChainGame | None:
    """Play a game on chain between ``claimant`` and ``challenger``; None if the challenger agrees with
    the claim. Divergence if the contract and the referee disagree anywhere."""
    be = backend or FraudVMBackend()
    chain, factory, rules = dep.chain, dep.factory, dep.rules
    claim = claimant.make_claim()
    if not challenger.disputes(claim):
        return None
    players = {Role.CLAIMANT: claimant, Role.CHALLENGER: challenger}
    addr = {r: chain.accounts[a] for r, a in ACCOUNT.items()}
    start = {r: chain.balance(addr[r]) for r in Role}
    txs: list[Tx] = []

    def send(c: Contract, kind: str, role: Role, fn: str, *args: Any, value: int = 0,
             timestamp: int | None = None) -> Any:
        tx = c.transact(fn, *args, sender=ACCOUNT[role], value=value, timestamp=timestamp)
        txs.append(Tx(kind, role, tx.gas_used, tx.calldata_bytes, tx.ok, tx.error))
        return tx

    register_model(dep, bundle, claim.batch)
    abi_claim, proof = claim_to_abi(claim), graph_proof(prove_header(bundle))
    claim_id = _require(send(factory, "propose", Role.CLAIMANT, "propose", abi_claim, proof, value=rules.bond(0)),
                        "propose").values[0]
    opened = _require(send(factory, "challenge", Role.CHALLENGER, "challenge", claim_id, abi_claim, proof), "challenge")
    game_addr = bytes.fromhex(opened.values[0][2:]) if isinstance(opened.values[0], str) else bytes(opened.values[0])
    c = chain.at("InferenceDisputeGame", game_addr)
    g = open_game(bundle.address, prove_header(bundle), claim, be, rules, opened.timestamp, stake_claim_bond=False)
    _check_state(g, c)
    rejected: list[str] = []
    while g.outcome == Outcome.IN_PROGRESS:
        if g.moves >= max_moves:
            raise Divergence(f"the game did not end within {max_moves} moves")
        role = g.mover
        mv = players[role].respond(g)
        if mv is not None:
            now = g.now + move_seconds
            if dep.oracle and isinstance(mv, Step) and mv.witness is not None:
                _oracle_step(dep, g, mv, be)
            kind, phase, bond = _move_kind(mv, g.phase), g.phase, rules.bond(g.moves + 1)
            fn, args = _move_args(mv)
            try:
                g.play(role, mv, now)
                want = None
            except FraudVMError as e:
                want = type(e).__name__
                rejected.append(f"{role.name.lower()} move {g.moves + 1} ({kind}): {want}: {e}")
            tx = send(c, kind, role, fn, *args, value=bond, timestamp=now)
            if tx.error != want:
                raise Divergence(f"{kind} in phase {phase.name}: the contract says {tx.error or 'ok'}, "
                                 f"the referee {want or 'ok'}")
            if want is None:
                _check_state(g, c)
                continue
        # no move, or a rejected one: the opponent ends the game at the mover's deadline
        t = max(g.deadline(), chain.timestamp + 1)
        g.claim_timeout(t)
        _require(send(c, "claimTimeout", role.other, "claimTimeout", timestamp=t), "claimTimeout")
        _check_state(g, c)
    winner = g.winner
    assert winner is not None
    if c.value("credit", addr[winner]) > 0:
        _require(send(c, "claimCredit (game)", winner, "claimCredit", addr[winner]), "claimCredit")
    if winner == Role.CLAIMANT:
        end = max(factory.value("windowEnd", claim_id), chain.timestamp + 1)
        _require(send(factory, "finalize", winner, "finalize", claim_id, timestamp=end), "finalize")
    _require(send(factory, "claimCredit (factory)", winner, "claimCredit", addr[winner]), "factory claimCredit")
    spent = {r: sum(t.gas for t in txs if t.role == r) * GAS_PRICE for r in Role}
    net = {r: chain.balance(addr[r]) - start[r] + spent[r] for r in Role}
    return ChainGame(g, game_addr, claim_id, txs, net, rejected)
