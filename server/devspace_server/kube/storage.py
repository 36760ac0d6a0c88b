"""The space's PersistentVolumeClaim: /workspace, kept while the space is stopped."""

from __future__ import annotations

from kubernetes import client

from devspace_server.kube.meta import object_meta
from devspace_server.kube.spec import WORKSPACE_CLAIM, ClusterSettings, SpaceSpec


def make_workspace_claim(
    spec: SpaceSpec, settings: ClusterSettings
) -> client.V1PersistentVolumeClaim:
    """A ReadWriteOnce claim of `spec.storage`; it lives and dies with the namespace."""
    return client.V1PersistentVolumeClaim(
        api_version="v1",
        kind="PersistentVolumeClaim",
        metadata=object_meta(WORKSPACE_CLAIM, spec, settings),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            storage_class_name=settings.storage_class,
            resources=client.V1VolumeResourceRequirements(requests={"storage": spec.storage}),
        ),
    )
