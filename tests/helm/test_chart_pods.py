"""The chart's own pods, from our own images, running on the test node.

The two images are built from this checkout's Dockerfiles (testbed.rootfs; cached, minutes
when cold) before the chart is installed; the test node runs `ghcr.io/devspace/server` and
`ghcr.io/devspace/sshd` from those trees with each image's own config, under the chart's
securityContext (uid 10001, read-only root, no_new_privs), with its Secret, ConfigMap,
emptyDir and PVC volumes, in each pod's network namespace, with the chart's NetworkPolicies
enforced. So this shows what an install on a real cluster would do: the API pod migrates the
SQLite database in its init container and becomes Ready by its own probes, the reconciler
reaches the API server with in-cluster credentials (its ServiceAccount token, through the
`kubernetes` Service) and takes the leader Lease, and the gateway's sshd listens and asks the
API at its Service's name (the chart's default `serverUrl`), through the node's ClusterIP
rules and hosts-file names (testbed.services, standing in for kube-proxy and cluster DNS).
"""

from __future__ import annotations

import contextlib
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from testbed import images as testbed_images
from testbed import rootfs
from testbed.eventually import eventually
from testbed.node import TestNode

from .chart import BASE, CHART, Helm, HelmFailed, merged
from .conftest import Cluster

pytestmark = [pytest.mark.kube, pytest.mark.node]
ROOT = Path(__file__).resolve().parents[2]
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


@pytest.fixture(scope="module")
def images(test_node: TestNode) -> tuple[rootfs.Image, rootfs.Image]:
    """Both images of this checkout, built now unless the cache has them, and loaded into
    the test node, which never builds (an image it does not have fails to "pull")."""
    server = rootfs.build(ROOT / "Dockerfile", "server")
    sshd = rootfs.build(ROOT / "sshd-image/Dockerfile", "sshd")
    test_node.load_image("server", server)
    test_node.load_image("sshd", sshd)
    return server, sshd


class Release:
    """An installed release of the chart and the pods of its components."""

    def __init__(self, core: client.CoreV1Api, node: TestNode, namespace: str, name: str):
        self.core = core
        self.node = node
        self.namespace = namespace
        self.name = name

    def pods(self, component: str) -> list[Any]:
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}"
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [p for p in pods if not p.metadata.deletion_timestamp]

    def ready(self, component: str) -> Any:
        """The component's pod once it is Ready; None before."""
        for pod in self.pods(component):
            conditions = {c.type: c.status for c in pod.status.conditions or []}
            if conditions.get("Ready") == "True":
                return pod
        return None

    def wait_ready(self, component: str, timeout: float = 180) -> Any:
        try:
            return eventually(
                lambda: self.ready(component), what=f"the {component} pod", timeout=timeout
            )
        except BaseException as error:
            raise AssertionError(f"{error}\n{self.diagnosis()}") from error

    def diagnosis(self) -> str:
        """Every pod's container states and the end of each container's log."""
        lines = []
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            name = pod.metadata.name
            statuses = [
                *(pod.status.init_container_statuses or []),
                *(pod.status.container_statuses or []),
            ]
            for status in statuses:
                lines.append(f"{name}/{status.name}: {status.state.to_dict()}")
                with contextlib.suppress(LookupError, OSError):
                    log = self.node.log(self.namespace, name, status.name)
                    lines.append("  " + log[-1500:].replace("\n", "\n  "))
        return "\n".join(lines)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http to a pod
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def _tenant_role_exists(kube: client.ApiClient) -> bool:
    try:
        client.RbacAuthorizationV1Api(kube).read_cluster_role("devspace-tenant")
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


@pytest.fixture
def release(
    images: tuple[rootfs.Image, rootfs.Image],
    helm: Helm,
    cluster: Cluster,
    test_node: TestNode,
    namespace: str,
) -> Iterator[Release]:
    core = client.CoreV1Api(cluster.api)
    core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    name = f"pods-{uuid.uuid4().hex[:6]}"
    values = merged(
        BASE,
        {
            # The chart's own image names: the test node runs the trees built above.
            "gateway": {"replicas": 1, "service": {"type": "ClusterIP"}},
            # Another test of this session may have made the cluster-wide role already.
            "rbac": {"createTenantClusterRole": not _tenant_role_exists(cluster.api)},
        },
    )
    common = cluster.helm_args(namespace)
    helm("install", name, str(CHART), *common, "--values", str(helm.values_file(values)))
    try:
        yield Release(core, test_node, namespace, name)
    finally:
        with contextlib.suppress(HelmFailed):
            helm("uninstall", name, *common)


