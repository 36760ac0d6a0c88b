"""`devspace forward [SPACE] LOCAL[:REMOTE]... [-R REMOTE[:LOCAL]]...`: port tunnels to and
from a space that reconnect by themselves (see `devspace.tunnels`)."""

from __future__ import annotations

import re

import click

from devspace.commands.common import server_option, which_server, which_space
from devspace.errors import UsageError
from devspace.output import progress

_PORTS = re.compile(r"^\d+(:\d+)?$")


@click.command()
@click.argument("words", nargs=-1, metavar="[SPACE] LOCAL[:REMOTE]...")
@click.option(
    "--reverse",
    "-R",
    "reverse",
    multiple=True,
    metavar="REMOTE[:LOCAL]",
    help="Listen on the space's localhost:REMOTE and carry connections to this computer's "
    "localhost:LOCAL (repeatable).",
)
@server_option
@click.pass_context
def forward(
    ctx: click.Context, words: tuple[str, ...], reverse: tuple[str, ...], server: str | None
) -> None:
    """Forward ports between this computer and a space until Ctrl-C.

    LOCAL[:REMOTE] listens on 127.0.0.1:LOCAL here and connects to localhost:REMOTE in the
    space (LOCAL 0 picks a free port); -R REMOTE[:LOCAL] does the opposite, so programs in
    the space reach a service on this computer. The tunnels survive a dropped connection:
    they reconnect with backoff and keep their local ports. A local port in use is an error
    (exit code 5).
    """
    from devspace.api import Api  # noqa: PLC0415 - requests is slow to import
    from devspace.remote import connect  # noqa: PLC0415
    from devspace.tunnels import Tunnels, parse  # noqa: PLC0415

    space = words[0] if words and not _PORTS.match(words[0]) else None
    specs = words[1:] if space is not None else words
    if not specs and not reverse:
        raise UsageError("which ports? `devspace forward [SPACE] LOCAL[:REMOTE]...` or -R")
    local = [parse(spec) for spec in specs]
    remote = [parse(spec, reverse=True) for spec in reverse]
    url = which_server(server)
    name = which_space(url, space)
    api = Api(url)
    with Tunnels(lambda: connect(api, name), local, remote, say=progress) as tunnels:
        tunnels.start()
        for listening in tunnels.forwards:
            click.echo(f"127.0.0.1:{listening.port} -> {name}:{listening.remote[1]}", color=False)
        for pair in tunnels.reverse:
            click.echo(f"{name}:{pair.remote} -> 127.0.0.1:{pair.local}")
        progress("Forwarding; press Ctrl-C to stop.")
        try:
            tunnels.run()
        except KeyboardInterrupt:
            progress("Stopped; the ports are closed.")
            ctx.exit(130)  # as any program that Ctrl-C ended
