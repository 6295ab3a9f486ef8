"""The ``aievm`` command line: one entry point, sub-commands per concern.

Sub-command groups live in their own modules and register themselves on :data:`main` when this
package is imported (``model`` conversion/inspection, the model store, inference).
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aievm")
def main() -> None:
    """AI EVM: an Ethereum-compatible rollup with a deterministic ML inference precompile."""


@main.group()
def model() -> None:
    """Convert, inspect, store, serve and prove model bundles."""


def _register() -> None:
    import importlib
    import pkgutil
    import sys

    from opml.errors import NativeIsaError

    try:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
    except NativeIsaError as e:  # OPML_NATIVE_ISA names a set this CPU lacks: refuse to start, in one line
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


_register()
