"""The reconcile loop under leader election: store changes, watches and resync drive it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devspace_server.kube.meta import namespace_name
from devspace_server.kube.spec import WORKLOAD_NAME, SpaceSpec
from devspace_server.reconcile.leader import LEASE_NAME, LeaderElector
from devspace_server.reconcile.loop import ReconcileLoop
from devspace_server.reconcile.run import run
from devspace_server.reconcile.status import Phase
from devspace_server.reconcile.step import Reconciler
from devspace_server.reconcile.store import MemorySpaceStore
from testbed.eventually import eventually

pytestmark = [pytest.mark.kube, pytest.mark.node]


@pytest.fixture
def loop(
    reconciler: Reconciler,
    reconciler_api: client.ApiClient,
    reconciler_namespace: str,
    kube: client.ApiClient,
    store: MemorySpaceStore,
) -> Iterator[ReconcileLoop]:
    # A resync far beyond the test's length: what converges here was driven by the store's
    # enqueue and by watches.
    loop = ReconcileLoop(reconciler, resync_seconds=600, poll_seconds=0.5, orphans=None)
    elector = LeaderElector(
        reconciler_api,
        reconciler_namespace,
        lease_seconds=2,
        renew_deadline=1.5,
        retry_seconds=0.3,
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=run,
        args=(reconciler_api, store, reconciler.settings),
        kwargs={
            "lease_namespace": reconciler_namespace,
            "stop": stop,
            "elector": elector,
            "loop": loop,
        },
    )
    thread.start()
    yield loop
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    client.CoordinationV1Api(kube).delete_namespaced_lease(LEASE_NAME, reconciler_namespace)


def phase(store: MemorySpaceStore, space_id: str) -> Phase | None:
    status = store.statuses.get(space_id)
    return status.phase if status else None


@pytest.mark.usefixtures("test_node")
def test_the_loop_provisions_repairs_from_watches_and_deletes(
    loop: ReconcileLoop,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    spec = make_spec()
    store.put(spec)
    loop.enqueue(spec.space_id)
    eventually(lambda: phase(store, spec.space_id) == Phase.RUNNING, what="running")

    ns = namespace_name(spec.space_id, loop.reconciler.settings)
    apps = client.AppsV1Api(kube)
    old_uid = apps.read_namespaced_deployment(WORKLOAD_NAME, ns).metadata.uid
    apps.delete_namespaced_deployment(WORKLOAD_NAME, ns)

    def recreated() -> bool:
        return bool(apps.read_namespaced_deployment(WORKLOAD_NAME, ns).metadata.uid != old_uid)

    eventually(
        recreated, what="the deleted Deployment to be restored", timeout=15, ignore=(ApiException,)
    )
    eventually(lambda: phase(store, spec.space_id) == Phase.RUNNING, what="running again")

    store.delete(spec.space_id)
    loop.enqueue(spec.space_id)
    eventually(lambda: spec.space_id in store.finalized, what="the space finalized", timeout=60)
    with pytest.raises(ApiException) as gone:
        client.CoreV1Api(kube).read_namespace(ns)
    assert gone.value.status == 404
