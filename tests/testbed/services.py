"""ClusterIP Services in the test node's pods (test infrastructure): kube-proxy's part, and
the names cluster DNS would answer, kept per pod.

The agent keeps caches of Services and EndpointSlices from its watches and tells Services when
they change; for every local pod it keeps

- a table `ip devspace_services` in the pod's network namespace: each ClusterIP port is
  DNATed to one of the Service's ready endpoints, picked at random per connection (as
  kube-proxy does), or refused (TCP reset, ICMP for UDP) while it has none; `kubernetes` goes
  to the API server's relay (testbed.apiservice). In the pod's own output chain, the
  client's conntrack undoes it on replies (no hairpin, no rules on the host), and
  NetworkPolicy egress (a later hook) judges the endpoint, as most CNIs do;
- routes to the Service ranges through the node, which connect() needs before the rule can
  rewrite a packet (a real pod's default route does that);
- one table on the host, `ip devspace_nodeports_<node address>`: each NodePort (of NodePort and
  LoadBalancer Services) on the node's address and on 127.0.0.1 is DNATed to the Service's
  ready endpoints, for connections made on this machine (the laptop of a one-node cluster, as
  with kind or minikube). 127.0.0.1 is kube-proxy's "localhost node ports": it needs
  `route_localnet` on the bridge (set on the test bridge only) and a masquerade so that the pod
  can answer. A LoadBalancer Service's ingress IPs (in its status, which a test sets as a
  cloud's controller would) lead to the same endpoints on the Service's own ports, as
  kube-proxy does. Removed by close(); a crashed agent's table is replaced by the next node
  on its slot;
- a hosts file naming every Service (`name.namespace.svc.cluster.local`, `name.namespace.svc`,
  `name.namespace`, and `name` in the pod's own namespace), which containers of built images
  see as /etc/hosts, in place of the cluster DNS that the node does not run. It is rewritten
  in place (a bind mount follows the file, not the name).

Not done: node ports reached from pods or other machines (no prerouting rules: nothing here
needs them), assigning LoadBalancer addresses, ingress hostnames, externalIPs, session
affinity, traffic policies, headless Services' names, ExternalName, SCTP, IPv6.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from testbed.apiservice import ApiService
from testbed.kubeapi import Object
from testbed.netns import NetworkError, PodNetwork

TABLE = "devspace_services"
NODE_TABLE = "devspace_nodeports_"
CLUSTER_DOMAIN = "cluster.local"
log = logging.getLogger("testbed.node")
Endpoint = tuple[str, int]


@dataclass
class _Pod:
    network: PodNetwork
    hosts: Path
    namespace: str
    hostname: str
    applied: str = ""
    written: str = ""


class Services:
    """Keeps every local pod's Service rules and hosts file in step with the cluster."""

    def __init__(
        self,
        node_address: str,
        api_service: ApiService | None,
        services: Mapping[str, Object],
        slices: Mapping[str, Object],
        bridge: str | None = None,
    ) -> None:
        """Read the agent's caches (uid → Service, uid → EndpointSlice); pods reach the
        Service ranges through `node_address`. With `bridge` (the node's bridge device), node
        ports are served on the host too."""
        self.node_address = node_address
        self.bridge = bridge
        self.host_applied = ""
        self.api_service = api_service
        self.services = services
        self.slices = slices
        self.pods: dict[str, _Pod] = {}
        self.dirty = True

    def changed(self) -> None:
        """A Service or EndpointSlice changed: recompute on the next sync()."""
        self.dirty = True

    def secure(self, pod: Object, network: PodNetwork, hosts: Path) -> None:
        """Give a new pod its routes, rules and hosts file (at `hosts`) before it runs.

        Raises NetworkError when `ip` or `nft` fails.
        """
        meta = pod["metadata"]
        hostname = (pod["spec"].get("hostname") or meta["name"])[:63]
        state = _Pod(network, hosts, meta["namespace"], hostname)
        ranges = self.api_service.ranges if self.api_service else []
        for cidr in ranges:
            _run(network, ["ip", "route", "replace", cidr, "via", self.node_address])
        self._apply(state, self.script())
        self.pods[meta["uid"]] = state

    def forget(self, uid: str) -> None:
        """The pod's network namespace is gone (and its rules with it)."""
        self.pods.pop(uid, None)

    def sync(self) -> None:
        """Bring every local pod up to date if anything changed; logs what fails."""
        if not self.dirty:
            return
        self.dirty = False
        if self.bridge is not None:
            try:
                self._apply_host()
            except (NetworkError, OSError) as error:
                self.dirty = True
                log.warning("node ports: %s", error)
        script = self.script()
        for uid, state in list(self.pods.items()):
            try:
                self._apply(state, script)
            except (NetworkError, OSError) as error:
                self.dirty = True  # tried again on the next round
                log.warning("services for pod %s: %s", uid, error)

    def _apply_host(self) -> None:
        script = self.node_port_script()
        if script == self.host_applied:
            return
        if not self.host_applied:
            # Without it the kernel refuses to route a packet from 127.0.0.1 off loopback.
            Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet").write_text("1")
        _run(None, ["nft", "-f", "-"], script)
        self.host_applied = script

    def close(self) -> None:
        """Remove the host's node-port table (the pods' tables go with their namespaces)."""
        if self.host_applied:
            table = NODE_TABLE + self.node_address.replace(".", "_")
            _run(None, ["nft", "-f", "-"], f"table ip {table}\ndelete table ip {table}\n")
            self.host_applied = ""

    def node_port_script(self) -> str:
        """The nft script that replaces the host's node-port table (see module docstring)."""
        rules = _Rules()
        for service in sorted(self.services.values(), key=_key):
            spec = service.get("spec") or {}
            if spec.get("type") not in ("NodePort", "LoadBalancer"):
                continue
            endpoints = _endpoints(service, self.slices.values())
            balancer = (service.get("status") or {}).get("loadBalancer") or {}
            ingress = [
                i["ip"] for i in balancer.get("ingress") or [] if ":" not in i.get("ip", ":")
            ]
            if spec.get("type") != "LoadBalancer":
                ingress = []
            for port in spec.get("ports") or []:
                protocol = str(port.get("protocol", "TCP")).lower()
                if protocol not in ("tcp", "udp"):
                    continue
                targets = endpoints.get(port.get("name") or "", [])
                if port.get("nodePort"):
                    on_node = f"{{ {self.node_address}, 127.0.0.1 }}"
                    rules.send(
                        f"ip daddr {on_node} {protocol} dport {port['nodePort']}", protocol, targets
                    )
                if ingress:
                    at = f"{{ {', '.join(sorted(ingress))} }}"
                    rules.send(f"ip daddr {at} {protocol} dport {port['port']}", protocol, targets)
        return rules.table(
            NODE_TABLE + self.node_address.replace(".", "_"),
            "  chain postrouting {",
            "    type nat hook postrouting priority 100;",
            # From 127.0.0.1 (or the node's address): the pod answers the bridge's address,
            # and conntrack undoes both rewrites on the way back.
            f'    oifname "{self.bridge}" ct status dnat masquerade',
            "  }",
        )

    def _apply(self, state: _Pod, script: str) -> None:
        if state.applied != script:
            _run(state.network, ["nft", "-f", "-"], script)
            state.applied = script
        text = hosts_file(self.services.values(), state.namespace, state.hostname, state.network)
        if state.written != text:
            # In place: the containers' /etc/hosts is a bind mount of this very file.
            with open(state.hosts, "a+") as file:
                file.seek(0)
                file.truncate()
                file.write(text)
            state.written = text

    def script(self) -> str:
        """The nft script that replaces the Services table (see module docstring)."""
        rules = _Rules()
        relay = self.api_service.relay_address if self.api_service else None
        for service in sorted(self.services.values(), key=_key):
            spec = service.get("spec") or {}
            address = spec.get("clusterIP")
            if not address or address == "None" or ":" in address:
                continue
            meta = service["metadata"]
            own = (meta["namespace"], meta["name"]) == ("default", "kubernetes")
            endpoints = _endpoints(service, self.slices.values())
            for port in spec.get("ports") or []:
                protocol = str(port.get("protocol", "TCP")).lower()
                if protocol not in ("tcp", "udp"):
                    continue
                match = f"ip daddr {address} {protocol} dport {port['port']}"
                targets = [relay] if own and relay else endpoints.get(port.get("name") or "", [])
                rules.send(match, protocol, targets)
        return rules.table(TABLE)


