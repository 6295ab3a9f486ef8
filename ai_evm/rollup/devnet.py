"""The whole rollup on 127.0.0.1, one process per component (``aievm devnet``, ``make demo``).

:class:`RollupDevnet` starts anvil as L1 (one block a second), deploys the L1 contracts, serves
the example models from a model hub (``aievm model serve``) and registers them on L1, then starts
the L2 sequencer node (``--rollup``), two nodes deriving the chain from L1 (one for the proposer,
one for the validator), the batcher, the proposer (optionally ``--faulty-inference``) and the
validator. Every process logs to ``WORKDIR/logs/<name>.log``; :meth:`stop` stops them all by PID.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from ai_evm.contracts import CONTRACTS_DIR, artifact

from .anvil import Anvil, free_port
from .deploy import RollupParams, deploy_rollup

ROOT = CONTRACTS_DIR.parent
MODELS_DIR = ROOT / "models"
#: anvil's well-known dev keys: deployer, batcher, proposer, validator (also prefunded on L2).
DEV_KEYS = ("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
            "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
            "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
            "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6")


class DevnetStartError(RuntimeError):
    """A component did not start (the message names it and quotes its log)."""


@dataclass
class RollupDevnet:
    """One devnet (module docstring)."""

    workdir: Path
    faulty_rate: float = 0.0
    faulty_max: int | None = None
    challenge_window: int = 60
    output_interval: int = 10
    l2_block_time: float = 0.5
    l2_port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    anvil: Anvil | None = None

    def _log(self, name: str) -> Path:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        return self.workdir / "logs" / f"{name}.log"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with self._log(name).open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-u", "-c", "from ai_evm.cli import main; main()", *args],
                                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def _wait_node(self, name: str, datadir: Path, timeout: float = 120.0) -> str:
        proc, deadline = self.procs[name], time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DevnetStartError(f"{name} exited: {self._log(name).read_text()[-2000:]}")
            try:
                info = json.loads((datadir / "node.json").read_text())
                if info["pid"] == proc.pid:
                    return str(info["url"])
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise DevnetStartError(f"{name} did not start within {timeout} s: {self._log(name).read_text()[-2000:]}")

    def start(self) -> dict[str, Any]:
        """Start everything; returns (and writes to WORKDIR/devnet.json) the endpoints and addresses."""
        from ai_evm.dispute.client import L1
        from ai_evm.dispute.deploy import Web3Deployer
        from ai_evm.dispute.encode import graph_proof
        from opml.bundle import load_bundle
        from opml.commitment import prove_header
        from opml.store import LocalStore

        self.workdir.mkdir(parents=True, exist_ok=True)
        keys = [Account.from_key(k) for k in DEV_KEYS]
        self.anvil = Anvil(self._log("anvil"), block_time=1)
        l1 = self.anvil.start()
        w3 = Web3(Web3.HTTPProvider(l1))
        d = deploy_rollup(Web3Deployer(w3, keys[0].address, keys[0].key), keys[1].address, keys[2].address,
                          RollupParams(challenge_window=self.challenge_window, output_interval=self.output_interval,
                                       response_window=max(self.challenge_window, 60)))
        rollup = self.workdir / "rollup.json"
        d.save(rollup)

        hub_store = LocalStore(self.workdir / "hub")
        models = {}
        for path in sorted(MODELS_DIR.glob("*/model.bundle")):
            models[path.parent.name] = "0x" + hub_store.put(path.read_bytes()).hex()
        hub_port = free_port()
        self._spawn("hub", "model", "serve", "--store", str(self.workdir / "hub"), "--port", str(hub_port))
        hub = f"http://127.0.0.1:{hub_port}"
        registry = w3.eth.contract(address=Web3.to_checksum_address(d.registry),
                                   abi=list(artifact("ModelRegistry").abi))
        fee = int(registry.functions.REGISTRATION_FEE().call())
        client = L1(l1, DEV_KEYS[0])
        for name in models:
            b = load_bundle((MODELS_DIR / name / "model.bundle").read_bytes())
            client.send(registry.functions.register(b.address, graph_proof(prove_header(b)), hub), fee,
                        f"register {name}")
        registered_at = int(w3.eth.block_number)

        common = ("--rollup", str(rollup), "--l1", l1, "--model-store", hub, "--no-fsync")
        urls = {}
        for name, extra in (("sequencer", ("--port", str(self.l2_port), "--block-time", str(self.l2_block_time))),
                            ("proposer-node", ("--port", "0", "--derive")),
                            ("validator-node", ("--port", "0", "--derive"))):
            datadir = self.workdir / name
            datadir.mkdir(exist_ok=True)
            self._spawn(name, "node", "--datadir", str(datadir), *common, *extra)
            urls[name] = self._wait_node(name, datadir)
        self._spawn("batcher", "batcher", "--rollup", str(rollup), "--l1", l1, "--l2", urls["sequencer"], "--key",
                    DEV_KEYS[1], "--poll", "2")
        agent = ("--rollup", str(rollup), "--l1", l1, "--model-store", hub, "--poll", "1")
        faulty = ["--faulty-inference", str(self.faulty_rate)]
        if self.faulty_max is not None:
            faulty += ["--faulty-max", str(self.faulty_max)]
        self._spawn("proposer", "proposer", *agent, "--l2", urls["proposer-node"], "--key", DEV_KEYS[2],
                    "--datadir", str(self.workdir / "proposer"), *faulty)
        self._spawn("validator", "validator", *agent, "--l2", urls["validator-node"], "--key", DEV_KEYS[3],
                    "--datadir", str(self.workdir / "validator"))
        self.info = {
            "l1": l1, "l2": urls["sequencer"], "proposerNode": urls["proposer-node"],
            "validatorNode": urls["validator-node"], "hub": hub, "rollup": str(rollup),
            "contracts": {k: getattr(d, k)
                          for k in ("inbox", "registry", "oracle", "disputes", "factory", "verifier", "portal")},
            "models": models, "modelsRegisteredAtL1Block": registered_at,
            "accounts": {"deployer": keys[0].address, "batcher": keys[1].address, "proposer": keys[2].address,
                         "validator": keys[3].address},
            "logs": str(self.workdir / "logs"),
        }
        (self.workdir / "devnet.json").write_text(json.dumps(self.info, indent=2) + "\n")
        return self.info

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.procs.items()}

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after 10 s), agents first, anvil last."""
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        if self.anvil is not None:
            self.anvil.stop()
            self.anvil = None

    def __enter__(self) -> RollupDevnet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["DEV_KEYS", "DevnetStartError", "RollupDevnet"]
