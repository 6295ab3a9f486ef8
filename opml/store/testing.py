"""Helpers for tests and benchmarks of the model store: example bundles and local server processes.

Servers are started as child processes on a free ``127.0.0.1`` port and stopped by their PID
(``terminate``, then ``kill`` if they linger); nothing here touches any other address.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..bundle import Bundle, DType, Node, TensorSpec


def example_bundle(sizes: Sequence[int] = (1000, 33, 4096), seed: int = 0, name: str = "w") -> Bundle:
    """A valid bundle: a ``lut`` graph plus int8 constants of the given byte sizes (random data)."""
    rng = random.Random(seed)
    tensors = [
        TensorSpec("x", DType.INT8, (-1, 256), 0.1, 0),
        TensorSpec("table", DType.INT8, (256,), data=bytes(range(256))),
        TensorSpec("y", DType.INT8, (-1, 256), 0.1, 0),
    ]
    tensors += [TensorSpec(f"{name}{k}", DType.INT8, (n,), data=rng.randbytes(n)) for k, n in enumerate(sizes)]
    nodes = (Node("lut", (0, 1), (2,), (), "lut0"),)
    return Bundle(tensors=tuple(tensors), nodes=nodes, inputs=(0,), outputs=(2,), metadata={"seed": str(seed)})


def big_bundle(total_bytes: int = 25 << 20, parts: int = 4, seed: int = 0) -> Bundle:
    """A bundle of about ``total_bytes``, split over ``parts`` int8 constants."""
    return example_bundle([total_bytes // parts] * parts, seed=seed)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop one child process by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


@contextmanager
def hub_process(directory: str | Path, port: int | None = None) -> Iterator[str]:
    """Run ``aievm model serve --store DIR`` on a free port; yields its base URL."""
    port = port or free_port()
    cmd = [sys.executable, "-c", "from ai_evm.cli import main; main()", "model", "serve"]
    cmd += ["--store", str(directory), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextmanager
def moto_process(port: int | None = None) -> Iterator[str]:
    """Run a local ``moto_server`` (S3 emulator) on a free port; yields its endpoint URL."""
    port = port or free_port()
    exe = Path(sys.executable).parent / "moto_server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, proc, timeout=30.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
