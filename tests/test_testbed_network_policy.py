"""The test node enforces NetworkPolicy, as a CNI plugin would (testbed.firewall).

Every "blocked" here is a connection from another pod that times out (DROPPED) while the host,
which a policy never blocks (the node is always allowed in), reaches the same server at the
same moment: so the server is up and it is the policy that drops. Without enforcement each of
those checks would see OPEN instead and fail.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from testbed.eventually import eventually
from testbed.netprobe import DROPPED, OPEN, REFUSED, fake_metadata_server, from_netns, from_pod
from testbed.node import TestNode

pytestmark = [pytest.mark.kube, pytest.mark.node]

Manifest = dict[str, Any]
# Seconds a policy, pod or namespace change may take to be enforced: it takes well under
# one, but every check that sees a drop waits out a 1 s connect timeout.
CONVERGES = 3.0


@pytest.fixture
def core(kube: client.ApiClient, namespace: str, test_node: TestNode) -> client.CoreV1Api:
    api = client.CoreV1Api(kube)
    ready(api, namespace)
    return api


@pytest.fixture
def networking(kube: client.ApiClient) -> client.NetworkingV1Api:
    return client.NetworkingV1Api(kube)


@pytest.fixture
def make_namespace(core: client.CoreV1Api) -> Iterator[Callable[..., str]]:
    """Make another namespace (with labels), deleted after the test."""
    made: list[str] = []

    def make(**labels: str) -> str:
        name = f"test-{uuid.uuid4().hex[:10]}"
        meta = client.V1ObjectMeta(name=name, labels=labels or None)
        core.create_namespace(client.V1Namespace(metadata=meta))
        made.append(name)
        ready(core, name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name)


def ready(core: client.CoreV1Api, namespace: str) -> None:
    eventually(
        lambda: core.read_namespaced_service_account("default", namespace),
        what="the default ServiceAccount",
        ignore=(ApiException,),
    )


def server(name: str, port: int, port_name: str | None = None) -> Manifest:
    port_entry = {"containerPort": port, **({"name": port_name} if port_name else {})}
    return {"name": name, "image": "devspace.test/http-server", "ports": [port_entry]}


def sleeper() -> Manifest:
    return {"name": "main", "image": "devspace.test/shell", "command": ["sleep", "infinity"]}


def start(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    *containers: Manifest,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> str:
    """Create a pod and return its IP once it runs and every port it declares answers."""
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": list(containers or [sleeper()]),
                **spec,
            },
        },
    )

    def address() -> str | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod.status.pod_ip if pod.status.phase == "Running" else None

    ip: str = eventually(address, what=f"pod {name} to run", timeout=60)
    targets = [f"{ip}:{p['containerPort']}" for c in containers for p in c.get("ports", [])]
    if targets:
        # From the host, which policies never block: the servers listen.
        eventually(
            lambda: set(from_netns(None, targets).values()) == {OPEN},
            what=f"pod {name}'s servers",
            timeout=30,
        )
    return ip


def within(check: Callable[[], bool], what: str, seconds: float = CONVERGES) -> float:
    """Wait for `check`; fail unless it holds within `seconds`. Returns how long it took."""
    began = time.monotonic()
    eventually(check, what=what, timeout=seconds + 10)
    took = time.monotonic() - began
    assert took <= seconds, f"{what} took {took:.1f} s"
    return took


def policy(name: str, **spec: Any) -> Manifest:
    spec.setdefault("podSelector", {})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_a_default_deny_cuts_off_a_pod_that_was_reachable_and_lifting_it_restores_it(
    core: client.CoreV1Api,
    networking: client.NetworkingV1Api,
    namespace: str,
    test_node: TestNode,
) -> None:
    web = start(core, namespace, "web", server("http", 8080))
    start(core, namespace, "client")
    targets = [f"{web}:8080", f"{web}:9999"]

    # No policy selects `web`: another pod reaches it, and a closed port answers "refused".
    assert from_pod(test_node, namespace, "client", targets) == {
        f"{web}:8080": OPEN,
        f"{web}:9999": REFUSED,
    }

    networking.create_namespaced_network_policy(namespace, policy("deny", policyTypes=["Ingress"]))
    within(
        lambda: (
            from_pod(test_node, namespace, "client", targets)
            == {f"{web}:8080": DROPPED, f"{web}:9999": DROPPED}
        ),
        "the default deny to be enforced",
    )
    # The server is up; the node still reaches it (as kubelet's probes must).
    assert from_netns(None, targets) == {f"{web}:8080": OPEN, f"{web}:9999": REFUSED}

    networking.delete_namespaced_network_policy("deny", namespace)
    within(
        lambda: from_pod(test_node, namespace, "client", targets)[f"{web}:8080"] == OPEN,
        "the lifted policy to be forgotten",
    )


def test_default_deny_egress_holds_from_the_first_instruction_of_a_new_pod(
    core: client.CoreV1Api,
    networking: client.NetworkingV1Api,
    namespace: str,
    make_namespace: Callable[..., str],
    test_node: TestNode,
) -> None:
    elsewhere = make_namespace()
    web = start(core, elsewhere, "web", server("http", 8080))
    start(core, namespace, "witness")
    networking.create_namespaced_network_policy(namespace, policy("deny", policyTypes=["Egress"]))
    # The node has the policy before the new pod exists (a pod already there is cut off):
    # what is tested is that the new pod's very first connection, made as its container
    # starts, already meets the rules.
    within(
        lambda: (
            from_pod(test_node, namespace, "witness", [f"{web}:8080"])[f"{web}:8080"] == DROPPED
        ),
        "the policy to reach the node",
    )

    first_try = {
        "name": "main",
        "image": "devspace.test/shell",
        "command": ["sh", "-c", f"{probe_command(web)}; exec sleep infinity"],
    }
    start(core, namespace, "isolated", first_try, server("http", 8081))
    start(core, elsewhere, "free", first_try)
    eventually(lambda: test_node.log(elsewhere, "free", "main"), what="the free pod's log")
    eventually(lambda: test_node.log(namespace, "isolated", "main"), what="the isolated log")
    assert OPEN in test_node.log(elsewhere, "free", "main")
    assert DROPPED in test_node.log(namespace, "isolated", "main")

    # Its own loopback stays open; its egress does not, to a server others reach.
    assert from_pod(test_node, namespace, "isolated", ["127.0.0.1:8081", f"{web}:8080"]) == {
        "127.0.0.1:8081": OPEN,
        f"{web}:8080": DROPPED,
    }
    assert from_pod(test_node, elsewhere, "free", [f"{web}:8080"]) == {f"{web}:8080": OPEN}


def probe_command(address: str) -> str:
    """A shell command that prints how a connect to `address`:8080 went."""
    script = (
        "import socket; s = socket.socket(); s.settimeout(1)\n"
        "try:\n    s.connect((ADDRESS, 8080)); print('open')\n"
        "except TimeoutError:\n    print('timeout')\n"
        "except OSError as e:\n    print(e)\n"
    ).replace("ADDRESS", repr(address))
    return f'/usr/bin/python3 -c "{script}"'


def test_namespace_and_pod_selectors_let_in_exactly_the_selected_pod(
    core: client.CoreV1Api,
    networking: client.NetworkingV1Api,
    namespace: str,
    make_namespace: Callable[..., str],
    test_node: TestNode,
) -> None:
    team = uuid.uuid4().hex[:8]  # unique, so no other test's namespace matches by accident
    trusted = make_namespace(**{"devspace.test/team": team})
    untrusted = make_namespace()
    web = start(core, namespace, "web", server("http", 8080, "http"), server("admin", 9090))
    start(core, trusted, "chosen", labels={"role": "gateway"})
    start(core, trusted, "other", labels={"role": "client"})
    start(core, untrusted, "impostor", labels={"role": "gateway"})
    start(core, namespace, "sibling", labels={"role": "gateway"})
    peer = {
        "namespaceSelector": {"matchLabels": {"devspace.test/team": team}},
        "podSelector": {
            "matchExpressions": [{"key": "role", "operator": "In", "values": ["gateway"]}]
        },
    }
    networking.create_namespaced_network_policy(
        namespace,
        policy(
            "gateway-only",
            podSelector={"matchLabels": {"app": "web"}},
            ingress=[{"from": [peer], "ports": [{"port": "http"}]}],  # a named port
        ),
    )
    targets = [f"{web}:8080", f"{web}:9090"]

    def seen_from(ns: str, pod: str) -> dict[str, str]:
        return from_pod(test_node, ns, pod, targets)

    within(lambda: seen_from(trusted, "other")[f"{web}:8080"] == DROPPED, "the policy")
    # Exactly the selected pod, and only on the port named "http".
    assert seen_from(trusted, "chosen") == {f"{web}:8080": OPEN, f"{web}:9090": DROPPED}
    for ns, pod in ((trusted, "other"), (untrusted, "impostor"), (namespace, "sibling")):
        assert seen_from(ns, pod) == {f"{web}:8080": DROPPED, f"{web}:9090": DROPPED}, pod
    assert from_netns(None, targets) == {f"{web}:8080": OPEN, f"{web}:9090": OPEN}

    # Labels change, and what is allowed follows: a pod's, then a namespace's.
    core.patch_namespaced_pod("other", trusted, {"metadata": {"labels": {"role": "gateway"}}})
    within(lambda: seen_from(trusted, "other")[f"{web}:8080"] == OPEN, "the relabelled pod")
    core.patch_namespace(untrusted, {"metadata": {"labels": {"devspace.test/team": team}}})
    within(lambda: seen_from(untrusted, "impostor")[f"{web}:8080"] == OPEN, "the namespace")
    core.patch_namespaced_pod("chosen", trusted, {"metadata": {"labels": {"role": None}}})
    within(lambda: seen_from(trusted, "chosen")[f"{web}:8080"] == DROPPED, "the unlabelled pod")


def test_egress_ip_block_except_blocks_the_excepted_addresses(
    core: client.CoreV1Api,
    networking: client.NetworkingV1Api,
    namespace: str,
    test_node: TestNode,
) -> None:
    kept = start(core, namespace, "kept", server("http", 8080))
    excepted = start(core, namespace, "excepted", server("http", 8080))
    start(core, namespace, "client")
    pod = core.read_namespaced_pod("client", namespace)
    targets = [f"{kept}:8080", f"{excepted}:8080", "169.254.169.254:80", "169.254.169.253:80"]
    with fake_metadata_server(test_node.netns_name(pod.metadata.uid)):
        # Before any policy: everything answers, the fake metadata endpoint too.
        assert set(from_pod(test_node, namespace, "client", targets).values()) == {OPEN}
        networking.create_namespaced_network_policy(
            namespace,
            policy(
                "egress",
                podSelector={"matchLabels": {"app": "client"}},
                policyTypes=["Egress"],
                egress=[
                    {
                        "to": [
                            {"ipBlock": {"cidr": test_node.subnet, "except": [f"{excepted}/32"]}},
                            {
                                "ipBlock": {
                                    "cidr": "169.254.0.0/16",
                                    "except": ["169.254.169.254/32"],
                                }
                            },
                        ]
                    }
                ],
            ),
        )
        expected = {
            f"{kept}:8080": OPEN,
            f"{excepted}:8080": DROPPED,
            "169.254.169.254:80": DROPPED,
            "169.254.169.253:80": OPEN,
        }
        within(
            lambda: from_pod(test_node, namespace, "client", targets) == expected,
            "the ipBlock policy",
        )
    # The excepted server is up, and reachable from a pod the policy does not select.
    assert from_pod(test_node, namespace, "kept", [f"{excepted}:8080"]) == {
        f"{excepted}:8080": OPEN
    }
