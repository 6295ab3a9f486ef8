"""``aievm devnet``: the whole rollup from one command, and Ctrl-C stops every process it started.

The command runs as a subprocess (as a user would start it); the test waits for its printed
endpoints, checks that L1 holds the rollup's contracts and the registered models, that the L2
sequencer answers and its safe head moves (the batcher's batches reached L1), then sends SIGINT
to the devnet alone (and SIGTERM during its shutdown) and checks that none of its descendants
(anvil and its node wrapper, the hub, the three L2 nodes, batcher, proposer, validator) is left
running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from web3 import Web3

from ai_evm.cli import main
from ai_evm.cli.devnet import READY_LINE
from ai_evm.contracts import artifact

ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Every live process under ``pid`` (from /proc: children of children...)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.update(kids)
        todo += kids
    return out


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (anvil needs it)")
def test_aievm_devnet_runs_the_rollup_and_ctrl_c_stops_all_of_it(tmp_path: Path) -> None:
    workdir = tmp_path / "devnet"
    cmd = [sys.executable, "-u", "-c", "from ai_evm.cli import main; main()", "devnet", "--datadir", str(workdir),
           "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while not any(READY_LINE in line for line in lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "devnet did not start within 240 s:\n" + "".join(lines)
            time.sleep(0.2)
        printed = "".join(lines)
        info = json.loads((workdir / "devnet.json").read_text())
        for value in [info[k] for k in ("l1", "l2", "proposerNode", "validatorNode", "hub")] + \
                [*info["contracts"].values(), *info["models"].values(), *info["accounts"].values()]:
            assert value in printed, value

        l1 = Web3(Web3.HTTPProvider(info["l1"]))
        for name, address in info["contracts"].items():
            assert len(l1.eth.get_code(Web3.to_checksum_address(address))) > 0, name
        registry = l1.eth.contract(address=Web3.to_checksum_address(info["contracts"]["registry"]),
                                   abi=list(artifact("ModelRegistry").abi))
        now = l1.eth.block_number
        for name, model in info["models"].items():  # registered, fetched from the devnet's hub
            assert registry.functions.isRegistered(bytes.fromhex(model[2:]), now).call(), name
            assert registry.functions.model(bytes.fromhex(model[2:])).call()[2] == info["hub"], name

        l2 = Web3(Web3.HTTPProvider(info["l2"]))
        assert l2.eth.chain_id == 31337
        deadline = time.monotonic() + 120  # the batcher posts, the sequencer sees its blocks on L1
        while l2.eth.get_block("safe")["number"] == 0:
            assert time.monotonic() < deadline, "the sequencer's safe head never moved"
            time.sleep(0.5)
        assert l2.eth.block_number >= l2.eth.get_block("safe")["number"] > 0

        children = descendants(proc.pid)
        assert len(children) >= 9, children  # anvil (wrapper + binary), hub, 3 nodes, batcher, proposer, validator
        proc.send_signal(signal.SIGINT)  # Ctrl-C, to the devnet process alone
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # during the shutdown: ignored, it must not cut it short
        proc.wait(timeout=90)
        reader.join(timeout=10)
        assert proc.returncode == 0, "".join(lines)
        assert lines[-1].strip() == "rollup devnet stopped"
        deadline = time.monotonic() + 10
        while [p for p in children if running(p)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in children if running(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in children:  # only what the test itself saw this devnet start
            if running(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.parametrize("args, message", [
    (["--chain-id", "5"], "--chain-id do(es) not apply to the rollup devnet"),
    (["--rpc-gascap", "5", "-v"], "--rpc-gascap, --verbose do(es) not apply to the rollup devnet"),
    (["--l2-only", "--faulty-inference", "1"], "--faulty-inference do(es) not apply to --l2-only"),
])  # fmt: skip
def test_options_of_the_other_mode_are_refused(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["devnet", *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_rollup_devnet_refuses_a_used_workdir(tmp_path: Path) -> None:
    (tmp_path / "sequencer").mkdir()
    for group in (["devnet"], ["rollup", "devnet"]):  # ``aievm rollup devnet`` is the same command
        result = CliRunner().invoke(main, [*group, "--workdir", str(tmp_path)])
        assert result.exit_code == 2 and "is not empty" in result.output, result.output
