"""``aievm model add|get|ls|rm|serve|prove|verify-proof``: the model store on the command line.

``--store`` takes a store URI (see :func:`opml.store.open_store`: a directory, ``http(s)://`` hub,
``s3://bucket/prefix``, or a comma-separated list of them); it defaults to ``$AIEVM_STORE`` or the
local directory ``~/.aievm/models``. Exit codes: 0 success, 1 error, 2 usage error, 3 model not
available, 4 integrity failure (bytes that do not match the address).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ai_evm.cli import model
from opml.errors import BundleError, ModelIntegrityError, ModelNotAvailable, OpmlError

F = TypeVar("F", bound=Callable[..., Any])

#: Transfers at least this big get a progress bar (on a terminal).
PROGRESS_MIN_BYTES = 4 << 20

store_option = click.option(
    "--store",
    "store_uri",
    envvar="AIEVM_STORE",
    default=None,
    metavar="URI",
    help="Store URI: directory, http(s):// hub, s3://bucket/prefix, or a comma list "
    "[env AIEVM_STORE; default ~/.aievm/models].",
)


class _Bar:
    """A tqdm bar that only appears for big transfers."""

    def __init__(self, desc: str, total: int | None) -> None:
        from tqdm import tqdm

        show = total is None or total >= PROGRESS_MIN_BYTES
        self.bar = tqdm(
            desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
            disable=None if show else True, leave=False,
        )  # fmt: skip

    def update(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _open(uri: str | None) -> Any:
    from opml.store import open_store

    return open_store(uri, progress=_Bar)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _errors(fn: F) -> F:
    """Turn the store's named errors into a one-line message and a distinct exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from opml.commitment import ProofError

        try:
            return fn(*args, **kwargs)
        except ModelNotAvailable as e:
            _fail(str(e), 3)
        except ModelIntegrityError as e:
            _fail(f"integrity check failed: {e}", 4)
        except BundleError as e:
            _fail(f"not a valid bundle: {e}", 1)
        except (OpmlError, ProofError) as e:
            _fail(str(e), 1)
        except OSError as e:
            _fail(f"{e.filename or ''}: {e.strerror or e}", 1)

    return wrapper  # type: ignore[return-value]


@model.command("add")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@store_option
@_errors
def add_cmd(bundle: Path, store_uri: str | None) -> None:
    """Verify BUNDLE and add it to the store; prints its address (0x + 64 hex digits)."""
    data = bundle.read_bytes()
    address = _open(store_uri).put(data)
    click.echo("0x" + address.hex())


@model.command("get")
@click.argument("address")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@store_option
@_errors
def get_cmd(address: str, output: Path, store_uri: str | None) -> None:
    """Fetch the model ADDRESS (verified) and write it to OUTPUT."""
    from opml.store import parse_address

    data = _open(store_uri).get(parse_address(address))
    out_dir = output.parent if str(output.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    click.echo(f"wrote {len(data)} bytes to {output}", err=True)


@model.command("ls")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON listing.")
@_errors
def ls_cmd(store_uri: str | None, as_json: bool) -> None:
    """List the models in the store: address and size in bytes."""
    store = _open(store_uri)
    rows = [("0x" + a.hex(), store.size(a)) for a in store.list()]
    if as_json:
        click.echo(json.dumps({"models": [{"address": a, "size": n} for a, n in rows]}, indent=1))
        return
    for a, n in rows:
        click.echo(f"{a}  {'?' if n is None else n}")


@model.command("rm")
@click.argument("address")
@store_option
@_errors
def rm_cmd(address: str, store_uri: str | None) -> None:
    """Remove the model ADDRESS from the store."""
    from opml.store import parse_address

    if not _open(store_uri).remove(parse_address(address)):
        raise ModelNotAvailable(f"model {address} is not in the store")


@model.command("serve")
@click.option("--store", "store_dir", default=None, metavar="DIR", help="Model directory [~/.aievm/models].")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--log-level", default="warning", show_default=True)
@_errors
def serve_cmd(store_dir: str | None, host: str, port: int, log_level: str) -> None:
    """Serve a model directory over HTTP: GET /models, GET|HEAD /models/0x<address>."""
    from opml.store.local import LocalStore, default_store_dir
    from opml.store.server import serve

    directory = str(Path(store_dir).expanduser()) if store_dir else str(default_store_dir())
    count = len(LocalStore(directory).list())
    click.echo(f"serving {count} models from {directory} on http://{host}:{port}", err=True)
    serve(directory, host=host, port=port, log_level=log_level)


@model.command("prove")
@click.argument("address")
@click.option("--tensor", help="Tensor name (or index) whose data word to prove.")
@click.option("--word", "word_index", type=int, help="Index of the 32-byte data word.")
@click.option("--node", "node_index", type=int, help="Prove graph node J's description instead.")
@store_option
@_errors
def prove_cmd(
    address: str, tensor: str | None, word_index: int | None, node_index: int | None, store_uri: str | None
) -> None:
    """Print a JSON Merkle proof of one data word of a tensor (or of a node) against ADDRESS."""
    from opml.commitment import BundleTree
    from opml.store import parse_address

    if (node_index is None) == (tensor is None) or (tensor is not None and word_index is None):
        raise click.UsageError("give either --tensor NAME --word I, or --node J")
    addr = parse_address(address)
    tree = BundleTree(_open(store_uri).get_bundle(addr))
    out: dict[str, Any] = {"address": "0x" + addr.hex()}
    if node_index is not None:
        out |= tree.prove_node(node_index).to_json()
    else:
        assert tensor is not None and word_index is not None
        names = [t.name for t in tree.bundle.tensors]
        index = names.index(tensor) if tensor in names else int(tensor) if tensor.isdigit() else tensor
        proof = tree.prove(index, word_index)
        out |= {"tensor_name": names[proof.tensor_index], **proof.to_json()}
    click.echo(json.dumps(out, indent=1))


@model.command("verify-proof")
@click.argument("proof_file", type=click.File("r"))
@click.option("--address", "expected", help="Model address to check against [default: the file's].")
@_errors
def verify_proof_cmd(proof_file: Any, expected: str | None) -> None:
    """Check a JSON proof (as printed by ``prove``; '-' for stdin) against a model address."""
    from opml.commitment import NodeProof, proof_from_json, verify, verify_node
    from opml.store import parse_address

    try:
        obj = json.load(proof_file)
    except ValueError as e:
        raise click.UsageError(f"proof is not JSON: {e}") from None
    address = parse_address(expected or (obj.get("address", "") if isinstance(obj, dict) else ""))
    p = proof_from_json(obj)
    if isinstance(p, NodeProof):
        ok = verify_node(address, p.node_index, p.node_words, p)
    else:
        ok = verify(address, p.tensor_index, p.word_index, p.word, p)
    click.echo("valid" if ok else "INVALID")
    if not ok:
        sys.exit(4)
