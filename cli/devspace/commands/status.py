"""`devspace status`: a space's phase and why, and usage against quota."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import click

from devspace.api import Api
from devspace.commands.common import server_option, which_server
from devspace.config import Settings
from devspace.output import emit, output_option, table


def _usage(hard: dict[str, str], used: dict[str, str]) -> list[list[str]]:
    return [[name, used.get(name, "0"), limit] for name, limit in sorted(hard.items())]


def _text(status: dict[str, Any]) -> str:
    lines: list[str] = []
    space = status.get("space")
    if space is not None:
        lines.append(f"space:   {space['name']} on {status['server']}")
        lines.append(f"phase:   {space['phase']}" + (" (stopped)" if space["stopped"] else ""))
        lines.append(f"reason:  {space['reason']}")
        lines += [f"problem: {p['kind']}: {p['message']}" for p in space["problems"]]
        lines += _running(status)
        rows = _usage(space["quota"]["hard"], space["quota"]["used"])
        if rows:
            lines += ["", table(["RESOURCE", "USED", "LIMIT"], rows)]
        else:
            lines.append("usage:   not observed yet")
    quota = status["quota"]
    allowed = quota["effective"].get("spaces")
    lines.append("")
    lines.append(
        f"{quota['username']}: {quota['usage']['spaces']} of "
        f"{'unlimited' if allowed is None else allowed} spaces"
    )
    return "\n".join(lines).strip("\n")


def _running(status: dict[str, Any]) -> list[str]:
    """What a `devspace up` or `devspace sync` of this space is doing, if one runs."""
    lines = []
    session = status.get("session")
    if session:
        ports = ", ".join(
            f"127.0.0.1:{p['local']} -> {p['remote']}" + (f" ({p['name']})" if p["name"] else "")
            for p in session["ports"]
        )
        lines.append(f"ports:   {ports}; {session['tunnels']} (pid {session['pid']})")
    for sync in status.get("sync", []):
        last = sync.get("last_sync")
        when = time.strftime("%H:%M:%S", time.localtime(last)) if last else "never"
        lines.append(
            f"sync:    {sync['local']} <-> {sync['remote']}: {sync['state']}, last pass {when}, "
            f"{sync.get('pending', 0)} pending, {len(sync.get('conflicts') or [])} conflicts"
        )
    return lines


@click.command()
@click.argument("name", required=False)
@server_option
@output_option
def status(name: str | None, server: str | None, output: str) -> None:
    """Show a space's phase and reason, and your usage against your quota.

    NAME defaults to the space chosen with `devspace spaces use`; with neither, only your
    quota is shown.
    """
    url = which_server(server)
    api = Api(url)
    name = name or Settings.load().default_spaces.get(url)
    result: dict[str, Any] = {"server": url, "space": None}
    if name:
        from devspace.session import read_session_status  # noqa: PLC0415
        from devspace.sync.lock import read_statuses  # noqa: PLC0415

        result["space"] = api.call("GET", f"/spaces/{quote(name, safe='')}")
        result["session"] = read_session_status(name)
        result["sync"] = [s for s in read_statuses() if s.get("space") == name]
    result["quota"] = api.call("GET", "/quota")
    emit(result, output, _text)
