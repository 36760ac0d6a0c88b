"""The chart's host key encryption Secret: generated once, given to the API and the reconciler
alone, replaced by the admin's own, and kept across upgrades, uninstalls and reinstalls."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from devspace_server.config import load_config
from devspace_server.host_key_sealing import key_id, parse_keys
from devspace_server.reconcile.settings import load_reconciler_config

from .chart import BASE, CHART, Doc, Helm, HelmFailed, containers, merged, named, pod_templates
from .conftest import Cluster, Keys, tenant_role_exists
from .podenv import Objects, container_environ, find_container
from .test_render import own_secrets, value_set

SECRET = "rel-devspace-host-key-encryption"  # noqa: S105 - a Secret object's name
MOUNTED_BY = {"rel-devspace-api": ["api"], "rel-devspace-reconciler": ["reconciler"]}


def _mounts_of(pod: Doc, name: str) -> list[str]:
    """Names of the containers of `pod` that mount the volume `name`."""
    return [
        c["name"] for c in containers(pod) for m in c.get("volumeMounts", []) if m["name"] == name
    ]


def test_a_key_is_generated_kept_on_uninstall_and_given_to_api_and_reconciler(
    helm: Helm, tmp_path: Path
) -> None:
    docs = helm.template(BASE)
    secret = named(docs, "Secret", "-host-key-encryption")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    objects = Objects(docs, {})
    (generated,) = parse_keys(objects.get("Secret", SECRET)["keys"])
    # Only the API (which seals) and the reconciler (which opens) get it; the migrations,
    # which never read a host key, and the gateway do not.
    mounted = {
        workload: _mounts_of(pod, "host-key-encryption")
        for workload, pod in pod_templates(docs)
        if any(v.get("secret", {}).get("secretName") == SECRET for v in pod["volumes"])
    }
    assert mounted == MOUNTED_BY
    api_pod = named(docs, "Deployment", "-api")["spec"]["template"]["spec"]
    api = load_config(
        container_environ(api_pod, find_container(api_pod, "api"), objects, tmp_path / "api")
    )
    rec_pod = named(docs, "Deployment", "-reconciler")["spec"]["template"]["spec"]
    reconciler = load_reconciler_config(
        container_environ(
            rec_pod, find_container(rec_pod, "reconciler"), objects, tmp_path / "reconciler"
        )
    )
    assert api.host_key_sealer is not None
    assert reconciler.host_key_sealer is not None
    assert api.host_key_sealer.current_key_id == key_id(generated)
    assert reconciler.host_key_sealer.current_key_id == key_id(generated)


def test_each_rendering_without_a_cluster_makes_a_different_key(helm: Helm) -> None:
    # `helm template` cannot look the old Secret up; an install can (the test below).
    first, second = (
        Objects(helm.template(BASE), {}).get("Secret", SECRET)["keys"] for _ in range(2)
    )
    assert first != second


def test_the_admins_own_secret_replaces_the_generated_one(
    helm: Helm, keys: Keys, tmp_path: Path
) -> None:
    docs = helm.template(value_set("byo-secrets", keys))
    assert not [d for d in docs if d["kind"] == "Secret"]
    objects = Objects(docs, own_secrets(keys))
    rec_pod = named(docs, "Deployment", "-reconciler")["spec"]["template"]["spec"]
    (volume,) = [v for v in rec_pod["volumes"] if v["name"] == "host-key-encryption"]
    assert volume["secret"]["secretName"] == "my-host-key-encryption"
    reconciler = load_reconciler_config(
        container_environ(
            rec_pod, find_container(rec_pod, "reconciler"), objects, tmp_path / "reconciler"
        )
    )
    (own,) = parse_keys(own_secrets(keys)["my-host-key-encryption"]["keys"])
    assert reconciler.host_key_sealer is not None
    assert reconciler.host_key_sealer.current_key_id == key_id(own)


@pytest.mark.kube
def test_the_key_survives_upgrade_uninstall_and_reinstall(
    helm: Helm, cluster: Cluster, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    release = f"hk-{uuid.uuid4().hex[:6]}"
    shared_tenant = tenant_role_exists(client.RbacAuthorizationV1Api(cluster.api))
    values = helm.values_file(
        merged(BASE, {"rbac": {"createTenantClusterRole": not shared_tenant}})
    )
    common = [*cluster.helm_args(namespace), "--values", str(values)]
    name = f"{release}-devspace-host-key-encryption"

    def stored() -> str:
        data: dict[str, str] = core.read_namespaced_secret(name, namespace).data
        return data["keys"]

    helm("install", release, str(CHART), *common)
    try:
        first = stored()
        helm("upgrade", release, str(CHART), *common, "--set", "logLevel=DEBUG")
        assert stored() == first
        helm("uninstall", release, *cluster.helm_args(namespace))
        assert stored() == first  # kept: without it no sealed host key could be read
        helm("install", release, str(CHART), *common)
        assert stored() == first  # adopted again by the reinstall
    finally:
        # Cluster-wide objects must not outlive the test; the namespace fixture removes the rest.
        with contextlib.suppress(HelmFailed):
            helm("uninstall", release, *cluster.helm_args(namespace))
