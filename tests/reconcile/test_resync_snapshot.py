"""The full resync against a snapshot: nothing applied when nothing changed, and exactly what
differs applied otherwise — drift, a changed desired state, changed Secrets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from kubernetes import client

from devspace_server.kube.meta import installation_selector, namespace_name
from devspace_server.kube.quota import QUOTA_NAME
from devspace_server.kube.secrets import PRINCIPALS_SECRET
from devspace_server.kube.space import KubeObject
from devspace_server.kube.spec import WORKLOAD_NAME, SpaceSpec
from devspace_server.reconcile.snapshot import Snapshot, covers
from devspace_server.reconcile.status import Phase
from devspace_server.reconcile.step import Reconciler
from devspace_server.reconcile.store import MemorySpaceStore
from testbed.eventually import eventually

pytestmark = [pytest.mark.kube]


def test_covers_is_a_subset_for_maps_and_exact_in_length_for_lists() -> None:
    assert covers({"a": 1, "b": {"c": 2, "x": 0}}, {"b": {"c": 2}})
    assert covers({"a": [{"n": 1, "default": True}]}, {"a": [{"n": 1}]})
    assert covers({}, {"labels": {}, "items": []})  # the server leaves empty ones out
    assert not covers({"a": [{"n": 1}, {"n": 2}]}, {"a": [{"n": 1}]})  # someone added one
    assert not covers({"a": {"c": 3}}, {"a": {"c": 2}})
    assert not covers({"b": 1}, {"a": 1})


def applies(reconciler: Reconciler) -> list[str]:
    """Record the kind of every object `reconciler` applies from now on."""
    seen: list[str] = []
    apply = reconciler.cluster.apply

    def recording(obj: KubeObject, *, dry_run: bool = False) -> None:
        seen.append(str(obj.kind))
        apply(obj, dry_run=dry_run)

    reconciler.cluster.apply = recording  # type: ignore[method-assign]
    return seen


def test_a_resync_applies_only_what_differs(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    spec = make_spec(stopped=True)
    store.put(spec)
    reconciler.reconcile(spec.space_id)
    selector = installation_selector(reconciler.settings)
    ns = namespace_name(spec.space_id, reconciler.settings)
    seen = applies(reconciler)

    # Nothing changed: nothing applied, and the status read from the lists.
    outcome = reconciler.reconcile(spec.space_id, Snapshot.take(reconciler.cluster, selector))
    assert seen == []
    assert outcome.status.phase is Phase.STOPPED
    assert outcome.status.quota_hard["requests.cpu"] == "2"

    # Drift: someone edits the quota and deletes the network policy.
    core = client.CoreV1Api(kube)
    core.patch_namespaced_resource_quota(QUOTA_NAME, ns, {"spec": {"hard": {"requests.cpu": "64"}}})
    client.NetworkingV1Api(kube).delete_namespaced_network_policy("space-isolation", ns)
    reconciler.reconcile(spec.space_id, Snapshot.take(reconciler.cluster, selector))
    assert sorted(seen) == ["NetworkPolicy", "ResourceQuota"]
    assert core.read_namespaced_resource_quota(QUOTA_NAME, ns).spec.hard["requests.cpu"] == "2"
    assert client.NetworkingV1Api(kube).read_namespaced_network_policy("space-isolation", ns)

    # A new CA key: the three Secrets (never read back) and the Deployment that records them.
    seen.clear()
    store.put(
        dataclasses.replace(
            spec, ca_public_keys=(*spec.ca_public_keys, spec.ca_public_keys[0] + "-2")
        )
    )
    reconciler.reconcile(spec.space_id, Snapshot.take(reconciler.cluster, selector))
    assert sorted(seen) == ["Deployment", "Secret", "Secret", "Secret"]

    # Started: the Deployment alone.
    seen.clear()
    store.put(dataclasses.replace(store.spaces[spec.space_id], stopped=False))
    reconciler.reconcile(spec.space_id, Snapshot.take(reconciler.cluster, selector))
    assert seen == ["Deployment"]
    replicas = client.AppsV1Api(kube).read_namespaced_deployment(WORKLOAD_NAME, ns).spec.replicas
    assert replicas == 1


def test_a_space_missing_from_the_snapshot_is_provisioned_the_whole_way(
    reconciler: Reconciler, store: MemorySpaceStore, make_spec: Callable[..., SpaceSpec]
) -> None:
    selector = installation_selector(reconciler.settings)
    snapshot = Snapshot.take(reconciler.cluster, selector)  # taken before the space exists
    spec = make_spec(stopped=True)
    store.put(spec)
    seen = applies(reconciler)
    outcome = reconciler.reconcile(spec.space_id, snapshot)
    assert len(seen) == 10
    assert outcome.status.phase is Phase.STOPPED


def test_a_status_refresh_applies_nothing_unless_the_objects_are_gone(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    spec = make_spec(stopped=True)
    store.put(spec)
    reconciler.reconcile(spec.space_id)
    seen = applies(reconciler)
    assert reconciler.refresh(spec.space_id).status.phase is Phase.STOPPED
    assert seen == []
    # The Deployment deleted behind our back: a refresh falls back to the whole reconcile.
    ns = namespace_name(spec.space_id, reconciler.settings)
    client.AppsV1Api(kube).delete_namespaced_deployment(WORKLOAD_NAME, ns)
    reconciler.refresh(spec.space_id)
    assert len(seen) == 10
    assert client.AppsV1Api(kube).read_namespaced_deployment(WORKLOAD_NAME, ns)


@pytest.mark.node
@pytest.mark.usefixtures("test_node")
def test_a_secret_deleted_under_a_running_space_is_restored_once_its_pod_cannot_start(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    spec = make_spec()
    store.put(spec)
    selector = installation_selector(reconciler.settings)
    ns = namespace_name(spec.space_id, reconciler.settings)

    def running() -> bool:
        return reconciler.reconcile(spec.space_id).status.phase is Phase.RUNNING

    eventually(running, what="the space running", timeout=60)
    core = client.CoreV1Api(kube)
    # A running pod keeps what it mounted: nothing shows, and the resync applies nothing.
    core.delete_namespaced_secret(PRINCIPALS_SECRET, ns)
    seen = applies(reconciler)
    reconciler.reconcile(spec.space_id, Snapshot.take(reconciler.cluster, selector))
    assert seen == []

    # Its replacement cannot mount the Secret: the next resync puts the Secrets back.
    for pod in core.list_namespaced_pod(ns).items:
        core.delete_namespaced_pod(pod.metadata.name, ns, grace_period_seconds=0)

    def restored() -> bool:
        reconciler.reconcile(spec.space_id, Snapshot.take(reconciler.cluster, selector))
        return "Secret" in seen

    eventually(restored, what="the Secrets re-applied", timeout=30)
    assert core.read_namespaced_secret(PRINCIPALS_SECRET, ns).data
    eventually(running, what="the space running again", timeout=60)
