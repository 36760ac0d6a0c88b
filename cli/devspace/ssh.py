"""SSH to a space: one connection, through the gateway to the pod's sidecar, host keys pinned.

The gateway hop is made by this computer's OpenSSH client where there is one (`devspace.jump`:
twice the throughput), by paramiko otherwise; the hop to the sidecar always by paramiko.

`Connection` opens lazily on first use, is a context manager, owns one SFTP client, runs and
streams commands, and forwards local ports in threads whose errors come back on `check()` and
`close()` (as Fabric's `Connection`). paramiko's exceptions stop here: everything raised is a
`devspace.errors` type, raised from the original. The streams and tunnels that ride on an open
connection are in `devspace.channels`.
"""

from __future__ import annotations

import shlex
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import paramiko
from cryptography.hazmat.primitives.serialization import SSHCertificate

from devspace.channels import (
    ForwardError,
    LocalForward,
    RemoteCommand,
    Transport,
    converted,
    drain,
    feed,
)
from devspace.errors import SshError
from devspace.hops import (
    CertificateRefused,
    Hop,
    HostKeyMismatch,
    Identity,
    PinnedHostKey,
    dial,
    mismatch,
    refusal,
    tunnel,
)
from devspace.jump import HOST_KEY_ALGORITHMS, OpenSshHop, gateway_client

__all__ = [
    "CertificateRefused",
    "Connection",
    "ForwardError",
    "Hop",
    "HostKeyMismatch",
    "Identity",
    "LocalForward",
    "PinnedHostKey",
    "RemoteCommand",
    "Result",
]

# GCM needs no separate MAC and is paramiko's fastest cipher (measured in issue 5; see
# BENCHMARKS.md); CTR with an encrypt-then-MAC is the fallback
# for servers without GCM.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
DIGESTS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256")


@dataclass(frozen=True)
class Result:
    """What a finished remote command left: its exit status and everything it wrote."""

    exit_status: int
    stdout: bytes
    stderr: bytes


