"""`devspace proxy SPACE`: OpenSSH's ProxyCommand for a space (see `devspace ssh-config`).

It does the gateway hop itself, in paramiko with the gateway's host key pinned, opens a
`direct-tcpip` channel to the space's sidecar and joins it to stdin and stdout, so the
OpenSSH client on top talks to the sidecar end to end (and checks its host key itself).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

import click
import paramiko

from devspace.commands.common import server_option, which_server
from devspace.errors import SshError, UsageError


def _pin(known_hosts: Path, name: str, public_key: str) -> None:
    """Bring `name`'s line in ssh-config's known_hosts up to date with the published key, so a
    re-created space works without running ssh-config again. The proxy runs before OpenSSH
    checks the host key, and the key comes from the server, never from the network path."""
    from devspace.commands.sshconfig import alias, known_hosts_line  # noqa: PLC0415
    from devspace.config import write_atomically  # noqa: PLC0415

    try:
        lines = known_hosts.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return  # ssh-config --write was not used: the person's own configuration pins it
    wanted = known_hosts_line(name, public_key)
    kept = [line for line in lines if line.split(" ", 1)[0] != alias(name)]
    if [*kept, wanted] != lines:
        write_atomically(known_hosts, "".join([*kept, wanted]).encode())


def _stdin_to(channel: paramiko.Channel) -> None:
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException, ValueError):
        while data := os.read(sys.stdin.fileno(), 65536):
            channel.sendall(data)
        channel.shutdown_write()


@click.command()
@click.argument("space", required=False)
@click.option(
    "--certificate-only",
    is_flag=True,
    help="Only renew the SSH certificate if it expires soon (ssh-config's Match exec).",
)
@click.option(
    "--ssh-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="OpenSSH's user directory of ssh-config --write (default: ~/.ssh).",
)
@server_option
def proxy(
    space: str | None, certificate_only: bool, ssh_dir: Path | None, server: str | None
) -> None:
    """Join stdin and stdout to SPACE's sshd, through the gateway (an SSH ProxyCommand)."""
    from devspace.api import Api  # noqa: PLC0415 - requests is slow to import
    from devspace.certificates import ensure_identity  # noqa: PLC0415
    from devspace.commands.sshconfig import files  # noqa: PLC0415
    from devspace.remote import gateway_hop, sidecar_hop, space_path  # noqa: PLC0415
    from devspace.ssh import Connection  # noqa: PLC0415

    url = which_server(server)
    api = Api(url)
    identity = ensure_identity(api)
    if certificate_only:
        return
    if not space:
        raise UsageError("which space? `devspace proxy SPACE`")
    found = api.call("GET", space_path(space))
    sidecar = sidecar_hop(found)  # raises SpaceNotRunning with what to do
    _, known_hosts = files(ssh_dir or Path.home() / ".ssh", url)
    if found["host_key"].get("public_key"):
        _pin(known_hosts, space, str(found["host_key"]["public_key"]))
    with Connection(gateway_hop(api), identity) as gateway:
        channel = gateway.open_tcp(sidecar.host, sidecar.port)
        threading.Thread(target=_stdin_to, args=(channel,), daemon=True).start()
        while True:
            try:
                data = channel.recv(65536)
            except (OSError, EOFError, paramiko.SSHException) as error:
                raise SshError(f"the connection to space {space} ended: {error}") from error
            if not data:
                return
            try:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            except BrokenPipeError:  # OpenSSH is done with us
                return
