"""The database-backed `SpaceStore`, and how changes in the database reach the loop.

The API and the reconciler share nothing but the database. The reconciler learns of a
change in two ways, both polling, so no notification channel between processes is needed
(and none works the same on SQLite and PostgreSQL): `follow_changes` asks five times a second
for spaces whose `desired_at` moved (one indexed query; its interval is most of the time from
`POST /api/v1/spaces` to the objects applied, see BENCHMARKS.md), and the loop's periodic full
resync catches anything that slipped past (for example a transaction that committed long
after it stamped `desired_at`).

Host private keys are stored sealed (`host_key_sealing.py`) and opened here, the one place
that needs them in the clear. Each full resync also re-seals, with the current key, every row
that is plain (written before encryption, by a version that ran without a key) or sealed
with an older key: that is how existing rows get encrypted and how a key rotation completes,
without a migration that would need the key (`migrate` runs with the database URL alone).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, not_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from devspace_server import quotas
from devspace_server.host_key_sealing import HostKeySealer, UnsealError
from devspace_server.kube.spec import Port, Resources, SpaceSpec
from devspace_server.models import REASON_MAX, Quota, QuotaDefaults, Space, utcnow
from devspace_server.reconcile.errors import HostKeyUnreadable
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
    the configuration reaches the spaces at the next reconcile). `host_key_sealer` opens
    the sealed host keys and re-seals the others (there is no store without one).
    Thread-safe: every call uses its own session.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        configured_quota: quotas.QuotaValues,
        ca_public_keys: CaKeys,
        host_key_sealer: HostKeySealer,
    ) -> None:
        self.sessions = sessions
        self.configured_quota = configured_quota
        self.ca_public_keys = ca_public_keys
        self.host_key_sealer = host_key_sealer

    def desired_spaces(self) -> list[SpaceSpec]:
        """Every live space, with its owner's effective quota.

        The full resync reads this (for the ids) every minute, so it first re-seals the rows
        that need it (see the module). A space whose host key cannot be opened is still
        listed, so that its namespace is never taken for an orphan, but with an empty host
        key: `desired_space`, which provisioning reads, raises for it instead.
        """
        self.reseal_host_keys()
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
                    s,
                    base.overlay(overrides.get(s.owner_id, quotas.QuotaValues.unset())),
                    keys,
                    self._host_key_or_empty(s),
                )
                for s in spaces
            ]

    def desired_space(self, space_id: str) -> SpaceSpec | None:
        """The live space `space_id`, or None if it is deleted or unknown.

        Raises `HostKeyUnreadable` if its host key cannot be opened with the configured keys.
        """
        with self.sessions() as db:
            space = db.get(Space, space_id)
            if space is None or space.deleted_at is not None:
                return None
            quota = quotas.effective(db, space.owner_id, self.configured_quota)
            host_key = self.open_host_key(space.id, space.host_private_key)
            return self._spec(space, quota, tuple(self.ca_public_keys()), host_key)

    def open_host_key(self, space_id: str, stored: str) -> str:
        """The private key in `stored` (space `space_id`'s column), in the clear.

        Raises `HostKeyUnreadable` saying which space and what to do if it cannot be opened.
        """
        try:
            return self.host_key_sealer.open(space_id, stored)
        except UnsealError as error:
            raise HostKeyUnreadable(f"space {space_id} cannot be reconciled: {error}") from None

    def _host_key_or_empty(self, space: Space) -> str:
        try:
            return self.open_host_key(space.id, space.host_private_key)
        except HostKeyUnreadable:
            return ""  # only its id is of use; reconciling it reports the problem

    def reseal_host_keys(self) -> int:
        """Seal with the current key every host key that is plain or sealed with an older
        one, deleted spaces' too; returns how many were re-sealed.

        A key that cannot be opened is left as it is (reconciling its space reports it).
        Each row is rewritten only if it still holds what was read, so replicas or a
        concurrent writer can never lose a key to a race.
        """
        sealer = self.host_key_sealer
        done = 0
        with self.sessions() as db:
            stale = db.execute(
                select(Space.id, Space.host_private_key).where(
                    not_(Space.host_private_key.startswith(sealer.current_prefix))
                )
            ).all()
            for space_id, stored in stale:
                try:
                    plain = sealer.open(space_id, stored)
                except UnsealError:
                    continue
                result = db.execute(
                    update(Space)
                    .where(Space.id == space_id, Space.host_private_key == stored)
                    .values(host_private_key=sealer.seal(space_id, plain))
                )
                done += int(getattr(result, "rowcount", 0) or 0)
            db.commit()
        if done:
            log.info("sealed %d host keys with encryption key %s", done, sealer.current_key_id)
        return done

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
    def _spec(
        space: Space, quota: quotas.QuotaValues, ca_keys: tuple[str, ...], host_key: str
    ) -> SpaceSpec:
        return SpaceSpec(
            space_id=space.id,
            owner_id=space.owner_id,
            name=space.name,
            image=space.image,
            host_private_key=host_key,
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
