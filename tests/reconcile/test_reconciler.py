"""The reconciler against the real control plane and test node, as its own ServiceAccount."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_ssh_private_key,
)
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devspace_server.kube.meta import SPACE_ID, installation_selector, namespace_name
from devspace_server.kube.quota import QUOTA_NAME
from devspace_server.kube.space import BUILDERS, make_space_objects
from devspace_server.kube.spec import ClusterSettings, Quota, Resources, SpaceSpec
from devspace_server.reconcile.cluster import Cluster
from devspace_server.reconcile.errors import ClusterUnavailable, NotOurs
from devspace_server.reconcile.status import Phase, ProblemKind, SpaceStatus
from devspace_server.reconcile.step import Reconciler
from devspace_server.reconcile.store import MemorySpaceStore
from testbed.eventually import eventually
from testbed.node import TestNode

pytestmark = [pytest.mark.kube]

# What each object family is listed by, to count the objects of a namespace.
LISTS: dict[str, Callable[[client.ApiClient, str], list[Any]]] = {
    "ResourceQuota": lambda k, ns: client.CoreV1Api(k).list_namespaced_resource_quota(ns).items,
    "LimitRange": lambda k, ns: client.CoreV1Api(k).list_namespaced_limit_range(ns).items,
    "NetworkPolicy": lambda k, ns: (
        client.NetworkingV1Api(k).list_namespaced_network_policy(ns).items
    ),
    "RoleBinding": lambda k, ns: (
        client.RbacAuthorizationV1Api(k).list_namespaced_role_binding(ns).items
    ),
    "Secret": lambda k, ns: client.CoreV1Api(k).list_namespaced_secret(ns).items,
    "PersistentVolumeClaim": lambda k, ns: (
        client.CoreV1Api(k).list_namespaced_persistent_volume_claim(ns).items
    ),
    "Deployment": lambda k, ns: client.AppsV1Api(k).list_namespaced_deployment(ns).items,
}


def settle(reconciler: Reconciler, space_id: str, phase: Phase, timeout: float = 60) -> Any:
    """Reconcile `space_id` until its status reaches `phase`; returns that status."""

    def reached() -> Any:
        outcome = reconciler.reconcile(space_id)
        return outcome.status if outcome.status.phase == phase else None

    return eventually(reached, what=f"space {space_id} to be {phase}", timeout=timeout)


def inventory(kube: client.ApiClient, namespace: str) -> dict[str, list[str]]:
    """Names of the objects of each family in `namespace`."""
    return {
        kind: sorted(o.metadata.name for o in lister(kube, namespace))
        for kind, lister in LISTS.items()
    }


def expected_inventory(spec: SpaceSpec, settings: ClusterSettings) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {kind: [] for kind in LISTS}
    for obj in make_space_objects(spec, settings)[1:]:
        names[str(obj.kind)].append(obj.metadata.name)
    return {kind: sorted(values) for kind, values in names.items()}


@pytest.mark.node
def test_a_space_gets_every_object_and_its_pod_runs_on_the_node(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
    test_node: TestNode,
) -> None:
    spec = make_spec()
    store.put(spec)
    status = settle(reconciler, spec.space_id, Phase.RUNNING)
    ns = namespace_name(spec.space_id, reconciler.settings)
    assert inventory(kube, ns) == expected_inventory(spec, reconciler.settings)
    labels = client.CoreV1Api(kube).read_namespace(ns).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels[SPACE_ID] == spec.space_id
    (pod,) = client.CoreV1Api(kube).list_namespaced_pod(ns).items
    assert pod.spec.node_name == test_node.name
    assert status.pod_ip == pod.status.pod_ip
    assert status.ready
    assert status.quota_hard["requests.cpu"] == "2"
    assert "requests.memory" in status.quota_used
    assert store.statuses[spec.space_id] == status

    store.put(make_spec(space_id=spec.space_id, owner_id=spec.owner_id, stopped=True))
    settle(reconciler, spec.space_id, Phase.STOPPED)
    eventually(
        lambda: not client.CoreV1Api(kube).list_namespaced_pod(ns).items,
        what="the stopped space's pod to go",
    )
    assert inventory(kube, ns)["PersistentVolumeClaim"] == ["workspace"]


@pytest.mark.node
@pytest.mark.usefixtures("test_node")
def test_a_pod_over_quota_is_refused_and_raising_the_quota_lets_it_start(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    small = Quota(requests_memory="100Mi", limits_memory="1Gi")
    spec = make_spec(resources=Resources(memory_request="200Mi", memory_limit="300Mi"), quota=small)
    store.put(spec)
    status = settle(reconciler, spec.space_id, Phase.ERROR)
    assert status.problems[0].kind == ProblemKind.QUOTA_EXCEEDED
    assert "quota" in status.reason
    assert "requests.memory" in status.reason

    ns = namespace_name(spec.space_id, reconciler.settings)
    core = client.CoreV1Api(kube)
    uid = core.read_namespaced_resource_quota(QUOTA_NAME, ns).metadata.uid
    store.put(make_spec(**{**spec.__dict__, "quota": Quota(requests_memory="1Gi")}))
    status = settle(reconciler, spec.space_id, Phase.RUNNING, timeout=90)
    assert status.quota_hard["requests.memory"] == "1Gi"
    # Changed in place: nothing recreated.
    assert core.read_namespaced_resource_quota(QUOTA_NAME, ns).metadata.uid == uid


def test_drift_is_repaired(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    spec = make_spec()
    store.put(spec)
    reconciler.reconcile(spec.space_id)
    ns = namespace_name(spec.space_id, reconciler.settings)
    core = client.CoreV1Api(kube)
    # Someone edits the quota, deletes the network policy, and strips Pod Security.
    core.patch_namespaced_resource_quota(QUOTA_NAME, ns, {"spec": {"hard": {"requests.cpu": "64"}}})
    client.NetworkingV1Api(kube).delete_namespaced_network_policy("space-isolation", ns)
    core.patch_namespace(
        ns,
        {
            "metadata": {
                "labels": {"pod-security.kubernetes.io/enforce": "privileged", "team": "infra"}
            }
        },
    )

    reconciler.reconcile(spec.space_id)
    assert core.read_namespaced_resource_quota(QUOTA_NAME, ns).spec.hard["requests.cpu"] == "2"
    assert client.NetworkingV1Api(kube).read_namespaced_network_policy("space-isolation", ns)
    labels = core.read_namespace(ns).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # Forcing takes back only the fields we apply; another manager's own label stays.
    assert labels["team"] == "infra"


def test_a_namespace_deleted_behind_our_back_is_recreated(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    spec = make_spec()
    store.put(spec)
    reconciler.reconcile(spec.space_id)
    ns = namespace_name(spec.space_id, reconciler.settings)
    client.CoreV1Api(kube).delete_namespace(ns)

    def recreated() -> bool:
        reconciler.reconcile(spec.space_id)
        namespace = client.CoreV1Api(kube).read_namespace(ns)
        return namespace.metadata.deletion_timestamp is None

    eventually(recreated, what="the namespace to be recreated", ignore=(ApiException,))
    assert inventory(kube, ns) == expected_inventory(spec, reconciler.settings)


def test_deleting_a_space_waits_for_its_namespace(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    spec = make_spec()
    store.put(spec)
    reconciler.reconcile(spec.space_id)
    store.delete(spec.space_id)
    outcome = reconciler.reconcile(spec.space_id)
    assert outcome.status.phase == Phase.DELETING
    assert spec.space_id in store.deleted_spaces()
    settle(reconciler, spec.space_id, Phase.DELETED)
    assert spec.space_id in store.finalized
    ns = namespace_name(spec.space_id, reconciler.settings)
    with pytest.raises(ApiException) as gone:
        client.CoreV1Api(kube).read_namespace(ns)
    assert gone.value.status == 404
    with pytest.raises(ValueError, match="never reused"):
        store.put(spec)


def test_a_foreign_namespace_with_our_name_is_not_adopted(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    spec = make_spec()
    ns = namespace_name(spec.space_id, reconciler.settings)
    client.CoreV1Api(kube).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=ns))
    )
    try:
        store.put(spec)
        with pytest.raises(NotOurs, match="refusing to adopt"):
            reconciler.reconcile(spec.space_id)
        assert store.statuses[spec.space_id].phase == Phase.ERROR
        assert client.CoreV1Api(kube).read_namespace(ns).metadata.labels.get(SPACE_ID) is None
    finally:
        client.CoreV1Api(kube).delete_namespace(ns)


def test_orphans_are_found_listed_in_dry_run_and_removed(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    kept, lost = make_spec(), make_spec()
    store.put(kept)
    store.put(lost)
    reconciler.reconcile(kept.space_id)
    reconciler.reconcile(lost.space_id)
    # The database loses the space without a deletion (a restore from backup, say).
    store.spaces.pop(lost.space_id)
    orphan = namespace_name(lost.space_id, reconciler.settings)
    core = client.CoreV1Api(kube)

    assert reconciler.remove_orphans(dry_run=True) == [orphan]
    assert core.read_namespace(orphan).metadata.deletion_timestamp is None
    assert reconciler.remove_orphans() == [orphan]
    assert core.read_namespace(orphan).metadata.deletion_timestamp is not None
    assert reconciler.find_orphans() == []  # terminating ones are already on their way
    kept_ns = core.read_namespace(namespace_name(kept.space_id, reconciler.settings))
    assert kept_ns.metadata.deletion_timestamp is None


class CrashingCluster(Cluster):
    """A Cluster whose process "dies" (raises) after a given number of applies."""

    def __init__(self, api: client.ApiClient, applies_left: int) -> None:
        super().__init__(api)
        self.applies_left = applies_left

    def apply(self, obj: Any, *, dry_run: bool = False) -> None:
        if self.applies_left == 0:
            raise KeyboardInterrupt("killed mid-provisioning")
        self.applies_left -= 1
        super().apply(obj, dry_run=dry_run)


def test_killed_at_every_point_of_provisioning_it_converges_without_duplicates(
    reconciler: Reconciler,
    reconciler_api: client.ApiClient,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> None:
    settings = reconciler.settings
    specs = [make_spec() for _ in BUILDERS]
    for killed_after, spec in enumerate(specs):
        store.put(spec)
        crashing = Reconciler(CrashingCluster(reconciler_api, killed_after), store, settings)
        with pytest.raises(KeyboardInterrupt):
            crashing.reconcile(spec.space_id)
        # A fresh process picks up where the dead one stopped, with nothing but the store.
        Reconciler(Cluster(reconciler_api), store, settings).reconcile(spec.space_id)
        ns = namespace_name(spec.space_id, settings)
        assert inventory(kube, ns) == expected_inventory(spec, settings), killed_after
    namespaces = client.CoreV1Api(kube).list_namespace(
        label_selector=installation_selector(settings)
    )
    assert sorted(n.metadata.name for n in namespaces.items) == sorted(
        namespace_name(s.space_id, settings) for s in specs
    )
    assert reconciler.find_orphans() == []


def test_killed_during_deletion_it_still_finalizes(
    reconciler: Reconciler,
    reconciler_api: client.ApiClient,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = make_spec()
    store.put(spec)
    reconciler.reconcile(spec.space_id)
    store.delete(spec.space_id)
    dying = Cluster(reconciler_api)

    def killed(name: str) -> None:
        raise ClusterUnavailable(f"connection lost while deleting {name}")

    monkeypatch.setattr(dying, "delete_namespace", killed)
    with pytest.raises(ClusterUnavailable):
        Reconciler(dying, store, reconciler.settings).reconcile(spec.space_id)
    assert spec.space_id in store.deleted_spaces()
    settle(reconciler, spec.space_id, Phase.DELETED)
    assert reconciler.find_orphans() == []


def ssh(ip: str, key: Path, known_hosts: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Plain OpenSSH to a sidecar, pinning its host key, with `key` and its certificate."""
    return subprocess.run(
        [
            "ssh", "-p", "2222", "-i", str(key),
            "-o", f"CertificateFile={key}-cert.pub",
            "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=5",
            f"dev@{ip}", *command,
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def user_key(directory: Path, ca: Path, principal: str) -> Path:
    """A user key in `directory` with a certificate for `principal` signed by `ca`."""
    key = directory / principal
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "test", "-n", principal, "-V", "-1m:+10m",
         f"{key}.pub"],
        check=True,
    )  # fmt: skip
    return key


