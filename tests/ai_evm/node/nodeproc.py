"""A node process for tests: ``aievm node`` on a free 127.0.0.1 port, stopped by its PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DIGITS_BUNDLE = ROOT / "models" / "digits_mlp" / "model.bundle"


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_models(datadir: Path, bundles: list[Path]) -> list[str]:
    """Put bundles into the node's own model store (DATADIR/models); returns their addresses."""
    from opml.store import LocalStore

    store = LocalStore(datadir / "models")
    return ["0x" + store.put(p.read_bytes()).hex() for p in bundles]


class RpcFailure(Exception):
    """A JSON-RPC error response."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error


class NodeProcess:
    """One ``aievm node`` subprocess."""

    def __init__(self, datadir: Path, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.datadir = datadir
        self.port = port or 0  # 0: the OS picks a free port; the node reports it in DATADIR/node.json
        self.args = args
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = datadir.parent / f"{datadir.name}-node.log"

    def start(self, timeout: float = 90.0) -> NodeProcess:
        """Start the node and wait until *this* process serves: it writes DATADIR/node.json with its
        pid and URL once listening."""
        cmd = [sys.executable, "-c", "from ai_evm.cli import main; main()", "node", "--datadir", str(self.datadir),
               "--port", str(self.port), *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        ready = self.datadir / "node.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                info = json.loads(ready.read_text())
                if info["pid"] == self.proc.pid:
                    self.url = info["url"]
                    self.port = int(self.url.rsplit(":", 1)[1])
                    self.post({"jsonrpc": "2.0", "id": 0, "method": "eth_chainId"}, timeout=5)
                    return self
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"node did not answer within {timeout}s: {self.log.read_text()[-3000:]}")

    def post(self, payload: Any, timeout: float = 120.0, raw: bytes | None = None) -> Any:
        body = raw if raw is not None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def rpc(self, method: str, *params: Any) -> Any:
        out = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        if "error" in out:
            raise RpcFailure(out["error"])
        return out["result"]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def stop(self) -> int | None:
        """SIGTERM (graceful), SIGKILL if it hangs; returns the exit code."""
        self.kill(signal.SIGTERM)
        return None if self.proc is None else self.proc.returncode


def digits_node(datadir: Path, args: tuple[str, ...] = ()) -> NodeProcess:
    """A started node (automine, with ``args``) whose store holds models/digits_mlp; ``node.model`` is its
    address."""
    datadir.mkdir()
    (address,) = add_models(datadir, [DIGITS_BUNDLE])
    proc = NodeProcess(datadir, args=args).start()
    proc.model = address  # type: ignore[attr-defined]
    return proc


def wait_for(cond: Any, timeout: float, what: str) -> None:
    """Poll ``cond()`` every 0.2 s until true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def rollup_pair(l1: str, workdir: Path) -> tuple[Any, Path, NodeProcess, NodeProcess]:
    """Deploy a rollup on the L1 at ``l1`` (anvil's dev keys: deployer, batcher, proposer; default
    parameters) and start its sequencer and a deriving validator in ``workdir``/seq and ``workdir``/val.
    Returns the deployment, the rollup.json path and the two started nodes (the caller stops them)."""
    from eth_account import Account
    from web3 import Web3

    from ai_evm.dispute.deploy import Web3Deployer
    from ai_evm.rollup.deploy import RollupParams, deploy_rollup
    from ai_evm.rollup.devnet import DEV_KEYS

    deployer, batcher, proposer = (Account.from_key(k) for k in DEV_KEYS[:3])
    w3 = Web3(Web3.HTTPProvider(l1))
    d = deploy_rollup(Web3Deployer(w3, deployer.address, deployer.key), batcher.address, proposer.address,
                      RollupParams())
    rollup = workdir / "rollup.json"
    d.save(rollup)
    (workdir / "seq").mkdir()
    (workdir / "val").mkdir()
    seq = NodeProcess(workdir / "seq", args=("--rollup", str(rollup), "--l1", l1, "--no-fsync")).start()
    try:
        val = NodeProcess(workdir / "val", args=("--rollup", str(rollup), "--l1", l1, "--derive", "--no-fsync")).start()
    except BaseException:
        seq.stop()
        raise
    return d, rollup, seq, val