class Connection:
    """An SSH connection to a space's sidecar, directly or through the gateway.

    Nothing happens until first use (`open`, `run`, `exec`, `sftp`, `forward_local`). Every
    method raises only `devspace.errors` types: `HostKeyMismatch` and other `SshError`s for the
    network and SSH, `CertificateRefused` / `AuthError` for credentials.
    """

    def __init__(
        self,
        target: Hop,
        identity: Identity,
        *,
        gateway: Hop | None = None,
        timeout: float = 15.0,
        keepalive: int = 15,
        ciphers: Sequence[str] = CIPHERS,
    ) -> None:
        self.target = target
        self.gateway = gateway
        self.identity = identity
        self.timeout = timeout
        self.keepalive = keepalive
        self.ciphers = tuple(ciphers)
        self._lock = threading.RLock()
        self._transports: list[paramiko.Transport] = []  # outermost first
        self._jump: OpenSshHop | None = None  # the gateway hop, when OpenSSH makes it
        self._sftp: paramiko.SFTPClient | None = None
        self._forwards: list[LocalForward] = []
        self._requests = threading.Lock()  # paramiko waits for one global request at a time
        self._closed = False

    def open(self) -> None:
        """Connect and authenticate every hop, unless already done.

        Raises:
            SshError: unreachable, refused, handshake failed, or the gateway would not connect.
            HostKeyMismatch: a hop's host key is not the pinned one.
            AuthError: the certificate is unusable or refused.
        """
        with self._lock:
            if self._closed:
                raise SshError(f"the connection to {self.target} is closed")
            if self._transports:
                return
            key, certificate = self.identity.load()
            try:
                if self.gateway is None:
                    sock = dial(self.target, self.timeout)
                    self._handshake(self.target, sock, key, certificate)
                elif (program := gateway_client(self.gateway)) is not None:
                    self._jump = OpenSshHop(
                        program, self.gateway, self.target, self.identity,
                        ciphers=self.ciphers, macs=DIGESTS, timeout=self.timeout,
                        keepalive=self.keepalive,
                    )  # fmt: skip
                    self._handshake(self.target, self._jump.sock, key, certificate)
                    self._jump.settled()
                else:
                    sock = dial(self.gateway, self.timeout)
                    outer = self._handshake(self.gateway, sock, key, certificate)
                    channel = tunnel(outer, self.gateway, self.target, self.timeout)
                    self._handshake(self.target, channel, key, certificate)
            except BaseException:
                self._close_transports()
                raise

    def _handshake(
        self,
        hop: Hop,
        sock: socket.socket | paramiko.Channel | paramiko.ProxyCommand,
        key: paramiko.PKey,
        certificate: SSHCertificate,
    ) -> paramiko.Transport:
        transport = Transport(sock)
        self._transports.append(transport)
        options = transport.get_security_options()
        options.ciphers = [c for c in self.ciphers if c in options.ciphers]
        options.digests = [d for d in DIGESTS if d in options.digests]
        if hop.host_key.key_type:
            options.key_types = HOST_KEY_ALGORITHMS.get(
                hop.host_key.key_type, (hop.host_key.key_type,)
            )
        # Behind OpenSSH the first bytes wait for the whole gateway hop, which has its own
        # timeouts: give them time to fire first, as their messages say more.
        timeout = self.timeout * 2 if self._jump is not None else self.timeout
        transport.banner_timeout = timeout
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as error:
            if self._jump is not None and (why := self._jump.failure(certificate)) is not None:
                raise why from error
            raise SshError(f"SSH handshake with {hop} failed: {error}") from error
        presented = transport.get_remote_server_key().fingerprint
        if presented != hop.host_key.fingerprint:
            # Checked before authenticating, so an impostor never sees our certificate.
            raise mismatch(hop, presented)
        try:
            transport.auth_publickey(hop.user, key)
        except paramiko.AuthenticationException as error:
            raise CertificateRefused(refusal(hop, certificate)) from error
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise SshError(f"authenticating with {hop} failed: {error}") from error
        if not transport.is_authenticated():
            raise CertificateRefused(refusal(hop, certificate))
        transport.set_keepalive(self.keepalive)
        return transport

    def _transport(self) -> paramiko.Transport:
        self.open()
        transport = self._transports[-1]
        if not transport.is_active():
            raise self._lost()
        return transport

    def _lost(self) -> SshError:
        why = self._jump.why_ended() if self._jump is not None else None
        return SshError(f"the connection to {self.target} was lost" + (f" ({why})" if why else ""))

    @property
    def gateway_client(self) -> str | None:
        """Return who made the gateway hop of the open connection: "openssh" or "paramiko";
        None without a gateway or before `open`."""
        if self.gateway is None or not self._transports:
            return None
        return "openssh" if self._jump is not None else "paramiko"

    @property
    def cipher(self) -> str:
        """Return the cipher negotiated with the target, opening the connection if needed."""
        return self._transport().local_cipher

    def sftp(self) -> paramiko.SFTPClient:
        """Return the connection's one SFTP client, opening it on first call.

        Raises: SshError as `open`, or if the server refuses the SFTP subsystem.
        """
        with self._lock:
            if self._sftp is None:
                with converted(f"starting SFTP on {self.target}"):
                    self._sftp = self._transport().open_sftp_client()
            return self._sftp

    def exec(self, command: str | Sequence[str]) -> RemoteCommand:
        """Start `command` (a shell string or an argv list, quoted for a POSIX shell) and stream it.

        Raises: SshError as `open`, or if the server refuses the session.
        """
        line = command if isinstance(command, str) else shlex.join(command)
        transport = self._transport()
        with converted(f"starting `{line}` on {self.target}"):
            channel = transport.open_session(timeout=self.timeout)
            channel.exec_command(line)
        return RemoteCommand(channel, line)

    def shell(
        self,
        command: str | None = None,
        *,
        term: str | None = None,
        size: tuple[int, int] = (80, 24),
    ) -> RemoteCommand:
        """Start the login shell (or `command`), in a PTY of type `term` and `size` (columns,
        rows) when `term` is given, so the far side sees a terminal.

        Raises: SshError as `exec`, or if the server refuses the PTY.
        """
        transport = self._transport()
        what = f"`{command}`" if command else "a shell"
        with converted(f"starting {what} on {self.target}"):
            channel = transport.open_session(timeout=self.timeout)
            if term is not None:
                channel.get_pty(term, width=size[0], height=size[1])
            if command is None:
                channel.invoke_shell()
            else:
                channel.exec_command(command)
        return RemoteCommand(channel, command or "the shell")

    def open_tcp(
        self, host: str, port: int, origin: tuple[str, int] = ("127.0.0.1", 0)
    ) -> paramiko.Channel:
        """A `direct-tcpip` channel to `host:port` as the target sees it (for the gateway as
        the target: a sidecar's port). Raises: SshError if the connection is lost or the
        server refuses."""
        transport = self._transport()
        with converted(f"connecting to {host}:{port} through {self.target}"):
            return transport.open_channel(
                "direct-tcpip", (host, port), origin, timeout=self.timeout
            )

    def forward_remote(
        self,
        port: int,
        accept: Callable[[paramiko.Channel], None],
        *,
        bind: str = "localhost",
    ) -> int:
        """Ask the target to listen on its `bind:port` and call `accept(channel)` (in
        paramiko's thread: hand it off) for each connection; returns the port it listens on.

        Raises: ForwardError if the target refuses (port in use there, or not allowed);
        SshError as `open`.
        """
        transport = self._transport()

        def handler(channel: paramiko.Channel, _origin: object, _server: object) -> None:
            accept(channel)

        with self._requests:
            try:
                bound: int = transport.request_port_forward(bind, port, handler)
            except paramiko.SSHException as error:
                if not transport.is_active():
                    raise SshError(f"the connection to {self.target} was lost") from error
                raise ForwardError(
                    f"{self.target} refused to listen on its {bind}:{port} — is a program "
                    "there using that port already? choose another remote port"
                ) from error
        return bound

    def probe(self, timeout: float) -> None:
        """Make sure the target still answers, within `timeout` seconds: a dead peer that sent
        no reset (a deleted pod, a dropped network) is otherwise noticed only after minutes.

        Raises: SshError if no answer came; the connection is closed then.
        """
        transport = self._transport()
        answered = threading.Event()

        def ask() -> None:
            with self._requests:
                # Any answer will do: OpenSSH refuses this unknown request, and that is a reply.
                transport.global_request("keepalive@openssh.com", wait=True)
            answered.set()

        threading.Thread(target=ask, name="ssh-probe", daemon=True).start()
        if not answered.wait(timeout) or not transport.is_active():
            self._close_transports()  # which also ends the asking thread
            raise SshError(f"{self.target} stopped answering (no reply within {timeout:.0f} s)")

    def run(
        self,
        command: str | Sequence[str],
        stdin: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> Result:
        """Run `command` to the end, feeding it `stdin`; return its exit status and output.

        Raises: SshError as `exec`, or when no output arrives for `timeout` seconds.
        """
        # stdin and stderr in threads: a command that writes while we still write, or fills
        # stderr while we read stdout, would otherwise stall on the channel's window.
        with ThreadPoolExecutor(2) as pool, self.exec(command) as process:
            process.channel.settimeout(timeout)
            feeding = pool.submit(feed, process, stdin) if stdin is not None else None
            stderr = pool.submit(drain, process.read_stderr)
            stdout = drain(process.read)
            if feeding is not None:
                feeding.result()
            return Result(process.wait(), stdout, stderr.result())

    def forward_local(
        self, local_port: int, remote_host: str, remote_port: int, *, bind: str = "127.0.0.1"
    ) -> LocalForward:
        """Listen on `bind:local_port` (0 picks a free port, see `.port`) and carry each connection
        to `remote_host:remote_port` as seen from the pod.

        Raises:
            ForwardError: the local port is in use or cannot be bound.
            SshError: as `open`.
        """
        transport = self._transport()
        try:
            listener = socket.create_server((bind, local_port))
        except OSError as error:
            raise ForwardError(
                f"cannot listen on {bind}:{local_port}: {error.strerror} — is another program "
                "(or another devspace) using that port? choose another local port"
            ) from error

        def open_channel(remote: tuple[str, int], peer: tuple[str, int]) -> paramiko.Channel:
            return transport.open_channel("direct-tcpip", remote, peer, timeout=self.timeout)

        forward = LocalForward(listener, (remote_host, remote_port), open_channel)
        with self._lock:
            self._forwards.append(forward)
        return forward

    def check(self) -> None:
        """Re-raise the first unreported error of a forward's threads.

        Raises: ForwardError; SshError if the connection was open and has been lost.
        """
        for forward in self._forwards:
            forward.check()
        if self._transports and not self._transports[-1].is_active():
            raise self._lost()

    def close(self) -> None:
        """Stop forwards, close SFTP and every hop; safe to call twice.

        Raises: ForwardError, after closing everything, if a forward's thread failed.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            errors: list[ForwardError] = []
            for forward in self._forwards:
                try:
                    forward.close()
                except ForwardError as error:
                    errors.append(error)
            if self._sftp is not None:
                self._sftp.close()
            self._close_transports()
            if errors:
                raise errors[0]

    def _close_transports(self) -> None:
        for transport in reversed(self._transports):  # the inner one rides on the outer
            transport.close()
        self._transports.clear()
        if self._jump is not None:
            self._jump.close()
            self._jump = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except ForwardError:
            if kind is None:  # never hide the error already on its way out
                raise
