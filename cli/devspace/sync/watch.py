"""Watchers: which paths changed on each side since the last pass, never what they hold.

A watcher only tells the engine where to look again; the planner still decides from fresh
snapshots and the ancestor, so a lost, duplicated or lying event costs at most a wasted look
(or a later one), never data. Three sources feed one `Changes`:

- `LocalWatcher`: watchdog (inotify, FSEvents, ReadDirectoryChangesW) on the laptop's folder.
  When the kernel drops events (inotify's queue overflows) watchdog rebuilds its watches but
  tells its handlers nothing, only its log: the watcher listens to that log record and asks
  for a full pass. If watching cannot start (the inotify watch limit), `failed` says why and
  the engine polls instead.
- `podwatch.RemoteWatcher`: `inotifywait -m -r` in the sidecar over an exec channel, one NUL-ended
  record per event. inotifywait passes on the kernel's overflow notice (`Q_OVERFLOW`) only when
  asked for it by name, which the command does: it asks for a full pass. A burst of events
  (`Changes.burst_limit` in one second: an overflow is only possible in a burst that outruns
  the stream) asks for one too, in case the notice is lost with the rest. A pod without
  inotifywait, or one that cannot watch the tree, puts the watcher in `polling` mode: the
  engine then lists the pod periodically.
- the engine's own periodic full pass, the safety net for everything above.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from devspace.sync.policy import TEMPORARY_PREFIX
from devspace.sync.snapshot import Side

log = logging.getLogger(__name__)

# The events that say something about names or content. Asking the kernel for only these
# matters: opens and reads (a full pass lists every directory, an upload reads every file)
# would otherwise fill inotify's queue, overflow it, and ask for yet another full pass.
_WATCHED_EVENTS = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
]
# Events that end a write (watchdog's names): the coalescing wait is shorter after them.
_FINISHING = frozenset({"closed", "moved", "deleted"})
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
    After an event that ends a write (a file closed after writing, a rename, a delete) the
    wait is `settled` instead: the save is most likely done, and every millisecond waited is
    a millisecond of edit latency. Taking a batch early costs at most one more pass.
    """

    def __init__(
        self,
        *,
        quiet: float = 0.005,
        settled: float = 0.001,
        longest: float = 0.1,
        burst_limit: int = 4096,
    ) -> None:
        """Coalesce over `quiet` seconds (`settled` after a write ended; at most `longest`);
        `burst_limit` events in a second on one side are taken for a possible overflow (a
        full pass)."""
        self.quiet = quiet
        self.settled = settled
        self.longest = longest
        self.burst_limit = burst_limit
        self._gap = quiet  # the wait after the last event
        self._cond = threading.Condition()
        self._paths: dict[Side, set[str]] = {Side.LOCAL: set(), Side.REMOTE: set()}
        self._reasons: list[str] = []
        self._first = 0.0
        self._last = 0.0
        self._skipped = 0  # paths not kept because a full pass is due
        self._recent: dict[Side, deque[float]] = {Side.LOCAL: deque(), Side.REMOTE: deque()}
        self.events = 0  # every event ever added, for status and tests

    def add(self, side: Side, paths: Iterable[str], *, finished: bool = False) -> None:
        """Record that `paths` (relative, POSIX) changed on `side`; "" is the root itself.

        `finished`: the last of these events ended a write (see the class docstring).
        """
        now = time.monotonic()
        with self._cond:
            added = 0
            for path in paths:
                if path == "":
                    self._request("the root folder itself changed")
                elif not self._reasons:
                    self._paths[side].add(path)
                else:
                    self._skipped += 1  # a full pass is due anyway: no need to keep the path
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
            self._gap = self.settled if finished else self.quiet
            self._touch(now)

    def rescan(self, reason: str) -> None:
        """Ask for a full pass (a watcher lost events, or cannot say what changed)."""
        with self._cond:
            self._request(reason)
            self._touch(time.monotonic())

    def _request(self, reason: str) -> None:
        if reason not in self._reasons:
            self._reasons.append(reason)
        # A full pass looks at every path: the ones gathered so far (a burst's can be 100,000)
        # are only counted from here on.
        self._skipped += sum(len(p) for p in self._paths.values())
        self._paths = {Side.LOCAL: set(), Side.REMOTE: set()}

    def _touch(self, now: float) -> None:
        if not self._first:
            self._first = now
        self._last = now
        self._cond.notify_all()

    def pending(self) -> int:
        """How many paths wait for the next batch."""
        with self._cond:
            return sum(len(p) for p in self._paths.values()) + self._skipped + len(self._reasons)

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
                settle = min(self._last + self._gap, self._first + self.longest)
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
            self._skipped = 0
            self._first = self._last = 0.0
            return batch

    def wake(self) -> None:
        """Wake a waiting `take` with an empty request (used to stop the engine)."""
        self.rescan("woken")


def relevant(path: str) -> bool:
    """Whether a change at `path` matters: not to sync's own temporary files, nor to anything
    in a new folder it is still filling under a temporary name (see `newtrees`)."""
    # They come and go with every transfer, and the scan ignores them.
    return not any(name.startswith(TEMPORARY_PREFIX) for name in path.split("/"))


class _Handler(FileSystemEventHandler):
    def __init__(self, root: str, changes: Changes) -> None:
        self.root = root
        self.changes = changes

    def on_any_event(self, event: FileSystemEvent) -> None:
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
                if relevant(path):
                    paths.append(path)
        if paths:
            self.changes.add(Side.LOCAL, paths, finished=event.event_type in _FINISHING)


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
            observer.schedule(
                _Handler(self.root, self.changes),
                self.root,
                recursive=True,
                event_filter=_WATCHED_EVENTS,
            )
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
