"""Bounded HTTP downloads of model bundles from untrusted servers (hubs, S3 presigned URLs).

A model server is trusted for nothing: every byte is verified against the model address by the
caller, and this module makes sure that getting those bytes costs bounded memory and bounded
time whatever the server does. :class:`FetchLimits` holds the bounds:

- **size**: a body (after decompression) larger than ``max_bytes`` is refused; a
  ``Content-Length``/``Content-Range`` over the limit is refused before the body is read; the body
  is read in chunks of at most :data:`CHUNK` bytes into one growing buffer, never beyond
  ``max_bytes + CHUNK``;
- **decompression**: ``gzip`` and ``deflate`` content-encodings are decoded with ``zlib`` in
  steps of at most :data:`CHUNK` output bytes, so a compression bomb stops at the same limit;
  any other encoding is refused;
- **time**: a connection, its TLS handshake and the response headers must complete within
  ``timeout``; no read may wait longer than ``timeout`` for data; the whole transfer (resumes
  included) must finish within ``deadline``; and in every ``window`` seconds the server must send
  at least ``min_rate * window`` bytes. A watchdog thread shuts the socket down when a deadline
  passes, so even a server that trickles one byte per second (in headers, chunk-size lines or the
  body) is cut off on time.

Errors: :class:`~opml.store.base.ModelAbsent` (HTTP 404), :class:`TransferFailed` (a limit was
broken, an unusable answer), :class:`~opml.store.base.StoreError` (cannot connect),
:class:`~opml.errors.ModelIntegrityError` (the body stayed shorter than announced after every
resume). Plain ``http.client`` is used rather than ``requests`` so that the socket is in reach of
the watchdog and reads return whatever arrived (``read1``) instead of waiting for a full chunk.
Proxies and redirects are not followed.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ModelIntegrityError
from .base import MAX_BUNDLE_BYTES, ModelAbsent, Progress, ProgressFactory, StoreError, address_hex, no_progress

#: Largest read from the socket, and largest output of one decompression step.
CHUNK = 1 << 20


class TransferFailed(StoreError):
    """A download broke one of its limits (size, deadline, rate) or got an unusable answer."""


@dataclass(frozen=True)
class FetchLimits:
    """Bounds on one model download from one server (see the module docstring)."""

    #: Largest body accepted, after decompression (bytes).
    max_bytes: int = MAX_BUNDLE_BYTES
    #: Connect + TLS + response headers, and the longest silence inside the body (seconds).
    timeout: float = 10.0
    #: The whole transfer from one server, resumes included (seconds).
    deadline: float = 600.0
    #: Least average rate over each ``window`` (bytes per second, counted on the wire).
    min_rate: int = 16 << 10
    #: Length of the windows over which ``min_rate`` is checked (seconds).
    window: float = 10.0

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.timeout <= 0 or self.deadline <= 0 or self.window <= 0 or self.min_rate < 0:
            raise ValueError(f"invalid fetch limits: {self}")


class _Watchdog:
    """Shuts a connection's socket down once a deadline passes, waking any blocked read."""

    def __init__(self, conn: http.client.HTTPConnection, at: float) -> None:
        self._conn, self._at = conn, at
        self._cond = threading.Condition()
        self._done = False
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="model-download-deadline", daemon=True)
        self._thread.start()

    def move(self, at: float) -> None:
        """Change the deadline (monotonic seconds)."""
        with self._cond:
            self._at = at
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._done:
                left = self._at - time.monotonic()
                if left <= 0:
                    self.fired = True
                    sock = self._conn.sock  # the raw socket during a TLS handshake, then the TLS one
                    if sock is not None:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                    return
                self._cond.wait(left)

    def stop(self) -> None:
        """Disarm (the download finished or failed on its own)."""
        with self._cond:
            self._done = True
            self._cond.notify()
        self._thread.join()


class _Decoder:
    """Content-encoding decoder whose output per step is bounded (a bomb cannot expand at once)."""

    def __init__(self, encoding: str, url: str) -> None:
        self.encoding = encoding
        if encoding in ("", "identity"):
            self._z = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj(zlib.MAX_WBITS)  # zlib-wrapped; raw deflate detected below
        else:
            raise TransferFailed(f"{url}: unsupported content-encoding {encoding!r} (gzip, deflate or none)")
        self._first = True
        self._url = url

    @property
    def identity(self) -> bool:
        """True if bytes arrive as they are (a resume with ``Range`` is then possible)."""
        return self._z is None

    def feed(self, data: bytes, sink: _Sink) -> None:
        """Decode ``data`` into ``sink``, at most :data:`CHUNK` bytes per step."""
        if self._z is None:
            sink.add(data)
            return
        pending = data
        while pending:
            try:
                out = self._z.decompress(pending, CHUNK)
            except zlib.error as e:
                if self._first and self.encoding == "deflate":  # some servers send raw deflate
                    self._z, self._first = zlib.decompressobj(-zlib.MAX_WBITS), False
                    continue
                raise TransferFailed(f"{self._url}: corrupt {self.encoding} body: {e}") from None
            self._first = False
            sink.add(out)
            pending = self._z.unconsumed_tail
            if self._z.eof and self._z.unused_data:
                if self.encoding == "deflate":
                    raise TransferFailed(f"{self._url}: data after the end of the deflate stream")
                pending = self._z.unused_data  # another gzip member
                self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def finish(self) -> None:
        """Check that a compressed stream ended properly."""
        if self._z is not None and not self._z.eof:
            raise TransferFailed(f"{self._url}: {self.encoding} body ends before its stream does")


