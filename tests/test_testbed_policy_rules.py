"""The test node's NetworkPolicy rule generation (testbed.netpolicy), pure: no root, no cluster.

Each case reads the allow rules of the chain it is about. Two tests at the end need root (and
skip without): one loads every script these cases made into nft's parser, so a rule that reads
right but that nft would refuse fails here rather than on the node; the other drives the
Firewall (testbed.firewall) on a network namespace of its own, for what the API server cannot
be made to send: a policy the node does not understand.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed.firewall import KINDS, Firewall
from testbed.netns import NetworkError, PodNetwork, ip
from testbed.netpolicy import Cluster, PodRules, UnsupportedPolicy, pod_rules, selects

NODE = "10.213.9.1"
SCRIPTS: list[str] = []  # every script made here, for the syntax check at the end

Object = dict[str, Any]


def pod(
    name: str,
    namespace: str,
    ip: str | None,
    *,
    labels: dict[str, str] | None = None,
    ports: list[Object] | None = None,
    phase: str = "Running",
) -> Object:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels},
        "spec": {"containers": [{"name": "main", "ports": ports or []}]},
        "status": {"phase": phase, **({"podIP": ip} if ip else {})},
    }


def policy(name: str, namespace: str, **spec: Any) -> Object:
    spec.setdefault("podSelector", {})
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def rules(target: Object, *policies: Object, pods: list[Object], **cluster: Any) -> PodRules:
    cluster.setdefault("namespaces", {})
    made = pod_rules(target, Cluster(list(policies), [target, *pods], **cluster), NODE)
    SCRIPTS.append(made.script)
    return made


def allowed(made: PodRules, chain: str) -> list[str]:
    """The allow rules of one chain, without the policy comments and the fixed preamble."""
    lines = made.script.splitlines()
    start = lines.index(f"  chain {chain} {{")
    end = lines.index("  }", start)
    body = [line.strip() for line in lines[start + 1 : end]]
    fixed = ('iif "lo"', 'oif "lo"', "ct state", "type filter", f"ip saddr {NODE} ")
    return [
        line.split(" comment ")[0].removesuffix("accept").strip()
        for line in body
        if not line.startswith(fixed)
    ]


A = pod("a", "team-a", "10.213.9.2", labels={"app": "dev"})
GATEWAY = pod("gw", "gateway", "10.213.9.3", labels={"role": "gateway"})
IMPOSTOR = pod("impostor", "team-b", "10.213.9.4", labels={"role": "gateway"})
BYSTANDER = pod("idle", "gateway", "10.213.9.5", labels={"role": "other"})
NAMESPACES = {
    "team-a": {"kubernetes.io/metadata.name": "team-a", "tier": "tenant"},
    "team-b": {"kubernetes.io/metadata.name": "team-b", "tier": "tenant"},
    "gateway": {"kubernetes.io/metadata.name": "gateway", "tier": "system"},
}
EVERYONE = [GATEWAY, IMPOSTOR, BYSTANDER]


def test_a_pod_no_policy_selects_is_not_isolated() -> None:
    elsewhere = policy("deny", "team-b", policyTypes=["Ingress", "Egress"])
    other_pods = policy("deny", "team-a", podSelector={"matchLabels": {"app": "web"}})
    made = rules(A, elsewhere, other_pods, pods=EVERYONE)
    assert made.isolated == frozenset()
    # Nothing but the removal of a table an earlier policy may have left.
    assert "chain" not in made.script
    assert "delete table inet devspace_policy" in made.script


def test_default_deny_allows_only_loopback_replies_and_the_node() -> None:
    made = rules(A, policy("deny", "team-a", policyTypes=["Ingress", "Egress"]), pods=EVERYONE)
    assert made.isolated == {"Ingress", "Egress"}
    assert made.allowed == 0
    assert allowed(made, "ingress") == allowed(made, "egress") == []
    assert "policy drop;" in made.script
    assert f'ip saddr {NODE} accept comment "the pod\'s node"' in made.script
    assert 'iif "lo" accept' in made.script
    assert "ct state established,related accept" in made.script
    # The node is a source it accepts, not a destination: egress to it is not implied.
    egress = made.script.split("chain egress")[1]
    assert NODE not in egress


def test_policy_types_default_to_ingress_plus_egress_when_it_has_egress_rules() -> None:
    ingress_only = rules(A, policy("p", "team-a", ingress=[{}]), pods=EVERYONE)
    assert ingress_only.isolated == {"Ingress"}
    assert allowed(ingress_only, "ingress") == [""]  # `- {}`: everything
    both = rules(A, policy("p", "team-a", egress=[{"to": [{"podSelector": {}}]}]), pods=EVERYONE)
    assert both.isolated == {"Ingress", "Egress"}
    assert allowed(both, "ingress") == []
    assert allowed(both, "egress") == ["ip daddr 10.213.9.2"]  # the only pod in team-a


def test_namespace_and_pod_selector_together_select_only_pods_matching_both() -> None:
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}},
        "podSelector": {"matchLabels": {"role": "gateway"}},
    }
    made = rules(
        A,
        policy("gw", "team-a", ingress=[{"from": [peer], "ports": [{"port": 2222}]}]),
        pods=EVERYONE,
    )
    # Not the impostor (right labels, wrong namespace), not the bystander (wrong labels).
    assert allowed(made, "ingress") == ["ip saddr 10.213.9.3 tcp dport 2222"]


def test_pod_selector_alone_means_the_policys_own_namespace() -> None:
    sibling = pod("sibling", "team-a", "10.213.9.6", labels={"role": "gateway"})
    made = rules(
        A,
        policy(
            "p",
            "team-a",
            ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "gateway"}}}]}],
        ),
        pods=[*EVERYONE, sibling],
    )
    assert allowed(made, "ingress") == ["ip saddr 10.213.9.6"]


def test_namespace_selector_alone_selects_every_pod_there_with_match_expressions() -> None:
    peer = {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["system", "infra"]},
                {"key": "frozen", "operator": "DoesNotExist"},
            ]
        }
    }
    made = rules(
        A, policy("p", "team-a", ingress=[{"from": [peer]}]), pods=EVERYONE, namespaces=NAMESPACES
    )
    assert allowed(made, "ingress") == ["ip saddr { 10.213.9.3, 10.213.9.5 }"]
    # Unlabelled (not yet seen) namespaces have only their name label: not "system".
    assert (
        allowed(
            rules(A, policy("p", "team-a", ingress=[{"from": [peer]}]), pods=EVERYONE), "ingress"
        )
        == []
    )


def test_a_selector_that_matches_no_pod_allows_nothing() -> None:
    peer = {"podSelector": {"matchLabels": {"app": "nobody"}}}
    made = rules(A, policy("p", "team-a", ingress=[{"from": [peer]}]), pods=EVERYONE)
    assert made.isolated == {"Ingress"}
    assert allowed(made, "ingress") == []


def test_ip_block_with_except_and_the_whole_internet() -> None:
    world = {
        "ipBlock": {
            "cidr": "0.0.0.0/0",
            "except": ["169.254.169.254/32", "10.213.0.0/16", "10.213.9.0/24"],
        }
    }
    v6 = {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128"]}}
    narrow = {"ipBlock": {"cidr": "10.213.9.0/24", "except": ["10.213.9.7/32"]}}
    made = rules(
        A, policy("p", "team-a", egress=[{"to": [world, v6]}, {"to": [narrow]}]), pods=EVERYONE
    )
    assert allowed(made, "egress") == [
        # The overlapping excepts are merged: nft refuses overlaps in some versions.
        "meta nfproto ipv4 ip daddr != { 10.213.0.0/16, 169.254.169.254/32 }",
        "meta nfproto ipv6 ip6 daddr != fd00:ec2::254/128",
        "ip daddr 10.213.9.0/24 ip daddr != 10.213.9.7/32",
    ]


def test_ports_numbers_ranges_protocols_and_named_ports() -> None:
    target = pod(
        "t",
        "team-a",
        "10.213.9.8",
        ports=[
            {"name": "ssh", "containerPort": 2222},
            {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
        ],
    )
    ports = [
        {"port": 80},
        {"port": 8000, "endPort": 8080, "protocol": "TCP"},
        {"port": 8070, "endPort": 8090},  # overlaps the one before
        {"port": "ssh"},
        {"port": "dns", "protocol": "UDP"},
        {"port": "dns"},  # TCP "dns": the pod has none
        {"protocol": "SCTP"},
    ]
    made = rules(target, policy("p", "team-a", ingress=[{"ports": ports}]), pods=EVERYONE)
    assert allowed(made, "ingress") == [
        "tcp dport { 80, 2222, 8000-8090 }",
        "udp dport 5353",
        "meta l4proto sctp",
    ]
    missing = rules(
        target, policy("p", "team-a", ingress=[{"ports": [{"port": "http"}]}]), pods=EVERYONE
    )
    assert allowed(missing, "ingress") == []  # a named port the pod lacks matches nothing


def test_named_ports_on_egress_are_the_destination_pods_own() -> None:
    web = pod("web", "team-b", "10.213.9.9", ports=[{"name": "http", "containerPort": 8080}])
    api = pod("api", "team-b", "10.213.9.10", ports=[{"name": "http", "containerPort": 9000}])
    to = [{"namespaceSelector": {}}]
    made = rules(
        A, policy("p", "team-a", egress=[{"to": to, "ports": [{"port": "http"}]}]), pods=[web, api]
    )
    assert allowed(made, "egress") == [
        "ip daddr 10.213.9.9 tcp dport 8080",
        "ip daddr 10.213.9.10 tcp dport 9000",
    ]


def test_several_policies_allow_the_union_of_their_rules() -> None:
    first = policy(
        "ssh",
        "team-a",
        ingress=[
            {
                "from": [
                    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "gateway"}}}
                ],
                "ports": [{"port": 2222}],
            }
        ],
    )
    second = policy(
        "web",
        "team-a",
        podSelector={"matchLabels": {"app": "dev"}},
        ingress=[{"ports": [{"port": 8080}]}],
    )
    not_mine = policy(
        "db",
        "team-a",
        podSelector={"matchLabels": {"app": "db"}},
        ingress=[{"ports": [{"port": 5432}]}],
    )
    made = rules(A, first, second, not_mine, pods=EVERYONE)
    assert allowed(made, "ingress") == [
        "ip saddr { 10.213.9.3, 10.213.9.4 } tcp dport 2222",
        "tcp dport 8080",
    ]


def test_peers_are_pods_holding_an_address_now() -> None:
    finished = pod("done", "team-a", "10.213.9.11", phase="Succeeded")
    unstarted = pod("new", "team-a", None)
    running = pod("up", "team-a", "10.213.9.12")
    made = rules(
        A,
        policy("p", "team-a", ingress=[{"from": [{"podSelector": {}}]}]),
        pods=[finished, unstarted, running],
        # The node knows the address of a pod it is starting before the API does.
        addresses={"uid-new": "10.213.9.13"},
    )
    assert allowed(made, "ingress") == ["ip saddr { 10.213.9.2, 10.213.9.12, 10.213.9.13 }"]


@pytest.mark.parametrize(
    ("spec", "isolated", "problem"),
    [
        (
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}},
            {"Ingress", "Egress"},
            "operator 'Near'",
        ),
        ({"policyTypes": ["Sideways"]}, {"Ingress", "Egress"}, "policyTypes"),
        ({"futureField": True}, {"Ingress", "Egress"}, "futureField"),
        ({"ingress": [{"from": [{"serviceSelector": {}}]}]}, {"Ingress"}, "serviceSelector"),
        ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}, {"Ingress"}, "'ICMP'"),
        ({"ingress": [{"from": [{"ipBlock": {"cidr": "nonsense"}}]}]}, {"Ingress"}, "nonsense"),
        ({"ingress": [{"from": [{}]}]}, {"Ingress"}, "empty peer"),
    ],
)
def test_what_it_does_not_understand_fails_closed(
    spec: Object, isolated: set[str], problem: str
) -> None:
    broken = policy("broken", "team-a", **spec)
    fine = policy("fine", "team-a", ingress=[{"ports": [{"port": 80}]}])
    made = rules(A, broken, fine, pods=EVERYONE)
    assert made.isolated == isolated | {"Ingress"}
    [reported] = made.problems
    assert problem in reported
    assert "fail closed" in reported
    assert "team-a/broken" in reported
    # The broken policy adds nothing; the one beside it still allows what it allows.
    assert allowed(made, "ingress") == ["tcp dport 80"]
    if "Egress" in isolated:
        assert allowed(made, "egress") == []


def test_a_broken_rule_takes_its_whole_policy_direction_with_it() -> None:
    half = policy(
        "half",
        "team-a",
        ingress=[{"ports": [{"port": 22}]}, {"ports": [{"port": 23, "endPort": 1}]}],
    )
    made = rules(A, half, pods=EVERYONE)
    assert allowed(made, "ingress") == []
    assert "endPort" in made.problems[0] or "23" in made.problems[0]


@pytest.mark.parametrize(
    ("expression", "labels", "expected"),
    [
        ({"key": "tier", "operator": "In", "values": ["a", "b"]}, {"tier": "b"}, True),
        ({"key": "tier", "operator": "In", "values": ["a"]}, {}, False),
        ({"key": "tier", "operator": "NotIn", "values": ["a"]}, {}, True),
        ({"key": "tier", "operator": "NotIn", "values": ["a"]}, {"tier": "a"}, False),
        ({"key": "tier", "operator": "Exists"}, {"tier": ""}, True),
        ({"key": "tier", "operator": "DoesNotExist"}, {"tier": ""}, False),
    ],
)
def test_match_expressions(expression: Object, labels: dict[str, str], expected: bool) -> None:
    assert selects({"matchExpressions": [expression]}, labels) is expected


labels_strategy = st.dictionaries(st.sampled_from("abc"), st.sampled_from("xyz"), max_size=3)


@given(
    labels=labels_strategy,
    wanted=labels_strategy,
    key=st.sampled_from("abc"),
    values=st.lists(st.sampled_from("xyz")),
)
def test_selector_operators_are_complements(
    labels: dict[str, str], wanted: dict[str, str], key: str, values: list[str]
) -> None:
    def expr(operator: str) -> Object:
        return {"matchExpressions": [{"key": key, "operator": operator, "values": values}]}

    assert selects(expr("In"), labels) is not selects(expr("NotIn"), labels)
    assert selects(expr("Exists"), labels) is not selects(expr("DoesNotExist"), labels)
    assert selects({"matchLabels": wanted}, labels) is (wanted.items() <= labels.items())
    assert selects({}, labels)


def test_selects_refuses_an_unknown_operator_even_when_labels_already_differ() -> None:
    with pytest.raises(UnsupportedPolicy):
        selects(
            {"matchLabels": {"x": "1"}, "matchExpressions": [{"key": "y", "operator": "Gt"}]}, {}
        )


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
    reason="nft needs root (it checks against the kernel)",
)


@needs_root
def test_every_script_made_here_is_one_nft_accepts() -> None:
    assert len(SCRIPTS) > 20, "run with the cases above"
    for script in SCRIPTS:
        # A throwaway network namespace: --check touches nothing, and even so not the host's.
        result = subprocess.run(
            ["unshare", "--net", "nft", "--check", "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{result.stderr}\n{script}"


@needs_root
def test_the_firewall_fails_closed_on_what_it_does_not_understand_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"dstest-fw-{uuid.uuid4().hex[:8]}"
    ip("netns", "add", name)
    try:
        network = PodNetwork(name, "unused", ipaddress.IPv4Address("10.213.250.2"))
        target = pod("a", "team-a", None, labels={"app": "dev"})
        pods: dict[str, Object] = {"uid-a": target}
        policies: dict[str, Object] = {}
        firewall = Firewall("10.213.250.1", pods, {}, policies)

        def table() -> str:
            listed = subprocess.run(
                [
                    "nsenter",
                    f"--net=/run/netns/{name}",
                    "nft",
                    "list",
                    "table",
                    "inet",
                    "devspace_policy",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            return listed.stdout

        # Before the node has listed policies, no pod gets a network.
        with pytest.raises(NetworkError, match="not listed"):
            firewall.secure(target, network)
        for kind in KINDS:
            firewall.changed(kind, listed=True)

        policies["p"] = policy("broken", "team-a", futureField=True, ingress=[{}], egress=[{}])
        with caplog.at_level(logging.ERROR, logger="testbed.firewall"):
            firewall.secure(target, network)
        rules = table()
        assert rules.count("policy drop;") == 2
        assert "team-a/broken" not in rules  # `ingress: [{}]` would allow everything
        assert "team-a/broken" in caplog.text
        assert "futureField" in caplog.text
        assert "fail closed" in caplog.text

        # Fixed, the policy's rules replace the deny; deleted, nothing is left.
        policies["p"] = policy("fixed", "team-a", ingress=[{"ports": [{"port": 80}]}])
        firewall.changed("networkpolicy")
        firewall.sync()
        rules = table()
        assert "tcp dport 80 accept" in rules
        assert "chain egress" not in rules
        del policies["p"]
        firewall.changed("networkpolicy")
        firewall.sync()
        assert table() == ""
    finally:
        ip("netns", "del", name, check=False)
