"""nftables text for the test node's NetworkPolicy table (test infrastructure), pure.

testbed.netpolicy works out what a pod's policies allow, as nft match expressions built with
the helpers here; script() wraps them in the table that testbed.firewall loads into the pod's
network namespace. One table, `inet devspace_policy`, with a chain per isolated direction:
`ingress` on the input hook, `egress` on the output hook, both dropping what no rule accepts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PortRange = tuple[str, int | None, int | None]  # protocol; first and last port, None for all

TABLE = "devspace_policy"
KEYWORDS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}  # the API's protocols, as nft says them


def port_matches(ranges: list[PortRange]) -> list[str]:
    """nft matches, one per protocol: `tcp dport { 80, 8000-8080 }`, or `meta l4proto udp`."""
    matches = []
    for protocol, keyword in KEYWORDS.items():
        mine = [(first, last) for p, first, last in ranges if p == protocol]
        if not mine:
            continue
        if any(first is None for first, _ in mine):
            matches.append(f"meta l4proto {keyword}")
            continue
        merged: list[list[int]] = []
        for first, last in sorted((f, la) for f, la in mine if f is not None and la is not None):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        items = [str(a) if a == b else f"{a}-{b}" for a, b in merged]
        matches.append(f"{keyword} dport {one_or_set(items)}")
    return matches


def one_or_set(items: Iterable[Any]) -> str:
    """`x` for one item, `{ x, y }` for several (nft's anonymous set)."""
    listed = [str(item) for item in items]
    return listed[0] if len(listed) == 1 else "{ " + ", ".join(listed) + " }"


def collapse(networks: Iterable[Network]) -> list[Network]:
    """The same addresses in the fewest networks, IPv4 first."""
    # nft refuses overlapping intervals in some versions; merged ones are never ambiguous.
    found = list(networks)
    merged: list[Network] = []
    for version in (4, 6):
        merged += ipaddress.collapse_addresses(n for n in found if n.version == version)  # type: ignore[arg-type]
    return merged


def script(ingress: list[str] | None, egress: list[str] | None, node_address: str) -> str:
    """The nft script that replaces the pod's table: a chain for each direction that is
    isolated (not None), accepting its rules' matches, loopback, replies, and, inbound, the
    node. With neither isolated it only removes the table.
    """
    # "table" then "delete table" removes ours whether or not it exists, in the same
    # transaction that makes the new one: there is no moment without rules.
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}"]
    chains = [
        (name, hook, interface, rules)
        for name, hook, interface, rules in (
            ("ingress", "input", "iif", ingress),
            ("egress", "output", "oif", egress),
        )
        if rules is not None
    ]
    if not chains:
        return "\n".join(lines) + "\n"
    lines.append(f"table inet {TABLE} {{")
    for name, hook, interface, rules in chains:
        lines += [
            f"  chain {name} {{",
            f"    type filter hook {hook} priority filter; policy drop;",
            f'    {interface} "lo" accept',
            "    ct state established,related accept",
        ]
        if name == "ingress":
            # kubelet's probes come from the node, which the API reference always allows.
            lines.append(f'    ip saddr {node_address} accept comment "the pod\'s node"')
        lines += [f"    {rule}" for rule in rules]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