@dataclass
class _Rules:
    """The lines of one nft table being written: DNAT rules, refusals, per-endpoint chains."""

    nat: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)

    def table(self, name: str, *more: str) -> str:
        """The nft script that replaces table `name` with these rules and the lines `more`."""
        return "\n".join(
            [
                # "table" then "delete table": removes ours whether or not it exists, in the
                # same transaction as the new one.
                f"table ip {name}",
                f"delete table ip {name}",
                f"table ip {name} {{",
                *self.chains,
                "  chain output {",
                "    type nat hook output priority -100;",
                *self.nat,
                "  }",
                "  chain refuse {",
                # After the rewrite above, before NetworkPolicy's egress chain (priority 0).
                "    type filter hook output priority -1;",
                *self.refused,
                "  }",
                *more,
                "}",
                "",
            ]
        )

    def send(self, match: str, protocol: str, targets: list[Endpoint]) -> None:
        """Send what `match`es to one of `targets` (or refuse it without any)."""
        if not targets:
            refusal = "tcp reset" if protocol == "tcp" else "icmp type port-unreachable"
            self.refused.append(f"    {match} reject with {refusal}")
        elif len(targets) == 1:
            self.nat.append(f"    {match} dnat to {targets[0][0]}:{targets[0][1]}")
        else:
            first = len(self.chains)
            picks = ", ".join(f"{i} : goto ep{first + i}" for i in range(len(targets)))
            self.nat.append(f"    {match} numgen random mod {len(targets)} vmap {{ {picks} }}")
            self.chains += [
                # nft maps a port only after a protocol match, and a jump forgets it.
                f"  chain ep{first + i} {{ meta l4proto {protocol} dnat to {a}:{p}; }}"
                for i, (a, p) in enumerate(targets)
            ]


