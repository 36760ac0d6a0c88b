"""ClusterIP Services on the test node (testbed.services): kube-proxy's rules and cluster DNS's
names, kept in each pod. The rules are checked by nft itself, then used by real pods."""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from testbed import rootfs
from testbed.eventually import eventually
from testbed.netns import PodNetwork
from testbed.node import TestNode
from testbed.services import Services, hosts_file

ROOT = Path(__file__).resolve().parents[1]
Manifest = dict[str, Any]


def service(namespace: str, name: str, address: str, *ports: Manifest) -> Manifest:
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": f"{namespace}-{name}"},
        "spec": {"clusterIP": address, "ports": list(ports)},
    }


def endpoint_slice(namespace: str, name: str, ready: dict[str, bool], port: Manifest) -> Manifest:
    return {
        "metadata": {
            "namespace": namespace,
            "name": f"{name}-abcde",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [address], "conditions": {"ready": is_ready}}
            for address, is_ready in ready.items()
        ],
        "ports": [port],
    }


def assert_nft_accepts(script: str) -> None:
    """nft itself accepts `script` (check mode, in a network namespace of its own)."""
    checked = subprocess.run(
        ["unshare", "--net", "nft", "--check", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr + script


def test_rules_pick_among_ready_endpoints_and_refuse_without_any() -> None:
    services = {
        "1": service("a", "web", "10.96.5.5", {"name": "http", "port": 80, "targetPort": 8080}),
        "2": service("a", "empty", "10.96.5.6", {"port": 53, "protocol": "UDP"}),
        "3": service("a", "headless", "None", {"port": 80}),
        "4": service("a", "one", "10.96.5.7", {"port": 22, "targetPort": "ssh"}),
    }
    slices = {
        "1": endpoint_slice(
            "a",
            "web",
            {"10.213.1.5": True, "10.213.1.6": True, "10.213.1.7": False},
            {"name": "http", "port": 8080, "protocol": "TCP"},
        ),
        "2": endpoint_slice("a", "one", {"10.213.1.9": True}, {"port": 2222}),
    }
    script = Services("10.213.1.1", None, services, slices).script()
    assert "ip daddr 10.96.5.5 tcp dport 80 numgen random mod 2 vmap" in script
    assert "dnat to 10.213.1.5:8080" in script
    assert "dnat to 10.213.1.6:8080" in script
    assert "10.213.1.7" not in script  # not ready
    assert "ip daddr 10.96.5.7 tcp dport 22 dnat to 10.213.1.9:2222" in script
    assert "ip daddr 10.96.5.6 udp dport 53 reject with icmp type port-unreachable" in script
    assert "headless" not in script
    assert "None" not in script
    assert_nft_accepts(script)


def test_hosts_file_names_services_with_short_names_only_in_the_pods_namespace() -> None:
    services = [
        service("a", "web", "10.96.5.5", {"port": 80}),
        service("b", "db", "10.96.5.8", {"port": 5432}),
        service("b", "headless", "None", {"port": 80}),
    ]
    network = PodNetwork("ns", "veth", ipaddress.IPv4Address("10.213.1.4"))
    text = hosts_file(services, "a", "client", network)
    lines = text.splitlines()
    assert "10.213.1.4\tclient" in lines
    assert "10.96.5.5\tweb.a.svc.cluster.local web.a.svc web.a web" in lines
    assert "10.96.5.8\tdb.b.svc.cluster.local db.b.svc db.b" in lines
    assert "headless" not in text


@pytest.fixture(scope="module")
def server_image(test_node: TestNode) -> rootfs.Image:
    """The server image, for a client that sees the pod's hosts file (built images do)."""
    image = rootfs.build(ROOT / "Dockerfile", "server")
    test_node.load_image("server", image)
    return image


def _web_backend(core: client.CoreV1Api, namespace: str) -> Manifest:
    """The test HTTP server's container on 8080, ready once it listens; first waits for the
    namespace's default ServiceAccount (a pod is refused without it)."""
    eventually(
        lambda: core.read_namespaced_service_account("default", namespace),
        what="the default ServiceAccount",
        ignore=(ApiException,),
    )
    return {
        "name": "web",
        "image": "devspace.test/http-server",
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }


def _pod(name: str, labels: dict[str, str], container: Manifest) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
    }


FETCH = """
import json, socket, sys, urllib.request
results = []
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            results.append(response.status)
    except OSError as error:
        reason = getattr(error, "reason", error)
        results.append(type(reason).__name__)
print(json.dumps(results))
"""


@pytest.mark.kube
@pytest.mark.node
def test_pods_reach_a_service_by_name_and_every_ready_endpoint_serves(
    kube: client.ApiClient, namespace: str, test_node: TestNode, server_image: rootfs.Image
) -> None:
    core = client.CoreV1Api(kube)
    backend = _web_backend(core, namespace)
    for name in ("web-1", "web-2"):
        core.create_namespaced_pod(namespace, _pod(name, {"app": "web"}, backend))
    for name, selector in (("web", "web"), ("nobody", "nobody")):
        core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "selector": {"app": selector},
                    "ports": [{"port": 80, "targetPort": 8080}],
                },
            },
        )
    client_pod = {"name": "c", "image": "ghcr.io/devspace/server:test", "command": ["sleep", "600"]}
    core.create_namespaced_pod(namespace, _pod("client", {"app": "client"}, client_pod))
    discovery = client.DiscoveryV1Api(kube)

    def both_ready() -> bool:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web"
        ).items
        ready = [e for s in slices for e in s.endpoints or [] if e.conditions.ready]
        return len(ready) == 2

    eventually(both_ready, what="both endpoints of the Service", timeout=60)
    eventually(
        lambda: core.read_namespaced_pod("client", namespace).status.phase == "Running",
        what="the client pod",
        timeout=60,
    )

    def fetch(*urls: str) -> list[Any]:
        done = test_node.exec(namespace, "client", ["python3", "-c", FETCH, *urls])
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout))

    full = f"http://web.{namespace}.svc.cluster.local/"
    # The rules follow the EndpointSlice within a moment of its change.
    eventually(lambda: fetch(full) == [200], what="the Service by its full name", timeout=20)
    assert fetch(*["http://web/"] * 20) == [200] * 20
    served = [
        test_node.log(namespace, name, "web").count('"GET / HTTP') for name in ("web-1", "web-2")
    ]
    assert all(count >= 1 for count in served), served
    # A Service without endpoints refuses at once (kube-proxy's reject), not after a timeout.
    assert fetch("http://nobody/") == ["ConnectionRefusedError"]


