"""``aievm bridge withdraw|prove|finalize|status``: move ETH and messages from L2 to L1 (docs/bridge.md).

Every command takes the rollup's ``rollup.json`` (Portal and oracle addresses) and both endpoints;
a withdrawal is named by the L2 transaction that initiated it (``--tx``). ``prove`` and ``finalize``
wait, printing what they wait for (an output covering the block, the challenge window), unless
``--no-wait``. Exit status: 0 done, 2 cannot be done (now), with a one-line reason.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import main
from .rollup import _key, _web3

_rollup = click.option("--rollup", "rollup_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                       required=True, help="The rollup's rollup.json.")
_l1 = click.option("--l1", "l1_url", required=True, help="L1 JSON-RPC URL.")
_l2 = click.option("--l2", "l2_url", required=True, help="The L2 node's JSON-RPC URL.")
_tx = click.option("--tx", "l2_tx", required=True, help="The L2 transaction that initiated the withdrawal.")
_wait = click.option("--no-wait", is_flag=True, help="Fail instead of waiting (output, challenge window).")
_timeout = click.option("--timeout", type=click.FloatRange(1), default=3600.0, show_default=True,
                        help="Seconds to wait at most.")


def _bridge(rollup_json: Path, l1_url: str, l2_url: str, key: str | None) -> Any:
    from ai_evm.bridge.client import Bridge, BridgeError
    from ai_evm.rollup.config import RollupConfigError, RollupDeployment

    try:
        d = RollupDeployment.load(rollup_json)
        return Bridge(d, _web3(l1_url, "L1"), _web3(l2_url, "L2 node"), _key(key) if key else None,  # type: ignore[arg-type]
                      echo=lambda m: click.echo(f"bridge: {m}"))
    except (RollupConfigError, BridgeError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


def _tx_hash(value: str) -> bytes:
    try:
        h = bytes.fromhex(value[2:] if value.startswith("0x") else value)
    except ValueError:
        h = b""
    if len(h) != 32:
        raise click.BadParameter("a transaction hash is 32 bytes of hex", param_hint="--tx")
    return h


def _run(step: Callable[[], Any]) -> Any:
    from web3.exceptions import Web3Exception

    from ai_evm.bridge.client import BridgeError

    try:
        return step()
    except BridgeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except (OSError, Web3Exception) as e:  # an endpoint went away, a receipt did not come in time
        click.echo(f"error: an L1/L2 request failed: {type(e).__name__}: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("bridge: stopped")
        sys.exit(130)


@main.group()
def bridge() -> None:
    """Deposits and withdrawals between L1 and the rollup."""


@bridge.command("withdraw")
@_rollup
@_l1
@_l2
@click.option("--key", required=True, help="The L2 sender's private key (hex).")
@click.option("--to", "target", required=True, help="The L1 address the withdrawal calls (and pays).")
@click.option("--value", type=click.IntRange(0), default=0, show_default=True, help="Wei to withdraw.")
@click.option("--gas-limit", type=click.IntRange(0), default=100_000, show_default=True,
              help="Gas of the L1 call.")
@click.option("--data", default="0x", show_default=True, help="Calldata of the L1 call (hex).")
def withdraw(rollup_json: Path, l1_url: str, l2_url: str, key: str, target: str, value: int, gas_limit: int,
             data: str) -> None:
    """Initiate a withdrawal on L2 (L2ToL1MessagePasser); prints the L2 transaction to prove it with."""
    from web3 import Web3

    if not Web3.is_address(target):
        raise click.BadParameter(f"{target!r} is not an address", param_hint="--to")
    try:
        payload = bytes.fromhex(data[2:] if data.startswith("0x") else data)
    except ValueError:
        raise click.BadParameter("calldata must be hex", param_hint="--data") from None
    b = _bridge(rollup_json, l1_url, l2_url, key)
    tx, _ = _run(lambda: b.withdraw(target, value, gas_limit, payload))
    click.echo(f"0x{tx.hex()}")


@bridge.command("prove")
@_rollup
@_l1
@_l2
@click.option("--key", required=True, help="Private key (hex) of the L1 account that sends the proof.")
@_tx
@_wait
@_timeout
def prove(rollup_json: Path, l1_url: str, l2_url: str, key: str, l2_tx: str, no_wait: bool, timeout: float) -> None:
    """Prove a withdrawal on L1 against the first output covering its L2 block (eth_getProof)."""
    b = _bridge(rollup_json, l1_url, l2_url, key)
    _run(lambda: b.prove(_tx_hash(l2_tx), wait=not no_wait, timeout=timeout))


@bridge.command("finalize")
@_rollup
@_l1
@_l2
@click.option("--key", required=True, help="Private key (hex) of the L1 account that finalizes.")
@_tx
@_wait
@_timeout
def finalize(rollup_json: Path, l1_url: str, l2_url: str, key: str, l2_tx: str, no_wait: bool,
             timeout: float) -> None:
    """Finalize a proven withdrawal once its output is final (waits for the challenge window)."""
    b = _bridge(rollup_json, l1_url, l2_url, key)
    _run(lambda: b.finalize(_tx_hash(l2_tx), wait=not no_wait, timeout=timeout))


@bridge.command("status")
@_rollup
@_l1
@_l2
@_tx
def status(rollup_json: Path, l1_url: str, l2_url: str, l2_tx: str) -> None:
    """Where a withdrawal stands: initiated, proven (seconds to final), stale, finalized."""
    b = _bridge(rollup_json, l1_url, l2_url, None)
    click.echo(_run(lambda: b.status(_tx_hash(l2_tx))).describe())
