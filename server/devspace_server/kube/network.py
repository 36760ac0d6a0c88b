"""The space's NetworkPolicy: deny by default, SSH in from the gateway, egress to the world.

Ingress: only the gateway's pods, only to the sidecar's port. Egress: cluster DNS, and any
address except the blocked ranges (cloud metadata, and the cluster's own ranges where the
installation lists them), so a tenant reaches the internet but not another tenant's pods.
"""

from __future__ import annotations

from kubernetes import client

from devspace_server.kube.meta import object_meta
from devspace_server.kube.spec import SIDECAR_PORT, ClusterSettings, SpaceSpec

POLICY_NAME = "space-isolation"


def make_network_policy(spec: SpaceSpec, settings: ClusterSettings) -> client.V1NetworkPolicy:
    """The one NetworkPolicy of a space; it selects every pod in the namespace."""
    gateway = client.V1NetworkPolicyPeer(
        namespace_selector=client.V1LabelSelector(
            match_labels=dict(settings.gateway_namespace_labels)
        ),
        pod_selector=client.V1LabelSelector(match_labels=dict(settings.gateway_pod_labels)),
    )
    dns = client.V1NetworkPolicyPeer(
        namespace_selector=client.V1LabelSelector(
            match_labels={"kubernetes.io/metadata.name": settings.dns_namespace}
        ),
        pod_selector=client.V1LabelSelector(match_labels=dict(settings.dns_pod_labels)),
    )
    world = [
        client.V1NetworkPolicyPeer(
            ip_block=client.V1IPBlock(cidr="0.0.0.0/0", _except=list(settings.blocked_cidrs))
        ),
        client.V1NetworkPolicyPeer(
            ip_block=client.V1IPBlock(cidr="::/0", _except=list(settings.blocked_cidrs_v6))
        ),
    ]
    return client.V1NetworkPolicy(
        api_version="networking.k8s.io/v1",
        kind="NetworkPolicy",
        metadata=object_meta(POLICY_NAME, spec, settings),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(),
            policy_types=["Ingress", "Egress"],
            ingress=[
                client.V1NetworkPolicyIngressRule(
                    _from=[gateway],
                    ports=[client.V1NetworkPolicyPort(protocol="TCP", port=SIDECAR_PORT)],
                )
            ],
            egress=[
                client.V1NetworkPolicyEgressRule(
                    to=[dns],
                    ports=[
                        client.V1NetworkPolicyPort(protocol="UDP", port=53),
                        client.V1NetworkPolicyPort(protocol="TCP", port=53),
                    ],
                ),
                client.V1NetworkPolicyEgressRule(to=world),
            ],
        ),
    )
