"""The space's Namespace: named from the immutable id, labelled for ownership and Pod Security."""

from __future__ import annotations

from kubernetes import client

from devspace_server.kube.meta import namespace_name, object_meta
from devspace_server.kube.spec import ClusterSettings, SpaceSpec

# `restricted` for all three modes: enforce refuses, warn tells whoever applies a Deployment,
# audit records. Pinned to `latest` so that tightening upstream reaches tenants too.
POD_SECURITY_LABELS = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "warn", "audit")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}


def make_namespace(spec: SpaceSpec, settings: ClusterSettings) -> client.V1Namespace:
    """The Namespace of `spec`, with ownership and Pod Security `restricted` labels."""
    meta = object_meta(namespace_name(spec.space_id, settings), spec, settings, namespaced=False)
    meta.labels = {**(meta.labels or {}), **POD_SECURITY_LABELS}
    return client.V1Namespace(api_version="v1", kind="Namespace", metadata=meta)
