"""``aievm bridge deposit``: deposit ETH (and an L2 call) through the L1 Portal and follow it onto L2.

Registered on the ``bridge`` group of :mod:`ai_evm.cli.bridge`; the work is
:mod:`ai_evm.bridge.deposit` (imported when the command runs, so the CLI starts fast). Exit status: 0
done, 2 cannot be done, with a one-line reason (as the other ``bridge`` commands).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .bridge import bridge


@bridge.command("deposit")
@click.option("--l1", "l1_url", required=True, help="L1 JSON-RPC URL.")
@click.option("--rollup", "rollup_json", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The rollup's rollup.json (its portal address).")
@click.option("--to", required=True, help="L2 recipient (the L2 call's target).")
@click.option("--value", required=True, help="Amount to deposit: wei, or with eth/gwei (e.g. 1.5eth).")
@click.option("--data", default="0x", show_default=True, help="Calldata of the L2 call (hex).")
@click.option("--gas-limit", type=int, default=None, help="L2 gas limit (default 21000, or 200000 with --data).")
@click.option("--key", envvar="AIEVM_KEY", required=True, help="L1 private key (hex; or AIEVM_KEY).")
@click.option("--l2", "l2_url", default=None, help="L2 node URL: wait until the deposit is on L2.")
@click.option("--timeout", type=click.FloatRange(1), default=300.0, show_default=True,
              help="Seconds to wait for L2 at most.")
def deposit(l1_url: str, rollup_json: Path, to: str, value: str, data: str, gas_limit: int | None, key: str,
            l2_url: str | None, timeout: float) -> None:
    """Deposit ETH (minted to you on L2, then sent to --to with --data); with --l2, wait until it is on L2."""
    from web3 import Web3

    from ai_evm.bridge.deposit import DepositFailed, make_deposit, parse_amount, wait_on_l2
    from ai_evm.rollup.config import RollupConfigError, RollupDeployment

    try:
        amount = parse_amount(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--value") from None
    try:
        calldata = bytes.fromhex(data[2:] if data.startswith("0x") else data)
    except ValueError:
        raise click.BadParameter("calldata must be hex", param_hint="--data") from None
    if not Web3.is_address(to):
        raise click.BadParameter(f"{to!r} is not an address", param_hint="--to")
    try:
        d = RollupDeployment.load(rollup_json)
        l1 = Web3(Web3.HTTPProvider(l1_url, request_kwargs={"timeout": 30}))
        result = make_deposit(l1, d, key, to, amount, calldata, gas_limit, out=lambda m: click.echo(f"bridge: {m}"))
        if l2_url is not None:
            wait_on_l2(Web3(Web3.HTTPProvider(l2_url, request_kwargs={"timeout": 30})), result, timeout,
                       out=lambda m: click.echo(f"bridge: {m}"))
    except (RollupConfigError, DepositFailed, ValueError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("bridge: stopped")
        sys.exit(130)
