"""The reconcile loop: a work queue of space ids fed by watches and a periodic full resync.

Nothing here is needed to be correct after a restart: the queue is rebuilt by the first
resync, and watches only make convergence faster. A space whose pass fails is retried with
exponential back-off; one still settling (pod starting, namespace terminating) is polled.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

from devspace_server.kube.meta import SPACE_ID, installation_selector
from devspace_server.reconcile.errors import ClusterError
from devspace_server.reconcile.step import Reconciler

log = logging.getLogger(__name__)


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

    def enqueue(self, space_id: str) -> None:
        """Ask for space `space_id` to be reconciled soon (the store calls this on a change)."""
        self.queue.add(space_id)

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

    def resync_once(self) -> None:
        """Queue every space the store knows, and handle orphans as configured."""
        for space_id in self.reconciler.space_ids():
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
                outcome = self.reconciler.reconcile(key)
            except ClusterError:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                self.queue.done(key)
                self.queue.add(key, delay=min(self.max_backoff, 0.5 * 2**failures))
                continue
            except Exception:
                # A bug must not kill the worker: log it, back off, keep serving others.
                log.exception("reconciling space %s failed", key)
                self.queue.done(key)
                self.queue.add(key, delay=self.max_backoff)
                continue
            self._failures.pop(key, None)
            self.queue.done(key)
            if not outcome.done:
                self.queue.add(key, delay=self.poll_seconds)

    def _watch(self, kind: str, stop: threading.Event) -> None:
        selector = installation_selector(self.reconciler.settings)
        while not stop.is_set():
            try:
                for labels in self.reconciler.cluster.watch_labels(kind, selector):
                    if SPACE_ID in labels:
                        self.queue.add(labels[SPACE_ID])
                    if stop.is_set():
                        return
            except ClusterError as error:
                log.warning("watch %s: %s", kind, error)
                stop.wait(1)
