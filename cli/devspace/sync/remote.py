"""The pod's side of a sync: commands in the sidecar and SFTP requests with many in flight.

`PodFolder` wraps plain paramiko objects (an `SFTPClient`, and the `Transport` it runs on for
exec channels), so it works with any connection that can give them. Everything paramiko
raises is converted here into `RemoteError`/`ConnectionLost`; nothing above this module sees
a paramiko type.

paramiko answers one SFTP request before it sends the next, which costs a network round trip
per request. `Pipeline` keeps many requests in flight on the same SFTP channel, through the two
private hooks paramiko's own read-ahead uses (`_async_request`, `_read_response`); the
server answers them in order, so requests that depend on each other (a directory, then a file
in it) may still be sent back to back.
"""

from __future__ import annotations

import shlex
import socket
import stat
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

import paramiko
from paramiko import sftp as sftp_protocol

from devspace.sync.errors import ListingError, SyncError
from devspace.sync.policy import IgnoreRules
from devspace.sync.scan import LISTING_HEADER, listing_command, parse_listing
from devspace.sync.snapshot import DIRECTORY, Entry, Kind, Snapshot, parent
from devspace.sync.tarstream import extract_command

# Errors that mean the connection is gone rather than that one request was refused.
_DROPPED = (paramiko.SSHException, EOFError, socket.error)
_STDERR_LIMIT = 2000  # characters of a failed command's stderr kept in the error message

CMD_OPEN = sftp_protocol.CMD_OPEN
CMD_CLOSE = sftp_protocol.CMD_CLOSE
CMD_WRITE = sftp_protocol.CMD_WRITE
CMD_FSETSTAT = sftp_protocol.CMD_FSETSTAT
CMD_SETSTAT = sftp_protocol.CMD_SETSTAT
CMD_REMOVE = sftp_protocol.CMD_REMOVE
CMD_MKDIR = sftp_protocol.CMD_MKDIR
CMD_RMDIR = sftp_protocol.CMD_RMDIR
CMD_RENAME = sftp_protocol.CMD_RENAME
CMD_SYMLINK = sftp_protocol.CMD_SYMLINK
CMD_EXTENDED = sftp_protocol.CMD_EXTENDED
OPEN_NEW = (
    sftp_protocol.SFTP_FLAG_WRITE | sftp_protocol.SFTP_FLAG_CREATE | sftp_protocol.SFTP_FLAG_EXCL
)
POSIX_RENAME = b"posix-rename@openssh.com"


class RemoteError(SyncError):
    """The pod refused something: a command failed or an SFTP request was answered an error."""


class FolderMissing(ListingError):
    """The pod's sync folder does not exist (a pod on a fresh volume, say)."""


class ConnectionLost(RemoteError):
    """The SSH connection dropped; reconnect and run the pass again."""

    exit_code = 5  # as `devspace.errors.SshError`


def lost(error: BaseException) -> ConnectionLost:
    """A ConnectionLost describing `error` (raise it `from error`)."""
    return ConnectionLost(f"the connection to the pod dropped: {error or type(error).__name__}")


def attributes(mode: int | None = None, mtime: int | None = None) -> paramiko.SFTPAttributes:
    """SFTP attributes setting permission bits and/or the access and modification times."""
    attrs = paramiko.SFTPAttributes()
    if mode is not None:
        attrs.st_mode = mode
    if mtime is not None:
        attrs.st_atime = attrs.st_mtime = mtime
    return attrs


class Reply:
    """One request's answer: `ok`, and the handle or error text it carried."""

    __slots__ = ("code", "handle", "text")

    def __init__(self, code: int, text: str = "", handle: bytes = b"") -> None:
        self.code, self.text, self.handle = code, text, handle

    @property
    def ok(self) -> bool:
        """Whether the server did what was asked."""
        return self.code == sftp_protocol.SFTP_OK


