"""Everything one space needs, in the order the reconciler applies it."""

from __future__ import annotations

from collections.abc import Callable

from kubernetes import client

from devspace_server.kube.namespace import make_namespace
from devspace_server.kube.network import make_network_policy
from devspace_server.kube.quota import make_limit_range, make_resource_quota
from devspace_server.kube.rbac import make_role_binding
from devspace_server.kube.secrets import (
    make_ca_secret,
    make_host_key_secret,
    make_principals_secret,
)
from devspace_server.kube.spec import ClusterSettings, SpaceSpec
from devspace_server.kube.storage import make_workspace_claim
from devspace_server.kube.workload import make_deployment

KubeObject = (
    client.V1Namespace
    | client.V1ResourceQuota
    | client.V1LimitRange
    | client.V1NetworkPolicy
    | client.V1RoleBinding
    | client.V1Secret
    | client.V1PersistentVolumeClaim
    | client.V1Deployment
)

# Namespace first (everything lives in it); quota, limits and the network policy before any
# pod can exist, so no pod ever runs unconstrained; the Deployment last, when what it mounts
# is there.
BUILDERS: tuple[Callable[[SpaceSpec, ClusterSettings], KubeObject], ...] = (
    make_namespace,
    make_resource_quota,
    make_limit_range,
    make_network_policy,
    make_role_binding,
    make_host_key_secret,
    make_ca_secret,
    make_principals_secret,
    make_workspace_claim,
    make_deployment,
)


def make_space_objects(spec: SpaceSpec, settings: ClusterSettings) -> list[KubeObject]:
    """Every object of space `spec`, in apply order."""
    return [build(spec, settings) for build in BUILDERS]
