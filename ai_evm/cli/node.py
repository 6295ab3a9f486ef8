"""``aievm node``: run the AI EVM L2 node (sequencer + JSON-RPC) on a persistent datadir."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ai_evm.cli import main

if TYPE_CHECKING:
    from ai_evm.node.limits import RpcLimits
    from ai_evm.node.server import ServeOptions
    from opml.store import FetchLimits


def open_model_store(uris: tuple[str, ...], datadir: Path, limits: FetchLimits | None = None) -> object:
    """The node's model store: ``DATADIR/models`` first, then every ``--model-store`` URI (hubs and
    S3 downloads bounded by ``limits``)."""
    from opml.store import open_store

    parts = [str(datadir / "models"), *uris]
    return open_store(",".join(parts), limits=limits)


def print_banner(seq: object, url: str, block_time: float | None, out: object = None,
                 dev_accounts: bool = True) -> None:  # fmt: skip
    """anvil-style start-up text: accounts, private keys, mnemonic, chain id, URL."""
    from ai_evm.node.accounts import DEV_BALANCE, DEV_MNEMONIC

    config = seq.config  # type: ignore[attr-defined]
    head = seq.head()  # type: ignore[attr-defined]
    lines = ["", "AI EVM node", ""]
    if dev_accounts:
        lines += ["Available Accounts", "=================="]
        for i, a in enumerate(config.accounts):
            lines.append(f"({i}) {a.address} ({DEV_BALANCE // 10**18} ETH)")
        lines += ["", "Private Keys", "=================="]
        for i, a in enumerate(config.accounts):
            lines.append(f"({i}) 0x{a.private_key.hex()}")
        lines += ["", "Wallet", "==================", f"Mnemonic:          {DEV_MNEMONIC}",
                  "Derivation path:   m/44'/60'/0'/0/", ""]  # fmt: skip
    else:
        lines += ["Dev accounts:      not unlocked (--no-dev-accounts)"]
    lines += [
        f"Chain ID:          {config.chain_id}",
        f"Datadir:           {config.datadir}",
        f"Head block:        {head.block_number} (0x{head.hash.hex()})",
        f"Mining:            {f'every {block_time:g}s' if block_time else 'automine'}",
    ]  # fmt: skip
    if not url.endswith(":0"):
        lines += ["", f"Listening on {url}"]
    click.echo("\n".join(lines), file=out)  # type: ignore[arg-type]
    sys.stdout.flush()


F = TypeVar("F", bound=Callable[..., Any])


def serving_options(fn: F) -> F:
    """The options ``aievm node`` and ``aievm devnet`` share: address, chain id, mining, model stores,
    and the JSON-RPC limits (passed to the command as one ``limits`` argument, an ``RpcLimits``)."""
    fn = _rpc_limit_options(fn)
    fn = _model_fetch_options(fn)
    for option in reversed([
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option("--port", default=8545, show_default=True, type=click.IntRange(0, 65535)),
        click.option("--chain-id", default=31337, show_default=True, type=click.IntRange(1, 2**63 - 1)),
        click.option("--block-time", type=click.FloatRange(min=0.01), default=None,
                     help="Mine a block every S seconds instead of on every transaction (automine)."),
        click.option("--model-store", "model_stores", multiple=True, metavar="URI",
                     help="Extra model stores (directory, http(s):// hub, s3://...), tried after DATADIR/models."),
    ]):
        fn = option(fn)
    return fn


def exposure_options(fn: F) -> F:
    """Add ``--dev-methods``, ``--no-dev-accounts``, ``--allow-public-dev-accounts`` and ``--cors``;
    the command receives them as one ``serve=ServeOptions(...)`` argument (``run_node(options=...)``)."""

    @functools.wraps(fn)
    def command(*args: Any, dev_methods: bool, no_dev_accounts: bool, allow_public_dev_accounts: bool, cors: str,
                **kwargs: Any) -> Any:  # fmt: skip
        from ai_evm.node.server import ServeOptions

        origins = tuple(o.strip() for o in cors.split(",") if o.strip() and o.strip().lower() != "none")
        serve = ServeOptions(dev_methods=dev_methods, dev_accounts=not no_dev_accounts,
                             allow_public_dev_accounts=allow_public_dev_accounts, cors=origins)
        return fn(*args, serve=serve, **kwargs)

    wrapped: Any = command
    for option in reversed([
        click.option("--dev-methods", is_flag=True,
                     help="Serve the test methods (evm_snapshot/evm_revert, evm_increaseTime, anvil_setBalance...); "
                          "refused with --rollup."),
        click.option("--no-dev-accounts", is_flag=True,
                     help="Do not unlock the dev accounts (eth_accounts is empty; eth_sendTransaction signs nothing)."),
        click.option("--allow-public-dev-accounts", is_flag=True,
                     help="Listen on a non-loopback --host even with the dev accounts (public keys) unlocked."),
        click.option("--cors", default="*", show_default=True, metavar="ORIGINS",
                     help="Comma-separated origins allowed by CORS ('none': no CORS headers)."),
    ]):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def _rpc_limit_options(fn: F) -> F:
    """Add the ``--rpc-*`` limit flags; the command receives them as ``limits=RpcLimits(...)``."""
    from ai_evm.node.limits import (
        DEFAULT_BATCH_LIMIT,
        DEFAULT_BATCH_RESPONSE_MAX,
        DEFAULT_EVM_TIMEOUT,
        DEFAULT_GAS_CAP,
        DEFAULT_MAX_BODY,
        RpcLimits,
    )  # fmt: skip

    @functools.wraps(fn)
    def command(*args: Any, rpc_gascap: int, rpc_evmtimeout: float, rpc_batch_limit: int,
                rpc_batch_response_max: int, rpc_max_body: int, **kwargs: Any) -> Any:  # fmt: skip
        limits = RpcLimits(gas_cap=rpc_gascap, evm_timeout=rpc_evmtimeout, batch_limit=rpc_batch_limit,
                           batch_response_max=rpc_batch_response_max, max_body=rpc_max_body)
        return fn(*args, limits=limits, **kwargs)

    wrapped: Any = command
    for option in reversed([
        click.option("--rpc-gascap", default=DEFAULT_GAS_CAP, show_default=True, type=click.IntRange(0),
                     help="Gas cap of eth_call/eth_estimateGas; more gas is clamped to it (0 = no cap)."),
        click.option("--rpc-evmtimeout", default=DEFAULT_EVM_TIMEOUT, show_default=True, type=click.FloatRange(0),
                     metavar="SECONDS", help="Time limit of one eth_call or eth_estimateGas (0 = none)."),
        click.option("--rpc-batch-limit", default=DEFAULT_BATCH_LIMIT, show_default=True, type=click.IntRange(0),
                     help="Most requests in one JSON-RPC batch (0 = no limit)."),
        click.option("--rpc-batch-response-max", default=DEFAULT_BATCH_RESPONSE_MAX, show_default=True,
                     type=click.IntRange(0), metavar="BYTES",
                     help="Most bytes of responses per batch, and per response (0 = no limit)."),
        click.option("--rpc-max-body", default=DEFAULT_MAX_BODY, show_default=True, type=click.IntRange(1024),
                     metavar="BYTES", help="Largest HTTP request body."),
    ]):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def _model_fetch_options(fn: F) -> F:
    """Add the model download limits; the command receives them as ``fetch_limits=FetchLimits(...)``."""
    from opml.store import FetchLimits

    defaults = FetchLimits()

    @functools.wraps(fn)
    def command(*args: Any, max_model_size: int, model_fetch_timeout: float, model_fetch_deadline: float,
                **kwargs: Any) -> Any:  # fmt: skip
        limits = FetchLimits(max_bytes=max_model_size, timeout=model_fetch_timeout, deadline=model_fetch_deadline)
        return fn(*args, fetch_limits=limits, **kwargs)

    wrapped: Any = command
    for option in reversed([
        click.option("--max-model-size", default=defaults.max_bytes, show_default=True, type=click.IntRange(1),
                     metavar="BYTES", help="Largest model bundle downloaded from a hub or S3 (after decompression)."),
        click.option("--model-fetch-timeout", default=defaults.timeout, show_default=True,
                     type=click.FloatRange(min=0.1), metavar="SECONDS",
                     help="Connect + response headers of a model download, and its longest silence."),
        click.option("--model-fetch-deadline", default=defaults.deadline, show_default=True,
                     type=click.FloatRange(min=0.1), metavar="SECONDS",
                     help="Longest download of one model from one hub or S3 store (resumes included)."),
    ]):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


@main.command("node")
@click.option("--datadir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Chain database directory (created if missing; a restart continues from its head).")
@serving_options
@click.option("--gas-limit", default=30_000_000, show_default=True, type=click.IntRange(100_000))
@click.option("--no-fsync", is_flag=True, help="Do not fsync each block (faster; unsafe on power loss).")
@click.option("-v", "--verbose", count=True, help="Log blocks (-v) and debug output (-vv).")
@click.option("--rollup", "rollup_json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="rollup.json of `aievm rollup deploy`: follow that rollup's L1 (needs --l1).")
@click.option("--l1", "l1_url", default=None, help="L1 JSON-RPC URL (with --rollup).")
@click.option("--derive", is_flag=True,
              help="Validator: build the chain only from the batches on L1 (no pool, no mining).")
@click.option("--l1-confs", default=0, show_default=True, type=click.IntRange(0, 32),
              help="Follow L1 this many blocks behind its head (with --rollup): a shallower L1 reorg is never "
                   "seen. Deeper ones (up to 64 blocks) are followed: the node rewinds and derives again.")
@exposure_options
def node(
    datadir: Path, host: str, port: int, chain_id: int, block_time: float | None,
    fetch_limits: FetchLimits,
    model_stores: tuple[str, ...], limits: RpcLimits, gas_limit: int, no_fsync: bool, verbose: int,
    rollup_json: Path | None, l1_url: str | None, derive: bool, l1_confs: int, serve: ServeOptions,
) -> None:  # fmt: skip
    """Run the AI EVM node: an L2 sequencer with Ethereum JSON-RPC and prefunded dev accounts."""
    import ai_evm.node  # noqa: F401  (selects the fast keccak backend before py-evm hashes anything)
    from ai_evm.node.accounts import DEV_ACCOUNT_COUNT
    from ai_evm.node.chain import NodeConfig, Sequencer
    from ai_evm.node.errors import NodeError
    from ai_evm.node.server import UnsafeExposure, check_exposure_of, run_node
    from ai_evm.node.vm import make_resolver

    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if serve.dev_methods and rollup_json is not None:
        click.echo("error: --dev-methods cannot be used with --rollup: blocks changed by test methods "
                   "(evm_revert, anvil_setBalance...) could not be derived from L1", err=True)
        sys.exit(1)
    try:
        check_exposure_of(host, DEV_ACCOUNT_COUNT, serve)
    except UnsafeExposure as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    try:
        store = open_model_store(model_stores, datadir, fetch_limits)
        seq = Sequencer(NodeConfig(datadir, chain_id=chain_id, gas_limit=gas_limit, block_time=block_time,
                                   sync=not no_fsync),
                        make_resolver(store))  # type: ignore[arg-type]
    except (NodeError, Exception) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if (rollup_json is None) != (l1_url is None) or (derive and rollup_json is None):
        click.echo("error: --rollup and --l1 go together (and --derive needs them)", err=True)
        sys.exit(1)
    if rollup_json is not None and l1_url is not None:
        follow_rollup(seq, rollup_json, l1_url, derive, l1_confs)
    url = f"http://{host}:{port}"
    print_banner(seq, url, block_time, dev_accounts=serve.dev_accounts)
    run_node(seq, host, port, block_time=block_time, limits=limits,
             on_ready=lambda bound: announce(datadir, host, port, bound), options=serve)
    click.echo("node stopped")


def follow_rollup(seq: object, rollup_json: Path, l1_url: str, derive: bool, l1_confs: int = 0) -> None:
    """Attach the node to its rollup's L1: as the sequencer, or (``derive``) as a validator, reading L1
    ``l1_confs`` blocks behind its head."""
    from web3 import Web3

    from ai_evm.rollup.config import RollupConfigError, RollupDeployment
    from ai_evm.rollup.heads import L1Heads
    from ai_evm.rollup.node import Derivation, L1Follower, attach_sequencer

    try:
        d = RollupDeployment.load(rollup_json)
    except RollupConfigError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    w3 = Web3(Web3.HTTPProvider(l1_url, request_kwargs={"timeout": 30}))
    follower = L1Follower(w3, d, confirmations=l1_confs)
    derivation = None
    if derive:
        seq.derives_from_l1 = True  # type: ignore[attr-defined]
        derivation = Derivation(seq, follower)  # type: ignore[arg-type]
        derivation.start()
        click.echo(f"deriving the L2 chain from L1 {l1_url} (inbox {d.inbox})")
    else:
        attach_sequencer(seq, follower)  # type: ignore[arg-type]
        follower.start()
        click.echo(f"sequencing on L1 {l1_url} (genesis L1 block {d.genesis_l1_number})")
    heads = L1Heads(w3, d, seq, derivation)  # type: ignore[arg-type]
    seq.heads = heads  # type: ignore[attr-defined]
    heads.start()  # the block tags safe and finalized, from L1


def announce(datadir: Path, host: str, requested: int, bound: int) -> None:
    """Once listening: print the URL if the port was chosen by the OS, write ``DATADIR/node.json``."""
    url = f"http://{host}:{bound}"
    if requested == 0:
        click.echo(f"Listening on {url}")
        sys.stdout.flush()
    write_ready_file(datadir, url)


def write_ready_file(datadir: Path, url: str) -> None:
    """``DATADIR/node.json`` = {pid, url}, written (atomically) once the server listens."""
    import json
    import os

    tmp = datadir / "node.json.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), "url": url}) + "\n")
    tmp.replace(datadir / "node.json")
