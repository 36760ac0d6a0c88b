"""Spaces end to end: the API writes the database, the reconciler (as its ServiceAccount,
started as `devspace-server reconcile` starts it) makes the cluster match, and the API shows
what it observed."""

from __future__ import annotations

import base64
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flask import Flask
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devspace_server.ca import fingerprint
from devspace_server.context import state
from devspace_server.kube.meta import installation_selector
from devspace_server.kube.spec import HOST_KEY_SECRET, ClusterSettings
from devspace_server.models import Role, Space
from devspace_server.reconcile.process import reconcile_forever
from devspace_server.reconcile.settings import ReconcilerConfig
from reconcile.spaceapp import caller, forget_lease, space_app
from testbed.eventually import eventually
from testbed.node import TestNode

pytestmark = [pytest.mark.kube, pytest.mark.node]


@pytest.fixture
def app(
    tmp_path: Path, settings: ClusterSettings, ssh_ca: Path, reconciler_namespace: str
) -> Iterator[Flask]:
    with space_app(tmp_path, settings, ssh_ca, reconciler_namespace) as app:
        yield app


@pytest.fixture
def reconciling(
    app: Flask, reconciler_kubeconfig: Path, kube: client.ApiClient, reconciler_namespace: str
) -> Iterator[None]:
    """The reconciler running in a thread, as `devspace-server reconcile` runs it."""
    forget_lease(kube, reconciler_namespace)
    with app.app_context():
        config = state().config
    stop = threading.Event()
    thread = threading.Thread(
        target=reconcile_forever,
        args=(ReconcilerConfig.from_server_config(config),),
        kwargs={"kubeconfig": str(reconciler_kubeconfig), "stop": stop},
        daemon=True,
    )
    thread.start()
    yield
    stop.set()
    thread.join(30)
    core = client.CoreV1Api(kube)
    selector = installation_selector(config.cluster.settings)
    for ns in core.list_namespace(label_selector=selector).items:
        core.delete_namespace(ns.metadata.name)


def wait_for(call: Any, phase: str, timeout: float = 90) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        shown: dict[str, Any] = call("GET", "/api/v1/spaces/work")
        return shown if shown["phase"] == phase else None

    return eventually(reached, what=f"the space to be {phase}", timeout=timeout)


def ssh_in(call: Any, space: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `echo $USER $PWD` in the space's sidecar the way the CLI gets in."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    issued = call(
        "POST", "/api/v1/ssh/certificates", json={"public_key": key.with_suffix(".pub").read_text()}
    )
    Path(f"{key}-cert.pub").write_text(issued["certificate"] + "\n")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{space['pod_ip']}]:2222 {space['host_key']['public_key']}\n")
    options = {
        "BatchMode": "yes",
        "IdentitiesOnly": "yes",
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": str(known_hosts),
        "ConnectTimeout": "5",
    }
    return subprocess.run(
        [
            "ssh",
            "-F",
            "none",
            *(arg for name, value in options.items() for arg in ("-o", f"{name}={value}")),
            "-i",
            str(key),
            "-p",
            "2222",
            f"dev@{space['pod_ip']}",
            "echo $USER $PWD",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.usefixtures("reconciling")
def test_a_space_made_through_the_api_runs_is_limited_and_deleted(
    app: Flask, kube: client.ApiClient, test_node: TestNode, tmp_path: Path
) -> None:
    web = app.test_client()
    alice = caller(app, web, "alice", Role.USER, "spaces ssh")
    admin = caller(app, web, "root", Role.ADMIN, "spaces admin")
    core = client.CoreV1Api(kube)

    created = alice(
        "POST",
        "/api/v1/spaces",
        json={
            "name": "work",
            "image": "devspace.test/shell",
            "command": ["sleep", "infinity"],
            "resources": {"cpu_request": "100m", "memory_request": "64Mi"},
            "storage": "1Gi",
        },
    )
    running = wait_for(alice, "running")
    namespace = created["namespace"]
    (pod,) = core.list_namespaced_pod(namespace).items
    assert pod.spec.node_name == test_node.name
    assert running["pod_ip"] == pod.status.pod_ip
    assert running["ready"] is True
    assert running["quota"]["hard"]["requests.memory"] == "4Gi"
    assert "requests.memory" in running["quota"]["used"]
    # The fingerprint the API publishes is that of the key the sidecar was given.
    secret = core.read_namespaced_secret(HOST_KEY_SECRET, namespace)
    private = next(iter(secret.data.values()))
    key = load_ssh_private_key(base64.b64decode(private), password=None)
    assert fingerprint(key.public_key()) == running["host_key"]["fingerprint"]  # type: ignore[arg-type]

    # The CLI's path in: a certificate from the server's CA for alice's id, and the host
    # key the API published, pinned. Refused if either were wrong.
    result = ssh_in(alice, running, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "dev /workspace"

    # Lowered below what the pod needs: the running pod stays, a restart is refused.
    admin("PUT", f"/api/v1/admin/users/{alice.user_id}/quota", json={"requests_memory": "50Mi"})
    eventually(
        lambda: alice("GET", "/api/v1/spaces/work")["quota"]["hard"]["requests.memory"] == "50Mi",
        what="the lowered quota to reach the namespace",
    )
    alice("PATCH", "/api/v1/spaces/work", json={"stopped": True})
    wait_for(alice, "stopped")
    eventually(lambda: not core.list_namespaced_pod(namespace).items, what="the pod to go")
    alice("PATCH", "/api/v1/spaces/work", json={"stopped": False})
    refused = wait_for(alice, "error")
    assert "does not fit the space's quota" in refused["reason"]
    assert refused["problems"][0]["kind"] == "quota-exceeded"
    usage = admin("GET", "/api/v1/admin/usage")
    assert [u["username"] for u in usage["users"]] == ["alice"]

    # Raised again: it starts, with nothing recreated.
    admin("PUT", f"/api/v1/admin/users/{alice.user_id}/quota", json={})
    wait_for(alice, "running", timeout=120)

    alice("DELETE", "/api/v1/spaces/work")

    def namespace_gone() -> bool:
        try:
            core.read_namespace(namespace)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(namespace_gone, what="the namespace to be deleted", timeout=120)

    def finalized() -> bool:
        with app.app_context(), state().sessions() as session:
            row = session.get(Space, created["id"])
            return row is not None and row.finalized_at is not None and row.phase == "deleted"

    eventually(finalized, what="the deleted space to be finalized")
    again = alice(
        "POST",
        "/api/v1/spaces",
        json={"name": "work", "image": "devspace.test/shell", "command": ["sleep", "infinity"]},
    )
    assert again["id"] != created["id"]
    assert again["namespace"] != namespace
    eventually(
        lambda: core.read_namespace(again["namespace"]),
        what="the new space's namespace",
        ignore=(ApiException,),
    )
