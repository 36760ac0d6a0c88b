"""`helm lint` and `helm template` with the value sets an admin would use, checked the way a
reviewer would: locked-down pods, least-privilege RBAC from the one source, refused
combinations, and a configuration the server itself accepts."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from devspace_server.config import load_config, load_database_url
from devspace_server.reconcile.settings import load_reconciler_config

from .chart import (
    BASE,
    CHART,
    INGRESS,
    NODEPORT,
    POSTGRES,
    Doc,
    Helm,
    HelmFailed,
    by_kind,
    byo_secrets,
    containers,
    merged,
    named,
    pod_templates,
)
from .conftest import Keys
from .podenv import Objects, container_environ, find_container

NAMES = ("sqlite", "postgresql", "byo-secrets", "nodeport", "ingress")
DB_URL = "postgresql://devspace:pw@db.example.com/devspace"


def value_set(name: str, keys: Keys) -> dict[str, Any]:
    layers = {
        "sqlite": {},
        "postgresql": POSTGRES,
        "byo-secrets": byo_secrets(keys.ca.public, keys.host.public),
        "nodeport": NODEPORT,
        "ingress": INGRESS,
    }
    return merged(BASE, layers[name])


def own_secrets(keys: Keys) -> dict[str, dict[str, str]]:
    """The Secrets the value sets name but the chart does not make (the admin's own)."""
    return {
        "devspace-db": {"url": DB_URL},
        "my-server": {
            "secret-key": "k" * 8 + "0123456789abcdefghijklmnopqrstuvwxyz",
            "ssh-ca-key": keys.ca.private,
        },
        "my-gateway-auth": {"secret": "g" * 8 + "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"},
        "my-host-key": {"ssh_host_key": keys.host.private},
        "my-metrics": {"token": "m" * 8 + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"},
        "my-host-key-encryption": {"keys": "lgqXgT1C0xPjLJd1ZyvJbNg5w6CfR9w3mF1q2Xw8Vb0=\n"},
        "corp-sso": {"client-secret": "corp-client-secret"},
        "github-oauth": {"secret": "github-client-secret"},
    }


@pytest.fixture(params=NAMES)
def rendered(request: pytest.FixtureRequest, helm: Helm, keys: Keys) -> tuple[str, list[Doc]]:
    name: str = request.param
    return name, helm.template(value_set(name, keys))


@pytest.mark.parametrize("name", NAMES)
def test_lint_passes(helm: Helm, keys: Keys, name: str) -> None:
    values = helm.values_file(value_set(name, keys))
    out = helm("lint", "--strict", str(CHART), "--values", str(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_every_pod_is_non_root_read_only_and_bounded(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    workloads = dict(pod_templates(docs))
    assert {n.rsplit("-", 1)[-1] for n in workloads} >= {"api", "reconciler", "gateway"}
    for workload, pod in workloads.items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, workload
        assert security["runAsUser"] != 0, workload
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        assert not pod.get("hostNetwork"), workload
        assert not pod.get("hostPID"), workload
        for container in containers(pod):
            where = f"{workload}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context.get("privileged") is not True, where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where
        for container in pod["containers"]:
            if workload.endswith("migrate"):
                continue  # a Job's container finishes; probes would only restart it
            where = f"{workload}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where


def test_only_the_reconciler_gets_a_kubernetes_token(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    for workload, pod in pod_templates(docs):
        assert pod["automountServiceAccountToken"] is workload.endswith("-reconciler"), workload
    for account in by_kind(docs, "ServiceAccount"):
        name = account["metadata"]["name"]
        assert account["automountServiceAccountToken"] is name.endswith("-reconciler"), name


def _file_documents(name: str) -> list[Doc]:
    text = (CHART / "files" / name).read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def test_rbac_is_the_files_rules_bound_to_the_chart_identity(helm: Helm) -> None:
    docs = helm.template(BASE, namespace="ds-system")
    roles = by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
    sources = _file_documents("reconciler-rbac.yaml") + _file_documents("tenant-clusterrole.yaml")
    # One source: each rendered role carries exactly the rules of its file, nothing added.
    assert sorted(yaml.safe_dump(r["rules"]) for r in roles) == sorted(
        yaml.safe_dump(s["rules"]) for s in sources
    )
    for role in roles:
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            assert not {"escalate", "impersonate"} & set(rule["verbs"]), rule
            if "bind" in rule["verbs"]:
                assert rule["resourceNames"] == ["devspace-tenant"], rule
    tenant = named(docs, "ClusterRole", "devspace-tenant")
    assert tenant["metadata"]["name"] == "devspace-tenant"  # the name the reconciler binds
    names = {(r["kind"], r["metadata"]["name"]) for r in roles}
    bindings = by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding")
    assert len(bindings) == 2  # the tenant role is bound per space, by the reconciler
    for binding in bindings:
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in names
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "rel-devspace-reconciler", "namespace": "ds-system"}
        ]
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "ds-system"
    environment = named(docs, "ConfigMap", "-server")["data"]
    assert environment["DEVSPACE_LEASE_NAMESPACE"] == "ds-system"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"publicUrl": ""}, "publicUrl is required"),
        ({"api": {"replicas": 3}}, "api.replicas is 3 but database.type is sqlite"),
        (
            {"database": {"type": "postgresql"}},
            "database.postgresql.existingSecret is empty",
        ),
        ({"server": {"existingSecret": "mine"}}, "sshCA.publicKey is empty"),
        (
            {"gateway": {"hostKey": {"existingSecret": "mine"}}},
            "gateway.hostKey.publicKey is empty",
        ),
        ({"ingress": {"enabled": True}}, "ingress.host is empty"),
        (
            {"ingress": {"enabled": True, "host": "other.example.com"}},
            "must name the same host",
        ),
        ({"gateway": {"service": {"nodePort": 30022}}}, "only used with type NodePort"),
        ({"gateway": {"service": {"type": "ExternalName"}}}, "gateway/service/type"),
        ({"publicUrl": "http://devspace.example.com"}, "/publicUrl"),
        ({"api": {"replicaz": 2}}, "'replicaz' not allowed"),
    ],
)
def test_refused_combinations_fail_with_a_clear_message(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmFailed) as failed:
        helm.template(merged(BASE, values))
    assert message in str(failed.value)


