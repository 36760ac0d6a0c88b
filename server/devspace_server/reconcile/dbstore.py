"""The database-backed `SpaceStore`, and how changes in the database reach the loop.

The API and the reconciler share nothing but the database. The reconciler learns of a
change in two ways, both polling, so no notification channel between processes is needed
(and none works the same on SQLite and PostgreSQL): `follow_changes` asks five times a second
for spaces whose `desired_at` moved (one indexed query; its interval is most of the time from
`POST /api/v1/spaces` to the objects applied, see BENCHMARKS.md), and the loop's periodic full
resync catches anything that slipped past (for example a transaction that committed long
after it stamped `desired_at`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from devspace_server import quotas
from devspace_server.kube.spec import Port, Resources, SpaceSpec
from devspace_server.models import REASON_MAX, Quota, QuotaDefaults, Space, utcnow
from devspace_server.reconcile.loop import ReconcileLoop
from devspace_server.reconcile.status import Phase, SpaceStatus

log = logging.getLogger(__name__)
# A change is looked for again this long after its stamp: a transaction may commit a moment
# after another that stamped later, and a missed change would wait for the full resync.
OVERLAP = timedelta(seconds=2)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CaKeys = Callable[[], Sequence[str]]


class DatabaseSpaceStore:
    """A `SpaceStore` on the server's database (see `reconcile/store.py` for the contract).

    `configured_quota` is the configuration's quota defaults; `ca_public_keys` returns the
    SSH CA public keys every sidecar must trust (asked on each read, so a rotation made in
    the configuration reaches the spaces at the next reconcile). Thread-safe: every call
    uses its own session.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        configured_quota: quotas.QuotaValues,
        ca_public_keys: CaKeys,
    ) -> None:
        self.sessions = sessions
        self.configured_quota = configured_quota
        self.ca_public_keys = ca_public_keys

    def desired_spaces(self) -> list[SpaceSpec]:
        """Every live space, with its owner's effective quota."""
        with self.sessions() as db:
            spaces = list(db.scalars(select(Space).where(Space.deleted_at.is_(None))))
            owners = {s.owner_id for s in spaces}
            overrides = {
                q.user_id: quotas.QuotaValues.of(q)
                for q in db.scalars(select(Quota).where(Quota.user_id.in_(owners)))
            }
            base = self._defaults(db)
            keys = tuple(self.ca_public_keys())
            return [
                self._spec(
                    s, base.overlay(overrides.get(s.owner_id, quotas.QuotaValues.unset())), keys
                )
                for s in spaces
            ]

    def desired_space(self, space_id: str) -> SpaceSpec | None:
        """The live space `space_id`, or None if it is deleted or unknown."""
        with self.sessions() as db:
            space = db.get(Space, space_id)
            if space is None or space.deleted_at is not None:
                return None
            quota = quotas.effective(db, space.owner_id, self.configured_quota)
            return self._spec(space, quota, tuple(self.ca_public_keys()))

    def deleted_spaces(self) -> list[str]:
        """Ids of deleted spaces whose namespace is not yet confirmed gone."""
        with self.sessions() as db:
            return list(
                db.scalars(
                    select(Space.id)
                    .where(Space.deleted_at.is_not(None), Space.finalized_at.is_(None))
                    .order_by(Space.id)
                )
            )

    def write_status(self, space_id: str, status: SpaceStatus) -> None:
        """Store what the reconciler observed; leaves `desired_at` alone (see the module)."""
        with self.sessions() as db:
            db.execute(
                update(Space)
                .where(Space.id == space_id, Space.finalized_at.is_(None))
                .values(
                    phase=status.phase.value,
                    reason=status.reason[:REASON_MAX],
                    pod_ip=status.pod_ip,
                    ready=status.ready,
                    quota_used=dict(status.quota_used),
                    quota_hard=dict(status.quota_hard),
                    problems=[
                        {"kind": p.kind.value, "message": p.message} for p in status.problems
                    ],
                    observed_at=utcnow(),
                )
            )
            db.commit()

    def mark_finalized(self, space_id: str) -> None:
        """Record that a deleted space's namespace is gone."""
        with self.sessions() as db:
            now = utcnow()
            db.execute(
                update(Space)
                .where(Space.id == space_id, Space.deleted_at.is_not(None))
                .values(
                    finalized_at=now,
                    observed_at=now,
                    phase=Phase.DELETED.value,
                    reason="deleted",
                    pod_ip=None,
                    ready=False,
                )
            )
            db.commit()

    def latest_change(self) -> datetime | None:
        """The newest `desired_at` of any space, as the database holds it."""
        with self.sessions() as db:
            return db.scalar(select(func.max(Space.desired_at)))

    def changed_since(self, since: datetime) -> tuple[list[str], datetime]:
        """Ids of spaces whose desired state changed after `since` (less `OVERLAP`), and
        the cursor to pass next time."""
        with self.sessions() as db:
            rows = db.execute(
                select(Space.id, Space.desired_at).where(Space.desired_at > since - OVERLAP)
            ).all()
        newest = max((at for _, at in rows), default=since)
        return [space_id for space_id, _ in rows], max(newest, since)

    def _defaults(self, db: Session) -> quotas.QuotaValues:
        stored = db.get(QuotaDefaults, quotas.DEFAULTS_ROW)
        return self.configured_quota.overlay(quotas.QuotaValues.of(stored))

    @staticmethod
    def _spec(space: Space, quota: quotas.QuotaValues, ca_keys: tuple[str, ...]) -> SpaceSpec:
        return SpaceSpec(
            space_id=space.id,
            owner_id=space.owner_id,
            name=space.name,
            image=space.image,
            host_private_key=space.host_private_key,
            ca_public_keys=ca_keys,
            # The owner's immutable id: the only principal their certificates carry.
            principals=(space.owner_id,),
            command=tuple(space.command),
            args=tuple(space.args),
            env=tuple(sorted(space.env.items())),
            resources=Resources(
                cpu_request=space.cpu_request,
                memory_request=space.memory_request,
                cpu_limit=space.cpu_limit,
                memory_limit=space.memory_limit,
            ),
            ports=tuple(Port(name=p["name"], port=int(p["port"])) for p in space.ports),
            stopped=space.stopped,
            quota=quota.to_kube(),
            storage=space.storage,
        )


def follow_changes(
    store: DatabaseSpaceStore,
    loop: ReconcileLoop,
    stop: threading.Event,
    *,
    poll_seconds: float = 0.2,
) -> None:
    """Queue each space whose desired state changes, until `stop` is set.

    Starts from the newest change already in the database: the loop's first full resync
    covers everything before. A database outage is logged and retried; it never ends this.
    """
    cursor: datetime | None = None
    while not stop.is_set():
        try:
            if cursor is None:
                # With no space yet, everything from the first one on is a change: a clock
                # read here could be ahead of the API's and skip it.
                cursor = store.latest_change() or EPOCH
            else:
                changed, cursor = store.changed_since(cursor)
                _enqueue(loop, changed)
        except SQLAlchemyError as error:
            log.warning("cannot read changes from the database: %s", str(error).splitlines()[0])
        stop.wait(poll_seconds)


def _enqueue(loop: ReconcileLoop, space_ids: Iterable[str]) -> None:
    for space_id in space_ids:
        loop.enqueue(space_id)
