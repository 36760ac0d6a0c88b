"""What runs over an open SSH transport: remote commands as byte streams (with their exit
status, or 128+N when a signal killed them, as a shell reports it), and local port forwards
whose threads keep their errors for the owner to re-raise.

`devspace.ssh.Connection` creates these; they are split out only to keep each module readable.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable, Iterator

import paramiko

from devspace.errors import SshError

# RFC 4254 section 6.10 names the signals without "SIG"; the numbers are Linux's (the pod's),
# not this computer's: Windows has no SIGKILL to look up.
SIGNAL_NUMBERS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "ABRT": 6, "FPE": 8, "KILL": 9,
    "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
}  # fmt: skip


class ForwardError(SshError):
    """A port forward could not start, or one of its connections failed."""


# paramiko's private hooks, which the types do not declare: looked up once, so a paramiko
# that renamed them fails at import, not in the middle of a session.
_HandleRequest = Callable[[paramiko.Channel, paramiko.Message], None]
_PARAMIKO_HANDLE_REQUEST: _HandleRequest = getattr(paramiko.Channel, "_handle_request")  # noqa: B009
_PARAMIKO_HANDLERS: dict[int, object] = getattr(paramiko.Transport, "_channel_handler_table")  # noqa: B009


def _handle_request(channel: paramiko.Channel, message: paramiko.Message) -> None:
    # paramiko ignores "exit-signal", so a command killed by a signal would look as if the
    # server had sent no status at all (-1). Keep the signal; everything else is paramiko's.
    if message.get_text() == "exit-signal":
        message.get_boolean()  # want reply: never, for this request
        name = message.get_text()
        channel.exit_signal = name  # type: ignore[attr-defined]
        channel.exit_status = 128 + SIGNAL_NUMBERS.get(name, 0)
        channel.status_event.set()
        return
    message.rewind()
    message.get_int()  # the channel number, which the transport had read
    _PARAMIKO_HANDLE_REQUEST(channel, message)


class Transport(paramiko.Transport):
    """paramiko's transport, which also reports the signal that killed a remote command."""

    _channel_handler_table = {  # noqa: RUF012 - paramiko's own class table, extended
        **_PARAMIKO_HANDLERS,
        paramiko.common.MSG_CHANNEL_REQUEST: _handle_request,
    }


class RemoteCommand:
    """A command running on the far side: bytes both ways, its stderr, and its exit status."""

    def __init__(self, channel: paramiko.Channel, command: str) -> None:
        self.channel = channel  # for select(), timeouts and windows in watchers, tar streams
        self.command = command

    def write(self, data: bytes) -> None:
        """Send `data` to the command's stdin. Raises: SshError if the channel is gone."""
        with converted(f"writing to `{self.command}`"):
            self.channel.sendall(data)

    def close_stdin(self) -> None:
        """Send end-of-file on stdin, so the command sees its input end."""
        with converted(f"closing stdin of `{self.command}`"):
            self.channel.shutdown_write()

    def read(self, size: int = 65536) -> bytes:
        """Return up to `size` bytes of stdout; b"" at end. Raises: SshError on loss or timeout."""
        with converted(f"reading from `{self.command}`"):
            return self.channel.recv(size)

    def read_stderr(self, size: int = 65536) -> bytes:
        """Return up to `size` bytes of stderr; b"" at end. Raises: SshError as `read`."""
        with converted(f"reading stderr of `{self.command}`"):
            return self.channel.recv_stderr(size)

    def wait(self) -> int:
        """Block until the command exits; return its exit status, 128+N if signal N killed it
        (as a shell says), or -1 if the connection ended without either."""
        return self.channel.recv_exit_status()

    def close(self) -> None:
        """Close the channel; the remote command gets SIGHUP-like end of its session."""
        self.channel.close()

    def __enter__(self) -> RemoteCommand:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@contextlib.contextmanager
