"""Names and ownership labels shared by every object of a space."""

from __future__ import annotations

from kubernetes import client

from devspace_server.kube.spec import ClusterSettings, SpaceSpec

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "devspace"
INSTANCE = "devspace.dev/instance"
SPACE_ID = "devspace.dev/space-id"
OWNER_ID = "devspace.dev/owner-id"
COMPONENT = "app.kubernetes.io/component"


def namespace_name(space_id: str, settings: ClusterSettings) -> str:
    """The namespace of space `space_id`: derived from the immutable id, so never reused."""
    return f"{settings.namespace_prefix}{space_id}"


def ownership_labels(spec: SpaceSpec, settings: ClusterSettings) -> dict[str, str]:
    """The labels that mark an object as this installation's, for this space and owner."""
    return {
        MANAGED_BY: MANAGER,
        INSTANCE: settings.instance,
        SPACE_ID: spec.space_id,
        OWNER_ID: spec.owner_id,
    }


def is_owned(labels: dict[str, str] | None, space_id: str, settings: ClusterSettings) -> bool:
    """True when `labels` say the object belongs to space `space_id` of this installation."""
    labels = labels or {}
    return (
        labels.get(MANAGED_BY) == MANAGER
        and labels.get(INSTANCE) == settings.instance
        and labels.get(SPACE_ID) == space_id
    )


def installation_selector(settings: ClusterSettings) -> str:
    """A label selector for every object this installation manages."""
    return f"{MANAGED_BY}={MANAGER},{INSTANCE}={settings.instance}"


def object_meta(
    name: str, spec: SpaceSpec, settings: ClusterSettings, *, namespaced: bool = True
) -> client.V1ObjectMeta:
    """Metadata for one of the space's objects: its name, namespace and ownership labels."""
    return client.V1ObjectMeta(
        name=name,
        namespace=namespace_name(spec.space_id, settings) if namespaced else None,
        labels=ownership_labels(spec, settings),
    )
