"""Quotas: what a user may consume, where each value comes from, and whether a space fits.

A user's effective quota is three layers, each field taken from the first that sets it:
the user's own override (`models.Quota`), the defaults admins set through the API
(`models.QuotaDefaults`), then the configuration (`DEVSPACE_QUOTA_DEFAULTS`).

`spaces` caps how many live spaces a user has; every other value caps *each* space: it is
the `spec.hard` of that space's ResourceQuota. A space fits when its dev container plus the
sidecar (with the LimitRange defaults for what it leaves unset) stays within those caps, so
the API refuses what the cluster would refuse later, and says which cap, in words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal

from sqlalchemy.orm import Session

from devspace_server.errors import DevspaceError
from devspace_server.kube import spec as kube
from devspace_server.models import Quota, QuotaDefaults, QuotaLimits
from devspace_server.quantity import format_bytes, format_cpu, parse_quantity

DEFAULTS_ROW = 1
COUNTS = ("spaces", "pods", "persistentvolumeclaims", "services")
QUANTITIES = ("requests_cpu", "requests_memory", "limits_cpu", "limits_memory", "requests_storage")
# How each field is named in a ResourceQuota (and so in its usage), and in messages.
HARD_NAMES = {
    "requests_cpu": "requests.cpu",
    "requests_memory": "requests.memory",
    "limits_cpu": "limits.cpu",
    "limits_memory": "limits.memory",
    "requests_storage": "requests.storage",
    "pods": "pods",
    "persistentvolumeclaims": "persistentvolumeclaims",
    "services": "services",
}


class QuotaExceeded(DevspaceError):
    """A space would not fit its owner's quota; names the limit and the numbers."""

    status = 409
    slug = "quota-exceeded"
    title = "Quota exceeded"

    def __init__(self, detail: str, limit: str) -> None:
        super().__init__(detail)
        self.limit = limit

    def extensions(self) -> dict[str, object]:
        return {"limit": self.limit}


@dataclass(frozen=True)
class QuotaValues:
    """One layer of quota values, or (after `overlay`) the effective quota.

    Counts are integers and the rest Kubernetes quantity strings; None means "not set in
    this layer" (and, in an effective quota, "no cap").
    """

    spaces: int | None = 3
    requests_cpu: str | None = "2"
    requests_memory: str | None = "4Gi"
    limits_cpu: str | None = "4"
    limits_memory: str | None = "8Gi"
    requests_storage: str | None = "20Gi"
    pods: int | None = 4
    persistentvolumeclaims: int | None = 2
    services: int | None = 2

    @classmethod
    def unset(cls) -> QuotaValues:
        """A layer that sets nothing."""
        return cls(**dict.fromkeys(names(), None))

    @classmethod
    def of(cls, row: QuotaLimits | None) -> QuotaValues:
        """The values a database row sets (nothing for no row)."""
        if row is None:
            return cls.unset()
        return cls(**{name: getattr(row, name) for name in names()})

    def overlay(self, layer: QuotaValues) -> QuotaValues:
        """These values with every field `layer` sets taken from `layer`."""
        changes = {n: getattr(layer, n) for n in names() if getattr(layer, n) is not None}
        return replace(self, **changes)

    def store(self, row: QuotaLimits) -> None:
        """Write these values into a database row."""
        for name in names():
            setattr(row, name, getattr(self, name))

    def as_dict(self) -> dict[str, int | str | None]:
        """Field name to value."""
        return {name: getattr(self, name) for name in names()}

    def to_kube(self) -> kube.Quota:
        """The per-space ResourceQuota caps these values give."""
        counts = {n: None if getattr(self, n) is None else str(getattr(self, n)) for n in COUNTS}
        counts.pop("spaces")
        return kube.Quota(**{n: getattr(self, n) for n in QUANTITIES}, **counts)


def names() -> tuple[str, ...]:
    """The quota's field names, in a stable order."""
    return tuple(f.name for f in fields(QuotaValues))