class Pipeline:
    """SFTP requests in flight on one client, at most `depth` at a time.

    The bound matters: unread answers fill the channel's window, the server then stops reading
    requests, and an unbounded sender would wait forever.
    """

    def __init__(self, sftp: paramiko.SFTPClient, depth: int = 64) -> None:
        """Pipeline requests on `sftp`."""
        self._sftp = sftp
        self._depth = depth
        # paramiko's private hooks, typed at this one edge.
        self._send: Callable[..., int] = sftp._async_request  # type: ignore[attr-defined]
        self._read: Callable[[], object] = sftp._read_response  # type: ignore[attr-defined]
        self._replies: dict[int, Reply] = {}
        self._pending: set[int] = set()

    def send(self, command: int, *args: object) -> int:
        """Send one request; return its number for `wait`. Raises ConnectionLost."""
        try:
            while len(self._pending) >= self._depth:
                self._read()
            number = self._send(self, command, *args)
        except _DROPPED as error:
            raise lost(error) from error
        self._pending.add(number)
        return number

    def wait(self, number: int) -> Reply:
        """The answer to request `number`. Raises ConnectionLost."""
        try:
            while number not in self._replies:
                self._read()
        except _DROPPED as error:
            raise lost(error) from error
        return self._replies.pop(number)

    def drain(self) -> None:
        """Wait for every request sent so far. Raises ConnectionLost."""
        try:
            while self._pending:
                self._read()
        except _DROPPED as error:
            raise lost(error) from error

    def _async_response(self, kind: int, message: paramiko.Message, number: int) -> None:
        # Called by paramiko's reader for every answer to a request this pipeline sent.
        self._pending.discard(number)
        if kind == sftp_protocol.CMD_HANDLE:
            self._replies[number] = Reply(sftp_protocol.SFTP_OK, handle=message.get_binary())
        elif kind == sftp_protocol.CMD_STATUS:
            code = message.get_int()
            self._replies[number] = Reply(code, message.get_text() if code else "")
        else:
            self._replies[number] = Reply(sftp_protocol.SFTP_OK)


