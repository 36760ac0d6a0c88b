"""Chaos: the Kubernetes API server goes away for a while and comes back.

On a private control plane (with its own node), so stopping its API server disturbs no other
test. While it is down the devspace API answers from the database and accepts changes, says
that the cluster is unreachable and since when (from the reconciler's heartbeat), and the
reconciler neither dies nor overwrites what it last observed; once it is back the reconciler
applies what changed meanwhile and the API says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from devspace_server.context import state
from devspace_server.kube.spec import WORKLOAD_NAME, ClusterSettings
from devspace_server.models import Role
from devspace_server.reconcile.process import reconcile_forever
from devspace_server.reconcile.settings import ReconcilerConfig
from reconcile.identity import install_reconciler
from reconcile.spaceapp import caller, space_app
from testbed.cluster import ControlPlane
from testbed.eventually import eventually
from testbed.node import TestNode

pytestmark = [pytest.mark.kube, pytest.mark.node]
SYSTEM = "devspace-system"
# Longer than the leader's renew deadline (10 s), so the reconciler also loses and wins back
# its Lease, the longest path back to work; and than the heartbeat's UNREACHABLE_AFTER.
OUTAGE_SECONDS = 14


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of this test's own, with a node of its own."""
    if os.environ.get("DEVSPACE_TEST_KUBECONFIG"):
        pytest.skip("stopping the API server needs the test bed's own control plane")
    if os.geteuid() != 0:
        pytest.skip("the test node needs root (network and mount namespaces)")
    plane = ControlPlane.start(tmp_path / "plane")
    try:
        node = TestNode.start(
            kubeconfig=plane.admin_kubeconfig, directory=tmp_path / "node", name="outage-node"
        )
        try:
            yield plane
        finally:
            node.stop()
    finally:
        plane.stop()


@pytest.fixture
def app(tmp_path: Path, settings: ClusterSettings, ssh_ca: Path) -> Iterator[Flask]:
    with space_app(tmp_path, settings, ssh_ca, SYSTEM) as app:
        yield app


@pytest.fixture
def reconciler(app: Flask, plane: ControlPlane, tmp_path: Path) -> Iterator[threading.Thread]:
    """The reconciler in a thread, as `devspace-server reconcile` runs it, on `plane`."""
    kubeconfig = install_reconciler(plane, SYSTEM, tmp_path / "reconciler.kubeconfig")
    with app.app_context():
        loaded = state().config
    stop = threading.Event()
    thread = threading.Thread(
        target=reconcile_forever,
        args=(ReconcilerConfig.from_server_config(loaded),),
        kwargs={"kubeconfig": str(kubeconfig), "stop": stop},
        daemon=True,
    )
    thread.start()
    yield thread
    stop.set()
    thread.join(30)
    # The plane and everything in it go with the `plane` fixture.


