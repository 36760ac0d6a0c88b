"""The space's ResourceQuota (what it may consume) and LimitRange (per-container defaults)."""

from __future__ import annotations

from kubernetes import client

from devspace_server.kube.meta import object_meta
from devspace_server.kube.spec import ClusterSettings, SpaceSpec

QUOTA_NAME = "space-quota"
LIMIT_RANGE_NAME = "space-defaults"


def make_resource_quota(spec: SpaceSpec, settings: ClusterSettings) -> client.V1ResourceQuota:
    """The ResourceQuota holding `spec.quota`; a change is applied in place, never recreated."""
    return client.V1ResourceQuota(
        api_version="v1",
        kind="ResourceQuota",
        metadata=object_meta(QUOTA_NAME, spec, settings),
        spec=client.V1ResourceQuotaSpec(hard=spec.quota.hard()),
    )


def make_limit_range(spec: SpaceSpec, settings: ClusterSettings) -> client.V1LimitRange:
    """Container defaults: a quota on requests/limits refuses pods that state none otherwise."""
    defaults = settings.limit_defaults
    return client.V1LimitRange(
        api_version="v1",
        kind="LimitRange",
        metadata=object_meta(LIMIT_RANGE_NAME, spec, settings),
        spec=client.V1LimitRangeSpec(
            limits=[
                client.V1LimitRangeItem(
                    type="Container",
                    default_request={
                        "cpu": defaults.cpu_request,
                        "memory": defaults.memory_request,
                    },
                    default={"cpu": defaults.cpu_limit, "memory": defaults.memory_limit},
                )
            ]
        ),
    )
