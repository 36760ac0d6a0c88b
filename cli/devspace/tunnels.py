"""Port tunnels that outlive the SSH connection under them.

`Tunnels` holds the local listening ports for as long as it runs, so a dropped connection
never frees a port another program could grab; what it re-makes is the connection. It probes
the connection every few seconds (a deleted pod or gateway often sends no reset, and TCP
alone would notice only after minutes); when a probe fails or the transport dies, it
connects again with backoff — through `connect`, which re-reads where the space and the
gateway are and renews the certificate — and asks again for the reverse forwards. A local
connection that arrives meanwhile waits for the new connection a little before it is
refused.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paramiko

from devspace.channels import ForwardError, LocalForward, splice
from devspace.errors import AuthError, DevspaceError, NotFound, SshError, UsageError
from devspace.ssh import CertificateRefused, Connection, HostKeyMismatch

log = logging.getLogger(__name__)

REMOTE_HOST = "localhost"
"""Forwards reach the pod's own loopback: the sidecar allows nothing else."""
LOCAL_HOST = "127.0.0.1"
"""Local ends listen and connect on this computer's loopback only."""


@dataclass(frozen=True)
class PortPair:
    """A forward's two ports: `local` on this computer, `remote` in the space."""

    local: int
    remote: int


_SPEC = re.compile(r"^(\d{1,5})(?::(\d{1,5}))?$")


def parse(spec: str, *, reverse: bool = False) -> PortPair:
    """`LOCAL[:REMOTE]` (or `REMOTE[:LOCAL]` when `reverse`) as a `PortPair`; one port means
    the same on both sides. A local port of 0 picks a free one. Raises `UsageError`."""
    found = _SPEC.match(spec.strip())
    first, second = (int(found[1]), int(found[2] or found[1])) if found else (-1, -1)
    if not found or not 0 <= first <= 65535 or not 0 < second <= 65535:
        shape = "REMOTE[:LOCAL]" if reverse else "LOCAL[:REMOTE]"
        raise UsageError(f"not a port forward: {spec!r}; write {shape}, for example 8080:80")
    if reverse:
        if first == 0:
            raise UsageError(f"{spec!r}: name the port to listen on in the space")
        return PortPair(local=second, remote=first)
    return PortPair(local=first, remote=second)


