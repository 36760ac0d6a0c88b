"""The reconcile loop: a work queue of space ids fed by watches and a periodic full resync.

Nothing here is needed to be correct after a restart: the queue is rebuilt by the first
resync, and watches only make convergence faster. A space whose pass fails is retried with
exponential back-off; one still settling (pod starting, namespace terminating) is polled.
"""

from __future__ import annotations

import functools
import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from devspace_server import metrics
from devspace_server.kube.meta import SPACE_ID, installation_selector
from devspace_server.reconcile.errors import ClusterError
from devspace_server.reconcile.snapshot import Snapshot
from devspace_server.reconcile.status import Phase
from devspace_server.reconcile.step import Outcome, Reconciler

log = logging.getLogger(__name__)
# A starting space's status is polled this many times less often while watches run.
STARTING_POLL_FACTOR = 5


class WorkQueue:
    """Space ids to reconcile, each at most once in the queue and once in flight.

    An id added while it is being processed is processed again afterwards, so no change is
    lost and no space is reconciled by two workers at once.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: list[tuple[float, str]] = []
        self._queued: dict[str, float] = {}
        self._processing: set[str] = set()
        self._again: dict[str, float] = {}
        self._cond = threading.Condition()

    def add(self, key: str, delay: float = 0.0) -> None:
        """Queue `key` to be handed out after `delay` seconds (sooner if already queued so)."""
        with self._cond:
            due = self._clock() + delay
            if key in self._processing:
                self._again[key] = min(due, self._again.get(key, due))
                return
            if key in self._queued and self._queued[key] <= due:
                return
            self._queued[key] = due
            heapq.heappush(self._due, (due, key))
            self._cond.notify()

    def get(self, timeout: float) -> str | None:
        """The next due key (now marked in flight), or None after `timeout` seconds."""
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                while self._due and self._queued.get(self._due[0][1]) != self._due[0][0]:
                    heapq.heappop(self._due)  # superseded by an earlier entry for the key
                now = self._clock()
                if self._due and self._due[0][0] <= now:
                    _, key = heapq.heappop(self._due)
                    del self._queued[key]
                    self._processing.add(key)
                    return key
                wake = min(deadline, self._due[0][0]) if self._due else deadline
                if now >= deadline:
                    return None
                self._cond.wait(max(0.0, wake - now))

    def done(self, key: str) -> None:
        """Mark `key` processed; re-queue it if it was added meanwhile."""
        with self._cond:
            self._processing.discard(key)
            if key in self._again:
                due = self._again.pop(key)
                self._queued[key] = due
                heapq.heappush(self._due, (due, key))
                self._cond.notify()


@dataclass(frozen=True)
class PassResult:
    """What one full pass (`ReconcileLoop.run_once`) did: spaces visited, those that failed,
    orphan namespaces found, and how long it took in seconds."""

    spaces: int
    failed: list[str]
    orphans: list[str]
    seconds: float
    applied: int = 0
    """Objects applied: those the snapshot showed out of date (all, without a snapshot)."""


class ReconcileLoop:
    """Runs a Reconciler until stopped: workers, watches and periodic resync.

    `orphans` is None (leave orphan namespaces alone), "dry-run" (log them) or "delete".
    """

    def __init__(
        self,
        reconciler: Reconciler,
        *,
        resync_seconds: float = 60,
        poll_seconds: float = 1,
        workers: int = 2,
        watch: bool = True,
        orphans: str | None = "dry-run",
        max_backoff: float = 60,
    ) -> None:
        self.reconciler = reconciler
        self.queue = WorkQueue()
        self.resync_seconds = resync_seconds
        self.poll_seconds = poll_seconds
        self.workers = workers
        self.watch = watch
        self.orphans = orphans
        self.max_backoff = max_backoff
        self._failures: dict[str, int] = {}
        # The last resync's snapshot, and the spaces it queued that nothing else has since:
        # only those are reconciled against it (see `snapshot.py`).
        self._snapshot: Snapshot | None = None
        self._from_snapshot: set[str] = set()
        # Spaces with a pending request for the whole reconcile; the others in the queue
        # only need their status read back (a pod changed, or a pod is still starting).
        self._full: set[str] = set()
        self._lock = threading.Lock()

    def enqueue(self, space_id: str, delay: float = 0.0) -> None:
        """Ask for space `space_id` to be reconciled soon (the store calls this on a change)."""
        with self._lock:
            self._from_snapshot.discard(space_id)  # changed since: read it afresh
            self._full.add(space_id)
        self.queue.add(space_id, delay)

    def refresh_soon(self, space_id: str, delay: float = 0.0) -> None:
        """Ask for space `space_id`'s status to be read back soon, applying nothing."""
        with self._lock:
            self._from_snapshot.discard(space_id)  # its lists are older than this change
        self.queue.add(space_id, delay)

    def _take_snapshot(self) -> Snapshot | None:
        reconciler = self.reconciler
        started = time.monotonic()
        try:
            snapshot = Snapshot.take(reconciler.cluster, installation_selector(reconciler.settings))
        except ClusterError as error:
            # Not fatal: each space is then read and applied the whole way.
            log.warning("resync without a snapshot: %s", error)
            return None
        log.info("snapshot of %d objects in %.2f s", snapshot.size, time.monotonic() - started)
        return snapshot

    def _reconcile_with(self, key: str) -> Callable[[str], Outcome]:
        with self._lock:
            full, listed = key in self._full, key in self._from_snapshot
            self._full.discard(key)
            self._from_snapshot.discard(key)
            if listed:
                return functools.partial(self.reconciler.reconcile, snapshot=self._snapshot)
        return self.reconciler.reconcile if full else self.reconciler.refresh

    def run(self, stop: threading.Event) -> None:
        """Reconcile until `stop` is set; returns once every thread has finished."""
        threads = [
            threading.Thread(target=self._work, args=(stop,), name=f"reconcile-{n}", daemon=True)
            for n in range(self.workers)
        ]
        threads.append(threading.Thread(target=self._resync, args=(stop,), daemon=True))
        for thread in threads:
            thread.start()
        if self.watch:
            # Not joined: a watch holds no state and ends by itself within its timeout, so
            # stopping need not wait for the API server to close the stream.
            for kind in ("namespaces", "deployments", "pods"):
                threading.Thread(target=self._watch, args=(kind, stop), daemon=True).start()
        for thread in threads:
            thread.join()

    def run_once(self, stop: threading.Event) -> PassResult:
        """One full pass: reconcile every space the store knows once, then return.

        Spaces still settling are not waited for, and a failed space is not retried; both are
        counted in the result. Orphans are handled as configured. Returns early (with what
        was done) when `stop` is set. Raises ClusterError if the orphan check fails.
        """
        started = time.monotonic()
        ids = self.reconciler.space_ids()
        snapshot = self._take_snapshot() if ids else None
        for space_id in ids:
            self.queue.add(space_id)
        reconcile = functools.partial(self.reconciler.reconcile, snapshot=snapshot)
        failed: list[str] = []
        applied = [0]
        lock = threading.Lock()

        def work() -> None:
            while not stop.is_set():
                key = self.queue.get(timeout=0)
                if key is None:
                    return  # everything was due now: an empty queue means the pass is done
                try:
                    outcome = metrics.timed_reconcile(reconcile, key, ClusterError)
                    with lock:
                        applied[0] += outcome.applied
                except Exception as error:
                    log.warning("space %s: %s", key, error)
                    with lock:
                        failed.append(key)
                finally:
                    self.queue.done(key)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(self.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        orphans: list[str] = []
        if self.orphans is not None and not stop.is_set():
            orphans = self.reconciler.remove_orphans(dry_run=self.orphans != "delete")
        return PassResult(len(ids), sorted(failed), orphans, time.monotonic() - started, applied[0])

    def resync_once(self) -> None:
        """Queue every space the store knows, and handle orphans as configured."""
        ids = self.reconciler.space_ids()
        snapshot = self._take_snapshot() if ids else None
        with self._lock:
            self._snapshot, self._from_snapshot = snapshot, set(ids) if snapshot else set()
            self._full.update(ids)
        for space_id in ids:
            self.queue.add(space_id)
        if self.orphans is not None:
            self.reconciler.remove_orphans(dry_run=self.orphans != "delete")

    def _resync(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.resync_once()
            except ClusterError as error:
                log.warning("resync: %s", error)
            except Exception:
                # The store failing (its database restarting) must not end the resyncs.
                log.exception("resync failed")
            stop.wait(self.resync_seconds)

    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            key = self.queue.get(timeout=0.5)
            if key is None:
                continue
            try:
                outcome = metrics.timed_reconcile(self._reconcile_with(key), key, ClusterError)
            except ClusterError:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                self.queue.done(key)
                self.enqueue(key, delay=min(self.max_backoff, 0.5 * 2**failures))
                continue
            except Exception:
                # A bug must not kill the worker: log it, back off, keep serving others.
                log.exception("reconciling space %s failed", key)
                self.queue.done(key)
                self.enqueue(key, delay=self.max_backoff)
                continue
            self._failures.pop(key, None)
            self.queue.done(key)
            if not outcome.done:
                self._poll_again(outcome)

    def _poll_again(self, outcome: Outcome) -> None:
        if outcome.status.phase is not Phase.STARTING:
            self.enqueue(outcome.space_id, delay=self.poll_seconds)
            return
        # Everything is applied and the pod is on its way: only its status is awaited, and
        # with watches running each change of the pod brings it; the poll is a safety net.
        delay = self.poll_seconds * (STARTING_POLL_FACTOR if self.watch else 1)
        self.refresh_soon(outcome.space_id, delay=delay)

    def _watch(self, kind: str, stop: threading.Event) -> None:
        selector = installation_selector(self.reconciler.settings)
        while not stop.is_set():
            try:
                for labels in self.reconciler.cluster.watch_labels(kind, selector):
                    if SPACE_ID not in labels:
                        pass
                    elif kind == "pods":  # not ours to repair: only the status changed
                        self.refresh_soon(labels[SPACE_ID])
                    else:  # drift, deletion, or the Deployment's own status
                        self.enqueue(labels[SPACE_ID])
                    if stop.is_set():
                        return
            except ClusterError as error:
                log.warning("watch %s: %s", kind, error)
                stop.wait(1)
