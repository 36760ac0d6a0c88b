"""The edge to the Kubernetes API: server-side apply, reads, deletes and Lease access.

Everything the reconciler does to a cluster goes through `Cluster`; it converts every
kubernetes exception into a `ClusterError` (see `errors`), so nothing above this module
handles the client's own types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch

from devspace_server.kube.space import KubeObject
from devspace_server.reconcile.errors import ClusterNotFound, kube_errors

FIELD_MANAGER = "devspace-reconciler"
APPLY = "application/apply-patch+yaml"
# Every call has a deadline, so a hung API server (or a silent network partition) stalls a
# worker for seconds, never forever: (connect, read) in seconds. A read timeout is the longest
# silence between bytes, so it bounds a call that hangs, not one that is merely slow to stream.
REQUEST_TIMEOUT = (5.0, 15.0)
# A watch ends on the server's side after WATCH_SECONDS; the client gives up WATCH_GRACE later,
# in case the server never ends it.
WATCH_SECONDS = 30
WATCH_GRACE = 10.0


@dataclass(frozen=True)
class Observed:
    """What a space's namespace holds right now, for `status.read_status`."""

    namespace: client.V1Namespace | None
    deployment: client.V1Deployment | None
    pods: list[client.V1Pod]
    quota: client.V1ResourceQuota | None


