"""`devspace up`: make the project's space exist and run, then forward its ports, sync its
folders and open a terminal in it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from devspace.commands.common import server_option, which_server, which_space
from devspace.errors import UsageError
from devspace.output import emit, output_option, progress
from devspace.project import FILE_NAME, Project

if TYPE_CHECKING:
    from devspace.api import Api

DEFAULT_TIMEOUT = 300.0

file_option = click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The project file (default: {FILE_NAME} here or in a folder above).",
)


@dataclass(frozen=True)
class Target:
    """The space a command is about: its create body, and the project it came from, if any."""

    desired: dict[str, Any]
    project: Project | None

    @property
    def name(self) -> str:
        """The space's name."""
        return str(self.desired["name"])


def resolve(
    file: Path | None, name: str | None, image: str | None, *, need_image: bool = True
) -> Target:
    """The space from `file` (or the devspace.yaml found from here), with NAME and --image
    overriding it; without a file, from NAME and --image alone.

    Raises `ProjectError` for a wrong file, `UsageError` when there is nothing to go on.
    """
    from devspace import project  # noqa: PLC0415 - imports PyYAML only when a file is read

    path = file or project.find(Path.cwd())
    if path is not None:
        found = project.load(path)
        desired = found.desired()
        if name:
            desired["name"] = name
        if image:
            desired["image"] = image
        return Target(desired, found)
    if not need_image:
        return Target({"name": name} if name else {}, None)
    if not image:
        raise UsageError(
            f"no {FILE_NAME} here or in a folder above: run `devspace init` to write one, or "
            "pass --image (and a NAME)"
        )
    return Target({"name": name or project.space_name_for(Path.cwd()), "image": image}, None)


def _said(action: str, name: str, changed: list[str]) -> str:
    if action == "created":
        return f"Created space {name!r}."
    if action == "started":
        return f"Starting space {name!r}."
    if action == "changed":
        return f"Updating space {name!r} ({', '.join(changed)}); its pod restarts."
    return f"Space {name!r} is up to date."


@click.command()
@click.argument("name", required=False)
@file_option
@click.option("--image", help="The dev container's image (overrides devspace.yaml).")
@click.option(
    "--detach",
    "-d",
    is_flag=True,
    help="Return once the space runs: no ports, sync or terminal.",
)
@click.option(
    "--no-terminal",
    "-T",
    is_flag=True,
    help="Forward ports and sync without a terminal, until Ctrl-C (the default without one).",
)
@click.option("--no-sync", is_flag=True, help="Do not sync folders.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the space to run.",
)
@server_option
@output_option
@click.pass_context
def up(
    ctx: click.Context,
    *,
    name: str | None,
    file: Path | None,
    image: str | None,
    detach: bool,
    no_terminal: bool,
    no_sync: bool,
    timeout: float,
    server: str | None,
    output: str,
) -> None:
    """Start the space of this project (devspace.yaml), then forward its ports, sync its
    folders and open a shell in it; leaving the shell stops them all.

    The space is created if missing, started if stopped, and updated where devspace.yaml
    changed (image, command, args, env, resources, ports; the storage size is fixed at
    creation). While it starts, its phase and the reason are shown.

    Without a terminal (or with -T) ports and sync run until Ctrl-C; with -d the command
    returns once the space runs (and prints it with --output json).

    Exit codes beyond the usual: 4 when the space cannot run (the server's reason: a quota it
    does not fit, an image that cannot be pulled, no node with room), 1 when it did not run
    within --timeout, 2 for a wrong devspace.yaml.
    """
    from devspace.api import Api  # noqa: PLC0415 - requests is slow to import
    from devspace.ensure import Display, ensure, is_running, wait_running  # noqa: PLC0415

    target = resolve(file, name, image)
    api = Api(which_server(server))
    done = ensure(api, target.desired)
    for note in done.notes:
        progress(f"Note: {note}")
    progress(_said(done.action, target.name, done.changed))
    space = done.space
    if done.since is not None or not is_running(space):
        space = wait_running(
            api,
            space,
            since=done.since,
            timeout=timeout,
            display=Display(),
            replaced=done.replaced,
        )
    if detach:
        emit(
            space,
            output,
            lambda s: f"{s['name']} is running; `devspace ssh {s['name']}` opens a shell.",
        )
        return
    ctx.exit(_attach(api, target, interactive=not no_terminal, sync=not no_sync))


def _attach(api: Api, target: Target, *, interactive: bool, sync: bool) -> int:
    """Run the session on the running space; returns the exit status (the shell's, or 0)."""
    from devspace import terminal  # noqa: PLC0415
    from devspace.remote import connect  # noqa: PLC0415
    from devspace.session import Session  # noqa: PLC0415

    found = target.project
    session = Session(
        target.name,
        lambda: connect(api, target.name),
        ports=found.ports if found else (),
        folders=found.sync if found and sync else (),
        say=progress,
    )
    if interactive and not terminal.is_terminal():
        interactive = False
        progress("No terminal here: forwarding ports and syncing without a shell.")
    try:
        session.start()
        if interactive:
            status = session.terminal()
            failed = session.failed()
            if failed is not None:  # kept quiet while the shell had the screen
                progress(f"Note: while the shell ran, this stopped: {failed}")
            return status
        if not session.ports and not session.folders:
            progress(f"Nothing to forward or sync; `devspace ssh {target.name}` opens a shell.")
            return 0
        progress("Press Ctrl-C to stop.")
        session.hold()
        return 0
    finally:
        session.stop()


def space_for(server: str, file: Path | None, name: str | None) -> str:
    """The space `down` and friends mean: NAME, else devspace.yaml's, else the default one."""
    if name:
        return name
    target = resolve(file, None, None, need_image=False)
    return target.name if target.desired.get("name") else which_space(server, None)