def test_node_ports_lead_to_ready_endpoints_on_the_node_and_localhost() -> None:
    web = service("a", "web", "10.96.5.5", {"name": "http", "port": 80, "nodePort": 30080})
    web["spec"]["type"] = "NodePort"
    balanced = service("a", "ssh", "10.96.5.6", {"port": 22, "nodePort": 30022})
    balanced["spec"]["type"] = "LoadBalancer"
    balanced["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}, {"ip": "::1"}]}}
    empty = service("a", "empty", "10.96.5.7", {"port": 53, "protocol": "UDP", "nodePort": 30053})
    empty["spec"]["type"] = "NodePort"
    inside = service("a", "inside", "10.96.5.8", {"port": 80})
    services = {"1": web, "2": balanced, "3": empty, "4": inside}
    slices = {
        "1": endpoint_slice("a", "web", {"10.213.1.5": True}, {"name": "http", "port": 8080}),
        "2": endpoint_slice("a", "ssh", {"10.213.1.6": True, "10.213.1.7": True}, {"port": 2222}),
    }
    script = Services("10.213.1.1", None, services, slices, bridge="ds1-br").node_port_script()
    on_node = "ip daddr { 10.213.1.1, 127.0.0.1 }"
    assert f"{on_node} tcp dport 30080 dnat to 10.213.1.5:8080" in script
    assert f"{on_node} tcp dport 30022 numgen random mod 2 vmap" in script
    # Its load balancer's address, on the Service's own port (IPv6 is not done).
    assert "ip daddr { 198.51.100.7 } tcp dport 22 numgen random mod 2 vmap" in script
    assert "::1" not in script
    assert f"{on_node} udp dport 30053 reject with icmp type port-unreachable" in script
    assert "10.96.5.8" not in script  # ClusterIP only: no node port
    assert 'oifname "ds1-br" ct status dnat masquerade' in script
    assert_nft_accepts(script)


def _get(url: str) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - test bed
            return int(response.status)
    except OSError as error:
        return type(getattr(error, "reason", error)).__name__


@pytest.mark.kube
@pytest.mark.node
def test_this_machine_reaches_a_node_port_and_a_load_balancer_address(
    kube: client.ApiClient, namespace: str, test_node: TestNode
) -> None:
    core = client.CoreV1Api(kube)
    backend = _web_backend(core, namespace)
    core.create_namespaced_pod(namespace, _pod("web", {"app": "web"}, backend))
    made = core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        },
    )
    node_port = made.spec.ports[0].node_port
    # The address a client outside the cluster would be told: the Node's InternalIP.
    node = core.read_node(test_node.name)
    (address,) = [a.address for a in node.status.addresses if a.type == "InternalIP"]
    assert address == test_node.gateway
    for host in (address, "127.0.0.1"):
        url = f"http://{host}:{node_port}/"
        eventually(lambda url=url: _get(url) == 200, what=f"the node port at {url}", timeout=60)
    # As a LoadBalancer, given an address in its status (as a cloud's controller would), it
    # serves there on its own port too.
    balancer = f"198.51.100.{random.randrange(1, 255)}"  # noqa: S311 - not a secret
    core.patch_namespaced_service("web", namespace, {"spec": {"type": "LoadBalancer"}})
    core.patch_namespaced_service_status(
        "web", namespace, {"status": {"loadBalancer": {"ingress": [{"ip": balancer}]}}}
    )
    url = f"http://{balancer}:80/"
    eventually(lambda: _get(url) == 200, what=f"the load balancer at {url}", timeout=60)
    # Without ready endpoints it is refused at once, as kube-proxy does.
    core.delete_namespaced_pod("web", namespace, grace_period_seconds=0)
    eventually(
        lambda: _get(f"http://127.0.0.1:{node_port}/") == "ConnectionRefusedError",
        what="the node port refusing",
        timeout=60,
    )
