"""`devspace proxy SPACE`: OpenSSH's ProxyCommand for a space (see `devspace ssh-config`).

It asks the server where the space is and which host keys to expect, brings the pins up to
date, then joins stdin and stdout to the space's sidecar through the gateway, so the OpenSSH
client on top talks to the sidecar end to end (and checks the sidecar's host key itself).

The gateway hop is made as the CLI's own sessions make it (`devspace.jump`): by this computer's
OpenSSH client when there is one, `ssh -W POD:2222 gateway`, which the proxy becomes on POSIX
(`execv`: no Python left between the two ssh processes; about half the CPU of relaying in
Python, measured) and runs on Windows (where exec would be a new process anyway). Its
known_hosts file is a persistent one per server beside the CLI's key, `gateway.known_hosts`,
rewritten only when the published key changes: a temporary file could not be removed by a
process that is gone, and ssh-config's own known_hosts file may not exist (nor is its
`devspace-NAME` namespace free: a space may be called `gateway`). Otherwise
(`DEVSPACE_SSH_CLIENT=paramiko`, no OpenSSH client) paramiko makes the hop and the proxy
relays the bytes between stdin, stdout and a `direct-tcpip` channel. Either way the gateway's
key is pinned as the server publishes it, never learnt from the network.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click
import paramiko

from devspace.commands.common import server_option, which_server
from devspace.errors import SshError, UsageError

if TYPE_CHECKING:
    from devspace.hops import Hop, Identity

log = logging.getLogger(__name__)

TIMEOUT = 15
"""Seconds allowed to connect to the gateway (as `devspace.ssh.Connection`'s default)."""
KEEPALIVE = 15
"""Seconds between keepalives to the gateway, so a dead path is noticed."""


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


def pin_gateway(known_hosts: Path, gateway: Hop) -> None:
    """Make `known_hosts` pin exactly `gateway`'s published key (under `GATEWAY_ALIAS`), writing
    it only when it says anything else. Raises: OSError if it cannot be written."""
    from devspace.config import write_atomically  # noqa: PLC0415
    from devspace.jump import GATEWAY_ALIAS  # noqa: PLC0415

    wanted = f"{GATEWAY_ALIAS} {gateway.host_key.key}\n".encode()
    with contextlib.suppress(FileNotFoundError):
        if known_hosts.read_bytes() == wanted:
            return
    write_atomically(known_hosts, wanted)


def _become_openssh(
    program: str, gateway: Hop, sidecar: Hop, identity: Identity, pins: Path
) -> int:
    """Join stdin and stdout to `sidecar` with `ssh -W` through `gateway`, its key pinned in
    `pins`: on POSIX by becoming that process (never returns), on Windows by running it and
    returning its exit status.

    Raises: SshError if the OpenSSH client cannot be started.
    """
    from devspace.jump import CLIENT_SETTING, command  # noqa: PLC0415
    from devspace.output import stop_log  # noqa: PLC0415
    from devspace.ssh import CIPHERS, DIGESTS  # noqa: PLC0415

    argv = command(
        program, gateway, sidecar, identity, pins,
        ciphers=CIPHERS, macs=DIGESTS, timeout=TIMEOUT, keepalive=KEEPALIVE,
    )  # fmt: skip
    log.debug("proxy: %s", " ".join(argv))
    cannot = f"cannot start the OpenSSH client {program}; set {CLIENT_SETTING}=paramiko"
    if os.name == "nt":
        try:
            return subprocess.run(argv, check=False).returncode
        except OSError as error:
            raise SshError(f"{cannot} ({error.strerror or error})") from error
    stop_log()  # exec skips the CLI's own ending, and the log's last lines with it
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores these; an ignored signal stays ignored across exec (subprocess restores
    # them the same way for its children).
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execv(program, argv)  # noqa: S606 - our own argv, no shell
    except OSError as error:
        raise SshError(f"{cannot} ({error.strerror or error})") from error
    raise AssertionError("unreachable")  # pragma: no cover - execv returns only by raising


def _relay(space: str, gateway: Hop, sidecar: Hop, identity: Identity) -> None:
    """Join stdin and stdout to `sidecar` over a `direct-tcpip` channel of a paramiko
    connection to `gateway`, until either end closes. Raises: SshError, AuthError."""
    from devspace.ssh import Connection  # noqa: PLC0415

    with Connection(gateway, identity, timeout=TIMEOUT, keepalive=KEEPALIVE) as connection:
        channel = connection.open_tcp(sidecar.host, sidecar.port)
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
    from devspace.certificates import (  # noqa: PLC0415
        GATEWAY_PINS,
        ensure_identity,
        key_directory,
    )
    from devspace.commands.sshconfig import files  # noqa: PLC0415
    from devspace.jump import gateway_client  # noqa: PLC0415
    from devspace.remote import gateway_hop, sidecar_hop, space_path  # noqa: PLC0415

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
    gateway = gateway_hop(api)
    program = gateway_client(gateway)  # None: paramiko's turn
    if program is not None:
        pins = key_directory(url) / GATEWAY_PINS
        try:
            pin_gateway(pins, gateway)
        except OSError as error:  # a read-only directory, say: paramiko needs no file
            log.debug(
                "proxy: cannot pin the gateway in %s (%s); paramiko makes the hop", pins, error
            )
        else:
            status = _become_openssh(program, gateway, sidecar, identity, pins)
            click.get_current_context().exit(status)  # Windows: POSIX never comes back
    _relay(space, gateway, sidecar, identity)
