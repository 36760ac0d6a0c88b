"""`devspace down`: stop the project's space; its workspace is kept for the next `up`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from devspace.commands.common import server_option, which_server
from devspace.commands.up import file_option, space_for
from devspace.errors import DevspaceError
from devspace.output import emit, output_option, progress

if TYPE_CHECKING:
    from devspace.api import Api
    from devspace.ensure import Display

DEFAULT_TIMEOUT = 120.0


@click.command()
@click.argument("name", required=False)
@file_option
@click.option("--no-wait", is_flag=True, help="Return at once, without waiting for the pod.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the pod to stop.",
)
@server_option
@output_option
def down(
    *,
    name: str | None,
    file: Path | None,
    no_wait: bool,
    timeout: float,
    server: str | None,
    output: str,
) -> None:
    """Stop the space of this project (devspace.yaml), or NAME, or the default space.

    Its pod stops and its workspace is kept: `devspace up` starts it again with every file in
    /workspace where it was. `devspace spaces delete` removes a space for good.
    """
    from devspace.api import Api  # noqa: PLC0415 - requests is slow to import
    from devspace.ensure import Display, find_space  # noqa: PLC0415
    from devspace.remote import space_path  # noqa: PLC0415

    url = which_server(server)
    api = Api(url)
    space_name = space_for(url, file, name)
    space = find_space(api, space_name)
    if space is None:
        raise DevspaceError(
            f"there is no space {space_name!r} to stop (`devspace spaces` lists yours)"
        )
    if space["stopped"]:
        progress(f"Space {space_name!r} is stopped already.")
    else:
        space = api.call("PATCH", space_path(space_name), json={"stopped": True})
        progress(f"Stopping space {space_name!r}; its workspace is kept.")
        if not no_wait:
            space = _wait_stopped(api, space, timeout, Display())
    emit(space, output, lambda s: f"{s['name']} is {s['phase']}: {s['reason']}")


def _wait_stopped(
    api: Api, space: dict[str, Any], timeout: float, display: Display
) -> dict[str, Any]:
    """Poll until the reconciler has scaled the space to zero. Raises `DevspaceError` after
    `timeout` seconds."""
    from devspace.ensure import StartTimedOut, observed_since  # noqa: PLC0415
    from devspace.remote import space_path  # noqa: PLC0415

    since, started = space["updated_at"], time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        fresh = observed_since(space, since)
        if fresh and space["phase"] == "stopped":
            display.abandon()
            return space
        display.show(space, elapsed, fresh)
        if elapsed > timeout:
            display.abandon()
            raise StartTimedOut(
                f"space {space['name']} is still {space['phase']} after {timeout:g} s "
                f"({space['reason']}); it will stop when the cluster gets to it"
            )
        time.sleep(0.5)
        space = api.call("GET", space_path(space["name"]))