def test_several_reconcilers_on_sqlite_share_the_api_node(helm: Helm) -> None:
    docs = helm.template(merged(BASE, {"reconciler": {"replicas": 3}}))
    reconciler = named(docs, "Deployment", "-reconciler")
    assert reconciler["spec"]["replicas"] == 3
    pod = reconciler["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {named(docs, "PersistentVolumeClaim", "-data")["metadata"]["name"]}
    assert named(docs, "PodDisruptionBudget", "-reconciler")["spec"]["maxUnavailable"] == 1


def test_migrations_run_once_per_rollout(helm: Helm) -> None:
    sqlite = helm.template(BASE)
    api = named(sqlite, "Deployment", "-api")["spec"]
    assert api["strategy"]["type"] == "Recreate"
    (init,) = api["template"]["spec"]["initContainers"]
    assert init["command"] == ["devspace-server", "migrate"]
    assert not by_kind(sqlite, "Job")

    postgres = helm.template(merged(BASE, POSTGRES))
    api = named(postgres, "Deployment", "-api")["spec"]
    assert api["replicas"] == 3
    assert "initContainers" not in api["template"]["spec"]
    (job,) = by_kind(postgres, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["devspace-server", "migrate"]
    assert not by_kind(postgres, "PersistentVolumeClaim")
    assert {p["metadata"]["name"] for p in by_kind(postgres, "PodDisruptionBudget")} == {
        "rel-devspace-api",
        "rel-devspace-reconciler",
        "rel-devspace-gateway",
    }


def _public_line(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def test_generated_public_keys_are_the_private_keys_halves(helm: Helm, tmp_path: Path) -> None:
    docs = helm.template(BASE)
    objects = Objects(docs, {})
    server = objects.get("Secret", "rel-devspace-server")
    host = objects.get("Secret", "rel-devspace-gateway-host-key")["ssh_host_key"]
    public = objects.get("ConfigMap", "rel-devspace-ssh")
    assert public["ca.pub"].strip() == _public_line(server["ssh-ca-key"])
    assert public["ca.pub"].startswith("ssh-ed25519 ")
    assert public["gateway_host_key.pub"].strip() == _public_line(host)
    # OpenSSH itself reads the host key the gateway's sshd will load.
    key_file = tmp_path / "host"
    key_file.write_text(host)
    key_file.chmod(0o600)
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key_file)], capture_output=True, text=True, check=True
    )
    assert derived.stdout.strip() == public["gateway_host_key.pub"].strip()
    assert len(set(server.values())) == 2
    assert min(map(len, server.values())) >= 48


