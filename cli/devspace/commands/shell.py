"""`devspace ssh [SPACE]` (also `devspace enter`): an interactive shell in the space.

The shell runs in the sidecar, which shares the pod's network and process namespaces and
/workspace with the dev container, and starts in /workspace. On a terminal it gets a real
PTY that follows the local window's size; the shell's exit status becomes ours.
"""

from __future__ import annotations

import click

from devspace import terminal
from devspace.channels import converted
from devspace.commands.common import server_option
from devspace.commands.execute import connection_for, opened, stream
from devspace.errors import SshError
from devspace.ssh import Connection


def in_terminal(connection: Connection, command: str | None = None) -> int:
    """Run the login shell (or `command`) in a remote PTY joined to this terminal, in raw
    mode, following its size; return the exit status. Raises `SshError` if the connection
    is lost before the status arrives."""
    process = connection.shell(command, term=terminal.term_type(), size=terminal.size())
    channel = process.channel
    with terminal.raw_mode(), converted("in the remote terminal"):
        terminal.interact(channel, channel.resize_pty)
    status = process.wait()
    if status < 0:
        raise SshError("the connection to the space was lost; the shell may have ended")
    return status


@click.command()
@click.argument("space", required=False)
@server_option
@click.pass_context
def shell(ctx: click.Context, space: str | None, server: str | None) -> None:
    """Open a shell in SPACE (default: `devspace spaces use`) and exit with its status.

    On a terminal the shell gets a PTY of your terminal's type and size; otherwise (input
    from a pipe or file) it reads its commands from stdin, as `ssh -T` does.
    """
    with opened(connection_for(server, space)) as connection:
        on_terminal = terminal.is_terminal()
        status = in_terminal(connection) if on_terminal else stream(connection.shell())
    ctx.exit(status)
