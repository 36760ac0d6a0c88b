"""The `devspace` command: parses arguments and dispatches to one module per verb."""

from __future__ import annotations

import click

from devspace import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="devspace")
def cli() -> None:
    """Develop inside Kubernetes: your own space, synced and tunnelled over SSH."""


def main() -> None:
    """Console-script entry point."""
    cli()
