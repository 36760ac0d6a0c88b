"""The chart against the test bed's real kube-apiserver: every rendered object through
server-side dry-run, then `helm install`, `upgrade`, `uninstall` and a reinstall for real.

These tests judge what the API server decides: admission (Pod Security "restricted"),
validation, RBAC, and the objects helm leaves behind. Whether the installed pods run and
become Ready is test_chart_pods.py's part (the test node runs our built images there).
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from testbed.eventually import eventually

from .chart import BASE, CHART, Helm, HelmFailed, by_kind, merged, pod_templates
from .conftest import Cluster, Keys, tenant_role_exists
from .test_render import NAMES, value_set

pytestmark = pytest.mark.kube
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}

BUILD_CRDS = Path(__file__).resolve().parents[1] / "testbed" / "build-crds"


def service_monitor_crd() -> dict[str, Any]:
    """The Prometheus Operator's ServiceMonitor CRD, generated from its published API types
    (tests/testbed/build-crds), so the chart's ServiceMonitor meets the operator's schema."""
    built = subprocess.run(
        [str(BUILD_CRDS)], check=True, stdout=subprocess.PIPE, text=True, timeout=1800
    )
    crd: dict[str, Any] = yaml.safe_load(Path(built.stdout.splitlines()[-1]).read_text())
    return crd


@pytest.fixture(scope="module")
def service_monitor_kind(kube: client.ApiClient) -> Iterator[None]:
    """The ServiceMonitor kind, as the Prometheus Operator's CRD adds it."""
    extensions = client.ApiextensionsV1Api(kube)
    crd = service_monitor_crd()
    name = crd["metadata"]["name"]
    created = False
    try:
        extensions.create_custom_resource_definition(crd)
        created = True
    except ApiException as error:
        if error.status != 409:
            raise

    def established() -> bool:
        status = extensions.read_custom_resource_definition(name).status
        return any(c.type == "Established" and c.status == "True" for c in status.conditions or [])

    eventually(established, what="the ServiceMonitor CRD")
    yield
    if created:
        extensions.delete_custom_resource_definition(name)


@pytest.mark.usefixtures("service_monitor_kind")
def test_the_service_monitor_schema_is_enforced(kube: client.ApiClient, namespace: str) -> None:
    """The dry runs below mean something: the generated CRD refuses a malformed monitor."""
    resource = DynamicClient(kube).resources.get(
        api_version="monitoring.coreos.com/v1", kind="ServiceMonitor"
    )
    malformed = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "malformed"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "interval": "often"}]},
    }
    with pytest.raises(ApiException) as refused:
        resource.create(body=malformed, namespace=namespace, dry_run="All")
    assert refused.value.status == 422
    assert "spec.endpoints[0].interval" in refused.value.body


@pytest.mark.usefixtures("service_monitor_kind")
@pytest.mark.parametrize("name", NAMES)
def test_every_rendered_object_passes_server_side_dry_run(
    helm: Helm,
    kube: client.ApiClient,
    keys: Keys,
    namespace: str,
    name: str,
) -> None:
    docs = helm.template(value_set(name, keys), namespace=namespace)
    core = client.CoreV1Api(kube)
    core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    # Made for real: a Pod, even a dry-run one, is refused when its ServiceAccount is missing.
    for account in by_kind(docs, "ServiceAccount"):
        core.create_namespaced_service_account(namespace, account)
    # Pod Security admission judges pods, not the Deployments and Jobs that make them: each
    # pod template also goes through as a bare Pod.
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{workload}-pod", "labels": {"test": "dry-run"}},
            "spec": pod,
        }
        for workload, pod in pod_templates(docs)
    ]
    dynamic = DynamicClient(kube)
    refused = []
    for doc in [*docs, *pods]:
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            dynamic.server_side_apply(
                resource,
                body=doc,
                namespace=namespace if resource.namespaced else None,
                field_manager="devspace-chart-test",
                force_conflicts=True,
                dry_run="All",
            )
        except ApiException as error:
            refused.append(f"{doc['kind']} {doc['metadata']['name']}: {error.body}")
    assert not refused, "\n".join(refused)
    assert len(docs) >= 20


class NotAdmitted(Exception):
    """Not every pod exists yet: how many do, and why their ReplicaSets could not make more."""