@pytest.fixture
def running_space(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
    test_node: TestNode,
) -> tuple[SpaceSpec, SpaceStatus, str, str]:
    """A space whose pod runs: (spec, status, namespace, pod name)."""
    spec = make_spec()
    store.put(spec)
    status = settle(reconciler, spec.space_id, Phase.RUNNING)
    ns = namespace_name(spec.space_id, reconciler.settings)
    (pod,) = client.CoreV1Api(kube).list_namespaced_pod(ns).items
    return spec, status, ns, pod.metadata.name


@pytest.mark.node
def test_the_pod_shares_workspace_and_processes_and_its_sidecar_admits_the_owner(
    running_space: tuple[SpaceSpec, SpaceStatus, str, str],
    test_node: TestNode,
    sidecar: dict[str, Any],
    ssh_ca: Path,
    tmp_path: Path,
) -> None:
    spec, status, ns, name = running_space
    wrote = test_node.exec(ns, name, ["sh", "-c", "echo hi > /workspace/from-dev"], "dev")
    assert wrote.returncode == 0, wrote.stderr
    assert test_node.exec(ns, name, ["cat", "/workspace/from-dev"], "sshd").stdout == "hi\n"
    processes = test_node.exec(
        ns, name, ["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"], "sshd"
    )
    assert "sleep infinity" in processes.stdout  # the dev container's, seen from the sidecar

    if sidecar["sidecar_image"] != "devspace.test/sshd":
        pytest.skip("the sidecar is a stand-in; the SSH part needs devspace.test/sshd")
    host = load_ssh_private_key(spec.host_private_key.encode(), None).public_key()
    host_line = host.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{status.pod_ip}]:2222 {host_line}\n")
    owner = user_key(tmp_path, ssh_ca, "user-1")
    result = ssh(status.pod_ip, owner, known_hosts, "cat", "/workspace/from-dev")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    stranger = user_key(tmp_path, ssh_ca, "user-2")
    refused = ssh(status.pod_ip, stranger, known_hosts, "true")
    assert refused.returncode == 255
    assert "Permission denied" in refused.stderr