class Tunnels:
    """Local forwards (`local`) and reverse forwards (`reverse`) over connections from
    `connect`, re-made when they drop. Use as a context manager: `start()`, then `run()`."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        local: Sequence[PortPair] = (),
        reverse: Sequence[PortPair] = (),
        *,
        say: Callable[[str], None] = log.info,
        probe_every: float = 5.0,
        probe_timeout: float = 8.0,
        max_backoff: float = 5.0,
        wait_for_connection: float = 15.0,
    ) -> None:
        self._connect = connect
        self.local = list(local)
        self.reverse = list(reverse)
        self._say = say
        self.probe_every = probe_every
        self.probe_timeout = probe_timeout
        self.max_backoff = max_backoff
        self.wait_for_connection = wait_for_connection
        self.forwards: list[LocalForward] = []
        self._connection: Connection | None = None
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self.reconnects = 0

    def start(self) -> None:
        """Listen on every local port, then connect and ask for every reverse forward.

        Raises: ForwardError (a local port in use, or the space refused a reverse port), and
        whatever connecting raises (`SpaceNotRunning`, `AuthError`, `SshError`, …).
        """
        listeners = []
        try:
            for pair in self.local:  # first, so a busy port fails before any network work
                listeners.append(_listen(pair.local))
            self._use(self._open())
        except BaseException:
            for listener in listeners:
                listener.close()
            raise
        for listener, pair in zip(listeners, self.local, strict=True):
            self.forwards.append(LocalForward(listener, (REMOTE_HOST, pair.remote), self._channel))

    def run(self) -> None:
        """Keep the tunnels up until `stop()` (or Ctrl-C in the caller's thread).

        Raises: AuthError when signing in again is needed, HostKeyMismatch when the space's
        key changed, NotFound when the space was deleted; every other failure is reported
        through `say` and retried.
        """
        while not self._stop.wait(self.probe_every):
            self._report_forward_errors()
            connection = self._connection
            try:
                if connection is None:
                    raise SshError("not connected")
                connection.check()
                connection.probe(self.probe_timeout)
            except SshError as error:
                if self._stop.is_set():
                    return
                self._say(f"connection lost ({error}); reconnecting")
                self._use(None)
                if connection is not None:
                    with contextlib.suppress(DevspaceError):
                        connection.close()
                self._reconnect()

    def _reconnect(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._use(self._open())
            except HostKeyMismatch:
                raise
            except CertificateRefused as error:
                # The gateway refuses every certificate while it cannot reach the server.
                self._say(f"reconnecting in {delay:.1f} s: {error}")
            except (AuthError, NotFound):
                raise  # signing in again, or the space was deleted: retrying cannot help
            except DevspaceError as error:
                # Includes a reverse port refused: after a silent drop, the space's sshd holds
                # the old session's port until its own keepalives give up on it (a minute).
                self._say(f"reconnecting in {delay:.1f} s: {error}")
            else:
                self.reconnects += 1
                self._say("reconnected; the tunnels work again")
                return
            self._stop.wait(delay)
            delay = min(delay * 2, self.max_backoff)

    def _open(self) -> Connection:
        connection = self._connect()
        try:
            connection.open()
            for pair in self.reverse:
                connection.forward_remote(pair.remote, self._reverse_to(pair), bind=REMOTE_HOST)
        except BaseException:
            with contextlib.suppress(DevspaceError):
                connection.close()
            raise
        return connection

    def _use(self, connection: Connection | None) -> None:
        with self._ready:
            self._connection = connection
            self._ready.notify_all()

    def _channel(self, remote: tuple[str, int], peer: tuple[str, int]) -> paramiko.Channel:
        # Called in a forward's accept thread: a connection that arrives while we reconnect
        # waits for the new one rather than being refused at once.
        with self._ready:
            self._ready.wait_for(
                lambda: self._connection is not None or self._stop.is_set(),
                timeout=self.wait_for_connection,
            )
            connection = self._connection
        if connection is None:
            raise SshError(f"no connection to the space; refused a connection to {remote[1]}")
        return connection.open_tcp(remote[0], remote[1], peer)

    def _reverse_to(self, pair: PortPair) -> Callable[[paramiko.Channel], None]:
        def accept(channel: paramiko.Channel) -> None:
            threading.Thread(
                target=self._carry_back, args=(channel, pair), name="reverse", daemon=True
            ).start()

        return accept

    def _carry_back(self, channel: paramiko.Channel, pair: PortPair) -> None:
        try:
            local = socket.create_connection((LOCAL_HOST, pair.local), timeout=5)
        except OSError as error:
            channel.close()
            self._say(
                f"the space connected to its port {pair.remote}, but nothing answers on this "
                f"computer's port {pair.local} ({error.strerror or error}); start it there"
            )
            return
        local.settimeout(None)
        splice(local, channel, self._stop)

    def _report_forward_errors(self) -> None:
        for forward in self.forwards:
            try:
                forward.check()
            except ForwardError as error:
                self._say(f"{error}; the tunnel stays up")

    def stop(self) -> None:
        """Make `run()` return (from another thread or a signal handler)."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()

    def close(self) -> None:
        """Stop everything: listeners, their connections, the SSH connection."""
        self.stop()
        for forward in self.forwards:
            with contextlib.suppress(ForwardError):
                forward.close()
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(DevspaceError):
                connection.close()

    def __enter__(self) -> Tunnels:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _listen(port: int) -> socket.socket:
    try:
        return socket.create_server((LOCAL_HOST, port))
    except OSError as error:
        raise ForwardError(
            f"cannot listen on {LOCAL_HOST}:{port}: {error.strerror or error} — another program "
            "(or another `devspace forward`) uses that port; choose another local port, or 0 "
            "for any free one"
        ) from error