def test_the_charts_pods_run_from_our_images(release: Release, cluster: Cluster) -> None:
    api = release.wait_ready("api")
    # Its init container migrated the SQLite database on the claim's volume, then ended.
    (migrate,) = api.status.init_container_statuses
    assert migrate.state.terminated.exit_code == 0, release.diagnosis()
    assert api.spec.containers[0].image.startswith("ghcr.io/devspace/server:")
    # Ready by the chart's own probes; the same endpoints answer here, on the pod's address.
    base = f"http://{api.status.pod_ip}:8080"
    assert _get(f"{base}/healthz")[0] == 200
    status, body = _get(f"{base}/readyz")
    assert status == 200, body
    # The server runs as the chart says: uid 10001, on a read-only root, from the image.
    uid = release.node.exec(release.namespace, api.metadata.name, ["id", "-u"], container="api")
    assert uid.stdout.strip() == "10001", uid.stderr
    written = release.node.exec(
        release.namespace, api.metadata.name, ["touch", "/opt/devspace/x"], container="api"
    )
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr

    reconciler = release.wait_ready("reconciler")
    probes = f"http://{reconciler.status.pod_ip}:8081"
    status, body = _get(f"{probes}/readyz")
    assert status == 200, body
    # It reached the API server with its in-cluster ServiceAccount, and leads: the Lease
    # in the release's namespace names it (its host name is the pod's name).
    leases = client.CoordinationV1Api(cluster.api)

    def holder() -> str | None:
        try:
            lease = leases.read_namespaced_lease("devspace-reconciler", release.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return str(lease.spec.holder_identity or "") or None

    leader = eventually(holder, what="the reconciler's Lease", timeout=60)
    assert leader.startswith(f"{reconciler.metadata.name}-"), (leader, release.diagnosis())

    gateway = release.wait_ready("gateway")
    assert gateway.spec.containers[0].image.startswith("ghcr.io/devspace/sshd:")
    uid = release.node.exec(release.namespace, gateway.metadata.name, ["id", "-un"])
    assert uid.stdout.strip() == "devspace", uid.stderr
    # sshd's AuthorizedPrincipalsCommand reaches the API by the Service name in the chart's
    # server-url, with the shared secret: the API answers (403: not a certificate), where a
    # wrong secret would get 401 and an unreachable API a curl error of its own.
    asked = release.node.exec(
        release.namespace,
        gateway.metadata.name,
        ["devspace-gateway-principals", "devspace", "ssh-ed25519-cert-v01@openssh.com", "AAAA"],
    )
    assert asked.returncode == 22, asked.stderr
    assert "returned error: 403" in asked.stderr, asked.stderr
    service = f"{release.name}-devspace-api.{release.namespace}.svc.cluster.local"
    health = release.node.exec(
        release.namespace,
        gateway.metadata.name,
        ["curl", "-sS", "--max-time", "5", f"http://{service}:8080/healthz"],
    )
    assert health.returncode == 0, health.stderr
    # NetworkPolicy still holds beside the Service rules: the gateway may not reach the
    # reconciler (its egress allows the API, DNS and sidecars only).
    blocked = release.node.exec(
        release.namespace,
        gateway.metadata.name,
        ["curl", "-sS", "--max-time", "3", f"{probes}/readyz"],
    )
    assert blocked.returncode == 28, blocked.stderr  # timed out: dropped, not refused


def test_a_pod_runs_the_built_image_with_its_config(
    images: tuple[rootfs.Image, rootfs.Image],
    cluster: Cluster,
    test_node: TestNode,
    namespace: str,
) -> None:
    """Any tag or digest of the server image is the build loaded into the node; without a
    securityContext the process is the image's USER, in its WORKDIR, with its ENV."""
    core = client.CoreV1Api(cluster.api)
    show = "import json, os; print(json.dumps([os.getuid(), os.getcwd(), os.environ['PATH']]))"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "server-image"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "ghcr.io/devspace/server@sha256:" + "0" * 64,
                    "command": ["python3", "-c", show],
                }
            ],
            "restartPolicy": "Never",
        },
    }
    core.create_namespaced_pod(namespace, pod)

    def finished() -> Any:
        found = core.read_namespaced_pod("server-image", namespace)
        return found if found.status.phase in ("Succeeded", "Failed") else None

    done = eventually(finished, what="the pod to finish", timeout=60)
    output = test_node.log(namespace, "server-image")
    assert done.status.phase == "Succeeded", output
    uid, cwd, path = json.loads(output)
    assert (uid, cwd) == (10001, "/var/lib/devspace")
    assert path.startswith("/opt/devspace/bin:")


def test_the_node_runs_the_loaded_build_else_the_checkouts_else_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node never builds (minutes) inside a pod start: without a loaded build or one of
    the checkout as it is, the image cannot be pulled, with a message saying what to do."""
    monkeypatch.setenv("DEVSPACE_TESTBED_CACHE", str(tmp_path / "empty-cache"))
    loaded = tmp_path / "node-images"
    image = testbed_images.built("server", ROOT / "Dockerfile", loaded)
    assert image.rootfs is None
    assert image.unavailable is not None
    assert "load_image" in image.unavailable
    assert "build-images" in image.unavailable
    # A loaded build, whatever the sources say now: its tree and its recorded config.
    build = tmp_path / "server-0123"
    (build / "rootfs/etc").mkdir(parents=True)
    (build / "rootfs/etc/passwd").write_text(
        "devspace:x:10001:10002::/var/lib/devspace:/bin/false\n"
    )
    config = {
        "user": "devspace",
        "workdir": "/w",
        "env": {"A": "1"},
        "entrypoint": [],
        "cmd": ["x"],
    }
    (build / "config.json").write_text(json.dumps(config))
    loaded.mkdir()
    (loaded / "server").symlink_to(build)
    image = testbed_images.built("server", ROOT / "Dockerfile", loaded)
    assert image.unavailable is None
    assert image.rootfs == build / "rootfs"
    assert (image.user, image.group, image.working_dir) == (10001, 10002, "/w")
    assert (image.cmd, dict(image.env)) == (("x",), {"A": "1"})
