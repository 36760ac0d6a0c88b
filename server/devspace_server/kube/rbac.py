"""The space's RoleBinding: its owner gets the pre-created tenant ClusterRole, in this namespace.

Binding an existing ClusterRole (rather than writing a Role) is what lets the reconciler work
without `escalate`: it needs only `bind` on that one ClusterRole.
"""

from __future__ import annotations

from kubernetes import client

from devspace_server.kube.meta import object_meta
from devspace_server.kube.spec import ClusterSettings, SpaceSpec

BINDING_NAME = "space-owner"
USER_PREFIX = "devspace:user:"


def tenant_user(owner_id: str) -> str:
    """The Kubernetes user name of a devspace user (the immutable id, never an email)."""
    return f"{USER_PREFIX}{owner_id}"


def make_role_binding(spec: SpaceSpec, settings: ClusterSettings) -> client.V1RoleBinding:
    """A RoleBinding of the tenant ClusterRole to the space's owner, in its namespace only."""
    return client.V1RoleBinding(
        api_version="rbac.authorization.k8s.io/v1",
        kind="RoleBinding",
        metadata=object_meta(BINDING_NAME, spec, settings),
        role_ref=client.V1RoleRef(
            api_group="rbac.authorization.k8s.io",
            kind="ClusterRole",
            name=settings.tenant_cluster_role,
        ),
        subjects=[
            client.RbacV1Subject(
                api_group="rbac.authorization.k8s.io",
                kind="User",
                name=tenant_user(spec.owner_id),
            )
        ],
    )
