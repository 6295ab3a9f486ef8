"""The local directory store: one file per model, named by its address in hex.

Writes are atomic and crash-safe: the bytes go to a uniquely named temporary file in the same
directory (``.tmp-...``), are fsync'ed, and are renamed over the final name with ``os.replace``;
then the directory is fsync'ed. A reader therefore sees either no file or a complete one, two
processes adding the same model both succeed and leave one valid copy (the bytes are identical),
and a crash leaves at most a hidden temporary file, which :meth:`LocalStore.list` ignores and
:meth:`LocalStore.sweep_temp` deletes. Reads are verified like every other backend's.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

from ..bundle import Bundle
from .base import ModelStore, StoreError, parse_address

TEMP_PREFIX = ".tmp-"
_NAME = re.compile(r"[0-9a-f]{64}")


def default_store_dir() -> Path:
    """``$AIEVM_HOME/models``, by default ``~/.aievm/models``."""
    home = os.environ.get("AIEVM_HOME")
    return (Path(home) if home else Path.home() / ".aievm") / "models"


class LocalStore(ModelStore):
    """Models as files ``<dir>/<64 hex digits>``; the directory is created on first write."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.dir = Path(directory).expanduser() if directory is not None else default_store_dir()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.dir)!r})"

    __str__ = __repr__

    def path(self, address: bytes | str) -> Path:
        """The file that holds (or would hold) ``address``."""
        return self.dir / parse_address(address).hex()

    def _read(self, address: bytes) -> bytes:
        try:
            return self.path(address).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise self._missing(address) from None
        except OSError as e:
            raise StoreError(f"cannot read {self.path(address)}: {e.strerror}") from None

    def _write(self, address: bytes, data: bytes, bundle: Bundle | None = None) -> None:
        final = self.path(address)
        try:
            if final.stat().st_size == len(data) and final.read_bytes() == data:
                return  # already there and intact
        except OSError:
            pass
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{address.hex()[:16]}-", dir=self.dir)
        except OSError as e:
            raise StoreError(f"cannot write to model store {self.dir}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(e, OSError):
                raise StoreError(f"cannot write {final}: {e.strerror}") from None
            raise
        _fsync_dir(self.dir)

    def has(self, address: bytes | str) -> bool:
        """Whether a file exists for ``address`` (its content is checked on :meth:`get`)."""
        return self.path(address).is_file()

    def list(self) -> list[bytes]:
        """Addresses of the model files (temporary and foreign files are ignored)."""
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot list {self.dir}: {e.strerror}") from None
        return sorted(bytes.fromhex(e.name) for e in entries if _NAME.fullmatch(e.name) and e.is_file())

    def remove(self, address: bytes | str) -> bool:
        """Delete the model's file; False if there was none."""
        try:
            self.path(address).unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(self.dir)
        return True

    def size(self, address: bytes | str) -> int | None:
        """Size of the model's file, or None."""
        try:
            return self.path(address).stat().st_size
        except OSError:
            return None

    def sweep_temp(self, max_age_s: float = 3600.0) -> int:
        """Delete temporary files older than ``max_age_s`` (left by crashed writers); returns count."""
        removed, now = 0, time.time()
        try:
            entries = list(os.scandir(self.dir))
        except OSError:
            return 0
        for e in entries:
            if e.name.startswith(TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    if now - e.stat().st_mtime > max_age_s:
                        os.unlink(e.path)
                        removed += 1
        return removed


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
