"""`devspace spaces`: list, show, create, delete, stop, start, and choose a default space."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from devspace.api import Api
from devspace.commands.common import server_option, which_server, which_space
from devspace.config import Settings
from devspace.errors import UsageError
from devspace.output import emit, output_option, progress, table


def _path(name: str) -> str:
    return f"/spaces/{quote(name, safe='')}"


def _listing(items: list[dict[str, Any]], default: str | None) -> str:
    if not items:
        return "No spaces yet: create one with `devspace spaces create NAME --image IMAGE`."
    rows = [
        [
            ("* " if s["name"] == default else "  ") + s["name"],
            "stopped" if s["stopped"] and s["phase"] != "stopped" else s["phase"],
            s["image"],
            s["created_at"][:19].replace("T", " "),
        ]
        for s in items
    ]
    return table(["  NAME", "PHASE", "IMAGE", "CREATED"], rows)


def describe(space: dict[str, Any]) -> str:
    """A space for people: its state, why, and what it runs."""
    lines = [
        f"name:       {space['name']}",
        f"phase:      {space['phase']}" + (" (stopped)" if space["stopped"] else ""),
        f"reason:     {space['reason']}",
        f"image:      {space['image']}",
        f"namespace:  {space['namespace']}",
        f"storage:    {space['storage']}",
        f"host key:   {space['host_key']['fingerprint']}",
    ]
    lines += [f"problem:    {p['kind']}: {p['message']}" for p in space.get("problems", [])]
    return "\n".join(lines)


@click.group(invoke_without_command=True)
@server_option
@output_option
@click.pass_context
def spaces(ctx: click.Context, server: str | None, output: str) -> None:
    """Your spaces: list them (the default), or create, show, stop, start, delete, use one."""
    # Resolved by each subcommand, which may name the server itself.
    ctx.obj = server
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_spaces, server=None, output=output)


@spaces.command("list")
@server_option
@output_option
@click.pass_obj
def list_spaces(given: str | None, server: str | None, output: str) -> None:
    """List your spaces; the default one is marked with '*'."""
    server = which_server(server or given)
    items = Api(server).call("GET", "/spaces")["items"]
    default = Settings.load().default_spaces.get(server)
    emit(items, output, lambda data: _listing(data, default))


@spaces.command()
@click.argument("name", required=False)
@server_option
@output_option
@click.pass_obj
def show(given: str | None, server: str | None, name: str | None, output: str) -> None:
    """Show a space (the default one unless NAME is given)."""
    server = which_server(server or given)
    found = Api(server).call("GET", _path(which_space(server, name)))
    emit(found, output, describe)


@spaces.command()
@click.argument("name")
@click.option("--image", required=True, help="The dev container's image, e.g. python:3.12.")
@click.option("--storage", help="The workspace volume's size, e.g. 10Gi.")
@click.option("--stopped", is_flag=True, help="Create it without starting its pod.")
@server_option
@output_option
@click.pass_obj
def create(
    given: str | None,
    *,
    server: str | None,
    name: str,
    image: str,
    storage: str | None,
    stopped: bool,
    output: str,
) -> None:
    """Create a space called NAME."""
    server = which_server(server or given)
    body: dict[str, Any] = {"name": name, "image": image, "stopped": stopped}
    if storage:
        body["storage"] = storage
    created = Api(server).call("POST", "/spaces", json=body)
    progress(f"Created space {name!r}; it is {created['phase']}: {created['reason']}")
    emit(created, output, describe)


@spaces.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@server_option
@click.pass_obj
def delete(given: str | None, server: str | None, name: str, yes: bool) -> None:
    """Delete space NAME and its workspace, for good."""
    server = which_server(server or given)
    if not yes:
        import sys  # noqa: PLC0415

        if not sys.stdin.isatty():
            raise UsageError(f"Deleting {name!r} destroys its workspace: add --yes to confirm.")
        click.confirm(f"Delete space {name!r} and everything in its workspace?", abort=True)
    Api(server).call("DELETE", _path(name))
    settings = Settings.load()
    if settings.default_spaces.get(server) == name:
        del settings.default_spaces[server]
        settings.save()
    progress(f"Deleted space {name!r}.")


def _set_stopped(server: str, name: str | None, stopped: bool) -> None:
    name = which_space(server, name)
    changed = Api(server).call("PATCH", _path(name), json={"stopped": stopped})
    verb = "Stopping" if stopped else "Starting"
    progress(f"{verb} space {name!r}; it is {changed['phase']}: {changed['reason']}")


@spaces.command()
@click.argument("name", required=False)
@server_option
@click.pass_obj
def stop(given: str | None, server: str | None, name: str | None) -> None:
    """Stop a space's pod; its workspace is kept."""
    _set_stopped(which_server(server or given), name, True)


@spaces.command()
@click.argument("name", required=False)
@server_option
@click.pass_obj
def start(given: str | None, server: str | None, name: str | None) -> None:
    """Start a stopped space again."""
    _set_stopped(which_server(server or given), name, False)


@spaces.command()
@click.argument("name")
@server_option
@click.pass_obj
def use(given: str | None, server: str | None, name: str) -> None:
    """Make NAME the space that commands use when none is named."""
    server = which_server(server or given)
    Api(server).call("GET", _path(name))  # refuses a space that does not exist
    settings = Settings.load()
    settings.default_spaces[server] = name
    settings.save()
    progress(f"Commands on {server} now use space {name!r} by default.")
