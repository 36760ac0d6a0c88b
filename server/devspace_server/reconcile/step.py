"""One reconcile of one space, finalization of deleted spaces, and orphan cleanup.

Every method here is level-triggered and idempotent: it reads the store and the cluster,
does what is missing, and can be killed at any point and run again. A `Reconciler` keeps no
state between calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from devspace_server.kube.meta import SPACE_ID, installation_selector, is_owned, namespace_name
from devspace_server.kube.quota import QUOTA_NAME
from devspace_server.kube.space import make_space_objects
from devspace_server.kube.spec import WORKLOAD_NAME, ClusterSettings, SpaceSpec
from devspace_server.reconcile.cluster import Cluster
from devspace_server.reconcile.errors import ClusterError, ClusterUnavailable, NotOurs
from devspace_server.reconcile.status import Phase, Problem, ProblemKind, SpaceStatus, read_status
from devspace_server.reconcile.store import SpaceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one reconcile of one space found: `done` is False when it should run again soon."""

    space_id: str
    status: SpaceStatus
    done: bool


class Reconciler:
    """Converges the cluster to the store, one space at a time."""

    def __init__(self, cluster: Cluster, store: SpaceStore, settings: ClusterSettings) -> None:
        self.cluster = cluster
        self.store = store
        self.settings = settings

    def reconcile(self, space_id: str) -> Outcome:
        """Make space `space_id` match the store: provision it, or finalize its deletion.

        Raises ClusterError when the cluster refuses or cannot be reached; the status written
        before raising says why.
        """
        spec = self.store.desired_space(space_id)
        if spec is None:
            return self.finalize(space_id)
        return self.provision(spec)

    def provision(self, spec: SpaceSpec) -> Outcome:
        """Apply every object of `spec`, then read back and record its status."""
        name = namespace_name(spec.space_id, self.settings)
        try:
            existing = self.cluster.read_namespace(name)
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
            for obj in make_space_objects(spec, self.settings):
                self.cluster.apply(obj)
            observed = self.cluster.observe(name, WORKLOAD_NAME, QUOTA_NAME)
        except ClusterError as error:
            self._record_failure(spec.space_id, error)
            raise
        status = read_status(observed, stopped=spec.stopped)
        self.store.write_status(spec.space_id, status)
        settled = status.phase in (Phase.RUNNING, Phase.STOPPED, Phase.ERROR)
        return Outcome(spec.space_id, status, done=settled)

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