class PodFolder:
    """The sync root in the pod: `root` is an absolute path there (`/workspace`)."""

    def __init__(
        self, sftp: paramiko.SFTPClient, root: str, transport: paramiko.Transport | None = None
    ) -> None:
        """Use `sftp` for files and `transport` (default: `sftp`'s own) for commands.

        Raises ValueError if `root` is not absolute.
        """
        if not root.startswith("/"):
            raise ValueError(f"the pod's folder must be an absolute path, not {root!r}")
        self.sftp = sftp
        self.root = root.rstrip("/") or "/"
        if transport is None:
            channel = sftp.get_channel()
            if channel is None:  # pragma: no cover - an open client always has its channel
                raise ValueError("the SFTP client is not connected")
            transport = channel.get_transport()
        self.transport = transport
        # Pipelined requests are small packets: with Nagle's algorithm each waits for the
        # previous one's delayed ACK, which made pipelined SFTP 3x slower in measurements. (Over
        # a gateway the socket is a channel: the outer connection must set this on its own.)
        sock = getattr(transport, "sock", None)
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def path(self, relative: str) -> bytes:
        """The absolute pod path of a snapshot path, as SFTP sends it."""
        return f"{self.root}/{relative}".encode("utf-8", "surrogateescape")

    def pipeline(self) -> Pipeline:
        """A fresh pipeline on this folder's SFTP client."""
        return Pipeline(self.sftp)

    def run(self, command: str, stdin: Iterable[bytes] = (), *, ok: Iterable[int] = (0,)) -> bytes:
        """Run `command` in the pod with `stdin` streamed to it; return its standard output.

        Raises RemoteError if it exits with a status not in `ok`, ConnectionLost if the
        connection drops.
        """
        try:
            channel = self.transport.open_session()
        except _DROPPED as error:
            raise lost(error) from error
        with channel:
            errors: list[BaseException] = []
            stderr = bytearray()

            def feed() -> None:
                try:
                    for chunk in stdin:
                        # paramiko's sendall copies what is left after every packet: a view
                        # makes those copies free (a 1 MiB chunk was copied 16 times over). The
                        # stubs ask for bytes; paramiko takes any buffer.
                        channel.sendall(memoryview(chunk))  # type: ignore[arg-type]
                    channel.shutdown_write()
                except BaseException as error:  # re-raised on the caller's thread below
                    errors.append(error)

            def drain_stderr() -> None:
                while data := channel.recv_stderr(65536):
                    if len(stderr) < _STDERR_LIMIT:
                        stderr.extend(data)

            try:
                channel.exec_command(command)
                threads = [threading.Thread(target=t, daemon=True) for t in (feed, drain_stderr)]
                for thread in threads:
                    thread.start()
                chunks = []
                while data := channel.recv(1 << 20):
                    chunks.append(data)
                status = channel.recv_exit_status()
                for thread in threads:
                    thread.join()
            except _DROPPED as error:
                raise lost(error) from error
            if errors:
                raise lost(errors[0]) from errors[0]
            if status == -1:
                raise ConnectionLost("the connection to the pod dropped during a command")
        if status not in tuple(ok):
            message = stderr.decode("utf-8", "replace").strip()[:_STDERR_LIMIT]
            raise RemoteError(f"a command in the pod failed (exit {status}): {message}")
        return b"".join(chunks)

    def listing(self, rules: IgnoreRules | None = None) -> Snapshot:
        """The pod's tree, from one run of `listing_command`, exactly as `parse_listing` says.

        Raises FolderMissing if the folder does not exist, ListingError if the listing is
        malformed or truncated, ConnectionLost if the connection drops.
        """
        output = self.run(listing_command(self.root), ok=range(256))
        if not output.startswith(LISTING_HEADER):  # `cd` failed before printing it
            raise FolderMissing(f"the pod's folder {self.root} does not exist")
        return parse_listing(output, rules)

    def entries(self, paths: Iterable[str]) -> dict[str, Entry | None]:
        """What each of `paths` is in the pod right now, in one round trip (None: absent).

        Entries read the same as `parse_listing`'s (nanosecond mtimes), so they compare with a
        snapshot's. Anything that is not a file, directory or link reads as a link with no
        target, which matches no entry a plan expects. Raises RemoteError, ConnectionLost.
        """
        wanted = sorted(set(paths))
        if not wanted:
            return {}
        command = (
            f"cd -- {shlex.quote(self.root)} && find -files0-from - -maxdepth 0 "
            r"-printf '%y\t%m\t%s\t%T@\t%p\0%l\0' 2>/dev/null"
        )
        # find exits 1 when a path is missing: that is an answer, not a failure. It also says
        # so on stderr, in four writes per path: thousands of messages for a new tree, which
        # cost the pod and the laptop more than the answer itself.
        output = self.run(command, [_null_separated(wanted)], ok=(0, 1))
        found: dict[str, Entry | None] = dict.fromkeys(wanted)
        fields = output.split(b"\0")
        for index in range(0, len(fields) - 1, 2):
            meta = fields[index].split(b"\t", 4)
            if len(meta) != 5 or not meta[4].startswith(b"./"):
                raise RemoteError("the pod answered a malformed description of its files")
            path = meta[4][2:].decode("utf-8", "surrogateescape")
            try:
                found[path] = _entry(meta, fields[index + 1])
            except ValueError:
                raise RemoteError(f"the pod described {path!r} in a malformed way") from None
        return found

    def digests(self, paths: Iterable[str]) -> dict[str, str]:
        """The content hash (`sha256:<hex>`) of each of `paths` that is a readable file.

        Raises RemoteError, ConnectionLost.
        """
        wanted = sorted(set(paths))
        if not wanted:
            return {}
        command = f"cd -- {shlex.quote(self.root)} && xargs -0 -r sha256sum -z --"
        output = self.run(command, [_null_separated(wanted)], ok=(0, 123))
        result = {}
        for record in output.split(b"\0"):
            digest, _, name = record.partition(b"  ")
            if name.startswith(b"./") and len(digest) == 64:
                result[name[2:].decode("utf-8", "surrogateescape")] = "sha256:" + digest.decode()
        return result

    def stream_tar(
        self, members: Iterable[bytes], place_list: str | None = None, cleanup: Sequence[str] = ()
    ) -> bytes:
        """Extract the tar archive `members` produces into the root (`tar -x` in the pod).

        With `place_list` (a member's name), the pairs it lists are then put in place (see
        `tarstream.extract_command`, which also says what `cleanup` is); returns the placing
        script's answers, or `tarstream.NO_PERL`.
        Raises RemoteError if tar fails, ConnectionLost if the connection drops.
        """
        return self.run(extract_command(self.root, place_list, cleanup), members)

    def tar_of(self, paths: Sequence[str]) -> bytes:
        """A tar archive of the files `paths` (members named `./<path>`), made in one exec.

        Raises RemoteError if tar could not read one of them (gone, or changed as it was
        read), ConnectionLost if the connection drops.
        """
        command = (
            f"cd -- {shlex.quote(self.root)} && tar -c -f - --format=gnu --no-recursion "
            "--null --verbatim-files-from -T -"
        )
        return self.run(command, [_null_separated(paths)])


def _null_separated(paths: Iterable[str]) -> bytes:
    """`paths` as `./path\0` records: the `./` keeps a name like `-x` from reading as an option."""
    return b"".join(f"./{p}".encode("utf-8", "surrogateescape") + b"\0" for p in paths)


def _entry(meta: list[bytes], link: bytes) -> Entry:
    letter, mode, size, mtime = meta[0], meta[1], meta[2], meta[3]
    if letter == b"d":
        return DIRECTORY
    if letter == b"f":
        seconds, _, fraction = mtime.partition(b".")
        mtime_ns = int(seconds) * 1_000_000_000 + int(fraction[:9].ljust(9, b"0") or b"0")
        return Entry(Kind.FILE, int(size), mtime_ns, bool(int(mode, 8) & stat.S_IXUSR))
    target = link.decode("utf-8", "surrogateescape") if letter == b"l" else ""
    return Entry(Kind.SYMLINK, target=target)


def through_links(path: str, fresh: Mapping[str, Entry | None]) -> bool:
    """Whether reaching `path` would pass through something that is not a directory in `fresh`."""
    up = parent(path)
    while up:
        if fresh.get(up) != DIRECTORY:
            return True
        up = parent(up)
    return False