def test_the_server_accepts_what_each_container_is_given(
    rendered: tuple[str, list[Doc]], keys: Keys, tmp_path: Path
) -> None:
    name, docs = rendered
    objects = Objects(docs, own_secrets(keys))
    api_pod = named(docs, "Deployment", "-api")["spec"]["template"]["spec"]
    api = load_config(
        container_environ(api_pod, find_container(api_pod, "api"), objects, tmp_path / "api")
    )
    assert api.public_url == BASE["publicUrl"]
    assert api.ssh_ca is not None
    assert api.gateway_secret is not None
    assert api.metrics_token is not None
    expected_ca = keys.ca.public if name == "byo-secrets" else None
    if expected_ca:
        assert api.ssh_ca.trusted_public_keys[0].split()[:2] == expected_ca.split()[:2]
    if name == "postgresql":
        assert api.database_url.startswith("postgresql+psycopg://")
    else:
        assert api.database_url.startswith("sqlite:")
    if name == "ingress":
        assert [p.name for p in api.upstream] == ["corp", "github"]
        assert api.gateway is not None
        assert api.gateway.port == 2222
        assert api.cluster.quota_defaults.spaces == 5
    reconciler_pod = named(docs, "Deployment", "-reconciler")["spec"]["template"]["spec"]
    # Least privilege: the reconciler holds cluster credentials, so it gets no other secret
    # than the key that opens the sidecars' host keys (test_host_key_secret.py).
    secrets = [v["name"] for v in reconciler_pod["volumes"] if "secret" in v or "projected" in v]
    assert secrets == ["host-key-encryption"]
    reconciler = load_reconciler_config(
        container_environ(
            reconciler_pod, find_container(reconciler_pod, "reconciler"), objects, tmp_path / "rec"
        )
    )
    assert [k.split()[:2] for k in reconciler.ca_public_keys] == [
        k.split()[:2] for k in api.ssh_ca.trusted_public_keys
    ]
    # The same database (each container's files are under its own root here).
    in_rec = reconciler.database_url.replace(str(tmp_path / "rec"), "")
    assert in_rec == api.database_url.replace(str(tmp_path / "api"), "")
    assert reconciler.cluster.settings.gateway_pod_labels == (
        ("app.kubernetes.io/component", "gateway"),
        ("app.kubernetes.io/instance", "rel"),
        ("app.kubernetes.io/name", "devspace"),
    )
    # The gateway trusts the CA whose key the server signs with.
    ca_pub = objects.get("ConfigMap", "rel-devspace-ssh")["ca.pub"].split()[:2]
    assert api.ssh_ca.trusted_public_keys[0].split()[:2] == ca_pub
    for migrate in [
        c for _, p in pod_templates(docs) for c in containers(p) if c["name"] == "migrate"
    ]:
        environ = {e["name"]: e.get("value", DB_URL) for e in migrate["env"]}
        assert load_database_url(environ).split(":")[0] in ("sqlite", "postgresql+psycopg")


