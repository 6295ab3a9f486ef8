"""``aievm devnet``: the whole rollup on 127.0.0.1 (``--l2-only``: one L2 node with the examples).

By default it starts :class:`ai_evm.rollup.devnet.RollupDevnet`: anvil as L1 with the rollup's
contracts, a model hub with the example models registered on L1, the L2 sequencer, the batcher,
a proposer and an honest validator (each with its own deriving node); it prints every endpoint
and address (also written to WORKDIR/devnet.json) and Ctrl-C (or SIGTERM) stops all of it.
``aievm rollup devnet`` is the same command.

``--l2-only`` is the first devnet: one L2 node, no L1, with the example models in its store and
``AIContract`` and ``DigitsClassifier`` deployed (:mod:`ai_evm.node.devnet`).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from ai_evm.cli import main
from ai_evm.cli.node import serving_options

if TYPE_CHECKING:
    from ai_evm.node.limits import RpcLimits
    from opml.store import FetchLimits

#: options only the rollup devnet has, and the serving options only ``--l2-only`` has (click names)
ROLLUP_ONLY = ("faulty_inference", "faulty_max", "challenge_window", "output_interval")
L2_ONLY = ("host", "chain_id", "model_stores", "verbose", "max_model_size", "model_fetch_timeout",
           "model_fetch_deadline", "rpc_gascap", "rpc_evmtimeout", "rpc_batch_limit", "rpc_batch_response_max",
           "rpc_max_body")  # fmt: skip
READY_LINE = "rollup devnet running (Ctrl-C stops every component)"


def _given(ctx: click.Context, names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` that the command line set (not their defaults), as flags."""
    out = []
    for p in ctx.command.params:
        if p.name in names and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE:
            out.append(max(p.opts, key=len))
    return out


@main.command("devnet")
@click.option("--l2-only", is_flag=True,
              help="Only an L2 node with the example models stored and example contracts deployed (no L1).")
@click.option("--datadir", "--workdir", "datadir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where every component keeps its data and logs (default: a temporary directory, deleted "
                   "on exit). The rollup devnet needs a new or empty one; --l2-only reuses its chain.")
@serving_options
@click.option("--faulty-inference", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="The proposer posts this fraction of outputs with a wrong inference record.")
@click.option("--faulty-max", type=click.IntRange(0), default=None, help="At most this many lies.")
@click.option("--challenge-window", type=click.IntRange(1), default=60, show_default=True,
              help="Seconds an output can be disputed on L1.")
@click.option("--output-interval", type=click.IntRange(1), default=10, show_default=True,
              help="L2 blocks between outputs.")
@click.option("-v", "--verbose", count=True, help="(--l2-only) Log blocks (-v) and debug output (-vv).")
def devnet(
    l2_only: bool, datadir: Path | None, host: str, port: int, chain_id: int, block_time: float | None,
    fetch_limits: FetchLimits, model_stores: tuple[str, ...], limits: RpcLimits, faulty_inference: float,
    faulty_max: int | None, challenge_window: int, output_interval: int, verbose: int,
) -> None:  # fmt: skip
    """The rollup on 127.0.0.1: anvil L1 with the contracts deployed, a model hub with the example
    models registered, the L2 sequencer (--port, --block-time), batcher, proposer and an honest
    validator. Prints every endpoint and address; Ctrl-C stops all of it.

    With --l2-only: one L2 node (the serving options apply) with the example models stored and
    AIContract and DigitsClassifier deployed; its info goes to DATADIR/devnet.json.
    """
    ctx = click.get_current_context()
    wrong = _given(ctx, ROLLUP_ONLY if l2_only else L2_ONLY)
    if wrong:
        mode = "--l2-only" if l2_only else "the rollup devnet (they need --l2-only)"
        raise click.UsageError(f"{', '.join(wrong)} do(es) not apply to {mode}")
    if l2_only:
        _l2_only(datadir, host, port, chain_id, block_time, fetch_limits, model_stores, limits, verbose)
    else:
        _rollup(datadir, port, block_time, faulty_inference, faulty_max, challenge_window, output_interval)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def describe(info: dict[str, Any], workdir: Path) -> str:
    """The rollup devnet's start-up text: every endpoint, contract, model and account."""
    from ai_evm.rollup.devnet import DEV_KEYS

    lines = ["", "AI EVM rollup devnet (every component on 127.0.0.1)", "", "Endpoints", "=================="]
    lines += [f"{name:<22} {info[key]}" for name, key in (
        ("L1 (anvil)", "l1"), ("L2 sequencer", "l2"), ("proposer's L2 node", "proposerNode"),
        ("validator's L2 node", "validatorNode"), ("model hub", "hub"))]  # fmt: skip
    lines += ["", "L1 contracts", "=================="]
    lines += [f"{name:<22} {address}" for name, address in info["contracts"].items()]
    lines += ["", f"Models (registered on L1 at block {info['modelsRegisteredAtL1Block']})", "=================="]
    lines += [f"{name:<22} {address}" for name, address in info["models"].items()]
    lines += ["", "Accounts (anvil's dev keys; funded on L1 and L2)", "=================="]
    lines += [f"{role:<22} {address} {key}" for (role, address), key in zip(info["accounts"].items(), DEV_KEYS,
                                                                           strict=True)]  # fmt: skip
    lines += ["", f"rollup.json:           {info['rollup']}", f"Logs:                  {info['logs']}",
              f"Devnet info:           {workdir / 'devnet.json'}", ""]
    return "\n".join(lines)


