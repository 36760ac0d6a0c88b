"""The pure builders in devspace_server.kube: what each object says, for any space."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client
from test_boundaries import violations

from devspace_server.kube.meta import (
    INSTANCE,
    MANAGED_BY,
    OWNER_ID,
    SPACE_ID,
    is_owned,
    namespace_name,
)
from devspace_server.kube.namespace import make_namespace
from devspace_server.kube.network import make_network_policy
from devspace_server.kube.quota import make_limit_range, make_resource_quota
from devspace_server.kube.rbac import make_role_binding
from devspace_server.kube.secrets import (
    make_ca_secret,
    make_host_key_secret,
    make_principals_secret,
)
from devspace_server.kube.space import make_space_objects
from devspace_server.kube.spec import ClusterSettings, Port, Quota, Resources, SpaceSpec
from devspace_server.kube.workload import make_deployment

SERVER = Path(__file__).resolve().parents[2] / "server/devspace_server"
SETTINGS = ClusterSettings(instance="unit", namespace_prefix="ds-")

names = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
quantities = st.sampled_from(["100m", "1", "2", "64Mi", "1Gi", None])
specs = st.builds(
    SpaceSpec,
    space_id=names,
    owner_id=names,
    name=names,
    image=st.sampled_from(["debian", "ghcr.io/x/y:1", "devspace.test/shell"]),
    host_private_key=st.just("-----BEGIN OPENSSH PRIVATE KEY-----\nAAA\n-----END"),
    ca_public_keys=st.lists(st.just("ssh-ed25519 AAAA ca"), min_size=1, max_size=2).map(tuple),
    principals=st.lists(names, min_size=1, max_size=3).map(tuple),
    command=st.lists(names, max_size=3).map(tuple),
    env=st.lists(st.tuples(names.map(str.upper), names), max_size=3).map(tuple),
    resources=st.builds(Resources, quantities, quantities, quantities, quantities),
    ports=st.lists(st.builds(Port, names, st.integers(1, 65535)), max_size=3).map(tuple),
    stopped=st.booleans(),
    quota=st.builds(Quota, requests_cpu=quantities, limits_memory=quantities),
)


@given(specs)
def test_every_object_is_labelled_as_ours_and_lives_in_the_spaces_namespace(
    spec: SpaceSpec,
) -> None:
    objects = make_space_objects(spec, SETTINGS)
    namespace = namespace_name(spec.space_id, SETTINGS)
    assert objects[0].metadata.name == namespace
    for obj in objects:
        labels = obj.metadata.labels
        assert is_owned(labels, spec.space_id, SETTINGS), obj.kind
        assert labels[OWNER_ID] == spec.owner_id
        assert obj.api_version
        assert obj.kind
        if obj.kind != "Namespace":
            assert obj.metadata.namespace == namespace
    kinds = [obj.kind for obj in objects]
    assert kinds.index("ResourceQuota") < kinds.index("Deployment")
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")


@given(specs)
def test_the_dev_pod_is_restricted_and_tokenless(spec: SpaceSpec) -> None:
    deployment = make_deployment(spec, SETTINGS)
    assert deployment.spec.replicas == (0 if spec.stopped else 1)
    pod = deployment.spec.template.spec
    assert pod.automount_service_account_token is False
    assert pod.share_process_namespace is True
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert not pod.host_network
    assert not pod.host_pid
    assert not pod.host_ipc
    for container in pod.containers:
        context = container.security_context
        assert context.allow_privilege_escalation is False
        assert context.capabilities.drop == ["ALL"]
        assert not context.capabilities.add
        assert context.run_as_user == 1000
        assert {m.mount_path for m in container.volume_mounts} >= {"/workspace"}
    dev, sidecar = pod.containers
    assert dev.image == spec.image
    assert (dev.command or []) == list(spec.command)
    assert sidecar.ports[0].container_port == 2222
    # Only the sidecar sees the host key.
    assert not any("host-key" in m.mount_path for m in dev.volume_mounts)
    # The selector is immutable in Kubernetes: it must not depend on anything that changes.
    assert deployment.spec.selector.match_labels == {SPACE_ID: spec.space_id}


def test_the_namespace_enforces_restricted_pod_security() -> None:
    spec = SpaceSpec("abc", "u1", "n", "img", "key", ("ca",), ("u1",))
    labels = make_namespace(spec, SETTINGS).metadata.labels
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert labels[MANAGED_BY] == "devspace"
    assert labels[INSTANCE] == "unit"


def test_quota_and_limits() -> None:
    spec = SpaceSpec(
        "abc",
        "u1",
        "n",
        "img",
        "key",
        ("ca",),
        ("u1",),
        quota=Quota(requests_cpu="1", limits_cpu=None, pods="3"),
    )
    hard = make_resource_quota(spec, SETTINGS).spec.hard
    assert hard["requests.cpu"] == "1"
    assert hard["pods"] == "3"
    assert "limits.cpu" not in hard
    (limits,) = make_limit_range(spec, SETTINGS).spec.limits
    assert limits.type == "Container"
    assert set(limits.default_request) == {"cpu", "memory"}


def test_the_network_policy_denies_by_default_and_allows_only_the_gateway_in() -> None:
    spec = SpaceSpec("abc", "u1", "n", "img", "key", ("ca",), ("u1",))
    policy = client.ApiClient().sanitize_for_serialization(make_network_policy(spec, SETTINGS))
    body = policy["spec"]
    assert body["podSelector"] == {}
    assert body["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = body["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 2222}]
    (source,) = ingress["from"]
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "gateway"}
    blocks = [p["ipBlock"] for rule in body["egress"] for p in rule["to"] if "ipBlock" in p]
    assert {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]} in blocks
    assert all(block.get("except") for block in blocks)


def test_the_role_binding_names_the_owner_and_the_tenant_role() -> None:
    spec = SpaceSpec("abc", "u-42", "n", "img", "key", ("ca",), ("u-42",))
    binding = make_role_binding(spec, SETTINGS)
    assert binding.role_ref.kind == "ClusterRole"
    assert binding.role_ref.name == SETTINGS.tenant_cluster_role
    (subject,) = binding.subjects
    assert (subject.kind, subject.name) == ("User", "devspace:user:u-42")


def test_secrets_hold_one_file_each_with_a_trailing_newline() -> None:
    spec = SpaceSpec("abc", "u1", "n", "img", "KEY", ("ca1", "ca2 "), ("u1", "u2"))
    assert make_host_key_secret(spec, SETTINGS).string_data == {"ssh_host_ed25519_key": "KEY\n"}
    assert make_ca_secret(spec, SETTINGS).string_data == {"ca.pub": "ca1\nca2\n"}
    assert make_principals_secret(spec, SETTINGS).string_data == {"principals": "u1\nu2\n"}


def test_builders_are_pure() -> None:
    spec = SpaceSpec("abc", "u1", "n", "img", "key", ("ca",), ("u1",))
    serialize = client.ApiClient().sanitize_for_serialization
    assert serialize(make_space_objects(spec, SETTINGS)) == serialize(
        make_space_objects(spec, SETTINGS)
    )


def test_kube_and_reconcile_do_not_import_flask() -> None:
    for package in ("kube", "reconcile"):
        assert violations(SERVER / package, ("flask", "devspace_server.app")) == []
