"""Leader election on a real Lease, as the reconciler's ServiceAccount: one leader at a time,
and a killed leader is replaced within seconds."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devspace_server.reconcile.leader import LEASE_NAME, LeaderElector
from testbed.eventually import eventually

pytestmark = [pytest.mark.kube]

LEASE_SECONDS = 2.0

# A reconciler replica reduced to its election: it says when it leads, then holds on until
# killed (SIGKILL: no release, as when a node dies).
CANDIDATE = """
import sys, threading
from kubernetes import config
from devspace_server.reconcile.leader import LeaderElector

api = config.new_client_from_config(sys.argv[1])
elector = LeaderElector(api, sys.argv[2], identity="killed", lease_seconds=2,
                        renew_deadline=1.5, retry_seconds=0.3)
def lead(lost):
    print("LEADING", flush=True)
    lost.wait()
elector.run(lead, threading.Event())
"""


class Leadership:
    """Records when a thread-run elector leads, and lets the test stop it."""

    def __init__(self, api: client.ApiClient, namespace: str, identity: str) -> None:
        self.elector = LeaderElector(
            api,
            namespace,
            identity=identity,
            lease_seconds=LEASE_SECONDS,
            renew_deadline=1.5,
            retry_seconds=0.3,
        )
        self.leading = threading.Event()
        self.became_leader_at: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.elector.run, args=(self._lead, self.stop))

    def _lead(self, lost: threading.Event) -> None:
        self.became_leader_at = time.monotonic()
        self.leading.set()
        lost.wait()
        self.leading.clear()

    def __enter__(self) -> Leadership:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture
def lease(kube: client.ApiClient, reconciler_namespace: str) -> Iterator[None]:
    yield
    leases = client.CoordinationV1Api(kube)
    leases.delete_namespaced_lease(LEASE_NAME, reconciler_namespace)


def test_a_killed_leader_is_replaced_within_seconds(
    reconciler_api: client.ApiClient,
    reconciler_kubeconfig: Path,
    reconciler_namespace: str,
    lease: None,
) -> None:
    candidate = subprocess.Popen(
        [sys.executable, "-c", CANDIDATE, str(reconciler_kubeconfig), reconciler_namespace],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert candidate.stdout is not None
        assert candidate.stdout.readline().strip() == "LEADING"
        with Leadership(reconciler_api, reconciler_namespace, "survivor") as survivor:
            # While the first replica lives, the second only waits.
            assert not survivor.leading.wait(LEASE_SECONDS * 2)
            candidate.kill()
            killed_at = time.monotonic()
            assert survivor.leading.wait(LEASE_SECONDS * 4)
            assert survivor.became_leader_at is not None
            assert survivor.became_leader_at - killed_at < LEASE_SECONDS * 3
        record = client.CoordinationV1Api(reconciler_api).read_namespaced_lease(
            LEASE_NAME, reconciler_namespace
        )
        assert record.spec.lease_transitions >= 1
        assert not record.spec.holder_identity  # released on a clean stop
    finally:
        candidate.kill()
        candidate.wait()
        if candidate.stdout is not None:
            candidate.stdout.close()


def test_of_several_replicas_exactly_one_leads_and_a_clean_stop_hands_over_at_once(
    reconciler_api: client.ApiClient, reconciler_namespace: str, lease: None
) -> None:
    with (
        Leadership(reconciler_api, reconciler_namespace, "one") as one,
        Leadership(reconciler_api, reconciler_namespace, "two") as two,
        Leadership(reconciler_api, reconciler_namespace, "three") as three,
    ):
        replicas = [one, two, three]
        eventually(lambda: any(r.leading.is_set() for r in replicas), what="a leader", timeout=10)
        deadline = time.monotonic() + LEASE_SECONDS * 2
        while time.monotonic() < deadline:
            assert sum(r.leading.is_set() for r in replicas) <= 1
            time.sleep(0.05)
        (leader,) = [r for r in replicas if r.leading.is_set()]
        stopped_at = time.monotonic()
        leader.stop.set()
        leader.thread.join(timeout=10)
        others = [r for r in replicas if r is not leader]
        eventually(lambda: any(r.leading.is_set() for r in others), what="a successor", timeout=10)
        # A released Lease is taken as soon as a candidate next tries, not after it expires.
        assert time.monotonic() - stopped_at < LEASE_SECONDS + 1
