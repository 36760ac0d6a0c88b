"""Watchers: which paths changed on each side since the last pass, never what they hold.

A watcher only tells the engine where to look again; the planner still decides from fresh
snapshots and the ancestor, so a lost, duplicated or lying event costs at most a wasted look
(or a later one), never data. Three sources feed one `Changes`:

- `LocalWatcher`: watchdog (inotify, FSEvents, ReadDirectoryChangesW) on the laptop's folder.
  When the kernel drops events (inotify's queue overflows) watchdog rebuilds its watches but
  tells its handlers nothing, only its log: the watcher listens to that log record and asks
  for a full pass. If watching cannot start (the inotify watch limit), `failed` says why and
  the engine polls instead.
- `RemoteWatcher`: `inotifywait -m -r` in the sidecar over an exec channel, one NUL-ended
  record per event. inotifywait drops the kernel's overflow notice silently, so a burst of
  events (`Changes.burst_limit` in one second: an overflow is only possible in a burst that
  outruns the stream) asks for a full pass too. A pod without inotifywait, or one that cannot
  watch the tree, puts the watcher in `polling` mode: the engine then lists the pod
  periodically.
- the engine's own periodic full pass, the safety net for everything above.
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from devspace.sync.policy import TEMPORARY_PREFIX
from devspace.sync.snapshot import Side

log = logging.getLogger(__name__)

# Events that say nothing about content or names: reading a file must not trigger a pass.
_QUIET_EVENTS = frozenset({"opened", "closed_no_write"})
# The messages watchdog logs (below this logger) when the kernel dropped events. Listening
# here also keeps them off stderr: a logger with a handler is never passed to Python's
# last-resort printer.
_WATCHDOG_LOGGER = "watchdog"
_OVERFLOW_WORDS = "overflow"


@dataclass(frozen=True)
class Batch:
    """Paths touched on each side since the last batch, and whether to look at everything.

    `full` is set when a watcher lost events, the root itself changed, or a path could not be
    expressed; `reasons` says why, for the debug log.
    """

    local: frozenset[str]
    remote: frozenset[str]
    full: bool
    reasons: tuple[str, ...]

    @property
    def empty(self) -> bool:
        """Whether there is nothing to look at."""
        return not (self.local or self.remote or self.full)


class Changes:
    """Touched paths from every watcher, coalesced until the file system is quiet. Thread-safe.

    `take` waits for the first event, then until no new one came for `quiet` seconds (an
    editor's write-to-temporary-and-rename is a few events within a millisecond), but never
    longer than `longest` after the first, so a tool that writes without pause still syncs.
    """

    def __init__(
        self, *, quiet: float = 0.005, longest: float = 0.1, burst_limit: int = 4096
    ) -> None:
        """Coalesce over `quiet` seconds (at most `longest`); `burst_limit` events in a second
        on one side are taken for a possible overflow (a full pass)."""
        self.quiet = quiet
        self.longest = longest
        self.burst_limit = burst_limit
        self._cond = threading.Condition()
        self._paths: dict[Side, set[str]] = {Side.LOCAL: set(), Side.REMOTE: set()}
        self._reasons: list[str] = []
        self._first = 0.0
        self._last = 0.0
        self._recent: dict[Side, deque[float]] = {Side.LOCAL: deque(), Side.REMOTE: deque()}
        self.events = 0  # every event ever added, for status and tests

    def add(self, side: Side, paths: Iterable[str]) -> None:
        """Record that `paths` (relative, POSIX) changed on `side`; "" is the root itself."""
        now = time.monotonic()
        with self._cond:
            added = 0
            for path in paths:
                if path == "":
                    self._request("the root folder itself changed")
                else:
                    self._paths[side].add(path)
                added += 1
            if not added:
                return
            self.events += added
            recent = self._recent[side]
            recent.extend([now] * min(added, self.burst_limit + 1))
            while recent and recent[0] < now - 1.0:
                recent.popleft()
            if len(recent) > self.burst_limit:
                recent.clear()
                self._request(f"a burst of events on the {side.value} side (events may be lost)")
            self._touch(now)

    def rescan(self, reason: str) -> None:
        """Ask for a full pass (a watcher lost events, or cannot say what changed)."""
        with self._cond:
            self._request(reason)
            self._touch(time.monotonic())

    def _request(self, reason: str) -> None:
        if reason not in self._reasons:
            self._reasons.append(reason)

    def _touch(self, now: float) -> None:
        if not self._first:
            self._first = now
        self._last = now
        self._cond.notify_all()

    def pending(self) -> int:
        """How many paths wait for the next batch."""
        with self._cond:
            return sum(len(p) for p in self._paths.values()) + len(self._reasons)

    def take(self, timeout: float | None = None) -> Batch | None:
        """The next batch once the events settle; None if nothing came within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._first:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            while True:
                now = time.monotonic()
                settle = min(self._last + self.quiet, self._first + self.longest)
                if now >= settle:
                    break
                self._cond.wait(settle - now)
            batch = Batch(
                frozenset(self._paths[Side.LOCAL]),
                frozenset(self._paths[Side.REMOTE]),
                bool(self._reasons),
                tuple(self._reasons),
            )
            self._paths = {Side.LOCAL: set(), Side.REMOTE: set()}
            self._reasons = []
            self._first = self._last = 0.0
            return batch

    def wake(self) -> None:
        """Wake a waiting `take` with an empty request (used to stop the engine)."""
        self.rescan("woken")


def _relevant(name: str) -> bool:
    # Sync's own temporary files come and go with every transfer; the scan ignores them.
    return not name.startswith(TEMPORARY_PREFIX)


class _Handler(FileSystemEventHandler):
    def __init__(self, root: str, changes: Changes) -> None:
        self.root = root
        self.changes = changes

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _QUIET_EVENTS:
            return
        if event.is_directory and event.event_type in ("modified", "attrib"):
            return  # a directory "changes" when a child does, which has its own event
        paths = []
        for raw in (event.src_path, event.dest_path):
            if not raw:
                continue
            full = os.fsdecode(raw)
            relative = os.path.relpath(full, self.root)
            if relative == ".":
                paths.append("")
            elif not relative.startswith(".."):
                path = relative.replace(os.sep, "/")
                if _relevant(path.rpartition("/")[2]):
                    paths.append(path)
        if paths:
            self.changes.add(Side.LOCAL, paths)


class _OverflowListener(logging.Handler):
    """Turns watchdog's "events were lost" log record into a request for a full pass."""

    def __init__(self, changes: Changes) -> None:
        super().__init__(logging.WARNING)
        self.changes = changes

    def emit(self, record: logging.LogRecord) -> None:
        if _OVERFLOW_WORDS in record.getMessage().lower():
            self.changes.rescan("the laptop's file events overflowed (events were lost)")


class LocalWatcher:
    """watchdog on the laptop's folder, feeding `changes`. `start` once; `stop` when done."""

    def __init__(self, root: Path, changes: Changes) -> None:
        """Watch `root` recursively (not started yet)."""
        self.root = os.path.realpath(root)
        self.changes = changes
        self.failed: str | None = None  # why watching is impossible: the engine polls then
        self._observer: BaseObserver | None = None
        self._listener = _OverflowListener(changes)

    def start(self) -> None:
        """Start watching; on failure set `failed` (never raises for a foreseeable one)."""
        logging.getLogger(_WATCHDOG_LOGGER).addHandler(self._listener)
        observer = Observer()
        try:
            observer.schedule(_Handler(self.root, self.changes), self.root, recursive=True)
            observer.start()
        except OSError as error:
            self.failed = f"cannot watch {self.root} ({error.strerror or error}); polling instead"
            log.warning("sync: %s", self.failed)
            return
        self._observer = observer

    @property
    def alive(self) -> bool:
        """Whether events are being watched (False after a failure: poll instead)."""
        observer = self._observer
        return observer is not None and observer.is_alive()

    def stop(self) -> None:
        """Stop watching; safe to call twice."""
        logging.getLogger(_WATCHDOG_LOGGER).removeHandler(self._listener)
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)


# --- the pod's side -------------------------------------------------------------------------

_EVENTS = "modify,attrib,close_write,moved_to,moved_from,create,delete,delete_self,move_self"
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
                self.changes.add(Side.REMOTE, _paths(records))
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


def _paths(records: list[bytes]) -> list[str]:
    """The relative paths in inotifywait records (`EVENTS ./path`); "" for the root."""
    paths = []
    for record in records:
        events, _, raw = record.partition(b" ")
        kinds = set(events.split(b","))
        if b"ISDIR" in kinds and kinds <= _DIRECTORY_METADATA:
            continue  # a directory's own metadata is not synced
        path = raw.decode("utf-8", "surrogateescape")
        path = path[2:] if path.startswith("./") else path.lstrip(".")
        path = path.rstrip("/")
        if path == "" and not kinds & _ROOT_GONE:
            continue
        if path == "" or _relevant(path.rpartition("/")[2]):
            paths.append(path)
    return paths


_DIRECTORY_METADATA = frozenset({b"ISDIR", b"ATTRIB", b"MODIFY", b"CLOSE_WRITE", b"CLOSE"})
_ROOT_GONE = frozenset({b"DELETE_SELF", b"MOVE_SELF", b"IGNORED", b"UNMOUNT"})