def converted(doing: str) -> Iterator[None]:
    """Turn paramiko's and the socket layer's errors while `doing` into `SshError`."""
    try:
        yield
    except TimeoutError as error:
        raise SshError(f"timed out {doing}") from error
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise SshError(f"connection lost while {doing}: {error or type(error).__name__}") from error


class LocalForward:
    """A local listening port whose connections are carried to `remote` over SSH, in threads.

    Errors of the tunnel's threads are kept and re-raised by `check()` and `close()`.
    """

    def __init__(
        self,
        listener: socket.socket,
        remote: tuple[str, int],
        open_channel: Callable[[tuple[str, int], tuple[str, int]], paramiko.Channel],
    ) -> None:
        self.port: int = listener.getsockname()[1]
        self.remote = remote
        self._listener = listener
        self._open_channel = open_channel
        self._stop = threading.Event()
        self._errors: list[ForwardError] = []
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(
            target=self._serve, name=f"forward-{self.port}", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        # A timeout instead of closing the socket under accept(): that does not wake
        # accept() on every platform.
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as error:
                self._fail(f"local port {self.port} stopped accepting: {error}", error)
                return
            try:
                channel = self._open_channel(self.remote, peer[:2])
            except (paramiko.SSHException, OSError, EOFError, SshError) as error:
                client.close()
                # The server refused this one connection (nothing listens, or not allowed);
                # later ones may work, so the tunnel stays up and reports it.
                host, port = self.remote
                self._fail(f"forward to {host}:{port} failed: {error}", error)
                continue
            pump = threading.Thread(target=self._pump, args=(client, channel), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [pump]
            pump.start()

    def _pump(self, client: socket.socket, channel: paramiko.Channel) -> None:
        splice(client, channel, self._stop)

    def _fail(self, message: str, cause: BaseException) -> None:
        error = ForwardError(message)
        error.__cause__ = cause
        self._errors.append(error)

    def check(self) -> None:
        """Raise the first error of the tunnel's threads not reported yet. Raises: ForwardError."""
        if self._errors:
            raise self._errors.pop(0)

    def close(self) -> None:
        """Stop listening and end the tunnel's connections, then `check()`. Raises: ForwardError."""
        self._stop.set()
        self._thread.join()
        for thread in self._threads:
            thread.join()
        self._listener.close()
        self.check()


def splice(client: socket.socket, channel: paramiko.Channel, stop: threading.Event) -> None:
    """Copy bytes both ways between `client` and `channel` until both ends are done or `stop`
    is set, then close both. A side that goes away ends this connection quietly."""
    # Each direction ends on its own (half-close), so a client that shuts down its
    # sending side still gets the whole answer.
    ends: dict[int, tuple[Callable[[int], bytes], Callable[[bytes], object], Callable[[], object]]]
    ends = {
        client.fileno(): (client.recv, channel.sendall, channel.shutdown_write),
        channel.fileno(): (
            channel.recv,
            client.sendall,
            lambda: client.shutdown(socket.SHUT_WR),
        ),
    }
    try:
        while ends and not stop.is_set():
            readable, _, _ = select.select(list(ends), [], [], 0.2)
            for fd in readable:
                receive, send, end = ends[fd]
                try:
                    data = receive(65536)
                    if data:
                        send(data)
                    else:
                        end()
                        del ends[fd]
                # One side went away (paramiko says so with EOFError when its transport died
                # under it): this connection is over, not the tunnel.
                except (OSError, EOFError, paramiko.SSHException):
                    return
    finally:
        client.close()
        # Closing a channel sends a message: on a transport that died it fails the same way.
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            channel.close()


def drain(read: Callable[[], bytes]) -> bytes:
    """Call `read` until it returns b""; return everything it returned. Raises: what `read` does."""
    chunks = []
    while chunk := read():
        chunks.append(chunk)
    return b"".join(chunks)


def feed(process: RemoteCommand, data: bytes) -> None:
    """Write `data` to the command's stdin and close it; a command that stops reading is fine."""
    # A command may exit without reading all its input; that is its business, not an error.
    with contextlib.suppress(SshError):
        process.write(data)
        process.close_stdin()
