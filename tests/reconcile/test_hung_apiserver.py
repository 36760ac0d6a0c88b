"""A hung API server (stopped with SIGSTOP: connections are accepted, nothing is answered)
must not stall the reconciler: every Kubernetes call it makes gives up within its timeout.

Without timeouts each call below would wait until the API server is continued; each runs in a
thread and the test fails, rather than hangs, if one has not returned by its deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devspace_server.kube.meta import installation_selector
from devspace_server.kube.spec import ClusterSettings
from devspace_server.reconcile.cluster import REQUEST_TIMEOUT, WATCH_GRACE, Cluster
from devspace_server.reconcile.errors import ClusterUnavailable
from devspace_server.reconcile.leader import LeaderElector
from devspace_server.reconcile.process import kube_client
from reconcile.identity import install_reconciler
from testbed.cluster import ControlPlane

pytestmark = [pytest.mark.kube]
SYSTEM = "devspace-system"


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of this test's own: stopping its API server disturbs no other test."""
    if os.environ.get("DEVSPACE_TEST_KUBECONFIG"):
        pytest.skip("stopping the API server needs the test bed's own control plane")
    plane = ControlPlane.start(tmp_path / "plane")
    try:
        yield plane
    finally:
        continue_apiserver(plane)
        plane.stop()


def apiserver_pid(plane: ControlPlane) -> int:
    (apiserver,) = (p for p in plane.processes if p.name == "kube-apiserver")
    return int(apiserver.popen.pid)


def continue_apiserver(plane: ControlPlane) -> None:
    with contextlib.suppress(ValueError, ProcessLookupError):  # not there, or gone
        os.kill(apiserver_pid(plane), signal.SIGCONT)


def returns_within(seconds: float, call: Callable[[], Any]) -> tuple[float, BaseException | None]:
    """Run `call` in a thread; (how long it took, what it raised). Fails the test if it has
    not returned after `seconds`."""
    outcome: list[BaseException | None] = []
    started = time.monotonic()

    def run() -> None:
        try:
            call()
        except BaseException as error:
            outcome.append(error)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting on the hung API server after {seconds} s"
    return time.monotonic() - started, outcome[0]


def test_every_kind_of_call_gives_up_on_a_hung_apiserver(
    plane: ControlPlane, tmp_path: Path
) -> None:
    kubeconfig = install_reconciler(plane, SYSTEM, tmp_path / "reconciler.kubeconfig")
    api = kube_client(str(kubeconfig))  # as the reconciler makes it
    settings = ClusterSettings(instance=f"hung-{uuid.uuid4().hex[:6]}")
    quick = Cluster(api, timeout=(1.0, 2.0))
    default = Cluster(api)
    elector = LeaderElector(api, SYSTEM)  # the defaults: renew deadline 10 s
    namespace = client.V1Namespace(
        api_version="v1", kind="Namespace", metadata=client.V1ObjectMeta(name="hung-test")
    )
    # Every call works while the API server answers (and the pool holds open connections).
    assert default.read_namespace("kube-system") is not None
    assert elector.try_acquire_or_renew()

    os.kill(apiserver_pid(plane), signal.SIGSTOP)
    try:
        calls: dict[str, tuple[float, Callable[[], Any]]] = {
            "read": (2.0, lambda: quick.read_namespace("kube-system")),
            "apply": (2.0, lambda: quick.apply(namespace)),
            "list": (2.0, lambda: quick.list_raw("Deployment", installation_selector(settings))),
            "observe": (2.0, lambda: quick.observe("kube-system", "space", "quota")),
            "watch": (
                1 + WATCH_GRACE,
                lambda: list(quick.watch_labels("pods", "a=b", timeout_seconds=1)),
            ),
            "default read": (REQUEST_TIMEOUT[1], lambda: default.read_namespace("kube-system")),
            "lease renewal": (elector.renew_deadline / 2, elector.try_acquire_or_renew),
        }
        results: dict[str, tuple[float, BaseException | None]] = {}
        threads = [
            threading.Thread(
                target=lambda name=name, bound=bound, call=call: results.__setitem__(
                    name, returns_within(bound + 5, call)
                ),
                daemon=True,
            )
            for name, (bound, call) in calls.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert set(results) == set(calls), "a call's checker itself failed"
        for name, (took, raised) in results.items():
            assert isinstance(raised, ClusterUnavailable), (name, raised)
            assert took < calls[name][0] + 5, (name, took)
    finally:
        continue_apiserver(plane)
    # Continued, the same client works again: a timed-out call leaves nothing broken.
    assert default.read_namespace("kube-system") is not None
    api.close()
