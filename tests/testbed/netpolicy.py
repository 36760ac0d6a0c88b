"""NetworkPolicy (networking.k8s.io/v1) as nftables rules for one pod (test infrastructure).

Pure: from the cluster's NetworkPolicies, pods and namespace labels (raw API objects) to the
nft script that one pod's network namespace runs; testbed.firewall applies it. Semantics as
the API reference gives them:

- A pod is isolated for Ingress (Egress) when some policy in its namespace selects it with
  that policy type; `policyTypes` defaults to Ingress, plus Egress when `egress` has rules.
  Not isolated: everything is allowed (no table at all).
- Isolated: what the selecting policies' rules allow, as a union, is accepted; the rest is
  dropped (not rejected, as most CNIs do, so a blocked connect() times out). Always accepted:
  loopback, replies and related ICMP (conntrack), and ingress from the pod's node (kubelet's
  probes come from there, and the API reference says the node is always allowed).
- Peers: podSelector (the policy's namespace), namespaceSelector, both (pods matching in
  matching namespaces), ipBlock with `except`; selectors with matchLabels and
  matchExpressions (In, NotIn, Exists, DoesNotExist). An ipBlock matches pod addresses too.
- Ports: number, named (resolved on the destination pod's container ports), endPort ranges,
  protocol TCP, UDP or SCTP; a rule without ports allows every protocol.

A field or value outside this (a newer API's field, an unknown operator or protocol) raises
UnsupportedPolicy inside; the policy then allows nothing in the directions it may cover and
the problem is returned for logging: fail closed, never open.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testbed.nftrules import KEYWORDS, PortRange, collapse, one_or_set, port_matches, script

Object = dict[str, Any]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

INGRESS, EGRESS = "Ingress", "Egress"
OPERATORS = {"In", "NotIn", "Exists", "DoesNotExist"}
# Pods in these phases hold no address any more (the node frees it), whatever status says.
TERMINAL = ("Succeeded", "Failed")
NAMESPACE_NAME = "kubernetes.io/metadata.name"

_SPEC_KEYS = {"podSelector", "policyTypes", "ingress", "egress"}
_PEER_KEYS = {"podSelector", "namespaceSelector", "ipBlock"}
_PORT_KEYS = {"protocol", "port", "endPort"}
# Per direction: the rules' key, the rule's peer list, and which address is the peer's.
_DIRECTIONS = {
    INGRESS: ("ingress", "from", "saddr"),
    EGRESS: ("egress", "to", "daddr"),
}


class UnsupportedPolicy(ValueError):
    """A policy uses something this enforcement does not understand (it then fails closed)."""


@dataclass(frozen=True)
class Cluster:
    """What policies are evaluated against: every policy and pod, and namespace labels.

    `addresses` maps pod uids to addresses the node knows before the pods' status says so
    (pods it is starting right now).
    """

    policies: Sequence[Object]
    pods: Sequence[Object]
    namespaces: Mapping[str, Mapping[str, str]]
    addresses: Mapping[str, str] = field(default_factory=dict)
    # namespaceSelector (as JSON) -> the namespaces with pods that it selects; the node asks
    # for every one of its pods in turn, and most pods' policies repeat the same selectors.
    _selected: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    def namespace_labels(self, name: str) -> Mapping[str, str]:
        """A namespace's labels; one not seen yet has at least the name label the API sets."""
        return self.namespaces.get(name) or {NAMESPACE_NAME: name}

    @functools.cached_property
    def peers(self) -> list[tuple[Object, Address]]:
        """Pods that hold an address now, with it, in address order (worked out once: the
        node asks for every one of its pods in turn)."""
        found = []
        for pod in self.pods:
            meta, status = pod["metadata"], pod.get("status") or {}
            address = self.addresses.get(meta["uid"]) or status.get("podIP")
            if not address or status.get("phase") in TERMINAL:
                continue
            found.append((pod, ipaddress.ip_address(address)))
        return sorted(found, key=lambda item: (item[1].version, item[1]))

    @functools.cached_property
    def policies_by_namespace(self) -> dict[str, list[Object]]:
        """The policies, by namespace name, each namespace's in name order."""
        grouped: dict[str, list[Object]] = {}
        for policy in sorted(self.policies, key=lambda p: str(p["metadata"]["name"])):
            grouped.setdefault(policy["metadata"]["namespace"], []).append(policy)
        return grouped

    @functools.cached_property
    def peers_by_namespace(self) -> dict[str, list[tuple[Object, Address]]]:
        """peers, by namespace name."""
        grouped: dict[str, list[tuple[Object, Address]]] = {}
        for pod, ip in self.peers:
            grouped.setdefault(pod["metadata"]["namespace"], []).append((pod, ip))
        return grouped

    def selected_namespaces(self, selector: Mapping[str, Any]) -> list[str]:
        """The namespaces holding peers that a namespaceSelector selects."""
        key = json.dumps(selector, sort_keys=True)
        if key not in self._selected:
            self._selected[key] = [
                name
                for name in self.peers_by_namespace
                if selects(selector, self.namespace_labels(name))
            ]
        return self._selected[key]


