"""What several commands share: the `--server` option and which server and space they mean."""

from __future__ import annotations

import click

from devspace.config import Settings, normalise_server
from devspace.errors import UsageError

server_option = click.option(
    "--server",
    "-s",
    envvar="DEVSPACE_SERVER",
    metavar="URL",
    help="The devspace server (default: the one you logged in to first; env DEVSPACE_SERVER).",
)


def which_server(given: str | None, settings: Settings | None = None) -> str:
    """The server a command talks to: `given`, else the default. Raises `UsageError` if none."""
    if given:
        return normalise_server(given)
    settings = settings or Settings.load()
    if settings.default_server:
        return settings.default_server
    raise UsageError("Which server? Pass --server URL, or run `devspace login --server URL` first.")


def which_space(server: str, given: str | None) -> str:
    """The space a command is about: `given`, else the project's (the `name` in the nearest
    devspace.yaml, as `devspace up` uses it), else the default set with `devspace spaces use`.

    Raises `UsageError` when there is none, or the project's file is wrong.
    """
    if given:
        return given
    from pathlib import Path  # noqa: PLC0415 - kept off the start-up path

    from devspace import project  # noqa: PLC0415 - reads YAML: only when there is no name

    found = project.find(Path.cwd())
    if found is not None:
        return project.load(found).name
    chosen = Settings.load().default_spaces.get(server)
    if chosen:
        return chosen
    raise UsageError(
        "Which space? Name it, run the command in a project with a devspace.yaml, or choose "
        "a default with `devspace spaces use NAME`."
    )