def effective(db: Session, user_id: str, configured: QuotaValues) -> QuotaValues:
    """The quota of user `user_id`: their override over the admins' defaults over `configured`."""
    defaults = db.get(QuotaDefaults, DEFAULTS_ROW)
    override = db.get(Quota, user_id)
    return configured.overlay(QuotaValues.of(defaults)).overlay(QuotaValues.of(override))


def defaults(db: Session, configured: QuotaValues) -> QuotaValues:
    """The defaults a user without an override gets: the admins' over `configured`."""
    return configured.overlay(QuotaValues.of(db.get(QuotaDefaults, DEFAULTS_ROW)))


@dataclass(frozen=True)
class Demand:
    """What one space asks of its quota: its dev container's resources and its workspace."""

    resources: kube.Resources
    storage: str


def check_fits(demand: Demand, quota: QuotaValues, settings: kube.ClusterSettings) -> None:
    """Raise `QuotaExceeded` naming the first cap the space would break, else return.

    The dev container's unset requests and limits count at the LimitRange defaults, and
    the sidecar's resources are added, exactly as the ResourceQuota will count the pod.
    """
    dev, sidecar, fallback = demand.resources, settings.sidecar_resources, settings.limit_defaults
    totals = {
        "requests_cpu": (dev.cpu_request or fallback.cpu_request, sidecar.cpu_request, "cpu"),
        "requests_memory": (
            dev.memory_request or fallback.memory_request,
            sidecar.memory_request,
            "memory",
        ),
        "limits_cpu": (dev.cpu_limit or fallback.cpu_limit, sidecar.cpu_limit, "cpu"),
        "limits_memory": (
            dev.memory_limit or fallback.memory_limit,
            sidecar.memory_limit,
            "memory",
        ),
    }
    for name, (own, extra, kind) in totals.items():
        cap = getattr(quota, name)
        if cap is None:
            continue
        used = parse_quantity(own) + (parse_quantity(extra) if extra else Decimal(0))
        if used > parse_quantity(cap):
            show = format_cpu if kind == "cpu" else format_bytes
            raise QuotaExceeded(
                f"The space needs {show(used)} of {HARD_NAMES[name]} ({own} for the dev "
                f"container, {extra or 0} for the SSH sidecar), but your quota allows {cap} "
                f"per space: ask for less, or ask an admin to raise your quota.",
                limit=HARD_NAMES[name],
            )
    cap = quota.requests_storage
    if cap is not None and parse_quantity(demand.storage) > parse_quantity(cap):
        raise QuotaExceeded(
            f"The workspace asks for {demand.storage} of storage, but your quota allows {cap} "
            f"of requests.storage per space: ask for less, or ask an admin to raise it.",
            limit="requests.storage",
        )


def check_request_within_limit(resources: kube.Resources, settings: kube.ClusterSettings) -> None:
    """Raise `ValueError` (naming the field) if a request exceeds its limit.

    Kubernetes refuses such a pod; an unset limit counts at the LimitRange default.
    """
    fallback = settings.limit_defaults
    pairs = (
        ("cpu_request", resources.cpu_request, resources.cpu_limit or fallback.cpu_limit),
        (
            "memory_request",
            resources.memory_request,
            resources.memory_limit or fallback.memory_limit,
        ),
    )
    for field, request, limit in pairs:
        if request is not None and parse_quantity(request) > parse_quantity(limit):
            raise ValueError(
                f"{field}: {request} is more than the limit of {limit}; a request cannot exceed "
                f"its limit (set the limit too, or lower the request)"
            )


def _formatter(key: str) -> Callable[[Decimal], str]:
    if "cpu" in key:
        return format_cpu
    if "memory" in key or "storage" in key:
        return format_bytes
    return lambda value: f"{value.normalize():f}"


def total_usage(usages: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The sum of several ResourceQuota `status.used` maps, per resource name.

    Values that do not parse (which the API server never sends) are skipped rather than
    failing a whole usage report.
    """
    sums: dict[str, Decimal] = {}
    for usage in usages:
        for key, text in usage.items():
            try:
                value = parse_quantity(text)
            except ValueError:
                continue
            sums[key] = sums.get(key, Decimal(0)) + value
    return {key: _formatter(key)(value) for key, value in sorted(sums.items())}
