"""The desired state of one space, as the reconciler receives it, and cluster-wide settings.

Everything here is frozen: a `SpaceSpec` is a value, read from the database by the store and
handed to pure builders. Quantities are Kubernetes quantity strings (`"500m"`, `"1Gi"`),
validated by the API before they reach this point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A space's objects inside its namespace all carry the same fixed names: the namespace already
# scopes them to one space, and fixed names make "is this ours?" a lookup, not a search.
WORKLOAD_NAME = "space"
HOST_KEY_SECRET = "sshd-host-key"  # noqa: S105 - a Secret object's name
CA_SECRET = "ssh-ca"  # noqa: S105 - a name
PRINCIPALS_SECRET = "ssh-principals"  # noqa: S105 - a name
WORKSPACE_CLAIM = "workspace"
SIDECAR_PORT = 2222
SPACE_UID = 1000


@dataclass(frozen=True)
class Resources:
    """Requests and limits for one container; None leaves it to the LimitRange defaults."""

    cpu_request: str | None = None
    memory_request: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None


@dataclass(frozen=True)
class Quota:
    """What one space's namespace may consume (a ResourceQuota); None means "no cap"."""

    requests_cpu: str | None = "2"
    requests_memory: str | None = "4Gi"
    limits_cpu: str | None = "4"
    limits_memory: str | None = "8Gi"
    requests_storage: str | None = "20Gi"
    pods: str | None = "4"
    persistentvolumeclaims: str | None = "2"
    services: str | None = "2"

    def hard(self) -> dict[str, str]:
        """The ResourceQuota `spec.hard` map for the caps that are set."""
        names = {
            "requests.cpu": self.requests_cpu,
            "requests.memory": self.requests_memory,
            "limits.cpu": self.limits_cpu,
            "limits.memory": self.limits_memory,
            "requests.storage": self.requests_storage,
            "pods": self.pods,
            "persistentvolumeclaims": self.persistentvolumeclaims,
            "services": self.services,
        }
        return {name: value for name, value in names.items() if value is not None}


@dataclass(frozen=True)
class Port:
    """A port the dev container listens on, tunnelled by the CLI over SSH."""

    name: str
    port: int


@dataclass(frozen=True)
class SpaceSpec:
    """Everything the cluster needs to know about one space.

    `space_id` is immutable and never reused (the namespace is named from it); `name` is the
    owner's label for it and may change. `host_private_key` is the sidecar's OpenSSH host key
    (PEM), `ca_public_keys` the CA keys the sidecar trusts (several during a rotation), and
    `principals` the certificate principals that may log in (the owner's immutable user id).
    """

    space_id: str
    owner_id: str
    name: str
    image: str
    host_private_key: str
    ca_public_keys: tuple[str, ...]
    principals: tuple[str, ...]
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    resources: Resources = field(default_factory=Resources)
    ports: tuple[Port, ...] = ()
    stopped: bool = False
    quota: Quota = field(default_factory=Quota)
    storage: str = "10Gi"


@dataclass(frozen=True)
class LimitDefaults:
    """Per-container defaults (a LimitRange), so pods without requests are still admitted."""

    cpu_request: str = "100m"
    memory_request: str = "256Mi"
    cpu_limit: str = "2"
    memory_limit: str = "2Gi"


@dataclass(frozen=True)
class ClusterSettings:
    """How this installation lays spaces out in the cluster; the same for every space.

    `instance` tells apart two installations in one cluster, so that neither ever treats the
    other's namespaces as its orphans. `gateway_namespace_labels` and `gateway_pod_labels`
    select the SSH gateway, the only allowed source of traffic into a space. `blocked_cidrs`
    are left out of the egress allow-list: cloud metadata always; the cluster's pod and service
    ranges should be added, because CNIs differ on whether an ipBlock matches pod addresses.
    """

    instance: str = "devspace"
    namespace_prefix: str = "ds-"
    tenant_cluster_role: str = "devspace-tenant"
    sidecar_image: str = "ghcr.io/devspace/sshd:latest"
    sidecar_command: tuple[str, ...] = ()
    sidecar_args: tuple[str, ...] = ("sidecar",)
    sidecar_resources: Resources = field(
        default_factory=lambda: Resources(
            cpu_request="10m", memory_request="32Mi", cpu_limit="500m", memory_limit="128Mi"
        )
    )
    limit_defaults: LimitDefaults = field(default_factory=LimitDefaults)
    storage_class: str | None = None
    gateway_namespace_labels: tuple[tuple[str, str], ...] = (
        ("kubernetes.io/metadata.name", "devspace"),
    )
    gateway_pod_labels: tuple[tuple[str, str], ...] = (("app.kubernetes.io/component", "gateway"),)
    dns_namespace: str = "kube-system"
    dns_pod_labels: tuple[tuple[str, str], ...] = (("k8s-app", "kube-dns"),)
    blocked_cidrs: tuple[str, ...] = ("169.254.169.254/32",)
    blocked_cidrs_v6: tuple[str, ...] = ("fd00:ec2::254/128",)
    termination_grace_seconds: int = 10
