"""One reconcile of one space, finalization of deleted spaces, and orphan cleanup.

Every method here is level-triggered and idempotent: it reads the store and the cluster,
does what is missing, and can be killed at any point and run again. A `Reconciler` keeps no
state between calls.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from devspace_server.kube.meta import SPACE_ID, installation_selector, is_owned, namespace_name
from devspace_server.kube.quota import QUOTA_NAME
from devspace_server.kube.secrets import secrets_digest
from devspace_server.kube.space import KubeObject, make_space_objects
from devspace_server.kube.spec import WORKLOAD_NAME, ClusterSettings, SpaceSpec
from devspace_server.reconcile.cluster import Cluster
from devspace_server.reconcile.errors import (
    ClusterError,
    ClusterUnavailable,
    HostKeyUnreadable,
    NotOurs,
)
from devspace_server.reconcile.snapshot import Snapshot
from devspace_server.reconcile.status import Phase, Problem, ProblemKind, SpaceStatus, read_status
from devspace_server.reconcile.store import SpaceStore

log = logging.getLogger(__name__)
SETTLED = frozenset({Phase.RUNNING, Phase.STOPPED, Phase.ERROR})
# Applies in flight at once, over all workers; the API client's connection pool is sized for it
# (`process.kube_client`).
APPLY_THREADS = 16


@dataclass(frozen=True)
class Outcome:
    """What one reconcile of one space found: `done` is False when it should run again soon;
    `applied` counts the objects it applied."""

    space_id: str
    status: SpaceStatus
    done: bool
    applied: int = 0


class Reconciler:
    """Converges the cluster to the store, one space at a time."""

    def __init__(self, cluster: Cluster, store: SpaceStore, settings: ClusterSettings) -> None:
        self.cluster = cluster
        self.store = store
        self.settings = settings
        # Shared by every worker; threads are made on demand and live as long as the process.
        self._pool = ThreadPoolExecutor(max_workers=APPLY_THREADS, thread_name_prefix="apply")

    def reconcile(self, space_id: str, snapshot: Snapshot | None = None) -> Outcome:
        """Make space `space_id` match the store: provision it, or finalize its deletion.

        With a `snapshot` (the full resync), only what differs from it is applied and the
        status is read from it. Raises ClusterError when the cluster refuses or cannot be
        reached; the status written before raising says why.
        """
        spec = self._desired(space_id)
        if spec is None:
            return self.finalize(space_id)
        return self.provision(spec, snapshot)

    def provision(self, spec: SpaceSpec, snapshot: Snapshot | None = None) -> Outcome:
        """Apply every object of `spec` (with a `snapshot`: those it shows out of date),
        then read back and record its status."""
        name = namespace_name(spec.space_id, self.settings)
        if snapshot is not None and snapshot.namespace(name) is None:
            snapshot = None  # new, or gone since: the whole way
        try:
            existing = snapshot.namespace(name) if snapshot else self.cluster.read_namespace(name)
            if existing is not None:
                labels = existing.metadata.labels if existing.metadata else None
                if not is_owned(labels, spec.space_id, self.settings):
                    raise NotOurs(
                        f"namespace {name} exists but is not devspace's; refusing to adopt it"
                    )
                if existing.metadata and existing.metadata.deletion_timestamp is not None:
                    # Someone deleted it: wait until it is gone, then make it again.
                    status = SpaceStatus(
                        Phase.PROVISIONING,
                        "the namespace was deleted outside devspace; it is recreated once gone",
                    )
                    self.store.write_status(spec.space_id, status)
                    return Outcome(spec.space_id, status, done=False)
            digest = secrets_digest(spec)
            stale = [
                obj
                for obj in make_space_objects(spec, self.settings)
                if snapshot is None
                or not snapshot.is_current(
                    obj, self.cluster.serialize(obj), digest if obj.kind == "Secret" else None
                )
            ]
            applied = self._apply_in_order(stale)
            if snapshot is not None and applied == 0:
                observed = snapshot.observed(name, WORKLOAD_NAME, QUOTA_NAME)
            else:
                observed = self.cluster.observe(name, WORKLOAD_NAME, QUOTA_NAME)
        except ClusterError as error:
            self._record_failure(spec.space_id, error)
            raise
        status = read_status(observed, stopped=spec.stopped)
        self.store.write_status(spec.space_id, status)
        return Outcome(spec.space_id, status, done=status.phase in SETTLED, applied=applied)

    def refresh(self, space_id: str) -> Outcome:
        """Read back and record the status of a provisioned space, applying nothing (a pod
        changed: pods are not ours to repair). Falls back to `reconcile` when the space is
        deleted, or its namespace or Deployment is missing, being deleted or not ours.

        Raises ClusterError as `reconcile` does.
        """
        spec = self._desired(space_id)
        if spec is None:
            return self.finalize(space_id)
        name = namespace_name(space_id, self.settings)
        try:
            observed = self.cluster.observe(name, WORKLOAD_NAME, QUOTA_NAME)
        except ClusterError as error:
            self._record_failure(space_id, error)
            raise
        meta = observed.namespace.metadata if observed.namespace else None
        if (
            meta is None
            or observed.deployment is None
            or meta.deletion_timestamp is not None
            or not is_owned(meta.labels, space_id, self.settings)
        ):
            return self.provision(spec)
        status = read_status(observed, stopped=spec.stopped)
        self.store.write_status(space_id, status)
        return Outcome(space_id, status, done=status.phase in SETTLED)

    def _apply_in_order(self, objects: list[KubeObject]) -> int:
        """Apply `objects` (in `make_space_objects` order); returns how many.

        The namespace goes first and the Deployment last, as `kube/space.py` orders them; the
        objects between depend on neither each other nor the Deployment, so they are applied
        at once: one round trip's wait instead of eight. Raises the first ClusterError.
        """
        first = [o for o in objects[:1] if o.kind == "Namespace"]
        last = [o for o in objects[-1:] if o.kind == "Deployment"]
        middle = objects[len(first) : len(objects) - len(last)]
        for obj in first:
            self.cluster.apply(obj)
        for result in [self._pool.submit(self.cluster.apply, obj) for obj in middle]:
            result.result()  # re-raises the apply's ClusterError here
        for obj in last:
            self.cluster.apply(obj)
        return len(objects)

    def finalize(self, space_id: str) -> Outcome:
        """Delete a deleted space's namespace; finalized in the store only once it is gone."""
        name = namespace_name(space_id, self.settings)
        try:
            existing = self.cluster.read_namespace(name)
            if existing is None:
                self.store.mark_finalized(space_id)
                status = SpaceStatus(Phase.DELETED, "deleted")
                return Outcome(space_id, status, done=True)
            labels = existing.metadata.labels if existing.metadata else None
            if not is_owned(labels, space_id, self.settings):
                # Not ours to delete: the space never got its namespace; nothing is left.
                self.store.mark_finalized(space_id)
                return Outcome(space_id, SpaceStatus(Phase.DELETED, "deleted"), done=True)
            if existing.metadata is None or existing.metadata.deletion_timestamp is None:
                self.cluster.delete_namespace(name)
        except ClusterError as error:
            self._record_failure(space_id, error)
            raise
        status = SpaceStatus(Phase.DELETING, "waiting for the namespace to be deleted")
        self.store.write_status(space_id, status)
        return Outcome(space_id, status, done=False)

    def find_orphans(self) -> list[str]:
        """Namespaces of this installation that belong to no space the store knows.

        Namespaces are listed before the store is read, so a space created meanwhile is
        never mistaken for an orphan. Raises ClusterError.
        """
        namespaces = self.cluster.list_namespaces(installation_selector(self.settings))
        known = {spec.space_id for spec in self.store.desired_spaces()}
        known.update(self.store.deleted_spaces())
        orphans = []
        for ns in namespaces:
            meta = ns.metadata
            if meta is None or meta.name is None:
                continue
            space_id = (meta.labels or {}).get(SPACE_ID)
            if space_id not in known and meta.deletion_timestamp is None:
                orphans.append(meta.name)
        return sorted(orphans)

    def remove_orphans(self, *, dry_run: bool = False) -> list[str]:
        """Delete the namespaces `find_orphans` returns (or only list them, with `dry_run`)."""
        orphans = self.find_orphans()
        for name in orphans:
            if dry_run:
                log.info("orphan namespace %s would be deleted (dry run)", name)
            else:
                log.warning("deleting orphan namespace %s", name)
                self.cluster.delete_namespace(name)
        return orphans

    def space_ids(self) -> list[str]:
        """Every space id a full resync must visit: desired and awaiting finalization."""
        ids = [spec.space_id for spec in self.store.desired_spaces()]
        return ids + [i for i in self.store.deleted_spaces() if i not in ids]

    def _desired(self, space_id: str) -> SpaceSpec | None:
        try:
            return self.store.desired_space(space_id)
        except HostKeyUnreadable as error:
            self._record_failure(space_id, error)
            raise

    def _record_failure(self, space_id: str, error: ClusterError) -> None:
        if isinstance(error, ClusterUnavailable):
            # Transient: keep the last status a person saw rather than flapping to "error".
            log.warning("space %s: %s", space_id, error)
            return
        log.error("space %s: %s", space_id, error)
        status = SpaceStatus(
            Phase.ERROR, str(error), problems=(Problem(ProblemKind.CLUSTER, str(error)),)
        )
        self.store.write_status(space_id, status)
