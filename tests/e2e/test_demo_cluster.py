"""The demo on an existing cluster: `examples/demo.py --kubeconfig … --check` in a process of
its own, against the test bed's control plane and test node as the "existing cluster".

The two images are built from this checkout's Dockerfiles and loaded into the test node (as
`kind load` would), under the chart's own image names. The demo installs the chart with Helm,
exposes the API and the gateway on node ports (the test node's stand-in for kube-proxy serves
them on its address and on 127.0.0.1), reads the bootstrap admin's password from its Secret,
signs the CLI in with the device flow approved over plain HTTP, runs the story, and removes it
all: the space, the release and its namespace. Also: the demo on a terminal (the pod's shell),
the gateway behind a LoadBalancer whose address is learnt after the install, and images the
cluster cannot pull.

Not covered here: a cluster whose node is not this machine (the API then needs --api-url with
https, an Ingress this test bed does not run), pulling images from a registry, a real cloud's
load balancer.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pexpect
import pytest
from helm.chart import build_helm
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from testbed import rootfs
from testbed.cluster import ControlPlane, ExistingCluster
from testbed.node import TestNode

pytestmark = [pytest.mark.kube, pytest.mark.node]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.py"


@pytest.fixture(scope="module")
def images(test_node: TestNode) -> None:
    """The chart's images, as test_chart_pods.py loads them (the node never pulls)."""
    test_node.load_image("server", rootfs.build(ROOT / "Dockerfile", "server"))
    test_node.load_image("sshd", rootfs.build(ROOT / "sshd-image/Dockerfile", "sshd"))


def assert_gone(kube: client.ApiClient, namespace: str) -> None:
    """The demo's namespace no longer exists."""
    with pytest.raises(ApiException) as gone:
        client.CoreV1Api(kube).read_namespace(namespace)
    assert gone.value.status == 404