def test_gateway_pods_match_the_space_network_policy_selector(
    rendered: tuple[str, list[Doc]],
) -> None:
    _, docs = rendered
    environment = named(docs, "ConfigMap", "-server")["data"]
    wanted = dict(pair.split("=") for pair in environment["DEVSPACE_GATEWAY_POD_LABELS"].split(","))
    labels = named(docs, "Deployment", "-gateway")["spec"]["template"]["metadata"]["labels"]
    assert wanted.items() <= labels.items()
    for other in ("-api", "-reconciler"):
        other_labels = named(docs, "Deployment", other)["spec"]["template"]["metadata"]["labels"]
        assert not wanted.items() <= other_labels.items()


@pytest.mark.parametrize(
    ("values", "service_type", "node_port"),
    [
        ({}, "LoadBalancer", None),
        (NODEPORT, "NodePort", 30022),
        ({"gateway": {"service": {"type": "ClusterIP"}}}, "ClusterIP", None),
    ],
)
def test_gateway_service_type(
    helm: Helm, values: dict[str, Any], service_type: str, node_port: int | None
) -> None:
    service = named(helm.template(merged(BASE, values)), "Service", "-gateway")["spec"]
    assert service["type"] == service_type
    (port,) = service["ports"]
    assert (port["port"], port["targetPort"], port.get("nodePort")) == (22, "ssh", node_port)
    assert ("externalTrafficPolicy" in service) is (service_type != "ClusterIP")


def test_ingress_and_service_monitor(helm: Helm) -> None:
    docs = helm.template(merged(BASE, INGRESS))
    (ingress,) = by_kind(docs, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "devspace.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "rel-devspace-api"
    assert ingress["spec"]["tls"] == [
        {"hosts": ["devspace.example.com"], "secretName": "devspace-tls"}
    ]
    (monitor,) = by_kind(docs, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["authorization"]["credentials"] == {
        "name": "rel-devspace-metrics",
        "key": "token",
    }
    assert not by_kind(helm.template(BASE), "Ingress")


def test_bring_your_own_secrets_replace_the_generated_ones(helm: Helm, keys: Keys) -> None:
    docs = helm.template(value_set("byo-secrets", keys))
    assert not by_kind(docs, "Secret")
    public = named(docs, "ConfigMap", "-ssh")["data"]
    assert public["ca.pub"].strip() == keys.ca.public
    assert public["gateway_host_key.pub"].strip() == keys.host.public
    referenced = set()
    for _, pod in pod_templates(docs):
        for volume in pod["volumes"]:
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    referenced.add(source["secret"]["name"])
    assert referenced == {
        "my-server",
        "my-gateway-auth",
        "my-host-key",
        "my-metrics",
        "my-host-key-encryption",
    }


def test_the_gateway_reaches_only_dns_the_api_and_sidecars(helm: Helm) -> None:
    docs = helm.template(BASE)
    policy = named(docs, "NetworkPolicy", "-gateway")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
    assert ports == [53, 53, 2222, 8080]
    spaces = policy["egress"][2]["to"][0]["namespaceSelector"]["matchLabels"]
    assert spaces == {"app.kubernetes.io/managed-by": "devspace", "devspace.dev/instance": "rel"}
    deny = named(docs, "NetworkPolicy", "-default-deny")["spec"]
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny


def test_secrets_are_files_never_variables(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    for kind in ("ConfigMap",):
        for doc in by_kind(docs, kind):
            text = yaml.safe_dump(doc["data"])
            assert "PRIVATE KEY" not in text
    for _, pod in pod_templates(docs):
        for container in containers(pod):
            for variable in container.get("env", []):
                secret = variable.get("valueFrom", {}).get("secretKeyRef")
                # Only the database URL (the driver reads it from the environment anyway).
                assert secret is None or variable["name"] == "DEVSPACE_DATABASE_URL"
    for secret in by_kind(docs, "Secret"):
        for value in secret["data"].values():
            base64.b64decode(value, validate=True)
