"""Fixtures for the chart's tests.

- ``helm`` (session): the helm client built by ``tests/testbed/build-helm`` (from its cache
  when the pins have not changed), with private config, cache and data directories.
- ``cluster`` (session): the test bed's API server as these tests reach it: an admin
  ``ApiClient`` (``kube``) and the kubeconfig helm uses (``control_plane``'s).
- ``keys`` (session): an Ed25519 CA key and an ECDSA host key made by ssh-keygen, for the
  bring-your-own-secrets values.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from testbed.cluster import ControlPlane, ExistingCluster

from .chart import Helm, build_helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(build_helm(), tmp_path_factory.mktemp("helm-home"))


@dataclass(frozen=True)
class Key:
    private: str
    public: str


@dataclass(frozen=True)
class Keys:
    ca: Key
    host: Key


def _keygen(path: Path, kind: str) -> Key:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return Key(path.read_text(), path.with_suffix(".pub").read_text().strip())


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("keys")
    return Keys(_keygen(directory / "ca", "ed25519"), _keygen(directory / "host", "ecdsa"))


@dataclass(frozen=True)
class Cluster:
    api: client.ApiClient
    kubeconfig: Path

    def helm_args(self, namespace: str) -> list[str]:
        """helm's options for a release in `namespace` of this cluster."""
        return ["--namespace", namespace, "--kubeconfig", str(self.kubeconfig)]


@pytest.fixture(scope="session")
def cluster(kube: client.ApiClient, control_plane: ControlPlane | ExistingCluster) -> Cluster:
    return Cluster(kube, control_plane.admin_kubeconfig)


def tenant_role_exists(rbac: client.RbacAuthorizationV1Api) -> bool:
    """Whether the shared `devspace-tenant` ClusterRole is there (another install made it)."""
    try:
        rbac.read_cluster_role("devspace-tenant")
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
