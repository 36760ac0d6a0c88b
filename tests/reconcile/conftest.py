"""Fixtures for the reconciler's tests.

- ``reconciler_api`` (session): an ApiClient acting as the reconciler's ServiceAccount exactly
  as the Helm chart makes it (its rendered RBAC and ServiceAccount, `reconcile.identity`), so a
  permission missing from the chart fails the test using it.
  ``reconciler_namespace`` is where that ServiceAccount and its Lease live;
  ``reconciler_kubeconfig`` is the path of a kubeconfig for the same identity.
- ``sidecar`` (session): the sidecar image settings: ``devspace.test/sshd`` once the test
  node can run it, else ``devspace.test/shell`` serving TCP on 2222 (so the readiness probe
  still means something).
- ``settings``: ClusterSettings unique to the test (its own instance label and namespace
  prefix), so tests never see each other's spaces as orphans.
- ``ssh_ca`` (session): an SSH CA key file made by ssh-keygen.
- ``make_spec``: builds a SpaceSpec with a fresh id, a real Ed25519 host key, ``ssh_ca``'s
  public key and principal ``user-1``.
- ``store``, ``reconciler``: a MemorySpaceStore and a Reconciler on ``reconciler_api``;
  every namespace the test's installation made is deleted afterwards.
- ``app``: the devspace app of ``reconcile.spaceapp.space_app`` (a fresh SQLite database,
  ``settings``, ``ssh_ca``, a fresh host key encryption key), for tests that run a reconciler
  on its database; no Lease is left from another test, and every namespace the test's
  installation made is deleted afterwards.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask
from kubernetes import client, config

from devspace_server.kube.meta import installation_selector
from devspace_server.kube.spec import ClusterSettings, Resources, SpaceSpec
from devspace_server.reconcile.cluster import Cluster
from devspace_server.reconcile.step import Reconciler
from devspace_server.reconcile.store import MemorySpaceStore
from reconcile.identity import grant_reconciler, revoke_reconciler, sidecar_settings
from reconcile.spaceapp import forget_lease, space_app
from testbed.cluster import ControlPlane, ExistingCluster


@pytest.fixture(scope="session")
def reconciler_namespace(kube: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(kube)
    name = f"devspace-system-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def reconciler_kubeconfig(
    kube: client.ApiClient,
    control_plane: ControlPlane | ExistingCluster,
    reconciler_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("reconciler") / "kubeconfig"
    yield grant_reconciler(kube, control_plane, reconciler_namespace, path)
    revoke_reconciler(kube, reconciler_namespace)


@pytest.fixture(scope="session")
def reconciler_api(reconciler_kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(str(reconciler_kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def sidecar() -> dict[str, Any]:
    return sidecar_settings()


@pytest.fixture
def settings(sidecar: dict[str, Any]) -> ClusterSettings:
    tag = uuid.uuid4().hex[:6]
    return ClusterSettings(
        instance=f"test-{tag}",
        namespace_prefix=f"ds{tag}-",
        termination_grace_seconds=1,
        storage_class=None,
        **sidecar,
    )


def host_key() -> str:
    """A fresh Ed25519 host private key in OpenSSH format."""
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="session")
def ssh_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SSH CA private key file (its public half is `<path>.pub`), made by ssh-keygen."""
    path = tmp_path_factory.mktemp("ssh-ca") / "ca"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test-ca", "-f", str(path)],
        check=True,
    )
    return path


@pytest.fixture
def make_spec(ssh_ca: Path) -> Callable[..., SpaceSpec]:
    ca_public_key = ssh_ca.with_suffix(".pub").read_text().strip()

    def make(**changes: Any) -> SpaceSpec:
        fields: dict[str, Any] = {
            "space_id": uuid.uuid4().hex[:12],
            "owner_id": f"u{uuid.uuid4().hex[:8]}",
            "name": "work",
            "image": "devspace.test/shell",
            "command": ("sleep", "infinity"),
            "host_private_key": host_key(),
            "ca_public_keys": (ca_public_key,),
            "principals": ("user-1",),
            "resources": Resources(cpu_request="100m", memory_request="64Mi"),
            "storage": "1Gi",
        }
        fields.update(changes)
        return SpaceSpec(**fields)

    return make


@pytest.fixture
def store() -> MemorySpaceStore:
    return MemorySpaceStore()


@pytest.fixture
def reconciler(
    reconciler_api: client.ApiClient,
    kube: client.ApiClient,
    store: MemorySpaceStore,
    settings: ClusterSettings,
) -> Iterator[Reconciler]:
    yield Reconciler(Cluster(reconciler_api), store, settings)
    delete_installation(kube, settings)


@pytest.fixture
def app(
    tmp_path: Path,
    settings: ClusterSettings,
    ssh_ca: Path,
    reconciler_namespace: str,
    kube: client.ApiClient,
) -> Iterator[Flask]:
    forget_lease(kube, reconciler_namespace)
    with space_app(tmp_path, settings, ssh_ca, reconciler_namespace) as app:
        yield app
    delete_installation(kube, settings)


def delete_installation(kube: client.ApiClient, settings: ClusterSettings) -> None:
    """Delete every namespace of the installation `settings` (its spaces', not the Lease's)."""
    core = client.CoreV1Api(kube)
    for ns in core.list_namespace(label_selector=installation_selector(settings)).items:
        core.delete_namespace(ns.metadata.name)
