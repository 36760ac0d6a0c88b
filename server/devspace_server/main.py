"""The `devspace-server` command."""

from __future__ import annotations

import click

from devspace_server import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="devspace-server")
def cli() -> None:
    """Run and administer the devspace server."""


def main() -> None:
    """Console-script entry point."""
    cli()
