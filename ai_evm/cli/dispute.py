"""``aievm dispute``: play inference disputes on L1 (claim, challenge, watch, status).

Each command is its own process over JSON-RPC. The agents read the game from L1 at every poll and
keep nothing else, so a killed agent restarted with ``watch`` (or the same ``challenge``) continues
where the game stands. Exit codes: 0 the game was won / the claim is final (or, for ``challenge``,
the claim agrees with our result), 1 lost, 2 error (bad input, unreachable L1, a rejected move).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

import click

from . import main

EXIT_WON, EXIT_LOST, EXIT_ERROR = 0, 1, 2


def _echo(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _guarded(fn: Callable[[], int]) -> NoReturn:
    """Run a command body; DisputeError (and interruption) become exit code 2 with a message."""
    from web3.exceptions import Web3Exception

    from ai_evm.dispute.client import DisputeError

    try:
        code = fn()
    except DisputeError as e:
        _fail(str(e))
    except (Web3Exception, OSError) as e:  # an RPC error answer, a dropped connection
        _fail(f"L1 request failed: {e}")
    except click.ClickException as e:  # a bundle or input file that cannot be read
        _fail(e.format_message())
    except KeyboardInterrupt:
        _fail("interrupted")
    sys.exit(code)


def _agent(l1_url: str, key: str | None, factory: str, bundle_path: str | None, inputs: tuple[str, ...],
           strategy: str, lie_node: int | None, lie_step: int, from_block: int = 0) -> Any:
    from ai_evm.dispute.agent import Agent, make_player
    from ai_evm.dispute.client import L1, DisputeError

    from .replay import _load_bundle, _load_inputs

    l1 = L1(l1_url, key)
    fac = l1.contract("DisputeGameFactory", factory)
    player = None
    if bundle_path is not None:
        if not inputs:
            raise DisputeError("--bundle needs --input (one .npy per model input)")
        bundle = _load_bundle(bundle_path)
        player = make_player(bundle, _load_inputs(bundle, inputs, None), strategy, lie_node, lie_step)
    return Agent(l1, fac, player, _echo, from_block)


def l1_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every playing command takes."""
    opts = [
        click.option("--l1", "l1_url", required=True, help="L1 JSON-RPC URL"),
        click.option("--factory", required=True, help="DisputeGameFactory address"),
        click.option("--key", required=True, envvar="AIEVM_L1_KEY", help="private key (hex; or AIEVM_L1_KEY)"),
        click.option("--poll", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
                     help="seconds between reads of the game"),
        click.option("--from-block", type=click.IntRange(min=0), default=0, show_default=True,
                     help="first L1 block searched for the factory's events (e.g. its deployment block)"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def player_options(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options that define the player's view (bundle, inputs) and strategy."""
    from ai_evm.dispute.agent import STRATEGIES

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        opts = [
            click.option("--bundle", "bundle_path", required=required, type=click.Path(exists=True, dir_okay=False),
                         help="the model bundle"),
            click.option("--input", "inputs", multiple=True, required=required,
                         type=click.Path(exists=True, dir_okay=False), help=".npy per model input, in order"),
            click.option("--strategy", type=click.Choice(STRATEGIES), default="honest", show_default=True,
                         help="honest, or a dishonest strategy of fraud_vm.strategies (for tests and drills)"),
            click.option("--lie-node", type=int, help="node where a dishonest strategy starts lying (default: middle)"),
            click.option("--lie-step", type=int, default=1, show_default=True,
                         help="VM step after which the 'step' strategy goes wrong"),
        ]
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return deco


@main.group()
def dispute() -> None:
    """Play inference disputes on L1: propose, challenge, watch and inspect claims and games."""


def _defend(agent: Any, claim_id: int, poll: float) -> int:
    """Play every game on our claim until it is rejected (1) or final (0)."""
    waiting = False
    while True:
        games = [str(g) for g in agent.l1.call(agent.factory.functions.gamesOf(claim_id))]
        outcomes = [agent.tick(g) for g in games]
        status = agent.settle_claim(claim_id)
        if status != "pending":
            # a game this poll ended (our claimTimeout) is settled by one more tick: pull its pot
            outcomes = [agent.tick(g) for g in games]
        if status == "rejected" and all(o is not None for o in outcomes):
            # rejected at the first lost game; the other games on the claim were played to their end
            _echo(f"claim {claim_id} was rejected")
            return EXIT_LOST
        if status == "final":
            agent.collect_registry_credit()
            _echo(f"claim {claim_id} is final; gas used by this agent {agent.l1.gas_used:,}")
            return EXIT_WON
        if not waiting:
            end = int(agent.l1.call(agent.factory.functions.windowEnd(claim_id)))
            _echo(f"claim {claim_id}: answering challenges until the window ends at {end} "
                  f"(now {agent.l1.now()})")
            waiting = True
        time.sleep(poll)


@dispute.command("claim")
@l1_options
@player_options(required=True)
@click.option("--no-wait", is_flag=True, help="propose and exit without playing challenges")
def claim_cmd(l1_url: str, factory: str, key: str, poll: float, from_block: int, bundle_path: str,
              inputs: tuple[str, ...], strategy: str, lie_node: int | None, lie_step: int, no_wait: bool) -> None:
    """Run the inference, propose its claim with the bond, and defend it against every challenge."""

    def body() -> int:
        agent = _agent(l1_url, key, factory, bundle_path, inputs, strategy, lie_node, lie_step, from_block)
        claim_id = agent.propose()
        _echo(f"CLAIM_ID {claim_id}")
        return EXIT_WON if no_wait else _defend(agent, claim_id, poll)

    _guarded(body)


@dispute.command("challenge")
@click.argument("claim_id", type=int)
@l1_options
@player_options(required=True)
@click.option("--force", is_flag=True, help="challenge even if the claim agrees with our own result")
def challenge_cmd(claim_id: int, l1_url: str, factory: str, key: str, poll: float, from_block: int,
                  bundle_path: str, inputs: tuple[str, ...], strategy: str, lie_node: int | None, lie_step: int,
                  force: bool) -> None:
    """Check a claim against our own inference; challenge it if it differs and play the game."""
    from fraud_vm.game import Role

    def body() -> int:
        agent = _agent(l1_url, key, factory, bundle_path, inputs, strategy, lie_node, lie_step, from_block)
        info = agent.claim_info(claim_id)
        if info.claimant.lower() == agent.l1.address.lower():
            from ai_evm.dispute.client import DisputeError

            raise DisputeError(f"claim {claim_id} is this key's own claim")
        agent.check_belief(info.claim)
        game = agent.my_game_on(claim_id)
        if game is None:
            if not force and not agent.player.disputes(info.claim):
                _echo(f"claim {claim_id} agrees with our result (output hash 0x{info.claim.output_hash.hex()}); "
                      "not challenging")
                return EXIT_WON
            game = agent.challenge(info)
        else:
            _echo(f"resuming game {game} on claim {claim_id}")
        while True:
            outcome = agent.tick(game)
            if outcome is not None:
                won = agent.won(outcome, Role.CHALLENGER)
                if won:
                    agent.collect_registry_credit()  # the claim bond, if this game rejected the claim
                _echo(f"game {game}: {'won' if won else 'lost'}; gas used by this agent {agent.l1.gas_used:,}")
                return EXIT_WON if won else EXIT_LOST
            time.sleep(poll)

    _guarded(body)


@dispute.command("watch")
@l1_options
@player_options(required=False)
def watch_cmd(l1_url: str, factory: str, key: str, poll: float, from_block: int, bundle_path: str | None,
              inputs: tuple[str, ...], strategy: str, lie_node: int | None, lie_step: int) -> None:
    """Play every game this key is party to until all are resolved, then collect the bonds won.

    Also finalizes this key's claims once their window has passed. Without --bundle the agent only
    claims timeouts, finalizes and collects credit.
    """
    from ai_evm.dispute.agent import NotOurGame

    def body() -> int:
        agent = _agent(l1_url, key, factory, bundle_path, inputs, strategy, lie_node, lie_step, from_block)
        skipped: set[str] = set()
        while True:
            results = {}
            for g in agent.games_of_mine():
                if g in skipped:
                    continue
                try:
                    results[g] = agent.tick(g)
                except NotOurGame as e:
                    _echo(f"game {g}: not played: {e}")
                    skipped.add(g)
            statuses = {c: agent.settle_claim(c) for c in agent.claims_of_mine()}
            if all(o is not None for o in results.values()) and "pending" not in statuses.values():
                agent.collect_registry_credit()
                lost = [g for g, o in results.items()
                        if o is not None and not agent.won(o, agent.role_in(g))]
                rejected = [c for c, s in statuses.items() if s == "rejected"]
                _echo(f"all games resolved: {len(results) - len(lost)} won, {len(lost)} lost; claims rejected: "
                      f"{rejected or 'none'}; gas used by this agent {agent.l1.gas_used:,}")
                if skipped:
                    return EXIT_ERROR
                return EXIT_LOST if lost or rejected else EXIT_WON
            time.sleep(poll)

    _guarded(body)


@dispute.command("status")
@click.argument("game_or_claim")
@click.option("--l1", "l1_url", required=True, help="L1 JSON-RPC URL")
@click.option("--factory", help="DisputeGameFactory address (needed for a claim id)")
def status_cmd(game_or_claim: str, l1_url: str, factory: str | None) -> None:
    """Show a game (by address) or a claim and its games (by id, with --factory)."""
    from ai_evm.dispute.agent import CLAIM_STATUS, describe, eth
    from ai_evm.dispute.client import L1, DisputeError, read_game

    def show_game(l1: Any, address: str) -> None:
        st = read_game(l1, l1.contract("InferenceDisputeGame", address))
        _echo(f"game {address}: claimant {st.claimant}, challenger {st.challenger}, {st.moves} moves; "
              f"{describe(st, l1.now())}")
        if st.context_hash != bytes(32):
            _echo(f"  phase 2 on node {st.node_index} (context 0x{st.context_hash.hex()}, {st.length} steps)")

    def body() -> int:
        l1 = L1(l1_url)
        if game_or_claim.startswith("0x"):
            show_game(l1, game_or_claim)
            return EXIT_WON
        try:
            claim_id = int(game_or_claim)
        except ValueError:
            raise DisputeError(f"{game_or_claim!r} is neither a game address nor a claim id") from None
        if factory is None:
            raise DisputeError("a claim id needs --factory")
        fac = l1.contract("DisputeGameFactory", factory)
        rec = l1.call(fac.functions.claimRecord(claim_id), f"claim {claim_id}")
        end = int(l1.call(fac.functions.windowEnd(claim_id)))
        _echo(f"claim {claim_id}: claimant {rec[1]}, {CLAIM_STATUS[int(rec[3])]}, bond {eth(int(rec[4]))}, "
              f"window ends {end} (now {l1.now()})")
        for g in l1.call(fac.functions.gamesOf(claim_id)):
            show_game(l1, str(g))
        return EXIT_WON

    _guarded(body)