class _Sink:
    """The growing download buffer; refuses to hold more than ``max_bytes``."""

    def __init__(self, url: str, max_bytes: int, progress: Progress) -> None:
        self.url, self.max_bytes, self.progress = url, max_bytes, progress
        self.buf = io.BytesIO()
        self.size = 0

    def add(self, data: bytes) -> None:
        if self.size + len(data) > self.max_bytes:
            raise TransferFailed(
                f"{self.url} sent more than {self.max_bytes} bytes, the largest bundle this node accepts "
                "(raise it with --max-model-size)"
            )
        self.buf.write(data)
        self.size += len(data)
        self.progress.update(len(data))

    def reset(self) -> None:
        self.buf = io.BytesIO()
        self.size = 0

    def value(self) -> bytes:
        return self.buf.getvalue()  # no copy when the buffer is not shared


class _Pace:
    """The minimum-progress rule: at least ``min_rate * window`` wire bytes in every window."""

    def __init__(self, limits: FetchLimits, url: str) -> None:
        self.limits, self.url = limits, url
        self.start = time.monotonic()
        self.bytes = 0

    def update(self, n: int) -> None:
        self.bytes += n
        now = time.monotonic()
        elapsed = now - self.start
        if elapsed >= self.limits.window:
            need = self.limits.min_rate * elapsed
            if self.bytes < need:
                raise TransferFailed(
                    f"{self.url} is too slow: {self.bytes} bytes in {elapsed:.1f} s, below the minimum of "
                    f"{self.limits.min_rate} bytes/s"
                )
            self.start, self.bytes = now, 0


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(f"not an http(s) URL: {url!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        port = parts.port
    except ValueError:
        raise StoreError(f"bad port in {url!r}") from None
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    return conn, target


def _int_header(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _range_total(content_range: str) -> int | None:
    """The complete length in ``bytes a-b/total`` (None if ``*`` or malformed)."""
    _, _, total = content_range.partition("/")
    return _int_header(total)


def request(
    url: str, limits: FetchLimits, method: str = "GET", headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One small bounded request (listings, ``HEAD``): ``(status, lower-cased headers, body)``.

    The body is read only for status 200, within ``limits``; raises :class:`StoreError` if the
    server cannot be reached, :class:`TransferFailed` if it breaks a limit.
    """
    deadline = time.monotonic() + limits.deadline
    conn, target = _connection(url, min(limits.timeout, limits.deadline))
    dog = _Watchdog(conn, min(deadline, time.monotonic() + limits.timeout))
    try:
        try:
            conn.request(method, target, headers={"Accept-Encoding": "gzip, deflate", **(headers or {})})
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            if dog.fired:
                raise TransferFailed(f"{url}: no answer within {limits.timeout:g} s") from None
            raise StoreError(f"{url}: cannot connect: {e}") from None
        dog.move(deadline)
        status, head = resp.status, {k.lower(): v for k, v in resp.getheaders()}
        if method == "HEAD" or status != 200:
            return status, head, b""
        sink = _Sink(url, limits.max_bytes, no_progress("", None))
        _read_body(resp, _Decoder(head.get("content-encoding", "").strip().lower(), url), sink, _Pace(limits, url),
                   dog, url, limits)  # fmt: skip
        return status, head, sink.value()
    finally:
        dog.stop()
        conn.close()


def _read_body(
    resp: http.client.HTTPResponse, decoder: _Decoder, sink: _Sink, pace: _Pace, dog: _Watchdog, url: str,
    limits: FetchLimits,
) -> None:  # fmt: skip
    """Read the whole body into ``sink``; raises on a broken limit or a dropped connection."""
    try:
        while True:
            chunk = resp.read1(CHUNK)
            if dog.fired:
                break
            if not chunk:
                decoder.finish()
                return
            pace.update(len(chunk))
            decoder.feed(chunk, sink)
    except (OSError, http.client.HTTPException):
        if not dog.fired:
            raise
    raise TransferFailed(f"{url}: not finished within the {limits.deadline:g} s deadline (got {sink.size} bytes)")


def download(
    url: str,
    address: bytes,
    limits: FetchLimits,
    *,
    retries: int = 2,
    progress: ProgressFactory = no_progress,
    label: str | None = None,
) -> bytes:
    """GET a bundle body within ``limits``; a dropped plain transfer is resumed with ``Range``.

    Returns the (unverified) bytes. Raises :class:`~opml.store.base.ModelAbsent` for 404,
    :class:`StoreError` if the server cannot be reached, :class:`TransferFailed` for a broken
    limit or an unusable answer, :class:`ModelIntegrityError` if the body stays shorter than its
    announced length after ``retries`` resumes. Messages name the server ``label`` (default: the
    URL; pass one when the URL holds secrets such as a presigned signature).
    """
    name = label or url
    deadline = time.monotonic() + limits.deadline
    bar: Progress | None = None
    sink = _Sink(name, limits.max_bytes, no_progress("", None))
    total: int | None = None
    resumable = False
    last_error = ""
    stalled = False  # the last attempt failed on a read timeout: the server stalls, it did not cut the body
    try:
        for _attempt in range(retries + 1):
            if not resumable:
                sink.reset()
            start = sink.size
            headers = {"Accept-Encoding": "gzip, deflate"} if not start else {"Range": f"bytes={start}-"}
            conn, target = _connection(url, min(limits.timeout, limits.deadline))
            dog = _Watchdog(conn, min(deadline, time.monotonic() + limits.timeout))
            try:
                try:
                    conn.request("GET", target, headers=headers)
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as e:
                    if dog.fired:
                        raise TransferFailed(f"{name}: no answer within {limits.timeout:g} s") from None
                    if start == 0:
                        raise StoreError(f"{name}: cannot connect: {e}") from None
                    last_error = f"{type(e).__name__} on resume after {start} bytes"
                    continue
                dog.move(deadline)
                length = _check_answer(resp, name, address, start, total, limits)
                if resp.status == 200 and start:  # the server ignored the Range: start over
                    sink.reset()
                    start = 0
                decoder = _Decoder(resp.getheader("content-encoding", "").strip().lower(), name)
                # Only a plain body of known length can be checked for completeness and resumed;
                # a compressed one is complete when its stream ends (checked by the decoder).
                if start and not decoder.identity:
                    raise TransferFailed(f"{name}: answered a resume with a compressed body")
                total = length if decoder.identity else None
                resumable = total is not None
                if bar is None:
                    bar = progress(f"fetch {address_hex(address)[:10]}", total)
                    sink.progress = bar
                try:
                    _read_body(resp, decoder, sink, _Pace(limits, name), dog, name, limits)
                except (OSError, http.client.HTTPException) as e:  # dropped: resume if we can
                    last_error = f"{type(e).__name__} after {sink.size} bytes"
                    stalled = isinstance(e, TimeoutError)
                    continue
            finally:
                dog.stop()
                conn.close()
            if total is None or sink.size >= total:
                return sink.value()
            last_error = f"connection closed after {sink.size} of {total} bytes"
            stalled = False
    finally:
        if bar is not None:
            bar.close()
    if stalled:
        raise TransferFailed(f"{name}: stalled: no data for {limits.timeout:g} s (got {sink.size} bytes)")
    raise ModelIntegrityError(address, f"download from {name} truncated ({last_error})")


def _check_answer(
    resp: http.client.HTTPResponse, url: str, address: bytes, start: int, total: int | None, limits: FetchLimits
) -> int | None:
    """Status and length checks before any body byte is read; returns the announced total length."""
    if resp.status == 404:
        raise ModelAbsent(f"{url}: not found (HTTP 404)")
    if resp.status == 200:
        length = _int_header(resp.getheader("content-length"))  # (a resume answered in full restarts)
    elif resp.status == 206 and start:
        content_range = resp.getheader("content-range", "")
        if not content_range.startswith(f"bytes {start}-"):
            raise TransferFailed(f"{url}: answered a resume with the wrong range {content_range[:80]!r}")
        length = _range_total(content_range)
        if total is not None and length != total:
            raise TransferFailed(f"{url}: the resumed body has another total length ({length}, not {total})")
    else:
        raise TransferFailed(f"{url}: HTTP {resp.status} {resp.reason}"[:300])
    if length is not None and length > limits.max_bytes:
        raise TransferFailed(
            f"{url} announces {length} bytes for model {address_hex(address)}, over the {limits.max_bytes}-byte "
            "limit (raise it with --max-model-size)"
        )
    return length