def _rollup(datadir: Path | None, port: int, block_time: float | None, faulty_inference: float,
            faulty_max: int | None, challenge_window: int, output_interval: int) -> None:
    import time

    from ai_evm.rollup.devnet import RollupDevnet

    if datadir is not None and datadir.exists() and any(datadir.iterdir()):
        raise click.UsageError(f"{datadir} is not empty: the rollup devnet starts a fresh L1 every time, "
                               "give it a new or empty directory")
    tmp = datadir is None
    path = Path(tempfile.mkdtemp(prefix="aievm-devnet-")) if datadir is None else datadir
    net = RollupDevnet(path, faulty_inference, faulty_max, challenge_window, output_interval,
                       l2_block_time=block_time or RollupDevnet.l2_block_time, l2_port=port)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # like Ctrl-C: stop every component, then exit
        signal.signal(sig, _raise_interrupt)
    code = 0
    try:
        click.echo(f"starting the rollup devnet in {path} ...")
        info = net.start()
        click.echo(describe(info, path))
        click.echo(READY_LINE)
        sys.stdout.flush()
        while all(net.alive().values()):
            time.sleep(0.5)
        dead = [k for k, v in net.alive().items() if not v]
        click.echo(f"error: {', '.join(dead)} exited; see {info['logs']}", err=True)
        code = 1
    except KeyboardInterrupt:
        pass
    except Exception as e:
        click.echo(f"error: {e}", err=True)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the shutdown short
            signal.signal(sig, signal.SIG_IGN)
        net.stop()
        if tmp:
            shutil.rmtree(path, ignore_errors=True)
        click.echo("rollup devnet stopped")
    sys.exit(code)


def _l2_only(
    datadir: Path | None, host: str, port: int, chain_id: int, block_time: float | None,
    fetch_limits: FetchLimits, model_stores: tuple[str, ...], limits: RpcLimits, verbose: int,
) -> None:  # fmt: skip
    """One L2 node: example models stored, AIContract and DigitsClassifier deployed (module docstring)."""
    import ai_evm.node  # noqa: F401  (fast keccak backend before py-evm hashes anything)
    from ai_evm.cli.node import announce, open_model_store, print_banner
    from ai_evm.node.chain import NodeConfig, Sequencer
    from ai_evm.node.devnet import INFO_FILE, prepare_devnet, update_rpc_url
    from ai_evm.node.server import ServeOptions, run_node
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

    # the devnet is for testing: anvil's test methods (evm_snapshot, anvil_setBalance, ...) are on
    run_node(seq, host, port, block_time=block_time, limits=limits, on_ready=ready,
             options=ServeOptions(dev_methods=True))
    click.echo("devnet stopped")
