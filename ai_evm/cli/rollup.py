"""``aievm rollup deploy`` and ``aievm batcher``: the rollup's L1 side (docs/rollup.md)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from . import main
from .devnet import devnet


def _key(hexkey: str) -> bytes:
    try:
        key = bytes.fromhex(hexkey[2:] if hexkey.startswith("0x") else hexkey)
    except ValueError:
        raise click.BadParameter("the key must be 32 bytes of hex") from None
    if len(key) != 32:
        raise click.BadParameter("the key must be 32 bytes of hex")
    return key


def _web3(url: str, what: str) -> object:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    try:
        _ = w3.eth.chain_id
    except Exception as e:
        click.echo(f"error: cannot reach the {what} at {url}: {e}", err=True)
        sys.exit(2)
    return w3


@main.group()
def rollup() -> None:
    """Deploy and inspect the rollup's L1 contracts."""


@rollup.command("deploy")
@click.option("--l1", "l1_url", required=True, help="L1 JSON-RPC URL.")
@click.option("--key", required=True, help="Deployer's private key (hex).")
@click.option("--batcher", required=True, help="The batcher's address.")
@click.option("--proposer", required=True, help="The designated proposer's address.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("rollup.json"), show_default=True)
@click.option("--challenge-window", type=click.IntRange(1), default=7 * 24 * 3600, show_default=True,
              help="Seconds an output can be disputed.")
@click.option("--output-interval", type=click.IntRange(1), default=10, show_default=True,
              help="L2 blocks between outputs.")
@click.option("--l2-chain-id", type=click.IntRange(1), default=31337, show_default=True)
def deploy(l1_url: str, key: str, batcher: str, proposer: str, out: Path, challenge_window: int,
           output_interval: int, l2_chain_id: int) -> None:
    """Deploy every L1 contract of a rollup and write its rollup.json."""
    from eth_account import Account
    from web3 import Web3

    from ai_evm.dispute.deploy import Web3Deployer
    from ai_evm.rollup.deploy import RollupParams, deploy_rollup

    k = _key(key)
    for name, addr in (("--batcher", batcher), ("--proposer", proposer)):
        if not Web3.is_address(addr):
            raise click.BadParameter(f"{addr!r} is not an address", param_hint=name)
    w3 = _web3(l1_url, "L1")
    sender = Account.from_key(k).address
    params = RollupParams(challenge_window=challenge_window, output_interval=output_interval, l2_chain_id=l2_chain_id)
    try:
        d = deploy_rollup(Web3Deployer(w3, sender, k), batcher, proposer, params)
    except Exception as e:
        click.echo(f"error: deployment failed: {e}", err=True)
        sys.exit(2)
    d.save(out)
    click.echo(f"rollup deployed on L1 chain {d.l1_chain_id}: inbox {d.inbox}, registry {d.registry}, "
               f"oracle {d.oracle}, disputes {d.disputes}, factory {d.factory}; genesis L1 block "
               f"{d.genesis_l1_number}; wrote {out}")


@main.command("batcher")
@click.option("--rollup", "rollup_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--l1", "l1_url", required=True, help="L1 JSON-RPC URL.")
@click.option("--l2", "l2_url", required=True, help="The sequencer's JSON-RPC URL.")
@click.option("--key", required=True, help="The batcher's private key (hex).")
@click.option("--da", type=click.Choice(["calldata", "blobs"]), default="calldata", show_default=True,
              help="Post batches as calldata or as EIP-4844 blobs.")
@click.option("--poll", type=click.FloatRange(0.05), default=1.0, show_default=True, help="Seconds between rounds.")
@click.option("--once", is_flag=True, help="Post what is pending once and exit.")
@click.option("-v", "--verbose", count=True)
def batcher(rollup_json: Path, l1_url: str, l2_url: str, key: str, da: str, poll: float, once: bool,
            verbose: int) -> None:
    """Post the sequencer's L2 blocks to the L1 batch inbox (restartable: resumes from L1)."""
    from ai_evm.rollup.batcher import Batcher, BatcherError
    from ai_evm.rollup.config import RollupConfigError, RollupDeployment

    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        d = RollupDeployment.load(rollup_json)
        b = Batcher(_web3(l1_url, "L1"), _web3(l2_url, "L2 node"), d, _key(key), da)  # type: ignore[arg-type]
    except (RollupConfigError, BatcherError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(f"batcher: {b.acct.address} -> inbox {d.inbox} ({da}); L1 holds L2 blocks up to {b.posted_through}")
    if once:
        try:
            p = b.step()
        except Exception as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        click.echo("batcher: nothing to post" if p is None else
                   f"batcher: L2 blocks {p.first}..{p.last} -> L1 {p.tx_hash} ({p.da}, {p.data_bytes} B, "
                   f"{p.gas_used} gas)")
        return
    try:
        b.run(poll)
    except KeyboardInterrupt:
        click.echo("batcher stopped")


def _agent_setup(rollup_json: Path, l1_url: str, l2_url: str, key: str, datadir: Path,
                 model_stores: tuple[str, ...]) -> tuple[Any, Any, Any, Any]:
    """(L1 client, L2 rpc, deployment, bundle resolver) for the proposer and validator commands."""
    import json
    import urllib.request

    from ai_evm.cli.node import open_model_store
    from ai_evm.dispute.client import L1, DisputeError
    from ai_evm.rollup.config import RollupConfigError, RollupDeployment

    try:
        d = RollupDeployment.load(rollup_json)
        l1 = L1(l1_url, key)
    except (RollupConfigError, DisputeError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    datadir.mkdir(parents=True, exist_ok=True)
    store = open_model_store(model_stores, datadir)

    def rpc(method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        req = urllib.request.Request(l2_url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            out = json.loads(resp.read())
        if "error" in out:
            raise RuntimeError(f"L2 node: {method}: {out['error'].get('message')}")
        return out["result"]

    def bundles(address: bytes) -> Any:
        return store.get_bundle(address)  # type: ignore[attr-defined]

    return l1, rpc, d, bundles


def _agent_options(fn: Any) -> Any:
    for option in reversed([
        click.option("--rollup", "rollup_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     required=True),
        click.option("--l1", "l1_url", required=True, help="L1 JSON-RPC URL."),
        click.option("--l2", "l2_url", required=True,
                     help="JSON-RPC URL of an L2 node that derives its chain from L1 (aievm node --derive)."),
        click.option("--key", required=True, help="The agent's L1 private key (hex)."),
        click.option("--datadir", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="State and models directory (DATADIR/models is searched first)."),
        click.option("--model-store", "model_stores", multiple=True, metavar="URI",
                     help="More model stores (hub URLs, s3://, directories)."),
        click.option("--poll", type=click.FloatRange(0.05), default=1.0, show_default=True),
        click.option("--rounds", type=click.IntRange(1), default=None, help="Stop after this many polls."),
    ]):
        fn = option(fn)
    return fn


def _loop(agent: Any, poll: float, rounds: int | None) -> None:
    import time

    n = 0
    while rounds is None or n < rounds:
        try:
            agent.tick()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # L1/L2 down, a revert we did not foresee: say it, keep going
            click.echo(f"warning: {type(e).__name__}: {e}", err=True)
        n += 1
        time.sleep(poll)


@main.command("proposer")
@_agent_options
@click.option("--faulty-inference", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of outputs posted with a wrong inference record (demos and tests).")
@click.option("--faulty-max", type=click.IntRange(0), default=None,
              help="Lie in at most this many outputs (default: no limit).")
def proposer(rollup_json: Path, l1_url: str, l2_url: str, key: str, datadir: Path, model_stores: tuple[str, ...],
             poll: float, rounds: int | None, faulty_inference: float, faulty_max: int | None) -> None:
    """Propose bonded outputs every output interval, defend them in disputes, finalize them."""
    from ai_evm.rollup.agents import Proposer

    l1, rpc, d, bundles = _agent_setup(rollup_json, l1_url, l2_url, key, datadir, model_stores)
    agent = Proposer(l1, rpc, d, bundles, datadir / "proposer.json", faulty_inference,
                     out=lambda s: click.echo(f"proposer: {s}"), faulty_max=faulty_max)
    faulty = f", FAULTY rate {faulty_inference:g}" if faulty_inference else ""
    click.echo(f"proposer {l1.address} on oracle {d.oracle} (interval {d.output_interval} L2 blocks{faulty})")
    try:
        _loop(agent, poll, rounds)
    except KeyboardInterrupt:
        click.echo("proposer stopped")


@main.command("validator")
@_agent_options
def validator(rollup_json: Path, l1_url: str, l2_url: str, key: str, datadir: Path, model_stores: tuple[str, ...],
              poll: float, rounds: int | None) -> None:
    """Check every output against the chain derived from L1; challenge wrong inference records and play
    the games to the end."""
    from ai_evm.rollup.agents import Validator

    l1, rpc, d, bundles = _agent_setup(rollup_json, l1_url, l2_url, key, datadir, model_stores)
    agent = Validator(l1, rpc, d, bundles, out=lambda s: click.echo(f"validator: {s}"))
    click.echo(f"validator {l1.address} watching oracle {d.oracle}")
    try:
        _loop(agent, poll, rounds)
    except KeyboardInterrupt:
        click.echo("validator stopped")


# ``aievm rollup devnet`` is ``aievm devnet`` (the whole rollup on 127.0.0.1; ai_evm/cli/devnet.py)
rollup.add_command(devnet, "devnet")