@dataclass(frozen=True)
class PodRules:
    """One pod's nft script, the directions it is isolated in, how many allow rules it has,
    and problems to log."""

    script: str
    isolated: frozenset[str]
    allowed: int
    problems: tuple[str, ...]


def pod_rules(pod: Object, cluster: Cluster, node_address: str) -> PodRules:
    """The nft script that enforces every policy selecting `pod`, in its network namespace.

    The script replaces the table atomically (`nft -f` runs it as one transaction).
    """
    meta = pod["metadata"]
    namespace, labels = meta["namespace"], meta.get("labels") or {}
    accepted: dict[str, list[str]] = {INGRESS: [], EGRESS: []}
    isolated: set[str] = set()
    problems: list[str] = []
    peers = cluster.peers
    for policy in cluster.policies_by_namespace.get(namespace, []):
        name = f"{namespace}/{policy['metadata']['name']}"
        spec = policy.get("spec") or {}
        try:
            _only(spec, _SPEC_KEYS, "spec")
            if not selects(spec.get("podSelector") or {}, labels):
                continue
            types = policy_types(spec)
        except UnsupportedPolicy as error:
            problems.append(f"NetworkPolicy {name}: {error}; it allows nothing (fail closed)")
            isolated |= {INGRESS, EGRESS}
            continue
        for direction in sorted(types):
            isolated.add(direction)
            key = _DIRECTIONS[direction][0]
            # All of the policy's rules for this direction, or none of them.
            mine: list[str] = []
            try:
                for index, rule in enumerate(spec.get(key) or []):
                    comment = f'comment "{name} {key}[{index}]"'
                    mine += [
                        f"{line} accept {comment}".lstrip()
                        for line in _rule(
                            direction,
                            rule,
                            namespace=namespace,
                            pod=pod,
                            peers=peers,
                            cluster=cluster,
                        )
                    ]
            except UnsupportedPolicy as error:
                problems.append(f"NetworkPolicy {name}: {error}; it allows no {key} (fail closed)")
                continue
            accepted[direction] += mine
    return PodRules(
        script(
            accepted[INGRESS] if INGRESS in isolated else None,
            accepted[EGRESS] if EGRESS in isolated else None,
            node_address,
        ),
        frozenset(isolated),
        sum(len(accepted[d]) for d in isolated),
        tuple(problems),
    )


