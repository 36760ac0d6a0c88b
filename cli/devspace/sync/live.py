"""The continuous engine: a full pass, then a pass per batch of watcher events, for as long as
the user wants; it survives a dropped connection.

`SyncSession.run` holds the folder's lock (one engine per space and folder), starts the
laptop's watcher once, and for each connection (made by the `connect` factory, again after a
drop): starts the pod's watcher, runs a full pass, then waits for events. A batch is synced by
`scoped_pass` (only the touched subtrees) unless it asks for everything; a full pass also runs
every `LiveOptions.full_every` seconds as the safety net, and every `poll_every` seconds while a
watcher cannot run. Operations found stale (the file changed after the plan) are planned again
at once. A brake holds the engine (state "held") until `on_brake` confirms.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import shlex
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from devspace.errors import AuthError, DevspaceError, NotFound, SshError, UsageError
from devspace.ssh import Connection
from devspace.sync.apply import ApplyInterrupted
from devspace.sync.errors import SyncError
from devspace.sync.lock import FolderLock, status_path, write_status
from devspace.sync.once import PassReport, scan_ahead, sync_once
from devspace.sync.operations import SyncPlan
from devspace.sync.outcome import Progress
from devspace.sync.plan import PlanOptions, conflict_stamp
from devspace.sync.podwatch import RemoteWatcher
from devspace.sync.policy import IgnoreRules, NameRules
from devspace.sync.remote import ConnectionLost, PodFolder
from devspace.sync.scan import LocalScan
from devspace.sync.scope import not_ignored, scoped_pass
from devspace.sync.state import AncestorStore
from devspace.sync.watch import Batch, Changes, LocalWatcher

log = logging.getLogger(__name__)
_RETRIES_AFTER_STALE = 3
_WATCH_RETRY = 30.0  # seconds between attempts to watch the pod again while polling it


@dataclass(frozen=True)
class LiveOptions:
    """How the live engine paces itself."""

    # Seconds between safety-net full passes. Each costs ~4 s of CPU with 100,000 files
    # (BENCHMARKS.md), so every 10 minutes keeps an idle engine under 1% of a core.
    full_every: float = 600.0
    poll_every: float = 2.0  # seconds between full passes while a watcher cannot run
    reconnect_delays: tuple[float, ...] = (0.2, 1.0, 2.0, 5.0, 10.0, 30.0)
    quiet: float = 0.005  # coalescing: seconds without a new event
    settled: float = 0.001  # coalescing: the same after an event that ended a write
    longest: float = 0.1  # coalescing: seconds after the first event at most
    burst_limit: int = 4096  # events per second on one side taken for a possible overflow
    watcher: str = "inotifywait"  # the program the pod's watcher runs


@dataclass(frozen=True)
class Status:
    """What the engine is doing, for the one-line display and `devspace status`.

    `state` is one of starting, syncing, idle, held (a brake waits for the user),
    reconnecting, stopped.
    """

    state: str
    pending: int = 0
    conflicts: tuple[str, ...] = ()
    last_sync: float | None = None
    message: str = ""
    watching: dict[str, str] = field(default_factory=dict)


class SyncSession:
    """One live sync between `local_root` and `remote_root` in the pod `connect` reaches."""

    def __init__(
        self,
        local_root: Path,
        store: AncestorStore,
        connect: Callable[[], Connection],
        *,
        options: PlanOptions | None = None,
        ignore: tuple[str, ...] = (),
        gitignore: bool = True,
        live: LiveOptions | None = None,
        state_dir: Path | None = None,
        on_status: Callable[[Status], None] | None = None,
        on_pass: Callable[[PassReport], None] | None = None,
        on_brake: Callable[[SyncPlan], bool] | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Prepare (nothing runs until `run`). `store.key` names the space and both folders."""
        self.local_root = local_root
        self.remote_root = store.key.remote_root
        self.store = store
        self.connect = connect
        self.options = options or PlanOptions(local_names=NameRules.for_platform())
        self.ignore = ignore
        self.gitignore = gitignore
        self.live = live or LiveOptions()
        self.on_status = on_status
        self.on_pass = on_pass
        self.on_brake = on_brake
        self.progress = progress
        self.changes = Changes(
            quiet=self.live.quiet,
            settled=self.live.settled,
            longest=self.live.longest,
            burst_limit=self.live.burst_limit,
        )
        self.lock = FolderLock(store.key, state_dir)
        self.status_file = status_path(store.key, state_dir)
        self.status = Status("starting")
        self.passes = 0  # full and scoped passes run, for tests and the status line
        self.full_passes = 0
        self.reconnects = 0
        self.full_reasons: list[str] = []  # why the last full passes ran (besides the timer)
        self._stop = threading.Event()
        self._local = LocalWatcher(local_root, self.changes)
        self._remote: RemoteWatcher | None = None
        self._connection: Connection | None = None
        self._pod: PodFolder | None = None
        self._ahead: Future[LocalScan] | None = None  # the first pass's scan, begun early
        # The rules of the last full pass; None until one ran (a scoped pass needs them). The
        # ancestor itself stays in the store: scoped passes read the records they need.
        self._rules: IgnoreRules | None = None
        self._watch_retry = 0.0
        self._full_seconds = 0.0  # how long the last full pass took: polling waits longer

    # --- running ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run` to return after the current pass (thread-safe)."""
        self._stop.set()
        self.changes.wake()

    def run(self) -> None:
        """Sync until `stop` is called. Raises SyncLocked if another engine runs on this
        folder, AuthError if the credentials are refused, what `connect` raises if the first
        connection fails (SshError, a space not running), ScanError if the local folder is
        gone, StateError; a connection that drops later is retried (through server errors
        and a space restarting too), never raised."""
        with self.lock:
            self._local.start()
            try:
                self._run()
            finally:
                log.debug("sync: stopping")
                self._local.stop()
                self._disconnect()
                self.store.close()  # SQLite objects belong to the thread that made them
                self._report("stopped", message=self.status.message)
                log.debug("sync: stopped")

    def _run(self) -> None:
        attempt = 0
        connected = False
        while not self._stop.is_set():
            try:
                if not connected:  # the first pass's scan runs while the connection is made
                    self._ahead = scan_ahead(
                        self.local_root, ignore=self.ignore, gitignore=self.gitignore
                    )
                pod = self._open()
                connected, attempt = True, 0
                self._serve(pod)
            except (AuthError, UsageError, NotFound):
                raise  # retrying cannot help: signing in again, a fix, or the space is gone
            except (ConnectionLost, ApplyInterrupted, DevspaceError) as error:
                # Our own failures (the local folder gone, the state unwritable) are not a
                # network blip; the network's, the server's and a restarting space's are.
                lost = isinstance(error, ConnectionLost | ApplyInterrupted)
                self._disconnect()
                if (isinstance(error, SyncError) and not lost) or not connected:
                    raise  # never connected: a wrong address or a stopped space, not a blip
                delays = self.live.reconnect_delays
                delay = delays[min(attempt, len(delays) - 1)]
                attempt += 1
                self.reconnects += 1
                log.info("sync: %s; reconnecting in %.1f s", error, delay)
                self._report("reconnecting", message=f"{error}; reconnecting")
                self._stop.wait(delay)

    def _open(self) -> PodFolder:
        connection = self.connect()
        self._connection = connection
        sftp = connection.sftp()
        pod = self._pod = PodFolder(sftp, self.remote_root)
        if not self.store.recorded():
            # A first sync makes its pod folder (as `--once` does); later, a missing one is a
            # warning sign (a wiped volume) that the empty-root brake reports.
            pod.run(f"mkdir -p -- {shlex.quote(self.remote_root)}")
        self._remote = RemoteWatcher(
            pod.transport, self.remote_root, self.changes, program=self.live.watcher
        )
        self._remote.start()
        if self._remote.ended.is_set() and not self._remote.polling:
            if not pod.transport.is_active():
                raise ConnectionLost(self._remote.reason)
            log.info("sync: %s", self._remote.reason)  # the folder is missing: a pass says so
        return pod

    def _disconnect(self) -> None:
        remote, self._remote = self._remote, None
        if remote is not None:
            remote.stop()
        connection, self._connection = self._connection, None
        self._pod = None
        if connection is not None:
            try:
                connection.close()
            except SshError as error:
                log.debug("sync: closing the connection: %s", error)

    def _serve(self, pod: PodFolder) -> None:
        self._full(pod)
        next_full = time.monotonic() + self.live.full_every
        while not self._stop.is_set():
            now = time.monotonic()
            wait = next_full - now
            if self._polling():
                # A large tree's full pass is costly: never spend more than a fifth of the time
                # polling it.
                wait = min(wait, max(self.live.poll_every, 4 * self._full_seconds))
            batch = self.changes.take(max(wait, 0.0))
            if self._stop.is_set():
                return
            if batch is not None:
                # Busy from the moment events are taken, so "idle" always means settled.
                self._report("syncing", pending=len(batch.local) + len(batch.remote))
            self._check_remote_watcher()
            if batch is None or batch.full or time.monotonic() >= next_full:
                if batch is not None and batch.reasons and batch.reasons != ("woken",):
                    log.info("sync: full pass: %s", "; ".join(batch.reasons))
                    self.full_reasons = [*self.full_reasons, *batch.reasons][-20:]
                self._full(pod)
                next_full = time.monotonic() + self.live.full_every
            else:
                self._scoped(pod, batch)
            # Not kept while the next one is awaited: an idle engine would hold its paths.
            del batch

    def _polling(self) -> bool:
        remote = self._remote
        return not self._local.alive or remote is None or remote.polling or remote.ended.is_set()

    def _check_remote_watcher(self) -> None:
        remote, pod = self._remote, self._pod
        if remote is None or pod is None or not remote.ended.is_set():
            return
        if not pod.transport.is_active():
            raise ConnectionLost(remote.reason or "the connection to the pod dropped")
        if remote.polling and time.monotonic() < self._watch_retry:
            return
        # Watch again: the stream ended with the connection up (the folder was replaced), or
        # polling went on for a while (the folder may be back, inotifywait installed).
        remote.stop()
        self._remote = RemoteWatcher(
            pod.transport, self.remote_root, self.changes, program=self.live.watcher
        )
        self._remote.start()
        if self._remote.polling:
            self._watch_retry = time.monotonic() + _WATCH_RETRY
        else:
            self.changes.rescan("the pod's watcher was restarted")

    # --- passes -----------------------------------------------------------------------------

    def _plan_options(self) -> PlanOptions:
        return replace(self.options, conflict_stamp=conflict_stamp(datetime.now(UTC)))

    def _full(self, pod: PodFolder) -> None:
        options = self._plan_options()
        started = time.monotonic()
        for _ in range(_RETRIES_AFTER_STALE + 1):
            self._report("syncing", pending=self.changes.pending())
            # A scan begun before the first connection (taken once: never held while idle).
            ahead, self._ahead = self._ahead, None
            scanned = ahead.result() if ahead else None
            del ahead
            report = sync_once(
                self.local_root,
                pod,
                self.store,
                options=options,
                ignore=self.ignore,
                gitignore=self.gitignore,
                progress=self.progress,
                scanned=scanned,
            )
            self.passes += 1
            self.full_passes += 1
            self._rules = report.rules
            if report.stopped:
                if self.on_brake is not None and self.on_brake(report.plan):
                    confirmed = frozenset(b.reason for b in report.plan.brakes)
                    options = replace(options, confirmed=options.confirmed | confirmed)
                    continue
                self._finished(report, "held", "; ".join(b.message for b in report.plan.brakes))
                return
            self._finished(report)
            if report.settled:
                break
        self._full_seconds = time.monotonic() - started
        _give_back_memory()

    def _scoped(self, pod: PodFolder, batch: Batch) -> None:
        rules = self._rules
        touched = not_ignored(batch.local | batch.remote, rules)
        if not touched:
            return
        if rules is None or self.status.state == "held":
            self._full(pod)
            return
        self._report("syncing", pending=len(touched))
        report = scoped_pass(
            self.local_root,
            pod,
            self.store,
            touched,
            rules=rules,
            options=self._plan_options(),
            progress=self.progress,
            pod_unchanged=not batch.remote and not self._polling(),
        )
        if report is None:
            self._full(pod)
            return
        self.passes += 1
        self._finished(report)
        if not report.settled and report.applied is not None:
            self._full(pod)  # something changed under the plan: look again, everywhere

    def _finished(self, report: PassReport, state: str = "idle", message: str = "") -> None:
        conflicts = tuple(c.path for c in report.plan.conflicts)
        if self.on_pass is not None:
            self.on_pass(report)
        # Every conflict of this session stays listed: a later pass does not repeat it.
        kept = tuple(c for c in self.status.conflicts if c not in conflicts)
        self._report(
            state,
            pending=self.changes.pending(),
            conflicts=(*kept, *conflicts)[-50:],
            last_sync=time.time() if state == "idle" else self.status.last_sync,
            message=message,
        )

    def _report(
        self,
        state: str,
        *,
        pending: int | None = None,
        conflicts: tuple[str, ...] | None = None,
        last_sync: float | None = None,
        message: str = "",
    ) -> None:
        remote = self._remote
        remote_events = remote is not None and not remote.polling and not remote.ended.is_set()
        watching = {
            "local": "events" if self._local.alive else "polling",
            "remote": "events" if remote_events else "polling",
        }
        previous = self.status
        self.status = Status(
            state,
            pending=previous.pending if pending is None else pending,
            conflicts=previous.conflicts if conflicts is None else conflicts,
            last_sync=last_sync or previous.last_sync,
            message=message,
            watching=watching,
        )
        key = self.store.key
        write_status(
            self.status_file,
            {
                "space": key.space,
                "local": key.local_root,
                "remote": key.remote_root,
                "state": state,
                "pending": self.status.pending,
                "conflicts": list(self.status.conflicts),
                "last_sync": self.status.last_sync,
                "message": self.status.message,
                "watching": watching,
                "updated": time.time(),
            },
        )
        if self.on_status is not None:
            self.on_status(self.status)


def _give_back_memory() -> None:
    """Return the memory a full pass freed to the OS: a pass over a large tree builds several
    snapshots at once, and an idle engine should not keep their peak resident.

    Python frees one of its 1 MiB arenas only once nothing in it is allocated; the free lists
    of tuples (up to 2,000 per length: the pass's last records) count as allocated and pin
    dozens of them. A full collection empties those lists; glibc then keeps its own freed
    heap until `malloc_trim` gives it back.
    """
    gc.collect()
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl): nothing to do
        pass
