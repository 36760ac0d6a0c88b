"""Tenant network isolation, with the reconciler's own NetworkPolicy enforced by the test node.

Two spaces are provisioned by the real reconciler (as its ServiceAccount); their dev
containers serve on 8080 beside the sidecar's 2222. Every "blocked" is a connect that times out
(DROPPED) from a pod while the host (the node, which policies always let in) reaches the same
port: so the port is up, or answers "refused", and it is the policy that drops.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devspace_server.kube.meta import namespace_name
from devspace_server.kube.network import POLICY_NAME
from devspace_server.kube.spec import SIDECAR_PORT, ClusterSettings, Port, SpaceSpec
from devspace_server.kube.workload import DEV_CONTAINER
from devspace_server.reconcile.status import Phase
from devspace_server.reconcile.step import Reconciler
from devspace_server.reconcile.store import MemorySpaceStore
from testbed.eventually import eventually
from testbed.netprobe import DROPPED, OPEN, REFUSED, fake_metadata_server, from_netns, from_pod
from testbed.node import TestNode

pytestmark = [pytest.mark.kube, pytest.mark.node]

DEV_PORT = 8080
CLOSED_PORT = 9  # nothing listens there: the host is refused, a blocked pod times out
GATEWAY_LABELS = {"app.kubernetes.io/component": "gateway"}


@pytest.fixture
def settings(settings: ClusterSettings, namespace: str) -> ClusterSettings:
    """The test's installation, with its gateway in the test's own `namespace`."""
    return dataclasses.replace(
        settings, gateway_namespace_labels=(("kubernetes.io/metadata.name", namespace),)
    )


@dataclasses.dataclass
class Tenant:
    namespace: str
    pod: str
    ip: str
    uid: str


@pytest.fixture
def provision(
    reconciler: Reconciler,
    store: MemorySpaceStore,
    make_spec: Callable[..., SpaceSpec],
    kube: client.ApiClient,
) -> Callable[[], Tenant]:
    """Provisions a running space whose dev container serves HTTP on DEV_PORT."""
    core = client.CoreV1Api(kube)

    def make() -> Tenant:
        spec = make_spec(
            command=("/usr/bin/python3", "-m", "http.server", str(DEV_PORT)),
            ports=(Port("web", DEV_PORT),),
        )
        store.put(spec)

        def running() -> bool:
            return reconciler.reconcile(spec.space_id).status.phase == Phase.RUNNING

        eventually(running, what=f"space {spec.space_id} to run", timeout=90)
        ns = namespace_name(spec.space_id, reconciler.settings)
        (pod,) = core.list_namespaced_pod(ns).items
        return Tenant(ns, pod.metadata.name, pod.status.pod_ip, pod.metadata.uid)

    return make


def run_pod(core: client.CoreV1Api, namespace: str, name: str, labels: dict[str, str]) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": "devspace.test/shell",
                        "command": ["sleep", "infinity"],
                    }
                ],
            },
        },
    )
    eventually(
        lambda: core.read_namespaced_pod(name, namespace).status.phase == "Running",
        what=f"pod {name}",
    )


def test_tenants_are_isolated_and_only_the_gateway_reaches_the_sidecar(
    provision: Callable[[], Tenant],
    kube: client.ApiClient,
    namespace: str,
    elsewhere: str,
    test_node: TestNode,
) -> None:
    core = client.CoreV1Api(kube)
    a = provision()
    b = provision()
    # The reconciler's own policy is what is enforced: nothing else selects these pods.
    for tenant in (a, b):
        policies = client.NetworkingV1Api(kube).list_namespaced_network_policy(tenant.namespace)
        assert [p.metadata.name for p in policies.items] == [POLICY_NAME]

    run_pod(core, namespace, "gateway", GATEWAY_LABELS)
    run_pod(core, namespace, "bystander", {"app": "bystander"})
    run_pod(core, elsewhere, "impostor", GATEWAY_LABELS)

    ports = (SIDECAR_PORT, DEV_PORT, CLOSED_PORT)
    targets = [f"{b.ip}:{port}" for port in ports]
    sidecar, dev, closed = targets
    # Up (and the closed port really closed), as the node sees them.
    eventually(
        lambda: from_netns(None, targets) == {sidecar: OPEN, dev: OPEN, closed: REFUSED},
        what="tenant B's servers",
    )

    def seen(ns: str, pod: str, container: str | None = None) -> dict[str, str]:
        return from_pod(test_node, ns, pod, targets, container=container)

    all_dropped = dict.fromkeys(targets, DROPPED)
    # Tenant A's dev container, on B's sidecar port and on any other.
    eventually(lambda: seen(a.namespace, a.pod, DEV_CONTAINER) == all_dropped, what="A → B")
    # The gateway reaches the sidecar and nothing else.
    eventually(
        lambda: seen(namespace, "gateway") == {sidecar: OPEN, dev: DROPPED, closed: DROPPED},
        what="the gateway → B",
    )
    # Neither the gateway's neighbour nor a pod wearing the gateway's labels elsewhere.
    assert seen(namespace, "bystander") == all_dropped
    assert seen(elsewhere, "impostor") == all_dropped
    # And the other way round: B's dev container does not reach A either.
    assert from_pod(
        test_node,
        b.namespace,
        b.pod,
        [f"{a.ip}:{SIDECAR_PORT}", f"{a.ip}:{DEV_PORT}"],
        container=DEV_CONTAINER,
    ) == {f"{a.ip}:{SIDECAR_PORT}": DROPPED, f"{a.ip}:{DEV_PORT}": DROPPED}


@pytest.fixture
def elsewhere(kube: client.ApiClient) -> Iterator[str]:
    """A namespace that is neither a tenant's nor the gateway's, deleted afterwards."""
    core = client.CoreV1Api(kube)
    name = f"impostor-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    eventually(
        lambda: core.read_namespaced_service_account("default", name),
        what="the default ServiceAccount",
        ignore=(ApiException,),
    )
    yield name
    core.delete_namespace(name)


def test_a_tenant_cannot_reach_the_blocked_metadata_address(
    provision: Callable[[], Tenant], settings: ClusterSettings, test_node: TestNode
) -> None:
    a = provision()
    assert "169.254.169.254/32" in settings.blocked_cidrs
    metadata, neighbour = "169.254.169.254:80", "169.254.169.253:80"
    # A stand-in metadata endpoint, wired to tenant A's pod alone, with a neighbour address
    # that the policy's 0.0.0.0/0 allows: the route works, only the blocked address is cut.
    with fake_metadata_server(test_node.netns_name(a.uid)) as server_netns:
        assert from_pod(
            test_node, a.namespace, a.pod, [metadata, neighbour], container=DEV_CONTAINER
        ) == {metadata: DROPPED, neighbour: OPEN}
        # The endpoint itself answers (from its own namespace, never the host's).
        assert from_netns(server_netns, ["169.254.169.254:80"]) == {metadata: OPEN}
