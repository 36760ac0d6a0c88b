"""The pod's watcher: `inotifywait -m -r` in the sidecar over an exec channel, feeding the same
`Changes` as the laptop's watcher (see `devspace.sync.watch` for how the two are used)."""

from __future__ import annotations

import shlex
import threading
import time

import paramiko

from devspace.sync.snapshot import Side
from devspace.sync.watch import Changes, relevant

_EVENTS = (
    "modify,attrib,close_write,moved_to,moved_from,create,delete,delete_self,move_self,q_overflow"
)
_READY = b"Watches established."
MISSING = 127  # the shell's "command not found", and the watcher script's exit for it


def watch_command(root: str, program: str = "inotifywait") -> str:
    """The command that streams the pod's events under `root`: records `EVENTS ./path\\0`.

    Exits 127 if `program` is not installed, 3 if `root` is missing. inotifywait prints
    "Watches established." on stderr once every directory is watched.
    """
    return (
        f"cd -- {shlex.quote(root)} || exit 3; "
        f"command -v {shlex.quote(program)} >/dev/null 2>&1 || exit {MISSING}; "
        f"exec {shlex.quote(program)} -m -r -P --format '%e %w%f%0' --no-newline "
        f"-e {_EVENTS} ."
    )


class RemoteWatcher:
    """`inotifywait` in the sidecar feeding `changes`, or `polling` when it cannot run.

    `start` returns once the watches are established (or the watcher gave up, see
    `polling`/`reason`), so a pass that starts afterwards misses no change.
    """

    def __init__(
        self,
        transport: paramiko.Transport,
        root: str,
        changes: Changes,
        *,
        program: str = "inotifywait",
        window: int = 256 * 1024,
    ) -> None:
        """Watch `root` in the pod over `transport`; `window` bounds what the stream may hold
        unread (a stalled reader then stalls inotifywait, whose kernel queue overflows)."""
        self.transport = transport
        self.root = root
        self.changes = changes
        self.program = program
        self.window = window
        self.polling = False  # inotifywait cannot run: list the pod periodically instead
        self.reason = ""
        self.ended = threading.Event()  # the stream stopped (connection lost, root removed)
        self.paused = threading.Event()  # set by tests: stop reading, as a slow link would
        self._ready = threading.Event()
        self._channel: paramiko.Channel | None = None
        self._thread: threading.Thread | None = None
        self._stderr = bytearray()

    def start(self, timeout: float = 60.0) -> None:
        """Start inotifywait and wait until it watches the whole tree (or gave up).

        Never raises: a failure to start sets `polling` (the program is missing or cannot
        watch) or `ended` (the connection is gone).
        """
        try:
            channel = self.transport.open_session(window_size=self.window, timeout=15)
            channel.exec_command(watch_command(self.root, self.program))
        except (paramiko.SSHException, OSError, EOFError) as error:
            self.reason = f"the pod's watcher could not start: {error}"
            self.ended.set()
            return
        self._channel = channel
        threading.Thread(target=self._read_stderr, args=(channel,), daemon=True).start()
        self._thread = threading.Thread(target=self._read, args=(channel,), daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.polling = True
            self.reason = "the pod's watcher took too long to start; polling instead"
            self.stop()

    def _read_stderr(self, channel: paramiko.Channel) -> None:
        try:
            while data := channel.recv_stderr(4096):
                if len(self._stderr) < 4096:
                    self._stderr.extend(data)
                if _READY in self._stderr:
                    self._ready.set()
        except (paramiko.SSHException, OSError, EOFError):
            pass
        # stderr ended: the command is gone; the stdout reader reports how.

    def _read(self, channel: paramiko.Channel) -> None:
        rest = b""
        try:
            while True:
                while self.paused.is_set() and not channel.closed:
                    time.sleep(0.01)
                data = channel.recv(65536)
                if not data:
                    break
                records = (rest + data).split(b"\0")
                rest = records.pop()
                paths, overflowed = _paths(records)
                if overflowed:
                    self.changes.rescan("the pod's file events overflowed (events were lost)")
                if records:
                    kinds = records[-1].partition(b" ")[0].split(b",")
                    finished = not _REMOTE_FINISHING.isdisjoint(kinds)
                    self.changes.add(Side.REMOTE, paths, finished=finished)
        except (paramiko.SSHException, OSError, EOFError) as error:
            self.reason = f"the pod's watcher stopped: {error}"
        self._finished(channel)

    def _finished(self, channel: paramiko.Channel) -> None:
        status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        if not self._ready.is_set():
            if status == MISSING:
                self.reason = f"{self.program} is not installed in the pod; polling instead"
            elif status == 3:
                self.reason = f"the pod's folder {self.root} does not exist"
            else:
                detail = self._stderr.decode("utf-8", "replace").strip()[-300:]
                self.reason = f"the pod's watcher failed ({detail or status}); polling instead"
            self.polling = True  # until the engine tries again (the folder may come back)
            self._ready.set()
        elif not self.reason:
            self.reason = "the pod's watcher ended (the folder was removed or replaced)"
        self.ended.set()
        self.changes.rescan(self.reason)

    def stop(self) -> None:
        """Stop the watcher in the pod (closing its channel ends inotifywait)."""
        channel, self._channel = self._channel, None
        self.paused.clear()
        if channel is not None:
            channel.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def _paths(records: list[bytes]) -> tuple[list[str], bool]:
    """The relative paths in inotifywait records (`EVENTS ./path`), "" for the root; and
    whether the kernel said it dropped events (a `Q_OVERFLOW` record, which has no path)."""
    paths = []
    overflowed = False
    for record in records:
        events, _, raw = record.partition(b" ")
        kinds = set(events.split(b","))
        if _OVERFLOW in kinds:
            overflowed = True
            continue
        if b"ISDIR" in kinds and kinds <= _DIRECTORY_METADATA:
            continue  # a directory's own metadata is not synced
        path = raw.decode("utf-8", "surrogateescape")
        path = path[2:] if path.startswith("./") else path.lstrip(".")
        path = path.rstrip("/")
        if path == "" and not kinds & _ROOT_GONE:
            continue
        if path == "" or relevant(path):
            paths.append(path)
    return paths, overflowed


_DIRECTORY_METADATA = frozenset({b"ISDIR", b"ATTRIB", b"MODIFY", b"CLOSE_WRITE", b"CLOSE"})
_OVERFLOW = b"Q_OVERFLOW"
_REMOTE_FINISHING = frozenset({b"CLOSE_WRITE", b"MOVED_TO", b"DELETE"})
_ROOT_GONE = frozenset({b"DELETE_SELF", b"MOVE_SELF", b"IGNORED", b"UNMOUNT"})
