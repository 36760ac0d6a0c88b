"""The `kubernetes` Service inside the test node's pods (test infrastructure).

The test bed's kube-apiserver listens on 127.0.0.1 only and the node has no kube-proxy, so a
pod using in-cluster config (KUBERNETES_SERVICE_HOST and _PORT, its ServiceAccount token and
the cluster's CA, as the chart's reconciler does) could not reach it. So the agent runs a
relay on the node's bridge address that copies bytes to the API server, every pod's Service
rules (testbed.services) send the Service's ClusterIP and port there, and every container
gets the Service's variables, as from kubelet. TLS is end to end (the relay sees ciphertext
only) and the API server's serving certificate names the ClusterIP, so clients verify it as
they would in a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
from dataclasses import dataclass

from testbed.kubeapi import ApiError, KubeClient

log = logging.getLogger("testbed.node")


class _Relay(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        super().__init__(listen, _Connection)
        self.upstream = upstream


class _Connection(socketserver.BaseRequestHandler):
    server: _Relay

    def handle(self) -> None:
        try:
            upstream = socket.create_connection(self.server.upstream, timeout=10)
        except OSError as error:
            log.warning("kubernetes service relay: %s", error)
            return
        upstream.settimeout(None)
        with upstream:
            back = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
            back.start()
            _copy(self.request, upstream)
            back.join()


def _copy(source: socket.socket, target: socket.socket) -> None:
    """Copy until `source` ends, then end `target`'s sending side (a half-close)."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@dataclass
class ApiService:
    """The `kubernetes` Service as the node's pods see it, with its relay running."""

    cluster_ip: str
    port: int
    relay: _Relay
    ranges: list[str]
    """The cluster's Service ranges (ServiceCIDRs), which pods route through the node."""

    @property
    def relay_address(self) -> tuple[str, int]:
        """Where the relay listens: the node's bridge address and a free port."""
        return str(self.relay.server_address[0]), int(self.relay.server_address[1])

    @classmethod
    def start(cls, api: KubeClient, node_address: str) -> ApiService | None:
        """Start the relay on `node_address`; None (logged) when the Service is missing."""
        try:
            service = api.get("/api/v1/namespaces/default/services/kubernetes")
        except ApiError as error:
            log.warning("no kubernetes Service, pods get no in-cluster access: %s", error)
            return None
        address = str(service["spec"]["clusterIP"])
        port = next(p["port"] for p in service["spec"]["ports"] if p.get("name") == "https")
        try:
            listed = api.get("/apis/networking.k8s.io/v1/servicecidrs")["items"]
            ranges = [cidr for item in listed for cidr in item["spec"].get("cidrs", [])]
        except ApiError:  # an API server without ServiceCIDRs (before 1.33)
            ranges = []
        relay = _Relay((node_address, 0), (api.host, api.port))
        threading.Thread(target=relay.serve_forever, name="api-relay", daemon=True).start()
        ipv4 = [cidr for cidr in ranges if ":" not in cidr]
        return cls(address, int(port), relay, ipv4 or [f"{address}/32"])

    def stop(self) -> None:
        self.relay.shutdown()
        self.relay.server_close()

    def environment(self) -> dict[str, str]:
        """The variables kubelet gives every container for this Service."""
        address = f"tcp://{self.cluster_ip}:{self.port}"
        prefix = f"KUBERNETES_PORT_{self.port}_TCP"
        return {
            "KUBERNETES_SERVICE_HOST": self.cluster_ip,
            "KUBERNETES_SERVICE_PORT": str(self.port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.port),
            "KUBERNETES_PORT": address,
            prefix: address,
            f"{prefix}_PROTO": "tcp",
            f"{prefix}_PORT": str(self.port),
            f"{prefix}_ADDR": self.cluster_ip,
        }