def _replica_set_failures(apps: client.AppsV1Api, namespace: str) -> list[str]:
    return [
        f"{rs.metadata.name}: {condition.message}"
        for rs in apps.list_namespaced_replica_set(namespace).items
        for condition in rs.status.conditions or []
        if condition.type == "ReplicaFailure"
    ]


def _secret_data(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str]:
    return dict(core.read_namespaced_secret(name, namespace).data)


def test_install_upgrade_uninstall_and_reinstall_keep_the_secrets(
    helm: Helm,
    cluster: Cluster,
    namespace: str,
) -> None:
    core = client.CoreV1Api(cluster.api)
    apps = client.AppsV1Api(cluster.api)
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    # Pods that do not meet "restricted" are refused at creation: the ReplicaSets must still
    # manage to create every pod.
    core.patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})
    release = f"ds-{uuid.uuid4().hex[:6]}"
    # Other tests of this session may have made the cluster-wide tenant role already; the
    # chart then shares it, as a second installation would.
    shared_tenant = tenant_role_exists(rbac)
    values = merged(BASE, {"rbac": {"createTenantClusterRole": not shared_tenant}})
    common = cluster.helm_args(namespace)

    def install(*extra: str) -> None:
        helm(
            "install",
            release,
            str(CHART),
            *common,
            "--values",
            str(helm.values_file(values)),
            *extra,
        )

    fullname = f"{release}-devspace"
    names = [f"{fullname}-{s}" for s in ("server", "gateway-auth", "gateway-host-key", "metrics")]
    install()
    try:
        first = {n: _secret_data(core, namespace, n) for n in names}
        public = core.read_namespaced_config_map(f"{fullname}-ssh", namespace).data
        if not shared_tenant:
            role = rbac.read_cluster_role("devspace-tenant")
            assert role.metadata.annotations["meta.helm.sh/release-name"] == release

        wanted = {"api": 1, "reconciler": 1, "gateway": 2}

        def pods_created() -> bool:
            found = {}
            for component in wanted:
                selector = (
                    f"app.kubernetes.io/instance={release},app.kubernetes.io/component={component}"
                )
                found[component] = len(
                    core.list_namespaced_pod(namespace, label_selector=selector).items
                )
            if found != wanted:
                raise NotAdmitted(found, _replica_set_failures(apps, namespace))
            return True

        eventually(pods_created, what="every workload's pods", timeout=60, ignore=(NotAdmitted,))

        api = apps.read_namespaced_deployment(f"{fullname}-api", namespace)
        before = api.spec.template.metadata.annotations
        helm(
            "upgrade",
            release,
            str(CHART),
            *common,
            "--values",
            str(helm.values_file(values)),
            "--set",
            "logLevel=DEBUG",
        )
        assert {n: _secret_data(core, namespace, n) for n in names} == first
        assert core.read_namespaced_config_map(f"{fullname}-ssh", namespace).data == public
        after = apps.read_namespaced_deployment(f"{fullname}-api", namespace).spec.template
        # Same secrets, so no rollout for them; the changed setting does roll the pods.
        assert after.metadata.annotations["checksum/secrets"] == before["checksum/secrets"]
        assert after.metadata.annotations["checksum/config"] != before["checksum/config"]

        helm("uninstall", release, *common)
        # The database volume, the CA and the pinned host key outlive an uninstall ...
        kept = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
        assert {f"{fullname}-server", f"{fullname}-gateway-host-key"} <= kept
        assert f"{fullname}-gateway-auth" not in kept
        claims = core.list_namespaced_persistent_volume_claim(namespace).items
        assert [c.metadata.name for c in claims] == [f"{fullname}-data"]
        with pytest.raises(ApiException) as gone:
            rbac.read_cluster_role(f"{fullname}-reconciler")
        assert gone.value.status == 404
        # ... and a reinstall of the same release adopts them: the same keys again.
        install()
        assert _secret_data(core, namespace, f"{fullname}-server") == first[f"{fullname}-server"]
        again = core.read_namespaced_config_map(f"{fullname}-ssh", namespace).data
        assert again["gateway_host_key.pub"] == public["gateway_host_key.pub"]
    finally:
        # Cluster-wide objects must not outlive the test; the namespace fixture removes the rest.
        with contextlib.suppress(HelmFailed):
            helm("uninstall", release, *common)