def policy_types(spec: Mapping[str, Any]) -> set[str]:
    """The directions a policy covers; raises UnsupportedPolicy for an unknown one."""
    types = spec.get("policyTypes")
    if types is None:
        return {INGRESS} | ({EGRESS} if spec.get("egress") else set())
    unknown = set(types) - {INGRESS, EGRESS}
    if unknown:
        raise UnsupportedPolicy(f"unknown policyTypes {sorted(unknown)}")
    return set(types)


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector matches `labels` (an empty selector matches everything).

    Raises UnsupportedPolicy for an unknown field or operator.
    """
    _only(selector, {"matchLabels", "matchExpressions"}, "selector")
    expressions = selector.get("matchExpressions") or []
    for expression in expressions:  # all checked before any is evaluated
        _only(expression, {"key", "operator", "values"}, "matchExpressions")
        if expression.get("operator") not in OPERATORS:
            raise UnsupportedPolicy(f"unknown selector operator {expression.get('operator')!r}")
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in expressions:
        operator, key = expression["operator"], expression.get("key")
        values = expression.get("values") or []
        present = key in labels
        if not {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def _only(obj: Any, keys: set[str], what: str) -> None:
    """Refuse what this enforcement would otherwise silently ignore."""
    if not isinstance(obj, Mapping):
        raise UnsupportedPolicy(f"{what} is not an object")
    unknown = set(obj) - keys
    if unknown:
        raise UnsupportedPolicy(f"unsupported {what} field(s) {sorted(unknown)}")


# One rule.


@dataclass(frozen=True)
class _Peer:
    """A peer as nft address matches, and the pods it stands for (to resolve named ports;
    worked out only then, as it is the costly part of an ipBlock)."""

    matches: list[str]
    pods: Callable[[], list[tuple[Object, Address]]]


def _rule(
    direction: str,
    rule: Mapping[str, Any],
    *,
    namespace: str,
    pod: Object,
    peers: list[tuple[Object, Address]],
    cluster: Cluster,
) -> list[str]:
    """nft match expressions (without verdict) for one ingress or egress rule."""
    _, peer_key, address = _DIRECTIONS[direction]
    _only(rule, {peer_key, "ports"}, f"{direction.lower()} rule")
    listed = rule.get(peer_key) or []
    compiled = [_peer(p, namespace, address, peers, cluster) for p in listed]
    if not listed:  # no peers: any address
        compiled = [_Peer([""], lambda: peers)]
    ports = rule.get("ports") or []
    numbered, named = _ports(ports)
    if not ports:
        on_ports = [""]
    elif direction == INGRESS:
        # A named port is the selected pod's own; one it does not have matches nothing.
        on_ports = port_matches(numbered + _resolve(pod, named))
    else:
        on_ports = port_matches(numbered)
    lines = [f"{a} {p}".strip() for peer in compiled for a in peer.matches for p in on_ports]
    if direction == EGRESS and named:
        # Egress to a named port: the port each destination pod gives that name.
        for peer in compiled:
            for target, ip in peer.pods():
                family = "ip" if ip.version == 4 else "ip6"
                for port in port_matches(_resolve(target, named)):
                    lines.append(f"{family} {address} {ip} {port}")
    return lines


def _peer(
    peer: Any,
    namespace: str,
    address: str,
    peers: list[tuple[Object, Address]],
    cluster: Cluster,
) -> _Peer:
    _only(peer, _PEER_KEYS, "peer")
    if not peer:
        raise UnsupportedPolicy("empty peer")
    if "ipBlock" in peer:
        if len(peer) > 1:
            raise UnsupportedPolicy("ipBlock together with a selector in one peer")
        return _ip_block(peer["ipBlock"], address, peers)
    namespaces = peer.get("namespaceSelector")
    pods = peer.get("podSelector")
    # Checked once up front, so a bad selector fails even when no pod is there to test it on.
    selects(namespaces or {}, {})
    selects(pods or {}, {})
    names = [namespace] if namespaces is None else cluster.selected_namespaces(namespaces)
    chosen = sorted(
        (
            (target, ip)
            for name in names
            for target, ip in cluster.peers_by_namespace.get(name, [])
            if pods is None or selects(pods, target["metadata"].get("labels") or {})
        ),
        key=lambda item: (item[1].version, item[1]),
    )
    matches = []
    for version, family in ((4, "ip"), (6, "ip6")):
        ips = [str(ip) for _, ip in chosen if ip.version == version]
        if ips:
            matches.append(f"{family} {address} {one_or_set(ips)}")
    return _Peer(matches, lambda: chosen)


def _ip_block(block: Any, address: str, peers: list[tuple[Object, Address]]) -> _Peer:
    _only(block, {"cidr", "except"}, "ipBlock")
    try:
        cidr = _network(block["cidr"])
        excepted = [_network(e) for e in block.get("except") or []]
    except (KeyError, TypeError, ValueError) as error:
        raise UnsupportedPolicy(f"bad ipBlock {block!r}: {error}") from error
    family = "ip" if cidr.version == 4 else "ip6"
    # A /0 as an address match is legal but reads badly; "this family" says the same.
    match = (
        f"meta nfproto ipv{cidr.version}" if cidr.prefixlen == 0 else f"{family} {address} {cidr}"
    )
    holes = collapse(e for e in excepted if e.version == cidr.version)
    if holes:
        match += f" {family} {address} != {one_or_set(holes)}"
    return _Peer(
        [match],
        lambda: [
            (target, ip)
            for target, ip in peers
            if ip in cidr and not any(ip in hole for hole in excepted if hole.version == ip.version)
        ],
    )


# Ports.


def _ports(ports: Iterable[Any]) -> tuple[list[PortRange], list[tuple[str, str]]]:
    """Numbered port ranges and (protocol, name) pairs. Raises UnsupportedPolicy."""
    numbered: list[PortRange] = []
    named: list[tuple[str, str]] = []
    for port in ports:
        _only(port, _PORT_KEYS, "port")
        protocol = port.get("protocol") or "TCP"
        if protocol not in KEYWORDS:
            raise UnsupportedPolicy(f"unsupported protocol {protocol!r}")
        value, end = port.get("port"), port.get("endPort")
        if value is None and end is None:
            numbered.append((protocol, None, None))
        elif isinstance(value, int) and not isinstance(value, bool):
            last = value if end is None else end
            if not (isinstance(last, int) and 0 < value <= last <= 65535):
                raise UnsupportedPolicy(f"bad port range {value}-{end}")
            numbered.append((protocol, value, last))
        elif isinstance(value, str) and value and end is None:
            named.append((protocol, value))
        else:
            raise UnsupportedPolicy(f"bad port {value!r} with endPort {end!r}")
    return numbered, named


def _resolve(pod: Object, named: list[tuple[str, str]]) -> list[PortRange]:
    """A pod's container ports with these names and protocols."""
    spec = pod.get("spec") or {}
    found: list[PortRange] = []
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        for port in container.get("ports") or []:
            protocol = port.get("protocol") or "TCP"
            if (protocol, port.get("name")) in named:
                found.append((protocol, port["containerPort"], port["containerPort"]))
    return found


@functools.lru_cache(maxsize=1024)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # Every pod's rules repeat the same few blocks; parsing them is most of the cost.
    return ipaddress.ip_network(text, strict=False)
