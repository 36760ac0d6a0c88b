"""The reconciler's heartbeat in the database, and how the API reads it.

The API never talks to the cluster, so without this it cannot tell a person that their space
waits because the cluster is unreachable. Each reconciler replica writes one row every few
seconds (`Heartbeat`): that it is alive, whether it leads, and when it last got an answer from
the Kubernetes API server. `cluster_health` turns the rows into one verdict with a message.

Nothing here imports Kubernetes: the API imports `cluster_health`.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from devspace_server.models import REASON_MAX, ReconcilerHeartbeat, utcnow

log = logging.getLogger(__name__)
BEAT_SECONDS = 2.0
# No heartbeat for this long: the replica is gone (crashed, or cannot reach the database).
GONE_AFTER = timedelta(seconds=20)
# No answer from the API server for this long: the cluster is unreachable. Three missed
# Lease attempts (every 2 s) and then some, so one slow request is not an outage.
UNREACHABLE_AFTER = timedelta(seconds=8)
# Rows of replicas gone this long are removed: each restart has a new identity.
FORGET_AFTER = timedelta(days=1)


class Heartbeat:
    """This replica's row: `contact` records each exchange with the API server; `run` writes
    the row every `every` seconds until stopped. Thread-safe."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        identity: str,
        *,
        leading: Callable[[], bool],
        every: float = BEAT_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.identity = identity
        self.leading = leading
        self.every = every
        self.clock = clock
        self.started_at = clock()
        self._contacted_at: datetime | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    @property
    def contacted_at(self) -> datetime | None:
        """The last successful exchange with the API server, or None."""
        with self._lock:
            return self._contacted_at

    def contact(self, reachable: bool, error: str | None) -> None:
        """Record one exchange with the API server (a `LeaderElector.on_contact`)."""
        with self._lock:
            if reachable:
                self._contacted_at = self.clock()
            self._error = error[:REASON_MAX] if error else None

    def write(self) -> None:
        """Write this replica's row now. Raises SQLAlchemyError if the database fails."""
        with self._lock:
            contacted_at, error = self._contacted_at, self._error
        now = self.clock()
        with self.sessions() as db:
            row = db.get(ReconcilerHeartbeat, self.identity)
            if row is None:
                row = ReconcilerHeartbeat(identity=self.identity, started_at=self.started_at)
                db.add(row)
            row.leader = self.leading()
            row.beat_at = now
            row.contacted_at = contacted_at
            row.error = error
            db.execute(
                delete(ReconcilerHeartbeat).where(ReconcilerHeartbeat.beat_at < now - FORGET_AFTER)
            )
            db.commit()

    def run(self, stop: threading.Event) -> None:
        """Write the row every `every` seconds until `stop`; then once more, not leading.

        A database failure is logged and retried: it must not stop the reconciler.
        """
        while True:
            try:
                self.write()
            except SQLAlchemyError as error:
                log.warning("cannot write the heartbeat: %s", str(error).splitlines()[0])
            if stop.wait(self.every):
                break
        self.leading = lambda: False
        with contextlib.suppress(SQLAlchemyError):  # stopping: a stale row reads as gone
            self.write()


class Reachability(enum.StrEnum):
    """The verdict on the reconciler and the cluster, as the API reports it."""

    OK = "ok"
    UNREACHABLE = "cluster-unreachable"
    NO_LEADER = "no-leader"
    NO_RECONCILER = "no-reconciler"


@dataclass(frozen=True)
class Replica:
    """One live reconciler replica, as its row says."""

    identity: str
    leader: bool
    beat_at: datetime
    contacted_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class ClusterHealth:
    """Whether the reconciler runs and reaches the cluster, with a sentence for people.

    `contacted_at` is the last time any live replica got an answer from the API server.
    """

    state: Reachability
    message: str
    contacted_at: datetime | None
    replicas: tuple[Replica, ...]

    @property
    def ok(self) -> bool:
        return self.state is Reachability.OK


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def cluster_health(db: Session, now: datetime | None = None) -> ClusterHealth:
    """The reconciler's and the cluster's health from the heartbeat rows."""
    now = now or utcnow()
    rows = list(db.scalars(select(ReconcilerHeartbeat).order_by(ReconcilerHeartbeat.identity)))
    live = tuple(
        Replica(r.identity, r.leader, r.beat_at, r.contacted_at, r.error)
        for r in rows
        if r.beat_at >= now - GONE_AFTER
    )
    contacts = [r.contacted_at for r in live if r.contacted_at is not None]
    contacted = max(contacts, default=None)
    if not live:
        last = max((r.beat_at for r in rows), default=None)
        message = (
            "No reconciler has reported yet: changes are not applied until "
            "`devspace-server reconcile` runs."
            if last is None
            else f"No reconciler has reported since {_when(last)}: changes are not applied "
            "until one runs again."
        )
        return ClusterHealth(Reachability.NO_RECONCILER, message, contacted, live)
    if contacted is None or contacted < now - UNREACHABLE_AFTER:
        errors = [r.error for r in live if r.error]
        since = (
            "has never been reachable"
            if contacted is None
            else (f"has not been reachable since {_when(contacted)}")
        )
        why = f" ({errors[0]})" if errors else ""
        message = (
            f"The Kubernetes cluster {since}{why}: spaces show what was last observed, and "
            "changes are applied once it is back."
        )
        return ClusterHealth(Reachability.UNREACHABLE, message, contacted, live)
    if not any(r.leader for r in live):
        return ClusterHealth(
            Reachability.NO_LEADER,
            "The reconcilers are electing a leader: changes are applied in a few seconds.",
            contacted,
            live,
        )
    return ClusterHealth(Reachability.OK, "The reconciler reaches the cluster.", contacted, live)
