"""The settings of spaces and of the reconciler, read as part of `config.load_config`.

| setting (`DEVSPACE_…`)  | meaning                                                    |
|-------------------------|------------------------------------------------------------|
| `KUBECONFIG`            | the reconciler's kubeconfig (`serve` then reconciles too)  |
| `CLUSTER_INSTANCE`      | tells two installations in one cluster apart               |
| `NAMESPACE_PREFIX`      | put before each space's id to name its namespace           |
| `SIDECAR_IMAGE`         | the sshd image every dev pod runs beside the dev container |
| `GATEWAY_NAMESPACE`     | the SSH gateway's namespace (the only source let in)       |
| `GATEWAY_POD_LABELS`    | `key=value,…` selecting the gateway's pods                 |
| `STORAGE_CLASS`         | the workspace volumes' storage class (cluster default)     |
| `LEASE_NAMESPACE`       | where the reconcilers' leader-election Lease lives         |
| `QUOTA_DEFAULTS`        | `spaces=3,requests.cpu=2,…`: the quota before admins' own  |
| `DEFAULT_STORAGE`       | a new space's workspace size when it asks for none         |
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devspace_server.kube.spec import ClusterSettings
from devspace_server.quantity import InvalidQuantity, parse_quantity
from devspace_server.quotas import COUNTS, HARD_NAMES, QuotaValues

KEYS = (
    "kubeconfig",
    "cluster_instance",
    "namespace_prefix",
    "sidecar_image",
    "gateway_namespace",
    "gateway_pod_labels",
    "storage_class",
    "lease_namespace",
    "quota_defaults",
    "default_storage",
)
SPACE_ID_LENGTH = 16
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_LABEL_KEY = re.compile(r"([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*)?")


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how spaces are made, and the configured quota defaults."""

    settings: ClusterSettings = field(default_factory=ClusterSettings)
    quota_defaults: QuotaValues = field(default_factory=QuotaValues)
    default_storage: str = "10Gi"
    kubeconfig: str | None = None
    """None: `serve` runs no reconciler; `reconcile` then uses the in-cluster config."""
    lease_namespace: str = "devspace"


Raw = Callable[[str], "str | None"]
Problem = Callable[[str, str], None]


def parse_cluster(raw: Raw, problem: Problem) -> ClusterConfig:
    """The cluster settings from `raw(key)`; each bad value is reported with `problem(key, …)`.

    Returns defaults for what is unset (and for what was reported).
    """
    config = ClusterConfig()
    lease = (raw("lease_namespace") or config.lease_namespace).strip()
    if not _DNS_LABEL.fullmatch(lease):
        problem("lease_namespace", f"is {lease!r}: not a namespace name")
    storage = (raw("default_storage") or config.default_storage).strip()
    try:
        parse_quantity(storage)
    except InvalidQuantity as exc:
        problem("default_storage", str(exc))
    return ClusterConfig(
        settings=_cluster_settings(raw, problem),
        quota_defaults=parse_quota_defaults(raw("quota_defaults") or "", problem),
        default_storage=storage,
        kubeconfig=(raw("kubeconfig") or "").strip() or None,
        lease_namespace=lease,
    )


def _cluster_settings(raw: Raw, problem: Problem) -> ClusterSettings:
    changes: dict[str, Any] = {}
    instance = (raw("cluster_instance") or "").strip()
    if instance:
        if _LABEL_VALUE.fullmatch(instance) and len(instance) <= 63:
            changes["instance"] = instance
        else:
            problem("cluster_instance", f"is {instance!r}: use a Kubernetes label value")
    prefix = (raw("namespace_prefix") or "").strip()
    if prefix:
        if _PREFIX.fullmatch(prefix) and len(prefix) + SPACE_ID_LENGTH <= 63:
            changes["namespace_prefix"] = prefix
        else:
            problem(
                "namespace_prefix",
                f"is {prefix!r}: use lower-case letters, digits and '-', at most "
                f"{63 - SPACE_ID_LENGTH} characters (the space id follows it)",
            )
    for key, name in (("sidecar_image", "sidecar_image"), ("storage_class", "storage_class")):
        value = (raw(key) or "").strip()
        if value:
            changes[name] = value
    return ClusterSettings(**changes, **_gateway(raw, problem))


def _gateway(raw: Raw, problem: Problem) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    gateway = (raw("gateway_namespace") or "").strip()
    if gateway:
        if _DNS_LABEL.fullmatch(gateway) and len(gateway) <= 63:
            changes["gateway_namespace_labels"] = (("kubernetes.io/metadata.name", gateway),)
        else:
            problem("gateway_namespace", f"is {gateway!r}: not a namespace name")
    pod_labels = raw("gateway_pod_labels")
    if pod_labels:
        parsed = _labels(pod_labels)
        if parsed is None:
            problem("gateway_pod_labels", f"is {pod_labels!r}: write key=value,key=value")
        else:
            changes["gateway_pod_labels"] = parsed
    return changes


def _labels(text: str) -> tuple[tuple[str, str], ...] | None:
    pairs = []
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            return None
        pairs.append((key, value))
    return tuple(pairs)


def parse_quota_defaults(text: str, problem: Problem) -> QuotaValues:
    """`spaces=3,requests.cpu=2,limits.memory=8Gi`: over the built-in defaults."""
    changes: dict[str, Any] = {}
    by_name = {hard: name for name, hard in HARD_NAMES.items()} | {"spaces": "spaces"}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        name = by_name.get(key)
        if not sep or name is None:
            known = ", ".join(by_name)
            problem("quota_defaults", f"has {item!r}: write name=value with a name of {known}")
            continue
        if name in COUNTS:
            if not value.isdigit() or int(value) > 1_000_000:
                problem("quota_defaults", f"has {key}={value!r}: use a whole number")
                continue
            changes[name] = int(value)
        else:
            try:
                parse_quantity(value)
            except InvalidQuantity as exc:
                problem("quota_defaults", f"{key}: {exc}")
                continue
            changes[name] = value
    return QuotaValues(**changes)