def test_the_api_answers_during_an_apiserver_outage_and_the_reconciler_catches_up(
    app: Flask, plane: ControlPlane, reconciler: threading.Thread
) -> None:
    web = app.test_client()
    alice = caller(app, web, "alice", Role.USER, "spaces")
    space: dict[str, Any] = {
        "image": "devspace.test/shell",
        "command": ["sleep", "infinity"],
        "resources": {"cpu_request": "100m", "memory_request": "64Mi"},
        "storage": "1Gi",
    }

    def phase(name: str, wanted: str) -> dict[str, Any] | None:
        shown: dict[str, Any] = alice("GET", f"/api/v1/spaces/{name}")
        return shown if shown["phase"] == wanted else None

    alice("POST", "/api/v1/spaces", json={"name": "work", **space})
    running = eventually(lambda: phase("work", "running"), what="work to run", timeout=60)
    assert running["waiting"] is None
    health = eventually(
        lambda: (h := alice("GET", "/api/v1/reconciler"))["state"] == "ok" and h,
        what="the reconciler to report a leader in contact",
        timeout=15,
    )
    assert health["message"] == "The reconciler reaches the cluster."
    assert health["replicas"] is None  # names only for admins

    plane.stop_apiserver()
    down = time.monotonic()
    # The API answers from the database, and takes changes for the reconciler to apply.
    listed = alice("GET", "/api/v1/spaces")
    assert [s["name"] for s in listed["items"]] == ["work"]
    alice("PATCH", "/api/v1/spaces/work", json={"stopped": True})
    other = alice("POST", "/api/v1/spaces", json={"name": "other", **space})
    assert other["phase"] == "provisioning"
    last_observed: set[str] = set()
    while time.monotonic() - down < OUTAGE_SECONDS:
        assert reconciler.is_alive()
        # The reconciler keeps what it last saw rather than flapping to "error": the space is
        # shown as last observed (and `observed_at` says when), with the change recorded.
        shown = alice("GET", "/api/v1/spaces/work")
        assert shown["stopped"] is True
        assert (shown["phase"], shown["reason"], shown["pod_ip"], shown["ready"]) == (
            "running",
            "running",
            running["pod_ip"],
            True,
        )
        if time.monotonic() - down > 2:  # a pass in flight when it stopped may still land
            last_observed.add(shown["observed_at"])
        assert alice("GET", "/api/v1/spaces/other")["phase"] == "provisioning"
        time.sleep(0.5)
    assert len(last_observed) == 1, "nothing was observed while the API server was down"
    # The API says why nothing moves: the reconciler's heartbeat has no contact since `down`.
    health = alice("GET", "/api/v1/reconciler")
    assert health["state"] == "cluster-unreachable", health
    since = datetime.fromisoformat(health["contacted_at"])
    assert since <= datetime.now(UTC) - timedelta(seconds=OUTAGE_SECONDS - 4)
    said = f"has not been reachable since {since:%Y-%m-%d %H:%M:%S} UTC"
    assert said in health["message"]
    pending = alice("GET", "/api/v1/spaces/other")
    assert pending["phase"] == "provisioning"
    assert said in pending["reason"]
    assert pending["waiting"] == pending["reason"]
    changed = alice("GET", "/api/v1/spaces/work")
    assert (changed["phase"], changed["reason"]) == ("running", "running")  # last observed
    assert said in changed["waiting"]  # and why `stopped: true` is not applied yet

    plane.start_apiserver()
    back = time.monotonic()
    kube = config.new_client_from_config(str(plane.admin_kubeconfig))
    apps = client.AppsV1Api(kube)
    try:
        # The reconciler's part: it wins its Lease back and applies both changes at once.
        eventually(lambda: phase("work", "stopped"), what="work to stop", timeout=15)
        assert (
            apps.read_namespaced_deployment(WORKLOAD_NAME, running["namespace"]).spec.replicas == 0
        )
        eventually(
            lambda: apps.read_namespaced_deployment(WORKLOAD_NAME, other["namespace"]),
            what="other's objects to be applied",
            timeout=15,
            ignore=(ApiException,),
        )
        applied = time.monotonic() - back
        eventually(
            lambda: alice("GET", "/api/v1/reconciler")["state"] == "ok",
            what="the API to say the cluster is back",
            timeout=15,
        )
        assert alice("GET", "/api/v1/spaces/other")["waiting"] is None
        # The control plane's part: kube-controller-manager's informers back off after an
        # outage before they create other's pod and delete work's: client-go's reflector waits
        # up to 30 s between tries, doubled by its jitter, so up to a minute after the return.
        eventually(lambda: phase("other", "running"), what="other to run", timeout=120)
        eventually(
            lambda: (
                alice("GET", "/api/v1/spaces/work")["reason"] == "stopped; the workspace is kept"
            ),
            what="work's pod to go",
            timeout=30,
        )
        assert not client.CoreV1Api(kube).list_namespaced_pod(running["namespace"]).items
    finally:
        kube.close()
    assert reconciler.is_alive()
    print(  # a record of the timings, shown with -s
        f"down {back - down:.1f} s; applied {applied:.1f} s and running "
        f"{time.monotonic() - back:.1f} s after"
    )
