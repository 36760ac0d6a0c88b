"""The settings of spaces and the reconciler, read with the rest of the configuration."""

from __future__ import annotations

import pytest

from devspace_server.config import load_config
from devspace_server.errors import ConfigError
from devspace_server.kube.spec import ClusterSettings
from devspace_server.quotas import QuotaValues

from .conftest import HOST_KEY_ENCRYPTION_KEY

BASE = {
    "DEVSPACE_SECRET_KEY": "test-secret-0123456789-abcdefghijklmnop",
    "DEVSPACE_HOST_KEY_ENCRYPTION_KEYS": HOST_KEY_ENCRYPTION_KEY,
    "DEVSPACE_PUBLIC_URL": "http://localhost:8080",
    "DEVSPACE_DATA_DIR": "/tmp/devspace-config-test",
}


def test_defaults_need_no_setting() -> None:
    cluster = load_config(BASE).cluster
    assert cluster.settings == ClusterSettings()
    assert cluster.quota_defaults == QuotaValues()
    assert (cluster.kubeconfig, cluster.lease_namespace, cluster.default_storage) == (
        None,
        "devspace",
        "10Gi",
    )


def test_every_setting_is_read() -> None:
    cluster = load_config(
        {
            **BASE,
            "DEVSPACE_KUBECONFIG": "/etc/kube/config",
            "DEVSPACE_CLUSTER_INSTANCE": "prod-eu",
            "DEVSPACE_NAMESPACE_PREFIX": "dev-",
            "DEVSPACE_SIDECAR_IMAGE": "registry.example/sshd:1.2",
            "DEVSPACE_GATEWAY_NAMESPACE": "ssh",
            "DEVSPACE_GATEWAY_POD_LABELS": "app=gateway, tier=edge",
            "DEVSPACE_STORAGE_CLASS": "fast",
            "DEVSPACE_LEASE_NAMESPACE": "devspace-system",
            "DEVSPACE_QUOTA_DEFAULTS": "spaces=1, requests.cpu=500m, limits.memory=2Gi, pods=2",
            "DEVSPACE_DEFAULT_STORAGE": "5Gi",
        }
    ).cluster
    settings = cluster.settings
    assert (settings.instance, settings.namespace_prefix) == ("prod-eu", "dev-")
    assert settings.sidecar_image == "registry.example/sshd:1.2"
    assert settings.gateway_namespace_labels == (("kubernetes.io/metadata.name", "ssh"),)
    assert settings.gateway_pod_labels == (("app", "gateway"), ("tier", "edge"))
    assert settings.storage_class == "fast"
    assert cluster.kubeconfig == "/etc/kube/config"
    assert cluster.lease_namespace == "devspace-system"
    assert cluster.default_storage == "5Gi"
    quota = cluster.quota_defaults
    assert (quota.spaces, quota.requests_cpu, quota.limits_memory, quota.pods) == (
        1,
        "500m",
        "2Gi",
        2,
    )
    assert quota.requests_memory == "4Gi"  # not set: the built-in default


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("NAMESPACE_PREFIX", "Dev_", "use lower-case letters, digits and '-'"),
        ("NAMESPACE_PREFIX", "a" * 48, "at most 47 characters"),
        ("CLUSTER_INSTANCE", "two words", "label value"),
        ("GATEWAY_NAMESPACE", "Not-A-Namespace", "not a namespace name"),
        ("GATEWAY_POD_LABELS", "app", "key=value"),
        ("LEASE_NAMESPACE", "x_y", "not a namespace name"),
        ("DEFAULT_STORAGE", "big", "is not a quantity"),
        ("QUOTA_DEFAULTS", "limits.cpu=1e309", "exponent beyond"),
    ],
)
def test_bad_settings_are_refused_by_name(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, f"DEVSPACE_{name}": value})
    assert f"DEVSPACE_{name}" in str(caught.value)
    assert says in str(caught.value)
