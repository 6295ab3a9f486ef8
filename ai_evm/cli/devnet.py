"""``aievm devnet``: a node with the example models in its store and the example contracts deployed."""

from __future__ import annotations

import atexit
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ai_evm.cli import main
from ai_evm.cli.node import serving_options

if TYPE_CHECKING:
    from ai_evm.node.limits import RpcLimits
    from opml.store import FetchLimits


@main.command("devnet")
@click.option("--datadir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Chain directory (default: a temporary one, deleted on exit).")
@serving_options
@click.option("-v", "--verbose", count=True)
def devnet(
    datadir: Path | None, host: str, port: int, chain_id: int, block_time: float | None,
    fetch_limits: FetchLimits,
    model_stores: tuple[str, ...], limits: RpcLimits, verbose: int,
) -> None:  # fmt: skip
    """Start a development node: example models stored, AIContract and DigitsClassifier deployed.

    Prints the RPC URL, dev accounts, model and contract addresses, and writes them to
    DATADIR/devnet.json. (First version: L2 only; the L1 side comes with the rollup.)
    """
    import ai_evm.node  # noqa: F401  (fast keccak backend before py-evm hashes anything)
    from ai_evm.cli.node import announce, open_model_store, print_banner
    from ai_evm.node.chain import NodeConfig, Sequencer
    from ai_evm.node.devnet import INFO_FILE, prepare_devnet, update_rpc_url
    from ai_evm.node.server import run_node
    from ai_evm.node.vm import make_resolver

    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if datadir is None:
        datadir = Path(tempfile.mkdtemp(prefix="aievm-devnet-"))
        atexit.register(shutil.rmtree, datadir, True)
    url = f"http://{host}:{port}"
    try:
        datadir.mkdir(parents=True, exist_ok=True)
        store = open_model_store(model_stores, datadir, fetch_limits)
        seq = Sequencer(NodeConfig(datadir, chain_id=chain_id, block_time=block_time), make_resolver(store))  # type: ignore[arg-type]
        info = prepare_devnet(seq, datadir, url)
    except Exception as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    print_banner(seq, url, block_time)
    lines = ["", "Models (model store: DATADIR/models)", "=================="]
    lines += [f"{name:<18} {address}" for name, address in info["models"].items()]
    lines += ["", "Contracts", "=================="]
    lines += [f"{name:<18} {address}" for name, address in info["contracts"].items()] or ["(none)"]
    lines += [f"note: {n}" for n in info["notes"]]
    lines += ["", f"Devnet info:       {datadir / INFO_FILE}", ""]
    click.echo("\n".join(lines))
    sys.stdout.flush()
    def ready(bound: int) -> None:
        if bound != port:  # --port 0: record the real URL before announcing readiness
            update_rpc_url(datadir, f"http://{host}:{bound}")
        announce(datadir, host, port, bound)

    run_node(seq, host, port, block_time=block_time, limits=limits, on_ready=ready)
    click.echo("devnet stopped")