class Cluster:
    """One identity's view of the cluster; `api` carries its credentials."""

    def __init__(
        self,
        api: client.ApiClient,
        field_manager: str = FIELD_MANAGER,
        *,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> None:
        self.api = api
        self.field_manager = field_manager
        self.timeout = timeout
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        # kind -> patch(name, namespace, body, **options); one table so that a new object
        # family is one line here and one builder in kube/.
        self._patch: dict[str, Callable[..., Any]] = {
            "Namespace": lambda name, _ns, body, **kw: self.core.patch_namespace(name, body, **kw),
            "ResourceQuota": self.core.patch_namespaced_resource_quota,
            "LimitRange": self.core.patch_namespaced_limit_range,
            "Secret": self.core.patch_namespaced_secret,
            "PersistentVolumeClaim": self.core.patch_namespaced_persistent_volume_claim,
            "NetworkPolicy": self.networking.patch_namespaced_network_policy,
            "RoleBinding": self.rbac.patch_namespaced_role_binding,
            "Deployment": self.apps.patch_namespaced_deployment,
        }

    def apply(self, obj: KubeObject, *, dry_run: bool = False) -> None:
        """Server-side apply `obj` as our field manager.

        `force` takes back fields that someone else changed; it touches only the fields we
        send, so fields other managers own alone (status, defaults, their own labels) stay.
        Raises ClusterError.
        """
        meta = obj.metadata
        if meta is None or meta.name is None:
            raise ValueError(f"a {obj.kind} without a name cannot be applied")
        body = self.serialize(obj)
        options: dict[str, Any] = {
            "field_manager": self.field_manager,
            "force": True,
            "_content_type": APPLY,
            "_request_timeout": self.timeout,
            # The answer is not read: not building client models for it saves the most CPU
            # of any change to this loop (an apply's answer is the whole object).
            "_preload_content": False,
        }
        if dry_run:
            options["dry_run"] = "All"
        with kube_errors(f"applying {obj.kind} {meta.namespace or ''}/{meta.name}"):
            response = self._patch[str(obj.kind)](meta.name, meta.namespace, body, **options)
            response.read()  # read to its end, so the connection can be reused
            response.release_conn()

    def serialize(self, obj: KubeObject) -> dict[str, Any]:
        """`obj` as the JSON body an apply sends."""
        body: dict[str, Any] = self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return body

    def list_raw(self, kind: str, selector: str, page: int = 500) -> list[dict[str, Any]]:
        """Every `kind` object matching `selector` in all namespaces (kinds: Namespace,
        ResourceQuota, LimitRange, PersistentVolumeClaim, NetworkPolicy, RoleBinding,
        Deployment, Pod), as the API server's JSON, a page at a time. Raises ClusterError."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            options: dict[str, Any] = {
                "label_selector": selector,
                "limit": page,
                "_request_timeout": self.timeout,
                # Parsed as plain JSON: building client models for a thousand objects costs
                # seconds, and the resync compares dictionaries anyway.
                "_preload_content": False,
            }
            if token:
                options["_continue"] = token
            with kube_errors(f"listing {kind}"):
                response = self._list(kind)(**options)
                body = json.loads(response.read())
                response.release_conn()
            found.extend(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return found

    def _list(self, kind: str) -> Callable[..., Any]:
        lists: dict[str, Callable[..., Any]] = {
            "Namespace": self.core.list_namespace,
            "ResourceQuota": self.core.list_resource_quota_for_all_namespaces,
            "LimitRange": self.core.list_limit_range_for_all_namespaces,
            "PersistentVolumeClaim": self.core.list_persistent_volume_claim_for_all_namespaces,
            "NetworkPolicy": self.networking.list_network_policy_for_all_namespaces,
            "RoleBinding": self.rbac.list_role_binding_for_all_namespaces,
            "Deployment": self.apps.list_deployment_for_all_namespaces,
            "Pod": self.core.list_pod_for_all_namespaces,
        }
        return lists[kind]

    def read_namespace(self, name: str) -> client.V1Namespace | None:
        """The namespace, or None when it does not exist. Raises ClusterError."""
        try:
            with kube_errors(f"reading namespace {name}"):
                return self.core.read_namespace(name, _request_timeout=self.timeout)
        except ClusterNotFound:
            return None

    def list_namespaces(self, selector: str) -> list[client.V1Namespace]:
        """Namespaces matching label `selector`. Raises ClusterError."""
        with kube_errors("listing namespaces"):
            found = self.core.list_namespace(label_selector=selector, _request_timeout=self.timeout)
            return list(found.items or [])

    def delete_namespace(self, name: str) -> None:
        """Start deleting a namespace; nothing when it is already gone. Raises ClusterError."""
        try:
            with kube_errors(f"deleting namespace {name}"):
                self.core.delete_namespace(
                    name, propagation_policy="Background", _request_timeout=self.timeout
                )
        except ClusterNotFound:
            return

    def observe(self, namespace: str, deployment: str, quota: str) -> Observed:
        """Read back what a space's namespace holds. Raises ClusterError."""
        ns = self.read_namespace(namespace)
        if ns is None:
            return Observed(None, None, [], None)
        with kube_errors(f"reading pods in {namespace}"):
            pods = list(
                self.core.list_namespaced_pod(namespace, _request_timeout=self.timeout).items or []
            )
        return Observed(
            ns,
            self._read_or_none(
                lambda: self.apps.read_namespaced_deployment(
                    deployment, namespace, _request_timeout=self.timeout
                ),
                f"reading deployment {namespace}/{deployment}",
            ),
            pods,
            self._read_or_none(
                lambda: self.core.read_namespaced_resource_quota(
                    quota, namespace, _request_timeout=self.timeout
                ),
                f"reading quota {namespace}/{quota}",
            ),
        )

    @staticmethod
    def _read_or_none(read: Callable[[], Any], action: str) -> Any:
        try:
            with kube_errors(action):
                return read()
        except ClusterNotFound:
            return None

    def watch_labels(
        self, kind: str, selector: str, timeout_seconds: int = WATCH_SECONDS
    ) -> Iterator[dict[str, str]]:
        """Labels of each `kind` object matching `selector` as it changes, for about
        `timeout_seconds` (then the iterator ends, so the caller can check for a stop).

        `kind` is "namespaces", "deployments" or "pods". Raises ClusterError.
        """
        lists: dict[str, Callable[..., Any]] = {
            "namespaces": self.core.list_namespace,
            "deployments": self.apps.list_deployment_for_all_namespaces,
            "pods": self.core.list_pod_for_all_namespaces,
        }
        stream: Any = watch.Watch().stream(  # type: ignore[no-untyped-call]
            lists[kind],
            label_selector=selector,
            timeout_seconds=timeout_seconds,
            _request_timeout=(self.timeout[0], timeout_seconds + WATCH_GRACE),
        )
        with kube_errors(f"watching {kind}"):
            for event in stream:
                obj = event.get("object")
                meta = getattr(obj, "metadata", None)
                yield dict(getattr(meta, "labels", None) or {})
