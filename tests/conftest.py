"""Shared fixtures: the real components that devspace's tests run against.

Session fixtures (started once, on first use):
- ``control_plane``: the Kubernetes control plane (etcd, kube-apiserver,
  kube-controller-manager) from ``testbed.cluster``, or the cluster named by
  ``DEVSPACE_TEST_KUBECONFIG``. Has ``admin_kubeconfig`` and
  ``serviceaccount_kubeconfig(namespace, name, path)``.
- ``kube``: a ``kubernetes.client.ApiClient`` with cluster-admin rights on it.
- ``test_node``: the test bed's node agent (``testbed.node.TestNode``), which binds pods
  and runs them in their own network namespaces. Skipped on an existing cluster.
- ``postgres``: a private PostgreSQL server (``testbed.postgres.PostgresServer``); ``.url``.
- ``browser``: headless Debian Chromium driven by Playwright (``testbed.browser``). Defined
  once, here: Playwright's sync API allows one instance per process, and conftests that
  re-export another folder's fixtures would otherwise start a second.

Function fixtures:
- ``namespace``: a fresh namespace on ``control_plane``, deleted after the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from playwright.sync_api import Browser

from testbed.browser import chromium
from testbed.cluster import ControlPlane, ExistingCluster
from testbed.node import TestNode
from testbed.postgres import PostgresServer


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControlPlane | ExistingCluster]:
    existing = os.environ.get("DEVSPACE_TEST_KUBECONFIG")
    if existing:
        yield ExistingCluster(Path(existing))
        return
    plane = ControlPlane.start(tmp_path_factory.mktemp("control-plane"))
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane | ExistingCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(str(control_plane.admin_kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def test_node(
    control_plane: ControlPlane | ExistingCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestNode]:
    if isinstance(control_plane, ExistingCluster):
        pytest.skip("the test node runs only on the test bed's own control plane")
    if os.geteuid() != 0:
        pytest.skip("the test node needs root (network and mount namespaces)")
    node = TestNode.start(
        kubeconfig=control_plane.admin_kubeconfig, directory=tmp_path_factory.mktemp("node")
    )
    yield node
    node.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(kube)
    name = f"test-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
