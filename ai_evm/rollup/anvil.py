"""anvil (npm ``@foundry-rs/anvil``) as a local L1: start it on a free loopback port, stop it by PID.

Used by the tests, the devnet and the benchmarks, so that every one of them starts L1 the same
way: Prague, anvil's default contract-size limit (EIP-170 applies), 127.0.0.1 only, a log file.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from ai_evm.contracts import CONTRACTS_DIR

ANVIL = CONTRACTS_DIR.parent / "node_modules" / ".bin" / "anvil"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AnvilError(RuntimeError):
    """anvil is missing, exited, or did not start listening."""


class Anvil:
    """One anvil process; ``with Anvil(log) as url:`` or ``start()``/``stop()``."""

    def __init__(self, log: Path, port: int | None = None, block_time: float | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.log, self.port = Path(log), port or free_port()
        self.block_time, self.extra_args = block_time, extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        """Start anvil and wait until it accepts connections; returns its URL."""
        if not ANVIL.exists():
            raise AnvilError(f"{ANVIL} is missing: run `make install` (npm ci)")
        args = [str(ANVIL), "--port", str(self.port), "--host", "127.0.0.1", "--hardfork", "prague",
                *self.extra_args]
        if self.block_time:
            args += ["--block-time", str(self.block_time)]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AnvilError(f"anvil exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self.url
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AnvilError(f"anvil did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        """Terminate anvil (kill it if it does not exit within 10 s)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


__all__ = ["ANVIL", "Anvil", "AnvilError", "free_port"]