def run_demo(
    kubeconfig: Path, tmp_path: Path, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """examples/demo.py --kubeconfig --check with `args`, in a process of its own."""
    argv = [sys.executable, str(DEMO), "--kubeconfig", str(kubeconfig), "--check"]
    argv += [*args, "--helm", str(build_helm())]
    env = demo_env(tmp_path)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def demo_env(tmp_path: Path) -> dict[str, str]:
    """This environment with Helm's own folders under `tmp_path`, never the user's, and the
    demo's work folder there too (kept after a failure)."""
    helm_home = tmp_path / "helm"
    return {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "HELM_CONFIG_HOME": str(helm_home / "config"),
        "HELM_CACHE_HOME": str(helm_home / "cache"),
        "HELM_DATA_HOME": str(helm_home / "data"),
    }


@pytest.mark.timeout(900)
def test_the_demo_installs_the_chart_and_runs_the_story(
    images: None,
    control_plane: ControlPlane | ExistingCluster,
    kube: client.ApiClient,
    tmp_path: Path,
) -> None:
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    done = run_demo(
        control_plane.admin_kubeconfig,
        tmp_path,
        "--namespace",
        namespace,
        "--dev-image",
        "devspace.test/shell",  # the test node runs only images it knows
        timeout=840,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    said = done.stderr
    for step in (
        "helm install devspace (API http://127.0.0.1:",
        "devspace runs in " + namespace,
        "the CLI is signed in as demo",
        "the app answers on 127.0.0.1:",
        "a local edit is served by the pod",
        "a file made in the pod arrived here",
        "all good",
        "devspace spaces delete webapp",
        "helm uninstall devspace",
    ):
        assert f"demo: {step}" in said, said[-6000:]
    # How to remove it by hand was said before anything was made.
    assert said.index("helm uninstall devspace --namespace") < said.index("demo: helm install")
    # Nothing is left: the release's namespace, nor the space's.
    core = client.CoreV1Api(kube)
    assert_gone(kube, namespace)
    spaces = core.list_namespace(
        label_selector="app.kubernetes.io/managed-by=devspace,devspace.dev/instance=devspace"
    )
    assert spaces.items == []


@pytest.mark.timeout(900)
def test_without_check_a_person_gets_the_pods_shell(
    images: None,
    control_plane: ControlPlane | ExistingCluster,
    kube: client.ApiClient,
    tmp_path: Path,
) -> None:
    """The demo as a person runs it: a shell in the dev pod on a terminal (through the
    gateway and the sidecar's sshd, from the built image); leaving it tears everything down."""
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    argv = [str(DEMO), "--kubeconfig", str(control_plane.admin_kubeconfig)]
    argv += ["--namespace", namespace, "--dev-image", "devspace.test/shell"]
    argv += ["--helm", str(build_helm())]
    child = pexpect.spawn(
        sys.executable, argv, env=demo_env(tmp_path), encoding="utf-8", timeout=300
    )
    try:
        child.expect(r"\$ $")  # the pod's shell prompt
        # The first sync runs beside the shell: the files come within moments.
        wait = "until [ -f /workspace/index.html ]; do sleep 0.2; done"
        child.sendline(f"{wait}; cat /workspace/index.html; echo done-$((1 + 2))")
        child.expect("done-3")
        assert "Hello from a dev pod" in (child.before or "")
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=300)
    finally:
        child.close(force=True)
    said = child.before or ""
    assert child.exitstatus == 0, said[-4000:]
    assert "demo: devspace up exited 0" in said
    assert "demo: helm uninstall devspace" in said
    assert_gone(kube, namespace)


@pytest.mark.timeout(900)
def test_the_gateway_behind_a_load_balancer_is_found_and_published(
    images: None,
    control_plane: ControlPlane | ExistingCluster,
    kube: client.ApiClient,
    tmp_path: Path,
) -> None:
    """With `--gateway-service LoadBalancer` the address is learnt after the install, from the
    Service's status (set here as a cloud's controller would; the test node serves it), and
    published with a helm upgrade; the CLI's SSH goes through it."""
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    address = f"198.51.100.{random.randrange(1, 255)}"  # noqa: S311 - not a secret
    core = client.CoreV1Api(kube)
    stop = threading.Event()

    def cloud_controller() -> None:
        selector = "app.kubernetes.io/component=gateway"
        while not stop.wait(0.5):
            with contextlib.suppress(ApiException):
                for found in core.list_namespaced_service(namespace, label_selector=selector).items:
                    if found.spec.type == "LoadBalancer" and not found.status.load_balancer.ingress:
                        status = {"loadBalancer": {"ingress": [{"ip": address}]}}
                        core.patch_namespaced_service_status(
                            found.metadata.name, namespace, {"status": status}
                        )

    controller = threading.Thread(target=cloud_controller, daemon=True)
    controller.start()
    try:
        done = run_demo(
            control_plane.admin_kubeconfig,
            tmp_path,
            "--namespace",
            namespace,
            "--dev-image",
            "devspace.test/shell",
            "--gateway-service",
            "LoadBalancer",
            timeout=840,
        )
    finally:
        stop.set()
        controller.join()
    assert done.returncode == 0, done.stderr[-6000:]
    said = done.stderr
    assert f"demo: the gateway is at {address}:22: helm upgrade to publish it" in said
    assert f"SSH gateway {address}:22" in said
    for step in ("a local edit is served by the pod", "a file made in the pod arrived here"):
        assert f"demo: {step}" in said
    assert_gone(kube, namespace)


@pytest.mark.timeout(600)
def test_images_the_cluster_cannot_pull_are_named_and_nothing_is_left(
    images: None,
    control_plane: ControlPlane | ExistingCluster,
    kube: client.ApiClient,
    tmp_path: Path,
) -> None:
    """The chart's default images are not published: a cluster that cannot pull them gets
    a message saying so and what to do, and the demo still removes what it made."""
    namespace = f"demo-{uuid.uuid4().hex[:8]}"
    done = run_demo(
        control_plane.admin_kubeconfig,
        tmp_path,
        "--namespace",
        namespace,
        "--image-repository",
        "registry.example.com/nobody",
        "--timeout",
        "20",
        timeout=540,
    )
    assert done.returncode == 1, done.stderr[-6000:]
    said = done.stderr
    assert "demo: failed: the release's Deployments being Ready did not happen" in said
    assert "ErrImagePull" in said or "ImagePullBackOff" in said, said[-6000:]
    assert "give --image-repository <repository>" in said
    assert "Traceback" not in said
    assert "demo: helm uninstall devspace" in said
    assert_gone(kube, namespace)
