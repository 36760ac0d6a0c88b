"""What the full resync knows about the cluster: each kind listed once, not read per space.

A resync of a thousand spaces that applied every object of every space would cost the API
server ten server-side applies per space (the bulk of a pass; see BENCHMARKS.md). Instead
the resync lists each kind once for the whole installation and applies only what differs:

- an object is current when the listed one holds every field we would apply, with the same
  values (maps may hold more keys — other managers' labels, the server's defaults — lists
  must have the same length, element by element);
- Secrets are never listed (the reconciler may not read them, by design: see
  helm/devspace/files/reconciler-rbac.yaml); they are current when the Deployment, applied
  after them, carries the digest of what they should hold (`kube.secrets.SECRETS_DIGEST`),
  and the space is settled: a pod of it is ready, or it is scaled to zero. A Secret deleted or
  edited by a cluster admin (tenants may not touch them) shows only when a pod cannot start
  with it, so every resync re-applies the Secrets of a space whose pod is not ready.

A space whose desired state changed, or whose objects someone edited or deleted, gets the
applies it needs; the status is read from the same lists. A snapshot can be seconds old by
the time a space is visited: anything that changes after it is listed triggers a watch or a
database change, which queues the space for a full, fresh reconcile.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from devspace_server.kube.secrets import SECRETS_DIGEST
from devspace_server.kube.space import KubeObject
from devspace_server.kube.spec import WORKLOAD_NAME
from devspace_server.reconcile.cluster import Cluster, Observed

# Listed for comparison and status; Secrets are not (see the module docstring).
LISTED = (
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "NetworkPolicy",
    "RoleBinding",
    "PersistentVolumeClaim",
    "Deployment",
    "Pod",
)


def covers(observed: Any, desired: Any) -> bool:
    """True when `observed` holds everything `desired` does (see the module docstring)."""
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            return False
        for key, value in desired.items():
            if key not in observed:
                if value in ({}, []):  # the server leaves empty maps and lists out
                    continue
                return False
            if not covers(observed[key], value):
                return False
        return True
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(covers(o, d) for o, d in zip(observed, desired, strict=True))
        )
    return bool(observed == desired)


@dataclass
class Snapshot:
    """Every listed object of one installation, by kind, namespace and name."""

    api: client.ApiClient
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def take(cls, cluster: Cluster, selector: str) -> Snapshot:
        """List every kind in `LISTED` matching `selector`. Raises ClusterError."""
        snapshot = cls(cluster.api)
        for kind in LISTED:
            for item in cluster.list_raw(kind, selector):
                meta = item.get("metadata") or {}
                if kind == "Pod":
                    snapshot.pods[meta.get("namespace", "")].append(item)
                else:
                    key = (kind, meta.get("namespace") or "", meta.get("name", ""))
                    snapshot.objects[key] = item
        return snapshot

    @property
    def size(self) -> int:
        """How many objects were listed."""
        return len(self.objects) + sum(len(pods) for pods in self.pods.values())

    def namespace(self, name: str) -> client.V1Namespace | None:
        """The listed namespace `name`, as a client model, or None."""
        found: client.V1Namespace | None = self._model(
            self.objects.get(("Namespace", "", name)), "V1Namespace"
        )
        return found

    def is_current(self, obj: KubeObject, body: dict[str, Any], digest: str | None) -> bool:
        """Whether applying `obj` (serialized as `body`) would change nothing we own.

        `digest` is the Secrets' desired digest, for a Secret (None for other kinds).
        """
        meta = obj.metadata
        namespace = (meta.namespace if meta else None) or ""
        name = (meta.name if meta else None) or ""
        if obj.kind == "Secret":
            deployment = self._deployment_in(namespace) or {}
            annotations = deployment.get("metadata", {}).get("annotations") or {}
            recorded = digest is not None and annotations.get(SECRETS_DIGEST) == digest
            return recorded and self._settled(namespace, deployment)
        observed = self.objects.get((str(obj.kind), namespace, name))
        if observed is None:
            return False
        if (observed.get("metadata") or {}).get("deletionTimestamp"):
            return False
        # Items of a list carry no apiVersion and kind: the list's kind says them.
        return covers(observed, {k: v for k, v in body.items() if k not in ("apiVersion", "kind")})

    def observed(self, namespace: str, deployment: str, quota: str) -> Observed:
        """What `Cluster.observe` would read, from the lists."""
        return Observed(
            self.namespace(namespace),
            self._model(self.objects.get(("Deployment", namespace, deployment)), "V1Deployment"),
            [self._model(p, "V1Pod") for p in self.pods.get(namespace, [])],
            self._model(self.objects.get(("ResourceQuota", namespace, quota)), "V1ResourceQuota"),
        )

    def _settled(self, namespace: str, deployment: dict[str, Any]) -> bool:
        """Whether a pod of the space is ready, or the space is scaled to zero."""
        if (deployment.get("spec") or {}).get("replicas") == 0:
            return True
        return any(
            condition.get("type") == "Ready" and condition.get("status") == "True"
            for pod in self.pods.get(namespace, [])
            for condition in (pod.get("status") or {}).get("conditions") or []
        )

    def _deployment_in(self, namespace: str) -> dict[str, Any] | None:
        return self.objects.get(("Deployment", namespace, WORKLOAD_NAME))

    def _model(self, item: dict[str, Any] | None, kind: str) -> Any:
        if item is None:
            return None
        return self.api.deserialize(json.dumps(item), kind, "application/json")