def _key(service: Object) -> tuple[str, str]:
    return service["metadata"]["namespace"], service["metadata"]["name"]


def _endpoints(service: Object, slices: Iterable[Object]) -> dict[str, list[Endpoint]]:
    """The Service's ready endpoints by port name ("" for an unnamed port)."""
    namespace, name = _key(service)
    found: dict[str, set[Endpoint]] = {}
    for piece in slices:
        meta = piece["metadata"]
        labels = meta.get("labels") or {}
        if (
            meta["namespace"] != namespace
            or labels.get("kubernetes.io/service-name") != name
            or piece.get("addressType") != "IPv4"
        ):
            continue
        for endpoint in piece.get("endpoints") or []:
            # An unset `ready` means ready (discovery.k8s.io/v1).
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for port in piece.get("ports") or []:
                if port.get("port") is not None:
                    target = (endpoint["addresses"][0], int(port["port"]))
                    found.setdefault(port.get("name") or "", set()).add(target)
    return {port: sorted(targets) for port, targets in found.items()}


def hosts_file(
    services: Iterable[Object], namespace: str, hostname: str, network: PodNetwork
) -> str:
    """The pod's /etc/hosts: kubelet's lines, then every Service's names."""
    lines = [
        "# Kubernetes-managed hosts file (the test node's; Services stand in for cluster DNS).",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{network.address}\t{hostname}",
    ]
    for service in sorted(services, key=_key):
        address = (service.get("spec") or {}).get("clusterIP")
        if not address or address == "None":
            continue
        space, name = _key(service)
        names = [f"{name}.{space}.svc.{CLUSTER_DOMAIN}", f"{name}.{space}.svc", f"{name}.{space}"]
        if space == namespace:
            names.append(name)
        lines.append(f"{address}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def _run(network: PodNetwork | None, argv: list[str], text: str | None = None) -> None:
    """Run `argv` in the pod's network namespace (None: the host's). Raises NetworkError with
    its stderr."""
    enter = [] if network is None else ["nsenter", f"--net={network.netns_path}"]
    result = subprocess.run(
        [*enter, *argv],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise NetworkError(f"services: {' '.join(argv[:3])}: {result.stderr.strip()[:500]}")
